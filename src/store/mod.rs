//! The store: quarantine index and encrypted contents, per-user preferences and lists, digest
//! cursors, release audit records, greylisting and rate counters.
//!
//! **One interface, two backends.** [`Store`] is the only type callers use. Its backend is
//! SQLite (embedded, the default: one file under `state_dir`, WAL, `synchronous=FULL`, run on
//! the blocking thread pool) or PostgreSQL (tokio-postgres, for several nodes sharing one
//! database). Every operation is written once, here, as SQL both databases run unchanged
//! (`$1` placeholders, `ON CONFLICT … DO UPDATE`, `RETURNING`); the backends only execute
//! statements ([`sqlite`], [`postgres`]). So behaviour is the same by construction, and the test
//! suite (`tests/it/store.rs`) runs the same cases against both.
//!
//! **Migrations** are numbered ([`MIGRATIONS`]) and the missing ones applied on [`Store::open`] in one
//! transaction, recording each version in `schema_version`; opening an up-to-date database
//! changes nothing, and several nodes starting together apply each migration once (SQLite:
//! `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock). A database newer than this binary is refused.
//!
//! **Time** is Unix seconds (`i64`), passed in by the caller (`now`), so schedules and tests
//! control it; [`unix_now`] gives the wall clock. Addresses (recipients, users) are stored
//! lower-cased.
//!
//! **Guarantees**
//! * [`Store::release`] / [`Store::set_state`] change a held item exactly once: the change is a
//!   conditional `UPDATE … WHERE state = 'held'`, so of two racing releases (two clicks, two
//!   nodes) one gets `Ok` and the other [`StoreError::NotHeld`] with the state the winner set. The
//!   release audit record is written in the same transaction as the state change.
//! * An item's row and its sealed contents are inserted, expired and purged together, in one
//!   transaction. Contents are sealed by [`vault::Vault`] before they reach the store: the store
//!   never sees plaintext and never logs contents.
//! * [`Store::expire`] deletes every item past its `expires_at` with its contents, and audit
//!   records and classifier lessons older than the retention; [`Store::purge_user`] deletes
//!   everything held about one address (items, contents, audit records, preferences, lists,
//!   digest cursor, greylist rows) and takes its name off the lessons it taught.
//! * The classifier's model is replaced only by compare-and-set on its version
//!   ([`Store::commit_model`]), so two nodes learning at once never lose each other's lessons: the
//!   loser reloads and applies its lesson again.
//!
//! **Release flow for the integrator:** read the contents ([`Store::get_content`]) and open
//! them with the vault, then [`Store::release`] (the exactly-once gate), then spool the message.
//! A release that loses the race gets `NotHeld` and must not spool. Contents stay until expiry
//! after a release; [`Store::set_state`] to `Deleted` drops them at once.

mod classifier;
pub mod postgres;
pub mod sqlite;
pub mod vault;

pub use classifier::{Lesson, LessonChange, Recorded, StoredModel};

use crate::lists::{Entry, ListSet, Lists, UserPolicy};
use crate::verdict::Symbol;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use vault::Sealed;

/// Unix seconds.
pub type UnixTime = i64;

pub use crate::clock::unix_now;

/// A new random quarantine item id (32 hex digits).
pub fn new_item_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("store directory {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    /// No quarantine item with this id.
    #[error("no quarantine item {id}")]
    NotFound { id: String },
    /// The item is no longer held: someone released or deleted it first.
    #[error("quarantine item {id} is already {current}")]
    NotHeld { id: String, current: ItemState },
    /// A state change to `Held` was asked for; items only leave `Held`.
    #[error("quarantine items cannot be put back to held")]
    BackToHeld,
    /// A row that does not decode (a value written by something else, or a newer binary).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// The database was migrated by a newer moat.
    #[error("database schema version {found} is newer than this moat knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("cannot get random bytes: {0}")]
    Random(String),
    /// The blocking task running an SQLite operation panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<crate::clock::TaskFailed> for StoreError {
    fn from(failed: crate::clock::TaskFailed) -> StoreError {
        StoreError::Task(failed.0)
    }
}

/// Why an item is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Spam,
    Virus,
    Policy,
}

/// Where an item is in its life. Items start `Held` and change state at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemState {
    Held,
    Released,
    Deleted,
}

/// How a release was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseVia {
    /// A signed link from a digest (the user).
    Link,
    /// The admin console or API.
    Admin,
    /// `moat quarantine release`.
    Cli,
    /// The user's Message Center.
    Web,
}

/// How often a user gets a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestFrequency {
    Daily,
    Weekly,
    Never,
}

