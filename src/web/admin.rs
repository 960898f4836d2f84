//! The admin console and JSON API (`[admin]`, a listener of its own, to keep on a private
//! address): live verdict counts with a chart, the rule set in force (its hash, to spot drift
//! between nodes) and a reload with its validation report, per-domain policy, the delivery
//! queue and the quarantine by metadata (recipient, sender, subject, score, symbols), release
//! and delete, and the audit log of admin actions.
//!
//! Authentication: the token in `token_file` (created with 32 random bytes, hex, if missing):
//! `Authorization: Bearer <token>` for `/api/v1/...`; the console's login form sets a session
//! cookie (HMAC under a key derived from the token, 12 hours at most) and its forms carry a CSRF
//! token. Changing the token file (and restarting) ends every session.
//!
//! Guarantees: nothing here shows message contents (the privacy promise: admins see metadata
//! only); every action (release, delete, reload) is written to the audit log with its outcome;
//! a request without valid credentials gets 401 (API) or the login page (console) and changes
//! nothing; every value is escaped; pages carry no script.

use super::session::{cookie, cross_site};
use super::{ClientAddr, Form, date, escape, page_with, serve_app};
use crate::app::App;
use crate::html::{LIST_TEXT, mail_value};
use crate::links::LinkKey;
use crate::stats::{Counts, STATS};
use crate::store::{self, AdminRecord, ItemQuery, ItemState, QuarantineItem, ReleaseVia, StoreError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::net::TcpListener;

const COOKIE: &str = "moat_admin";
const SESSION_AGE: i64 = 12 * 3600;
const PAGE_SIZE: u32 = 50;
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLE: &str = "<style>main{max-width:72rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25rem;border-bottom:1px solid #ddd;vertical-align:top}nav a{margin-right:1rem}svg{max-width:100%}</style>";

/// The admin token and the key its sessions are signed with.
#[derive(Clone)]
pub struct AdminToken {
    token: String,
    key: LinkKey,
}

impl AdminToken {
    /// The token in `path`, created (64 hex digits, mode 0600) if missing.
    pub fn open(path: &std::path::Path) -> std::io::Result<AdminToken> {
        let token = match std::fs::read_to_string(path) {
            Ok(text) => text.trim().to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
                let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                file.write_all(format!("{token}\n").as_bytes())?;
                file.sync_all()?;
                token
            }
            Err(error) => return Err(error),
        };
        if token.len() < 16 {
            return Err(std::io::Error::other("the admin token must be at least 16 characters"));
        }
        let key = LinkKey::from_bytes(Sha256::digest(format!("moat-admin-v1\0{token}").as_bytes()).into());
        Ok(AdminToken { token, key })
    }

    fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (Sha256::digest(self.token.as_bytes()), Sha256::digest(candidate.as_bytes()));
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn session_value(&self, started: i64) -> String {
        format!("{started}.{}", self.key.derive("admin-session", &started.to_string()))
    }

    /// When the request's console session started, if it has a valid one.
    fn session(&self, headers: &HeaderMap, now: i64) -> Option<i64> {
        let (started, mac) = cookie(headers, COOKIE)?.split_once('.')?;
        let started: i64 = started.parse().ok()?;
        (started <= now && now - started <= SESSION_AGE && self.key.check_derived("admin-session", &started.to_string(), mac))
            .then_some(started)
    }

    fn csrf(&self, started: i64) -> String {
        self.key.derive("admin-csrf", &started.to_string())
    }
}

struct Admin {
    shared: Arc<App>,
    token: AdminToken,
}

type AdminState = Arc<Admin>;

/// Serves the admin listener until the server shuts down.
pub async fn serve(listener: TcpListener, token: AdminToken, shared: Arc<App>) {
    let shutdown = shared.shutdown.clone();
    let state = Arc::new(Admin { shared, token });
    let app = Router::new()
        .route("/login", get(login_form).post(login))
        .route("/", get(dashboard))
        .route("/chart.svg", get(chart))
        .route("/quarantine", get(quarantine_page))
        .route("/quarantine/act", post(quarantine_act))
        .route("/queue", get(queue_page))
        .route("/domains", get(domains_page))
        .route("/audit", get(audit_page))
        .route("/reload", post(reload_form))
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/quarantine", get(api_quarantine))
        .route("/api/v1/quarantine/{id}/release", post(api_release))
        .route("/api/v1/quarantine/{id}/delete", post(api_delete))
        .route("/api/v1/queue", get(api_queue))
        .route("/api/v1/domains", get(api_domains))
        .route("/api/v1/domains/{domain}/purge", post(api_purge_domain))
        .route("/api/v1/audit", get(api_audit))
        .route("/api/v1/reload", post(api_reload))
        .layer(DefaultBodyLimit::max(super::MAX_BODY))
        .layer(axum::middleware::map_response(no_store))
        .with_state(state);
    serve_app(listener, app, shutdown, "admin_listener").await;
}

