//! Typed configuration: one TOML file, every key documented once, next to its default.
//!
//! Guarantees: unknown keys are errors (`deny_unknown_fields`); [`load`] reports every error it
//! can find at once, each with file:line:column; a configuration that fails validation is never
//! partly applied (callers get either a whole [`Config`] or a list of [`ConfigError`]s).

mod deferral;
mod digest;
mod duration;
mod learning;
mod policy;
pub mod schedule;
mod validate;
mod web;

pub use deferral::{Greylist, RateLimits};
pub use digest::{Digest, DigestOverride, Frequency};
pub use duration::Seconds;
pub use learning::{Classifier, TABLE_BITS as CLASSIFIER_TABLE_BITS};
pub use policy::{Action, PolicyConfig, PolicyOverride, Stance, check_thresholds};
pub use validate::{ConfigError, load, load_str};
pub use web::{Admin, Metrics, Notices, Web};

use crate::lists::Entry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Our name: the greeting, the EHLO we send downstream, our Received header and DSNs.
    pub hostname: String,
    /// Directory for all state (spool, control socket). Created if missing.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// SMTP listeners. At least one.
    #[serde(default)]
    pub listen: Vec<Listener>,
    /// Server certificate for STARTTLS (inbound) .
    pub tls: Option<TlsFiles>,
    /// Bounds on what one client may do.
    #[serde(default)]
    pub limits: Limits,
    /// Deadlines for inbound sessions (RFC 5321 §4.5.3.2).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// The default downstream route: where accepted mail for every relay domain goes unless the
    /// domain names its own route.
    pub downstream: Route,
    /// The domains we accept mail for. Anything else is refused at RCPT (never an open relay).
    #[serde(default, rename = "domain")]
    pub domains: Vec<Domain>,
    /// How the queue delivers to the downstream.
    #[serde(default)]
    pub delivery: Delivery,
    /// How DNS is reached (SPF, DKIM, DMARC, blocklists, reverse DNS).
    #[serde(default)]
    pub dns: Dns,
    /// What scores mean: thresholds, forced actions, subject tag.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// DNS block and allow lists, URI lists, reverse DNS and HELO checks.
    #[serde(default)]
    pub reputation: Reputation,
    /// Allow and block lists: global, per domain and per user.
    #[serde(default)]
    pub lists: Lists,
    /// Email authentication (SPF, DKIM, DMARC, ARC) and the Authentication-Results header.
    #[serde(default)]
    pub auth: Auth,
    /// Rule files (SpamAssassin syntax). Without a `[rules]` section the default directories
    /// are used if the first exists (see [`Config::rule_dirs`]).
    pub rules: Option<Rules>,
    /// Virus scanning with clamd. Without a `[clamav]` section nothing is scanned.
    pub clamav: Option<Clamav>,
    /// Attachment policy: blocked names and types, executables, archives, malformed MIME.
    #[serde(default)]
    pub attachments: Attachments,
    /// Where the quarantine index, user preferences and greylisting state are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// The statistical classifier that learns from released and reported mail.
    #[serde(default)]
    pub classifier: Classifier,
    /// Greylisting of unknown (network, sender, recipient) triplets; off by default.
    #[serde(default)]
    pub greylist: Greylist,
    /// Messages per client IP and per sender in a time window; off by default.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The web listener behind the links in moat's emails.
    pub web: Option<Web>,
    /// Emails to users about their own mail (virus notices).
    #[serde(default)]
    pub notices: Notices,
    /// Quarantine digests: schedule, time zone, default frequency.
    #[serde(default)]
    pub digest: Digest,
    /// The metrics and health listener; none without this section.
    pub metrics: Option<Metrics>,
    /// The admin console and JSON API.
    pub admin: Option<Admin>,
}

