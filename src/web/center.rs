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
use super::{Form, escape, escape_keep_lines, page_with, sanitize, unavailable};
use crate::app::App;
use crate::html::{LIST_TEXT, mail_value, shown};
use crate::links::LinkKey;
use crate::lists::Entry;
use crate::store::{self, Category, DigestFrequency, ItemQuery, ItemState, ListKind, QuarantineItem, ReleaseVia, StoreError};
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

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = "<style>main{max-width:60rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem;border-bottom:1px solid #ddd;vertical-align:top;overflow-wrap:anywhere}dd{overflow-wrap:anywhere}\
nav a,nav button{margin-right:1rem}.actions button{margin:.2rem}iframe{width:100%;height:24rem;border:1px solid #ccc}\
.skip{position:absolute;left:-999px}.skip:focus{left:1rem}\
@media (max-width:40rem){table,tbody,tr,td{display:block}thead{display:none}tr{border-bottom:2px solid #999;margin-bottom:.5rem}td{border:0}}</style>";

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
    /// The renewed session cookie.
    cookie: HeaderValue,
}

impl User {
    fn csrf_field(&self) -> String {
        format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(&self.session.csrf(&self.key)))
    }

    /// A Message Center page with the navigation, renewing the session cookie.
    fn page(&self, status: StatusCode, title: &str, body: &str) -> Response {
        let nav = format!(
            "<a class=\"skip\" href=\"#content\">Skip to content</a><nav aria-label=\"Message Center\"><a href=\"/mc\">Quarantine</a><a href=\"/mc/prefs\">Preferences</a>\
             <form method=\"post\" action=\"/mc/logout\" style=\"display:inline\">{}<button type=\"submit\">Sign out</button></form>\
             <span>Signed in as {}</span></nav>{STYLE}<div id=\"content\">{body}</div>",
            self.csrf_field(),
            escape(&self.session.address)
        );
        let mut response = page_with(status, title, &nav, CSP);
        response.headers_mut().insert(header::SET_COOKIE, self.cookie.clone());
        response
    }
}

