//! The pages behind the signed links in moat's emails: `GET /l/<token>` shows what the link
//! would do with a button, `POST /l/<token>` does it (release, release and always allow the
//! sender, unsubscribe). Mail security scanners fetch every link in an email, so a GET never
//! acts; the POST of a `List-Unsubscribe` URL is RFC 8058's one-click unsubscribe. A login link
//! (digest, login email) starts a Message Center session and opens it.
//!
//! Guarantees: a link acts only for the user and the item it was signed for (an item of another
//! user is refused even with a valid token); a release goes through `Quarantine::release`, so it
//! happens exactly once however often the button is pressed; the view page shows the message as
//! text only, attachments by name.

use super::{Notice, page, unavailable, user_page};
use crate::app::App;
use crate::digest::build::Author;
use crate::html::{LIST_TEXT, shown};
use crate::links::{Link, LinkAction, LinkError};
use crate::lists::Entry;
use crate::store::{self, ItemState, ListKind, QuarantineItem, ReleaseVia, StoreError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// What a link page shows of a held item: who it is from and its subject, whole, and its time
/// in the recipient domain's digest time zone.
struct Summary {
    from: Author,
    subject: String,
    date: String,
}

#[derive(askama::Template)]
#[template(path = "web/unsubscribe.html")]
struct UnsubscribePage<'a> {
    address: &'a str,
}

#[derive(askama::Template)]
#[template(path = "web/confirm.html")]
struct ConfirmPage<'a> {
    summary: Summary,
    label: &'a str,
}

#[derive(askama::Template)]
#[template(path = "web/view.html")]
struct ViewPage<'a> {
    summary: Summary,
    /// The plain-language sentence the item leads with, if a `reason` line covers it.
    headline: Option<String>,
    reason: String,
    score: f64,
    text: String,
    attachments: &'a [(String, String)],
    /// Signed release tokens and their buttons' labels.
    buttons: Vec<(String, &'static str)>,
}

fn refused(error: LinkError) -> Response {
    let why = match error {
        LinkError::Expired => "This link has expired. Use a link from a more recent email.",
        LinkError::Malformed | LinkError::BadSignature => "This link is not valid. Check that it was copied whole.",
    };
    page(StatusCode::FORBIDDEN, "Link not valid", &Notice::new(why))
}

/// A page answering instead of the normal one (boxed: a response is large).
type Refusal = Box<Response>;

/// The verified link, or the page that refuses it.
fn verified(shared: &App, token: &str) -> Result<Link, Refusal> {
    let Some(key) = shared.quarantine.links() else {
        return Err(Box::new(page(StatusCode::NOT_FOUND, "Not found", &Notice::new("Links are not enabled here."))));
    };
    key.verify(token, store::unix_now()).map_err(|e| Box::new(refused(e)))
}

/// The item a release link names, if it belongs to the link's user.
async fn owned_item(shared: &App, link: &Link) -> Result<QuarantineItem, Refusal> {
    match shared.quarantine.store().get_item(&link.item).await {
        Ok(item) if item.recipient.eq_ignore_ascii_case(&link.address) => Ok(item),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(Box::new(user_page(
            shared,
            StatusCode::NOT_FOUND,
            &link.address,
            "Message not found",
            &Notice::new("This message is no longer in the quarantine."),
        ))),
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            Err(Box::new(unavailable()))
        }
    }
}

/// The item's author and subject, whole, its time in the recipient's time zone.
async fn describe(shared: &App, item: &QuarantineItem) -> Summary {
    let subject = if item.subject.is_empty() { "(no subject)" } else { &item.subject };
    let zone = super::center::user_zone(shared, &item.recipient).await;
    Summary {
        from: Author::of(item, usize::MAX, usize::MAX),
        subject: shown(subject, usize::MAX),
        date: crate::clock::minute_in(item.date, &zone),
    }
}

fn no_longer_held(shared: &App, address: &str, state: ItemState) -> Response {
    let what = match state {
        ItemState::Released => "This message was already released; it should be in your mailbox.",
        _ => "This message was deleted from the quarantine.",
    };
    user_page(shared, StatusCode::OK, address, "Nothing to do", &Notice::new(what))
}

/// GET: what the link would do, and a button to do it.
pub(super) async fn show(State(shared): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let link = match verified(&shared, &token) {
        Ok(link) => link,
        Err(refusal) => return *refusal,
    };
    match link.action {
        LinkAction::Unsubscribe => {
            user_page(&shared, StatusCode::OK, &link.address, "Stop quarantine emails", &UnsubscribePage { address: &link.address })
        }
        LinkAction::Release | LinkAction::ReleaseAllow => {
            let item = match owned_item(&shared, &link).await {
                Ok(item) => item,
                Err(refusal) => return *refusal,
            };
            if item.state != ItemState::Held {
                return no_longer_held(&shared, &link.address, item.state);
            }
            let (title, label) = if link.action == LinkAction::Release {
                ("Release this message?", "Release")
            } else {
                ("Release and always allow this sender?", "Release and allow sender")
            };
            user_page(&shared, StatusCode::OK, &link.address, title, &ConfirmPage { summary: describe(&shared, &item).await, label })
        }
        LinkAction::View => view(&shared, &link).await,
        LinkAction::Login => super::center::start_session(&shared, &link.address),
        LinkAction::Session => refused(LinkError::Malformed),
    }
}