/// Nothing the admin listener answers (status, metadata, the audit log) belongs in a cache.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- authentication ----

/// The answer instead of the page, when a request is not authenticated (boxed: it is large).
type Refusal = Box<Response>;

fn api_auth(admin: &Admin, headers: &HeaderMap) -> Result<(), Refusal> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) if admin.token.matches(token.trim()) => Ok(()),
        _ => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(json!({"error": "missing or wrong admin token"})),
            )
                .into_response(),
        )),
    }
}

/// The console session's start, or the login page.
fn console_auth(admin: &Admin, headers: &HeaderMap) -> Result<i64, Refusal> {
    admin
        .token
        .session(headers, store::unix_now())
        .ok_or_else(|| Box::new((StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response()))
}

/// A console POST: a session, its CSRF token, and not from another site.
fn console_post(admin: &Admin, headers: &HeaderMap, form: &Form) -> Result<i64, Refusal> {
    let started = console_auth(admin, headers)?;
    let csrf = form.one("csrf");
    if cross_site(headers) || !admin.token.key.check_derived("admin-csrf", &started.to_string(), csrf) {
        return Err(Box::new(page_with(
            StatusCode::FORBIDDEN,
            "Request refused",
            "<p>This form has expired or came from another site.</p>",
            CSP,
        )));
    }
    Ok(started)
}

async fn login_form() -> Response {
    page_with(
        StatusCode::OK,
        "moat admin",
        "<form method=\"post\" action=\"/login\"><label for=\"token\">Admin token</label><br>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required size=\"40\"> \
         <button type=\"submit\">Sign in</button></form>",
        CSP,
    )
}

async fn login(State(admin): State<AdminState>, ConnectInfo(client): ConnectInfo<ClientAddr>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if cross_site(&headers) || !admin.token.matches(form.one("token")) {
        tracing::warn!(event = "admin_login", client_ip = %client.0.ip(), outcome = "refused");
        return page_with(StatusCode::UNAUTHORIZED, "Sign-in refused", "<p>Wrong token. <a href=\"/login\">Try again</a></p>", CSP);
    }
    let now = store::unix_now();
    tracing::info!(event = "admin_login", client_ip = %client.0.ip(), outcome = "accepted");
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_AGE}", admin.token.session_value(now));
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A console page with the navigation.
fn console_page(title: &str, body: &str) -> Response {
    let nav = format!(
        "<nav aria-label=\"Admin\"><a href=\"/\">Status</a><a href=\"/quarantine\">Quarantine</a><a href=\"/queue\">Queue</a><a href=\"/domains\">Domains</a><a href=\"/audit\">Audit</a></nav>{STYLE}{body}"
    );
    page_with(StatusCode::OK, title, &nav, CSP)
}

async fn audit(shared: &App, actor: &str, action: &str, target: &str, recipient: &str, outcome: &str) {
    let record = AdminRecord {
        at: store::unix_now(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        recipient: recipient.to_string(),
        outcome: outcome.to_string(),
    };
    tracing::info!(event = "admin_action", actor, action, target, recipient, outcome);
    if let Err(error) = shared.quarantine.store().audit_admin(&record).await {
        tracing::error!(event = "admin_audit_failed", error = %error, action, target);
    }
}

// ---- status ----

fn counts_json(counts: &Counts) -> Value {
    serde_json::to_value(counts).unwrap_or(Value::Null)
}

async fn status(shared: &App) -> Value {
    let now = store::unix_now();
    // The count only: listing the spool's ids, not reading every record as the queue view does.
    let spool = shared.spool.clone();
    let queue = tokio::task::spawn_blocking(move || spool.list().map(|ids| ids.len()).ok()).await.ok().flatten();
    let held = shared.quarantine.store().count_items(&ItemQuery { state: Some(ItemState::Held), ..ItemQuery::default() }).await.ok();
    let scorer = shared.scorer.load();
    let rules = scorer.rules_in_force();
    json!({
        "node": shared.config.load().hostname,
        "rules_hash": rules.map(|(hash, _)| hash),
        "rules_loaded": rules.map(|(_, loaded)| loaded),
        "last_hour": counts_json(&STATS.totals(now, 60)),
        "last_24h": counts_json(&STATS.totals(now, 24 * 60)),
        "hourly": STATS.series(now, 60, 24).iter().map(counts_json).collect::<Vec<_>>(),
        "queue": queue,
        "quarantine_held": held,
    })
}

async fn dashboard(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    let started = match console_auth(&admin, &headers) {
        Ok(started) => started,
        Err(response) => return *response,
    };
    let status = status(&admin.shared).await;
    let row = |name: &str, key: &str| {
        let cell = |period: &str| status[period][key].as_u64().unwrap_or(0);
        format!("<tr><th scope=\"row\">{name}</th><td>{}</td><td>{}</td></tr>", cell("last_hour"), cell("last_24h"))
    };
    let mut body = format!(
        "<p>Node <strong>{}</strong>. Rule set in force: <code>{}</code> ({} rules).</p>\
         <p>Delivery queue: {} message(s). Held in the quarantine: {}.</p>",
        escape(status["node"].as_str().unwrap_or("")),
        escape(status["rules_hash"].as_str().unwrap_or("none")),
        status["rules_loaded"].as_u64().unwrap_or(0),
        status["queue"].as_u64().map_or_else(|| "?".into(), |n| n.to_string()),
        status["quarantine_held"].as_u64().map_or_else(|| "?".into(), |n| n.to_string()),
    );
    body.push_str("<h2>Verdicts on this node</h2><table><thead><tr><th></th><th scope=\"col\">Last hour</th><th scope=\"col\">Last 24 hours</th></tr></thead><tbody>");
    for (name, key) in [
        ("Accepted", "accepted"),
        ("Tagged", "tagged"),
        ("Quarantined", "quarantined"),
        ("Rejected", "rejected"),
        ("Tempfailed", "tempfailed"),
        ("Viruses", "viruses"),
    ] {
        body.push_str(&row(name, key));
    }
    body.push_str("</tbody></table><h2>Last 24 hours</h2><img src=\"/chart.svg\" alt=\"Verdicts per hour over the last 24 hours\" width=\"720\" height=\"200\">");
    body.push_str(&format!(
        "<h2>Rules</h2><form method=\"post\" action=\"/reload\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Reload configuration and rules</button></form>",
        admin.token.csrf(started)
    ));
    console_page("moat admin", &body)
}

/// One line of the chart: its colour, its name, and the count it plots.
type ChartLine = (&'static str, &'static str, fn(&Counts) -> u64);

const CHART_LINES: [ChartLine; 5] = [
    ("#2a7", "accepted", |c| c.accepted),
    ("#999", "tagged", |c| c.tagged),
    ("#c80", "quarantined", |c| c.quarantined),
    ("#c22", "rejected", |c| c.rejected),
    ("#36c", "tempfailed", |c| c.tempfailed),
];

/// Verdicts per hour over 24 hours, one line per kind (an SVG image: no script needed).
async fn chart(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = console_auth(&admin, &headers) {
        return *response;
    }
    let series = STATS.series(store::unix_now(), 60, 24);
    let (width, height) = (720.0, 200.0);
    let max = series.iter().map(Counts::total).max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"10\">"
    );
    svg.push_str(&format!(
        "<rect width=\"{width}\" height=\"{height}\" fill=\"#fff\" stroke=\"#ccc\"/><text x=\"4\" y=\"12\">max {max}/h</text>"
    ));
    for (i, (colour, name, value)) in CHART_LINES.iter().enumerate() {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!("{:.1},{:.1}", 10.0 + i as f64 * (width - 20.0) / 23.0, height - 10.0 - value(c) as f64 * (height - 30.0) / max)
            })
            .collect();
        svg.push_str(&format!("<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>", points.join(" ")));
        svg.push_str(&format!("<text x=\"{}\" y=\"24\" fill=\"{colour}\">{name}</text>", 80 + i * 80));
    }
    svg.push_str("</svg>");
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'")], svg)
        .into_response()
}