/// `[clamav]`: where clamd listens and what happens when it cannot answer.
///
/// Exactly one of `address` and `socket`. The whole message is streamed to clamd (INSTREAM);
/// clamd decodes MIME and archives itself. Keep clamd's `StreamMaxLength` at least
/// `limits.max_message_size`: a larger message is a scan failure, never "clean".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clamav {
    /// clamd's TCP socket, e.g. "127.0.0.1:3310" (clamd.conf `TCPSocket`/`TCPAddr`).
    pub address: Option<SocketAddr>,
    /// clamd's Unix socket, e.g. "/run/clamav/clamd.ctl" (clamd.conf `LocalSocket`).
    pub socket: Option<PathBuf>,
    /// Deadline for connecting to clamd.
    #[serde(default = "default_clamav_connect_timeout")]
    pub connect_timeout: Seconds,
    /// Deadline for one scan: waiting for a free scan slot, sending the message and reading the
    /// answer. Keep it below the filter deadline (30s) and the client's DATA timeout.
    #[serde(default = "default_clamav_scan_timeout")]
    pub scan_timeout: Seconds,
    /// Scans running at once (clamd.conf `MaxThreads` is 10 by default); more wait for a slot.
    #[serde(default = "default_clamav_max_concurrent")]
    pub max_concurrent: usize,
    /// When clamd cannot give an answer (down, error, size limit, timeout): "fail_closed"
    /// answers 451 so the sender retries; "fail_open" delivers with `CLAMAV_FAIL` and an
    /// `X-Virus-Scan` header saying the message was not scanned.
    #[serde(default = "default_clamav_failure")]
    pub failure: Stance,
}

fn default_clamav_connect_timeout() -> Seconds {
    Seconds(5)
}

fn default_clamav_scan_timeout() -> Seconds {
    Seconds(20)
}

fn default_clamav_max_concurrent() -> usize {
    8
}

fn default_clamav_failure() -> Stance {
    Stance::FailClosed
}

/// `[attachments]`: what moat looks for in a message's MIME structure. Each finding is a symbol
/// (`ATTACH_*`, `ARCHIVE_*`, `MIME_*`) whose score the rule files set; to refuse or hold such
/// mail whatever its score, name the symbol in `[policy] forced`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attachments {
    /// Run the attachment checks at all.
    pub enabled: bool,
    /// File name extensions (without the dot, case-insensitive) that give `ATTACH_BLOCKED_EXT`,
    /// also as the last of two (`invoice.pdf.exe`: also `ATTACH_DOUBLE_EXT`) and inside archives.
    pub blocked_extensions: Vec<String>,
    /// MIME types that give `ATTACH_BLOCKED_TYPE`; "type/*" matches a whole type.
    pub blocked_types: Vec<String>,
    /// Deepest nesting of multiparts and attached messages looked into (`MIME_TOO_DEEP` beyond).
    pub max_depth: usize,
    /// Most MIME parts looked at (`MIME_TOO_MANY_PARTS` beyond).
    pub max_parts: usize,
    /// Look at the file names inside zip archives (and flag encrypted ones).
    pub scan_archives: bool,
}

/// The extensions blocked by default: programs, scripts, installers, shortcuts and disk images
/// that run (or mount and run) when opened on Windows, plus Java archives.
pub const DEFAULT_BLOCKED_EXTENSIONS: &[&str] = &[
    "ade", "adp", "app", "appx", "bat", "cab", "chm", "cmd", "com", "cpl", "dll", "exe", "gadget", "hta", "img", "inf", "ins", "iso",
    "isp", "jar", "js", "jse", "lnk", "mde", "msc", "msi", "msix", "msp", "mst", "pif", "ps1", "ps1xml", "psc1", "psm1", "reg", "scf",
    "scr", "sct", "shb", "shs", "url", "vb", "vbe", "vbs", "vhd", "vhdx", "ws", "wsc", "wsf", "wsh", "xll",
];

/// The MIME types blocked by default: executables and installers.
pub const DEFAULT_BLOCKED_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/x-executable",
    "application/vnd.microsoft.portable-executable",
    "application/x-msi",
    "application/x-ms-shortcut",
    "application/hta",
];

impl Default for Attachments {
    fn default() -> Self {
        Attachments {
            enabled: true,
            blocked_extensions: DEFAULT_BLOCKED_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            blocked_types: DEFAULT_BLOCKED_TYPES.iter().map(|t| t.to_string()).collect(),
            max_depth: 10,
            max_parts: 500,
            scan_archives: true,
        }
    }
}

/// `[store]`: the database behind the quarantine, user preferences, digests and greylisting,
/// and the key its message contents are encrypted with (see `moat::store`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// "sqlite" (embedded, the default) or "postgres" (one database shared by several nodes).
    pub backend: StoreBackend,
    /// The SQLite database file (sqlite only). Default: `<state_dir>/moat.db`.
    pub path: Option<PathBuf>,
    /// PostgreSQL connection string (postgres only, required there), e.g.
    /// "host=/run/postgresql user=moat dbname=moat".
    pub url: Option<String>,
    /// The key file message contents are encrypted with: 32 random bytes, created (mode 0600)
    /// if missing. Retired keys are kept in `<key_file>.keyring/`. Default: `<state_dir>/vault.key`.
    pub key_file: Option<PathBuf>,
    /// How long quarantined items and release records are kept.
    pub retention: Seconds,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { backend: StoreBackend::Sqlite, path: None, url: None, key_file: None, retention: Seconds(30 * 86400) }
    }
}

