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
use super::{ClientAddr, Form, Nav, Notice, date, page_with, serve_app};
use crate::app::App;
use crate::digest::build::{Author, LIST_NAME};
use crate::html::{LIST_TEXT, shown};
use crate::links::LinkKey;
use crate::stats::{Counts, STATS};
use crate::store::{self, AdminRecord, ItemQuery, ItemState, QuarantineItem, ReleaseVia, StoreError};
use askama::Template;
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
            super::english(),
            StatusCode::FORBIDDEN,
            "Request refused",
            Nav::None,
            &Notice::new("This form has expired or came from another site."),
            CSP,
        )));
    }
    Ok(started)
}

#[derive(askama::Template)]
#[template(path = "admin/login.html")]
struct LoginPage;

async fn login_form() -> Response {
    page_with(super::english(), StatusCode::OK, "moat admin", Nav::None, &LoginPage, CSP)
}

async fn login(State(admin): State<AdminState>, ConnectInfo(client): ConnectInfo<ClientAddr>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if cross_site(&headers) || !admin.token.matches(form.one("token")) {
        tracing::warn!(event = "admin_login", client_ip = %client.0.ip(), outcome = "refused");
        return page_with(
            super::english(),
            StatusCode::UNAUTHORIZED,
            "Sign-in refused",
            Nav::None,
            &Notice::new("Wrong token.").link("/login", "Try again"),
            CSP,
        );
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
fn console_page(title: &str, body: &impl askama::Template) -> Response {
    page_with(super::english(), StatusCode::OK, title, Nav::Admin, body, CSP)
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
    let count = |period: &str, key: &str| status[period][key].as_u64().unwrap_or(0);
    let verdicts = [
        ("Accepted", "accepted"),
        ("Tagged", "tagged"),
        ("Quarantined", "quarantined"),
        ("Rejected", "rejected"),
        ("Tempfailed", "tempfailed"),
        ("Viruses", "viruses"),
    ]
    .into_iter()
    .map(|(name, key)| (name, count("last_hour", key), count("last_24h", key)))
    .collect();
    let known = |value: &Value| value.as_u64().map_or_else(|| "?".into(), |n| n.to_string());
    let body = DashboardPage {
        node: status["node"].as_str().unwrap_or(""),
        rules_hash: status["rules_hash"].as_str().unwrap_or("none"),
        rules_loaded: status["rules_loaded"].as_u64().unwrap_or(0),
        queue: known(&status["queue"]),
        held: known(&status["quarantine_held"]),
        verdicts,
        csrf: admin.token.csrf(started),
    };
    console_page("moat admin", &body)
}

#[derive(askama::Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage<'a> {
    node: &'a str,
    rules_hash: &'a str,
    rules_loaded: u64,
    queue: String,
    held: String,
    /// Each kind of verdict: its name, its count in the last hour and in the last 24 hours.
    verdicts: Vec<(&'static str, u64, u64)>,
    csrf: String,
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
    let lines = CHART_LINES
        .iter()
        .enumerate()
        .map(|(i, (colour, name, value))| {
            let points: Vec<String> = series
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!("{:.1},{:.1}", 10.0 + i as f64 * (width - 20.0) / 23.0, height - 10.0 - value(c) as f64 * (height - 30.0) / max)
                })
                .collect();
            Plotted { colour, name, points: points.join(" "), label_x: 80 + i * 80 }
        })
        .collect();
    let svg = match (Chart { width, height, max, lines }).render() {
        Ok(svg) => svg,
        Err(error) => {
            tracing::error!(event = "web_render_failed", title = "chart", error = %error);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'")], svg)
        .into_response()
}

/// One plotted line of the chart.
struct Plotted {
    colour: &'static str,
    name: &'static str,
    points: String,
    label_x: usize,
}

#[derive(askama::Template)]
#[template(path = "admin/chart.svg")]
struct Chart {
    width: f64,
    height: f64,
    max: f64,
    lines: Vec<Plotted>,
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
        Err(error) => return console_page("Quarantine", &Notice::new(format!("The store cannot be read: {error}"))),
    };
    let config = admin.shared.config.load();
    // The admin console is in English.
    let english = crate::i18n::Lang::En.catalog();
    let rows = items
        .iter()
        .map(|item| {
            // The From field is content, like the subject: shown where the subject is.
            let sees = config.admin_sees_subject(&item.recipient);
            AdminRow {
                id: &item.id,
                date: date(item.created_at),
                recipient: &item.recipient,
                sender: if sees { Author::of(item, LIST_NAME, LIST_TEXT, english) } else { Author::envelope(item, LIST_TEXT, english) },
                subject: sees.then(|| shown(&item.subject, LIST_TEXT)),
                score: item.score,
                symbols: item.symbols.iter().map(|s| format!("{} ({:.1})", s.name, s.score)).collect::<Vec<_>>().join(", "),
                category: item.category.as_str(),
                state: item.state.as_str(),
            }
        })
        .collect();
    let older = params.more_after(total).then(|| {
        serde_urlencoded::to_string([
            ("recipient", params.recipient.as_str()),
            ("q", &params.q),
            ("category", &params.category),
            ("state", &params.state),
            ("page", &(params.page_number() + 1).to_string()),
        ])
        .unwrap_or_default()
    });
    console_page("Quarantine", &QuarantinePage { params: &params, total, csrf: admin.token.csrf(started), rows, older })
}

/// One item of the console's quarantine list: metadata only.
struct AdminRow<'a> {
    id: &'a str,
    date: String,
    recipient: &'a str,
    /// The From field's name and address where the domain lets admins see subjects, else the
    /// envelope sender.
    sender: Author,
    /// The subject, where the domain lets admins see it.
    subject: Option<String>,
    score: f64,
    symbols: String,
    category: &'static str,
    state: &'static str,
}