async fn api_status(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = api_auth(&admin, &headers) {
        return *response;
    }
    axum::Json(status(&admin.shared).await).into_response()
}

// ---- quarantine ----

use super::center::ListParams as QuarantineParams;

/// The admin's view of the list parameters: any recipient, any state unless one is asked for.
fn admin_query(params: &QuarantineParams) -> ItemQuery {
    ItemQuery {
        recipient: params.recipient.trim().to_string(),
        state: match params.state.as_str() {
            "held" => Some(ItemState::Held),
            "released" => Some(ItemState::Released),
            "deleted" => Some(ItemState::Deleted),
            _ => None,
        },
        category: super::center::category_of(&params.category),
        text: params.q.chars().take(200).collect(),
        search_subjects: false,
    }
}

async fn find(shared: &App, params: &QuarantineParams) -> Result<(Vec<QuarantineItem>, u64), StoreError> {
    let query = admin_query(params);
    let store = shared.quarantine.store();
    tokio::try_join!(store.find_items(&query, PAGE_SIZE, params.offset()), store.count_items(&query))
}

async fn quarantine_page(State(admin): State<AdminState>, headers: HeaderMap, Query(params): Query<QuarantineParams>) -> Response {
    let started = match console_auth(&admin, &headers) {
        Ok(started) => started,
        Err(response) => return *response,
    };
    let (items, total) = match find(&admin.shared, &params).await {
        Ok(found) => found,
        Err(error) => return console_page("Quarantine", &format!("<p>The store cannot be read: {}</p>", escape(&error.to_string()))),
    };
    let mut body = format!(
        "<form method=\"get\" action=\"/quarantine\" role=\"search\">\
         <label for=\"recipient\">Recipient</label> <input id=\"recipient\" name=\"recipient\" value=\"{}\"> \
         <label for=\"q\">Sender</label> <input id=\"q\" name=\"q\" value=\"{}\"> \
         <label for=\"category\">Category</label> <input id=\"category\" name=\"category\" value=\"{}\" size=\"6\"> \
         <label for=\"state\">State</label> <input id=\"state\" name=\"state\" value=\"{}\" size=\"8\"> <button type=\"submit\">Search</button></form>\
         <p>{total} item(s). Contents are not shown here: only the recipient can read a message.</p>",
        escape(&params.recipient),
        escape(&params.q),
        escape(&params.category),
        escape(&params.state),
    );
    body.push_str(&format!(
        "<form method=\"post\" action=\"/quarantine/act\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><table><thead><tr><th scope=\"col\">Select</th><th scope=\"col\">Date</th><th scope=\"col\">Recipient</th><th scope=\"col\">Sender</th><th scope=\"col\">Subject</th><th scope=\"col\">Score</th><th scope=\"col\">Symbols</th><th scope=\"col\">Category</th><th scope=\"col\">State</th></tr></thead><tbody>",
        admin.token.csrf(started)
    ));
    let config = admin.shared.config.load();
    for item in &items {
        let symbols: Vec<String> = item.symbols.iter().map(|s| format!("{} ({:.1})", s.name, s.score)).collect();
        let subject =
            if config.admin_sees_subject(&item.recipient) { mail_value(&item.subject, LIST_TEXT) } else { "<i>(hidden)</i>".to_string() };
        body.push_str(&format!(
            "<tr><td><input type=\"checkbox\" name=\"id\" value=\"{id}\" aria-label=\"Select item {id}\"></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            date(item.created_at),
            escape(&item.recipient),
            mail_value(&item.sender, LIST_TEXT),
            subject,
            item.score,
            escape(&symbols.join(", ")),
            item.category.as_str(),
            item.state.as_str(),
            id = escape(&item.id),
        ));
    }
    body.push_str("</tbody></table><p><button type=\"submit\" name=\"action\" value=\"release\">Release selected</button> <button type=\"submit\" name=\"action\" value=\"delete\">Delete selected</button></p></form>");
    if params.more_after(total) {
        let next = serde_urlencoded::to_string([
            ("recipient", params.recipient.as_str()),
            ("q", &params.q),
            ("category", &params.category),
            ("state", &params.state),
            ("page", &(params.page_number() + 1).to_string()),
        ])
        .unwrap_or_default();
        body.push_str(&format!("<p><a href=\"/quarantine?{}\">Older</a></p>", escape(&next)));
    }
    console_page("Quarantine", &body)
}