/// The store's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    Sqlite,
    Postgres,
}

/// `[reputation]`: what the DNSBL/DNSWL/URIBL and reverse-DNS/HELO filters check.
///
/// Public lists (Spamhaus, SpamCop, URIBL, …) refuse queries that arrive through big public
/// resolvers, so no zone is configured by default: an operator opts in, with a resolver of
/// their own in `[dns]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reputation {
    /// DNS blocklists queried with the client IP (IPv4 reversed octets, IPv6 reversed nibbles).
    pub dnsbl: Vec<ListZone>,
    /// DNS allowlists, queried like `dnsbl`; give their symbols negative scores.
    pub dnswl: Vec<ListZone>,
    /// Domain lists (URIBL, SURBL, Spamhaus DBL) queried with the registrable domains of the
    /// URLs in the message body and of the envelope sender.
    pub uribl: Vec<ListZone>,
    /// Forward-confirmed reverse DNS of the client (`RDNS_NONE`, `RDNS_MISMATCH`, `RDNS_DYNAMIC`).
    pub rdns: bool,
    /// HELO sanity checks (`HELO_BARE_IP`, `HELO_NOT_FQDN`, `HELO_IS_OURS`, `HELO_MISMATCH_IP`).
    pub helo_checks: bool,
    /// With `helo_checks`: also look the HELO name up and emit `HELO_NXDOMAIN` when it does not exist.
    pub helo_nxdomain: bool,
    /// Most URL domains looked up per message (after de-duplication; the sender domain is extra).
    pub max_uri_domains: usize,
}

impl Default for Reputation {
    fn default() -> Self {
        Reputation {
            dnsbl: Vec::new(),
            dnswl: Vec::new(),
            uribl: Vec::new(),
            rdns: true,
            helo_checks: true,
            helo_nxdomain: true,
            max_uri_domains: 20,
        }
    }
}

/// Email authentication: SPF (MAIL FROM and HELO), DKIM, DMARC and ARC, reported as symbols and
/// in one `Authentication-Results` header; optionally ARC-sealed for the downstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Run the checks at all.
    pub enabled: bool,
    /// Our authserv-id in `Authentication-Results` (and the ARC AAR). Default: `hostname`.
    /// Incoming `Authentication-Results` fields claiming this id are forgeries and are removed.
    pub authserv_id: Option<String>,
    /// What a message that fails DMARC from a `p=reject` domain gets: "reject" (5xx),
    /// "quarantine", or "score" (no forced action: only the symbols' scores count).
    /// A failing message from a `p=quarantine` domain is quarantined unless this is "score".
    pub dmarc_reject: DmarcReject,
    /// What a DNS failure during the checks does: "fail_open" (record `*_TEMPERROR` symbols and
    /// carry on) or "fail_closed" (answer 451 so the sender retries).
    pub dns_failure: Stance,
    /// Time budget for each stage of one message's checks: SPF, DKIM and ARC run together within
    /// it, then DMARC within it again. A method still waiting is a temperror, so a sender's slow
    /// DNS cannot hide the From domain's DMARC result. Keep twice this below the filter deadline.
    pub timeout: Seconds,
    /// ARC-seal our results with this key so the downstream can trust them. Off when absent.
    pub arc_seal: Option<ArcSeal>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            enabled: true,
            authserv_id: None,
            dmarc_reject: DmarcReject::Quarantine,
            dns_failure: Stance::FailOpen,
            timeout: Seconds(10),
            arc_seal: None,
        }
    }
}

/// One DNS list zone, e.g.
/// `{ zone = "zen.spamhaus.org", symbol = "RCVD_IN_ZEN", codes = { "127.0.0.2" = "RCVD_IN_ZEN_SBL" } }`.
///
/// An answer in the code map gives its symbol; any other answer in 127.0.0.0/8 gives `symbol`.
/// Answers outside 127.0.0.0/8, in 127.255.255.0/24 (Spamhaus's error codes: "public resolver",
/// "typo", "rate limited") or listed in `ignore` are refusals: logged once, never scored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListZone {
    /// The list's DNS zone, e.g. "zen.spamhaus.org".
    pub zone: String,
    /// Symbol for a listing whose answer is not in `codes`.
    pub symbol: String,
    /// Answer (an address in 127.0.0.0/8) → symbol.
    #[serde(default)]
    pub codes: BTreeMap<Ipv4Addr, String>,
    /// Further answers that mean "query refused" for this list (e.g. "127.0.0.1" for
    /// multi.uribl.com, "127.0.0.255" for list.dnswl.org).
    #[serde(default)]
    pub ignore: Vec<Ipv4Addr>,
}

