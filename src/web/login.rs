//! The Message Center's sign-in form (`/login`): "send me a link". Anyone can fill it in, so it
//! must not become a way to mail-bomb users or to probe which addresses exist.
//!
//! Guarantees: a login email goes only to an address moat would accept mail for (the same
//! open-relay and recipient check as `RCPT`), never to a user who opted out of moat's emails,
//! and within three hourly bounds counted in the store (so across nodes): requests per client
//! network (`[web] login_requests_per_client`, counted before anything else, so the form cannot
//! drive recipient callouts either), emails per address (`login_emails_per_address`) and emails
//! in all (`login_emails_per_hour`). The answer page is the same whatever happened, in the
//! browser's language; the email is in the user's (their preference, else their domain's).

use super::session::cross_site;
use super::{ClientAddr, Form, Notice, browser_lang, page};
use crate::app::App;
use crate::i18n::{Catalog, Lang};
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
struct LoginPage {
    t: &'static Catalog,
}

pub(super) async fn form(headers: HeaderMap) -> Response {
    let t = browser_lang(&headers);
    page(t, StatusCode::OK, t.login.title.as_str(), &LoginPage { t })
}

/// Sends a login link when every check passes (see the module docs); answers the same page
/// either way, so the form tells nobody which addresses exist or were refused.
pub(super) async fn send(
    State(shared): State<Arc<App>>,
    ConnectInfo(client): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t = browser_lang(&headers);
    if cross_site(&headers) {
        return page(t, StatusCode::FORBIDDEN, t.page.refused_title.as_str(), &Notice::new(t.login.other_site.as_str()));
    }
    let address = Form::parse(&body).one("address").trim().to_ascii_lowercase();
    let outcome = match may_send(&shared, client.0.ip(), &address).await {
        Ok(lang) => send_link(&shared, &address, lang).await,
        Err(reason) => reason,
    };
    tracing::info!(event = "login_link", client_ip = %client.0.ip(), user = %printable(&address), outcome);
    page(t, StatusCode::OK, t.login.sent_title.as_str(), &Notice::new(t.login.sent.as_str()))
}

/// Whether a login email may go to `address` for this request, and in which language; the
/// error is the reason not, as logged.
async fn may_send(shared: &App, client: IpAddr, address: &str) -> Result<Lang, &'static str> {
    let config = shared.config.load_full();
    let web = config.web.as_ref().ok_or("no_web")?;
    let store = shared.quarantine.store();
    let client_key = format!("login-client:{}", store::client_network(client));
    within(store, &client_key, web.login_requests_per_client, "client_rate_limited").await?;
    if address.len() > 254 || address.chars().any(char::is_control) || !shared.verifier.accepts(&config, address).await {
        return Err("not_a_recipient");
    }
    let lang = match store.get_preferences(address).await {
        Ok(prefs) if prefs.opt_out => return Err("opted_out"),
        Ok(prefs) => config.language_for(address, &prefs.language),
        Err(_) => return Err("store_error"),
    };
    within(store, &format!("login:{address}"), web.login_emails_per_address, "address_rate_limited").await?;
    within(store, "login-all", web.login_emails_per_hour, "global_rate_limited").await?;
    Ok(lang)
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

async fn send_link(shared: &App, address: &str, lang: Lang) -> &'static str {
    let config = shared.config.load_full();
    let Some(key) = shared.quarantine.links() else { return "no_web" };
    let Some((envelope, message)) = crate::notices::login_email(&config, key, address, lang, store::unix_now()) else {
        return "no_web";
    };
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