/// Releases or deletes one item as the admin; the outcome, as recorded in the audit log.
async fn release_or_delete(shared: &App, via: &str, action: &str, id: &str) -> Result<String, (StatusCode, String)> {
    let actor = format!("admin ({via})");
    let item = match shared.quarantine.store().get_item(id).await {
        Ok(item) => item,
        Err(StoreError::NotFound { .. }) => return Err((StatusCode::NOT_FOUND, "no such item".into())),
        Err(error) => return Err((StatusCode::SERVICE_UNAVAILABLE, error.to_string())),
    };
    let result = match action {
        "release" => shared.quarantine.release(id, &actor, ReleaseVia::Admin).await.map(|released| {
            shared.queue.submit(released.queue_id.clone());
            released.queue_id
        }),
        _ => shared.quarantine.delete(id).await.map(|()| String::new()),
    };
    match result {
        Ok(queue_id) => {
            audit(shared, &actor, action, id, &item.recipient, "done").await;
            Ok(queue_id)
        }
        Err(error) => {
            let outcome = format!("refused: {error}");
            audit(shared, &actor, action, id, &item.recipient, &outcome).await;
            Err((StatusCode::CONFLICT, error.to_string()))
        }
    }
}

async fn quarantine_act(State(admin): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(response) = console_post(&admin, &headers, &form) {
        return *response;
    }
    let action = match form.one("action") {
        "release" => "release",
        "delete" => "delete",
        _ => return console_page("Nothing done", "<p>Choose release or delete.</p>"),
    };
    let mut lines = String::new();
    for id in form.all("id").take(super::center::MAX_BULK) {
        let outcome = match release_or_delete(&admin.shared, "console", action, id).await {
            Ok(_) => "done".to_string(),
            Err((_, error)) => error,
        };
        lines.push_str(&format!("<li><code>{}</code>: {action} {}</li>", escape(id), escape(&outcome)));
    }
    console_page("Done", &format!("<ul>{lines}</ul><p><a href=\"/quarantine\">Back to the quarantine</a></p>"))
}