/// `[lists]`: allow and block lists. Entries are `"user@x.test"` (an address), `"x.test"` (a
/// domain), `".x.test"` or `"*.x.test"` (a domain and its subdomains), `"192.0.2.7"` or
/// `"192.0.2.0/24"` / `"2001:db8::/32"` (client addresses). See `moat::lists` for precedence.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lists {
    /// Global allow list: matching mail is accepted whatever its score (never a virus).
    pub allow: Vec<Entry>,
    /// Global block list: matching mail gets `BLOCK_LIST`.
    pub block: Vec<Entry>,
    /// Lists for one of our domains: `[[lists.domain]]`.
    pub domain: Vec<DomainLists>,
    /// Lists for one recipient: `[[lists.user]]`.
    pub user: Vec<UserLists>,
}

impl Lists {
    /// The allow/block lists these sections describe (entries were parsed and checked when the
    /// configuration was loaded).
    pub fn build(&self) -> crate::lists::Lists {
        use crate::lists::{DomainPolicy, ListSet, UserPolicy};
        let mut lists = crate::lists::Lists::new(ListSet { allow: self.allow.clone(), block: self.block.clone() });
        for domain in &self.domain {
            lists.set_domain(
                &domain.name,
                DomainPolicy {
                    lists: ListSet { allow: domain.allow.clone(), block: domain.block.clone() },
                    filtering: domain.filtering,
                    user_opt_out: domain.user_opt_out,
                },
            );
        }
        for user in &self.user {
            lists.set_user(
                &user.address,
                UserPolicy { lists: ListSet { allow: user.allow.clone(), block: user.block.clone() }, filtering: user.filtering },
            );
        }
        lists
    }
}

/// `[[lists.domain]]`: lists and filtering for the recipients of one relay domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainLists {
    /// One of the `[[domain]]` names.
    pub name: String,
    #[serde(default)]
    pub allow: Vec<Entry>,
    #[serde(default)]
    pub block: Vec<Entry>,
    /// Spam filtering for the domain's recipients (viruses and block lists apply regardless).
    #[serde(default = "yes")]
    pub filtering: bool,
    /// Whether a user of the domain may switch their own spam filtering off or on.
    #[serde(default = "yes")]
    pub user_opt_out: bool,
}

/// `[[lists.user]]`: lists and filtering for one recipient address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLists {
    /// The recipient, e.g. "user@example.test" (case-insensitive).
    pub address: String,
    #[serde(default)]
    pub allow: Vec<Entry>,
    #[serde(default)]
    pub block: Vec<Entry>,
    /// The user's own choice of spam filtering; unset: the domain's. Ignored when the domain
    /// sets `user_opt_out = false`.
    pub filtering: Option<bool>,
}

/// How a DMARC failure under the domain's `p=reject` policy is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcReject {
    /// Refuse the message with a 5xx at the end of DATA.
    Reject,
    /// Hold it in the quarantine.
    Quarantine,
    /// Force nothing; `DMARC_POLICY_*` symbols only add their scores.
    Score,
}

/// The ARC sealing key: published as `<selector>._domainkey.<domain>` TXT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcSeal {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// PEM private key: Ed25519 (PKCS#8) or RSA (PKCS#1 or PKCS#8). Checked at load.
    pub key_file: PathBuf,
}

impl Auth {
    /// The authserv-id: the configured one, or our `hostname`.
    pub fn authserv_id<'a>(&'a self, hostname: &'a str) -> &'a str {
        self.authserv_id.as_deref().unwrap_or(hostname)
    }

    /// Symbols that force an action whatever the score, for the recipient policy
    /// (`verdict::Policy::forced`): `DMARC_POLICY_REJECT` as configured by `dmarc_reject`, and
    /// `DMARC_POLICY_QUARANTINE` → quarantine unless `dmarc_reject = "score"`.
    pub fn forced_actions(&self) -> Vec<(String, Action)> {
        if !self.enabled {
            return Vec::new();
        }
        let reject = match self.dmarc_reject {
            DmarcReject::Reject => Action::Reject,
            DmarcReject::Quarantine => Action::Quarantine,
            DmarcReject::Score => return Vec::new(),
        };
        vec![("DMARC_POLICY_REJECT".to_string(), reject), ("DMARC_POLICY_QUARANTINE".to_string(), Action::Quarantine)]
    }
}

