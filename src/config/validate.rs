//! Loading and validating a configuration file, reporting every error at once with its location.
//!
//! The file is parsed once with error recovery (all syntax errors), then every top-level section
//! and every `[[listen]]` / `[[domain]]` entry is deserialized on its own, so one bad entry does not
//! hide the errors of the next. Semantic checks (references between sections, files that must
//! exist) run only on a file that parsed, and are reported against the key they concern.

use super::{
    Attachments, Auth, Clamav, Config, Delivery, Dns, Domain, DomainLists, Limits, ListZone, Listener, Lists, PolicyConfig, RecipientCheck,
    Reputation, Route, Rules, StoreBackend, StoreConfig, Timeouts, TlsFiles, TlsPolicy, UserLists, check_thresholds,
};
use crate::lists::Entry;
use crate::smtp::address::is_domain_name;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// The longest `[[domain]] display_name`, in characters (it heads every user page and digest).
const MAX_DISPLAY_NAME: usize = 80;

/// One problem in a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column; 0 when the error concerns the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// Reads and validates `path`. Either the whole configuration or every error found.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![ConfigError { file: name.clone(), line: 0, column: 0, message: format!("cannot read: {e}") }])?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&name, &text, base)
}

/// Validates configuration text. `base` is the directory relative paths are resolved against.
pub fn load_str(name: &str, text: &str, base: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut report = Report { name, text, errors: Vec::new() };
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    for error in syntax_errors {
        report.toml_error(&error);
    }
    if !report.errors.is_empty() {
        return Err(report.errors);
    }
    check_sections(&mut report, document.get_ref());
    if !report.errors.is_empty() {
        return Err(report.errors);
    }
    let mut config = match Config::deserialize(toml::de::Deserializer::from(document.clone())) {
        Ok(config) => config,
        Err(error) => {
            report.toml_error(&error);
            return Err(report.errors);
        }
    };
    resolve_paths(&mut config, base);
    check_semantics(&mut report, &config, document.get_ref());
    if report.errors.is_empty() { Ok(config) } else { Err(report.errors) }
}

struct Report<'a> {
    name: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = match span {
            Some(span) => line_column(self.text, span.start),
            None => (0, 0),
        };
        self.errors.push(ConfigError { file: self.name.to_string(), line, column, message: message.into() });
    }

    fn toml_error(&mut self, error: &toml::de::Error) {
        let message = error.message().trim().to_string();
        self.at(error.span(), message);
    }

    /// Deserializes one value on its own, recording its error if any.
    /// Errors without a location of their own (e.g. from a `try_from` conversion) get the value's.
    fn section<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().or_else(|| Some(value.span()));
                self.at(span, e.message().trim().to_string());
                None
            }
        }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "hostname",
    "state_dir",
    "listen",
    "tls",
    "limits",
    "timeouts",
    "downstream",
    "domain",
    "delivery",
    "dns",
    "reputation",
    "lists",
    "policy",
    "auth",
    "rules",
    "clamav",
    "attachments",
    "store",
    "classifier",
    "greylist",
    "rate_limits",
    "web",
    "notices",
    "digest",
    "metrics",
    "admin",
];

/// Deserializes every section and every array entry separately so that all errors surface.
fn check_sections(report: &mut Report<'_>, document: &DeTable<'_>) {
    for (key, value) in document.iter() {
        match key.get_ref().as_ref() {
            "hostname" => drop(report.section::<String>(value)),
            "state_dir" => drop(report.section::<std::path::PathBuf>(value)),
            "tls" => drop(report.section::<TlsFiles>(value)),
            "limits" => drop(report.section::<Limits>(value)),
            "timeouts" => drop(report.section::<Timeouts>(value)),
            "downstream" => drop(report.section::<Route>(value)),
            "delivery" => drop(report.section::<Delivery>(value)),
            "dns" => drop(report.section::<Dns>(value)),
            "policy" => drop(report.section::<PolicyConfig>(value)),
            "auth" => drop(report.section::<Auth>(value)),
            "rules" => drop(report.section::<Rules>(value)),
            "clamav" => drop(report.section::<Clamav>(value)),
            "attachments" => drop(report.section::<Attachments>(value)),
            "store" => drop(report.section::<StoreConfig>(value)),
            "classifier" => drop(report.section::<super::Classifier>(value)),
            "greylist" => drop(report.section::<super::Greylist>(value)),
            "rate_limits" => drop(report.section::<super::RateLimits>(value)),
            "web" => drop(report.section::<super::Web>(value)),
            "notices" => drop(report.section::<super::Notices>(value)),
            "digest" => drop(report.section::<super::Digest>(value)),
            "metrics" => drop(report.section::<super::Metrics>(value)),
            "admin" => drop(report.section::<super::Admin>(value)),
            "listen" => each_entry::<Listener>(report, value, "listen"),
            "domain" => each_entry::<Domain>(report, value, "domain"),
            "reputation" => check_reputation(report, value),
            "lists" => check_lists(report, value),
            other => report.at(Some(key.span()), format!("unknown key `{other}`, expected one of {}", TOP_LEVEL_KEYS.join(", "))),
        }
    }
    for required in ["hostname", "downstream"] {
        if !document.iter().any(|(k, _)| k.get_ref().as_ref() == required) {
            report.at(None, format!("missing required key `{required}`"));
        }
    }
}

fn each_entry<T: DeserializeOwned>(report: &mut Report<'_>, value: &Spanned<DeValue<'_>>, key: &str) {
    match value.get_ref() {
        DeValue::Array(entries) => {
            for entry in entries.iter() {
                let _ = report.section::<T>(entry);
            }
        }
        _ => report.at(Some(value.span()), format!("`{key}` must be an array of tables: write [[{key}]]")),
    }
}

/// Every element of an array deserialized on its own.
fn each_item<T: DeserializeOwned>(report: &mut Report<'_>, value: &Spanned<DeValue<'_>>, what: &str) {
    match value.get_ref() {
        DeValue::Array(items) => {
            for item in items.iter() {
                let _ = report.section::<T>(item);
            }
        }
        _ => report.at(Some(value.span()), format!("`{what}` must be an array")),
    }
}

