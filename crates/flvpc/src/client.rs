//! Client commands: talk to a flvpc server over the REST API with a token kept
//! in the user's config dir (`$XDG_CONFIG_HOME/flvpc/config.json`, mode 0600).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Read;
use std::path::PathBuf;

/// Flags of `flvpc login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. http://vpc.example:5555.
    #[arg(long, env = "FLVPC_SERVER", default_value = "http://127.0.0.1:5555")]
    server: String,
    /// Your login.
    #[arg(long)]
    login: String,
    /// Read the password from standard input.
    #[arg(long, required = true)]
    password_stdin: bool,
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
        .with_context(|| "not signed in: run `flvpc login --login YOU --password-stdin`")?;
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

async fn call(method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let config = load()?;
    request(&config.server, Some(&config.token), method, path, body).await
}

async fn request(
    server: &str,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let response = req.send().await.with_context(|| format!("cannot reach the flvpc server at {server}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value: Value =
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    if !status.is_success() {
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        bail!("{message} (HTTP {})", status.as_u16());
    }
    Ok(value)
}

fn print(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

/// `flvpc login`.
pub async fn login(args: &LoginArgs) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password).context("cannot read the password from standard input")?;
    let body = json!({"login": args.login, "password": password.trim_end_matches(['\n', '\r'])});
    let value = request(&args.server, None, reqwest::Method::POST, "/api/v1/auth/login", Some(body)).await?;
    let token = value.get("token").and_then(Value::as_str).context("the server sent no token")?;
    save(&ClientConfig { server: args.server.clone(), token: token.to_owned() })?;
    println!("signed in to {} as {}", args.server, args.login);
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
fn segment(value: &str) -> anyhow::Result<&str> {
    if value.is_empty()
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        || value.starts_with('.')
    {
        bail!("{value:?} is not a valid name");
    }
    Ok(value)
}