/// The held message, for its own user: a header summary, the text (an HTML-only message is
/// shown as its text, never rendered), the attachments by name and type (not served), and the
/// release buttons.
async fn view(shared: &App, link: &Link) -> Response {
    let item = match owned_item(shared, link).await {
        Ok(item) => item,
        Err(refusal) => return *refusal,
    };
    if item.state == ItemState::Deleted {
        return no_longer_held(shared, &link.address, item.state);
    }
    let contents = match shared.quarantine.open_contents(&item.id).await {
        Ok(contents) => contents,
        Err(error) => {
            tracing::warn!(event = "web_view_failed", item = %item.id, error = %error);
            return unavailable();
        }
    };
    let parts = super::center::parts(&contents);
    // An HTML-only message is shown as its text, never rendered, on this page.
    let text = parts.text.clone().or_else(|| parts.html.as_deref().map(|html| crate::ruleset::html::render(html).text)).unwrap_or_default();
    let text: String = text.chars().take(super::center::MAX_VIEW_TEXT).collect();
    let mut buttons = Vec::new();
    if item.state == ItemState::Held
        && let (Some(key), Some(web)) = (shared.quarantine.links(), shared.config.load().web.clone())
    {
        let now = store::unix_now();
        for (action, label) in [(LinkAction::Release, "Release"), (LinkAction::ReleaseAllow, "Release and allow sender")] {
            buttons.push((key.token(action, &link.address, &item.id, now, web.link_lifetime.0), label));
        }
    }
    let body = ViewPage {
        summary: describe(shared, &item).await,
        headline: crate::digest::build::headline(&item, &shared.quarantine.reasons()),
        reason: crate::digest::build::reason(&item),
        score: item.score,
        text,
        attachments: &parts.attachments,
        buttons,
    };
    user_page(shared, StatusCode::OK, &link.address, "Held message", &body)
}

/// POST: does what the link says.
pub(super) async fn act(State(shared): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let link = match verified(&shared, &token) {
        Ok(link) => link,
        Err(refusal) => return *refusal,
    };
    match link.action {
        LinkAction::Unsubscribe => unsubscribe(&shared, &link.address).await,
        LinkAction::Release | LinkAction::ReleaseAllow => release(&shared, &link).await,
        LinkAction::View | LinkAction::Login => {
            user_page(&shared, StatusCode::METHOD_NOT_ALLOWED, &link.address, "Nothing to do", &Notice::new("This link only opens a page."))
        }
        LinkAction::Session => refused(LinkError::Malformed),
    }
}

async fn unsubscribe(shared: &App, address: &str) -> Response {
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
            user_page(
                shared,
                StatusCode::OK,
                address,
                "Unsubscribed",
                &Notice::new("You will no longer get quarantine digests or virus notices."),
            )
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            unavailable()
        }
    }
}

async fn release(shared: &App, link: &Link) -> Response {
    let item = match owned_item(shared, link).await {
        Ok(item) => item,
        Err(refusal) => return *refusal,
    };
    match shared.quarantine.release(&item.id, &link.address, ReleaseVia::Link).await {
        Ok(released) => shared.queue.submit(released.queue_id),
        Err(crate::quarantine::QuarantineError::Store(StoreError::NotHeld { current, .. })) => {
            return no_longer_held(shared, &link.address, current);
        }
        Err(error) => {
            tracing::warn!(event = "web_release_failed", item = %item.id, error = %error);
            return unavailable();
        }
    }
    let mut done = Notice::new("The message is on its way to your mailbox.");
    // The From address when the item has one (see `crate::lists`: it counts only for mail its
    // domain authenticated), else the envelope sender.
    let listed = item.sender_to_list();
    if link.action == LinkAction::ReleaseAllow && !listed.is_empty() {
        match Entry::parse(listed) {
            Ok(entry) => match shared.quarantine.store().add_list_entry(&link.address, ListKind::Allow, &entry).await {
                Ok(_) => {
                    crate::app::read_user_lists(shared).await;
                    done = done.and(format!("Mail from {} will no longer be held for you.", shown(listed, LIST_TEXT)));
                }
                Err(error) => tracing::warn!(event = "web_store_error", error = %error),
            },
            Err(_) => done = done.and("The sender's address cannot be put on your allow list."),
        }
    }
    user_page(shared, StatusCode::OK, &link.address, "Released", &done)
}
