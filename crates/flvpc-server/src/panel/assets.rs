//! The browser terminal's static files: our `terminal.js`, and xterm.js with its fit addon and
//! stylesheet, embedded at build time from the npm packages the setup script installs
//! (`build.rs` checks they are there, and says how to install them when they are not).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const JS: &str = "text/javascript";
const CSS: &str = "text/css";

fn file(content_type: &'static str, body: &'static [u8]) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// GET /static/terminal.js: wires xterm.js to the terminal's WebSocket.
pub async fn terminal_js() -> Response {
    file(JS, include_bytes!("terminal.js"))
}

/// GET /static/xterm.js (`@xterm/xterm`).
pub async fn xterm_js() -> Response {
    file(JS, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/node_modules/@xterm/xterm/lib/xterm.js")))
}

/// GET /static/xterm.css (`@xterm/xterm`).
pub async fn xterm_css() -> Response {
    file(CSS, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/node_modules/@xterm/xterm/css/xterm.css")))
}

/// GET /static/addon-fit.js (`@xterm/addon-fit`): sizes the terminal to its box.
pub async fn addon_fit_js() -> Response {
    file(
        JS,
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/node_modules/@xterm/addon-fit/lib/addon-fit.js")),
    )
}