/// Checks the keys in `split` of a table with `check` (entry by entry), then deserializes the
/// rest of the table as `T`, so that one bad entry neither hides nor duplicates other errors.
/// Only for tables whose `split` keys all have defaults.
fn split_table<T: DeserializeOwned>(
    report: &mut Report<'_>,
    value: &Spanned<DeValue<'_>>,
    split: &[&str],
    mut check: impl FnMut(&mut Report<'_>, &str, &Spanned<DeValue<'_>>),
) {
    let DeValue::Table(table) = value.get_ref() else {
        let _ = report.section::<T>(value);
        return;
    };
    for (key, item) in table.iter() {
        if split.contains(&key.get_ref().as_ref()) {
            check(report, key.get_ref().as_ref(), item);
        }
    }
    let mut rest = DeTable::new();
    for (key, item) in table.iter() {
        if !split.contains(&key.get_ref().as_ref()) {
            rest.insert(key.clone(), item.clone());
        }
    }
    let _ = report.section::<T>(&Spanned::new(value.span(), DeValue::Table(rest)));
}

fn check_reputation(report: &mut Report<'_>, value: &Spanned<DeValue<'_>>) {
    split_table::<Reputation>(report, value, &["dnsbl", "dnswl", "uribl"], |report, key, zones| {
        each_item::<ListZone>(report, zones, &format!("reputation.{key}"));
    });
}

/// `[lists]`: every entry of every allow/block list is parsed on its own (file:line for each).
fn check_lists(report: &mut Report<'_>, value: &Spanned<DeValue<'_>>) {
    fn entries(report: &mut Report<'_>, key: &str, value: &Spanned<DeValue<'_>>) {
        each_item::<Entry>(report, value, key);
    }
    split_table::<Lists>(report, value, &["allow", "block", "domain", "user"], |report, key, item| match key {
        "domain" | "user" => match item.get_ref() {
            DeValue::Array(tables) => {
                for table in tables.iter() {
                    if key == "domain" {
                        split_table::<DomainLists>(report, table, &["allow", "block"], entries);
                    } else {
                        split_table::<UserLists>(report, table, &["allow", "block"], entries);
                    }
                }
            }
            _ => report.at(Some(item.span()), format!("`lists.{key}` must be an array of tables: write [[lists.{key}]]")),
        },
        _ => entries(report, key, item),
    });
}

/// Relative paths in the file are relative to the file's directory.
fn resolve_paths(config: &mut Config, base: &Path) {
    let resolve = |p: &mut std::path::PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut config.state_dir);
    if let Some(tls) = &mut config.tls {
        resolve(&mut tls.certificate);
        resolve(&mut tls.key);
    }
    if let Some(seal) = &mut config.auth.arc_seal {
        resolve(&mut seal.key_file);
    }
    if let Some(rules) = &mut config.rules {
        rules.dirs.iter_mut().chain(rules.stock_dirs.iter_mut()).for_each(resolve);
    }
    if let Some(socket) = config.clamav.as_mut().and_then(|c| c.socket.as_mut()) {
        resolve(socket);
    }
    config.domains.iter_mut().filter_map(|d| d.logo.as_mut()).for_each(resolve);
    config.store.path.as_mut().map(resolve);
    config.store.key_file.as_mut().map(resolve);
    let mut routes: Vec<&mut Route> = vec![&mut config.downstream];
    routes.extend(config.domains.iter_mut().filter_map(|d| d.route.as_mut()));
    routes.extend(config.delivery.dsn_route.as_mut());
    for route in routes {
        if let Some(ca) = &mut route.ca_file {
            resolve(ca);
        }
    }
}

/// The span of `document[path…]`, or of its `index`th entry when it is an array.
fn span_at(document: &DeTable<'_>, path: &[&str], index: Option<usize>) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let mut value = document.iter().find(|(k, _)| k.get_ref().as_ref() == *first)?.1;
    for key in rest {
        let DeValue::Table(table) = value.get_ref() else { return None };
        value = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key)?.1;
    }
    match (index, value.get_ref()) {
        (Some(i), DeValue::Array(entries)) => entries.get(i).map(|e| e.span()),
        _ => Some(value.span()),
    }
}

/// The span of `document[key]`, or of its `index`th entry when it is an array.
fn span_of(document: &DeTable<'_>, key: &str, index: Option<usize>) -> Option<Range<usize>> {
    let (_, value) = document.iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
    match (index, value.get_ref()) {
        (Some(i), DeValue::Array(entries)) => entries.get(i).map(|e| e.span()),
        _ => Some(value.span()),
    }
}

