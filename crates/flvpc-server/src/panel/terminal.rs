//! A root shell in a running machine, in the browser: the page (xterm.js, embedded, wired by our
//! `terminal.js`) and its WebSocket.
//!
//! The WebSocket is authorized like every panel request: the session cookie, membership of the
//! namespace read afresh at the handshake (strangers get the panel's 404), and an `Origin` that
//! must be this server's own (`Host`), so another site cannot open a terminal with a member's
//! cookie (cross-site WebSocket hijacking). Binary frames carry terminal bytes both ways; text
//! frames carry the browser's control messages (`{"type":"resize","cols":N,"rows":M}`). A session
//! that cannot start (machine not running, caps reached, sshd unreachable) is accepted and closed
//! at once with a reason the page shows. Each session writes one `machine.terminal` audit record
//! when it ends (`core::terminal`).

use super::layout::{self, page, seg, Nav};
use super::PanelUser;
use crate::core::terminal::{self as sessions, Target};
use crate::core::Actor;
use crate::state::AppState;
use crate::terminal::{self, TerminalKey, TerminalSlot};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use maud::html;
use russh::ChannelMsg;
use std::net::SocketAddr;
use std::time::Instant;

/// GET /namespaces/{ns}/machines/{name}/terminal: the page.
pub async fn show(
    State(state): State<AppState>,
    user: PanelUser,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let target = match sessions::target(&state, user.caller.principal(), &ns, &name).await {
        Ok(target) => target,
        Err(err) => return layout::error_page(err),
    };
    let machine_page = format!("/namespaces/{}/machines/{}", seg(&ns), seg(&name));
    let socket = format!("{machine_page}/terminal/ws");
    let unavailable = match (&state.config.terminal_key, &target) {
        (None, _) => Some(NO_KEY.to_owned()),
        (_, Target::Unavailable(reason)) => Some(reason.clone()),
        (Some(_), Target::At(_)) => None,
    };
    let body = html! {
        // xterm.js and its stylesheet, only on this page (embedded at build time, see build.rs).
        link rel="stylesheet" href="/static/xterm.css";
        script src="/static/xterm.js" defer {}
        script src="/static/addon-fit.js" defer {}
        script src="/static/terminal.js" defer {}
        p { a href={ "/namespaces/" (seg(&ns)) "#machines" } { "← " (ns) } " · " a href=(machine_page) { "machine " (name) } }
        section #terminal-page {
            div.title-row {
                h1 { "Terminal on " (name) }
            }
            p.muted {
                "A root shell on the machine, as " code { "ssh root@" (name) "." (ns) } " gives. "
                "It ends when you close this page, when the shell exits, or after 30 minutes without input or output."
            }
            @if let Some(reason) = &unavailable {
                p.empty #terminal-status role="status" { (reason) }
            } @else {
                p.muted #terminal-status role="status" aria-live="polite" { "Connecting…" }
                div.terminal #terminal data-socket=(socket) aria-label={ "Terminal on " (name) } {}
            }
        }
    };
    page(&state, &user, &format!("Terminal on {name}"), Nav::Namespace, body)
}

/// What the page says when the server has no terminal key.
const NO_KEY: &str = "This server offers no browser terminal (it was started without its terminal key). \
                      Use SSH instead.";