/// An allow or a block list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Allow,
    Block,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
            fn parse(text: &str, table: &'static str) -> Result<$ty, StoreError> {
                match text {
                    $($text => Ok($ty::$variant),)*
                    other => Err(StoreError::Corrupt { table, detail: format!("{} {other:?}", stringify!($ty)) }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(Category { Spam = "spam", Virus = "virus", Policy = "policy" });
text_enum!(ItemState { Held = "held", Released = "released", Deleted = "deleted" });
text_enum!(ReleaseVia { Link = "link", Admin = "admin", Cli = "cli", Web = "web" });
text_enum!(DigestFrequency { Daily = "daily", Weekly = "weekly", Never = "never" });
text_enum!(ListKind { Allow = "allow", Block = "block" });

/// One quarantined message's metadata (its contents are separate, sealed).
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineItem {
    pub id: String,
    /// The one recipient this copy is held for (stored lower-cased).
    pub recipient: String,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// The decoded Subject (may be empty).
    pub subject: String,
    /// The From header field's display name, decoded (RFC 2047) and bounded; "" when it has
    /// none (and for items held before moat kept it). As private as the subject.
    pub from_name: String,
    /// The From header field's address, lower-cased; "" when it has none or several (and for
    /// items held before moat kept it: they are shown by their envelope sender).
    pub from_address: String,
    /// The message's Date (or arrival time when it has none).
    pub date: UnixTime,
    /// Size of the message in bytes.
    pub size: u64,
    pub score: f64,
    /// The verdict's evidence, stored as JSON.
    pub symbols: Vec<Symbol>,
    pub category: Category,
    pub state: ItemState,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// One release, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub item_id: String,
    pub recipient: String,
    /// Who asked: the user's address, an admin name, `root` for the CLI, …
    pub actor: String,
    pub via: ReleaseVia,
    pub at: UnixTime,
    /// The spool id of the copy this release delivered, when it went through a spool.
    pub ticket: Option<String>,
}

/// A user's own settings. [`Preferences::default`] is what a user without a row gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    /// `None`: the domain's default frequency.
    pub digest: Option<DigestFrequency>,
    /// The user unsubscribed from digests (RFC 8058 one-click or the opt-out link).
    pub opt_out: bool,
    /// The user's own spam filtering choice; `None`: the domain decides.
    pub filtering: Option<bool>,
    /// The IANA time zone the user's times are shown in; empty: their domain's digest time zone.
    pub time_zone: String,
    /// The language (a code of `crate::i18n::Lang`) the user reads moat in; empty: their
    /// domain's.
    pub language: String,
    pub allow: Vec<Entry>,
    pub block: Vec<Entry>,
}

impl Preferences {
    /// The user's part of [`Lists`].
    pub fn user_policy(&self) -> UserPolicy {
        UserPolicy { lists: ListSet { allow: self.allow.clone(), block: self.block.clone() }, filtering: self.filtering }
    }
}

/// A greylisting triplet: the client's network (/24 for IPv4, /64 for IPv6, so a sender's
/// retry from a neighbouring address of the same pool counts), the sender and the recipient.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Triplet {
    pub network: String,
    pub sender: String,
    pub recipient: String,
}

impl Triplet {
    pub fn new(client: IpAddr, sender: &str, recipient: &str) -> Triplet {
        Triplet { network: client_network(client), sender: sender.to_ascii_lowercase(), recipient: recipient.to_ascii_lowercase() }
    }
}

/// The network a client counts as for greylisting and rate limits: an IPv4 address's /24, an
/// IPv6 address's /64 (one sender's pool, one customer's prefix), e.g. `192.0.2.0/24`.
pub fn client_network(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

/// The greylisting answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greylist {
    /// Known and old enough (or passed before): accept.
    Pass,
    /// New or too young: answer 4xx; retrying after `retry_in` seconds will pass.
    Defer { retry_in: u64 },
}

/// What [`Store::expire`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub items: u64,
    pub audit_records: u64,
    pub greylist: u64,
    pub rate_counters: u64,
    /// Classifier lessons past the retention (the model keeps what it learnt; they can no longer be forgotten one by one).
    pub lessons: u64,
}

impl QuarantineItem {
    /// The item's metadata as JSON (the CLI's `--json` and the admin API): never its contents.
    /// With `with_content` (the domain's `admin_sees_subjects`) also its subject and the
    /// symbols' details, which can quote the message (a listed link's host, a file name);
    /// without, symbols by name and score only.
    pub fn metadata_json(&self, with_content: bool) -> serde_json::Value {
        let symbols: Vec<serde_json::Value> = self
            .symbols
            .iter()
            .map(|s| {
                let detail = if with_content { s.detail.as_deref() } else { None };
                serde_json::json!({"name": s.name, "score": s.score, "detail": detail})
            })
            .collect();
        let mut value = serde_json::json!({
            "id": self.id,
            "recipient": self.recipient,
            "sender": self.sender,
            "date": self.date,
            "size": self.size,
            "score": self.score,
            "category": self.category.as_str(),
            "state": self.state.as_str(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "symbols": symbols,
        });
        if with_content {
            value["subject"] = serde_json::Value::from(self.subject.as_str());
            value["from_name"] = serde_json::Value::from(self.from_name.as_str());
            value["from_address"] = serde_json::Value::from(self.from_address.as_str());
        }
        value
    }

    /// The address "always allow / block this sender" names: the From header's address, which
    /// the user recognises and which stays the same from one newsletter to the next (the
    /// envelope sender of bulk mail is often a one-off bounce address); the envelope sender for
    /// items without one.
    pub fn sender_to_list(&self) -> &str {
        if self.from_address.is_empty() { &self.sender } else { &self.from_address }
    }
}

/// Which items [`Store::find_items`] lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemQuery {
    /// One recipient's items ("" for every recipient's).
    pub recipient: String,
    pub state: Option<ItemState>,
    pub category: Option<Category>,
    /// Items whose envelope sender (or subject or From name or address, with `search_subjects`)
    /// contains this text (case-insensitive; "" for all).
    pub text: String,
    /// Whether `text` also matches subjects and the From field: for the user's own Message
    /// Center, never for admins (a subject and a From name are content).
    pub search_subjects: bool,
}

/// One admin action, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRecord {
    pub at: UnixTime,
    pub actor: String,
    /// "release", "delete", "reload", ...
    pub action: String,
    /// The item id (or what else the action was on).
    pub target: String,
    /// The item's recipient, when the action was on an item ("" otherwise).
    pub recipient: String,
    /// "done", "refused: ...", "not held", ...
    pub outcome: String,
}

/// A `LIKE` pattern matching `text` anywhere (with `\` as the escape character).
fn contains_pattern(text: &str) -> String {
    format!("%{}%", like_literal(text))
}

/// `text` lower-cased with `LIKE`'s wildcards (and the escape character) escaped.
fn like_literal(text: &str) -> String {
    let mut literal = String::new();
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            literal.push('\\');
        }
        literal.push(c);
    }
    literal
}

/// What [`Store::purge_user`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub items: u64,
    /// Audit records, preferences, list entries, digest cursor and greylist rows.
    pub other_rows: u64,
}

