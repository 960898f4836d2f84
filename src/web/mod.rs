//! The users' web listener (`[web]`): the pages behind the signed links in moat's emails
//! ([`link_pages`]), the Message Center ([`center`]) and its sessions ([`session`]); the admin
//! console and API ([`admin`], on its own listener); the operator's `/metrics` listener
//! ([`operator`]); the shared page frame and escaping.
//!
//! Guarantees: every page is static HTML built from escaped values, under a
//! Content-Security-Policy that allows no script and no remote content, with forms only to this
//! origin; no GET changes a message or a setting; connections have a deadline and a bound (see
//! [`listener`]); request bodies are bounded ([`MAX_BODY`]).

pub mod admin;
pub mod center;
mod link_pages;
mod listener;
mod login;
pub mod operator;
pub mod sanitize;
pub mod session;

use crate::app::App;
use crate::clock::minute_utc as date;
pub use crate::html::{escape, escape_keep_lines};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use listener::{CONNECTION_DEADLINE, ClientAddr, MAX_CONNECTIONS};

/// Largest request body read (a bulk action on a page of items is about 4 KiB).
pub const MAX_BODY: usize = 16 * 1024;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Serves the web listener until the server shuts down.
pub async fn serve(listener: TcpListener, shared: Arc<App>) {
    let shutdown = shared.shutdown.clone();
    let app = Router::new()
        .route("/l/{token}", get(link_pages::show).post(link_pages::act))
        .route("/", get(|| async { axum::response::Redirect::to("/mc") }))
        .merge(center::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared);
    serve_app(listener, app, shutdown, "web_listener").await;
}

/// Serves `app` on `listener` (deadlined, bounded connections) until `shutdown` turns true;
/// a failure is logged as `event`.
pub async fn serve_app(listener: TcpListener, app: Router, mut shutdown: tokio::sync::watch::Receiver<bool>, event: &'static str) {
    let app = app.into_make_service_with_connect_info::<ClientAddr>();
    let server = axum::serve(listener::WebListener::new(listener), app).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|down| *down).await;
    });
    if let Err(error) = server.await {
        tracing::error!(event, error = %error);
    }
}

/// A submitted form (`application/x-www-form-urlencoded`), keys in order, repeats kept.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Form {
        Form(serde_urlencoded::from_bytes(body).unwrap_or_default())
    }

    /// The first value of `name` ("" when there is none).
    pub(crate) fn one(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A whole page under the links' CSP: `body` is trusted HTML built from escaped values.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with(status, title, body, CSP)
}

/// A whole page under `csp`: `body` is trusted HTML built from escaped values.
fn page_with(status: StatusCode, title: &str, body: &str, csp: &'static str) -> Response {
    let mut response = (status, crate::html::page(title, body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "<p>The quarantine cannot be reached right now. Please try again in a few minutes.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::Form;

    #[test]
    fn forms_keep_repeated_keys() {
        let form = Form::parse(b"csrf=abc&id=1&id=2&action=release&entry=%40example.test");
        assert_eq!(form.one("csrf"), "abc");
        assert_eq!(form.all("id").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(form.one("entry"), "@example.test");
        assert_eq!(form.one("missing"), "");
    }
}