/// GET /namespaces/{ns}/machines/{name}/terminal/ws: the terminal's WebSocket.
pub async fn socket(
    State(state): State<AppState>,
    user: PanelUser,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let principal = user.caller.principal();
    let target = match sessions::target(&state, principal, &ns, &name).await {
        Ok(target) => target,
        Err(err) => return layout::error_page(err),
    };
    let Ok(upgrade) = upgrade else {
        let text = "This is the terminal's WebSocket: open the terminal page instead.";
        return (StatusCode::BAD_REQUEST, text).into_response();
    };
    if !same_origin(&headers) {
        let text = "A terminal may be opened only from this server's own pages (the request came from another site).";
        return (StatusCode::FORBIDDEN, text).into_response();
    }
    // What the session will be is decided before the upgrade, the place in the caps included.
    let plan = match (state.config.terminal_key.clone(), target) {
        (None, _) => Err(Refusal { outcome: "unavailable", code: close_code::POLICY, reason: NO_KEY.to_owned() }),
        (_, Target::Unavailable(reason)) => Err(Refusal { outcome: "not_running", code: close_code::POLICY, reason }),
        (Some(key), Target::At(addr)) => match state.terminals.try_enter(principal.user_id()) {
            Ok(slot) => Ok(Plan { key, addr, _slot: slot }),
            Err(full) => {
                Err(Refusal { outcome: "too_many_terminals", code: close_code::AGAIN, reason: full.to_string() })
            }
        },
    };
    let actor = user.caller.actor();
    upgrade
        .max_frame_size(terminal::MAX_FRAME)
        .max_message_size(terminal::MAX_FRAME)
        .on_upgrade(move |socket| session(state, actor, ns, name, socket, plan))
}

/// A session that may start: the key, the machine's address, and its place in the caps (held
/// until the session ends).
struct Plan {
    key: TerminalKey,
    addr: SocketAddr,
    _slot: TerminalSlot,
}

/// Why a session cannot start: the audit outcome, the WebSocket close code and the sentence.
struct Refusal {
    outcome: &'static str,
    code: u16,
    reason: String,
}

/// One terminal session from the upgrade to its audit record.
async fn session(
    state: AppState,
    actor: Actor,
    ns: String,
    name: String,
    mut socket: WebSocket,
    plan: Result<Plan, Refusal>,
) {
    let started = Instant::now();
    let refused = |outcome: &'static str, reason: String| sessions::Session {
        outcome,
        duration: started.elapsed(),
        up: 0,
        down: 0,
        reason: Some(reason),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(refusal) => {
            close(&mut socket, refusal.code, &refusal.reason).await;
            sessions::record(&state, &actor, &ns, &name, &refused(refusal.outcome, refusal.reason)).await;
            return;
        }
    };
    let addr = plan.addr;
    let shell = match terminal::open_shell(&plan.key, addr, (80, 24), terminal::CONNECT_TIMEOUT).await {
        Ok(shell) => shell,
        Err(reason) => {
            close(&mut socket, close_code::ERROR, &reason).await;
            sessions::record(&state, &actor, &ns, &name, &refused("connect_failed", reason)).await;
            return;
        }
    };
    let end = relay(socket, shell).await;
    // The place in the caps is free before the audit write.
    drop(plan);
    let record = sessions::Session {
        outcome: "ok",
        duration: started.elapsed(),
        up: end.up,
        down: end.down,
        reason: Some(end.reason),
    };
    sessions::record(&state, &actor, &ns, &name, &record).await;
}

/// How a relay ended.
struct End {
    up: u64,
    down: u64,
    reason: String,
}

