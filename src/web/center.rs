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
//! a keyboard (labelled controls, a skip link). Every page is in the user's language: the one
//! they chose in their preferences (only a shipped one is saved), else their domain's.

use super::session::{WebSession, cross_site};
use super::{Form, Nav, Notice, browser_lang, page_with, sanitize, unavailable};
use crate::app::App;
use crate::digest::build::{Author, LIST_NAME};
use crate::html::{LIST_TEXT, shown};
use crate::i18n::{Catalog, Lang, Locale, Text};
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
    /// How they read moat: language and time zone.
    locale: Locale,
    /// The renewed session cookie.
    cookie: HeaderValue,
}

impl User {
    /// The CSRF token the user's forms carry.
    fn csrf(&self) -> String {
        self.session.csrf(&self.key)
    }

    /// The texts in the user's language.
    fn t(&self) -> &'static Catalog {
        self.locale.t()
    }

    /// A Message Center page with the navigation, renewing the session cookie.
    fn page(&self, status: StatusCode, title: &str, body: &impl askama::Template) -> Response {
        let csrf = self.csrf();
        let nav = Nav::Center { csrf: &csrf, address: &self.session.address, brand: &self.brand };
        let mut response = page_with(self.t(), status, title, nav, body, CSP);
        response.headers_mut().insert(header::SET_COOKIE, self.cookie.clone());
        response
    }
}

/// The signed-in user, or the page to answer instead (the login page for a GET).
/// A session signed out of (on any device) no longer counts, however valid its cookie.
async fn signed_in(shared: &App, headers: &HeaderMap) -> Result<User, Box<Response>> {
    let config = shared.config.load_full();
    let (Some(key), Some(web)) = (shared.quarantine.links(), config.web.as_ref()) else {
        let t = browser_lang(headers);
        return Err(Box::new(page_with(
            t,
            StatusCode::NOT_FOUND,
            t.page.not_found_title.as_str(),
            Nav::None,
            &Notice::new(t.login.not_enabled.as_str()),
            CSP,
        )));
    };
    let now = store::unix_now();
    let Some(session) = WebSession::from_headers(key, headers, now) else {
        return Err(Box::new(see_other("/login")));
    };
    let store = shared.quarantine.store();
    match tokio::try_join!(store.sessions_revoked_before(&session.address), store.get_preferences(&session.address)) {
        Ok((before, _)) if session.started < before => {
            let mut response = see_other("/login");
            response.headers_mut().insert(header::SET_COOKIE, WebSession::clear());
            Err(Box::new(response))
        }
        Ok((_, prefs)) => {
            let cookie = session_cookie(&session, key, web, now);
            let brand = super::Brand::of(&config, &session.address);
            let locale = config.locale_for(&session.address, &prefs.language, &prefs.time_zone);
            Ok(User { session, key: key.clone(), brand, locale, cookie })
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            Err(Box::new(unavailable(browser_lang(headers))))
        }
    }
}

/// A signed-in user for a state-changing request: also checks the CSRF token and the origin.
async fn signed_in_post(shared: &App, headers: &HeaderMap, form: &Form) -> Result<User, Box<Response>> {
    let user = signed_in(shared, headers).await?;
    if cross_site(headers) || !user.session.csrf_ok(&user.key, form.one("csrf")) {
        let t = user.t();
        return Err(Box::new(page_with(
            t,
            StatusCode::FORBIDDEN,
            t.page.refused_title.as_str(),
            Nav::None,
            &Notice::new(t.center.expired_form.as_str()),
            CSP,
        )));
    }
    Ok(user)
}

