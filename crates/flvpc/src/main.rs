//! `flvpc`: the one binary. Server commands (`serve`, `admin`, `backup`, `restore`) and client
//! commands that talk to a server over the REST API.

mod client;
mod host;
mod image;
mod progress;
mod serve;
mod trust;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// flvpc: a self-hosted private cloud for one Linux server.
#[derive(Debug, Parser)]
#[command(name = "flvpc", version, about, long_about = None)]
struct Cli {
    /// Where state lives (the SQLite database, keys).
    #[arg(long, env = "FLVPC_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH, postgres://USER:PASSWORD@HOST[:PORT]/DB or
    /// mysql://USER:PASSWORD@HOST[:PORT]/DB for MariaDB 10.5+ (mariadb:// too). Default: SQLite in the data dir.
    #[arg(long, env = "FLVPC_DATABASE_URL", global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: web panel and REST API.
    Serve(Box<serve::ServeArgs>),
    /// Administer the server's database directly (run on the server).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Write a consistent snapshot of the database into FILE while flvpc runs (a new file, mode 0600).
    Backup {
        /// The backup file to write; refused if it exists.
        file: PathBuf,
    },
    /// Put a backup into an empty data dir (--data-dir) or empty database (--database-url), then migrate it.
    Restore {
        /// A file written by `flvpc backup` (from SQLite, PostgreSQL or MariaDB).
        file: PathBuf,
    },
    /// Machine images on this host.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Sign in to a server and keep the token in your config dir.
    Login(client::LoginArgs),
    /// Forget the stored token and end its session.
    Logout,
    /// Show who you are signed in as and your namespaces.
    Me,
    /// Namespaces.
    Ns {
        #[command(subcommand)]
        command: client::NsCommand,
    },
    /// A namespace's cluster: apply a spec, start, stop, delete.
    Cluster {
        #[command(subcommand)]
        command: client::ClusterCommand,
    },
    /// Machines: list, start, stop, restart, console, move.
    Machines {
        #[command(subcommand)]
        command: client::MachinesCommand,
    },
    /// The hosts that run machines (superadmin): list, add, drain, activate, remove.
    Host {
        #[command(subcommand)]
        command: host::HostCommand,
    },
    /// GET an API path with your token and print the JSON answer (e.g. /api/v1/capacity).
    Api {
        /// The path, starting with /api/v1/.
        path: String,
    },
    /// Print ~/.ssh/config blocks that reach your machines through the flvpc SSH gateway.
    SshConfig,
    /// SSH into NAMESPACE/MACHINE through the gateway (runs OpenSSH's ssh).
    Ssh {
        /// NAMESPACE/MACHINE
        target: String,
        /// Extra arguments for ssh (after --), e.g. a command.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Your SSH keys.
    Keys {
        #[command(subcommand)]
        command: client::KeysCommand,
    },
    /// Run one microVM as PID 1 of its runner container: started by flvpc's microVM engine
    /// (with the binary mounted read-only into the container), not by hand.
    #[command(hide = true)]
    VmRunner {
        /// The runner configuration (JSON), written by the engine.
        config: String,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create the single superadmin. Refused if one exists.
    Init {
        /// The superadmin's login.
        #[arg(long)]
        login: String,
        /// Read the password from standard input (one line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

impl Cli {
    fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        // Owner only: the database holds password and token hashes (`serve` also tightens an old one).
        flvpc_store::private_dir(&self.data_dir)?;
        Ok(format!("sqlite://{}", self.data_dir.join("flvpc.db").display()))
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("flvpc: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = runtime.block_on(run(cli)) {
        eprintln!("flvpc: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => serve::run(&cli.data_dir, &cli.database_url()?, args).await,
        Command::Admin { command: AdminCommand::Init { login, password_stdin: _ } } => {
            admin_init(&cli.database_url()?, login).await
        }
        Command::Backup { file } => {
            let summary = flvpc_store::backup(&cli.database_url()?, file).await?;
            print_summary("backup written to", file, &summary);
            Ok(())
        }
        Command::Restore { file } => {
            let summary = flvpc_store::restore(file, &cli.database_url()?).await?;
            print_summary("restored from", file, &summary);
            Ok(())
        }
        Command::Image { command } => image::run(command, &cli.data_dir).await,
        Command::Login(args) => client::login(args).await,
        Command::Logout => client::logout().await,
        Command::Me => client::me().await,
        Command::Ns { command } => client::ns(command).await,
        Command::Keys { command } => client::keys(command).await,
        Command::Cluster { command } => client::cluster(command).await,
        Command::Api { path } => client::api_get(path).await,
        Command::SshConfig => client::ssh_config().await,
        Command::Ssh { target, args } => client::ssh(target, args).await,
        Command::Machines { command } => client::machines(command).await,
        Command::Host { command } => host::run(command).await,
        Command::VmRunner { config } => std::process::exit(flvpc_host::vm::runner::main(vec![config.clone()]).await),
    }
}

/// What a backup or restore wrote: one line per table, then the totals.
fn print_summary(what: &str, file: &std::path::Path, summary: &flvpc_store::BackupSummary) {
    for (table, rows) in &summary.tables {
        println!("{table:<18} {rows:>8} rows");
    }
    println!(
        "{what} {}: {} tables, {} rows, {} bytes, schema version {}",
        file.display(),
        summary.tables.len(),
        summary.rows(),
        summary.bytes,
        summary.schema_version
    );
}

async fn admin_init(database_url: &str, login: &str) -> anyhow::Result<()> {
    let login = flvpc_model::Login::parse(login)?;
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']);
    let store = flvpc_store::Store::open(database_url).await?;
    store.init_superadmin(&login, password).await?;
    store.close().await;
    println!("superadmin {login} created; sign in to the panel on port 5555");
    Ok(())
}
