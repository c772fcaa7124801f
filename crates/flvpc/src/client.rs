//! Client commands: talk to a flvpc server over the REST API with a token kept
//! in the user's config dir (`$XDG_CONFIG_HOME/flvpc/config.json`, mode 0600).

use crate::progress::{Progress, Update};
use crate::trust::{self, Https, Trust};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use flvpc_server::api::wire::{
    ConsoleOut, ErrorBody, LoginRequest, LoginResponse, MachineOut, OperationOut, OperationStarted, SpecSaved,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;

/// Flags of `flvpc login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://vpc.example:5555 (default https://127.0.0.1:5555).
    url: Option<String>,
    /// The server's URL, when URL is not given (the flag of scripts written before it).
    #[arg(long, env = "FLVPC_SERVER")]
    server: Option<String>,
    /// Your login.
    #[arg(long)]
    login: String,
    /// Read the password from standard input.
    #[arg(long, required = true)]
    password_stdin: bool,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (AA:BB:…, as `flvpc
    /// serve` logs it for its self-signed certificate); kept with the token and checked by every
    /// later command.
    #[arg(long, value_parser = parse_fingerprint)]
    fingerprint: Option<String>,
    /// Trust the server's certificate when this CA (a PEM file) signed it, for a private CA.
    #[arg(long, conflicts_with = "fingerprint")]
    ca_cert: Option<PathBuf>,
}

fn parse_fingerprint(value: &str) -> Result<String, String> {
    flvpc_server::tls::parse_fingerprint(value)
        .ok_or_else(|| format!("{value:?} is not a SHA-256 fingerprint: expected 32 hex byte pairs, AA:BB:…"))
}

/// `flvpc ns …`.
#[derive(Debug, Subcommand)]
pub enum NsCommand {
    /// List the namespaces you may see.
    List,
    /// Create a namespace (superadmin).
    Create { name: String },
    /// Delete a namespace (superadmin).
    Delete { name: String },
    /// List a namespace's members.
    Members { name: String },
    /// Give a user a role in a namespace (superadmin).
    SetMember {
        name: String,
        login: String,
        #[arg(long, value_parser = ["admin", "user"])]
        role: String,
    },
}

/// `flvpc cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Save a cluster spec (footloose.yaml format) and create/update the machines, with progress.
    Apply {
        /// The namespace.
        namespace: String,
        /// The spec file, or - for standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print the operation id and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Print the saved spec (YAML).
    Show { namespace: String },
    /// Start every machine.
    Start { namespace: String },
    /// Stop every machine.
    Stop { namespace: String },
    /// Delete every machine (the spec stays).
    Delete { namespace: String },
}

/// `flvpc machines …`.
#[derive(Debug, Subcommand)]
pub enum MachinesCommand {
    /// List a namespace's machines.
    List { namespace: String },
    /// Start NS/MACHINE.
    Start { target: String },
    /// Stop NS/MACHINE.
    Stop { target: String },
    /// Restart NS/MACHINE.
    Restart { target: String },
    /// Print the last lines of NS/MACHINE's console: a microVM's serial console (boot
    /// messages, also while it is stopped), a container machine's journal (while it runs).
    Console {
        target: String,
        /// How many lines (1 to 1000).
        #[arg(long, default_value_t = 200)]
        lines: usize,
    },
    /// Move the stopped NS/MACHINE to another host (superadmin): made again there from its image
    /// (its disk does not move), removed from the old host.
    Move {
        target: String,
        /// The host it goes to (`flvpc host list`).
        #[arg(long)]
        host: String,
    },
}