fn see_other(location: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// Starts a session for a verified login link and opens the Message Center (`t`: the user's
/// language, for the page saying it cannot).
pub fn start_session(shared: &App, t: &'static Catalog, address: &str) -> Response {
    let config = shared.config.load();
    let (Some(key), Some(web)) = (shared.quarantine.links(), config.web.as_ref()) else {
        return unavailable(t);
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
    let t = user.t();
    if let Err(error) = shared.quarantine.store().revoke_sessions(&user.session.address, store::unix_now() + 1).await {
        tracing::warn!(event = "web_store_error", error = %error);
        return unavailable(t);
    }
    tracing::info!(event = "web_signed_out", user = %user.session.address);
    let signed_out = Notice::new(t.center.signed_out.as_str()).link("/login", t.center.sign_in_again.as_str());
    let mut response = page_with(t, StatusCode::OK, t.center.signed_out_title.as_str(), Nav::None, &signed_out, CSP);
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
    options: Vec<(&'a str, String)>,
    /// Why the value sent was refused (shown next to the field, which is marked invalid).
    error: Option<String>,
}

impl<'a> Select<'a> {
    fn new(name: &'a str, label: &'a Text, current: &'a str, options: &[(&'a str, &'a Text)]) -> Select<'a> {
        let options = options.iter().map(|(value, text)| (*value, text.to_string())).collect();
        Select { name, label: label.as_str(), current, options, error: None }
    }
}

/// One item of the list, as shown.
struct Row {
    id: String,
    /// Whether it has a checkbox (held and released items do).
    selectable: bool,
    /// Its state, when it is not held.
    state_note: Option<&'static Text>,
    date: String,
    from: Author,
    subject: String,
    category: &'static Text,
    /// The score, written the language's way.
    score: String,
    /// The plain-language sentence the item leads with, if a `reason` line covers it.
    headline: Option<String>,
    reason: String,
}

#[derive(askama::Template)]
#[template(path = "center/list.html")]
struct ListPage<'a> {
    t: &'static Catalog,
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
    let found = tokio::try_join!(store.find_items(&query, PAGE_SIZE, offset), store.count_items(&query));
    let t = user.t();
    let (items, total) = match found {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            return unavailable(t);
        }
    };
    let reasons = shared.quarantine.reasons();
    let page_number = params.page_number();
    let c = &t.center;
    let body = ListPage {
        t,
        q: &query.text,
        category: Select::new(
            "category",
            &t.center.category,
            &params.category,
            &[("", &c.all), ("spam", &c.spam), ("virus", &c.virus), ("policy", &c.policy)],
        ),
        state: Select::new("state", &c.show, &params.state, &[("", &c.show_held), ("released", &c.show_released), ("all", &c.all)]),
        total,
        csrf: user.csrf(),
        rows: items.iter().map(|item| row(item, &user.locale, &reasons)).collect(),
        newer: (page_number > 1).then(|| page_query(&params, page_number - 1)),
        older: params.more_after(total).then(|| page_query(&params, page_number + 1)),
    };
    user.page(StatusCode::OK, t.center.list_title.as_str(), &body)
}

fn row(item: &QuarantineItem, locale: &Locale, reasons: &Reasons) -> Row {
    let t = locale.t();
    // Released messages can still be reported as spam (the filter then learns it was wrong).
    let (selectable, state_note) = match item.state {
        ItemState::Held => (true, None),
        ItemState::Released => (true, Some(t.words.state(item.state.as_str()))),
        ItemState::Deleted => (false, Some(t.words.state(item.state.as_str()))),
    };
    Row {
        id: item.id.clone(),
        selectable,
        state_note,
        date: crate::clock::minute_in(item.date, &locale.zone),
        from: Author::of(item, LIST_NAME, LIST_TEXT, t),
        subject: shown(or_none(&item.subject, t.words.no_subject.as_str()), LIST_TEXT),
        category: t.words.category(item.category.as_str()),
        score: t.number(item.score),
        headline: crate::digest::build::headline(item, reasons, locale),
        reason: crate::digest::build::reason(item, t),
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
    let t = user.t();
    match shared.quarantine.store().get_item(id).await {
        Ok(item) if item.recipient.eq_ignore_ascii_case(&user.session.address) && item.state != ItemState::Deleted => Ok(item),
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            Err(Box::new(user.page(StatusCode::NOT_FOUND, t.center.not_found_title.as_str(), &Notice::new(t.center.not_found.as_str()))))
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            Err(Box::new(unavailable(t)))
        }
    }
}

/// What a message shows: its text, its HTML part (raw; sanitise before use) and its attachments
/// (name and type, [`shown`]: the name whole, to be wrapped; `t` names the unnamed).
pub struct Parts {
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<(String, String)>,
}

pub fn parts(contents: &[u8], t: &Catalog) -> Parts {
    let Some(message) = mail_parser::MessageParser::default().parse(contents) else {
        return Parts { text: None, html: None, attachments: Vec::new() };
    };
    let html = message.html_body.first().and_then(|_| message.body_html(0)).map(|h| h.into_owned());
    let text = message.text_body.first().and_then(|_| message.body_text(0)).map(|t| t.into_owned());
    let attachments = message
        .attachments()
        .map(|part| {
            let name = shown(part.attachment_name().unwrap_or(t.words.unnamed.as_str()), usize::MAX);
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
            Err(Box::new(unavailable(user.t())))
        }
    }
}

#[derive(askama::Template)]
#[template(path = "center/view.html")]
struct ViewPage<'a> {
    t: &'static Catalog,
    id: &'a str,
    csrf: String,
    from: Author,
    recipient: &'a str,
    subject: String,
    date: String,
    /// The plain-language sentence the item leads with, if a `reason` line covers it.
    headline: Option<String>,
    reason: String,
    /// The score, written the language's way.
    score: String,
    category: &'static Text,
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
    let t = user.t();
    let parts = parts(&contents, t);
    let body = ViewPage {
        t,
        id: &item.id,
        csrf: user.csrf(),
        from: Author::of(&item, usize::MAX, usize::MAX, t),
        recipient: &item.recipient,
        subject: shown(or_none(&item.subject, t.words.no_subject.as_str()), usize::MAX),
        date: crate::clock::minute_in(item.date, &user.locale.zone),
        headline: crate::digest::build::headline(&item, &shared.quarantine.reasons(), &user.locale),
        reason: crate::digest::build::reason(&item, t),
        score: t.number(item.score),
        category: t.words.category(item.category.as_str()),
        held: item.state == ItemState::Held,
        text: parts.text.map(|text| text.chars().take(MAX_VIEW_TEXT).collect()),
        has_html: parts.html.is_some(),
        attachments: parts.attachments,
    };
    user.page(StatusCode::OK, t.words.held_message.as_str(), &body)
}

/// The sanitised HTML part, as a document of its own for the sandboxed frame.
async fn html_part(State(shared): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let html = match own_contents(&shared, &headers, &id).await {
        Ok((user, _, contents)) => parts(&contents, user.t()).html.unwrap_or_default(),
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

    /// What was done to `n` messages, in `t`'s words.
    fn done(self, t: &'static Catalog, n: usize) -> String {
        let texts = &t.center;
        let text = match self {
            ItemAction::Release => &texts.released,
            ItemAction::ReleaseAllow => &texts.released_allowed,
            ItemAction::Block => &texts.blocked,
            ItemAction::Delete => &texts.deleted,
            ItemAction::Spam => &texts.reported,
        };
        text.count(n).to_string()
    }
}

async fn act(State(shared): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let user = match signed_in_post(&shared, &headers, &form).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let t = user.t();
    let back = t.words.back_to_quarantine.as_str();
    let Some(action) = ItemAction::parse(form.one("action")) else {
        return user.page(
            StatusCode::BAD_REQUEST,
            t.center.nothing_done.as_str(),
            &Notice::new(t.center.choose_action.as_str()).link("/mc", back),
        );
    };
    let ids: Vec<&str> = form.all("id").take(MAX_BULK).collect();
    if ids.is_empty() {
        return user.page(StatusCode::OK, t.center.nothing_done.as_str(), &Notice::new(t.center.none_selected.as_str()).link("/mc", back));
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
    let mut text = Notice::new(action.done(t, done));
    if matches!(action, ItemAction::Release | ItemAction::ReleaseAllow) && done > 0 {
        text = text.and(t.center.on_their_way.as_str());
    }
    if failed > 0 {
        text = text.and(t.center.failed.count(failed).to_string());
    }
    user.page(StatusCode::OK, t.center.done_title.as_str(), &text.link("/mc", back))
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
            return unavailable(user.t());
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
            return unavailable(user.t());
        }
    };
    preferences_page(&shared, &user, &prefs, &Refused::default())
}

/// What the preferences form refused, with the values sent (shown again in the form, with the
/// error next to the field; nothing is saved).
#[derive(Debug, Default)]
struct Refused {
    /// The time zone typed, and why it was refused.
    time_zone: Option<(String, String)>,
    /// The language sent, and why it was refused.
    language: Option<(String, String)>,
}

impl Refused {
    fn any(&self) -> bool {
        self.time_zone.is_some() || self.language.is_some()
    }
}

/// The preferences form for `prefs`, with the values and errors of `refused`.
fn preferences_page(shared: &App, user: &User, prefs: &Preferences, refused: &Refused) -> Response {
    let config = shared.config.load();
    let t = user.t();
    let p = &t.prefs;
    let address = &user.session.address;
    let digest_current = prefs.digest.map_or("", DigestFrequency::as_str);
    let filtering_current = match prefs.filtering {
        None => "",
        Some(true) => "on",
        Some(false) => "off",
    };
    let entries = |list: &[Entry]| list.iter().map(ToString::to_string).collect();
    let status = if refused.any() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    // The languages, each named in itself; the first option is the domain's.
    let domain_lang = config.language_for(address, "");
    let mut language = Select::new("language", &p.language, "", &[]);
    language.current = refused.language.as_ref().map_or(prefs.language.as_str(), |(sent, _)| sent.as_str());
    language.options.push(("", p.language_default.with("language", &domain_lang.catalog().language_name).to_string()));
    language.options.extend(Lang::ALL.iter().map(|lang| (lang.code(), lang.catalog().language_name.to_string())));
    language.error = refused.language.as_ref().map(|(_, why)| why.clone());
    let body = PreferencesPage {
        t,
        csrf: user.csrf(),
        opt_out: prefs.opt_out,
        digest: may_choose_digest(&config, address).then(|| {
            Select::new(
                "digest",
                &p.how_often,
                digest_current,
                &[("", &p.default), ("daily", &p.daily), ("weekly", &p.weekly), ("never", &p.never)],
            )
        }),
        filtering: may_choose_filtering(&config, address)
            .then(|| Select::new("filtering", &p.filtering, filtering_current, &[("", &p.default), ("on", &p.on), ("off", &p.off)])),
        language,
        time_zone: refused.time_zone.as_ref().map_or(prefs.time_zone.as_str(), |(typed, _)| typed.as_str()),
        domain_zone: config.digest_for_address(address).timezone,
        zones: crate::clock::time_zone_names().collect(),
        time_zone_error: refused.time_zone.as_ref().map(|(_, why)| why.clone()),
        lists: vec![
            UserList { kind: ListKind::Allow.as_str(), title: &p.allow_title, entries: entries(&prefs.allow) },
            UserList { kind: ListKind::Block.as_str(), title: &p.block_title, entries: entries(&prefs.block) },
        ],
    };
    user.page(status, p.title.as_str(), &body)
}

/// One of the user's lists, as shown.
struct UserList {
    kind: &'static str,
    title: &'static Text,
    entries: Vec<String>,
}

#[derive(askama::Template)]
#[template(path = "center/prefs.html")]
struct PreferencesPage<'a> {
    t: &'static Catalog,
    csrf: String,
    opt_out: bool,
    /// The digest frequency, where the domain lets users choose it.
    digest: Option<Select<'a>>,
    /// Spam filtering on or off, where the domain lets users choose it.
    filtering: Option<Select<'a>>,
    /// The language moat speaks to the user in.
    language: Select<'a>,
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

/// Text a user sent, as an error message may quote it: at most 100 characters, [`shown`].
fn quoted(text: &str) -> String {
    shown(text, 100)
}

async fn save_preferences(State(shared): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let mut user = match signed_in_post(&shared, &headers, &form).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let t = user.t();
    let store = shared.quarantine.store();
    let address = user.session.address.clone();
    let config = shared.config.load_full();
    let mut prefs = match store.get_preferences(&address).await {
        Ok(prefs) => prefs,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            return unavailable(t);
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
    // Refused values leave the whole form unsaved: it comes back as the user filled it in,
    // with the errors next to their fields.
    let mut refused = Refused::default();
    // Empty: the domain's zone; otherwise a zone the tz database knows.
    let typed = form.one("time_zone").trim();
    match (typed.is_empty(), crate::clock::time_zone(typed)) {
        (true, _) => prefs.time_zone = String::new(),
        (false, Some(zone)) => prefs.time_zone = zone.to_string(),
        (false, None) => {
            let typed: String = typed.chars().take(100).collect();
            let why = t.prefs.time_zone_error.with("value", &typed).to_string();
            refused.time_zone = Some((typed, why));
        }
    }
    // Empty: the domain's language; otherwise one moat ships.
    let sent = form.one("language").trim();
    match (sent.is_empty(), Lang::parse(sent)) {
        (true, _) => prefs.language = String::new(),
        (false, Some(lang)) => prefs.language = lang.code().to_string(),
        (false, None) => {
            let why = t.prefs.language_error.with("value", quoted(sent)).to_string();
            refused.language = Some((sent.chars().take(100).collect(), why));
        }
    }
    if refused.any() {
        return preferences_page(&shared, &user, &prefs, &refused);
    }
    match store.set_preferences(&address, &prefs, store::unix_now()).await {
        Ok(()) => {
            crate::app::read_user_lists(&shared).await;
            tracing::info!(event = "preferences_saved", user = %address);
            // The answer is in the language just chosen.
            user.locale = config.locale_for(&address, &prefs.language, &prefs.time_zone);
            let t = user.t();
            user.page(
                StatusCode::OK,
                t.prefs.saved_title.as_str(),
                &Notice::new(t.prefs.saved.as_str()).link("/mc/prefs", t.words.back_to_preferences.as_str()),
            )
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            unavailable(t)
        }
    }
}

async fn change_list(State(shared): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let user = match signed_in_post(&shared, &headers, &form).await {
        Ok(user) => user,
        Err(refusal) => return *refusal,
    };
    let t = user.t();
    let (nothing_changed, back) = (t.prefs.nothing_changed.as_str(), t.words.back_to_preferences.as_str());
    let kind = match form.one("kind") {
        "allow" => ListKind::Allow,
        "block" => ListKind::Block,
        _ => return user.page(StatusCode::BAD_REQUEST, nothing_changed, &Notice::new(t.prefs.unknown_list.as_str())),
    };
    let typed = form.one("entry").trim();
    let entry = match Entry::parse(typed) {
        Ok(entry) => entry,
        Err(_) => {
            let why = Notice::new(t.prefs.entry_invalid.with("entry", quoted(typed)).to_string()).link("/mc/prefs", back);
            return user.page(StatusCode::BAD_REQUEST, nothing_changed, &why);
        }
    };
    let adding = form.one("op") != "remove";
    let restricted = adding && kind == ListKind::Allow && !may_choose_filtering(&shared.config.load(), &user.session.address);
    if restricted && entry.restricted_allow().is_err() {
        let why = Notice::new(t.prefs.entry_restricted.with("entry", quoted(entry.as_str())).to_string()).link("/mc/prefs", back);
        return user.page(StatusCode::BAD_REQUEST, nothing_changed, &why);
    }
    let store = shared.quarantine.store();
    let result = match form.one("op") {
        "remove" => store.remove_list_entry(&user.session.address, kind, &entry).await,
        _ => store.add_list_entry(&user.session.address, kind, &entry).await,
    };
    match result {
        Ok(_) => {
            crate::app::read_user_lists(&shared).await;
            user.page(
                StatusCode::OK,
                t.prefs.list_changed_title.as_str(),
                &Notice::new(t.prefs.list_changed.as_str()).link("/mc/prefs", back),
            )
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            unavailable(t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_shows_its_text_html_and_attachment_names() {
        let message = b"From: a@example.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\nContent-Type: text/plain\r\n\r\nplain words\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>html words</p>\r\n--c--\r\n--b\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\nJVBERi0=\r\n--b--\r\n";
        let parts = parts(message, Lang::En.catalog());
        assert!(parts.text.as_deref().is_some_and(|t| t.contains("plain words")));
        assert!(parts.html.as_deref().is_some_and(|h| h.contains("<p>html words</p>")));
        assert_eq!(parts.attachments, [("invoice.pdf".to_string(), "application/pdf".to_string())]);
    }

    #[test]
    fn attachment_names_cannot_disguise_what_they_are() {
        let message = b"From: a@example.test\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
            --b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEfdp.exe\r\n\r\nAA==\r\n--b--\r\n";
        assert_eq!(
            parts(message, Lang::En.catalog()).attachments,
            [("invoice[U+202E]fdp.exe".to_string(), "application/octet-stream".to_string())]
        );
    }
}
