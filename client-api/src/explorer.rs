//! The explorer page, `GET /explorer`: static files built into the binary (no build step,
//! nothing fetched from elsewhere), which read the API's own endpoints.

use axum::http::header;
use axum::response::IntoResponse;

pub async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("../explorer/index.html"))
}

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../explorer/explorer.js"))
}

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../explorer/explorer.css"))
}
