//! The user's Message Center: their quarantine (newest first, search by sender or subject,
//! filter by category, paging), a held message shown safely, actions (release, release and
//! allow the sender, block the sender, delete; one or many at once) and preferences (digest
//! frequency or opt-out, spam filtering where the domain lets users choose, allow and block
//! lists). Reached from the "Open your Message Center" link of a digest or a login email asked
//! for on `/login`; no passwords.
//!
//! Guarantees: every page acts for the signed-in user only (an item of another user is "not
//! found", whatever id is sent); no GET changes anything; every POST needs the session's CSRF
//! token and is refused from another site; every value from mail is escaped; a message's HTML
//! is only ever shown sanitised, in a sandboxed frame, under its own CSP (see [`super::sanitize`]);
//! attachments are listed, never served. Pages work without script, on small screens and with
//! a keyboard (labelled controls, a skip link).

use super::session::{WebSession, cross_site};
use super::{Form, Nav, Notice, page_with, sanitize, unavailable};
use crate::app::App;
use crate::digest::build::{Author, LIST_NAME};
use crate::html::{LIST_TEXT, shown};
use crate::links::LinkKey;
use crate::lists::Entry;
use crate::ruleset::reasons::Reasons;
use crate::store::{self, Category, DigestFrequency, ItemQuery, ItemState, ListKind, Preferences, QuarantineItem, ReleaseVia, StoreError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mail_parser::MimeHeaders;
use std::sync::Arc;

/// Items on one page of the list.
pub const PAGE_SIZE: u32 = 25;
/// Most items one bulk action takes.
pub const MAX_BULK: usize = 100;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/login", get(super::login::form).post(super::login::send))
        .route("/mc", get(list))
        .route("/mc/act", post(act))
        .route("/mc/m/{id}", get(view))
        .route("/mc/m/{id}/html", get(html_part))
        .route("/mc/prefs", get(preferences).post(save_preferences))
        .route("/mc/export/{file}", get(export))
        .route("/mc/lists", post(change_list))
        .route("/mc/logout", post(logout))
}

/// The signed-in user's context for one request.
struct User {
    session: WebSession,
    key: LinkKey,
    /// The user's domain as it is named to them.
    brand: super::Brand,
    /// The renewed session cookie.
    cookie: HeaderValue,
}

impl User {
    /// The CSRF token the user's forms carry.
    fn csrf(&self) -> String {
        self.session.csrf(&self.key)
    }

    /// A Message Center page with the navigation, renewing the session cookie.
    fn page(&self, status: StatusCode, title: &str, body: &impl askama::Template) -> Response {
        let csrf = self.csrf();
        let nav = Nav::Center { csrf: &csrf, address: &self.session.address, brand: &self.brand };
        let mut response = page_with(status, title, nav, body, CSP);
        response.headers_mut().insert(header::SET_COOKIE, self.cookie.clone());
        response
    }
}

/// The signed-in user, or the page to answer instead (the login page for a GET).
/// A session signed out of (on any device) no longer counts, however valid its cookie.
async fn signed_in(shared: &App, headers: &HeaderMap) -> Result<User, Box<Response>> {
    let config = shared.config.load_full();
    let (Some(key), Some(web)) = (shared.quarantine.links(), config.web.as_ref()) else {
        return Err(Box::new(page_with(
            StatusCode::NOT_FOUND,
            "Not found",
            Nav::None,
            &Notice::new("The Message Center is not enabled here."),
            CSP,
        )));
    };
    let now = store::unix_now();
    let Some(session) = WebSession::from_headers(key, headers, now) else {
        return Err(Box::new(see_other("/login")));
    };
    match shared.quarantine.store().sessions_revoked_before(&session.address).await {
        Ok(before) if session.started < before => {
            let mut response = see_other("/login");
            response.headers_mut().insert(header::SET_COOKIE, WebSession::clear());
            Err(Box::new(response))
        }
        Ok(_) => {
            let cookie = session_cookie(&session, key, web, now);
            let brand = super::Brand::of(&config, &session.address);
            Ok(User { session, key: key.clone(), brand, cookie })
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            Err(Box::new(unavailable()))
        }
    }
}

