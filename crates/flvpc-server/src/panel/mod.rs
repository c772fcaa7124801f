//! The web panel: server-rendered pages (maud) that work without JavaScript;
//! a small script only adds confirmations and local times.
//!
//! Every form carries the session's CSRF token and every change is a `core::Action` through
//! `core::dispatch`, like the API's. Pages show each person only what their role allows, and
//! refusals in plain words (`user::say`).

mod account;
mod admin;
mod assets;
mod audit;
mod capacity;
mod chart;
mod console;
mod form;
mod home;
mod layout;
mod machine;
mod machines;
mod namespace;
mod preview;
mod session;
mod terminal;
mod user;

use crate::state::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

pub use user::PanelUser;

/// The panel's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::dashboard))
        .route("/login", get(session::login_page).post(session::login_submit))
        .route("/logout", post(session::logout))
        .route("/account", get(account::show))
        .route("/account/keys", post(account::add_key))
        .route("/account/keys/{name}/delete", post(account::delete_key))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{name}/delete", post(account::delete_token))
        .route("/account/password", post(account::change_password))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{login}/delete", post(admin::delete_user))
        .route("/admin/users/{login}/password", post(admin::reset_password))
        .route("/admin/namespaces", get(admin::namespaces).post(admin::create_namespace))
        .route("/admin/audit", get(audit::audit))
        .route("/admin/audit/export", get(audit::export))
        .route("/admin/capacity", get(capacity::capacity_page))
        .route("/namespaces/{ns}/quota", post(capacity::set_quota))
        .route("/namespaces/{ns}", get(namespace::show))
        .route("/namespaces/{ns}/delete", post(namespace::delete))
        .route("/namespaces/{ns}/cluster", post(machines::save_yaml))
        .route("/namespaces/{ns}/cluster/form", post(machines::save_form))
        .route("/namespaces/{ns}/cluster/preview", post(machines::preview_yaml))
        .route("/namespaces/{ns}/cluster/{action}", post(machines::cluster_action))
        .route("/namespaces/{ns}/machines/{name}", get(machine::show))
        .route("/namespaces/{ns}/machines", post(machines::selected_action))
        .route("/namespaces/{ns}/machines/{name}/console", get(console::show))
        .route("/namespaces/{ns}/machines/{name}/charts", get(machine::charts))
        .route("/namespaces/{ns}/machines/{name}/terminal", get(terminal::show))
        .route("/namespaces/{ns}/machines/{name}/terminal/ws", get(terminal::socket))
        .route("/namespaces/{ns}/machines/{name}/{action}", post(machines::machine_action))
        .route("/namespaces/{ns}/members", post(namespace::set_member))
        .route("/namespaces/{ns}/members/{login}/delete", post(namespace::remove_member))
        .route(
            "/static/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], include_str!("app.css")).into_response() }),
        )
        .route(
            "/static/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], include_str!("app.js")).into_response() }),
        )
        .route("/static/terminal.js", get(assets::terminal_js))
        .route("/static/xterm.js", get(assets::xterm_js))
        .route("/static/xterm.css", get(assets::xterm_css))
        .route("/static/addon-fit.js", get(assets::addon_fit_js))
}