/// The numbered schema migrations, applied in order. Never edit a released one: add the next.
/// Written in the SQL both databases accept (`BYTEA` becomes `BLOB` for SQLite).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE quarantine (
        id TEXT PRIMARY KEY,
        recipient TEXT NOT NULL,
        sender TEXT NOT NULL,
        subject TEXT NOT NULL,
        msg_date BIGINT NOT NULL,
        size BIGINT NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        symbols TEXT NOT NULL,
        category TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX quarantine_by_recipient ON quarantine (recipient, created_at, id);
    CREATE INDEX quarantine_by_expiry ON quarantine (expires_at);
    CREATE TABLE quarantine_blob (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        sealed BYTEA NOT NULL
    );
    CREATE TABLE release_audit (
        item_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        actor TEXT NOT NULL,
        via TEXT NOT NULL,
        released_at BIGINT NOT NULL
    );
    CREATE INDEX release_audit_by_item ON release_audit (item_id);
    CREATE INDEX release_audit_by_recipient ON release_audit (recipient);
    CREATE TABLE user_prefs (
        address TEXT PRIMARY KEY,
        digest TEXT,
        opt_out BOOLEAN NOT NULL,
        filtering BOOLEAN,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE user_list (
        address TEXT NOT NULL,
        kind TEXT NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (address, kind, entry)
    );
    CREATE TABLE digest_cursor (
        address TEXT PRIMARY KEY,
        last_digest BIGINT NOT NULL
    );
    CREATE TABLE greylist (
        network TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        passed BOOLEAN NOT NULL,
        PRIMARY KEY (network, sender, recipient)
    );
    CREATE INDEX greylist_by_last_seen ON greylist (last_seen);
    CREATE TABLE rate_counter (
        name TEXT NOT NULL,
        window_secs BIGINT NOT NULL,
        window_start BIGINT NOT NULL,
        hits BIGINT NOT NULL,
        PRIMARY KEY (name, window_secs, window_start)
    );",
    ),
    // The spool id of the copy a release put on its way, so a node that crashed between staging
    // a copy and asking the store can tell whether its copy is the one that won.
    (2, "ALTER TABLE release_audit ADD COLUMN ticket TEXT;"),
    // The spool id of the digest that advanced a cursor, for the same reason.
    (3, "ALTER TABLE digest_cursor ADD COLUMN ticket TEXT;"),
    // What admins did (release, delete, reload), for accountability; expired with the retention.
    (
        4,
        "CREATE TABLE admin_audit (
            at BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            recipient TEXT NOT NULL,
            outcome TEXT NOT NULL
        );
        CREATE INDEX admin_audit_by_time ON admin_audit (at);",
    ),
    // Who runs the cluster's scheduled work (digests, retention), until when.
    (5, "CREATE TABLE lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL);"),
    // The classifier: its model (hashed features and weights only, versioned for compare-and-set
    // by every node), and one row per message taught (a digest of the content, the label, who
    // taught it and its hashed features, so it can be forgotten without the message).
    (
        6,
        "CREATE TABLE classifier_model (
            name TEXT PRIMARY KEY,
            version BIGINT NOT NULL,
            data BYTEA NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE TABLE classifier_lesson (
            digest TEXT PRIMARY KEY,
            spam BOOLEAN NOT NULL,
            taught_by TEXT NOT NULL,
            via TEXT NOT NULL,
            at BIGINT NOT NULL,
            features BYTEA NOT NULL
        );
        CREATE INDEX classifier_lesson_by_teacher ON classifier_lesson (taught_by, at);
        CREATE INDEX classifier_lesson_by_time ON classifier_lesson (at);",
    ),
    // Message Center sessions are stateless signed cookies; signing out records the time before
    // which the user's sessions no longer count, so a copied cookie dies with the sign-out.
    (7, "CREATE TABLE web_session_revocation (address TEXT PRIMARY KEY, revoked_before BIGINT NOT NULL);"),
    // What the model holds of each lesson (0: not yet, 1: spam, 2: ham): teaching only records a
    // lesson; nodes fold pending lessons into the model in batches, saving model and marks together.
    (
        8,
        "ALTER TABLE classifier_lesson ADD COLUMN in_model BIGINT NOT NULL DEFAULT 0;
        CREATE INDEX classifier_lesson_pending ON classifier_lesson (at, digest) WHERE in_model <> CASE WHEN spam THEN 1 ELSE 2 END;",
    ),
    // The From header field of a held message (display name and address), shown before the
    // envelope sender, which for newsletters is a one-off bounce address. Items held before
    // have neither and are shown by their envelope sender, as they were.
    (
        9,
        "ALTER TABLE quarantine ADD COLUMN from_name TEXT NOT NULL DEFAULT '';
        ALTER TABLE quarantine ADD COLUMN from_address TEXT NOT NULL DEFAULT '';",
    ),
    // The time zone a user chose for their times (an IANA name); users from before, and users who
    // never chose, have none and see their domain's digest time zone, as they did.
    (10, "ALTER TABLE user_prefs ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';"),
    // The language a user chose for moat's pages and emails (a code such as `de`); users from
    // before, and users who never chose, have none and read their domain's language.
    (11, "ALTER TABLE user_prefs ADD COLUMN language TEXT NOT NULL DEFAULT '';"),
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// A statement parameter or a column value. Typed nulls, because PostgreSQL types parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

/// The type a result column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Int,
    Real,
    Text,
    Bool,
    Bytes,
}

fn int(v: i64) -> Val {
    Val::Int(Some(v))
}
fn text(v: impl Into<String>) -> Val {
    Val::Text(Some(v.into()))
}

/// One SQL statement (`$1`… placeholders) with its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    pub sql: &'static str,
    pub params: Vec<Val>,
}

fn stmt(sql: &'static str, params: Vec<Val>) -> Stmt {
    Stmt { sql, params }
}

/// A result row, read by column index.
#[derive(Debug)]
pub(crate) struct Row {
    pub table: &'static str,
    pub values: Vec<Val>,
}

impl Row {
    fn corrupt(&self, i: usize) -> StoreError {
        StoreError::Corrupt { table: self.table, detail: format!("column {i}: {:?}", self.values.get(i)) }
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.values.get(i) {
            Some(Val::Int(Some(v))) => Ok(*v),
            _ => Err(self.corrupt(i)),
        }
    }
    fn real(&self, i: usize) -> Result<f64, StoreError> {
        match self.values.get(i) {
            Some(Val::Real(Some(v))) => Ok(*v),
            _ => Err(self.corrupt(i)),
        }
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.values.get(i) {
            Some(Val::Text(v)) => Ok(v.clone()),
            _ => Err(self.corrupt(i)),
        }
    }
    fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| self.corrupt(i))
    }
    fn opt_bool(&self, i: usize) -> Result<Option<bool>, StoreError> {
        match self.values.get(i) {
            Some(Val::Bool(v)) => Ok(*v),
            _ => Err(self.corrupt(i)),
        }
    }
    fn bool(&self, i: usize) -> Result<bool, StoreError> {
        self.opt_bool(i)?.ok_or_else(|| self.corrupt(i))
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.values.get(i) {
            Some(Val::Bytes(Some(v))) => Ok(v.clone()),
            _ => Err(self.corrupt(i)),
        }
    }
}

/// The database behind a [`Store`].
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// The store handle: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.backend {
            Backend::Sqlite(_) => "Store(sqlite)",
            Backend::Postgres(_) => "Store(postgres)",
        })
    }
}

