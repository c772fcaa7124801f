//! `flvpc-vm-runner`: the VM runner as a program of its own (the same code as `flvpc
//! vm-runner`), so that this crate's tests can mount it into runner containers without
//! building the whole flvpc binary. See `flvpc_host::vm::runner`.

fn main() {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flvpc-vm-runner: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(flvpc_host::vm::runner::main(std::env::args().skip(1).collect()));
    std::process::exit(code);
}