/// Copies terminal bytes both ways until either side closes, fails, or both stay quiet for the
/// idle timeout; then closes the other side too.
async fn relay(socket: WebSocket, shell: terminal::Shell) -> End {
    let (mut to_browser, mut from_browser) = socket.split();
    let terminal::Shell { channel, connection } = shell;
    let (mut from_machine, to_machine) = channel.split();
    let (mut up, mut down) = (0u64, 0u64);
    let idle = tokio::time::sleep(terminal::IDLE_TIMEOUT);
    tokio::pin!(idle);
    let fresh = || tokio::time::Instant::now() + terminal::IDLE_TIMEOUT;
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    // The close the browser gets, when the end is the machine's or the timeout's.
    let (reason, close_with) = loop {
        tokio::select! {
            frame = from_browser.next() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    up += count(bytes.len());
                    idle.as_mut().reset(fresh());
                    if to_machine.data_bytes(bytes).await.is_err() {
                        break ("the machine closed the session".to_owned(), Some(close_code::NORMAL));
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Some((cols, rows)) = resize(text.as_str()) {
                        let _ = to_machine.window_change(cols, rows, 0, 0).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None => break ("the browser closed the terminal".to_owned(), None),
                Some(Ok(_)) => {}
                Some(Err(err)) => break (format!("the browser's connection failed: {err}"), None),
            },
            message = from_machine.wait() => match message {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    down += count(data.len());
                    idle.as_mut().reset(fresh());
                    if to_browser.send(Message::Binary(data)).await.is_err() {
                        break ("the browser went away".to_owned(), None);
                    }
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    break ("the shell ended".to_owned(), Some(close_code::NORMAL));
                }
                Some(_) => {}
            },
            () = &mut idle => {
                let minutes = terminal::IDLE_TIMEOUT.as_secs() / 60;
                break (format!("no input or output for {minutes} minutes"), Some(close_code::AWAY));
            }
        }
    };
    if let Some(code) = close_with {
        let frame = CloseFrame { code, reason: clipped(&reason).into() };
        let _ = to_browser.send(Message::Close(Some(frame))).await;
    }
    let _ = to_machine.eof().await;
    let _ = to_machine.close().await;
    connection.hang_up().await;
    End { up, down, reason }
}

/// Closes the WebSocket with `code` and `reason` (clipped to what a close frame can carry).
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: clipped(reason).into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// A close frame's reason: at most 123 bytes of UTF-8, cut at a character boundary.
fn clipped(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// The size a `{"type":"resize","cols":N,"rows":M}` message asks for, when both are in 1..=500;
/// anything else is ignored.
fn resize(text: &str) -> Option<(u32, u32)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "resize" {
        return None;
    }
    terminal::valid_size(value.get("cols")?.as_u64()?, value.get("rows")?.as_u64()?)
}

/// Whether the handshake's `Origin` is this server as the browser reached it (`Host`), over
/// http or https. Browsers always send `Origin` on a WebSocket handshake: one without it is no
/// page of ours either.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let (Some(origin), Some(host)) = (text(header::ORIGIN), text(header::HOST)) else { return false };
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().expect("host"));
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().expect("origin"));
        }
        headers
    }

    #[test]
    fn only_this_servers_own_origin_passes() {
        assert!(same_origin(&headers(Some("http://127.0.0.1:5555"), "127.0.0.1:5555")));
        assert!(same_origin(&headers(Some("https://Panel.example"), "panel.example")));
        assert!(!same_origin(&headers(Some("http://evil.example"), "127.0.0.1:5555")));
        assert!(!same_origin(&headers(Some("http://127.0.0.1:5556"), "127.0.0.1:5555")));
        assert!(!same_origin(&headers(Some("http://127.0.0.1:5555.evil.example"), "127.0.0.1:5555")));
        assert!(!same_origin(&headers(Some("null"), "127.0.0.1:5555")));
        assert!(!same_origin(&headers(None, "127.0.0.1:5555")));
    }

    #[test]
    fn resize_messages_in_range_only() {
        assert_eq!(resize(r#"{"type":"resize","cols":120,"rows":40}"#), Some((120, 40)));
        assert_eq!(resize(r#"{"type":"resize","cols":0,"rows":40}"#), None);
        assert_eq!(resize(r#"{"type":"resize","cols":120,"rows":501}"#), None);
        assert_eq!(resize(r#"{"type":"resize","cols":-1,"rows":40}"#), None);
        assert_eq!(resize(r#"{"type":"other","cols":120,"rows":40}"#), None);
        assert_eq!(resize("not json"), None);
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = "é".repeat(100);
        let clipped = clipped(&long);
        assert!(clipped.len() <= 123 && clipped.chars().all(|c| c == 'é'));
        assert_eq!(super::clipped("short"), "short");
    }
}
