//! Reading `.cf` rule files into raw definitions (no regex compiled yet).
//!
//! Guarantees: every file line is attributed (file:line) to whatever it defines or to the error
//! it causes; conditionals (`if`/`ifplugin`/`else`/`endif`) are evaluated while reading; later
//! definitions replace earlier ones (later files, later directories: `local.cf` semantics);
//! unknown directives are counted, never fatal. Rule names seen only in inactive conditional
//! branches are remembered so a meta that mentions them is not a typo. Never panics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cond::CondContext;
use super::{RuleError, Skipped, Warning};

/// The rule types with a pattern or expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Header,
    Body,
    Rawbody,
    Uri,
    Full,
    Meta,
    /// MIMEHeader plugin: a header rule over the headers of every MIME part.
    MimeHeader,
    /// A rule whose test is an `eval:` function moat runs itself ([`super::evalfn`]); its text
    /// is the call. `rawbody`: written as a rawbody rule (the text a function reads, for those
    /// that read the rule's own text).
    Eval {
        rawbody: bool,
    },
}

impl Kind {
    fn from_directive(d: &str) -> Option<Kind> {
        Some(match d {
            "header" => Kind::Header,
            "body" => Kind::Body,
            "rawbody" => Kind::Rawbody,
            "uri" => Kind::Uri,
            "full" => Kind::Full,
            "meta" => Kind::Meta,
            "mimeheader" => Kind::MimeHeader,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Header => "header",
            Kind::Body => "body",
            Kind::Rawbody => "rawbody",
            Kind::Uri => "uri",
            Kind::Full => "full",
            Kind::Meta => "meta",
            Kind::MimeHeader => "mimeheader",
            Kind::Eval { .. } => "eval",
        }
    }
}

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: usize,
}

impl Origin {
    pub fn error(&self, message: impl Into<String>) -> RuleError {
        RuleError { file: self.file.to_path_buf(), line: self.line, message: message.into() }
    }

    pub fn skipped(&self, kind: &str, rule: &str, reason: impl Into<String>) -> Skipped {
        Skipped { file: self.file.to_path_buf(), line: self.line, kind: kind.to_string(), rule: rule.to_string(), reason: reason.into() }
    }

    pub fn warning(&self, message: impl Into<String>) -> Warning {
        Warning { file: self.file.to_path_buf(), line: self.line, message: message.into() }
    }
}

/// One rule definition as written (the text after the name).
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub name: String,
    pub kind: Kind,
    pub text: String,
    pub origin: Origin,
}

/// Test flags that change evaluation; the rest are accepted and kept as words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TFlags {
    pub multiple: bool,
    pub maxhits: Option<u32>,
    pub nosubject: bool,
    /// A ham sign: the default score (when no `score` line exists) is negative.
    pub nice: bool,
    /// A network test: skipped (moat's DNS filters do network checks), and so is every meta
    /// that depends on one, as SpamAssassin does in local mode.
    pub net: bool,
    /// Accepted for compatibility (moat has no autolearning); kept in `words`.
    pub autolearn_force: bool,
    pub words: Vec<String>,
}

/// Everything read from the rule directories.
#[derive(Debug, Default)]
pub struct Config {
    /// Rule definitions in first-definition order; a redefinition replaces in place.
    pub rules: Vec<RuleDef>,
    index: HashMap<String, usize>,
    /// Rules that exist but do not run (eval rules, …): metas treat them as never hit.
    pub inert: HashMap<String, Origin>,
    /// Rule names defined only in inactive conditional branches.
    pub inactive_names: HashSet<String>,
    pub scores: HashMap<String, (f64, Origin)>,
    pub describes: HashMap<String, String>,
    pub tflags: HashMap<String, TFlags>,
    pub replace_tags: HashMap<String, String>,
    pub replace_pre: HashMap<String, String>,
    pub replace_inter: HashMap<String, String>,
    pub replace_post: HashMap<String, String>,
    pub replace_rules: HashSet<String>,
    pub replace_start: Option<String>,
    pub replace_end: Option<String>,
    pub compat: Vec<String>,
    /// Directive name → how many lines used it without effect here.
    pub ignored_directives: BTreeMap<String, usize>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<Warning>,
    pub errors: Vec<RuleError>,
    /// `freemail_domains` and `freemail_welcomelist` (FreeMail plugin).
    pub freemail: super::freemail::FreemailConfig,
    /// `enlist_addrlist (NAME) PATTERN…`: lower-cased address patterns by list name.
    pub addrlists: HashMap<String, Vec<String>>,
    /// `welcomelist_bounce_relays HOST…` (VBounce plugin): lower-cased host patterns.
    pub bounce_relays: Vec<String>,
    /// URIDNSBL lines (`urirhssub NAME ZONE TYPE SUBTEST`, `urirhsbl`, `uridnssub`, …) by rule
    /// name, for the `check_uridnsbl(NAME)` rule that reads them.
    pub uri_lists: HashMap<String, UriList>,
    /// `reason SYMBOL|PREFIX_* sentence`: what a user reads first for held mail.
    pub reasons: super::reasons::Reasons,
    /// Rule files read, in order, with their contents (for the rule-set hash).
    pub files: Vec<(String, Vec<u8>)>,
}