/// A signed-in user for a state-changing request: also checks the CSRF token and the origin.
async fn signed_in_post(shared: &App, headers: &HeaderMap, form: &Form) -> Result<User, Box<Response>> {
    let user = signed_in(shared, headers).await?;
    if cross_site(headers) || !user.session.csrf_ok(&user.key, form.one("csrf")) {
        return Err(Box::new(page_with(
            StatusCode::FORBIDDEN,
            "Request refused",
            Nav::None,
            &Notice::new("This form has expired or came from another site. Go back, reload the page and try again."),
            CSP,
        )));
    }
    Ok(user)
}

fn see_other(location: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Starts a session for a verified login link and opens the Message Center.
pub fn start_session(shared: &App, address: &str) -> Response {
    let config = shared.config.load();
    let (Some(key), Some(web)) = (shared.quarantine.links(), config.web.as_ref()) else {
        return unavailable();
    };
    let now = store::unix_now();
    let session = WebSession { address: address.to_ascii_lowercase(), started: now };
    tracing::info!(event = "web_session", user = %session.address);
    let mut response = see_other("/mc");
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&session, key, web, now));
    response
}

/// The `Set-Cookie` value that (re)issues `session` under the `[web]` settings.
fn session_cookie(session: &WebSession, key: &LinkKey, web: &crate::config::Web, now: i64) -> HeaderValue {
    session.cookie(key, now, web.session_lifetime.0, web.public_url.starts_with("https:"))
}

async fn logout(State(shared): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let user = match signed_in_post(&shared, &headers, &form).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    // Every session of this user that started up to now ends, on this device and any other.
    if let Err(error) = shared.quarantine.store().revoke_sessions(&user.session.address, store::unix_now() + 1).await {
        tracing::warn!(event = "web_store_error", error = %error);
        return unavailable();
    }
    tracing::info!(event = "web_signed_out", user = %user.session.address);
    let signed_out = Notice::new("You are signed out.").link("/login", "Sign in again");
    let mut response = page_with(StatusCode::OK, "Signed out", Nav::None, &signed_out, CSP);
    response.headers_mut().insert(header::SET_COOKIE, WebSession::clear());
    response
}

// ---- the list ----

/// The list's query string (the Message Center's and the admin console's).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ListParams {
    /// Admin console only: the Message Center always lists the signed-in user's items.
    #[serde(default)]
    pub recipient: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub state: String,
    /// The page, counted from 1 (0 or missing: the first).
    #[serde(default)]
    pub page: u32,
}

impl ListParams {
    /// The page asked for, counted from 1.
    pub fn page_number(&self) -> u32 {
        self.page.max(1)
    }

    /// The number of items before this page.
    pub fn offset(&self) -> u32 {
        (self.page_number() - 1).saturating_mul(PAGE_SIZE)
    }

    /// Whether there are items after this page, of `total`.
    pub fn more_after(&self, total: u64) -> bool {
        u64::from(self.page_number()) * u64::from(PAGE_SIZE) < total
    }
}

pub(super) fn category_of(text: &str) -> Option<Category> {
    [Category::Spam, Category::Virus, Category::Policy].into_iter().find(|c| c.as_str() == text)
}

fn state_of(text: &str) -> Option<ItemState> {
    match text {
        "all" => None,
        "released" => Some(ItemState::Released),
        _ => Some(ItemState::Held),
    }
}

fn or_none<'a>(text: &'a str, none: &'a str) -> &'a str {
    if text.is_empty() { none } else { text }
}

/// A labelled `<select>` (the `select` macro of `templates/center/macros.html`).
struct Select<'a> {
    name: &'a str,
    label: &'a str,
    current: &'a str,
    options: &'a [(&'a str, &'a str)],
}

/// One item of the list, as shown.
struct Row {
    id: String,
    /// Whether it has a checkbox (held and released items do).
    selectable: bool,
    /// Its state, when it is not held.
    state_note: Option<&'static str>,
    date: String,
    from: Author,
    subject: String,
    category: &'static str,
    score: f64,
    /// The plain-language sentence the item leads with, if a `reason` line covers it.
    headline: Option<String>,
    reason: String,
}