fn check_semantics(report: &mut Report<'_>, config: &Config, document: &DeTable<'_>) {
    if !is_domain_name(&config.hostname) {
        report.at(span_of(document, "hostname", None), format!("hostname {:?} is not a domain name", config.hostname));
    }
    if config.listen.is_empty() {
        report.at(None, "no [[listen]] entries: moat would not accept any mail");
    }
    for (i, listener) in config.listen.iter().enumerate() {
        if listener.starttls && config.tls.is_none() {
            report.at(
                span_of(document, "listen", Some(i)),
                format!("listener {} offers STARTTLS but there is no [tls] section (set starttls = false or add [tls])", listener.address),
            );
        }
        if config.listen[..i].iter().any(|l| l.address == listener.address) {
            report.at(span_of(document, "listen", Some(i)), format!("listener {} is listed twice", listener.address));
        }
    }
    if let Some(tls) = &config.tls {
        for (what, path) in [("certificate", &tls.certificate), ("key", &tls.key)] {
            if !path.is_file() {
                report.at(span_of(document, "tls", None), format!("tls {what} {} does not exist", path.display()));
            }
        }
    }
    if let Err(problem) = crate::i18n::check() {
        report.at(None, format!("the built-in language catalog {problem}"));
    }
    if config.domains.is_empty() {
        report.at(None, "no [[domain]] entries: moat would refuse every recipient");
    }
    for (i, domain) in config.domains.iter().enumerate() {
        let span = span_of(document, "domain", Some(i));
        if !is_domain_name(&domain.name) {
            report.at(span.clone(), format!("domain name {:?} is not a domain name", domain.name));
        }
        if config.domains[..i].iter().any(|d| d.name.eq_ignore_ascii_case(&domain.name)) {
            report.at(span.clone(), format!("domain {} is listed twice", domain.name));
        }
        let needs_list = matches!(domain.recipient_check, RecipientCheck::List | RecipientCheck::ListThenCallout);
        if needs_list && domain.recipients.is_empty() {
            report.at(span.clone(), format!("domain {}: recipient_check needs a `recipients` list", domain.name));
        }
        for address in &domain.recipients {
            let in_domain = address.rsplit_once('@').is_some_and(|(local, d)| !local.is_empty() && d.eq_ignore_ascii_case(&domain.name));
            if !in_domain {
                report.at(span.clone(), format!("domain {}: recipient {address:?} is not an address in this domain", domain.name));
            }
        }
        if let Some(name) = &domain.display_name
            && (name.trim().is_empty() || name.chars().count() > MAX_DISPLAY_NAME || name.chars().any(char::is_control))
        {
            report.at(
                span.clone(),
                format!("domain {}: display_name must be 1 to {MAX_DISPLAY_NAME} characters, without control characters", domain.name),
            );
        }
        if let Some(logo) = &domain.logo
            && let Err(problem) = super::read_logo(logo)
        {
            report.at(span.clone(), format!("domain {}: logo {}: {problem}", domain.name, logo.display()));
        }
        if let Some(language) = &domain.language
            && crate::i18n::Lang::parse(language).is_none()
        {
            report.at(
                span.clone(),
                format!("domain {}: language {language:?} is not one moat ships ({})", domain.name, crate::i18n::Lang::codes()),
            );
        }
        if !matches!(domain.unknown_user_code, 450 | 550) {
            report.at(span.clone(), format!("domain {}: unknown_user_code must be 450 or 550", domain.name));
        }
        let (tag_at, quarantine_at, reject_at) = config.policy.thresholds(domain.policy.as_ref());
        if let Some(problem) = check_thresholds(tag_at, quarantine_at, reject_at) {
            report.at(span.clone(), format!("domain {}: policy {problem}", domain.name));
        }
        if let Some(problem) = super::schedule::Schedule::of(&config.digest_for(&domain.name)).err() {
            report.at(span.clone(), format!("domain {}: digest {problem}", domain.name));
        }
        if let Some(route) = &domain.route {
            check_route(report, route, span);
        }
    }
    if let Some(problem) = super::schedule::Schedule::of(&config.digest).err() {
        report.at(span_of(document, "digest", None), format!("digest: {problem}"));
    }
    check_route(report, &config.downstream, span_of(document, "downstream", None));
    let limits_span = span_of(document, "limits", None);
    let l = &config.limits;
    if l.max_line_length < 512 {
        report.at(limits_span.clone(), "limits.max_line_length must be at least 512 (RFC 5321 §4.5.3.1.4)");
    }
    if l.max_recipients < 1 || l.max_message_size < 1024 || l.max_connections < 1 || l.max_connections_per_ip < 1 {
        report.at(
            limits_span,
            "limits: max_recipients, max_connections and max_connections_per_ip must be at least 1, max_message_size at least 1024",
        );
    }
    if !(0.0..=1.0).contains(&l.stress_threshold) {
        report.at(span_of(document, "limits", None), "limits.stress_threshold must be between 0 (off) and 1");
    }
    let d = &config.delivery;
    let delivery_span = span_of(document, "delivery", None);
    if d.concurrency < 1 || d.max_messages_per_connection < 1 {
        report.at(delivery_span.clone(), "delivery.concurrency and delivery.max_messages_per_connection must be at least 1");
    }
    if d.retry_initial.0 < 1 || d.retry_max < d.retry_initial {
        report.at(delivery_span.clone(), "delivery.retry_initial must be at least 1s and at most retry_max");
    }
    if let Some(route) = &d.dsn_route {
        check_route(report, route, delivery_span);
    }
    let p = &config.policy;
    if let Some(problem) = check_thresholds(p.tag_at, p.quarantine_at, p.reject_at) {
        report.at(span_of(document, "policy", None), format!("policy {problem}"));
    }
    if let Some(rules) = &config.rules {
        let span = span_of(document, "rules", None);
        match rules.dirs.first() {
            None => report.at(span, "rules.dirs is empty: list at least the shipped rule directory"),
            Some(first) if !first.is_dir() => {
                report.at(span, format!("rules.dirs: the first directory {} (the shipped rules) does not exist", first.display()))
            }
            Some(_) => {}
        }
    }
    if config.dns.timeout.0 < 1 || config.dns.attempts < 1 {
        report.at(span_of(document, "dns", None), "dns.timeout must be at least 1s and dns.attempts at least 1");
    }
    check_reputation_semantics(report, config, document);
    check_lists_semantics(report, config, document);
    check_auth(report, &config.auth, span_of(document, "auth", None));
    if let Some(clamav) = &config.clamav {
        check_clamav(report, clamav, span_of(document, "clamav", None));
    }
    check_attachments(report, &config.attachments, span_of(document, "attachments", None));
    check_store(report, &config.store, span_of(document, "store", None));
    check_deferral(report, config, document);
    check_classifier(report, &config.classifier, span_of(document, "classifier", None));
    check_web(report, config, document);
}

fn check_deferral(report: &mut Report<'_>, config: &Config, document: &DeTable<'_>) {
    let greylist = &config.greylist;
    if greylist.delay.0 < 1 || greylist.lifetime.0 <= greylist.delay.0 {
        report.at(span_of(document, "greylist", None), "greylist: delay must be at least 1s and lifetime longer than delay");
    }
    if config.rate_limits.window.0 < 1 {
        report.at(span_of(document, "rate_limits", None), "rate_limits.window must be at least 1s");
    }
}

fn check_classifier(report: &mut Report<'_>, classifier: &super::Classifier, at: Option<Range<usize>>) {
    let bits = super::CLASSIFIER_TABLE_BITS;
    if !bits.contains(&classifier.table_bits) {
        report.at(at.clone(), format!("classifier.table_bits must be {}..={} (2^23 buckets is 64 MiB)", bits.start(), bits.end()));
    }
    if classifier.sync.0 < 1 {
        report.at(at.clone(), "classifier.sync must be at least 1s");
    }
    if classifier.report_local_part.contains(['@', ' ', '<', '>']) {
        report.at(at.clone(), "classifier.report_local_part is the part before the @, e.g. \"spam\"");
    }
    for network in &classifier.report_networks {
        if !matches!(crate::lists::Cidr::parse(network), Ok(Some(_))) {
            report.at(at.clone(), format!("classifier.report_networks: {network:?} is not an IP address or network"));
        }
    }
    if classifier.autolearn && classifier.autolearn_ham_at >= classifier.autolearn_spam_at {
        report.at(at, "classifier.autolearn_ham_at must be below autolearn_spam_at");
    }
}

