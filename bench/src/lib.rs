//! What the benchmark programs share: a real `flvpc serve` in a temporary data dir,
//! processes that are killed when dropped, and small helpers.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running flvpc server with a superadmin `admin`, over loopback.
pub struct Flvpc {
    /// The server process.
    pub process: Killed,
    /// `http://127.0.0.1:PORT` (or `https://` for [`Flvpc::start_https`]).
    pub base: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// The superadmin's bearer token.
    pub admin: String,
}

impl Flvpc {
    /// `flvpc admin init` and `flvpc serve --listen 127.0.0.1:<free> <extra>` in `data`, then signs in.
    pub async fn start(binary: &Path, data: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_logged(binary, data, extra, None).await
    }

    /// [`Flvpc::start`], with the server's output written to `log` at level `info` when given
    /// (what a benchmark reads back from the log, e.g. the accelerator the server found), else
    /// discarded at level `warn`.
    pub async fn start_logged(binary: &Path, data: &Path, extra: &[&str], log: Option<&Path>) -> Result<Self> {
        Self::start_with(binary, data, extra, log, Transport::PlainHttp).await
    }

    /// [`Flvpc::start`] over HTTPS with the self-signed certificate the server makes in `data`,
    /// which the client trusts (and nothing else).
    pub async fn start_https(binary: &Path, data: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_with(binary, data, extra, None, Transport::Https).await
    }

    async fn start_with(
        binary: &Path,
        data: &Path,
        extra: &[&str],
        log: Option<&Path>,
        transport: Transport,
    ) -> Result<Self> {
        if !binary.exists() {
            bail!(
                "{} not found: build it first (cargo build --release -p flvpc) or pass --flvpc PATH",
                binary.display()
            );
        }
        let mut init = Command::new(binary)
            .args(["admin", "init", "--login", "admin", "--password-stdin"])
            .env("FLVPC_DATA_DIR", data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        init.stdin.take().context("stdin")?.write_all(b"admin-password\n")?;
        init.wait()?;
        let port = free_port()?;
        let mut serve = Command::new(binary);
        serve.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).args(extra).env("FLVPC_DATA_DIR", data);
        if transport == Transport::PlainHttp {
            // Plain HTTP: the benchmarks measure the control plane, comparable with their earlier runs.
            serve.arg("--plain-http");
        }
        match log {
            Some(log) => {
                let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
                // No colour codes in a file that is parsed.
                serve.env("FLVPC_LOG", "info").env("NO_COLOR", "1").stdout(file.try_clone()?).stderr(file);
            }
            None => {
                serve.env("FLVPC_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let process = Killed(serve.spawn()?);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (base, client) = loop {
            let attempt = match transport {
                Transport::PlainHttp => Some((format!("http://127.0.0.1:{port}"), reqwest::Client::new())),
                // The certificate is there once the server has made it, before it listens.
                Transport::Https => std::fs::read(data.join("tls/cert.pem")).ok().and_then(|pem| {
                    let client = reqwest::Client::builder()
                        .tls_certs_only([reqwest::Certificate::from_pem(&pem).ok()?])
                        .build()
                        .ok()?;
                    Some((format!("https://127.0.0.1:{port}"), client))
                }),
            };
            if let Some((base, client)) = attempt {
                if client.get(format!("{base}/healthz")).send().await.is_ok() {
                    break (base, client);
                }
            }
            if Instant::now() > deadline {
                bail!("flvpc serve did not start");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let admin = login(&client, &base, "admin", "admin-password").await?;
        Ok(Self { process, base, client, admin })
    }

    /// One API call with `token`; the JSON answer, or an error with the server's message.
    pub async fn call(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Saves a cluster spec (YAML).
    pub async fn put_spec(&self, token: &str, ns: &str, yaml: String) -> Result<()> {
        let resp = self
            .client
            .put(format!("{}/api/v1/namespaces/{ns}/cluster", self.base))
            .bearer_auth(token)
            .header("content-type", "application/yaml")
            .body(yaml)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("saving the spec failed: {}", resp.text().await?);
        }
        Ok(())
    }

    /// Waits until an operation succeeds (an error if it fails).
    pub async fn wait_op(&self, token: &str, id: &str) -> Result<()> {
        loop {
            let op = self.call(token, reqwest::Method::GET, &format!("/api/v1/operations/{id}"), None).await?;
            match op["state"].as_str() {
                Some("succeeded") => return Ok(()),
                Some("failed") => bail!("operation failed: {op}"),
                // Loopback and a read served from memory: a fine poll costs little and keeps the
                // poll's own granularity out of the times measured.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Starts an operation (POST) and waits for it.
    pub async fn act(&self, token: &str, path: &str) -> Result<()> {
        let op = self.call(token, reqwest::Method::POST, path, None).await?;
        self.wait_op(token, op["operation"].as_str().context("operation id")?).await
    }
}

/// How a benchmark's server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `--plain-http`.
    PlainHttp,
    /// HTTPS with the server's self-signed certificate.
    Https,
}

/// Signs in; the bearer token.
pub async fn login(client: &reqwest::Client, base: &str, login: &str, password: &str) -> Result<String> {
    let resp: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": login, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    Ok(resp["token"].as_str().context("no token")?.to_owned())
}

/// The median (of an even count, the mean of the middle two: with the two runs a slow
/// benchmark can afford, the upper one would be the maximum); zero for no values.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    let mid = values.len() / 2;
    match values.len() {
        0 => Duration::ZERO,
        n if n % 2 == 0 => (values[mid - 1] + values[mid]) / 2,
        _ => values[mid],
    }
}

/// Durations in seconds with two decimals, space-separated.
pub fn secs(values: &[Duration]) -> String {
    values.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(" ")
}

/// The host's load average (1, 5 and 15 minutes) as the kernel prints it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown (/proc/loadavg: {e})"))
}