/// Where the rule files are. Every `*.cf` file of each directory is read, in name order,
/// directory after directory; a later definition, `score` or `describe` of a name replaces an
/// earlier one, so the last directory is the place for local changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Rule directories in load order, relative to this file's directory. The first must
    /// exist (the shipped rules); later ones (local overrides) may be missing.
    /// Default: `["/usr/share/moat/rules", "/etc/moat/rules.d"]`.
    pub dirs: Vec<PathBuf>,
    /// Rule directories of other packages, loaded before `dirs` and each only while it exists,
    /// e.g. `["/usr/share/spamassassin"]`: SpamAssassin's stock rules when the spamassassin
    /// package is installed, nothing when it is not (installed later, the watch or SIGHUP loads
    /// them). Loaded first, so moat's shipped scores and local rules override theirs.
    /// Relative to this file's directory. Default: none.
    pub stock_dirs: Vec<PathBuf>,
    /// How often the directories are checked for changed `*.cf` files, which are then loaded
    /// as on SIGHUP (all or nothing). "0s" turns the watch off (SIGHUP only).
    pub watch: Seconds,
}

impl Default for Rules {
    fn default() -> Self {
        Rules { dirs: default_rule_dirs(), stock_dirs: Vec::new(), watch: Seconds(5) }
    }
}

/// The shipped rules and the local override directory of a package installation.
pub fn default_rule_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/usr/share/moat/rules"), PathBuf::from("/etc/moat/rules.d")]
}

/// The resolver moat uses for its own lookups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Name servers as "ip:port" (UDP, with TCP fallback). Empty: the system's /etc/resolv.conf.
    /// A DNS blocklist needs a resolver of your own (public resolvers are refused by most lists).
    pub nameservers: Vec<SocketAddr>,
    /// Deadline for one query attempt.
    pub timeout: Seconds,
    /// Tries per query (so a server that never answers costs `timeout` × `attempts`).
    pub attempts: usize,
    /// Answers kept in the cache.
    pub cache_size: u64,
}

impl Default for Dns {
    fn default() -> Self {
        Dns { nameservers: Vec::new(), timeout: Seconds(2), attempts: 2, cache_size: 10_000 }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/moat")
}

/// One SMTP listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address and port, e.g. "0.0.0.0:25" or "127.0.0.1:2525".
    pub address: SocketAddr,
    /// Offer STARTTLS here (needs `[tls]`).
    #[serde(default = "yes")]
    pub starttls: bool,
    /// Expect a PROXY protocol v1 or v2 header first (a load balancer in front). Connections
    /// without one are dropped. Never enable on a listener reachable without the balancer.
    #[serde(default)]
    pub proxy_protocol: bool,
}

fn yes() -> bool {
    true
}

/// PEM files for our certificate chain and private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Bounds on what one client may do; over a bound it gets a 4xx/5xx and a clean close.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message accepted, in bytes; announced in EHLO SIZE and enforced while streaming.
    pub max_message_size: usize,
    /// Most recipients in one transaction (RFC 5321 asks for at least 100).
    pub max_recipients: usize,
    /// Longest command line, in bytes, CRLF included.
    pub max_line_length: usize,
    /// Protocol errors before we say 421 and close.
    pub max_errors: u32,
    /// Commands in one connection before we say 421 and close.
    pub max_commands: u32,
    /// Messages in one connection before further MAIL gets 421 and a close.
    pub max_messages_per_connection: u32,
    /// Open SMTP connections in total; beyond it new ones get 421 and a close.
    pub max_connections: usize,
    /// Open SMTP connections from one client IP; beyond it new ones get 421 and a close.
    pub max_connections_per_ip: usize,
    /// Stress mode is on while this share of `max_connections` is open (0 < x <= 1; 0 turns it
    /// off): sessions wait at most `[timeouts] stress_*`, and early talkers are turned away
    /// (Postfix's `${stress}`). The gauge `moat_stress` shows it.
    pub stress_threshold: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            max_errors: 10,
            max_commands: 10_000,
            max_messages_per_connection: 1000,
            max_connections: 1000,
            max_connections_per_ip: 50,
            stress_threshold: 0.8,
        }
    }
}