const ITEM_COLUMNS: &[Ty] = &[
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Real,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Text,
];

fn item_from_row(row: &Row) -> Result<QuarantineItem, StoreError> {
    let symbols =
        serde_json::from_str(&row.text(7)?).map_err(|e| StoreError::Corrupt { table: "quarantine", detail: format!("symbols: {e}") })?;
    Ok(QuarantineItem {
        id: row.text(0)?,
        recipient: row.text(1)?,
        sender: row.text(2)?,
        subject: row.text(3)?,
        date: row.int(4)?,
        size: u64::try_from(row.int(5)?).map_err(|_| row.corrupt(5))?,
        score: row.real(6)?,
        symbols,
        category: Category::parse(&row.text(8)?, "quarantine")?,
        state: ItemState::parse(&row.text(9)?, "quarantine")?,
        created_at: row.int(10)?,
        expires_at: row.int(11)?,
        from_name: row.text(12)?,
        from_address: row.text(13)?,
    })
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The `WHERE` clause of an [`ItemQuery`], parameters `$1`..`$5` ([`item_query_params`]).
macro_rules! item_query_where {
    () => {
        "($1 = '' OR recipient = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR category = $3)
     AND ($4 = '' OR lower(sender) LIKE $4 ESCAPE '\\' OR ($5 AND (lower(subject) LIKE $4 ESCAPE '\\'
       OR lower(from_name) LIKE $4 ESCAPE '\\' OR lower(from_address) LIKE $4 ESCAPE '\\')))"
    };
}

fn item_query_params(query: &ItemQuery) -> Vec<Val> {
    vec![
        text(lower(&query.recipient)),
        text(query.state.map_or("", ItemState::as_str)),
        text(query.category.map_or("", Category::as_str)),
        text(if query.text.is_empty() { String::new() } else { contains_pattern(&query.text) }),
        Val::Bool(Some(query.search_subjects)),
    ]
}

fn lower(address: &str) -> String {
    address.to_ascii_lowercase()
}

impl Store {
    /// Opens the store the `[store]` section names: SQLite is created if missing and migrated
    /// now; PostgreSQL is connected (and migrated) on first use, so a server starts, and keeps
    /// relaying, while the database is unreachable — store operations fail until it is back.
    pub async fn open(config: &crate::config::Config) -> Result<Store, StoreError> {
        match config.store.backend {
            crate::config::StoreBackend::Sqlite => Store::open_sqlite(&config.store_path()).await,
            crate::config::StoreBackend::Postgres => {
                Ok(Store { backend: Backend::Postgres(postgres::Postgres::lazy(config.store.url.as_deref().unwrap_or(""))) })
            }
        }
    }

    /// Opens (or creates) an SQLite store at `path` and runs the migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let backend = sqlite::Sqlite::open(path).await?;
        Ok(Store { backend: Backend::Sqlite(backend) })
    }

    /// Connects to PostgreSQL (a libpq-style connection string, e.g.
    /// `host=db.internal user=moat dbname=moat`) and runs the migrations.
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let backend = postgres::Postgres::connect(url).await?;
        Ok(Store { backend: Backend::Postgres(backend) })
    }

    /// The schema version of the database (after the migrations: [`latest_version`]).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT COALESCE(MAX(version), 0) FROM schema_version", vec![], &[Ty::Int], "schema_version").await?;
        rows.first().map_or(Ok(0), |r| r.int(0))
    }

    async fn query(&self, sql: &'static str, params: Vec<Val>, types: &'static [Ty], table: &'static str) -> Result<Vec<Row>, StoreError> {
        match &self.backend {
            Backend::Sqlite(b) => b.query(sql, params, types, table).await,
            Backend::Postgres(b) => b.query(sql, params, types, table).await,
        }
    }

    /// Runs the statements in one transaction and returns each one's affected row count.
    /// With `gated`, a first statement that changes no row rolls back and skips the rest.
    async fn transaction(&self, stmts: Vec<Stmt>, gated: bool) -> Result<Vec<u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(b) => b.transaction(stmts, gated).await,
            Backend::Postgres(b) => b.transaction(stmts, gated).await,
        }
    }

    async fn execute(&self, sql: &'static str, params: Vec<Val>) -> Result<u64, StoreError> {
        Ok(self.transaction(vec![stmt(sql, params)], false).await?.first().copied().unwrap_or(0))
    }

    // ---- quarantine -------------------------------------------------------------------------

    /// Adds an item (its state is stored as given, normally `Held`) with its sealed contents,
    /// in one transaction. The recipient is stored lower-cased.
    pub async fn insert_item(&self, item: &QuarantineItem, contents: &Sealed) -> Result<(), StoreError> {
        let symbols = serde_json::to_string(&item.symbols)
            .map_err(|e| StoreError::Corrupt { table: "quarantine", detail: format!("symbols: {e}") })?;
        let size = i64::try_from(item.size).unwrap_or(i64::MAX);
        self.transaction(
            vec![
                stmt(
                    "INSERT INTO quarantine (id, recipient, sender, subject, msg_date, size, score, symbols, category, state, created_at, expires_at, from_name, from_address)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    vec![
                        text(&item.id),
                        text(lower(&item.recipient)),
                        text(&item.sender),
                        text(&item.subject),
                        int(item.date),
                        int(size),
                        Val::Real(Some(item.score)),
                        text(symbols),
                        text(item.category.as_str()),
                        text(item.state.as_str()),
                        int(item.created_at),
                        int(item.expires_at),
                        text(&item.from_name),
                        text(lower(&item.from_address)),
                    ],
                ),
                stmt(
                    "INSERT INTO quarantine_blob (id, key_id, sealed) VALUES ($1, $2, $3)",
                    vec![text(&item.id), text(&contents.key_id), Val::Bytes(Some(contents.bytes.clone()))],
                ),
            ],
            false,
        )
        .await?;
        Ok(())
    }

    /// One item's metadata.
    pub async fn get_item(&self, id: &str) -> Result<QuarantineItem, StoreError> {
        let rows = self
            .query(
                "SELECT id, recipient, sender, subject, msg_date, size, score, symbols, category, state, created_at, expires_at, from_name, from_address
                 FROM quarantine WHERE id = $1",
                vec![text(id)],
                ITEM_COLUMNS,
                "quarantine",
            )
            .await?;
        rows.first().map(item_from_row).unwrap_or_else(|| Err(StoreError::NotFound { id: id.to_string() }))
    }

    /// A recipient's items (every recipient's for `""`), newest first (`created_at`, then id),
    /// optionally only those in `state`; `limit` items after skipping `offset`.
    pub async fn list_items(
        &self,
        recipient: &str,
        state: Option<ItemState>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<QuarantineItem>, StoreError> {
        let query = ItemQuery { recipient: recipient.to_string(), state, ..ItemQuery::default() };
        self.find_items(&query, limit, offset).await
    }

    /// The items `query` selects, newest first (`created_at`, then id); `limit` items after
    /// skipping `offset`.
    pub async fn find_items(&self, query: &ItemQuery, limit: u32, offset: u32) -> Result<Vec<QuarantineItem>, StoreError> {
        let mut params = item_query_params(query);
        params.extend([int(i64::from(limit)), int(i64::from(offset))]);
        let rows = self
            .query(
                concat!(
                    "SELECT id, recipient, sender, subject, msg_date, size, score, symbols, category, state, created_at, expires_at, from_name, from_address
                     FROM quarantine WHERE ",
                    item_query_where!(),
                    " ORDER BY created_at DESC, id DESC LIMIT $6 OFFSET $7"
                ),
                params,
                ITEM_COLUMNS,
                "quarantine",
            )
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// How many items `query` selects.
    pub async fn count_items(&self, query: &ItemQuery) -> Result<u64, StoreError> {
        let rows = self
            .query(
                concat!("SELECT COUNT(*) FROM quarantine WHERE ", item_query_where!()),
                item_query_params(query),
                &[Ty::Int],
                "quarantine",
            )
            .await?;
        Ok(rows.first().map(|r| r.int(0)).transpose()?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl`: `true` when `holder`
    /// has it (it was free, expired, or already `holder`'s), `false` while another holder's
    /// lease runs. One conditional upsert, so two nodes asking at once cannot both win.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration, now: UnixTime) -> Result<bool, StoreError> {
        let counts = self
            .transaction(
                vec![stmt(
                    "INSERT INTO lease (name, holder, expires_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE lease.expires_at <= $4 OR lease.holder = excluded.holder",
                    vec![text(name), text(holder), int(now.saturating_add(secs(ttl))), int(now)],
                )],
                false,
            )
            .await?;
        Ok(counts.first() == Some(&1))
    }

    /// Gives up the lease `name` if `holder` has it (so another node takes over at once).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.transaction(vec![stmt("DELETE FROM lease WHERE name = $1 AND holder = $2", vec![text(name), text(holder)])], false).await?;
        Ok(())
    }

    /// Ends every Message Center session of `address` that started before `before` (sign-out).
    pub async fn revoke_sessions(&self, address: &str, before: UnixTime) -> Result<(), StoreError> {
        self.transaction(
            vec![stmt(
                "INSERT INTO web_session_revocation (address, revoked_before) VALUES ($1, $2)
                 ON CONFLICT (address) DO UPDATE SET revoked_before = excluded.revoked_before",
                vec![text(lower(address)), int(before)],
            )],
            false,
        )
        .await?;
        Ok(())
    }

    /// Sessions of `address` that started before this time no longer count (0: none revoked).
    pub async fn sessions_revoked_before(&self, address: &str) -> Result<UnixTime, StoreError> {
        let rows = self
            .query(
                "SELECT revoked_before FROM web_session_revocation WHERE address = $1",
                vec![text(lower(address))],
                &[Ty::Int],
                "web_session_revocation",
            )
            .await?;
        rows.first().map_or(Ok(0), |row| row.int(0))
    }

    /// Records an admin action.
    pub async fn audit_admin(&self, record: &AdminRecord) -> Result<(), StoreError> {
        self.transaction(
            vec![stmt(
                "INSERT INTO admin_audit (at, actor, action, target, recipient, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    int(record.at),
                    text(record.actor.as_str()),
                    text(record.action.as_str()),
                    text(record.target.as_str()),
                    text(lower(&record.recipient)),
                    text(record.outcome.as_str()),
                ],
            )],
            false,
        )
        .await?;
        Ok(())
    }

    /// The latest admin actions, newest first.
    pub async fn admin_audit(&self, limit: u32) -> Result<Vec<AdminRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT at, actor, action, target, recipient, outcome FROM admin_audit ORDER BY at DESC LIMIT $1",
                vec![int(i64::from(limit))],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Text, Ty::Text, Ty::Text],
                "admin_audit",
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminRecord {
                    at: r.int(0)?,
                    actor: r.text(1)?,
                    action: r.text(2)?,
                    target: r.text(3)?,
                    recipient: r.text(4)?,
                    outcome: r.text(5)?,
                })
            })
            .collect()
    }

    /// A recipient's held items created at or after `since`, oldest first (for a digest).
    pub async fn held_since(&self, recipient: &str, since: UnixTime, limit: u32) -> Result<Vec<QuarantineItem>, StoreError> {
        let rows = self
            .query(
                "SELECT id, recipient, sender, subject, msg_date, size, score, symbols, category, state, created_at, expires_at, from_name, from_address
                 FROM quarantine WHERE recipient = $1 AND state = 'held' AND created_at >= $2
                 ORDER BY created_at, id LIMIT $3",
                vec![text(lower(recipient)), int(since), int(i64::from(limit))],
                ITEM_COLUMNS,
                "quarantine",
            )
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    /// The recipients that have held items created at or after `since` (digest candidates).
    pub async fn recipients_with_held_since(&self, since: UnixTime) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "SELECT DISTINCT recipient FROM quarantine WHERE state = 'held' AND created_at >= $1 ORDER BY recipient",
                vec![int(since)],
                &[Ty::Text],
                "quarantine",
            )
            .await?;
        rows.iter().map(|r| r.text(0)).collect()
    }

    /// An item's sealed contents ([`StoreError::NotFound`] once deleted or expired).
    pub async fn get_content(&self, id: &str) -> Result<Sealed, StoreError> {
        let rows = self
            .query("SELECT key_id, sealed FROM quarantine_blob WHERE id = $1", vec![text(id)], &[Ty::Text, Ty::Bytes], "quarantine_blob")
            .await?;
        let row = rows.first().ok_or_else(|| StoreError::NotFound { id: id.to_string() })?;
        Ok(Sealed { key_id: row.text(0)?, bytes: row.bytes(1)? })
    }

    async fn not_held(&self, id: &str) -> StoreError {
        match self.get_item(id).await {
            Ok(item) => StoreError::NotHeld { id: id.to_string(), current: item.state },
            Err(e) => e,
        }
    }

    /// Moves a held item to `Released` or `Deleted`, exactly once (see the module docs).
    /// `Deleted` also drops the contents. Prefer [`Store::release`] for releases: it records
    /// the audit record in the same transaction.
    pub async fn set_state(&self, id: &str, state: ItemState) -> Result<(), StoreError> {
        let mut stmts =
            vec![stmt("UPDATE quarantine SET state = $2 WHERE id = $1 AND state = 'held'", vec![text(id), text(state.as_str())])];
        match state {
            ItemState::Held => return Err(StoreError::BackToHeld),
            ItemState::Deleted => stmts.push(stmt("DELETE FROM quarantine_blob WHERE id = $1", vec![text(id)])),
            ItemState::Released => {}
        }
        let counts = self.transaction(stmts, true).await?;
        if counts.first() == Some(&1) { Ok(()) } else { Err(self.not_held(id).await) }
    }

    /// Releases a held item exactly once and records who did it, how and when (and the spool
    /// id of the copy it delivers, `ticket`), in one transaction. The loser of a race gets
    /// [`StoreError::NotHeld`] and nothing is recorded.
    pub async fn release(&self, id: &str, actor: &str, via: ReleaseVia, now: UnixTime, ticket: Option<&str>) -> Result<(), StoreError> {
        let counts = self
            .transaction(
                vec![
                    stmt("UPDATE quarantine SET state = 'released' WHERE id = $1 AND state = 'held'", vec![text(id)]),
                    stmt(
                        "INSERT INTO release_audit (item_id, recipient, actor, via, released_at, ticket)
                         SELECT id, recipient, CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS BIGINT), CAST($5 AS TEXT) FROM quarantine WHERE id = $1",
                        vec![text(id), text(actor), text(via.as_str()), int(now), Val::Text(ticket.map(str::to_string))],
                    ),
                ],
                true,
            )
            .await?;
        if counts.first() == Some(&1) { Ok(()) } else { Err(self.not_held(id).await) }
    }

    /// The release records of an item, oldest first.
    pub async fn releases(&self, id: &str) -> Result<Vec<ReleaseRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT item_id, recipient, actor, via, released_at, ticket FROM release_audit WHERE item_id = $1 ORDER BY released_at",
                vec![text(id)],
                &[Ty::Text, Ty::Text, Ty::Text, Ty::Text, Ty::Int, Ty::Text],
                "release_audit",
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReleaseRecord {
                    item_id: r.text(0)?,
                    recipient: r.text(1)?,
                    actor: r.text(2)?,
                    via: ReleaseVia::parse(&r.text(3)?, "release_audit")?,
                    at: r.int(4)?,
                    ticket: r.opt_text(5)?,
                })
            })
            .collect()
    }

    /// Removes an item and its contents, whatever its state. `false` if there was none.
    pub async fn delete_item(&self, id: &str) -> Result<bool, StoreError> {
        let counts = self
            .transaction(
                vec![
                    stmt("DELETE FROM quarantine WHERE id = $1", vec![text(id)]),
                    stmt("DELETE FROM quarantine_blob WHERE id = $1", vec![text(id)]),
                ],
                false,
            )
            .await?;
        Ok(counts.first().is_some_and(|&n| n > 0))
    }

    /// The retention sweep: items (and contents) whose `expires_at` is at or before `now`,
    /// release audit records older than `retention`, greylist rows not seen for
    /// `greylist_lifetime`, and rate counters whose window has ended.
    pub async fn expire(&self, now: UnixTime, retention: Duration, greylist_lifetime: Duration) -> Result<Expired, StoreError> {
        let counts = self
            .transaction(
                vec![
                    stmt("DELETE FROM quarantine_blob WHERE id IN (SELECT id FROM quarantine WHERE expires_at <= $1)", vec![int(now)]),
                    stmt("DELETE FROM quarantine WHERE expires_at <= $1", vec![int(now)]),
                    stmt("DELETE FROM release_audit WHERE released_at < $1", vec![int(now.saturating_sub(secs(retention)))]),
                    stmt("DELETE FROM greylist WHERE last_seen < $1", vec![int(now.saturating_sub(secs(greylist_lifetime)))]),
                    stmt("DELETE FROM rate_counter WHERE window_start + window_secs <= $1", vec![int(now)]),
                    stmt("DELETE FROM admin_audit WHERE at < $1", vec![int(now.saturating_sub(secs(retention)))]),
                    stmt("DELETE FROM classifier_lesson WHERE at < $1", vec![int(now.saturating_sub(secs(retention)))]),
                ],
                false,
            )
            .await?;
        let at = |i: usize| counts.get(i).copied().unwrap_or(0);
        Ok(Expired { items: at(1), audit_records: at(2) + at(5), greylist: at(3), rate_counters: at(4), lessons: at(6) })
    }

    /// Removes everything held about `address` (`moat user purge`): its quarantined items and
    /// their contents, release records, preferences, lists, digest cursor, sign-out time, rate
    /// counters named after it (login links, as a sender), and greylist rows where it is the
    /// sender or the recipient; its name comes off the classifier lessons it taught.
    pub async fn purge_user(&self, address: &str) -> Result<Purged, StoreError> {
        let a = || vec![text(lower(address))];
        let counts = self
            .transaction(
                vec![
                    stmt("DELETE FROM quarantine_blob WHERE id IN (SELECT id FROM quarantine WHERE recipient = $1)", a()),
                    stmt("DELETE FROM quarantine WHERE recipient = $1", a()),
                    stmt("DELETE FROM release_audit WHERE recipient = $1", a()),
                    stmt("DELETE FROM user_prefs WHERE address = $1", a()),
                    stmt("DELETE FROM user_list WHERE address = $1", a()),
                    stmt("DELETE FROM digest_cursor WHERE address = $1", a()),
                    stmt("DELETE FROM greylist WHERE recipient = $1 OR sender = $1", a()),
                    stmt("DELETE FROM admin_audit WHERE recipient = $1", a()),
                    stmt("UPDATE classifier_lesson SET taught_by = '' WHERE taught_by = $1", a()),
                    stmt("DELETE FROM web_session_revocation WHERE address = $1", a()),
                    stmt("DELETE FROM rate_counter WHERE name = 'login:' || $1 OR name = 'from:' || $1", a()),
                ],
                false,
            )
            .await?;
        Ok(Purged { items: counts.get(1).copied().unwrap_or(0), other_rows: counts.iter().skip(2).sum() })
    }

    /// Removes everything held about the users of `domain` (`moat domain purge`, when a customer
    /// domain leaves): as [`Store::purge_user`] for every address in it, and it records the purge
    /// itself in the admin audit by domain name, time and `actor` only.
    pub async fn purge_domain(&self, domain: &str, actor: &str, now: UnixTime) -> Result<Purged, StoreError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let users = || vec![text(format!("%@{}", like_literal(&domain)))];
        let counters = || vec![text(format!("login:%@{}", like_literal(&domain))), text(format!("from:%@{}", like_literal(&domain)))];
        let counts = self
            .transaction(
                vec![
                    stmt(
                        "DELETE FROM quarantine_blob WHERE id IN (SELECT id FROM quarantine WHERE recipient LIKE $1 ESCAPE '\\')",
                        users(),
                    ),
                    stmt("DELETE FROM quarantine WHERE recipient LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM release_audit WHERE recipient LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM user_prefs WHERE address LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM user_list WHERE address LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM digest_cursor WHERE address LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM greylist WHERE recipient LIKE $1 ESCAPE '\\' OR sender LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM admin_audit WHERE recipient LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM web_session_revocation WHERE address LIKE $1 ESCAPE '\\'", users()),
                    stmt("DELETE FROM rate_counter WHERE name LIKE $1 ESCAPE '\\' OR name LIKE $2 ESCAPE '\\'", counters()),
                    stmt("UPDATE classifier_lesson SET taught_by = '' WHERE taught_by LIKE $1 ESCAPE '\\'", users()),
                    stmt(
                        "INSERT INTO admin_audit (at, actor, action, target, recipient, outcome) VALUES ($1, $2, 'domain_purge', $3, '', 'done')",
                        vec![int(now), text(actor), text(&domain)],
                    ),
                ],
                false,
            )
            .await?;
        let other_rows = counts.iter().skip(2).take(counts.len().saturating_sub(3)).sum();
        Ok(Purged { items: counts.get(1).copied().unwrap_or(0), other_rows })
    }

    // ---- users ------------------------------------------------------------------------------

    /// A user's preferences; defaults when they never set any.
    pub async fn get_preferences(&self, address: &str) -> Result<Preferences, StoreError> {
        let address = lower(address);
        let rows = self
            .query(
                "SELECT digest, opt_out, filtering, time_zone, language FROM user_prefs WHERE address = $1",
                vec![text(&address)],
                &[Ty::Text, Ty::Bool, Ty::Bool, Ty::Text, Ty::Text],
                "user_prefs",
            )
            .await?;
        let mut prefs = Preferences::default();
        if let Some(row) = rows.first() {
            prefs.digest = row.opt_text(0)?.map(|d| DigestFrequency::parse(&d, "user_prefs")).transpose()?;
            prefs.opt_out = row.bool(1)?;
            prefs.filtering = row.opt_bool(2)?;
            prefs.time_zone = row.text(3)?;
            prefs.language = row.text(4)?;
        }
        let rows = self
            .query(
                "SELECT kind, entry FROM user_list WHERE address = $1 ORDER BY kind, entry",
                vec![text(&address)],
                &[Ty::Text, Ty::Text],
                "user_list",
            )
            .await?;
        for row in &rows {
            let entry = parse_entry(&row.text(1)?)?;
            match ListKind::parse(&row.text(0)?, "user_list")? {
                ListKind::Allow => prefs.allow.push(entry),
                ListKind::Block => prefs.block.push(entry),
            }
        }
        Ok(prefs)
    }

    /// Replaces a user's preferences and lists, in one transaction.
    pub async fn set_preferences(&self, address: &str, prefs: &Preferences, now: UnixTime) -> Result<(), StoreError> {
        let address = lower(address);
        let mut stmts = vec![
            stmt(
                "INSERT INTO user_prefs (address, digest, opt_out, filtering, time_zone, language, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (address) DO UPDATE SET digest = $2, opt_out = $3, filtering = $4, time_zone = $5, language = $6,
                 updated_at = $7",
                vec![
                    text(&address),
                    Val::Text(prefs.digest.map(|d| d.as_str().to_string())),
                    Val::Bool(Some(prefs.opt_out)),
                    Val::Bool(prefs.filtering),
                    text(&prefs.time_zone),
                    text(&prefs.language),
                    int(now),
                ],
            ),
            stmt("DELETE FROM user_list WHERE address = $1", vec![text(&address)]),
        ];
        for (kind, entries) in [(ListKind::Allow, &prefs.allow), (ListKind::Block, &prefs.block)] {
            for entry in entries {
                stmts.push(list_insert(&address, kind, entry));
            }
        }
        self.transaction(stmts, false).await?;
        Ok(())
    }

    /// Adds one entry to a user's allow or block list (e.g. "release and always allow").
    /// `false` if it was already there.
    pub async fn add_list_entry(&self, address: &str, kind: ListKind, entry: &Entry) -> Result<bool, StoreError> {
        Ok(self.transaction(vec![list_insert(&lower(address), kind, entry)], false).await?.first() == Some(&1))
    }

    /// Removes one entry from a user's list. `false` if it was not there.
    pub async fn remove_list_entry(&self, address: &str, kind: ListKind, entry: &Entry) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "DELETE FROM user_list WHERE address = $1 AND kind = $2 AND entry = $3",
                vec![text(lower(address)), text(kind.as_str()), text(entry.as_str())],
            )
            .await?;
        Ok(n > 0)
    }

    /// Every user with stored lists or a filtering choice, as [`UserPolicy`] values.
    pub async fn user_policies(&self) -> Result<Vec<(String, UserPolicy)>, StoreError> {
        let mut users: std::collections::BTreeMap<String, UserPolicy> = std::collections::BTreeMap::new();
        let rows = self
            .query("SELECT address, filtering FROM user_prefs WHERE filtering IS NOT NULL", vec![], &[Ty::Text, Ty::Bool], "user_prefs")
            .await?;
        for row in &rows {
            users.entry(row.text(0)?).or_default().filtering = row.opt_bool(1)?;
        }
        let rows = self
            .query(
                "SELECT address, kind, entry FROM user_list ORDER BY address, kind, entry",
                vec![],
                &[Ty::Text, Ty::Text, Ty::Text],
                "user_list",
            )
            .await?;
        for row in &rows {
            let policy = users.entry(row.text(0)?).or_default();
            let entry = parse_entry(&row.text(2)?)?;
            match ListKind::parse(&row.text(1)?, "user_list")? {
                ListKind::Allow => policy.lists.allow.push(entry),
                ListKind::Block => policy.lists.block.push(entry),
            }
        }
        Ok(users.into_iter().collect())
    }

    /// Sets every stored user's lists and filtering choice into `lists` (built from the
    /// configuration): a stored user replaces a `[[lists.user]]` entry of the same address.
    pub async fn apply_user_lists(&self, lists: &mut Lists) -> Result<(), StoreError> {
        for (address, policy) in self.user_policies().await? {
            lists.set_user(&address, policy);
        }
        Ok(())
    }

    // ---- digests ----------------------------------------------------------------------------

    /// When the user's last digest was sent (`None`: never).
    pub async fn digest_cursor(&self, address: &str) -> Result<Option<UnixTime>, StoreError> {
        let rows = self
            .query("SELECT last_digest FROM digest_cursor WHERE address = $1", vec![text(lower(address))], &[Ty::Int], "digest_cursor")
            .await?;
        rows.first().map(|r| r.int(0)).transpose()
    }

    /// Moves the user's cursor from `expected` (what [`Store::digest_cursor`] returned) to `to`,
    /// only if nobody moved it meanwhile: `true` means this caller owns the digest for the
    /// period; `false` means another run (or node) already did it.
    pub async fn advance_digest_cursor(
        &self,
        address: &str,
        expected: Option<UnixTime>,
        to: UnixTime,
        ticket: Option<&str>,
    ) -> Result<bool, StoreError> {
        let address = lower(address);
        let ticket = Val::Text(ticket.map(str::to_string));
        let n = match expected {
            None => {
                self.execute(
                    "INSERT INTO digest_cursor (address, last_digest, ticket) VALUES ($1, $2, $3) ON CONFLICT (address) DO NOTHING",
                    vec![text(address), int(to), ticket],
                )
                .await?
            }
            Some(from) => {
                self.execute(
                    "UPDATE digest_cursor SET last_digest = $3, ticket = $4 WHERE address = $1 AND last_digest = $2",
                    vec![text(address), int(from), int(to), ticket],
                )
                .await?
            }
        };
        Ok(n == 1)
    }

    /// The spool id recorded by the digest that last advanced `address`'s cursor, if any.
    pub async fn digest_ticket(&self, address: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .query("SELECT ticket FROM digest_cursor WHERE address = $1", vec![text(lower(address))], &[Ty::Text], "digest_cursor")
            .await?;
        Ok(rows.first().map(|r| r.opt_text(0)).transpose()?.flatten())
    }

    // ---- greylisting and rates --------------------------------------------------------------

    /// Greylisting: a triplet seen for the first time (or not seen for `lifetime`) is deferred;
    /// once `delay` has passed since its first attempt it passes, and keeps passing while it is
    /// seen at least once per `lifetime`. One atomic upsert, so nodes sharing a database agree.
    pub async fn check_greylist(
        &self,
        triplet: &Triplet,
        delay: Duration,
        lifetime: Duration,
        now: UnixTime,
    ) -> Result<Greylist, StoreError> {
        let delay = secs(delay);
        let rows = self
            .query(
                "INSERT INTO greylist (network, sender, recipient, first_seen, last_seen, passed)
                 VALUES ($1, $2, $3, $4, $4, CAST($6 AS BIGINT) <= 0)
                 ON CONFLICT (network, sender, recipient) DO UPDATE SET
                   first_seen = CASE WHEN greylist.last_seen < $5 THEN $4 ELSE greylist.first_seen END,
                   passed = CASE WHEN greylist.last_seen < $5 THEN CAST($6 AS BIGINT) <= 0
                                 ELSE greylist.passed OR $4 - greylist.first_seen >= $6 END,
                   last_seen = $4
                 RETURNING first_seen, passed",
                vec![
                    text(&triplet.network),
                    text(&triplet.sender),
                    text(&triplet.recipient),
                    int(now),
                    int(now.saturating_sub(secs(lifetime))),
                    int(delay),
                ],
                &[Ty::Int, Ty::Bool],
                "greylist",
            )
            .await?;
        let row = rows.first().ok_or(StoreError::Corrupt { table: "greylist", detail: "upsert returned no row".into() })?;
        if row.bool(1)? {
            Ok(Greylist::Pass)
        } else {
            let waited = now.saturating_sub(row.int(0)?);
            Ok(Greylist::Defer { retry_in: u64::try_from(delay.saturating_sub(waited)).unwrap_or(0).max(1) })
        }
    }

    /// Counts one hit for `key` (e.g. `ip:192.0.2.7` or `from:a@b.test`) in the current fixed
    /// window of length `window` (aligned to multiples of it since the epoch) and returns the
    /// hits in that window so far, this one included.
    pub async fn hit_rate(&self, key: &str, window: Duration, now: UnixTime) -> Result<u64, StoreError> {
        let window = secs(window).max(1);
        let start = now - now.rem_euclid(window);
        let rows = self
            .query(
                "INSERT INTO rate_counter (name, window_secs, window_start, hits) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (name, window_secs, window_start) DO UPDATE SET hits = rate_counter.hits + 1
                 RETURNING hits",
                vec![text(key), int(window), int(start)],
                &[Ty::Int],
                "rate_counter",
            )
            .await?;
        let row = rows.first().ok_or(StoreError::Corrupt { table: "rate_counter", detail: "upsert returned no row".into() })?;
        u64::try_from(row.int(0)?).map_err(|_| row.corrupt(0))
    }
}

fn parse_entry(text: &str) -> Result<Entry, StoreError> {
    Entry::parse(text).map_err(|detail| StoreError::Corrupt { table: "user_list", detail })
}

fn list_insert(address: &str, kind: ListKind, entry: &Entry) -> Stmt {
    stmt(
        "INSERT INTO user_list (address, kind, entry) VALUES ($1, $2, $3) ON CONFLICT (address, kind, entry) DO NOTHING",
        vec![text(address), text(kind.as_str()), text(entry.as_str())],
    )
}