/// Directives that are valid SpamAssassin but have no effect in moat (counted, not reported).
const IGNORED: &[&str] = &[
    "loadplugin",
    "tryplugin",
    "lang",
    "priority",
    "reuse",
    "require_version",
    "report",
    "report_contact",
    "report_safe",
    "clear_report_template",
    "unsafe_report",
    "add_header",
    "remove_header",
    "clear_headers",
    "required_score",
    "required_hits",
    "util_rb_tld",
    "util_rb_2tld",
    "util_rb_3tld",
    "redirector_pattern",
    "whitelist_from_rcvd",
    "def_whitelist_from_rcvd",
    "welcomelist_from_rcvd",
    "def_welcomelist_from_rcvd",
    "whitelist_auth",
    "def_whitelist_auth",
    "welcomelist_auth",
    "def_welcomelist_auth",
    "blacklist_from",
    "blocklist_from",
    "whitelist_from",
    "welcomelist_from",
    "whitelist_subject",
    "blacklist_subject",
    "welcomelist_subject",
    "blocklist_subject",
    "enlist_uri_host",
    "delist_uri_host",
    "blacklist_uri_host",
    "blocklist_uri_host",
    "whitelist_uri_host",
    "welcomelist_uri_host",
    "adsp_override",
    "bayes_ignore_header",
    "bayes_stopword",
    "bayes_stopwords",
    "dns_query_restriction",
    "util_rb_tld_inc",
    "shortcircuit",
    "dcc_path",
    "pyzor_path",
    "razor_config",
    "spf_timeout",
    "dkim_timeout",
    "hashbl_acl",
    "hashbl_ignore",
    "uri_block_cc",
    "uri_block_cidr",
    "uri_block_cont",
    "uri_block_domain",
    "uri_block_isp",
    "ok_languages",
    "ok_locales",
    "normalize_charset",
    "body_part_scan_size",
    "rawbody_part_scan_size",
    "url_shortener",
    "url_shortener_get",
    "trusted_networks",
    "internal_networks",
    "msa_networks",
    "clear_trusted_networks",
    "clear_internal_networks",
    "envelope_sender_header",
    "use_bayes",
    "use_auto_whitelist",
    "use_txrep",
    "txrep_factor",
    "auto_whitelist_factor",
    "use_razor2",
    "use_pyzor",
    "use_dcc",
    "skip_rbl_checks",
    "dns_available",
    "dns_server",
    "uridnsbl_skip_domain",
    "uridnsbl_max_domains",
    "hashbl_email_domain_alias",
    "hashbl_email_regex",
    "hashbl_email_welcomelist",
    "hashbl_email_whitelist",
    "dmarc_save_reports",
    "parse_dkim_uris",
    "uri_block_cont",
    "report_charset",
    "describe_rule",
    "test",
];

/// One URIDNSBL line: `DIRECTIVE NAME ZONE TYPE [SUBTEST]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UriList {
    pub directive: String,
    pub zone: String,
    /// `A` or `TXT`, as written.
    pub lookup: String,
    pub subtest: Option<String>,
}

/// Plugin directives that define a rule moat cannot run (the rule exists for metas, never hits).
const PLUGIN_RULES: &[(&str, &str)] = &[
    ("askdns", "askdns: DNS lookup rule (AskDNS plugin)"),
    ("urirhsbl", "urirhsbl: URI blocklist lookup (URIDNSBL plugin)"),
    ("urirhssub", "urirhssub: URI blocklist lookup (URIDNSBL plugin)"),
    ("uridnsbl", "uridnsbl: URI blocklist lookup (URIDNSBL plugin)"),
    ("uridnssub", "uridnssub: URI blocklist lookup (URIDNSBL plugin)"),
    ("urinsrhsbl", "urinsrhsbl: URI NS blocklist lookup (URIDNSBL plugin)"),
    ("urinsrhssub", "urinsrhssub: URI NS blocklist lookup (URIDNSBL plugin)"),
    ("uri_detail", "uri_detail: URIDetail plugin rule"),
];