/// Inbound deadlines. Defaults follow RFC 5321 §4.5.3.2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Waiting for the next command, and for the whole of it: a command line must be complete
    /// this long after the previous reply, however the client trickles it (Postfix's
    /// `smtpd_per_record_deadline`).
    pub command: Seconds,
    /// Waiting for the next block of message data (DATA or a BDAT chunk).
    pub data_block: Seconds,
    /// The whole connection, however busy: a last-resort bound.
    pub session: Seconds,
    /// How long SIGTERM waits for open sessions to finish before closing them.
    pub shutdown_grace: Seconds,
    /// Wait this long before the greeting and note clients that talk first (`PREGREET`).
    /// 0 (the default) greets at once.
    pub pregreet: Seconds,
    /// The least average rate of message data, in bytes per second, after `data_rate_grace`:
    /// a message (or BDAT chunk) must have arrived within `data_rate_grace` + its size /
    /// `data_min_rate` seconds, whatever the sender's trickle; else `421 4.4.2`. 0: no bound.
    pub data_min_rate: u64,
    pub data_rate_grace: Seconds,
    /// Under stress (`[limits] stress_threshold`): `command` and `data_block` are at most these,
    /// and the greeting waits `stress_pregreet` (if `pregreet` is shorter): a client that talks
    /// before it gets `421 4.7.0` and a close, as legitimate senders never do.
    pub stress_command: Seconds,
    pub stress_data_block: Seconds,
    pub stress_pregreet: Seconds,
}

impl Timeouts {
    /// The deadlines in force: under stress each is cut to its `stress_*` bound.
    pub fn under(&self, stressed: bool) -> Timeouts {
        if !stressed {
            return self.clone();
        }
        Timeouts {
            command: self.command.min(self.stress_command),
            data_block: self.data_block.min(self.stress_data_block),
            pregreet: self.pregreet.max(self.stress_pregreet),
            ..self.clone()
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Seconds(300),
            data_block: Seconds(180),
            session: Seconds(3600),
            shutdown_grace: Seconds(30),
            pregreet: Seconds(0),
            data_min_rate: 1024,
            data_rate_grace: Seconds(30),
            stress_command: Seconds(10),
            stress_data_block: Seconds(30),
            stress_pregreet: Seconds(2),
        }
    }
}

/// TLS policy towards a downstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate; plain text when not offered.
    Opportunistic,
    /// STARTTLS required and the certificate verified; otherwise the delivery is deferred.
    Required,
}

/// Where and how to deliver downstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Host name or IP address of the downstream server.
    pub host: String,
    /// Port (default 25).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// STARTTLS policy (default opportunistic).
    #[serde(default = "default_tls_policy")]
    pub tls: TlsPolicy,
    /// Extra PEM CA bundle trusted for `tls = "required"` (besides the system store).
    pub ca_file: Option<PathBuf>,
    /// Name to verify in the certificate for `tls = "required"`; default `host`.
    pub tls_name: Option<String>,
}

fn default_smtp_port() -> u16 {
    25
}

fn default_tls_policy() -> TlsPolicy {
    TlsPolicy::Opportunistic
}

/// How recipients of a domain are checked at RCPT time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecipientCheck {
    /// Accept every local part (the downstream decides later).
    #[default]
    Any,
    /// Only the addresses in `recipients`.
    List,
    /// Ask the downstream with a RCPT probe ("callout"), cached.
    Callout,
    /// The static list first; addresses not in it are asked by callout.
    ListThenCallout,
}

/// One domain we relay for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The domain, e.g. "example.net" (matched exactly, case-insensitively; no wildcards).
    pub name: String,
    /// Its own downstream; default the top-level `[downstream]`.
    pub route: Option<Route>,
    /// How to validate recipients at RCPT time.
    #[serde(default)]
    pub recipient_check: RecipientCheck,
    /// Valid addresses (full addresses, case-insensitive) for `list` checks.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// How long a callout answer is cached (positive answers).
    #[serde(default = "default_callout_ttl")]
    pub callout_cache: Seconds,
    /// Reply code for a recipient of this domain that does not exist: 550 (default) or 450.
    #[serde(default = "default_unknown_user_code")]
    pub unknown_user_code: u16,
    /// This domain's own thresholds and forced actions (over `[policy]`).
    pub policy: Option<PolicyOverride>,
    /// This domain's own digest schedule (over `[digest]`).
    pub digest: Option<DigestOverride>,
    /// Whether admin views (console, API, `moat quarantine`) show the subjects of this domain's
    /// held mail and the details of their symbols. Both can quote the message, so by default
    /// admins see sender, recipient, date, size, score, symbol names and category only; users
    /// always see their own.
    #[serde(default)]
    pub admin_sees_subjects: bool,
    /// How the domain is named to its users in the header of the Message Center, the pages
    /// behind its links and its digests (e.g. "Example ISP"); default its name.
    pub display_name: Option<String>,
    /// A logo shown beside the display name in the header of the Message Center and of the pages
    /// behind its links, served by moat itself (`/logo/<domain>`): a PNG, JPEG or GIF file of at
    /// most [`MAX_LOGO_BYTES`], relative to this file. Digests name the domain in text only (an
    /// image fetched from a server when a digest is opened would tell that server it was read).
    pub logo: Option<PathBuf>,
    /// The language its users read moat's pages and emails in, unless they choose another in the
    /// Message Center: a code of a shipped catalog (`en`, `de`; see [`crate::i18n`]); default `en`.
    pub language: Option<String>,
}