#[derive(askama::Template)]
#[template(path = "center/list.html")]
struct ListPage<'a> {
    q: &'a str,
    category: Select<'a>,
    state: Select<'a>,
    total: u64,
    csrf: String,
    rows: Vec<Row>,
    /// The query strings of the pages before and after this one.
    newer: Option<String>,
    older: Option<String>,
}

async fn list(State(shared): State<Arc<App>>, headers: HeaderMap, Query(params): Query<ListParams>) -> Response {
    let user = match signed_in(&shared, &headers).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let query = ItemQuery {
        recipient: user.session.address.clone(),
        state: state_of(&params.state),
        category: category_of(&params.category),
        text: params.q.chars().take(200).collect(),
        search_subjects: true,
    };
    let offset = params.offset();
    let store = shared.quarantine.store();
    let (found, zone) = tokio::join!(
        async { tokio::try_join!(store.find_items(&query, PAGE_SIZE, offset), store.count_items(&query)) },
        user_zone(&shared, &user.session.address)
    );
    let (items, total) = match found {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            return unavailable();
        }
    };
    let reasons = shared.quarantine.reasons();
    let page_number = params.page_number();
    let body = ListPage {
        q: &query.text,
        category: Select {
            name: "category",
            label: "Category",
            current: &params.category,
            options: &[("", "All"), ("spam", "Spam"), ("virus", "Virus"), ("policy", "Policy")],
        },
        state: Select {
            name: "state",
            label: "Show",
            current: &params.state,
            options: &[("", "Held"), ("released", "Released"), ("all", "All")],
        },
        total,
        csrf: user.csrf(),
        rows: items.iter().map(|item| row(item, &zone, &reasons)).collect(),
        newer: (page_number > 1).then(|| page_query(&params, page_number - 1)),
        older: params.more_after(total).then(|| page_query(&params, page_number + 1)),
    };
    user.page(StatusCode::OK, "Your quarantine", &body)
}

/// The time zone a user's times are shown in: the one they chose, else their domain's digest
/// time zone (also when the store cannot say; the zone's name is shown with every time).
pub(super) async fn user_zone(shared: &App, address: &str) -> String {
    let chosen = match shared.quarantine.store().get_preferences(address).await {
        Ok(prefs) => prefs.time_zone,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            String::new()
        }
    };
    shared.config.load().time_zone_for(address, &chosen)
}

fn row(item: &QuarantineItem, zone: &str, reasons: &Reasons) -> Row {
    // Released messages can still be reported as spam (the filter then learns it was wrong).
    let (selectable, state_note) = match item.state {
        ItemState::Held => (true, None),
        ItemState::Released => (true, Some(item.state.as_str())),
        ItemState::Deleted => (false, Some(item.state.as_str())),
    };
    Row {
        id: item.id.clone(),
        selectable,
        state_note,
        date: crate::clock::minute_in(item.date, zone),
        from: Author::of(item, LIST_NAME, LIST_TEXT),
        subject: shown(or_none(&item.subject, "(no subject)"), LIST_TEXT),
        category: item.category.as_str(),
        score: item.score,
        headline: crate::digest::build::headline(item, reasons),
        reason: crate::digest::build::reason(item),
    }
}

/// The list's query string for page `page`, with the same search and filters.
fn page_query(params: &ListParams, page: u32) -> String {
    serde_urlencoded::to_string([
        ("q", params.q.as_str()),
        ("category", &params.category),
        ("state", &params.state),
        ("page", &page.to_string()),
    ])
    .unwrap_or_default()
}

// ---- one message ----

/// The user's own item, or the page to answer instead ("not found" for anyone else's).
async fn own_item(shared: &App, user: &User, id: &str) -> Result<QuarantineItem, Box<Response>> {
    match shared.quarantine.store().get_item(id).await {
        Ok(item) if item.recipient.eq_ignore_ascii_case(&user.session.address) && item.state != ItemState::Deleted => Ok(item),
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            Err(Box::new(user.page(StatusCode::NOT_FOUND, "Message not found", &Notice::new("This message is not in your quarantine."))))
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            Err(Box::new(unavailable()))
        }
    }
}

