//! The pages behind the signed links in moat's emails: `GET /l/<token>` shows what the link
//! would do with a button, `POST /l/<token>` does it (release, release and always allow the
//! sender, unsubscribe). Mail security scanners fetch every link in an email, so a GET never
//! acts; the POST of a `List-Unsubscribe` URL is RFC 8058's one-click unsubscribe. A login link
//! (digest, login email) starts a Message Center session and opens it.
//!
//! Guarantees: a link acts only for the user and the item it was signed for (an item of another
//! user is refused even with a valid token); a release goes through `Quarantine::release`, so it
//! happens exactly once however often the button is pressed; the view page shows the message as
//! text only, attachments by name. Pages are in the link's user's language (a link that is not
//! valid: the browser's).

use super::{Notice, browser_lang, locale_of, page, unavailable, user_page};
use crate::app::App;
use crate::digest::build::Author;
use crate::html::{LIST_TEXT, shown};
use crate::i18n::{Catalog, Locale};
use crate::links::{Link, LinkAction, LinkError};
use crate::lists::Entry;
use crate::store::{self, ItemState, ListKind, QuarantineItem, ReleaseVia, StoreError};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// What a link page shows of a held item: who it is from and its subject, whole, and its time
/// in the recipient's time zone.
struct Summary {
    t: &'static Catalog,
    from: Author,
    subject: String,
    date: String,
}

#[derive(askama::Template)]
#[template(path = "web/unsubscribe.html")]
struct UnsubscribePage<'a> {
    t: &'static Catalog,
    address: &'a str,
}

#[derive(askama::Template)]
#[template(path = "web/confirm.html")]
struct ConfirmPage<'a> {
    t: &'static Catalog,
    summary: Summary,
    label: &'a str,
}

#[derive(askama::Template)]
#[template(path = "web/view.html")]
struct ViewPage<'a> {
    t: &'static Catalog,
    summary: Summary,
    /// The plain-language sentence the item leads with, if a `reason` line covers it.
    headline: Option<String>,
    reason: String,
    /// The score, written the language's way.
    score: String,
    text: String,
    attachments: &'a [(String, String)],
    /// Signed release tokens and their buttons' labels.
    buttons: Vec<(String, &'static str)>,
}

fn refused(t: &'static Catalog, error: LinkError) -> Response {
    let why = match error {
        LinkError::Expired => &t.links.expired,
        LinkError::Malformed | LinkError::BadSignature => &t.links.malformed,
    };
    page(t, StatusCode::FORBIDDEN, t.links.invalid_title.as_str(), &Notice::new(why.as_str()))
}

/// A page answering instead of the normal one (boxed: a response is large).
type Refusal = Box<Response>;

/// The verified link and how its user reads moat, or the page that refuses it (in the
/// browser's language: the link cannot say whose it is).
async fn verified(shared: &App, token: &str, headers: &HeaderMap) -> Result<(Link, Locale), Refusal> {
    let t = browser_lang(headers);
    let Some(key) = shared.quarantine.links() else {
        return Err(Box::new(page(t, StatusCode::NOT_FOUND, t.page.not_found_title.as_str(), &Notice::new(t.links.not_enabled.as_str()))));
    };
    let link = key.verify(token, store::unix_now()).map_err(|e| Box::new(refused(t, e)))?;
    let locale = locale_of(shared, &link.address).await;
    Ok((link, locale))
}

/// The item a release link names, if it belongs to the link's user.
async fn owned_item(shared: &App, t: &'static Catalog, link: &Link) -> Result<QuarantineItem, Refusal> {
    match shared.quarantine.store().get_item(&link.item).await {
        Ok(item) if item.recipient.eq_ignore_ascii_case(&link.address) => Ok(item),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(Box::new(user_page(
            shared,
            t,
            StatusCode::NOT_FOUND,
            &link.address,
            t.center.not_found_title.as_str(),
            &Notice::new(t.links.gone.as_str()),
        ))),
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            Err(Box::new(unavailable(t)))
        }
    }
}

/// The item's author and subject, whole, its time in the recipient's time zone.
fn describe(locale: &Locale, item: &QuarantineItem) -> Summary {
    let t = locale.t();
    let subject = if item.subject.is_empty() { t.words.no_subject.as_str() } else { &item.subject };
    Summary {
        t,
        from: Author::of(item, usize::MAX, usize::MAX, t),
        subject: shown(subject, usize::MAX),
        date: crate::clock::minute_in(item.date, &locale.zone),
    }
}

fn no_longer_held(shared: &App, t: &'static Catalog, address: &str, state: ItemState) -> Response {
    let what = match state {
        ItemState::Released => &t.links.already_released,
        _ => &t.links.was_deleted,
    };
    user_page(shared, t, StatusCode::OK, address, t.links.nothing_to_do.as_str(), &Notice::new(what.as_str()))
}