/// The signed-in user, or the page to answer instead (the login page for a GET).
/// A session signed out of (on any device) no longer counts, however valid its cookie.
async fn signed_in(shared: &App, headers: &HeaderMap) -> Result<User, Box<Response>> {
    let config = shared.config.load_full();
    let (Some(key), Some(web)) = (shared.quarantine.links(), config.web.as_ref()) else {
        return Err(Box::new(page_with(StatusCode::NOT_FOUND, "Not found", "<p>The Message Center is not enabled here.</p>", CSP)));
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
            Ok(User { session, key: key.clone(), cookie })
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
            "<p>This form has expired or came from another site. Go back, reload the page and try again.</p>",
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
    let mut response = page_with(StatusCode::OK, "Signed out", "<p>You are signed out. <a href=\"/login\">Sign in again</a></p>", CSP);
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

fn select(name: &str, label: &str, current: &str, options: &[(&str, &str)]) -> String {
    let options: String = options
        .iter()
        .map(|(value, text)| format!("<option value=\"{value}\"{}>{text}</option>", if *value == current { " selected" } else { "" }))
        .collect();
    format!("<label for=\"{name}\">{label}</label> <select id=\"{name}\" name=\"{name}\">{options}</select>")
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
    let (items, total) = match tokio::try_join!(store.find_items(&query, PAGE_SIZE, offset), store.count_items(&query)) {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            return unavailable();
        }
    };
    let mut body = format!(
        "<form method=\"get\" action=\"/mc\" role=\"search\"><label for=\"q\">Search sender or subject</label> \
         <input id=\"q\" name=\"q\" value=\"{}\"> {} {} <button type=\"submit\">Search</button></form>",
        escape(&query.text),
        select("category", "Category", &params.category, &[("", "All"), ("spam", "Spam"), ("virus", "Virus"), ("policy", "Policy")]),
        select("state", "Show", &params.state, &[("", "Held"), ("released", "Released"), ("all", "All")]),
    );
    body.push_str(&format!("<p>{total} message(s).</p>"));
    if !items.is_empty() {
        body.push_str(&format!("<form method=\"post\" action=\"/mc/act\">{}<table><thead><tr><th scope=\"col\">Select</th><th scope=\"col\">Date</th><th scope=\"col\">From</th><th scope=\"col\">Subject</th><th scope=\"col\">Category</th><th scope=\"col\">Score</th><th scope=\"col\">Why</th></tr></thead><tbody>", user.csrf_field()));
        let zone = user_zone(&shared, &user.session.address);
        for item in &items {
            body.push_str(&row(item, &zone));
        }
        body.push_str("</tbody></table>");
        body.push_str(&action_buttons("Selected messages: "));
        body.push_str("</form>");
    }
    body.push_str(&pager(&params, total));
    user.page(StatusCode::OK, "Your quarantine", &body)
}

/// The time zone a user's times are shown in: their domain's digest time zone.
fn user_zone(shared: &App, address: &str) -> String {
    shared.config.load().digest_for_address(address).timezone
}

fn row(item: &QuarantineItem, zone: &str) -> String {
    let sender = or_none(&item.sender, "(no sender)");
    let subject = or_none(&item.subject, "(no subject)");
    let checkbox = || {
        format!(
            "<input type=\"checkbox\" name=\"id\" value=\"{}\" aria-label=\"Select message from {}\">",
            escape(&item.id),
            escape(&shown(sender, LIST_TEXT))
        )
    };
    // Released messages can still be reported as spam (the filter then learns it was wrong).
    let check = match item.state {
        ItemState::Held => checkbox(),
        ItemState::Released => format!("{} {}", checkbox(), escape(item.state.as_str())),
        ItemState::Deleted => escape(item.state.as_str()),
    };
    format!(
        "<tr><td>{check}</td><td>{}</td><td>{}</td><td><a href=\"/mc/m/{}\">{}</a></td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
        crate::clock::minute_in(item.date, zone),
        mail_value(sender, LIST_TEXT),
        escape(&item.id),
        mail_value(subject, LIST_TEXT),
        item.category.as_str(),
        item.score,
        escape(&crate::digest::build::reason(item)),
    )
}

fn action_buttons(label: &str) -> String {
    format!(
        "<p class=\"actions\" role=\"group\" aria-label=\"{}\">{label}\
         <button type=\"submit\" name=\"action\" value=\"release\">Not spam: release</button>\
         <button type=\"submit\" name=\"action\" value=\"release_allow\">Release and allow sender</button>\
         <button type=\"submit\" name=\"action\" value=\"block\">Block sender</button>\
         <button type=\"submit\" name=\"action\" value=\"delete\">Delete</button>\
         <button type=\"submit\" name=\"action\" value=\"spam\">Spam after all (released messages)</button></p>",
        escape(label.trim_end_matches([':', ' ']))
    )
}

fn pager(params: &ListParams, total: u64) -> String {
    let page_link = |page: u32, text: &str| {
        let query = serde_urlencoded::to_string([
            ("q", params.q.as_str()),
            ("category", &params.category),
            ("state", &params.state),
            ("page", &page.to_string()),
        ])
        .unwrap_or_default();
        format!("<a href=\"/mc?{}\">{text}</a> ", escape(&query))
    };
    let mut links = String::new();
    let page = params.page_number();
    if page > 1 {
        links.push_str(&page_link(page - 1, "Newer"));
    }
    if params.more_after(total) {
        links.push_str(&page_link(page + 1, "Older"));
    }
    if links.is_empty() { links } else { format!("<nav aria-label=\"Pages\">{links}</nav>") }
}

// ---- one message ----

/// The user's own item, or the page to answer instead ("not found" for anyone else's).
async fn own_item(shared: &App, user: &User, id: &str) -> Result<QuarantineItem, Box<Response>> {
    match shared.quarantine.store().get_item(id).await {
        Ok(item) if item.recipient.eq_ignore_ascii_case(&user.session.address) && item.state != ItemState::Deleted => Ok(item),
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            Err(Box::new(user.page(StatusCode::NOT_FOUND, "Message not found", "<p>This message is not in your quarantine.</p>")))
        }
        Err(error) => {
            tracing::warn!(event = "web_store_error", error = %error);
            Err(Box::new(unavailable()))
        }
    }
}

/// What a message shows: its text, its HTML part (raw; sanitise before use) and its attachments
/// (name, type).
pub struct Parts {
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<(String, String)>,
}