/// What a message shows: its text, its HTML part (raw; sanitise before use) and its attachments
/// (name and type, [`shown`]: the name whole, to be wrapped).
pub struct Parts {
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<(String, String)>,
}

pub fn parts(contents: &[u8]) -> Parts {
    let Some(message) = mail_parser::MessageParser::default().parse(contents) else {
        return Parts { text: None, html: None, attachments: Vec::new() };
    };
    let html = message.html_body.first().and_then(|_| message.body_html(0)).map(|h| h.into_owned());
    let text = message.text_body.first().and_then(|_| message.body_text(0)).map(|t| t.into_owned());
    let attachments = message
        .attachments()
        .map(|part| {
            let name = shown(part.attachment_name().unwrap_or("(unnamed)"), usize::MAX);
            let kind = part.content_type().map_or_else(String::new, |t| match t.subtype() {
                Some(sub) => format!("{}/{sub}", t.ctype()),
                None => t.ctype().to_string(),
            });
            (name, shown(&kind, LIST_TEXT))
        })
        .collect();
    Parts { text, html, attachments }
}

/// Most characters of a message's text shown.
pub const MAX_VIEW_TEXT: usize = 100_000;

/// The signed-in user, their item `id` and its contents, or the page to answer instead.
async fn own_contents(shared: &App, headers: &HeaderMap, id: &str) -> Result<(User, QuarantineItem, Vec<u8>), Box<Response>> {
    let user = signed_in(shared, headers).await?;
    let item = own_item(shared, &user, id).await?;
    match shared.quarantine.open_contents(&item.id).await {
        Ok(contents) => Ok((user, item, contents)),
        Err(error) => {
            tracing::warn!(event = "web_view_failed", item = %item.id, error = %error);
            Err(Box::new(unavailable()))
        }
    }
}

#[derive(askama::Template)]
#[template(path = "center/view.html")]
struct ViewPage<'a> {
    id: &'a str,
    csrf: String,
    from: Author,
    recipient: &'a str,
    subject: String,
    date: String,
    /// The plain-language sentence the item leads with, if a `reason` line covers it.
    headline: Option<String>,
    reason: String,
    score: f64,
    category: &'static str,
    held: bool,
    text: Option<String>,
    has_html: bool,
    attachments: Vec<(String, String)>,
}