impl Config {
    fn define(&mut self, def: RuleDef) {
        if self.inert.remove(&def.name).is_some() {
            // A later file redefines a skipped rule: the skip no longer applies.
            self.skipped.retain(|s| s.rule != def.name);
        }
        match self.index.get(&def.name) {
            Some(&i) => self.rules[i] = def,
            None => {
                self.index.insert(def.name.clone(), self.rules.len());
                self.rules.push(def);
            }
        }
    }

    fn make_inert(&mut self, name: &str, origin: Origin) {
        if self.inert.contains_key(name) {
            // Skipped twice (redefined as another eval rule): report only the last one.
            let last = self.skipped.pop();
            self.skipped.retain(|s| s.rule != name);
            self.skipped.extend(last);
        }
        if let Some(i) = self.index.remove(name) {
            self.rules.remove(i);
            for v in self.index.values_mut() {
                if *v > i {
                    *v -= 1;
                }
            }
        }
        self.inert.insert(name.to_string(), origin);
    }

    /// Reads every `*.cf` file (sorted by name) in each directory, in order.
    pub fn read_dirs(dirs: &[PathBuf]) -> Config {
        let mut cfg = Config::default();
        for (n, dir) in dirs.iter().enumerate() {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    cfg.errors.push(RuleError { file: dir.clone(), line: 0, message: format!("cannot read rule directory: {e}") });
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cf") && p.is_file())
                .collect();
            files.sort();
            for f in files {
                match std::fs::read(&f) {
                    Ok(bytes) => {
                        let label = format!("{n}/{}", f.file_name().map(|s| s.to_string_lossy()).unwrap_or_default());
                        cfg.read_file(&f, &bytes);
                        cfg.files.push((label, bytes));
                    }
                    Err(e) => cfg.errors.push(RuleError { file: f.clone(), line: 0, message: format!("cannot read rule file: {e}") }),
                }
            }
        }
        cfg
    }