/// The largest `[[domain]] logo` file.
pub const MAX_LOGO_BYTES: u64 = 256 * 1024;

/// A logo file as it may be served: its media type and bytes, or why it may not be (unreadable,
/// more than [`MAX_LOGO_BYTES`], or not a PNG, JPEG or GIF by its first bytes: an SVG could
/// carry script). Checked when the configuration loads and again on each request.
pub fn read_logo(path: &std::path::Path) -> Result<(&'static str, Vec<u8>), String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|file| file.take(MAX_LOGO_BYTES + 1).read_to_end(&mut bytes)).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_LOGO_BYTES {
        return Err(format!("more than {MAX_LOGO_BYTES} bytes"));
    }
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        "image/gif"
    } else {
        return Err("not a PNG, JPEG or GIF image".to_string());
    };
    Ok((kind, bytes))
}

fn default_callout_ttl() -> Seconds {
    Seconds(3600)
}

fn default_unknown_user_code() -> u16 {
    550
}

/// The queue manager: delivery concurrency, retries, lifetime.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Messages delivered at once.
    pub concurrency: usize,
    /// First retry after a temporary failure; doubles each time up to `retry_max`.
    pub retry_initial: Seconds,
    /// Longest wait between attempts.
    pub retry_max: Seconds,
    /// Give up (and send a delay DSN to the sender) after this long in the queue.
    pub max_lifetime: Seconds,
    /// Messages sent over one downstream connection before it is closed.
    pub max_messages_per_connection: u32,
    /// Idle downstream connections are kept this long for reuse.
    pub idle_timeout: Seconds,
    /// Connect deadline.
    pub connect_timeout: Seconds,
    /// Deadline for each downstream reply (greeting, EHLO, MAIL, RCPT, end of data).
    pub reply_timeout: Seconds,
    /// Where delivery status notifications to external senders go. Default: `[downstream]`.
    pub dsn_route: Option<Route>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            concurrency: 16,
            retry_initial: Seconds(60),
            retry_max: Seconds(3600),
            max_lifetime: Seconds(5 * 86400),
            max_messages_per_connection: 100,
            idle_timeout: Seconds(10),
            connect_timeout: Seconds(30),
            reply_timeout: Seconds(300),
            dsn_route: None,
        }
    }
}