fn check_web(report: &mut Report<'_>, config: &Config, document: &DeTable<'_>) {
    if let Some(web) = &config.web {
        let url = web.public_url.trim_end_matches('/');
        let scheme_ok = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).is_some_and(|rest| !rest.is_empty());
        if !scheme_ok || url.contains(char::is_whitespace) {
            report.at(span_of(document, "web", None), format!("web.public_url {:?} must be an http:// or https:// URL", web.public_url));
        }
        if web.link_lifetime.0 < 3600 {
            report.at(span_of(document, "web", None), "web.link_lifetime must be at least 1h");
        }
    }
    if let Some(from) = &config.notices.from
        && crate::smtp::address::check_sender(from, false).is_err()
    {
        report.at(span_of(document, "notices", None), format!("notices.from {from:?} is not a mail address"));
    }
}

/// The longest a clamd scan may be given: below the filter deadline, so a slow clamd is a
/// `CLAMAV_FAIL` with the configured stance rather than a generic filter timeout.
const MAX_CLAMAV_DEADLINE: u64 = 25;

fn check_clamav(report: &mut Report<'_>, clamav: &Clamav, span: Option<Range<usize>>) {
    match (&clamav.address, &clamav.socket) {
        (Some(_), Some(_)) => report.at(span.clone(), "clamav: set either `address` or `socket`, not both"),
        (None, None) => {
            report.at(span.clone(), "clamav: set `address` (e.g. \"127.0.0.1:3310\") or `socket` (e.g. \"/run/clamav/clamd.ctl\")")
        }
        _ => {}
    }
    if clamav.connect_timeout.0 < 1 || clamav.scan_timeout.0 < 1 {
        report.at(span.clone(), "clamav.connect_timeout and clamav.scan_timeout must be at least 1s");
    }
    if clamav.connect_timeout.0.saturating_add(clamav.scan_timeout.0) > MAX_CLAMAV_DEADLINE {
        report.at(
            span.clone(),
            format!("clamav: connect_timeout + scan_timeout must be at most {MAX_CLAMAV_DEADLINE}s (below the 30s filter deadline)"),
        );
    }
    if clamav.max_concurrent < 1 {
        report.at(span, "clamav.max_concurrent must be at least 1");
    }
}

fn check_attachments(report: &mut Report<'_>, attachments: &Attachments, span: Option<Range<usize>>) {
    for extension in &attachments.blocked_extensions {
        let ok =
            !extension.is_empty() && extension.len() <= 32 && extension.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            report.at(
                span.clone(),
                format!("attachments.blocked_extensions: {extension:?} is not an extension (letters and digits, without the dot)"),
            );
        }
    }
    for mime in &attachments.blocked_types {
        let ok = mime.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| !x.is_empty() && x.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c));
            token(t) && (s == "*" || token(s))
        });
        if !ok {
            report.at(
                span.clone(),
                format!("attachments.blocked_types: {mime:?} is not a MIME type such as \"application/x-msdownload\" or \"application/*\""),
            );
        }
    }
    if attachments.max_depth < 1 || attachments.max_parts < 1 {
        report.at(span, "attachments.max_depth and attachments.max_parts must be at least 1");
    }
}

fn check_store(report: &mut Report<'_>, store: &StoreConfig, span: Option<Range<usize>>) {
    match store.backend {
        StoreBackend::Sqlite => {
            if store.url.is_some() {
                report.at(span.clone(), "store.url only applies with backend = \"postgres\"");
            }
        }
        StoreBackend::Postgres => {
            if store.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
                report.at(span.clone(), "store: backend = \"postgres\" needs a connection string in store.url");
            }
            if store.path.is_some() {
                report.at(span.clone(), "store.path only applies with backend = \"sqlite\"");
            }
        }
    }
    if store.retention.0 < 3600 {
        report.at(span, "store.retention must be at least 1h");
    }
}

/// Most URL domains one message may cost in URI-list lookups.
const MAX_URI_DOMAINS: usize = 100;

fn check_reputation_semantics(report: &mut Report<'_>, config: &Config, document: &DeTable<'_>) {
    let r = &config.reputation;
    for (key, zones) in [("dnsbl", &r.dnsbl), ("dnswl", &r.dnswl), ("uribl", &r.uribl)] {
        for (i, zone) in zones.iter().enumerate() {
            let span = span_at(document, &["reputation", key], Some(i));
            let name = zone.zone.trim_end_matches('.');
            if !name.contains('.') || !is_domain_name(name) {
                report.at(span.clone(), format!("reputation.{key}: zone {:?} is not a domain name", zone.zone));
            }
            if zones[..i].iter().any(|z| z.zone.trim_end_matches('.').eq_ignore_ascii_case(name)) {
                report.at(span.clone(), format!("reputation.{key}: zone {name} is listed twice"));
            }
            for symbol in std::iter::once(&zone.symbol).chain(zone.codes.values()) {
                if !is_symbol_name(symbol) {
                    report
                        .at(span.clone(), format!("reputation.{key} {name}: symbol {symbol:?} must be SCREAMING_SNAKE_CASE (A-Z, 0-9, _)"));
                }
            }
            for code in zone.codes.keys() {
                let [a, b, c, _] = code.octets();
                if a != 127 || (b == 255 && c == 255) {
                    report.at(span.clone(), format!("reputation.{key} {name}: code {code} is a refusal (outside 127.0.0.0/8 or in 127.255.255.0/24) and is never scored"));
                }
            }
        }
    }
    if r.max_uri_domains > MAX_URI_DOMAINS {
        report.at(
            span_at(document, &["reputation", "max_uri_domains"], None),
            format!("reputation.max_uri_domains must be at most {MAX_URI_DOMAINS}"),
        );
    }
}

fn check_lists_semantics(report: &mut Report<'_>, config: &Config, document: &DeTable<'_>) {
    let lists = &config.lists;
    for (i, domain) in lists.domain.iter().enumerate() {
        let span = span_at(document, &["lists", "domain"], Some(i));
        if config.domain(&domain.name.to_ascii_lowercase()).is_none() {
            report.at(span.clone(), format!("lists.domain {:?} is not one of the [[domain]] entries", domain.name));
        }
        if lists.domain[..i].iter().any(|d| d.name.eq_ignore_ascii_case(&domain.name)) {
            report.at(span, format!("lists.domain {} is listed twice", domain.name));
        }
    }
    for (i, user) in lists.user.iter().enumerate() {
        let span = span_at(document, &["lists", "user"], Some(i));
        let relayed = user
            .address
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && config.domain(&domain.to_ascii_lowercase()).is_some());
        if !relayed {
            report.at(span.clone(), format!("lists.user {:?} is not an address in one of the [[domain]] entries", user.address));
        }
        if lists.user[..i].iter().any(|u| u.address.eq_ignore_ascii_case(&user.address)) {
            report.at(span, format!("lists.user {} is listed twice", user.address));
        }
    }
}

