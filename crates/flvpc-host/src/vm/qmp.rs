//! The few QMP (QEMU Machine Protocol) exchanges flvpc needs, over QEMU's unix socket:
//! one JSON object per line each way, events interleaved with replies.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long one reply may take: QEMU answers at once unless it is wedged.
const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// Sends `command` (an argument-less QMP command such as `system_powerdown`) after the
/// capabilities handshake. Returns what went wrong in words.
pub async fn execute(socket: &Path, command: &str) -> Result<(), String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to the QMP socket {}: {e}", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting = next_line(&mut lines).await?;
    if !greeting.contains("\"QMP\"") {
        return Err(format!("{} is not a QMP socket (it said {greeting:?})", socket.display()));
    }
    for cmd in ["qmp_capabilities", command] {
        let request = serde_json::json!({ "execute": cmd }).to_string() + "\n";
        write.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send {cmd} over QMP: {e}"))?;
        loop {
            let line = next_line(&mut lines).await?;
            let reply: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| format!("QEMU sent a line that is not JSON ({e}): {line:?}"))?;
            if reply.get("return").is_some() {
                break;
            }
            if let Some(err) = reply.get("error") {
                return Err(format!("QEMU refused {cmd}: {err}"));
            }
            // An asynchronous event (e.g. POWERDOWN): not our reply, keep reading.
        }
    }
    Ok(())
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>) -> Result<String, String> {
    match tokio::time::timeout(REPLY_DEADLINE, lines.next_line()).await {
        Ok(Ok(Some(line))) => Ok(line),
        Ok(Ok(None)) => Err("QEMU closed the QMP socket".to_owned()),
        Ok(Err(e)) => Err(format!("cannot read from the QMP socket: {e}")),
        Err(_) => Err(format!("QEMU did not answer on its QMP socket within {REPLY_DEADLINE:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A one-connection QMP server: greets, then answers each request with `replies[i]`
    /// (an event line first, as QEMU may interleave them), and returns what it was asked.
    async fn serve(listener: UnixListener, replies: Vec<&'static str>) -> Vec<String> {
        let (stream, _) = listener.accept().await.expect("accept");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").await.expect("greet");
        let mut asked = Vec::new();
        for reply in replies {
            let Ok(Some(line)) = lines.next_line().await else { break };
            asked.push(line);
            write.write_all(b"{\"event\": \"POWERDOWN\", \"timestamp\": {}}\n").await.expect("event");
            write.write_all(reply.as_bytes()).await.expect("reply");
            write.write_all(b"\n").await.expect("newline");
        }
        asked
    }

    #[tokio::test]
    async fn handshake_then_command_skipping_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("qmp.sock");
        let server = tokio::spawn(serve(UnixListener::bind(&socket).expect("bind"), vec!["{\"return\": {}}"; 2]));
        execute(&socket, "system_powerdown").await.expect("QMP exchange");
        let asked = server.await.expect("server");
        assert_eq!(asked, ["{\"execute\":\"qmp_capabilities\"}", "{\"execute\":\"system_powerdown\"}"]);
    }

    #[tokio::test]
    async fn errors_name_the_command_and_a_missing_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("qmp.sock");
        let refuse = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}";
        let server = tokio::spawn(serve(UnixListener::bind(&socket).expect("bind"), vec!["{\"return\": {}}", refuse]));
        let err = execute(&socket, "system_powerdown").await.expect_err("refused");
        assert!(err.contains("refused system_powerdown") && err.contains("GenericError"), "{err}");
        server.await.expect("server");
        let err = execute(&dir.path().join("none.sock"), "system_powerdown").await.expect_err("no socket");
        assert!(err.contains("cannot connect") && err.contains("none.sock"), "{err}");
    }
}