#[derive(askama::Template)]
#[template(path = "admin/quarantine.html")]
struct QuarantinePage<'a> {
    params: &'a QuarantineParams,
    total: u64,
    csrf: String,
    rows: Vec<AdminRow<'a>>,
    /// The query string of the next page.
    older: Option<String>,
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
        _ => return console_page("Nothing done", &Notice::new("Choose release or delete.")),
    };
    let mut lines = Vec::new();
    for id in form.all("id").take(super::center::MAX_BULK) {
        let outcome = match release_or_delete(&admin.shared, "console", action, id).await {
            Ok(_) => "done".to_string(),
            Err((_, error)) => error,
        };
        lines.push((id, outcome));
    }
    console_page("Done", &ResultsPage { action, lines })
}

#[derive(askama::Template)]
#[template(path = "admin/results.html")]
struct ResultsPage<'a> {
    action: &'a str,
    /// Each item's id and what became of it.
    lines: Vec<(&'a str, String)>,
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
        Err(error) => return console_page("Queue", &Notice::new(format!("The spool cannot be read: {error}"))),
    };
    let entries = entries
        .iter()
        .map(|entry| QueueRow {
            id: &entry.id,
            received: date(entry.received_at),
            sender: &entry.sender,
            recipients: entry.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>().join(", "),
            size: entry.size,
            attempts: entry.attempts,
        })
        .collect();
    console_page("Queue", &QueuePage { entries })
}

/// One message waiting for delivery, as listed.
struct QueueRow<'a> {
    id: &'a str,
    received: String,
    sender: &'a str,
    recipients: String,
    size: u64,
    attempts: u32,
}

#[derive(askama::Template)]
#[template(path = "admin/queue.html")]
struct QueuePage<'a> {
    entries: Vec<QueueRow<'a>>,
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
    let text = |value: &Value| value.as_str().unwrap_or("").to_string();
    let domains = domains(&config)
        .iter()
        .map(|domain| {
            let forced: Vec<String> = domain["forced"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k} → {}", v.as_str().unwrap_or(""))).collect())
                .unwrap_or_default();
            DomainRow {
                name: text(&domain["name"]),
                tag_at: domain["tag_at"].to_string(),
                quarantine_at: domain["quarantine_at"].to_string(),
                reject_at: domain["reject_at"].to_string(),
                forced: forced.join(", "),
                schedule: text(&domain["digest_schedule"]),
                timezone: text(&domain["digest_timezone"]),
                downstream: text(&domain["downstream"]),
            }
        })
        .collect();
    console_page("Domains", &DomainsPage { domains })
}

/// One domain's policy, as listed.
struct DomainRow {
    name: String,
    tag_at: String,
    quarantine_at: String,
    reject_at: String,
    forced: String,
    schedule: String,
    timezone: String,
    downstream: String,
}

#[derive(askama::Template)]
#[template(path = "admin/domains.html")]
struct DomainsPage {
    domains: Vec<DomainRow>,
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
        Err(error) => return console_page("Audit", &Notice::new(format!("The store cannot be read: {error}"))),
    };
    let records = records
        .iter()
        .map(|r| AuditRow {
            time: chrono::DateTime::from_timestamp(r.at, 0).map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            record: r,
        })
        .collect();
    console_page("Audit log", &AuditPage { records })
}

/// One audit record, as listed.
struct AuditRow<'a> {
    time: String,
    record: &'a AdminRecord,
}

impl std::ops::Deref for AuditRow<'_> {
    type Target = AdminRecord;

    fn deref(&self) -> &AdminRecord {
        self.record
    }
}

#[derive(askama::Template)]
#[template(path = "admin/audit.html")]
struct AuditPage<'a> {
    records: Vec<AuditRow<'a>>,
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
    let (title, errors) = match reload(&admin.shared, "console").await {
        Ok(()) => ("Reloaded", None),
        Err(errors) => ("Reload refused", Some(errors)),
    };
    let hash = admin.shared.scorer.load().rules_in_force().map(|(h, _)| h.to_string()).unwrap_or_default();
    console_page(title, &ReloadPage { hash, errors })
}

#[derive(askama::Template)]
#[template(path = "admin/reload.html")]
struct ReloadPage {
    /// The rule set in force.
    hash: String,
    /// What refused the reload (file:line), if it was refused.
    errors: Option<Vec<String>>,
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