/// A symbol name as the score tables write it: `RCVD_IN_ZEN_SBL`.
fn is_symbol_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn check_auth(report: &mut Report<'_>, auth: &Auth, span: Option<Range<usize>>) {
    if auth.timeout.0 < 1 {
        report.at(span.clone(), "auth.timeout must be at least 1s");
    }
    if let Some(id) = &auth.authserv_id
        && !is_domain_name(id)
    {
        report.at(span.clone(), format!("auth.authserv_id {id:?} is not a domain name"));
    }
    if let Some(seal) = &auth.arc_seal {
        if !is_domain_name(&seal.domain) {
            report.at(span.clone(), format!("auth.arc_seal.domain {:?} is not a domain name", seal.domain));
        }
        if !is_domain_name(&seal.selector) {
            report.at(span.clone(), format!("auth.arc_seal.selector {:?} is not a valid selector", seal.selector));
        }
        if let Err(error) = crate::keys::load_seal_key(&seal.key_file) {
            report.at(span, error.to_string());
        }
    }
}

fn check_route(report: &mut Report<'_>, route: &Route, span: Option<Range<usize>>) {
    if route.host.is_empty() {
        report.at(span.clone(), "route host is empty");
    }
    if route.port == 0 {
        report.at(span.clone(), "route port 0 is not a port");
    }
    if route.tls != TlsPolicy::Required && (route.ca_file.is_some() || route.tls_name.is_some()) {
        report.at(span.clone(), "ca_file and tls_name only apply with tls = \"required\"");
    }
    if let Some(ca) = &route.ca_file
        && !ca.is_file()
    {
        report.at(span, format!("ca_file {} does not exist", ca.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
hostname = "mx.example.test"
state_dir = "state"
[[listen]]
address = "127.0.0.1:2525"
starttls = false
[downstream]
host = "127.0.0.1"
port = 2526
tls = "none"
[[domain]]
name = "example.test"
"#;

    fn check(text: &str) -> Result<Config, Vec<ConfigError>> {
        load_str("moat.toml", text, Path::new("/etc/moat"))
    }

    #[test]
    fn good_config_loads_with_defaults_and_resolved_paths() {
        let config = check(GOOD).unwrap();
        assert_eq!(config.limits.max_recipients, 100);
        assert_eq!(config.state_dir, Path::new("/etc/moat/state"));
        assert_eq!(config.route_for("EXAMPLE.test").port, 2526);
    }

    #[test]
    fn a_domain_is_named_to_its_users_by_its_display_name() {
        let config = check(&GOOD.replace("[[domain]]\n", "[[domain]]\ndisplay_name = \"Example ISP\"\n")).unwrap();
        assert_eq!(config.display_name_for("alice@EXAMPLE.test"), "Example ISP");
        assert_eq!(config.display_name_for("bob@elsewhere.test"), "elsewhere.test");
        for bad in ["\"\"", "\"  \"", "\"a\\u0007b\"", &format!("\"{}\"", "x".repeat(81))] {
            let errors = check(&GOOD.replace("[[domain]]\n", &format!("[[domain]]\ndisplay_name = {bad}\n"))).unwrap_err();
            assert!(errors[0].message.contains("display_name must be"), "{bad}: {errors:#?}");
        }
    }

    #[test]
    fn a_domain_names_its_users_language_from_the_shipped_ones() {
        use crate::i18n::Lang;
        let config = check(&GOOD.replace("[[domain]]\n", "[[domain]]\nlanguage = \"DE\"\n")).unwrap();
        assert_eq!(config.language_for("alice@EXAMPLE.test", ""), Lang::De, "the domain's");
        assert_eq!(config.language_for("alice@example.test", "en"), Lang::En, "the user's choice first");
        assert_eq!(config.language_for("alice@example.test", "xx"), Lang::De, "a choice not shipped counts as none");
        assert_eq!(config.language_for("bob@elsewhere.test", ""), Lang::En, "English by default");
        assert_eq!(check(GOOD).unwrap().language_for("alice@example.test", ""), Lang::En);
        let text = GOOD.replace("[[domain]]\n", "[[domain]]\nlanguage = \"fr\"\n");
        let errors = check(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].to_string().contains("domain example.test: language \"fr\" is not one moat ships (en, de)"), "{errors:#?}");
        let line = text.lines().position(|l| l == "[[domain]]").unwrap() + 1;
        assert!(errors[0].to_string().starts_with(&format!("moat.toml:{line}:")), "with the domain's line: {}", errors[0]);
    }

    #[test]
    fn clamav_and_attachments_load_with_defaults() {
        let config = check(GOOD).unwrap();
        assert!(config.clamav.is_none(), "no [clamav]: nothing is scanned");
        assert!(config.attachments.enabled && config.attachments.scan_archives);
        assert!(config.attachments.blocked_extensions.iter().any(|e| e == "exe"));
        let config = check(&format!("{GOOD}[clamav]\nsocket = \"run/clamd.ctl\"\nfailure = \"fail_open\"\n[attachments]\nblocked_extensions = [\"exe\"]\nblocked_types = [\"application/*\"]\nmax_parts = 50\n")).unwrap();
        let clamav = config.clamav.unwrap();
        assert_eq!(clamav.socket.as_deref(), Some(Path::new("/etc/moat/run/clamd.ctl")));
        assert_eq!(
            (clamav.failure, clamav.scan_timeout, clamav.max_concurrent),
            (crate::config::Stance::FailOpen, super::super::Seconds(20), 8)
        );
        assert_eq!(config.attachments.blocked_extensions, ["exe"]);
        assert_eq!((config.attachments.max_parts, config.attachments.max_depth), (50, 10));
        let clamav = check(&format!("{GOOD}[clamav]\naddress = \"127.0.0.1:3310\"\n")).unwrap().clamav.unwrap();
        assert_eq!(clamav.failure, crate::config::Stance::FailClosed, "fail closed by default");
    }

    #[test]
    fn clamav_and_attachments_errors_are_all_reported() {
        let errors =
            check(&format!("{GOOD}[clamav]\nadress = \"127.0.0.1:3310\"\nfailure = \"maybe\"\n[attachments]\nmax_part = 3\n")).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("adress") && all.contains("max_part"), "{all}");
        assert!(errors.iter().all(|e| e.line > 0), "{all}");
        let text = format!(
            "{GOOD}[clamav]\naddress = \"127.0.0.1:3310\"\nsocket = \"/run/c.sock\"\nscan_timeout = \"30s\"\nmax_concurrent = 0\n\
             [attachments]\nblocked_extensions = [\".exe\", \"ok\"]\nblocked_types = [\"exe\"]\nmax_depth = 0\n"
        );
        let errors = check(&text).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        for needle in ["not both", "at most 25s", "max_concurrent", "\".exe\"", "\"exe\" is not a MIME type", "max_depth"] {
            assert!(all.contains(needle), "{needle}: {all}");
        }
        assert_eq!(errors.len(), 6, "{all}");
        let errors = check(&format!("{GOOD}[clamav]\nfailure = \"fail_open\"\n")).unwrap_err();
        assert!(errors[0].message.contains("set `address`"), "{errors:#?}");
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let text = GOOD.replace("port = 2526", "port = \"x\"").replace("starttls = false", "starttls = false\nbogus = 1")
            + "[limits]\nmax_recipients = -3\n[[domain]]\nname = \"b.test\"\nrecipient_chek = \"list\"\n";
        let errors = check(&text).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert!(lines.contains(&7), "unknown listener key on line 7: {errors:#?}");
        assert!(errors.iter().all(|e| e.file == "moat.toml" && e.line > 0));
        assert!(errors.iter().any(|e| e.message.contains("recipient_chek")));
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = GOOD
            .replace("starttls = false", "starttls = true")
            .replace("name = \"example.test\"", "name = \"bad_name.\"\nrecipient_check = \"list\"");
        let errors = check(&text).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("STARTTLS"), "{all}");
        assert!(all.contains("not a domain name"), "{all}");
        assert!(all.contains("needs a `recipients` list"), "{all}");
    }

    #[test]
    fn stress_settings_are_checked_and_cut_the_deadlines_only_under_stress() {
        let errors = check(&format!("{GOOD}[limits]\nstress_threshold = 1.5\n")).unwrap_err();
        assert!(errors[0].message.contains("stress_threshold"), "{errors:?}");
        let config = check(&format!("{GOOD}[timeouts]\ncommand = \"5m\"\nstress_command = \"10s\"\nstress_pregreet = \"2s\"\n")).unwrap();
        let calm = config.timeouts.under(false);
        assert_eq!((calm.command.0, calm.pregreet.0, calm.data_block.0), (300, 0, 180));
        let stressed = config.timeouts.under(true);
        assert_eq!((stressed.command.0, stressed.pregreet.0, stressed.data_block.0), (10, 2, 30));
    }

    #[test]
    fn a_domain_logo_must_be_a_small_png_jpeg_or_gif_and_is_served_under_logo() {
        let dir = tempfile::tempdir().unwrap();
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        std::fs::write(dir.path().join("logo.png"), png).unwrap();
        std::fs::write(dir.path().join("logo.svg"), b"<svg onload=\"alert(1)\"/>").unwrap();
        std::fs::write(dir.path().join("huge.png"), [png.as_slice(), &vec![0; 300 * 1024]].concat()).unwrap();
        let with =
            |logo: &str| load_str("moat.toml", &GOOD.replace("[[domain]]\n", &format!("[[domain]]\nlogo = \"{logo}\"\n")), dir.path());
        let config = with("logo.png").unwrap();
        assert_eq!(config.domains[0].logo.as_deref(), Some(dir.path().join("logo.png").as_path()), "relative to the file");
        assert_eq!(config.logo_url_for("alice@EXAMPLE.test").as_deref(), Some("/logo/example.test"));
        assert_eq!(config.logo_url_for("bob@elsewhere.test"), None);
        for (file, problem) in [("logo.svg", "not a PNG, JPEG or GIF"), ("huge.png", "more than 262144"), ("gone.png", "No such file")] {
            let errors = with(file).unwrap_err();
            assert!(errors.len() == 1 && errors[0].message.contains(problem) && errors[0].message.contains(file), "{file}: {errors:?}");
        }
    }

    #[test]
    fn rules_dirs_are_resolved_and_the_first_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shipped")).unwrap();
        let text = format!("{GOOD}[rules]\ndirs = [\"shipped\", \"local.d\"]\n");
        let config = load_str("moat.toml", &text, dir.path()).unwrap();
        assert_eq!(config.rule_dirs(), vec![dir.path().join("shipped")], "a missing local dir is fine");
        let text = format!("{GOOD}[rules]\ndirs = [\"nope\", \"shipped\"]\n");
        let errors = load_str("moat.toml", &text, dir.path()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("does not exist") && errors[0].line == 13, "{errors:?}");
        let errors = load_str("moat.toml", &format!("{GOOD}[rules]\ndir = []\n"), dir.path()).unwrap_err();
        assert!(errors[0].message.contains("unknown field `dir`"), "{errors:?}");
        let config = check(GOOD).unwrap();
        assert!(config.rules.is_none());
    }

    #[test]
    fn stock_rule_dirs_load_first_and_only_while_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shipped")).unwrap();
        std::fs::create_dir(dir.path().join("local.d")).unwrap();
        let text = format!("{GOOD}[rules]\nstock_dirs = [\"spamassassin\", \"other\"]\ndirs = [\"shipped\", \"local.d\"]\n");
        let config = load_str("moat.toml", &text, dir.path()).unwrap();
        let (shipped, local) = (dir.path().join("shipped"), dir.path().join("local.d"));
        assert_eq!(config.rule_dirs(), vec![shipped.clone(), local.clone()], "missing stock dirs are no error and are skipped");
        std::fs::create_dir(dir.path().join("spamassassin")).unwrap();
        assert_eq!(config.rule_dirs(), vec![dir.path().join("spamassassin"), shipped, local], "installed later: loaded first");
    }

    #[test]
    fn syntax_errors_are_located() {
        let errors = check("hostname = \"a.test\"\n[downstream\nhost = 1\n").unwrap_err();
        assert!(errors[0].line == 2, "{errors:#?}");
    }

    #[test]
    fn auth_defaults_and_forced_actions() {
        use crate::config::DmarcReject;
        use crate::config::{Action, Stance};
        let config = check(GOOD).unwrap();
        assert!(config.auth.enabled);
        assert_eq!(config.auth.authserv_id("mx.example.test"), "mx.example.test");
        assert_eq!(config.auth.dmarc_reject, DmarcReject::Quarantine);
        assert_eq!(config.auth.dns_failure, Stance::FailOpen);
        assert_eq!(config.auth.timeout, crate::config::Seconds(10));
        assert!(config.auth.arc_seal.is_none());
        let forced = |text: &str| check(&format!("{GOOD}[auth]\n{text}\n")).unwrap().auth.forced_actions();
        let quarantine = ("DMARC_POLICY_QUARANTINE".to_string(), Action::Quarantine);
        assert_eq!(forced(""), [("DMARC_POLICY_REJECT".to_string(), Action::Quarantine), quarantine.clone()]);
        assert_eq!(forced("dmarc_reject = \"reject\""), [("DMARC_POLICY_REJECT".to_string(), Action::Reject), quarantine]);
        assert!(forced("dmarc_reject = \"score\"").is_empty());
        assert!(forced("enabled = false").is_empty());
        let auth = check(&format!("{GOOD}[auth]\nauthserv_id = \"auth.example.test\"\ndns_failure = \"fail_closed\"\n")).unwrap().auth;
        assert_eq!(auth.authserv_id("mx.example.test"), "auth.example.test");
        assert_eq!(auth.dns_failure, Stance::FailClosed);
    }

    #[test]
    fn auth_errors_are_located_and_name_the_key_file() {
        let errors = check(&format!("{GOOD}[auth]\ndmarc_reject = \"bounce\"\n")).unwrap_err();
        assert!(errors.len() == 1 && errors[0].line >= 14, "{errors:#?}");
        assert!(errors[0].message.contains("bounce"), "{errors:#?}");
        let errors = check(&format!("{GOOD}[auth]\nbogus = 1\n")).unwrap_err();
        assert!(errors.len() == 1 && errors[0].line >= 14, "{errors:#?}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let text = format!(
            "{GOOD}[auth]\nauthserv_id = \"not an id\"\n[auth.arc_seal]\ndomain = \"moat.test\"\nselector = \"arc\"\nkey_file = \"bad.pem\"\n"
        );
        let errors = load_str("moat.toml", &text, dir.path()).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert_eq!(errors.len(), 2, "{all}");
        assert!(all.contains("authserv_id"), "{all}");
        assert!(all.contains(&dir.path().join("bad.pem").display().to_string()), "{all}");
        assert!(errors.iter().all(|e| e.line > 0), "{all}");
        let missing = text.replace("bad.pem", "missing.pem").replace("not an id", "mx.example.test");
        let errors = load_str("moat.toml", &missing, dir.path()).unwrap_err();
        assert!(errors[0].message.contains("missing.pem") && errors[0].message.contains("cannot read"), "{errors:#?}");
    }

    #[test]
    fn arc_seal_keys_ed25519_and_rsa_load() {
        let dir = tempfile::tempdir().unwrap();
        for (name, algorithm) in [("ed.pem", &rcgen::PKCS_ED25519), ("rsa.pem", &rcgen::PKCS_RSA_SHA256)] {
            let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            std::fs::write(dir.path().join(name), key.serialize_pem()).unwrap();
            let text = format!("{GOOD}[auth.arc_seal]\ndomain = \"moat.test\"\nselector = \"arc\"\nkey_file = \"{name}\"\n");
            let config = load_str("moat.toml", &text, dir.path()).unwrap_or_else(|e| panic!("{name}: {e:#?}"));
            assert_eq!(config.auth.arc_seal.unwrap().key_file, dir.path().join(name));
        }
    }

    #[test]
    fn missing_required_keys() {
        let errors = check("[[listen]]\naddress = \"127.0.0.1:25\"\n").unwrap_err();
        let all = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("hostname") && all.contains("downstream"), "{all}");
    }

    const REPUTATION: &str = r#"
