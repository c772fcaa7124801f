//! The web panel. Being written.
use crate::state::AppState;
/// Panel routes.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
}