async fn api_quarantine(State(admin): State<AdminState>, headers: HeaderMap, Query(params): Query<QuarantineParams>) -> Response {
    if let Err(response) = api_auth(&admin, &headers) {
        return *response;
    }
    match find(&admin.shared, &params).await {
        Ok((items, total)) => {
            let config = admin.shared.config.load();
            let items: Vec<_> = items.iter().map(|item| item.metadata_json(config.admin_sees_subject(&item.recipient))).collect();
            axum::Json(json!({"total": total, "page": params.page_number(), "page_size": PAGE_SIZE, "items": items})).into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": error.to_string()}))).into_response(),
    }
}

async fn api_item_action(admin: &Admin, headers: &HeaderMap, id: &str, action: &str) -> Response {
    if let Err(response) = api_auth(admin, headers) {
        return *response;
    }
    match release_or_delete(&admin.shared, "api", action, id).await {
        Ok(queue_id) if action == "release" => axum::Json(json!({"released": id, "queue_id": queue_id})).into_response(),
        Ok(_) => axum::Json(json!({"deleted": id})).into_response(),
        Err((status, error)) => (status, axum::Json(json!({"error": error}))).into_response(),
    }
}

async fn api_release(State(admin): State<AdminState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    api_item_action(&admin, &headers, &id, "release").await
}

async fn api_delete(State(admin): State<AdminState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    api_item_action(&admin, &headers, &id, "delete").await
}

// ---- queue, domains, audit, reload ----

async fn queue_entries(shared: &App) -> Result<Vec<crate::spool::QueueEntry>, String> {
    let config = shared.config.load_full();
    tokio::task::spawn_blocking(move || crate::spool::list_queue(&config.spool_dir()).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

async fn queue_page(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = console_auth(&admin, &headers) {
        return *response;
    }
    let entries = match queue_entries(&admin.shared).await {
        Ok(entries) => entries,
        Err(error) => return console_page("Queue", &format!("<p>The spool cannot be read: {}</p>", escape(&error))),
    };
    let mut body = format!(
        "<p>{} message(s) waiting for delivery.</p><table><thead><tr><th scope=\"col\">Queue id</th><th scope=\"col\">Received</th><th scope=\"col\">Sender</th><th scope=\"col\">Recipients</th><th scope=\"col\">Size</th><th scope=\"col\">Attempts</th></tr></thead><tbody>",
        entries.len()
    );
    for entry in &entries {
        let recipients: Vec<String> = entry.recipients.iter().map(|r| r.address.clone()).collect();
        body.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&entry.id),
            date(entry.received_at),
            escape(&entry.sender),
            escape(&recipients.join(", ")),
            entry.size,
            entry.attempts
        ));
    }
    body.push_str("</tbody></table>");
    console_page("Queue", &body)
}

