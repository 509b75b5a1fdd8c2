//! `GET /`: the playground, a page that scores one image through the public API and shows
//! why it got its reward, plus the service's live state. Its three files are compiled into
//! the binary (no CDN, no build step, works offline) and open without an API key (they hold
//! no data; the page asks for the key and sends it with its API calls).

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;

/// The page's paths, all served without a key.
pub const PATHS: [&str; 3] = ["/", APP_JS, STYLE_CSS];
const APP_JS: &str = "/playground/app.js";
const STYLE_CSS: &str = "/playground/style.css";

/// Only this server's own scripts and styles; images from the API's base64 answers and
/// the user's own picked files.
const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
}

/// The page.
pub async fn index() -> impl IntoResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("../../../assets/playground/index.html"),
    )
}

/// Its script.
pub async fn app_js() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../assets/playground/app.js"),
    )
}

/// Its styles.
pub async fn style_css() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../assets/playground/style.css"),
    )
}

/// The routes, for the router.
pub fn routes<S: Clone + Send + Sync + 'static>(
) -> Vec<(&'static str, axum::routing::MethodRouter<S>)> {
    use axum::routing::get;
    vec![
        ("/", get(index)),
        (APP_JS, get(app_js)),
        (STYLE_CSS, get(style_css)),
    ]
}