    /// Parses one file's contents (bytes; invalid UTF-8 is kept as Latin-1-ish lossless chars).
    pub fn read_file(&mut self, path: &Path, bytes: &[u8]) {
        let file: Arc<Path> = Arc::from(path);
        let text = bytes_to_text(bytes);
        let mut stack: Vec<Frame> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let origin = Origin { file: file.clone(), line: i + 1 };
            let line = strip_comment(raw);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (directive, rest) = split_word(line);
            let directive = directive.to_ascii_lowercase();
            if self.conditional(&directive, rest, &origin, &mut stack) {
                continue;
            }
            if stack.iter().all(|f| f.active) {
                self.directive(&directive, rest, origin);
            } else if Kind::from_directive(&directive).is_some() || PLUGIN_RULES.iter().any(|(n, _)| *n == directive) {
                let (name, _) = split_word(rest);
                self.inactive_names.insert(name.to_string());
            }
        }
        if let Some(f) = stack.last() {
            self.errors.push(
                Origin { file: file.clone(), line: f.line }.error("`if`/`ifplugin` is not closed by `endif` before the end of the file"),
            );
        }
    }

    /// Handles if/ifplugin/else/endif; returns true if the line was one of them.
    fn conditional(&mut self, d: &str, rest: &str, o: &Origin, stack: &mut Vec<Frame>) -> bool {
        let parent = stack.iter().all(|f| f.active);
        match d {
            "if" | "ifplugin" => {
                let expr = if d == "ifplugin" { format!("plugin({})", rest.trim()) } else { rest.to_string() };
                let value = if parent {
                    let cx = CondContext { compat: &self.compat };
                    match cx.eval(&expr) {
                        Ok(v) => v,
                        Err(e) => {
                            self.warnings
                                .push(o.warning(format!("cannot evaluate condition `{}` ({e}); treating it as false", rest.trim())));
                            false
                        }
                    }
                } else {
                    false
                };
                stack.push(Frame { active: parent && value, parent, line: o.line, seen_else: false });
            }
            "else" => match stack.last_mut() {
                Some(f) if !f.seen_else => {
                    f.seen_else = true;
                    f.active = f.parent && !f.active;
                }
                Some(_) => self.errors.push(o.error("second `else` for the same `if`")),
                None => self.errors.push(o.error("`else` without `if`")),
            },
            "endif" => {
                if stack.pop().is_none() {
                    self.errors.push(o.error("`endif` without `if`"));
                }
            }
            _ => return false,
        }
        true
    }

    fn directive(&mut self, d: &str, rest: &str, o: Origin) {
        if let Some(kind) = Kind::from_directive(d) {
            return self.rule(kind, rest, o);
        }
        if let Some((_, reason)) = PLUGIN_RULES.iter().find(|(n, _)| *n == d) {
            let (name, args) = split_word(rest);
            if valid_name(name) {
                if d.starts_with("uri") && d != "uri_detail" {
                    let mut args = args.split_whitespace().map(str::to_string);
                    if let (Some(zone), Some(lookup)) = (args.next(), args.next()) {
                        let list = UriList { directive: d.to_string(), zone, lookup, subtest: args.next() };
                        self.uri_lists.insert(name.to_string(), list);
                    }
                }
                self.skipped.push(o.skipped(d, name, *reason));
                self.make_inert(name, o);
            } else {
                self.errors.push(o.error(format!("{d}: invalid rule name {name:?}")));
            }
            return;
        }
        match d {
            "score" => self.score(rest, o),
            "describe" => {
                let (name, text) = split_word(rest);
                if valid_name(name) {
                    self.describes.insert(name.to_string(), text.trim().to_string());
                } else {
                    self.errors.push(o.error(format!("describe: invalid rule name {name:?}")));
                }
            }
            "reason" => {
                let (pattern, text) = split_word(rest);
                match super::reasons::check(pattern, text.trim()) {
                    Ok(()) => self.reasons.set("", pattern, text.trim()),
                    Err(message) => self.errors.push(o.error(message)),
                }
            }
            "lang" if split_word(split_word(rest).1).0 == "reason" => {
                let (lang, line) = split_word(rest);
                let (pattern, text) = split_word(split_word(line).1);
                match super::reasons::check_lang(lang).and_then(|()| super::reasons::check(pattern, text.trim())) {
                    Ok(()) => self.reasons.set(lang, pattern, text.trim()),
                    Err(message) => self.errors.push(o.error(message)),
                }
            }
            "tflags" => self.tflags(rest, o),
            "replace_tag" | "replace_pre" | "replace_inter" | "replace_post" => {
                let (name, value) = split_word(rest);
                if name.is_empty() || value.trim().is_empty() {
                    self.errors.push(o.error(format!("{d}: expected a tag name and a value")));
                    return;
                }
                let map = match d {
                    "replace_tag" => &mut self.replace_tags,
                    "replace_pre" => &mut self.replace_pre,
                    "replace_inter" => &mut self.replace_inter,
                    _ => &mut self.replace_post,
                };
                map.insert(name.to_string(), value.trim().to_string());
            }
            "replace_rules" => {
                self.replace_rules.extend(rest.split_whitespace().map(str::to_string));
            }
            "replace_start" => self.replace_start = Some(rest.trim().to_string()),
            "replace_end" => self.replace_end = Some(rest.trim().to_string()),
            "enable_compat" => self.compat.push(rest.trim().to_string()),
            "enlist_addrlist" => {
                let parsed = rest.trim().strip_prefix('(').and_then(|r| r.split_once(')'));
                match parsed {
                    Some((name, patterns)) if !name.trim().is_empty() && !patterns.trim().is_empty() => {
                        let list = self.addrlists.entry(name.trim().to_string()).or_default();
                        list.extend(patterns.split_whitespace().map(str::to_lowercase));
                    }
                    _ => self.warnings.push(o.warning("enlist_addrlist: expected (LISTNAME) and address patterns; ignored")),
                }
            }
            "welcomelist_bounce_relays" | "whitelist_bounce_relays" => {
                self.bounce_relays.extend(rest.split_whitespace().map(str::to_lowercase));
            }
            "freemail_domains" | "freemail_welcomelist" | "freemail_whitelist" => {
                let invalid = if d == "freemail_domains" { self.freemail.add_domains(rest) } else { self.freemail.add_welcomelist(rest) };
                for word in invalid {
                    self.warnings.push(o.warning(format!("{d}: {word:?} is not a domain or address; ignored")));
                }
            }
            "include" => {
                self.warnings.push(o.warning("`include` is not supported; put the file in a rule directory"));
            }
            d if IGNORED.contains(&d) || d.starts_with("bayes_") || d.starts_with("dns_") => {
                *self.ignored_directives.entry(d.to_string()).or_default() += 1;
            }
            d => {
                *self.ignored_directives.entry(format!("{d} (unknown)")).or_default() += 1;
            }
        }
    }

    fn rule(&mut self, kind: Kind, rest: &str, o: Origin) {
        let (name, text) = split_word(rest);
        if !valid_name(name) {
            self.errors.push(o.error(format!(
                "{} rule: invalid rule name {name:?} (letters, digits and _ only, not starting with a digit)",
                kind.as_str()
            )));
            return;
        }
        let text = text.trim();
        if text.is_empty() {
            self.errors.push(o.error(format!("{} rule {name}: missing definition", kind.as_str())));
            return;
        }
        let is_eval = text.starts_with("eval:") || (kind == Kind::Header && split_word(text).1.trim_start().starts_with("eval:"));
        if kind != Kind::Meta && is_eval {
            let known = |call: &str| {
                super::filtereval::FilterEval::parse(call).map_or_else(|| super::evalfn::EvalFn::parse(call).map(|_| ()), |_| Ok(()))
            };
            let reason = match text.strip_prefix("eval:").map(|call| (call, known(call))) {
                Some((call, Ok(()))) => {
                    self.define(RuleDef {
                        name: name.to_string(),
                        kind: Kind::Eval { rawbody: kind == Kind::Rawbody },
                        text: call.to_string(),
                        origin: o,
                    });
                    return;
                }
                Some((_, Err(reason))) => reason,
                None => "eval: rule (needs SpamAssassin plugin code)".to_string(),
            };
            self.skipped.push(o.skipped(kind.as_str(), name, reason));
            self.make_inert(name, o);
            return;
        }
        self.define(RuleDef { name: name.to_string(), kind, text: text.to_string(), origin: o });
    }

    fn score(&mut self, rest: &str, o: Origin) {
        let mut words = rest.split_whitespace();
        let Some(name) = words.next().filter(|n| valid_name(n)) else {
            self.errors.push(o.error("score: expected a rule name"));
            return;
        };
        let nums: Vec<&str> = words.collect();
        if nums.len() != 1 && nums.len() != 4 {
            self.errors.push(o.error(format!("score {name}: expected 1 or 4 numbers, got {}", nums.len())));
            return;
        }
        // The first score is SpamAssassin's set 0 (no network tests, no Bayes): moat's rule
        // engine runs neither, so that is the set that fits.
        let first = nums[0].trim_start_matches('(').trim_end_matches(')');
        match first.parse::<f64>() {
            Ok(v) if v.is_finite() => {
                self.scores.insert(name.to_string(), (v, o));
            }
            _ => self.errors.push(o.error(format!("score {name}: {first:?} is not a number"))),
        }
    }

    fn tflags(&mut self, rest: &str, o: Origin) {
        let (name, flags) = split_word(rest);
        if !valid_name(name) {
            self.errors.push(o.error(format!("tflags: invalid rule name {name:?}")));
            return;
        }
        let mut t = TFlags::default();
        for w in flags.split_whitespace() {
            match w.split_once('=') {
                Some(("maxhits", n)) => match n.parse::<u32>() {
                    Ok(n) if n > 0 => t.maxhits = Some(n),
                    _ => self.errors.push(o.error(format!("tflags {name}: bad maxhits value {n:?}"))),
                },
                Some(_) => t.words.push(w.to_string()),
                None => match w {
                    "multiple" => t.multiple = true,
                    "nosubject" => t.nosubject = true,
                    "nice" => t.nice = true,
                    "net" => t.net = true,
                    "autolearn_force" => {
                        t.autolearn_force = true;
                        t.words.push(w.to_string());
                    }
                    _ => t.words.push(w.to_string()),
                },
            }
        }
        self.tflags.insert(name.to_string(), t);
    }
}