async fn api_queue(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = api_auth(&admin, &headers) {
        return *response;
    }
    match queue_entries(&admin.shared).await {
        Ok(entries) => axum::Json(json!({"messages": entries})).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": error}))).into_response(),
    }
}

fn domains(config: &crate::config::Config) -> Vec<Value> {
    config
        .domains
        .iter()
        .map(|domain| {
            let policy = crate::verdict::Policy::resolve(&config.policy, domain.policy.as_ref());
            let digest = config.digest_for(&domain.name);
            let route = domain.route.as_ref().unwrap_or(&config.downstream);
            json!({
                "name": domain.name,
                "tag_at": policy.tag_at,
                "quarantine_at": policy.quarantine_at,
                "reject_at": policy.reject_at,
                "forced": policy.forced.iter().map(|(symbol, action)| (symbol.clone(), Value::from(action.as_str()))).collect::<serde_json::Map<_, _>>(),
                "digest_schedule": digest.schedule,
                "digest_timezone": digest.timezone,
                "downstream": format!("{}:{}", route.host, route.port),
            })
        })
        .collect()
}

async fn domains_page(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = console_auth(&admin, &headers) {
        return *response;
    }
    let config = admin.shared.config.load_full();
    let mut body = String::from(
        "<p>Policy comes from the configuration file; change it there and reload.</p><table><thead><tr><th scope=\"col\">Domain</th><th scope=\"col\">Tag at</th><th scope=\"col\">Quarantine at</th><th scope=\"col\">Reject at</th><th scope=\"col\">Forced actions</th><th scope=\"col\">Digest</th><th scope=\"col\">Downstream</th></tr></thead><tbody>",
    );
    for domain in domains(&config) {
        let forced: Vec<String> = domain["forced"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} → {}", v.as_str().unwrap_or(""))).collect())
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
            escape(domain["name"].as_str().unwrap_or("")),
            domain["tag_at"],
            domain["quarantine_at"],
            domain["reject_at"],
            escape(&forced.join(", ")),
            escape(domain["digest_schedule"].as_str().unwrap_or("")),
            escape(domain["digest_timezone"].as_str().unwrap_or("")),
            escape(domain["downstream"].as_str().unwrap_or("")),
        ));
    }
    body.push_str("</tbody></table>");
    console_page("Domains", &body)
}

async fn api_domains(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = api_auth(&admin, &headers) {
        return *response;
    }
    axum::Json(json!({"domains": domains(&admin.shared.config.load())})).into_response()
}

/// `POST /api/v1/domains/{domain}/purge[?force=true][&drop_queued=true]`: a customer domain
/// leaves (as `moat domain purge`): refused (409) while it is configured unless forced; answers the
/// counts and the queued messages found (dropped with `drop_queued`, those for the domain alone).
async fn api_purge_domain(
    State(admin): State<AdminState>,
    headers: HeaderMap,
    Path(domain): Path<String>,
    Query(options): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(response) = api_auth(&admin, &headers) {
        return *response;
    }
    let flag = |name: &str| options.get(name).is_some_and(|v| v == "true" || v == "1");
    let shared = &admin.shared;
    if shared.config.load().domain(domain.trim_end_matches('.')).is_some() && !flag("force") {
        let error = format!("{domain} is still a [[domain]] of the configuration: remove it first (and reload), or add force=true");
        return (StatusCode::CONFLICT, axum::Json(json!({"error": error}))).into_response();
    }
    let purged = match shared.quarantine.purge_domain(&domain, "admin (api)").await {
        Ok(purged) => purged,
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": error.to_string()}))).into_response(),
    };
    let dropped = if flag("drop_queued") { shared.queue.remove(purged.only_theirs()).await.unwrap_or_default() } else { Vec::new() };
    let queued: Vec<&str> = purged.queued.iter().map(|e| e.id.as_str()).collect();
    axum::Json(json!({
        "domain": purged.domain,
        "quarantined_items": purged.items,
        "held_copies": purged.held_copies,
        "other_records": purged.other_rows,
        "queued": queued,
        "dropped": dropped,
    }))
    .into_response()
}

