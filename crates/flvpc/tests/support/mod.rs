//! What the real-binary tests of this crate share: the binary, a server process killed with the
//! test, the machines and networks of a test's namespaces removed whatever happened, the `docker`
//! CLI for checks from outside, and free loopback ports. Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

/// The flvpc binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flvpc");

/// A `flvpc serve` process, killed and reaped when dropped (also when the test fails).
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The containers (with their anonymous volumes) and networks of these namespaces, removed when
/// dropped, also when the test fails.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            let ids = docker(&["ps", "-aq", "--filter", &format!("label=flvpc.namespace={ns}")]);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                docker(&args);
            }
            // A server still reconciling as the test ends can hold an endpoint for a moment, and a
            // network left behind takes one of Docker's few default address pools. Bounded: ~10 s.
            let network = format!("flvpc-{ns}");
            for _ in 0..40 {
                docker(&["network", "rm", &network]);
                if docker(&["network", "ls", "-q", "--filter", &format!("name=^{network}$")]).trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    }
}

/// `docker ARGS…`: its standard output ("" if it could not run).
pub fn docker(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Whether something accepts connections on 127.0.0.1:`port` within `seconds` (a server just
/// spawned: its port answers once it is ready).
pub fn listens_within(port: u16, seconds: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    true
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Runs `command` (the binary with its arguments and environment) to its end, `stdin` written to it
/// (then closed), its output collected.
pub fn output(command: &mut Command, stdin: Option<&str>) -> Output {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run flvpc");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}