/// `flvpc keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List your SSH keys.
    List,
    /// Add an SSH public key from a file (e.g. ~/.ssh/id_ed25519.pub) or - for standard input.
    Add { name: String, file: PathBuf },
    /// Remove one of your SSH keys.
    Remove { name: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct ClientConfig {
    server: String,
    token: String,
    /// The pinned certificate of an https server nobody else vouches for (`--fingerprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    /// The private CA that signs the server's certificate (`--ca-cert`), an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<PathBuf>,
}

impl ClientConfig {
    fn trust(&self) -> Trust {
        match (&self.fingerprint, &self.ca_cert) {
            (Some(fingerprint), _) => Trust::Pinned(fingerprint.clone()),
            (None, Some(file)) => Trust::Ca(file.clone()),
            (None, None) => Trust::System,
        }
    }
}

/// A server, the token for it (none before login) and a client that trusts its certificate as
/// the login decided.
struct Conn {
    server: String,
    token: Option<String>,
    trust: Trust,
    https: Https,
}

impl Conn {
    fn new(server: &str, token: Option<String>, trust: Trust) -> anyhow::Result<Self> {
        let https = Https::new(&trust)?;
        Ok(Self { server: server.trim_end_matches('/').to_owned(), token, trust, https })
    }

    /// The server and token of the last `flvpc login`.
    fn stored() -> anyhow::Result<Self> {
        let config = load()?;
        Self::new(&config.server, Some(config.token.clone()), config.trust())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.https.client.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a request; the body text, or one line with the server's error message and status.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<String> {
        let response = req.send().await.map_err(|err| self.unreachable(err))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text).map(|e| e.error.message).unwrap_or(text);
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(text)
    }

    /// Why a request did not reach the server, with what to do when its certificate was refused
    /// (the TLS error stays in the chain, under the sentence).
    fn unreachable(&self, err: reqwest::Error) -> anyhow::Error {
        let server = &self.server;
        if !trust::certificate_refused(&err) {
            return anyhow::Error::new(err).context(format!("cannot reach the flvpc server at {server}"));
        }
        let message = match &self.trust {
            Trust::Pinned(expected) => {
                let seen = self.https.seen().unwrap_or_else(|| "unknown".to_owned());
                format!(
                    "the server at {server} shows a certificate with SHA-256 fingerprint {seen}, not the pinned {expected} \
                     (--fingerprint at login): if its certificate was replaced on purpose, check the new fingerprint with its \
                     administrator and run `flvpc login {server} --fingerprint {seen}`; otherwise do not use it"
                )
            }
            Trust::Ca(file) => format!(
                "the certificate of {server} is not signed by the CA in {} or does not name this host: check the URL \
                 and the CA file, then run `flvpc login` again",
                file.display()
            ),
            Trust::System => format!(
                "the certificate of {server} is not signed by an authority this system trusts: for flvpc's \
                 self-signed certificate run `flvpc login {server} --fingerprint AA:BB:…` with the fingerprint `flvpc \
                 serve` logged, for a private CA give `--ca-cert FILE`"
            ),
        };
        anyhow::Error::new(err).context(message)
    }
}

fn config_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("flvpc").join("config.json"))
}

fn load() -> anyhow::Result<ClientConfig> {
    let path = config_path()?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| "not signed in: run `flvpc login https://SERVER:5555 --login YOU --password-stdin`")?;
    serde_json::from_str(&text).with_context(|| format!("{} is damaged: run `flvpc login` again", path.display()))
}

fn save(config: &ClientConfig) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(serde_json::to_string_pretty(config)?.as_bytes())?;
    Ok(())
}

pub(crate) async fn call(method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    request(&Conn::stored()?, method, path, body).await
}