impl Config {
    /// The domain entry for `domain` (already lower-cased by the caller), if we relay for it.
    pub fn domain(&self, domain: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name.eq_ignore_ascii_case(domain))
    }

    /// The downstream route for a recipient domain we relay for.
    /// Whether admins may see the subject of mail held for `recipient` (its domain's
    /// `admin_sees_subjects`).
    pub fn admin_sees_subject(&self, recipient: &str) -> bool {
        let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
        self.domain(domain).is_some_and(|d| d.admin_sees_subjects)
    }

    /// The name the user `address` sees for their domain (its `display_name`, or the domain).
    /// Where the logo of `address`'s domain is served, if the domain has one.
    pub fn logo_url_for(&self, address: &str) -> Option<String> {
        let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
        self.domain(domain).filter(|d| d.logo.is_some()).map(|d| format!("/logo/{}", d.name.to_ascii_lowercase()))
    }

    pub fn display_name_for(&self, address: &str) -> String {
        let domain = address.rsplit_once('@').map_or(address, |(_, d)| d);
        self.domain(domain).and_then(|d| d.display_name.clone()).unwrap_or_else(|| domain.to_ascii_lowercase())
    }

    pub fn route_for(&self, domain: &str) -> &Route {
        self.domain(domain).and_then(|d| d.route.as_ref()).unwrap_or(&self.downstream)
    }

    /// The rule directories to load, in order: the `stock_dirs` that exist, then the first of
    /// `dirs` (the shipped rules, which must exist) and the rest of `dirs` that exist; the
    /// `[rules]` section's, or the defaults. Empty when there is no `[rules]` section and the
    /// default shipped directory does not exist (moat then runs without rule files).
    pub fn rule_dirs(&self) -> Vec<PathBuf> {
        let (stock, dirs, explicit) = match &self.rules {
            Some(rules) => (rules.stock_dirs.as_slice(), rules.dirs.clone(), true),
            None => (&[][..], default_rule_dirs(), false),
        };
        let Some((first, rest)) = dirs.split_first() else { return Vec::new() };
        if !explicit && !first.is_dir() {
            return Vec::new();
        }
        let stock = stock.iter().filter(|d| d.is_dir()).cloned();
        stock.chain(std::iter::once(first.clone())).chain(rest.iter().filter(|d| d.is_dir()).cloned()).collect()
    }

    /// How often rule files are checked for changes (zero: never).
    pub fn rules_watch(&self) -> std::time::Duration {
        self.rules.as_ref().map_or(Seconds(5), |r| r.watch).duration()
    }

    /// The spool directory (inside `state_dir`).
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }

    /// Where quarantined messages are held (durably, never delivered).
    pub fn quarantine_dir(&self) -> PathBuf {
        self.state_dir.join("quarantine")
    }

    /// Release copies written before the store decides who released an item (never delivered
    /// from here; see `moat::quarantine`).
    pub fn release_staging_dir(&self) -> PathBuf {
        self.state_dir.join("releasing")
    }

    /// How long greylisting remembers a triplet (also when greylisting is off: rows from
    /// when it was on expire with it).
    pub fn greylist_lifetime(&self) -> std::time::Duration {
        self.greylist.lifetime.duration()
    }

    /// The digest settings for recipients of `domain` (the `[digest]` section with the
    /// domain's overrides).
    pub fn digest_for(&self, domain: &str) -> Digest {
        self.digest.resolve(self.domain(domain).and_then(|d| d.digest.as_ref()))
    }

    /// The digest settings for the user `address` (its domain's; also the time zone the user's
    /// times are shown in).
    pub fn digest_for_address(&self, address: &str) -> Digest {
        self.digest_for(address.rsplit_once('@').map_or("", |(_, d)| d))
    }

    /// The IANA time zone the user `address` sees times in: `chosen` (their preference) when it
    /// names a zone, else their domain's digest time zone.
    pub fn time_zone_for(&self, address: &str, chosen: &str) -> String {
        match crate::clock::time_zone(chosen) {
            Some(zone) => zone.to_string(),
            None => self.digest_for_address(address).timezone,
        }
    }

    /// The language the user `address` reads moat in: `chosen` (their preference) when it is a
    /// shipped language, else their domain's `language`, else English.
    pub fn language_for(&self, address: &str, chosen: &str) -> crate::i18n::Lang {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        crate::i18n::Lang::parse(chosen)
            .or_else(|| self.domain(domain).and_then(|d| d.language.as_deref()).and_then(crate::i18n::Lang::parse))
            .unwrap_or(crate::i18n::Lang::En)
    }

    /// How the user `address` reads moat, from their preferences' `language` and `time_zone`
    /// (see [`Config::language_for`] and [`Config::time_zone_for`]).
    pub fn locale_for(&self, address: &str, language: &str, time_zone: &str) -> crate::i18n::Locale {
        crate::i18n::Locale { lang: self.language_for(address, language), zone: self.time_zone_for(address, time_zone) }
    }

    /// The key file links in emails are signed with.
    pub fn link_key_file(&self) -> PathBuf {
        self.web.as_ref().and_then(|w| w.key_file.clone()).unwrap_or_else(|| self.state_dir.join("links.key"))
    }

    /// The file holding the admin token.
    pub fn admin_token_file(&self) -> PathBuf {
        self.admin.as_ref().and_then(|a| a.token_file.clone()).unwrap_or_else(|| self.state_dir.join("admin.token"))
    }

    /// The From address of the emails moat sends.
    pub fn notice_from(&self) -> String {
        self.notices.from.clone().unwrap_or_else(|| format!("postmaster@{}", self.hostname))
    }

    /// The SQLite database file of the store.
    pub fn store_path(&self) -> PathBuf {
        self.store.path.clone().unwrap_or_else(|| self.state_dir.join("moat.db"))
    }

    /// The key file of the quarantine vault.
    pub fn vault_key_file(&self) -> PathBuf {
        self.store.key_file.clone().unwrap_or_else(|| self.state_dir.join("vault.key"))
    }

    /// The control socket `moat queue` talks to.
    pub fn control_socket(&self) -> PathBuf {
        self.state_dir.join("control.sock")
    }
}
