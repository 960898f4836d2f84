//! SpamAssassin-compatible rule engine: rule files in, named hits with scores out.
//!
//! [`RuleSet::load`] reads `*.cf` files from a list of directories (shipped rules first, then
//! local overrides: later files and directories replace earlier definitions, scores and
//! descriptions), evaluates conditionals, translates every Perl regex to Rust (ASCII/byte
//! semantics; lookaround and backreferences via fancy-regex with a backtrack limit), compiles
//! everything, checks every meta reference and rejects dependency cycles. It reports **all**
//! errors at once with file:line and returns no rule set if there is any (principle 7: a rule
//! set is valid as a whole or not at all). Stock rules that use constructs moat cannot run
//! (eval: plugin rules, Perl code in regexes, …) are skipped with a reason, not errors.
//!
//! `tflags net` rules (and metas that depend on them) are skipped too — moat's DNS filters do
//! network checks. A `score`/`describe` line for a name with no rule is kept: other filters'
//! symbols (`SPF_FAIL`, `CLAMAV_VIRUS`, …) get their weights from the rule files through
//! [`RuleSet::score`] and [`RuleSet::describe`].
//!
//! [`RuleSet`] is immutable and `Send + Sync`: callers share it with `ArcSwap` and swap in a new
//! one on reload; [`RuleSet::hash`] identifies the loaded text. [`RuleSet::evaluate`] runs one
//! [`ParsedMessage`] through all rules with bounded work and no regex compilation: an
//! Aho-Corasick prefilter over each rule's required literals and one RegexSet pass for the
//! rules without literals pick the candidate rules per body line / chunk / URI, backtracking
//! (fancy-regex) runs only for lookaround/backreferences and under a step limit, metas are
//! evaluated in dependency order, and only rules that can influence a reported result run. It
//! reports rules with a non-zero score whose names do not start with `__`.
//! [`ParsedMessage::parse`] bounds the view of huge messages (see `message`). The regexes'
//! search caches belong to the rule set, shared by the rule threads and trimmed to one budget
//! after each message (see `search`): memory does not grow with the traffic or the threads.
//! `filter::rules::RulesFilter` runs a set as the DATA-phase filter, on the blocking pool.
//!
//! Module map: `cf` (file reader, conditionals via `cond`), `perlre` (regex translation),
//! `replace` (ReplaceTags), `header` (header rule specs), `meta` (expressions), `literals`
//! (prefilter literals), `compile` (building a [`RuleSet`]), `eval` (running one), `search`
//! (regexes with caller-owned, bounded search caches), `joined` (one search over all segments),
//! `message` + `html` + `uri` (the message view), `evalfn` (the `eval:` functions moat runs,
//! with `htmleval`, `freemail`, `mimeeval`, `imageinfo` and `headereval`).

mod bodyeval;
mod bounce;
mod cf;
mod compile;
mod cond;
mod eval;
mod evalfn;
mod existence;
mod filtereval;
mod freemail;
mod header;
mod headereval;
pub mod html;
mod htmleval;
mod imageinfo;
mod joined;
mod listeval;
mod literals;
mod message;
mod meta;
mod mimeeval;
mod perlre;
mod possessive;
mod prefilter;
mod prune;
pub mod reasons;
pub mod received;
mod replace;
mod search;
mod uri;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use cf::Kind;
pub use filtereval::FilterFacts;
pub use header::Modifier;
pub use message::{MessageStats, ParsedMessage};

/// A problem that makes a rule set unusable, at a file and line (line 0: the file itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

impl std::error::Error for RuleError {}

/// A rule that was read but will not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: usize,
    /// The directive that defined it: `header`, `body`, …, or a plugin's (`askdns`, …).
    pub kind: String,
    pub rule: String,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {} {} skipped: {}", self.file.display(), self.line, self.kind, self.rule, self.reason)
    }
}

/// Something worth an admin's attention that does not stop the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// What a successful load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Rules that will run (all types, metas included, sub-rules included).
    pub loaded: usize,
    /// Loaded rules per type.
    pub loaded_by_kind: BTreeMap<Kind, usize>,
    /// Skipped rules per defining directive (`header`, `body`, …, `askdns`, …).
    pub skipped_by_kind: BTreeMap<String, usize>,
    /// Rules read but not run, with reasons (eval rules, unsupported regex constructs, …).
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<Warning>,
    /// Directives accepted but without effect in moat (`loadplugin`, `lang`, …) and counts.
    pub ignored_directives: BTreeMap<String, usize>,
    /// Rules whose regex needs the backtracking engine (lookaround, backreferences).
    pub backtracking_rules: usize,
    /// Network `eval:` rules (SPF, DKIM) answered by moat's auth filter; unknown, with the metas
    /// over them, for a message the filter did not answer (it is off, or failed).
    pub filter_answered: usize,
    /// The DNS-list zones the `check_rbl*`/`check_uridnsbl` rules read (answered by moat's
    /// dnsbl filter when `[reputation]` asks that zone; unknown otherwise), with their rule counts.
    pub list_zones: BTreeMap<String, usize>,
    /// Rules with an Aho-Corasick prefilter literal set.
    pub prefiltered_rules: usize,
    /// Rule files read.
    pub files: usize,
}