[reputation]
dnsbl = [
  { zone = "zen.spamhaus.org", symbol = "RCVD_IN_ZEN", codes = { "127.0.0.2" = "RCVD_IN_ZEN_SBL", "127.0.0.4" = "RCVD_IN_ZEN_XBL" } },
]
dnswl = [{ zone = "list.dnswl.org", symbol = "RCVD_IN_DNSWL", ignore = ["127.0.0.255"] }]
uribl = [{ zone = "dbl.spamhaus.org", symbol = "DBL", codes = { "127.0.1.2" = "DBL_SPAM" } }]
helo_nxdomain = false
max_uri_domains = 10
[lists]
allow = ["friend@partner.test", ".trusted.test", "198.51.100.0/24"]
block = ["spam.test", "2001:db8::/32"]
[[lists.domain]]
name = "example.test"
allow = ["*.partner.test"]
user_opt_out = false
[[lists.user]]
address = "Alice@example.test"
block = ["192.0.2.66"]
filtering = false
"#;

    #[test]
    fn reputation_and_lists_load() {
        let config = check(&format!("{GOOD}{REPUTATION}")).unwrap();
        let r = &config.reputation;
        assert_eq!(r.dnsbl[0].codes.get(&"127.0.0.4".parse().unwrap()).map(String::as_str), Some("RCVD_IN_ZEN_XBL"));
        assert_eq!(r.dnswl[0].ignore, ["127.0.0.255".parse::<std::net::Ipv4Addr>().unwrap()]);
        assert_eq!(r.uribl[0].symbol, "DBL");
        assert!(r.rdns && r.helo_checks && !r.helo_nxdomain);
        assert_eq!(r.max_uri_domains, 10);
        assert_eq!(config.lists.allow.len(), 3);
        assert_eq!(config.lists.domain[0].allow[0].as_str(), "*.partner.test");
        assert!(config.lists.domain[0].filtering && !config.lists.domain[0].user_opt_out);
        assert_eq!(config.lists.user[0].filtering, Some(false));
        let lists = config.lists.build();
        let hit = lists.check("x@a.partner.test", None, "bob@example.test").unwrap();
        assert_eq!((hit.symbol, hit.level), ("ALLOW_LIST", crate::lists::Level::Domain));
        assert!(lists.filtering_enabled("alice@example.test"), "the domain does not allow opting out");
    }

    #[test]
    fn reputation_defaults_are_empty_zone_lists_and_checks_on() {
        let config = check(GOOD).unwrap();
        let r = &config.reputation;
        assert!(r.dnsbl.is_empty() && r.dnswl.is_empty() && r.uribl.is_empty());
        assert!(r.rdns && r.helo_checks && r.helo_nxdomain);
        assert_eq!(r.max_uri_domains, 20);
        assert!(config.lists.allow.is_empty() && config.lists.domain.is_empty());
    }

    /// The 1-based line of the first line of `text` containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
    }

    #[test]
    fn every_bad_list_entry_is_an_error_with_its_line() {
        let text = format!(
            "{GOOD}{}",
            REPUTATION
                .replace("\"spam.test\"", "\"spam_test\", \"192.0.2.1/24\"")
                .replace("\"*.partner.test\"", "\"a*b@partner.test\"")
                .replace("block = [\"192.0.2.66\"]", "block = [\"192.0.2.66/33\"]\nfilter = true")
        );
        let errors = check(&text).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert_eq!(errors.len(), 5, "{all}");
        let at = |needle: &str| errors.iter().filter(|e| e.line == line_of(&text, needle)).count();
        assert_eq!(at("spam_test"), 2, "two bad entries on one line: {all}");
        assert_eq!(at("a*b@partner.test"), 1, "{all}");
        assert_eq!(at("192.0.2.66/33"), 1, "{all}");
        assert_eq!(at("filter = true"), 1, "unknown key in [[lists.user]] still reported: {all}");
        assert!(all.contains("host bits set"), "{all}");
        assert!(errors.iter().all(|e| e.file == "moat.toml" && e.column > 0), "{all}");
    }

    #[test]
    fn bad_reputation_sections_are_errors_with_their_lines() {
        let text = format!(
            "{GOOD}{}",
            REPUTATION
                .replace("\"127.0.0.4\" = \"RCVD_IN_ZEN_XBL\"", "\"127.0.0.4\" = \"zen xbl\", \"127.255.255.254\" = \"REFUSED\"")
                .replace("zone = \"list.dnswl.org\"", "zone = \"list.dnswl.org\", weight = 2")
                .replace("zone = \"dbl.spamhaus.org\"", "zone = \"dbl\"")
                .replace("codes = { \"127.0.1.2\"", "codes = { \"127.0.1.x\"")
                .replace("max_uri_domains = 10", "max_uri_domains = 1000\nrnds = true")
        );
        let errors = check(&text).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("weight"), "{all}");
        assert!(all.contains("rnds"), "{all}");
        assert!(all.contains("127.0.1.x") || all.contains("invalid IPv4"), "{all}");
        assert_eq!(errors.iter().filter(|e| e.line == line_of(&text, "weight = 2")).count(), 1, "{all}");
        assert_eq!(errors.iter().filter(|e| e.line == line_of(&text, "rnds")).count(), 1, "{all}");
        // Semantic errors (reported once the file parses) point at the zone's line.
        let text = format!(
            "{GOOD}{}",
            REPUTATION
                .replace("\"127.0.0.4\" = \"RCVD_IN_ZEN_XBL\"", "\"127.0.0.4\" = \"zen xbl\", \"127.255.255.254\" = \"REFUSED\"")
                .replace("zone = \"dbl.spamhaus.org\"", "zone = \"dbl\"")
                .replace("max_uri_domains = 10", "max_uri_domains = 1000")
                .replace("name = \"example.test\"\nallow", "name = \"other.test\"\nallow")
                .replace("Alice@example.test", "alice@elsewhere.test")
        );
        let errors = check(&text).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        let zen = line_of(&text, "zen.spamhaus.org");
        assert_eq!(errors.iter().filter(|e| e.line == zen).count(), 2, "bad symbol and refusal code: {all}");
        assert!(errors.iter().any(|e| e.line == line_of(&text, "zone = \"dbl\"") && e.message.contains("not a domain name")), "{all}");
        assert!(errors.iter().any(|e| e.line == line_of(&text, "max_uri_domains") && e.message.contains("at most")), "{all}");
        assert!(all.contains("other.test") && all.contains("alice@elsewhere.test"), "{all}");
        assert_eq!(errors.len(), 6, "{all}");
    }

    #[test]
    fn store_defaults_paths_and_errors() {
        use crate::config::{Seconds, StoreBackend};
        let config = check(GOOD).unwrap();
        assert_eq!(config.store.backend, StoreBackend::Sqlite);
        assert_eq!(config.store_path(), Path::new("/etc/moat/state/moat.db"));
        assert_eq!(config.vault_key_file(), Path::new("/etc/moat/state/vault.key"));
        assert_eq!(config.store.retention, Seconds(30 * 86400));
        let config = check(&format!("{GOOD}[store]\npath = \"db/q.db\"\nkey_file = \"/k/v.key\"\nretention = \"7d\"\n")).unwrap();
        assert_eq!(config.store_path(), Path::new("/etc/moat/db/q.db"));
        assert_eq!(config.vault_key_file(), Path::new("/k/v.key"));
        assert_eq!(config.store.retention, Seconds(7 * 86400));
        let config = check(&format!("{GOOD}[store]\nbackend = \"postgres\"\nurl = \"host=db user=moat\"\n")).unwrap();
        assert_eq!(config.store.backend, StoreBackend::Postgres);
        assert_eq!(config.store.url.as_deref(), Some("host=db user=moat"));
        // Every problem at once, each located at the section.
        let text = format!("{GOOD}[store]\nbackend = \"postgres\"\npath = \"x.db\"\nretention = \"10m\"\n");
        let errors = check(&text).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert_eq!(errors.len(), 3, "{all}");
        assert!(all.contains("needs a connection string") && all.contains("store.path only") && all.contains("at least 1h"), "{all}");
        assert!(errors.iter().all(|e| e.line == line_of(&text, "[store]")), "{all}");
        let errors = check(&format!("{GOOD}[store]\nurl = \"host=db\"\nbackend = \"mysql\"\nbogus = 1\n")).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("mysql") || all.contains("bogus"), "{all}");
        assert!(errors.iter().all(|e| e.line > 0), "{all}");
        let errors = check(&format!("{GOOD}[store]\nurl = \"host=db\"\n")).unwrap_err();
        assert!(errors[0].message.contains("store.url only applies"), "{errors:?}");
    }

    #[test]
    fn the_shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/moat.toml");
        let config = load(&path).unwrap_or_else(|errors| panic!("{errors:#?}"));
        assert!(config.reputation.rdns && config.lists.allow.is_empty());
        // The commented-out zones and lists are valid too.
        let text = std::fs::read_to_string(&path).expect("example");
        let keys = ["dnsbl", "dnswl", "uribl", "  {", "]", "[[lists", "name", "allow", "block", "filtering", "user_opt_out", "address"];
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => format!("{rest}\n"),
                _ => format!("{line}\n"),
            })
            .collect();
        let config = load_str("moat.toml", &uncommented, path.parent().expect("dir")).unwrap_or_else(|errors| panic!("{errors:#?}"));
        assert_eq!(config.reputation.dnsbl[0].codes.len(), 5);
        assert_eq!(config.lists.user[0].address, "alice@example.test");
    }
}