async fn view(State(shared): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (user, item, contents) = match own_contents(&shared, &headers, &id).await {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let parts = parts(&contents);
    let body = ViewPage {
        id: &item.id,
        csrf: user.csrf(),
        from: Author::of(&item, usize::MAX, usize::MAX),
        recipient: &item.recipient,
        subject: shown(or_none(&item.subject, "(no subject)"), usize::MAX),
        date: crate::clock::minute_in(item.date, &user_zone(&shared, &user.session.address).await),
        headline: crate::digest::build::headline(&item, &shared.quarantine.reasons()),
        reason: crate::digest::build::reason(&item),
        score: item.score,
        category: item.category.as_str(),
        held: item.state == ItemState::Held,
        text: parts.text.map(|text| text.chars().take(MAX_VIEW_TEXT).collect()),
        has_html: parts.html.is_some(),
        attachments: parts.attachments,
    };
    user.page(StatusCode::OK, "Held message", &body)
}

/// The sanitised HTML part, as a document of its own for the sandboxed frame.
async fn html_part(State(shared): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let html = match own_contents(&shared, &headers, &id).await {
        Ok((_, _, contents)) => parts(&contents).html.unwrap_or_default(),
        Err(refusal) => return *refusal,
    };
    let document = match sanitize::document(&html) {
        Ok(document) => document,
        Err(error) => {
            tracing::error!(event = "web_render_failed", title = "html part", error = %error);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = (StatusCode::OK, document).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(sanitize::HTML_PART_CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- actions ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemAction {
    Release,
    ReleaseAllow,
    Block,
    Delete,
    /// A released message was spam after all: the classifier learns it.
    Spam,
}

impl ItemAction {
    fn parse(text: &str) -> Option<ItemAction> {
        Some(match text {
            "release" => ItemAction::Release,
            "release_allow" => ItemAction::ReleaseAllow,
            "block" => ItemAction::Block,
            "delete" => ItemAction::Delete,
            "spam" => ItemAction::Spam,
            _ => return None,
        })
    }

    fn done(self) -> &'static str {
        match self {
            ItemAction::Release => "released",
            ItemAction::ReleaseAllow => "released (sender allowed)",
            ItemAction::Block => "deleted (sender blocked)",
            ItemAction::Delete => "deleted",
            ItemAction::Spam => "reported as spam (the filter learns from them)",
        }
    }
}

async fn act(State(shared): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let user = match signed_in_post(&shared, &headers, &form).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let Some(action) = ItemAction::parse(form.one("action")) else {
        return user.page(
            StatusCode::BAD_REQUEST,
            "Nothing done",
            &Notice::new("Choose an action.").link("/mc", "Back to your quarantine"),
        );
    };
    let ids: Vec<&str> = form.all("id").take(MAX_BULK).collect();
    if ids.is_empty() {
        return user.page(StatusCode::OK, "Nothing done", &Notice::new("No message was selected.").link("/mc", "Back to your quarantine"));
    }
    let (mut done, mut failed) = (0usize, 0usize);
    let mut lists_changed = false;
    for id in ids {
        match act_on(&shared, &user, id, action).await {
            Ok(changed) => {
                done += 1;
                lists_changed |= changed;
            }
            Err(()) => failed += 1,
        }
    }
    if lists_changed {
        crate::app::read_user_lists(&shared).await;
    }
    let mut text = Notice::new(format!("{done} message(s) {}.", action.done()));
    if matches!(action, ItemAction::Release | ItemAction::ReleaseAllow) && done > 0 {
        text = text.and("Released messages are on their way to your mailbox.");
    }
    if failed > 0 {
        text = text.and(format!("{failed} message(s) could not be changed: they are no longer held, or are not yours."));
    }
    user.page(StatusCode::OK, "Done", &text.link("/mc", "Back to your quarantine"))
}

/// Does `action` on one of the user's items (held ones; released ones for Spam); `Ok(true)`
/// when their lists changed.
async fn act_on(shared: &App, user: &User, id: &str, action: ItemAction) -> Result<bool, ()> {
    let store = shared.quarantine.store();
    let wanted = if action == ItemAction::Spam { ItemState::Released } else { ItemState::Held };
    let item = match store.get_item(id).await {
        Ok(item) if item.recipient.eq_ignore_ascii_case(&user.session.address) && item.state == wanted => item,
        _ => return Err(()),
    };
    let address = &user.session.address;
    let mut lists_changed = false;
    let list_kind = match action {
        ItemAction::ReleaseAllow => Some(ListKind::Allow),
        ItemAction::Block => Some(ListKind::Block),
        _ => None,
    };
    // The From address (the same from one newsletter to the next), else the envelope sender; an
    // allow entry matches a From address only when its domain authenticated the message (see
    // `crate::lists`), so a forged From does not ride on it.
    if let (Some(kind), Ok(entry)) = (list_kind, Entry::parse(item.sender_to_list())) {
        lists_changed = store.add_list_entry(address, kind, &entry).await.is_ok();
    }
    match action {
        ItemAction::Release | ItemAction::ReleaseAllow => match shared.quarantine.release(id, address, ReleaseVia::Web).await {
            Ok(released) => shared.queue.submit(released.queue_id),
            Err(error) => {
                tracing::info!(event = "web_release", item = %id, error = %error, outcome = "not released");
                return Err(());
            }
        },
        ItemAction::Spam => {
            let contents = shared.quarantine.open_contents(id).await.map_err(|_| ())?;
            let taught = shared.quarantine.teach(Arc::new(contents), crate::classifier::Label::Spam, address, "message_center").await;
            if taught.is_none() {
                return Err(());
            }
        }
        ItemAction::Block | ItemAction::Delete => {
            if let Err(error) = shared.quarantine.delete(id).await {
                tracing::info!(event = "web_delete", item = %id, error = %error, outcome = "not deleted");
                return Err(());
            }
        }
    }
    Ok(lists_changed)
}

// ---- export ----

/// The signed-in user's own data, as a download: `data.json` (metadata) or `messages.mbox`.
async fn export(State(shared): State<Arc<App>>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    let user = match signed_in(&shared, &headers).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let content_type = match file.as_str() {
        "data.json" => "application/json",
        "messages.mbox" => "application/mbox",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let exported = match shared.quarantine.export_user(&user.session.address).await {
        Ok(exported) => exported,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            return unavailable();
        }
    };
    tracing::info!(event = "user_export", via = "message_center", file = %file);
    let body = if file == "data.json" { serde_json::to_vec_pretty(&exported.metadata).unwrap_or_default() } else { exported.mbox };
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"moat-{file}\"")),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

// ---- preferences ----

/// Whether the user's domain lets users switch their own spam filtering.
fn may_choose_filtering(config: &crate::config::Config, address: &str) -> bool {
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    config.lists.domain.iter().find(|d| d.name.eq_ignore_ascii_case(domain)).is_none_or(|d| d.user_opt_out)
}

fn may_choose_digest(config: &crate::config::Config, address: &str) -> bool {
    config.digest_for_address(address).user_choice
}

async fn preferences(State(shared): State<Arc<App>>, headers: HeaderMap) -> Response {
    let user = match signed_in(&shared, &headers).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let prefs = match shared.quarantine.store().get_preferences(&user.session.address).await {
        Ok(prefs) => prefs,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            return unavailable();
        }
    };
    preferences_page(&shared, &user, &prefs, &prefs.time_zone, None)
}

/// The preferences form for `prefs`, its time zone field holding `time_zone` (what the user
/// typed, when it is refused with `error`).
fn preferences_page(shared: &App, user: &User, prefs: &Preferences, time_zone: &str, error: Option<String>) -> Response {
    let config = shared.config.load();
    let address = &user.session.address;
    let digest_current = prefs.digest.map_or("", DigestFrequency::as_str);
    let filtering_current = match prefs.filtering {
        None => "",
        Some(true) => "on",
        Some(false) => "off",
    };
    let entries = |list: &[Entry]| list.iter().map(ToString::to_string).collect();
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = PreferencesPage {
        csrf: user.csrf(),
        opt_out: prefs.opt_out,
        digest: may_choose_digest(&config, address).then_some(Select {
            name: "digest",
            label: "How often",
            current: digest_current,
            options: &[("", "Default"), ("daily", "Daily"), ("weekly", "Weekly"), ("never", "Never")],
        }),
        filtering: may_choose_filtering(&config, address).then_some(Select {
            name: "filtering",
            label: "Spam filtering",
            current: filtering_current,
            options: &[("", "Default"), ("on", "On"), ("off", "Off (viruses are still stopped)")],
        }),
        time_zone,
        domain_zone: config.digest_for_address(address).timezone,
        zones: crate::clock::time_zone_names().collect(),
        time_zone_error: error,
        lists: vec![
            UserList { kind: ListKind::Allow.as_str(), title: "Always allow", entries: entries(&prefs.allow) },
            UserList { kind: ListKind::Block.as_str(), title: "Always block", entries: entries(&prefs.block) },
        ],
    };
    user.page(status, "Preferences", &body)
}

/// One of the user's lists, as shown.
struct UserList {
    kind: &'static str,
    title: &'static str,
    entries: Vec<String>,
}

#[derive(askama::Template)]
#[template(path = "center/prefs.html")]
struct PreferencesPage<'a> {
    csrf: String,
    opt_out: bool,
    /// The digest frequency, where the domain lets users choose it.
    digest: Option<Select<'a>>,
    /// Spam filtering on or off, where the domain lets users choose it.
    filtering: Option<Select<'a>>,
    /// The time zone field's value: the user's choice, empty for the domain's.
    time_zone: &'a str,
    /// The domain's digest time zone, the default.
    domain_zone: String,
    /// The zones suggested for the field.
    zones: Vec<&'static str>,
    /// Why the time zone typed was refused.
    time_zone_error: Option<String>,
    lists: Vec<UserList>,
}

async fn save_preferences(State(shared): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let user = match signed_in_post(&shared, &headers, &form).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let store = shared.quarantine.store();
    let address = user.session.address.clone();
    let config = shared.config.load_full();
    let mut prefs = match store.get_preferences(&address).await {
        Ok(prefs) => prefs,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            return unavailable();
        }
    };
    prefs.opt_out = form.one("emails") != "on";
    if may_choose_digest(&config, &address) {
        prefs.digest = match form.one("digest") {
            "daily" => Some(DigestFrequency::Daily),
            "weekly" => Some(DigestFrequency::Weekly),
            "never" => Some(DigestFrequency::Never),
            _ => None,
        };
    }
    if may_choose_filtering(&config, &address) {
        prefs.filtering = match form.one("filtering") {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        };
    }
    // Empty: the domain's zone; otherwise a zone the tz database knows, or nothing is saved (the
    // form comes back as the user filled it in, with the error).
    let typed = form.one("time_zone").trim();
    prefs.time_zone = match (typed.is_empty(), crate::clock::time_zone(typed)) {
        (true, _) => String::new(),
        (false, Some(zone)) => zone.to_string(),
        (false, None) => {
            let typed: String = typed.chars().take(100).collect();
            let why = format!(
                "\u{201c}{typed}\u{201d} is not a time zone. Choose one from the list, such as Europe/Berlin, or leave it empty. Nothing was saved."
            );
            return preferences_page(&shared, &user, &prefs, &typed, Some(why));
        }
    };
    let result = store.set_preferences(&address, &prefs, store::unix_now()).await;
    match result {
        Ok(()) => {
            crate::app::read_user_lists(&shared).await;
            tracing::info!(event = "preferences_saved", user = %address);
            user.page(
                StatusCode::OK,
                "Preferences saved",
                &Notice::new("Your preferences are saved.").link("/mc/prefs", "Back to preferences"),
            )
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            unavailable()
        }
    }
}