/// GET: what the link would do, and a button to do it.
pub(super) async fn show(State(shared): State<Arc<App>>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let (link, locale) = match verified(&shared, &token, &headers).await {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let t = locale.t();
    match link.action {
        LinkAction::Unsubscribe => user_page(
            &shared,
            t,
            StatusCode::OK,
            &link.address,
            t.links.unsubscribe_title.as_str(),
            &UnsubscribePage { t, address: &link.address },
        ),
        LinkAction::Release | LinkAction::ReleaseAllow => {
            let item = match owned_item(&shared, t, &link).await {
                Ok(item) => item,
                Err(refusal) => return *refusal,
            };
            if item.state != ItemState::Held {
                return no_longer_held(&shared, t, &link.address, item.state);
            }
            let (title, label) = if link.action == LinkAction::Release {
                (&t.links.confirm_release, &t.words.release)
            } else {
                (&t.links.confirm_release_allow, &t.words.release_allow)
            };
            let body = ConfirmPage { t, summary: describe(&locale, &item), label: label.as_str() };
            user_page(&shared, t, StatusCode::OK, &link.address, title.as_str(), &body)
        }
        LinkAction::View => view(&shared, &locale, &link).await,
        LinkAction::Login => super::center::start_session(&shared, t, &link.address),
        LinkAction::Session => refused(t, LinkError::Malformed),
    }
}

/// The held message, for its own user: a header summary, the text (an HTML-only message is
/// shown as its text, never rendered), the attachments by name and type (not served), and the
/// release buttons.
async fn view(shared: &App, locale: &Locale, link: &Link) -> Response {
    let t = locale.t();
    let item = match owned_item(shared, t, link).await {
        Ok(item) => item,
        Err(refusal) => return *refusal,
    };
    if item.state == ItemState::Deleted {
        return no_longer_held(shared, t, &link.address, item.state);
    }
    let contents = match shared.quarantine.open_contents(&item.id).await {
        Ok(contents) => contents,
        Err(error) => {
            tracing::warn!(event = "web_view_failed", item = %item.id, error = %error);
            return unavailable(t);
        }
    };
    let parts = super::center::parts(&contents, t);
    // An HTML-only message is shown as its text, never rendered, on this page.
    let text = parts.text.clone().or_else(|| parts.html.as_deref().map(|html| crate::ruleset::html::render(html).text)).unwrap_or_default();
    let text: String = text.chars().take(super::center::MAX_VIEW_TEXT).collect();
    let mut buttons = Vec::new();
    if item.state == ItemState::Held
        && let (Some(key), Some(web)) = (shared.quarantine.links(), shared.config.load().web.clone())
    {
        let now = store::unix_now();
        for (action, label) in [(LinkAction::Release, &t.words.release), (LinkAction::ReleaseAllow, &t.words.release_allow)] {
            buttons.push((key.token(action, &link.address, &item.id, now, web.link_lifetime.0), label.as_str()));
        }
    }
    let body = ViewPage {
        t,
        summary: describe(locale, &item),
        headline: crate::digest::build::headline(&item, &shared.quarantine.reasons(), locale),
        reason: crate::digest::build::reason(&item, t),
        score: t.number(item.score),
        text,
        attachments: &parts.attachments,
        buttons,
    };
    user_page(shared, t, StatusCode::OK, &link.address, t.words.held_message.as_str(), &body)
}

/// POST: does what the link says.
pub(super) async fn act(State(shared): State<Arc<App>>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let (link, locale) = match verified(&shared, &token, &headers).await {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let t = locale.t();
    match link.action {
        LinkAction::Unsubscribe => unsubscribe(&shared, t, &link.address).await,
        LinkAction::Release | LinkAction::ReleaseAllow => release(&shared, t, &link).await,
        LinkAction::View | LinkAction::Login => user_page(
            &shared,
            t,
            StatusCode::METHOD_NOT_ALLOWED,
            &link.address,
            t.links.nothing_to_do.as_str(),
            &Notice::new(t.links.only_opens.as_str()),
        ),
        LinkAction::Session => refused(t, LinkError::Malformed),
    }
}

async fn unsubscribe(shared: &App, t: &'static Catalog, address: &str) -> Response {
    let store = shared.quarantine.store();
    let result = async {
        let mut prefs = store.get_preferences(address).await?;
        prefs.opt_out = true;
        store.set_preferences(address, &prefs, store::unix_now()).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(event = "unsubscribed", user = %address);
            user_page(shared, t, StatusCode::OK, address, t.links.unsubscribed_title.as_str(), &Notice::new(t.links.unsubscribed.as_str()))
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            unavailable(t)
        }
    }
}

async fn release(shared: &App, t: &'static Catalog, link: &Link) -> Response {
    let item = match owned_item(shared, t, link).await {
        Ok(item) => item,
        Err(refusal) => return *refusal,
    };
    match shared.quarantine.release(&item.id, &link.address, ReleaseVia::Link).await {
        Ok(released) => shared.queue.submit(released.queue_id),
        Err(crate::quarantine::QuarantineError::Store(StoreError::NotHeld { current, .. })) => {
            return no_longer_held(shared, t, &link.address, current);
        }
        Err(error) => {
            tracing::warn!(event = "web_release_failed", item = %item.id, error = %error);
            return unavailable(t);
        }
    }
    let mut done = Notice::new(t.links.on_its_way.as_str());
    // The From address when the item has one (see `crate::lists`: it counts only for mail its
    // domain authenticated), else the envelope sender.
    let listed = item.sender_to_list();
    if link.action == LinkAction::ReleaseAllow && !listed.is_empty() {
        match Entry::parse(listed) {
            Ok(entry) => match shared.quarantine.store().add_list_entry(&link.address, ListKind::Allow, &entry).await {
                Ok(_) => {
                    crate::app::read_user_lists(shared).await;
                    done = done.and(t.links.allowed.with("sender", shown(listed, LIST_TEXT)).to_string());
                }
                Err(error) => tracing::warn!(event = "web_store_error", error = %error),
            },
            Err(_) => done = done.and(t.links.cannot_allow.as_str()),
        }
    }
    user_page(shared, t, StatusCode::OK, &link.address, t.links.released_title.as_str(), &done)
}
