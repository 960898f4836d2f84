//! The Message Center's sign-in form (`/login`): "send me a link". Anyone can fill it in, so it
//! must not become a way to mail-bomb users or to probe which addresses exist.
//!
//! Guarantees: a login email goes only to an address moat would accept mail for (the same
//! open-relay and recipient check as `RCPT`), never to a user who opted out of moat's emails,
//! and within three hourly bounds counted in the store (so across nodes): requests per client
//! network (`[web] login_requests_per_client`, counted before anything else, so the form cannot
//! drive recipient callouts either), emails per address (`login_emails_per_address`) and emails
//! in all (`login_emails_per_hour`). The answer page is the same whatever happened.

use super::session::cross_site;
use super::{ClientAddr, Form, Notice, page};
use crate::app::App;
use crate::store::{self, Store};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The window every login bound counts in.
const HOUR: Duration = Duration::from_secs(3600);

#[derive(askama::Template)]
#[template(path = "web/login.html")]
struct LoginPage;

pub(super) async fn form() -> Response {
    page(StatusCode::OK, "Open your Message Center", &LoginPage)
}

/// Sends a login link when every check passes (see the module docs); answers the same page
/// either way, so the form tells nobody which addresses exist or were refused.
pub(super) async fn send(
    State(shared): State<Arc<App>>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if cross_site(&headers) {
        return page(StatusCode::FORBIDDEN, "Request refused", &Notice::new("This form came from another site."));
    }
    let address = Form::parse(&body).one("address").trim().to_ascii_lowercase();
    let outcome = match may_send(&shared, client.0.ip(), &address).await {
        Ok(()) => send_link(&shared, &address).await,
        Err(reason) => reason,
    };
    tracing::info!(event = "login_link", client_ip = %client.0.ip(), user = %printable(&address), outcome);
    page(
        StatusCode::OK,
        "Check your mail",
        &Notice::new(
            "If that address gets its mail through us, a link to its Message Center is on its way. It works for a short time only.",
        ),
    )
}

/// Whether a login email may go to `address` for this request; the error is the reason not,
/// as logged.
async fn may_send(shared: &App, client: IpAddr, address: &str) -> Result<(), &'static str> {
    let config = shared.config.load_full();
    let web = config.web.as_ref().ok_or("no_web")?;
    let store = shared.quarantine.store();
    let client_key = format!("login-client:{}", store::client_network(client));
    within(store, &client_key, web.login_requests_per_client, "client_rate_limited").await?;
    if address.len() > 254 || address.chars().any(char::is_control) || !shared.verifier.accepts(&config, address).await {
        return Err("not_a_recipient");
    }
    match store.get_preferences(address).await {
        Ok(prefs) if prefs.opt_out => return Err("opted_out"),
        Ok(_) => {}
        Err(_) => return Err("store_error"),
    }
    within(store, &format!("login:{address}"), web.login_emails_per_address, "address_rate_limited").await?;
    within(store, "login-all", web.login_emails_per_hour, "global_rate_limited").await
}

/// Counts one more hit on `key` in this hour; `Err(over)` past `limit`. A store that cannot
/// count refuses too: the bound must hold.
async fn within(store: &Store, key: &str, limit: u64, over: &'static str) -> Result<(), &'static str> {
    match store.hit_rate(key, HOUR, store::unix_now()).await {
        Ok(hits) if hits > limit => Err(over),
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::warn!(event = "login_link", error = %error, outcome = "store_error");
            Err("store_error")
        }
    }
}

async fn send_link(shared: &App, address: &str) -> &'static str {
    let config = shared.config.load_full();
    let Some(key) = shared.quarantine.links() else { return "no_web" };
    let Some((envelope, message)) = crate::notices::login_email(&config, key, address, store::unix_now()) else { return "no_web" };
    match shared.quarantine.send_to_user(envelope, message).await {
        Ok(id) => {
            tracing::info!(event = "login_link", user = %address, queue_id = %id);
            shared.queue.submit(id);
            "sent"
        }
        Err(error) => {
            tracing::error!(event = "login_link", user = %address, error = %error, outcome = "not sent");
            "not_sent"
        }
    }
}

/// What the user typed, safe for a log line (control characters escaped, at most 254 chars).
fn printable(text: &str) -> String {
    text.chars().take(254).flat_map(char::escape_debug).collect()
}