async fn change_list(State(shared): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let user = match signed_in_post(&shared, &headers, &form).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let kind = match form.one("kind") {
        "allow" => ListKind::Allow,
        "block" => ListKind::Block,
        _ => return user.page(StatusCode::BAD_REQUEST, "Nothing changed", &Notice::new("Unknown list.")),
    };
    let entry = match Entry::parse(form.one("entry").trim()) {
        Ok(entry) => entry,
        Err(error) => {
            let why = Notice::new(format!("That entry is not valid: {error}")).link("/mc/prefs", "Back to preferences");
            return user.page(StatusCode::BAD_REQUEST, "Nothing changed", &why);
        }
    };
    let adding = form.one("op") != "remove";
    let restricted = adding && kind == ListKind::Allow && !may_choose_filtering(&shared.config.load(), &user.session.address);
    if let (true, Err(why)) = (restricted, entry.restricted_allow()) {
        let why = Notice::new(format!("That entry is not allowed: {why}")).link("/mc/prefs", "Back to preferences");
        return user.page(StatusCode::BAD_REQUEST, "Nothing changed", &why);
    }
    let store = shared.quarantine.store();
    let result = match form.one("op") {
        "remove" => store.remove_list_entry(&user.session.address, kind, &entry).await,
        _ => store.add_list_entry(&user.session.address, kind, &entry).await,
    };
    match result {
        Ok(_) => {
            crate::app::read_user_lists(&shared).await;
            user.page(StatusCode::OK, "List changed", &Notice::new("Your list is changed.").link("/mc/prefs", "Back to preferences"))
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_shows_its_text_html_and_attachment_names() {
        let message = b"From: a@example.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\nContent-Type: text/plain\r\n\r\nplain words\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>html words</p>\r\n--c--\r\n--b\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let parts = parts(message);
        assert!(parts.text.as_deref().is_some_and(|t| t.contains("plain words")));
        assert!(parts.html.as_deref().is_some_and(|h| h.contains("<p>html words</p>")));
        assert_eq!(parts.attachments, [("invoice.pdf".to_string(), "application/pdf".to_string())]);
    }

    #[test]
    fn attachment_names_cannot_disguise_what_they_are() {
        let message = b"From: a@example.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
            --b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe\r\n\r\nAA==\r\n--b--\r\n";
        assert_eq!(parts(message).attachments, [("invoice[U+202E]fdp.exe".to_string(), "application/octet-stream".to_string())]);
    }
}
