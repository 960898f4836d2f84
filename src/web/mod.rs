//! The users' web listener (`[web]`): the pages behind the signed links in moat's emails
//! ([`link_pages`]), the Message Center ([`center`]) and its sessions ([`session`]); the admin
//! console and API ([`admin`], on its own listener); the operator's `/metrics` listener
//! ([`operator`]); the page shell every page is rendered in.
//!
//! Guarantees: every page is static HTML rendered from a template (`templates/`, every value
//! escaped; see [`crate::html`]) inside the one page shell ([`Page`]), in its reader's language
//! (their preference, else their domain's; a page that cannot tell whose it is, the browser's
//! `Accept-Language`; the admin console in English; see [`crate::i18n`]), under a
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
use crate::html::Markup;
use crate::i18n::{Catalog, Lang, Locale};
use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use listener::{CONNECTION_DEADLINE, ClientAddr, MAX_CONNECTIONS};

/// Largest request body read (a bulk action on a page of items is about 4 KiB).
pub const MAX_BODY: usize = 16 * 1024;

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Serves the web listener until the server shuts down.
pub async fn serve(listener: TcpListener, shared: Arc<App>) {
    let shutdown = shared.shutdown.clone();
    let app = Router::new()
        .route("/l/{token}", get(link_pages::show).post(link_pages::act))
        .route("/", get(|| async { axum::response::Redirect::to("/mc") }))
        .merge(center::routes())
        .route("/logo/{domain}", get(logo))
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

/// The page shell: the document, its title as the heading, the navigation of its area, and the
/// page's own content (a rendered template).
#[derive(Template)]
#[template(path = "page.html")]
struct Page<'a> {
    /// The texts, in the reader's language.
    t: &'static Catalog,
    title: &'a str,
    nav: Nav<'a>,
    /// How the user's domain is named to them (in the header).
    brand: &'a str,
    /// Where its logo is served, if it has one.
    logo: Option<&'a str>,
    body: Markup,
}

/// How a user's domain shows itself in the header of their pages.
pub(crate) struct Brand {
    /// Its display name (default: the domain name).
    pub name: String,
    /// Where moat serves its logo (`[[domain]] logo`), if it has one.
    pub logo: Option<String>,
}

impl Brand {
    pub fn of(config: &crate::config::Config, address: &str) -> Brand {
        Brand { name: config.display_name_for(address), logo: config.logo_url_for(address) }
    }
}

/// Which header and navigation a page carries.
pub(crate) enum Nav<'a> {
    /// None: the sign-in pages, and link pages that cannot tell whose they are.
    None,
    /// The pages behind a user's signed links: their domain's name (display name), no navigation.
    User(&'a Brand),
    /// The Message Center's, for the signed-in user (their form token, address, and their
    /// domain's display name).
    Center { csrf: &'a str, address: &'a str, brand: &'a Brand },
    /// The admin console's.
    Admin,
}

/// A page of short paragraphs and an optional link onward.
#[derive(Template)]
#[template(path = "notice.html")]
pub(crate) struct Notice<'a> {
    paragraphs: Vec<std::borrow::Cow<'a, str>>,
    link: Option<(&'a str, &'a str)>,
}

impl<'a> Notice<'a> {
    pub(crate) fn new(paragraph: impl Into<std::borrow::Cow<'a, str>>) -> Notice<'a> {
        Notice { paragraphs: vec![paragraph.into()], link: None }
    }

    /// One more paragraph.
    pub(crate) fn and(mut self, paragraph: impl Into<std::borrow::Cow<'a, str>>) -> Notice<'a> {
        self.paragraphs.push(paragraph.into());
        self
    }

    /// A link onward, after the paragraphs.
    pub(crate) fn link(mut self, href: &'a str, text: &'a str) -> Notice<'a> {
        self.link = Some((href, text));
        self
    }
}

/// The language of a page that cannot tell whose it is: the browser's (`Accept-Language`).
fn browser_lang(headers: &HeaderMap) -> &'static Catalog {
    let asked = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    crate::i18n::from_accept_language(asked).catalog()
}

/// How the user `address` reads moat (see `Config::locale_for`), from their preferences; their
/// domain's language and zone when the store cannot say (the zone's name is shown with every time).
pub(crate) async fn locale_of(shared: &App, address: &str) -> Locale {
    let prefs = match shared.quarantine.store().get_preferences(address).await {
        Ok(prefs) => prefs,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            crate::store::Preferences::default()
        }
    };
    shared.config.load().locale_for(address, &prefs.language, &prefs.time_zone)
}

/// A whole page under the links' CSP, without navigation, in `t`'s language.
fn page(t: &'static Catalog, status: StatusCode, title: &str, body: &impl Template) -> Response {
    page_with(t, status, title, Nav::None, body, CSP)
}

/// A page behind a signed link of `address`, under the links' CSP, in their language `t`: their
/// domain's display name in the header.
fn user_page(shared: &App, t: &'static Catalog, status: StatusCode, address: &str, title: &str, body: &impl Template) -> Response {
    let brand = Brand::of(&shared.config.load(), address);
    page_with(t, status, title, Nav::User(&brand), body, CSP)
}

/// A whole page under `csp` in `t`'s language: `body` rendered inside the page shell with
/// `nav`. A page that cannot be rendered is a 500 (and a log line), never half a page.
fn page_with(t: &'static Catalog, status: StatusCode, title: &str, nav: Nav<'_>, body: &impl Template, csp: &'static str) -> Response {
    let (brand, logo) = match &nav {
        Nav::Center { brand, .. } | Nav::User(brand) => (brand.name.as_str(), brand.logo.as_deref()),
        Nav::None | Nav::Admin => ("", None),
    };
    let rendered = Markup::render(body).and_then(|body| Page { t, title, nav, brand, logo, body }.render());
    let (status, html) = match rendered {
        Ok(html) => (status, html),
        Err(error) => {
            tracing::error!(event = "web_render_failed", title, error = %error);
            let (title, text) = (Escaped(t.page.error_title.as_str()), Escaped(t.page.cannot_show.as_str()));
            (StatusCode::INTERNAL_SERVER_ERROR, format!("<!doctype html><html lang=\"{}\"><title>{title}</title><p>{text}</p>\n", t.code))
        }
    };
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A domain's logo (`[[domain]] logo`), read from its file on each request and served only as
/// what [`crate::config::read_logo`] finds it to be; 404 for a domain without one (or whose file
/// is gone or has become something else).
async fn logo(State(shared): State<Arc<App>>, Path(domain): Path<String>) -> Response {
    let Some(path) = shared.config.load().domain(&domain).and_then(|d| d.logo.clone()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Ok((kind, bytes))) = tokio::task::spawn_blocking(move || crate::config::read_logo(&path)).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// Catalog text escaped for HTML outside a template.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        askama::filters::Escaper::write_escaped_str(&crate::html::Escape, f, self.0)
    }
}

fn unavailable(t: &'static Catalog) -> Response {
    page(t, StatusCode::SERVICE_UNAVAILABLE, t.page.unavailable_title.as_str(), &Notice::new(t.page.unavailable.as_str()))
}

/// The English texts: the admin console's, and English everywhere else by default.
fn english() -> &'static Catalog {
    Lang::En.catalog()
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