async fn audit_records(shared: &App) -> Result<Vec<AdminRecord>, StoreError> {
    shared.quarantine.store().admin_audit(200).await
}

async fn audit_page(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = console_auth(&admin, &headers) {
        return *response;
    }
    let records = match audit_records(&admin.shared).await {
        Ok(records) => records,
        Err(error) => return console_page("Audit", &format!("<p>The store cannot be read: {}</p>", escape(&error.to_string()))),
    };
    let mut body = String::from(
        "<table><thead><tr><th scope=\"col\">Time</th><th scope=\"col\">Who</th><th scope=\"col\">Action</th><th scope=\"col\">On</th><th scope=\"col\">Recipient</th><th scope=\"col\">Outcome</th></tr></thead><tbody>",
    );
    for r in &records {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            chrono::DateTime::from_timestamp(r.at, 0).map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            escape(&r.actor),
            escape(&r.action),
            escape(&r.target),
            escape(&r.recipient),
            escape(&r.outcome)
        ));
    }
    body.push_str("</tbody></table>");
    console_page("Audit log", &body)
}

async fn api_audit(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = api_auth(&admin, &headers) {
        return *response;
    }
    match audit_records(&admin.shared).await {
        Ok(records) => axum::Json(json!({"records": records.iter().map(|r| json!({"at": r.at, "actor": r.actor, "action": r.action, "target": r.target, "recipient": r.recipient, "outcome": r.outcome})).collect::<Vec<_>>()})).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": error.to_string()}))).into_response(),
    }
}

/// Reloads the configuration and rules; the errors (file:line) when nothing was applied.
async fn reload(shared: &App, via: &str) -> Result<(), Vec<String>> {
    let result = crate::app::reload(&shared.config_path, shared).await;
    let outcome = match &result {
        Ok(()) => "applied".to_string(),
        Err(errors) => format!("refused: {} error(s)", errors.len()),
    };
    audit(shared, &format!("admin ({via})"), "reload", &shared.config_path.display().to_string(), "", &outcome).await;
    result
}

async fn reload_form(State(admin): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = console_post(&admin, &headers, &Form::parse(&body)) {
        return *response;
    }
    match reload(&admin.shared, "console").await {
        Ok(()) => {
            let hash = admin.shared.scorer.load().rules_in_force().map(|(h, _)| h.to_string()).unwrap_or_default();
            console_page("Reloaded", &format!("<p>The configuration and rules are in force. Rule set <code>{}</code>.</p>", escape(&hash)))
        }
        Err(errors) => {
            let list: String = errors.iter().map(|e| format!("<li>{}</li>", escape(e))).collect();
            console_page(
                "Reload refused",
                &format!(
                    "<p>Nothing was changed; the running configuration stays in force. Fix these and reload again:</p><ul>{list}</ul>"
                ),
            )
        }
    }
}

async fn api_reload(State(admin): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(response) = api_auth(&admin, &headers) {
        return *response;
    }
    match reload(&admin.shared, "api").await {
        Ok(()) => {
            axum::Json(json!({"applied": true, "rules_hash": admin.shared.scorer.load().rules_in_force().map(|(h, _)| h.to_string())}))
                .into_response()
        }
        Err(errors) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"applied": false, "errors": errors}))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_created_once_and_sessions_are_bound_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let token = AdminToken::open(&path).unwrap();
        assert_eq!(AdminToken::open(&path).unwrap().token, token.token, "the same token on the next start");
        assert!(token.matches(&token.token) && !token.matches("wrong") && !token.matches(""));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("{COOKIE}={}", token.session_value(1_000))).unwrap());
        assert_eq!(token.session(&headers, 2_000), Some(1_000));
        assert_eq!(token.session(&headers, 1_000 + SESSION_AGE + 1), None, "too old");
        std::fs::write(&path, "another-token-0123456789\n").unwrap();
        assert_eq!(AdminToken::open(&path).unwrap().session(&headers, 2_000), None, "a new token ends the sessions");
        std::fs::write(&path, "short\n").unwrap();
        assert!(AdminToken::open(&path).is_err());
    }
}