/// A call whose answer is one of the server's wire types (the CLI and the server share them).
pub(crate) async fn call_as<T: DeserializeOwned>(
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<T> {
    decode(call(method, path, body).await?)
}

fn decode<T: DeserializeOwned>(value: Value) -> anyhow::Result<T> {
    serde_json::from_value(value)
        .context("the server's answer does not have the expected shape (a newer or older flvpc?)")
}

async fn call_text(method: reqwest::Method, path: &str, content_type: &str, body: String) -> anyhow::Result<Value> {
    let conn = Conn::stored()?;
    let req = conn.request(method, path).header("content-type", content_type).body(body);
    Ok(json_of(conn.send(req).await?))
}

/// GETs a text resource (YAML, ssh-config) with the stored token.
async fn get_text(path: &str, accept: &str) -> anyhow::Result<String> {
    let conn = Conn::stored()?;
    conn.send(conn.request(reqwest::Method::GET, path).header("accept", accept)).await
}

/// Follows an operation until it ends, showing its progress on stderr.
async fn follow(id: &str) -> anyhow::Result<()> {
    let mut progress = Progress::on_stderr();
    // One client for the whole wait: its connection (and TLS session) is kept between polls.
    let conn = Conn::stored()?;
    loop {
        let path = format!("/api/v1/operations/{}", segment(id)?);
        let op: OperationOut = decode(request(&conn, reqwest::Method::GET, &path, None).await?)?;
        let (done, total) = (u64::try_from(op.progress.done).ok(), u64::try_from(op.progress.total).ok());
        let kind = op.kind.as_str();
        progress.update(Update { step: kind, done, total, status: &op.state, detail: "" });
        match op.state.as_str() {
            "succeeded" => {
                progress.finish();
                return Ok(());
            }
            "failed" => {
                progress.finish();
                bail!("{kind} failed: {}", op.error.as_deref().unwrap_or("no reason given"));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

async fn start_operation(path: &str) -> anyhow::Result<String> {
    let started: OperationStarted = call_as(reqwest::Method::POST, path, None).await?;
    Ok(started.operation)
}

/// `flvpc cluster …`.
pub async fn cluster(command: &ClusterCommand) -> anyhow::Result<()> {
    let simple = |ns: &str, action: &str| -> anyhow::Result<String> {
        Ok(format!("/api/v1/namespaces/{}/cluster/{action}", segment(ns)?))
    };
    match command {
        ClusterCommand::Apply { namespace, file, no_wait } => {
            let ns = segment(namespace)?;
            let mut spec = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut spec)?;
            } else {
                spec = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            }
            let path = format!("/api/v1/namespaces/{ns}/cluster");
            let saved: SpecSaved = decode(call_text(reqwest::Method::PUT, &path, "application/yaml", spec).await?)?;
            for warning in &saved.warnings {
                eprintln!("warning: {warning}");
            }
            let id = start_operation(&format!("{path}/create")).await?;
            if *no_wait {
                println!("{id}");
                return Ok(());
            }
            follow(&id).await
        }
        ClusterCommand::Show { namespace } => {
            let path = format!("/api/v1/namespaces/{}/cluster", segment(namespace)?);
            print!("{}", get_text(&path, "application/yaml").await?);
            Ok(())
        }
        ClusterCommand::Start { namespace } => follow(&start_operation(&simple(namespace, "start")?).await?).await,
        ClusterCommand::Stop { namespace } => follow(&start_operation(&simple(namespace, "stop")?).await?).await,
        ClusterCommand::Delete { namespace } => follow(&start_operation(&simple(namespace, "delete")?).await?).await,
    }
}

/// `flvpc api PATH`: GETs an API path with the stored token and prints the JSON answer, for
/// what the other commands do not show (e.g. `/api/v1/capacity`).
pub async fn api_get(path: &str) -> anyhow::Result<()> {
    if !path.starts_with("/api/v1/") || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("give an API path such as /api/v1/capacity (see docs/api.md)");
    }
    let answer = call(reqwest::Method::GET, path, None).await?;
    println!("{}", serde_json::to_string_pretty(&answer).context("cannot print the answer")?);
    Ok(())
}

fn split_target(target: &str) -> anyhow::Result<(&str, &str)> {
    let (ns, name) = target.split_once('/').context("give the machine as NAMESPACE/MACHINE, e.g. team1/node0")?;
    Ok((segment(ns)?, segment(name)?))
}

/// `flvpc machines …`.
pub async fn machines(command: &MachinesCommand) -> anyhow::Result<()> {
    let (target, action) = match command {
        MachinesCommand::List { namespace } => {
            let path = format!("/api/v1/namespaces/{}/machines", segment(namespace)?);
            let list: Vec<MachineOut> = call_as(reqwest::Method::GET, &path, None).await?;
            println!("{:<20} {:<12} {:<10} {:<12} {:<16} {:<24} SSH", "NAME", "STATE", "ENGINE", "HOST", "IP", "PORTS");
            for m in &list {
                let ports: Vec<String> =
                    m.ports.iter().map(|p| format!("{}->{}", p.host_port, p.container_port)).collect();
                let ssh = m.ssh.direct.as_deref().unwrap_or("-");
                let ip = m.ip.as_deref().unwrap_or("-");
                println!(
                    "{:<20} {:<12} {:<10} {:<12} {:<16} {:<24} {ssh}",
                    m.name,
                    m.state,
                    m.engine,
                    m.host,
                    ip,
                    ports.join(",")
                );
            }
            return Ok(());
        }
        MachinesCommand::Console { target, lines } => {
            let (ns, name) = split_target(target)?;
            let path = format!("/api/v1/namespaces/{ns}/machines/{name}/console?lines={lines}");
            let console: ConsoleOut = call_as(reqwest::Method::GET, &path, None).await?;
            println!("{}", console.text);
            return Ok(());
        }
        MachinesCommand::Move { target, host } => {
            let (ns, name) = split_target(target)?;
            let path = format!("/api/v1/namespaces/{ns}/machines/{name}/move");
            let started = call(reqwest::Method::POST, &path, Some(serde_json::json!({ "host": host }))).await?;
            let id = started.get("operation").and_then(Value::as_str).unwrap_or_default().to_owned();
            return follow(&id).await;
        }
        MachinesCommand::Start { target } => (target, "start"),
        MachinesCommand::Stop { target } => (target, "stop"),
        MachinesCommand::Restart { target } => (target, "restart"),
    };
    let (ns, name) = split_target(target)?;
    follow(&start_operation(&format!("/api/v1/namespaces/{ns}/machines/{name}/{action}")).await?).await
}

async fn request(conn: &Conn, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let mut req = conn.request(method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    Ok(json_of(conn.send(req).await?))
}

fn json_of(text: String) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

fn print(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// `flvpc login`.
pub async fn login(args: &LoginArgs) -> anyhow::Result<()> {
    let server = args.url.as_deref().or(args.server.as_deref()).unwrap_or("https://127.0.0.1:5555");
    let server = server.trim_end_matches('/');
    let https = match server.split_once("://") {
        Some(("https", rest)) if !rest.is_empty() => true,
        Some(("http", rest)) if !rest.is_empty() => false,
        _ => bail!("{server:?} is not a server URL: give it as https://HOST:5555"),
    };
    let trust = match (&args.fingerprint, &args.ca_cert) {
        (Some(_), _) | (_, Some(_)) if !https => {
            bail!("--fingerprint and --ca-cert are for https servers; {server} is plain HTTP")
        }
        (Some(fingerprint), _) => Trust::Pinned(fingerprint.clone()),
        (None, Some(file)) => {
            let file = std::path::absolute(file).with_context(|| format!("cannot find {}", file.display()))?;
            Trust::Ca(file)
        }
        (None, None) => Trust::System,
    };
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("cannot read the password from standard input")?;
    let body = LoginRequest { login: args.login.clone(), password: password.trim_end_matches(['\n', '\r']).to_owned() };
    let body = serde_json::to_value(body)?;
    let path = "/api/v1/auth/login";
    let mut conn = Conn::new(server, None, trust)?;
    let value = match request(&conn, reqwest::Method::POST, path, Some(body.clone())).await {
        Ok(value) => value,
        // A certificate nobody vouches for (flvpc's own self-signed one): the password was not sent.
        // Show its fingerprint and ask, as ssh does, or say which flag to give.
        Err(err) if https && conn.trust == Trust::System && trust::certificate_refused(err.as_ref()) => {
            let fingerprint = trust::probe_fingerprint(server).await?;
            match trust::ask_on_terminal(server, &fingerprint) {
                Some(true) => {}
                Some(false) => bail!("not signed in: the certificate of {server} was not trusted"),
                None => bail!(
                    "the certificate of {server} is not signed by an authority this system trusts; its SHA-256 \
                     fingerprint is {fingerprint}: if that is the one `flvpc serve` logged, run `flvpc login {server} \
                     --fingerprint {fingerprint}` (or give --ca-cert FILE for a private CA)"
                ),
            }
            conn = Conn::new(server, None, Trust::Pinned(fingerprint))?;
            request(&conn, reqwest::Method::POST, path, Some(body)).await?
        }
        Err(err) => return Err(err),
    };
    let signed_in: LoginResponse = decode(value)?;
    let (fingerprint, ca_cert) = match &conn.trust {
        Trust::Pinned(fingerprint) => (Some(fingerprint.clone()), None),
        Trust::Ca(file) => (None, Some(file.clone())),
        Trust::System => (None, None),
    };
    save(&ClientConfig { server: server.to_owned(), token: signed_in.token, fingerprint, ca_cert })?;
    match &conn.trust {
        Trust::Pinned(fingerprint) => {
            println!("signed in to {server} as {}; its certificate {fingerprint} is pinned", args.login)
        }
        _ => println!("signed in to {server} as {}", args.login),
    }
    Ok(())
}

/// `flvpc logout`.
pub async fn logout() -> anyhow::Result<()> {
    call(reqwest::Method::POST, "/api/v1/auth/logout", None).await?;
    std::fs::remove_file(config_path()?).context("cannot remove the stored token")?;
    println!("signed out");
    Ok(())
}

/// `flvpc me`.
pub async fn me() -> anyhow::Result<()> {
    print(&call(reqwest::Method::GET, "/api/v1/me", None).await?);
    Ok(())
}

/// `flvpc ns …`.
pub async fn ns(command: &NsCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let value = match command {
        NsCommand::List => call(Method::GET, "/api/v1/namespaces", None).await?,
        NsCommand::Create { name } => call(Method::POST, "/api/v1/namespaces", Some(json!({"name": name}))).await?,
        NsCommand::Delete { name } => {
            call(Method::DELETE, &format!("/api/v1/namespaces/{}", segment(name)?), None).await?
        }
        NsCommand::Members { name } => {
            call(Method::GET, &format!("/api/v1/namespaces/{}/members", segment(name)?), None).await?
        }
        NsCommand::SetMember { name, login, role } => {
            let path = format!("/api/v1/namespaces/{}/members/{}", segment(name)?, segment(login)?);
            call(Method::PUT, &path, Some(json!({"role": role}))).await?
        }
    };
    if !value.is_null() {
        print(&value);
    }
    Ok(())
}

/// `flvpc keys …`.
pub async fn keys(command: &KeysCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let value = match command {
        KeysCommand::List => call(Method::GET, "/api/v1/keys", None).await?,
        KeysCommand::Add { name, file } => {
            let mut key = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut key)?;
            } else {
                key = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            }
            call(Method::POST, "/api/v1/keys", Some(json!({"name": name, "public_key": key.trim()}))).await?
        }
        KeysCommand::Remove { name } => call(Method::DELETE, &format!("/api/v1/keys/{}", segment(name)?), None).await?,
    };
    if !value.is_null() {
        print(&value);
    }
    Ok(())
}

/// A path segment typed by the user: only the characters our names allow, so it
/// cannot change the URL's meaning; the server validates it again.
pub(crate) fn segment(value: &str) -> anyhow::Result<&str> {
    if value.is_empty()
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        || value.starts_with('.')
    {
        bail!("{value:?} is not a valid name");
    }
    Ok(value)
}

/// `flvpc ssh-config`.
pub async fn ssh_config() -> anyhow::Result<()> {
    print!("{}", get_text("/api/v1/ssh-config", "text/plain").await?);
    Ok(())
}

/// `flvpc ssh NS/MACHINE`: replaces this process with OpenSSH's client, jumping through the gateway.
pub async fn ssh(target: &str, extra: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let (ns, name) = split_target(target)?;
    let list: Vec<MachineOut> =
        call_as(reqwest::Method::GET, &format!("/api/v1/namespaces/{ns}/machines"), None).await?;
    let machine = list.iter().find(|m| m.name == name).with_context(|| format!("no machine {name} in {ns}"))?;
    let jump = machine.ssh.jump.as_str();
    let args = ssh_args(jump, ns, name, extra)?;
    let err = std::process::Command::new("ssh").args(args).exec();
    bail!("cannot run ssh (is openssh-client installed?): {err}")
}

/// The arguments for ssh, built from values validated here: the server's text is never
/// passed on as it is, so nothing it sends can become an ssh option (`-oProxyCommand=…`).
/// The server's command must be exactly `ssh -J LOGIN@HOST:PORT root@MACHINE.NAMESPACE`.
fn ssh_args(jump: &str, ns: &str, name: &str, extra: &[String]) -> anyhow::Result<Vec<String>> {
    let unexpected = || anyhow::anyhow!("unexpected SSH command from the server: {jump:?}; is the server a flvpc?");
    let words: Vec<&str> = jump.split_whitespace().collect();
    let destination = format!("root@{name}.{ns}");
    let ["ssh", "-J", gateway, dest] = words.as_slice() else { return Err(unexpected()) };
    if *dest != destination || !dns_label(name) || flvpc_model::NamespaceName::parse(ns).is_err() {
        return Err(unexpected());
    }
    let (user_host, port) = gateway.rsplit_once(':').ok_or_else(unexpected)?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(unexpected)?;
    let (login, host) = user_host.split_once('@').ok_or_else(unexpected)?;
    let login = flvpc_model::Login::parse(login).map_err(|_| unexpected())?;
    if !plain_host(host) {
        return Err(unexpected());
    }
    // `--` ends ssh's options: the destination and the user's extra words are never options.
    let mut args = vec!["-J".to_owned(), format!("{login}@{host}:{port}"), "--".to_owned(), destination];
    args.extend(extra.iter().cloned());
    Ok(args)
}

/// A machine name: a DNS label (a-z 0-9 -, not starting or ending with -).
fn dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

/// A host name or address: letters, digits, `.`, `-`, `:` and IPv6 brackets, never starting with `-`.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_args_are_built_from_validated_names() {
        let args = ssh_args("ssh -J bob@vpc.example:2222 root@node0.team1", "team1", "node0", &["uptime".into()])
            .expect("valid");
        assert_eq!(args, ["-J", "bob@vpc.example:2222", "--", "root@node0.team1", "uptime"]);
        let v6 = ssh_args("ssh -J bob@[::1]:2222 root@node0.team1", "team1", "node0", &[]).expect("IPv6");
        assert_eq!(v6[1], "bob@[::1]:2222");
    }

    #[test]
    fn hostile_server_text_never_becomes_an_option() {
        for jump in [
            "ssh -oProxyCommand=touch\\ /tmp/pwned -J bob@h:2222 root@node0.team1",
            "ssh -J bob@h:2222 root@node0.team1 -oProxyCommand=x",
            "ssh -J -oProxyCommand=x@h:2222 root@node0.team1",
            "ssh -J bob@-oProxyCommand=x:2222 root@node0.team1",
            "ssh -J bob@h:99999 root@node0.team1",
            "ssh -J bob@h:2222 root@other.team1",
            "ssh -J bob@h;id:2222 root@node0.team1",
            "ssh -J Bob@h:2222 root@node0.team1",
            "sh -c id",
            "",
        ] {
            assert!(ssh_args(jump, "team1", "node0", &[]).is_err(), "{jump:?} must be refused");
        }
    }
}
