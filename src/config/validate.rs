//! Loading and validating a configuration file, reporting every error at once with its location.
//!
//! The file is parsed once with error recovery (all syntax errors), then every top-level section
//! and every `[[listen]]` / `[[domain]]` entry is deserialized on its own, so one bad entry does not
//! hide the errors of the next. Semantic checks (references between sections, files that must
//! exist) run only on a file that parsed, and are reported against the key they concern.

use super::{Config, Delivery, Dns, Domain, Limits, Listener, RecipientCheck, Route, Rules, Timeouts, TlsFiles, TlsPolicy};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

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
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError { file: name.clone(), line: 0, column: 0, message: format!("cannot read: {e}") }]
    })?;
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
    fn section<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                self.toml_error(&e);
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

const TOP_LEVEL_KEYS: &[&str] =
    &["hostname", "state_dir", "listen", "tls", "limits", "timeouts", "downstream", "domain", "delivery", "dns", "rules"];

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
            "rules" => drop(report.section::<Rules>(value)),
            "listen" => each_entry::<Listener>(report, value, "listen"),
            "domain" => each_entry::<Domain>(report, value, "domain"),
            other => report.at(
                Some(key.span()),
                format!("unknown key `{other}`, expected one of {}", TOP_LEVEL_KEYS.join(", ")),
            ),
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
    if let Some(rules) = &mut config.rules {
        rules.dirs.iter_mut().for_each(resolve);
    }
    let mut routes: Vec<&mut Route> = vec![&mut config.downstream];
    routes.extend(config.domains.iter_mut().filter_map(|d| d.route.as_mut()));
    routes.extend(config.delivery.dsn_route.as_mut());
    for route in routes {
        if let Some(ca) = &mut route.ca_file {
            resolve(ca);
        }
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
            let in_domain = address
                .rsplit_once('@')
                .is_some_and(|(local, d)| !local.is_empty() && d.eq_ignore_ascii_case(&domain.name));
            if !in_domain {
                report.at(span.clone(), format!("domain {}: recipient {address:?} is not an address in this domain", domain.name));
            }
        }
        if !matches!(domain.unknown_user_code, 450 | 550) {
            report.at(span.clone(), format!("domain {}: unknown_user_code must be 450 or 550", domain.name));
        }
        if let Some(route) = &domain.route {
            check_route(report, route, span);
        }
    }
    check_route(report, &config.downstream, span_of(document, "downstream", None));
    let limits_span = span_of(document, "limits", None);
    let l = &config.limits;
    if l.max_line_length < 512 {
        report.at(limits_span.clone(), "limits.max_line_length must be at least 512 (RFC 5321 §4.5.3.1.4)");
    }
    if l.max_recipients < 1 || l.max_message_size < 1024 || l.max_connections < 1 || l.max_connections_per_ip < 1 {
        report.at(limits_span, "limits: max_recipients, max_connections and max_connections_per_ip must be at least 1, max_message_size at least 1024");
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
    if let Some(rules) = &config.rules {
        let span = span_of(document, "rules", None);
        match rules.dirs.first() {
            None => report.at(span, "rules.dirs is empty: list at least the shipped rule directory"),
            Some(first) if !first.is_dir() => report.at(
                span,
                format!("rules.dirs: the first directory {} (the shipped rules) does not exist", first.display()),
            ),
            Some(_) => {}
        }
    }
    if config.dns.timeout.0 < 1 || config.dns.attempts < 1 {
        report.at(span_of(document, "dns", None), "dns.timeout must be at least 1s and dns.attempts at least 1");
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

/// A plausible DNS name: labels of letters, digits and hyphens, no trailing dot.
pub fn is_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
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
        let text = GOOD.replace("starttls = false", "starttls = true").replace("name = \"example.test\"", "name = \"bad_name.\"\nrecipient_check = \"list\"");
        let errors = check(&text).unwrap_err();
        let all = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("STARTTLS"), "{all}");
        assert!(all.contains("not a domain name"), "{all}");
        assert!(all.contains("needs a `recipients` list"), "{all}");
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
    fn syntax_errors_are_located() {
        let errors = check("hostname = \"a.test\"\n[downstream\nhost = 1\n").unwrap_err();
        assert!(errors[0].line == 2, "{errors:#?}");
    }

    #[test]
    fn missing_required_keys() {
        let errors = check("[[listen]]\naddress = \"127.0.0.1:25\"\n").unwrap_err();
        let all = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("\n");
        assert!(all.contains("hostname") && all.contains("downstream"), "{all}");
    }
}