impl Parts {
    /// The attachments as HTML list items: name and type, escaped.
    pub fn attachment_items(&self) -> String {
        self.attachments.iter().map(|(name, kind)| format!("<li>{} <small>{}</small></li>", escape(name), escape(kind))).collect()
    }
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
            let name = part.attachment_name().unwrap_or("(unnamed)").to_string();
            let kind = part.content_type().map_or_else(String::new, |t| match t.subtype() {
                Some(sub) => format!("{}/{sub}", t.ctype()),
                None => t.ctype().to_string(),
            });
            (name, kind)
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

async fn view(State(shared): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (user, item, contents) = match own_contents(&shared, &headers, &id).await {
        Ok(found) => found,
        Err(refusal) => return *refusal,
    };
    let parts = parts(&contents);
    let mut body = format!(
        "<dl><dt>From</dt><dd>{}</dd><dt>To</dt><dd>{}</dd><dt>Subject</dt><dd>{}</dd><dt>Date</dt><dd>{}</dd><dt>Held because</dt><dd>{} (score {:.1}, {})</dd></dl>",
        mail_value(or_none(&item.sender, "(no sender)"), usize::MAX),
        escape(&item.recipient),
        mail_value(or_none(&item.subject, "(no subject)"), usize::MAX),
        crate::clock::minute_in(item.date, &user_zone(&shared, &user.session.address)),
        escape(&crate::digest::build::reason(&item)),
        item.score,
        item.category.as_str(),
    );
    if item.state == ItemState::Held {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/mc/act\">{}<input type=\"hidden\" name=\"id\" value=\"{}\">{}</form>",
            user.csrf_field(),
            escape(&item.id),
            action_buttons("This message: ")
        ));
    } else {
        body.push_str("<p>This message was released.</p>");
    }
    if let Some(text) = &parts.text {
        let shown: String = text.chars().take(MAX_VIEW_TEXT).collect();
        body.push_str(&format!(
            "<h2>Text</h2><pre style=\"white-space:pre-wrap;border:1px solid #ccc;padding:.5rem\">{}</pre>",
            escape_keep_lines(&shown)
        ));
    }
    if parts.html.is_some() {
        body.push_str(&format!(
            "<h2>HTML version</h2><p><small>Shown without images, links or scripts.</small></p><iframe sandbox=\"\" referrerpolicy=\"no-referrer\" title=\"HTML version of the message\" src=\"/mc/m/{}/html\"></iframe>",
            escape(&item.id)
        ));
    }
    if !parts.attachments.is_empty() {
        body.push_str(&format!(
            "<h2>Attachments</h2><p>Attachments cannot be opened here; release the message to get them.</p><ul>{}</ul>",
            parts.attachment_items()
        ));
    }
    user.page(StatusCode::OK, "Held message", &body)
}