impl LoadReport {
    /// Skip reasons grouped into categories (the text before the first `:` or `(`), counted.
    pub fn skip_categories(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in &self.skipped {
            let cat = s.reason.split([':', '(']).next().unwrap_or("").trim().to_string();
            *m.entry(cat).or_default() += 1;
        }
        m
    }
}

/// One rule that hit.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    pub name: String,
    pub score: f64,
    pub description: Option<String>,
}

/// A compiled, immutable rule set.
pub struct RuleSet {
    inner: compile::Compiled,
    /// The `reason` lines of the same files.
    reasons: reasons::Reasons,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet").field("rules", &self.inner.names.len()).field("hash", &self.inner.hash).finish()
    }
}

impl RuleSet {
    /// Loads and compiles every `*.cf` file in `dirs` (in order; later overrides earlier).
    /// Returns every error found, or the rule set and a report.
    pub fn load(dirs: &[PathBuf]) -> Result<(RuleSet, LoadReport), Vec<RuleError>> {
        let mut cfg = cf::Config::read_dirs(dirs);
        let reasons = std::mem::take(&mut cfg.reasons);
        let compiled = compile::compile(cfg);
        crate::allocator::release_freed_memory();
        let (inner, report) = compiled?;
        Ok((RuleSet { inner, reasons }, report))
    }

    /// Compiles rules from in-memory files `(name, contents)`, as if they were one directory
    /// each, in order. For tests, fuzzing and `rules check` of unsaved text.
    pub fn load_texts(files: &[(&str, &str)]) -> Result<(RuleSet, LoadReport), Vec<RuleError>> {
        let mut cfg = cf::Config::default();
        for (n, (name, text)) in files.iter().enumerate() {
            cfg.read_file(std::path::Path::new(name), text.as_bytes());
            cfg.files.push((format!("{n}/{name}"), text.as_bytes().to_vec()));
        }
        let reasons = std::mem::take(&mut cfg.reasons);
        let (inner, report) = compile::compile(cfg)?;
        Ok((RuleSet { inner, reasons }, report))
    }

    /// The plain-language reasons the rule files give (see [`reasons`]).
    pub fn reasons(&self) -> &reasons::Reasons {
        &self.reasons
    }

    /// SHA-256 (hex) of the rule files' names (within their directory position) and contents,
    /// in load order: equal on two nodes exactly when they loaded the same rule text.
    pub fn hash(&self) -> String {
        self.inner.hash.clone()
    }

    /// Runs every rule over the message. Returns the hits that count: names not starting with
    /// `__` and with a non-zero score, in rule-definition order.
    pub fn evaluate(&self, message: &ParsedMessage) -> Vec<RuleHit> {
        self.inner.evaluate(message)
    }

    /// Every rule's non-zero value for the message, sub-rules and zero-score rules included
    /// (for `moat scan --debug` and rule development). Runs every rule, so it is slower.
    pub fn evaluate_all(&self, message: &ParsedMessage) -> Vec<(String, f64)> {
        self.inner.evaluate_all(message)
    }

    /// Bytes of search caches the rule set keeps between messages (bounded; see `search`).
    pub fn search_memory(&self) -> usize {
        self.inner.caches.memory_usage()
    }

    /// Number of rules that run (all types, sub-rules included).
    pub fn len(&self) -> usize {
        self.inner.runnable
    }

    pub fn is_empty(&self) -> bool {
        self.inner.runnable == 0
    }

    /// True if a rule of that name runs (false for unknown, eval and skipped rules).
    pub fn runs(&self, name: &str) -> bool {
        self.inner.index.get(name).is_some_and(|&i| self.inner.runs[i])
    }

    /// The score of `name`: a rule's (its `score` line, or SpamAssassin's default of 1, 0.01
    /// for `T_` rules, 0 for `__` rules, negated for `tflags nice`), or the `score` line of a
    /// name that has no rule — the symbols other moat filters emit (`SPF_FAIL`,
    /// `CLAMAV_VIRUS`, …) get their scores this way. None if the name appears nowhere.
    pub fn score(&self, name: &str) -> Option<f64> {
        match self.inner.index.get(name) {
            Some(&i) => Some(self.inner.scores[i]),
            None => self.inner.unruled_scores.get(name).copied(),
        }
    }

    /// The `describe` text of a rule or of a name with no rule (see [`RuleSet::score`]).
    pub fn describe(&self, name: &str) -> Option<&str> {
        match self.inner.index.get(name) {
            Some(&i) => self.inner.descriptions[i].as_deref(),
            None => self.inner.unruled_descriptions.get(name).map(String::as_str),
        }
    }

    /// Score and description of a rule by name, if it exists.
    pub fn rule_info(&self, name: &str) -> Option<(f64, Option<&str>)> {
        let i = *self.inner.index.get(name)?;
        Some((self.inner.scores[i], self.inner.descriptions[i].as_deref()))
    }
}

/// Rule threads a process runs: one per core (2 when the core count cannot be read). The
/// rules filter starts this many; the search caches get one stripe per two of them.
pub fn rule_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests;