struct Frame {
    active: bool,
    parent: bool,
    line: usize,
    seen_else: bool,
}

/// Valid rule name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Removes a `#` comment (one not preceded by a backslash) and turns `\#` into `#`.
pub fn strip_comment(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut prev_backslash = false;
    for c in line.chars() {
        if c == '#' {
            if prev_backslash {
                out.pop();
            } else {
                break;
            }
        }
        prev_backslash = c == '\\' && !prev_backslash;
        out.push(c);
    }
    out
}

/// First whitespace-separated word and the rest (rest keeps its inner spacing).
pub fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Rule files are mostly ASCII; bytes that are not valid UTF-8 are mapped one byte to one
/// char (U+0080..U+00FF), which the regex translator turns back into the same bytes.
fn bytes_to_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Config {
        let mut c = Config::default();
        c.read_file(Path::new("t.cf"), text.as_bytes());
        c
    }

    #[test]
    fn comments_and_escaped_hash() {
        assert_eq!(strip_comment(r"body X /a\#b/ # note"), "body X /a#b/ ");
        assert_eq!(strip_comment("# all comment"), "");
        let c = read("  # comment\n\nbody FOO /foo\\#1/i  # trailing\n");
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].text, "/foo#1/i");
        assert_eq!(c.rules[0].origin.line, 3);
    }

    #[test]
    fn lang_reason_lines_give_a_languages_sentence_and_a_bad_code_is_an_error_at_its_line() {
        let c = read("reason B_* Generic.\nlang de reason B_X Auf Deutsch.\nlang de describe B_X Körper\nlang Deutsch reason B_Y Nein.\n");
        assert_eq!(c.reasons.for_symbol("B_X", "de"), Some("Auf Deutsch."));
        assert_eq!(c.reasons.for_symbol("B_X", "en"), Some("Generic."));
        assert_eq!(c.ignored_directives["lang"], 1, "other lang lines are still ignored");
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(c.errors[0].to_string().contains(":4") && c.errors[0].to_string().contains("Deutsch"), "{}", c.errors[0]);
    }

    #[test]
    fn each_directive() {
        let c = read(
            "header H From =~ /x/\nbody B /b/\nrawbody R /r/\nuri U /u/\nfull F /f/\nmeta M H && B\n\
             score B 2.5\nscore H 0 1 2 3\ndescribe B Body test\ntflags B multiple maxhits=3 nice\n\
             replace_tag A [a@]\nreplace_rules B\nloadplugin Foo\nlang de describe B Körper\n",
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let kinds: Vec<_> = c.rules.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::Header, Kind::Body, Kind::Rawbody, Kind::Uri, Kind::Full, Kind::Meta]);
        assert_eq!(c.scores["B"].0, 2.5);
        assert_eq!(c.scores["H"].0, 0.0);
        assert_eq!(c.describes["B"], "Body test");
        assert!(c.tflags["B"].multiple);
        assert_eq!(c.tflags["B"].maxhits, Some(3));
        assert!(c.tflags["B"].nice && !c.tflags["B"].net);
        assert_eq!(c.replace_tags["A"], "[a@]");
        assert!(c.replace_rules.contains("B"));
        assert_eq!(c.ignored_directives["loadplugin"], 1);
        assert_eq!(c.ignored_directives["lang"], 1);
    }

    #[test]
    fn conditionals() {
        let c = read(
            "ifplugin Mail::SpamAssassin::Plugin::PDFInfo\nbody A /a/\nelse\nbody B /b/\nendif\n\
             if (version >= 3.004)\nbody C /c/\nif !plugin(Mail::SpamAssassin::Plugin::ReplaceTags)\nbody D /d/\nendif\nendif\n",
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let names: Vec<_> = c.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["B", "C"]);
        assert!(c.inactive_names.contains("A") && c.inactive_names.contains("D"));
    }

    #[test]
    fn conditional_errors_have_lines() {
        let c = read("endif\nelse\nif version > 1\nbody A /a/\n");
        let lines: Vec<_> = c.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3]);
    }

    #[test]
    fn eval_rules_are_inert_and_redefinition_replaces() {
        let c = read("body A eval:check_foo()\nheader B eval:check_bar()\nheader C From eval:x()\nbody D /1/\nbody D /2/\n");
        assert!(c.inert.contains_key("A") && c.inert.contains_key("B") && c.inert.contains_key("C"));
        assert_eq!(c.skipped.len(), 3);
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.rules[0].text, "/2/");
    }

    #[test]
    fn bad_lines_are_errors() {
        let c = read("body 1BAD /x/\nbody NODEF\nscore X abc\nscore X 1 2\ntflags X maxhits=0\n");
        let lines: Vec<_> = c.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3, 4, 5]);
    }
}