/// The sanitised HTML part, as a document of its own for the sandboxed frame.
async fn html_part(State(shared): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let html = match own_contents(&shared, &headers, &id).await {
        Ok((_, _, contents)) => parts(&contents).html.unwrap_or_default(),
        Err(refusal) => return *refusal,
    };
    let mut response = (StatusCode::OK, sanitize::document(&html)).into_response();
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
            "<p>Choose an action.</p><p><a href=\"/mc\">Back to your quarantine</a></p>",
        );
    };
    let ids: Vec<&str> = form.all("id").take(MAX_BULK).collect();
    if ids.is_empty() {
        return user.page(
            StatusCode::OK,
            "Nothing done",
            "<p>No message was selected.</p><p><a href=\"/mc\">Back to your quarantine</a></p>",
        );
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
    let mut text = format!("<p>{done} message(s) {}.</p>", action.done());
    if matches!(action, ItemAction::Release | ItemAction::ReleaseAllow) && done > 0 {
        text.push_str("<p>Released messages are on their way to your mailbox.</p>");
    }
    if failed > 0 {
        text.push_str(&format!("<p>{failed} message(s) could not be changed: they are no longer held, or are not yours.</p>"));
    }
    text.push_str("<p><a href=\"/mc\">Back to your quarantine</a></p>");
    user.page(StatusCode::OK, "Done", &text)
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
    if let (Some(kind), Ok(entry)) = (list_kind, Entry::parse(&item.sender)) {
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
    let config = shared.config.load();
    let address = &user.session.address;
    let mut body = format!("<h2>Quarantine emails</h2><form method=\"post\" action=\"/mc/prefs\">{}", user.csrf_field());
    body.push_str(&format!(
        "<p><input type=\"checkbox\" id=\"emails\" name=\"emails\" value=\"on\"{}> <label for=\"emails\">Send me quarantine digests and virus notices</label></p>",
        if prefs.opt_out { "" } else { " checked" }
    ));
    if may_choose_digest(&config, address) {
        let current = prefs.digest.map_or("", DigestFrequency::as_str);
        body.push_str(&format!(
            "<p>{}</p>",
            select("digest", "How often", current, &[("", "Default"), ("daily", "Daily"), ("weekly", "Weekly"), ("never", "Never")])
        ));
    }
    if may_choose_filtering(&config, address) {
        let current = match prefs.filtering {
            None => "",
            Some(true) => "on",
            Some(false) => "off",
        };
        body.push_str(&format!(
            "<p>{}</p>",
            select("filtering", "Spam filtering", current, &[("", "Default"), ("on", "On"), ("off", "Off (viruses are still stopped)")])
        ));
    }
    body.push_str("<p><button type=\"submit\">Save preferences</button></p></form>");
    for (kind, title, entries) in [(ListKind::Allow, "Always allow", &prefs.allow), (ListKind::Block, "Always block", &prefs.block)] {
        body.push_str(&format!("<h2>{title}</h2><ul>"));
        for entry in entries {
            let shown = entry.to_string();
            body.push_str(&format!(
                "<li>{} <form method=\"post\" action=\"/mc/lists\" style=\"display:inline\">{}<input type=\"hidden\" name=\"op\" value=\"remove\">\
                 <input type=\"hidden\" name=\"kind\" value=\"{}\"><input type=\"hidden\" name=\"entry\" value=\"{}\">\
                 <button type=\"submit\" aria-label=\"Remove {} from {}\">Remove</button></form></li>",
                escape(&shown),
                user.csrf_field(),
                kind.as_str(),
                escape(&shown),
                escape(&shown),
                title.to_lowercase()
            ));
        }
        let field = format!("add-{}", kind.as_str());
        body.push_str(&format!(
            "</ul><form method=\"post\" action=\"/mc/lists\">{}<input type=\"hidden\" name=\"op\" value=\"add\"><input type=\"hidden\" name=\"kind\" value=\"{}\">\
             <label for=\"{field}\">Address or domain (e.g. friend@example.com or @example.com)</label> <input id=\"{field}\" name=\"entry\" required> \
             <button type=\"submit\">Add</button></form>",
            user.csrf_field(),
            kind.as_str()
        ));
    }
    body.push_str(
        "<h2>Your data</h2><p>Download what moat holds about you: <a href=\"/mc/export/data.json\" download>your data (JSON)</a> \
         and <a href=\"/mc/export/messages.mbox\" download>your held messages (mbox)</a>.</p>",
    );
    user.page(StatusCode::OK, "Preferences", &body)
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
    let result = async {
        let mut prefs = store.get_preferences(&address).await?;
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
        store.set_preferences(&address, &prefs, store::unix_now()).await
    }
    .await;
    match result {
        Ok(()) => {
            crate::app::read_user_lists(&shared).await;
            tracing::info!(event = "preferences_saved", user = %address);
            user.page(
                StatusCode::OK,
                "Preferences saved",
                "<p>Your preferences are saved.</p><p><a href=\"/mc/prefs\">Back to preferences</a></p>",
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
        _ => return user.page(StatusCode::BAD_REQUEST, "Nothing changed", "<p>Unknown list.</p>"),
    };
    let entry = match Entry::parse(form.one("entry").trim()) {
        Ok(entry) => entry,
        Err(error) => {
            return user.page(
                StatusCode::BAD_REQUEST,
                "Nothing changed",
                &format!(
                    "<p>That entry is not valid: {}</p><p><a href=\"/mc/prefs\">Back to preferences</a></p>",
                    escape(&error.to_string())
                ),
            );
        }
    };
    let adding = form.one("op") != "remove";
    let restricted = adding && kind == ListKind::Allow && !may_choose_filtering(&shared.config.load(), &user.session.address);
    if let (true, Err(why)) = (restricted, entry.restricted_allow()) {
        return user.page(
            StatusCode::BAD_REQUEST,
            "Nothing changed",
            &format!("<p>That entry is not allowed: {}</p><p><a href=\"/mc/prefs\">Back to preferences</a></p>", escape(&why)),
        );
    }
    let store = shared.quarantine.store();
    let result = match form.one("op") {
        "remove" => store.remove_list_entry(&user.session.address, kind, &entry).await,
        _ => store.add_list_entry(&user.session.address, kind, &entry).await,
    };
    match result {
        Ok(_) => {
            crate::app::read_user_lists(&shared).await;
            user.page(StatusCode::OK, "List changed", "<p>Your list is changed.</p><p><a href=\"/mc/prefs\">Back to preferences</a></p>")
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
}
