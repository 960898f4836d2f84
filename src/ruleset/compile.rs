//! Building a rule set from what `cf` read: regex translation and compilation, header specs,
//! meta resolution, cycle detection, scores, the prefilter automata.
//!
//! Guarantees: every problem becomes a [`RuleError`] with file:line and compilation continues so
//! that all of them are reported; if any exists, no rule set is returned. Unsupported-but-valid
//! constructs become [`super::Skipped`] entries and the rule is inert (never hits), and so is every
//! meta that reads it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::Hir;
use sha2::{Digest, Sha256};

use super::cf::{Config, Kind, Origin, RuleDef, TFlags};
use super::evalfn::{EvalConfig, EvalFn};
use super::filtereval::{FilterEval, RblSets};
use super::header::{self, HeaderKey, HeaderSpec};
use super::literals::LiteralSet;
use super::meta::{self, Expr};
use super::perlre::{self, Engine, TranslateError};
use super::prefilter::{self, Prefilter, Seen};
use super::search::{Re, Scratch, SearchCaches, Set, Slots};
use super::{LoadReport, RuleError, existence, literals, possessive, replace};

/// Compiled program size limit per regex (replace-tag rules expand to large patterns).
const REGEX_SIZE_LIMIT: usize = 32 * 1024 * 1024;
/// Lazy DFA cache per regex (and thread). 4 MiB let a few regexes keep ~20 MB more per thread on
/// real mail for no measurable speed (bench/rules-soak, stock rules).
const DFA_SIZE_LIMIT: usize = 1024 * 1024;
/// Lazy DFA cache of a group's RegexSet (per thread). At 64 MiB the ReplaceTags sets kept
/// growing on real mail (22 MB for one set after 6,000 messages); in sets of
/// [`ALWAYS_SET_SIZE`] at 8 MiB they level off at the same speed. 4 MiB, or 8 MiB with sets of
/// 8, cost 20–50 % more CPU: the DFA clears too often.
const SET_DFA_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// Lazy DFA cache of each regex inside a backtracking pattern (fancy-regex's delegates; per
/// thread). Such a pattern runs only where its superset matched, so its caches stay small at no
/// speed cost that bench/serve-soak could tell from noise; at [`DFA_SIZE_LIMIT`] they held about
/// 8 MB more of the server's memory after 24,000 real messages.
const BACKTRACKING_DFA_SIZE_LIMIT: usize = 64 * 1024;
/// Backtracking steps per fancy-regex search before giving up (counted as no match).
pub const BACKTRACK_LIMIT: usize = 200_000;

/// A compiled pattern.
pub enum Matcher {
    Plain(Re),
    Fancy {
        re: Backtracking,
        /// Matches a superset; if it does not match, `re` cannot.
        superset: Re,
        /// Where every match starts, when the pattern says: see [`prefix_count`].
        starts: Option<Starts>,
    },
}

/// The only places a backtracking pattern's matches can start.
pub enum Starts {
    /// Where these bytes occur (ASCII case-insensitively): the pattern's literal prefix.
    Prefix(AhoCorasick),
    /// At the start of the text and after every `\n`: the pattern begins with `(?m)^`.
    Lines,
}

impl Starts {
    fn of(superset: &str) -> Option<Starts> {
        match literals::start(superset)? {
            literals::Start::Prefix(prefix) => {
                let ac = AhoCorasickBuilder::new().ascii_case_insensitive(true).match_kind(MatchKind::Standard).build([prefix]);
                ac.ok().map(Starts::Prefix)
            }
            literals::Start::LineStart => Some(Starts::Lines),
        }
    }

    /// The candidate start positions in `text`, ascending (repeats possible).
    fn positions<'t>(&'t self, text: &'t [u8]) -> Box<dyn Iterator<Item = usize> + 't> {
        match self {
            Starts::Prefix(ac) => Box::new(ac.find_overlapping_iter(text).map(|m| m.start())),
            Starts::Lines => Box::new(std::iter::once(0).chain(text.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))),
        }
    }

    /// Failed anchored tries before the rest of a text is searched unanchored (each try has its
    /// own backtrack limit, an unanchored search one for all). Most header blocks have fewer
    /// lines than [`LINE_TRIES`], so a `(?m)^` rule is tried at each of them.
    fn tries(&self) -> usize {
        match self {
            Starts::Prefix(_) => ANCHORED_TRIES,
            Starts::Lines => LINE_TRIES,
        }
    }
}

/// A backtracking (fancy-regex) pattern, compiled when its superset first matches. Compiled,
/// each holds about 100 KB (22 MB for the 222 of SpamAssassin's stock rules); on the 6,046
/// messages of the SpamAssassin public corpus 88 of them were never needed (9 MB), because their
/// superset never matched or their rule was never a candidate. The pattern is compiled once at
/// load to report errors then, and again on first use (the same pattern and options, so that
/// cannot fail differently; if it did, the rule would count no match).
pub struct Backtracking {
    pattern: String,
    compiled: OnceLock<Option<fancy_regex::Regex>>,
}

impl Backtracking {
    /// Checks `pattern` and keeps it for later, made atomic where that changes nothing but the
    /// backtracking (see [`possessive`]).
    fn new(pattern: &str) -> Result<Backtracking, fancy_regex::Error> {
        let rewritten = possessive::rewrite(pattern).filter(|p| Backtracking::build(p).is_ok());
        let pattern = match rewritten {
            Some(p) => p,
            None => {
                Backtracking::build(pattern)?;
                pattern.to_string()
            }
        };
        Ok(Backtracking { pattern, compiled: OnceLock::new() })
    }

    /// Compiles `pattern` as every backtracking pattern of the rule engine is compiled: bytes
    /// with ASCII classes (Perl's semantics on octets), [`BACKTRACK_LIMIT`], small delegate caches.
    pub(super) fn build(pattern: &str) -> Result<fancy_regex::Regex, fancy_regex::Error> {
        fancy_regex::RegexBuilder::new(pattern)
            .bytes_mode(fancy_regex::BytesMode::Ascii)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(REGEX_SIZE_LIMIT)
            .delegate_dfa_size_limit(BACKTRACKING_DFA_SIZE_LIMIT)
            .build()
    }

    /// The compiled regex, compiling it on first use.
    fn regex(&self) -> Option<&fancy_regex::Regex> {
        self.compiled.get_or_init(|| Backtracking::build(&self.pattern).ok()).as_ref()
    }

    /// Whether it has been compiled (tests).
    #[cfg(test)]
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }
}

impl Matcher {
    /// Matches in `text`, at most `max` (non-overlapping, leftmost-first like Perl's //g).
    pub fn count(&self, scratch: &mut Scratch, text: &[u8], max: u32) -> u32 {
        match self {
            Matcher::Plain(re) => {
                if max <= 1 {
                    return u32::from(re.is_match(scratch, text));
                }
                re.count(scratch, text, max as usize) as u32
            }
            Matcher::Fancy { re, superset, starts } => {
                if !superset.is_match(scratch, text) {
                    return 0;
                }
                let Some(re) = re.regex() else { return 0 };
                if let Some(starts) = starts {
                    return prefix_count(re, superset, scratch, starts, text, max);
                }
                if max <= 1 {
                    return u32::from(re.is_match(text).unwrap_or(false));
                }
                re.find_iter(text).take(max as usize).take_while(Result::is_ok).count() as u32
            }
        }
    }
}

/// Failed anchored tries at a prefix before [`prefix_count`] searches the rest of a text unanchored.
const ANCHORED_TRIES: usize = 32;
/// The same at line starts.
const LINE_TRIES: usize = 256;

/// Counts `re`'s non-overlapping matches in `text` (at most `max`) by trying it anchored only
/// where a match can start (`starts`: its prefix occurs, or a line starts) and its `superset`
/// matches from there (a lazy-DFA search; `re` cannot match where it does not, so the place
/// counts as a failed try without backtracking: `__PCT_FOR_YOU_3` starts at every "you" but
/// matches at few). Every match begins there, and the places are tried in order, so this finds
/// exactly the matches of an unanchored search, without the backtracker starting (and failing)
/// at every other position:
/// SpamAssassin's backreference rules over all header fields (`__TO_EQ_FROM_1`,
/// `__SUBJ_HAS_TO_1`, …) spent most of their time there (measured 3–4× faster this way), and
/// `(?m)^` rules such as `__RAND_HEADER` 5× less at line starts. After [`ANCHORED_TRIES`] (at a
/// prefix) or [`LINE_TRIES`] (at line starts) failed tries the rest is searched unanchored, so
/// the work stays within a bounded number of backtrack limits. A search that hits the backtrack
/// limit counts as no match, as before (a place the superset rules out is not tried, so it
/// cannot reach the limit).
fn prefix_count(re: &fancy_regex::Regex, superset: &Re, scratch: &mut Scratch, starts: &Starts, text: &[u8], max: u32) -> u32 {
    let (mut count, mut pos, mut failed) = (0u32, 0usize, 0usize);
    for start in starts.positions(text) {
        if count >= max {
            break;
        }
        if start < pos {
            continue;
        }
        let input = fancy_regex::RegexInput::new(text).from_pos(start);
        if failed >= starts.tries() {
            let rest = re.find_iter_input(input).take((max - count) as usize).take_while(Result::is_ok).count();
            return count + rest as u32;
        }
        if !superset.matches_at(scratch, text, start) {
            failed += 1;
            continue;
        }
        match re.find_input(input.anchored(true)) {
            Ok(Some(m)) => {
                count += 1;
                pos = if m.end() > m.start() { m.end() } else { m.end() + 1 };
            }
            Ok(None) => failed += 1,
            Err(_) => break,
        }
    }
    count
}

/// A rule over text segments (body lines, rawbody chunks, URIs, the full message).
pub struct TextRule {
    pub id: usize,
    /// None when the rule's set decides it alone: it is a candidate only where its set matched,
    /// and that is its one hit (see [`AlwaysSet`] and [`JoinedSet`]).
    pub matcher: Option<Matcher>,
    pub max: u32,
    pub nosubject: bool,
}

/// All rules of one text type with their prefilter.
#[derive(Default)]
pub struct TextGroup {
    pub rules: Vec<TextRule>,
    /// Picks the rules with literal sets that can match a segment.
    pub prefilter: Option<Prefilter>,
    /// Rules (indexes into `rules`) without a literal set and not in a set: always run.
    pub always: Vec<usize>,
    /// Rules without a literal set whose patterns can be searched over all the segments joined,
    /// a few per RegexSet (see [`JoinedSet`]).
    pub joined_sets: Vec<JoinedSet>,
    /// The other rules without a literal set, a few per RegexSet of their supersets.
    pub always_sets: Vec<AlwaysSet>,
}

/// Plain rules without a literal set, searched once per message over their group's segments
/// joined by `separator`, a byte none of their patterns can consume nor tell from a segment's
/// edge (see `joined`): the set's answer over the joined text is its answer over the segments,
/// so a rule counting one hit is decided by it (no matcher of its own), and a rule counting
/// more counts its matches in the joined text, which are its matches in the segments.
pub struct JoinedSet {
    pub set: Set,
    pub rules: Vec<usize>,
    pub separator: u8,
    /// The rules are `nosubject` ones: the text starts after the subject.
    pub nosubject: bool,
}

/// One pass of `set` over a segment picks which of `rules` can match there at all.
///
/// A few rules per set (at most [`ALWAYS_SET_SIZE`]) so each set's lazy DFA stays within its
/// cache: with the stock SpamAssassin rules the body has 164 rules without a literal, many of
/// them ReplaceTags expansions of 5–160 KB; as one set its DFA cache thrashed on every message
/// and the search fell back to the PikeVM (80 ms per message on real mail); in sets of 8 (now 4),
/// every set stays a warm DFA (0.5 ms).
///
/// For a plain (non-backtracking) rule that counts at most one hit, the set's answer is the
/// rule's answer (its pattern in the set is the rule's own): the rule keeps no matcher of its
/// own ([`TextRule::matcher`] is None), so it is neither searched twice nor compiled twice (the
/// largest ReplaceTags rules take ~10 MB each compiled).
///
/// A set whose patterns cannot tell a segment's edges from the middle of a text (no `\A`, `\z`,
/// or `^`/`$` outside multi-line mode) is `joinable`: whatever it matches in one segment, it also
/// matches in all the segments joined by newlines, so one pass over the joined text rules it out
/// for every segment of the message at once (most sets match nothing in most messages).
pub struct AlwaysSet {
    pub set: Set,
    pub rules: Vec<usize>,
    pub joinable: bool,
}

/// Rules per [`AlwaysSet`] (measured on the SpamAssassin corpus with the stock rules: 4, 8 and 16
/// equally fast once warm; 32 and more need far larger DFA caches to stay off the PikeVM; 4
/// keeps each set's DFA within [`SET_DFA_SIZE_LIMIT`]).
const ALWAYS_SET_SIZE: usize = 4;
/// Most pattern text (as written in the rule files, after ReplaceTags) in one set of several
/// rules: a larger pattern gets a set of its own. SpamAssassin's `__FILL_THIS_FORM_*` patterns
/// (about 3 KB each, optional words around 80 alternatives) made one set whose lazy DFA filled
/// its 8 MB cache and kept building states on every message; apart, their sets cost 4 % fewer
/// instructions for the whole evaluation (callgrind over 300 real messages).
const SET_PATTERN_BYTES: usize = 2 * 1024;

pub struct HeaderRule {
    pub id: usize,
    pub matcher: Matcher,
    pub negate: bool,
    pub if_unset: Option<String>,
    pub max: u32,
}

/// The header rules over one field (or pseudo-field), with a literal prefilter: a rule whose
/// pattern needs a literal of each of a few sets (`literals::study` of its superset) is tried
/// only when the value has them, found for all rules in one case-blind Aho-Corasick pass (see
/// `prefilter`); the others are always tried. A rule not tried matches nothing (so a negated one, `!~`, hits).
#[derive(Default)]
pub struct HeaderGroup {
    pub rules: Vec<HeaderRule>,
    prefilter: Option<Prefilter>,
    /// Rules tried on every value (no required literal, or no automaton).
    always: Vec<usize>,
}

impl HeaderGroup {
    fn build(pending: Vec<PendingHeader>) -> HeaderGroup {
        let mut g = HeaderGroup::default();
        let mut literals = prefilter::Builder::default();
        for (k, (rule, required)) in pending.into_iter().enumerate() {
            if required.is_empty() {
                g.always.push(k);
            }
            literals.add(k, &required);
            g.rules.push(rule);
        }
        match literals.build() {
            Ok(prefilter) => g.prefilter = prefilter,
            Err(mut rules) => g.always.append(&mut rules),
        }
        g
    }

    /// Marks in `tried` (one flag per rule) the rules worth trying on `text`.
    pub fn candidates(&self, text: &[u8], seen: &mut Seen, tried: &mut Vec<bool>) {
        tried.clear();
        tried.resize(self.rules.len(), false);
        for &k in &self.always {
            tried[k] = true;
        }
        if let Some(prefilter) = &self.prefilter {
            prefilter.candidates(text, seen, |k| tried[k] = true);
        }
    }
}

pub struct Compiled {
    /// Network `eval:` rules answered by moat's own filters (see `filtereval`).
    pub filter_evals: Vec<(usize, FilterEval)>,
    /// Per meta (same order as `metas`): the uncertain rules it reads, if any; it is unknown
    /// (NaN, never reported) when one of them is.
    pub meta_unknown_if: Vec<Option<Box<[usize]>>>,
    pub names: Vec<String>,
    pub scores: Vec<f64>,
    pub descriptions: Vec<Option<String>>,
    pub reportable: Vec<bool>,
    /// Rule has a matcher or expression (not inert).
    pub runs: Vec<bool>,
    pub needed: Vec<bool>,
    /// Per rule: for a text rule (body, rawbody, uri, full), the most hits it counts; None for
    /// the others (see `prune`).
    pub text_caps: Vec<Option<u32>>,
    pub headers: Vec<(HeaderKey, HeaderGroup)>,
    /// mimeheader rules: matched against each MIME part's header of that name.
    pub mime: Vec<(HeaderKey, Vec<HeaderRule>)>,
    pub exists: Vec<(usize, String)>,
    pub body: TextGroup,
    pub rawbody: TextGroup,
    pub uri: TextGroup,
    pub full: TextGroup,
    /// Rules whose test is an `eval:` function moat runs itself.
    pub evals: Vec<(usize, EvalFn)>,
    /// What the `eval:` functions read from the rule files (free mail domains, …).
    pub eval_config: EvalConfig,
    /// Metas in dependency order.
    pub metas: Vec<(usize, Expr)>,
    pub hash: String,
    pub runnable: usize,
    /// Rule name → index into the vectors above.
    pub index: HashMap<String, usize>,
    pub unruled_scores: HashMap<String, f64>,
    pub unruled_descriptions: HashMap<String, String>,
    /// Search caches of the regexes above, shared by the rule threads and bounded together.
    pub caches: SearchCaches,
}

/// A compiled text rule, what was learnt of its superset pattern, and that pattern.
type PendingText = (TextRule, literals::Study, String);
/// A compiled header rule and the literal sets its pattern needs (see `literals`).
type PendingHeader = (HeaderRule, Vec<LiteralSet>);

struct Builder<'a> {
    cfg: &'a Config,
    ids: HashMap<String, usize>,
    names: Vec<String>,
    runnable: Vec<bool>,
    errors: Vec<RuleError>,
    report: LoadReport,
    /// Header rules with their patterns' required literals (see [`HeaderGroup`]).
    headers: BTreeMap<HeaderKey, Vec<PendingHeader>>,
    mime: BTreeMap<HeaderKey, Vec<HeaderRule>>,
    exists: Vec<(usize, String)>,
    text: HashMap<Kind, Vec<PendingText>>,
    metas: Vec<(usize, Expr, Origin)>,
    evals: Vec<(usize, EvalFn)>,
    filter_evals: Vec<(usize, FilterEval)>,
    /// Each `check_rbl` set's zone, for the `check_rbl_sub` rules of the set.
    rbl_sets: RblSets,
    /// Rules skipped for `tflags net` (and metas depending on them).
    net: HashSet<usize>,
    slots: Slots,
}

/// Compiles a configuration; all errors or the compiled set.
pub fn compile(cfg: Config) -> Result<(Compiled, LoadReport), Vec<RuleError>> {
    let mut b = Builder {
        cfg: &cfg,
        ids: HashMap::new(),
        names: Vec::new(),
        runnable: Vec::new(),
        errors: cfg.errors.clone(),
        report: LoadReport {
            skipped: cfg.skipped.clone(),
            warnings: cfg.warnings.clone(),
            ignored_directives: cfg.ignored_directives.clone(),
            files: cfg.files.len(),
            ..LoadReport::default()
        },
        headers: BTreeMap::new(),
        mime: BTreeMap::new(),
        exists: Vec::new(),
        text: HashMap::new(),
        metas: Vec::new(),
        evals: Vec::new(),
        filter_evals: Vec::new(),
        rbl_sets: rbl_sets(&cfg),
        net: HashSet::new(),
        slots: Slots::default(),
    };
    for def in &cfg.rules {
        b.id(&def.name, true);
    }
    let mut inert: Vec<&String> = cfg.inert.keys().collect();
    inert.sort();
    for name in inert {
        b.id(name, false);
    }
    // Rules defined only in inactive if/ifplugin branches exist for metas, as never hit.
    let mut inactive: Vec<&String> = cfg.inactive_names.iter().collect();
    inactive.sort();
    for name in inactive {
        b.id(name, false);
    }
    for def in &cfg.rules {
        if def.kind != Kind::Meta {
            b.pattern_rule(def);
        }
    }
    for def in &cfg.rules {
        if def.kind == Kind::Meta {
            b.meta_rule(def);
        }
    }
    let order = b.meta_order();
    b.inherit_skips(&order);
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    Ok(b.finish(order))
}

impl Builder<'_> {
    fn id(&mut self, name: &str, runnable: bool) -> usize {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.names.len();
        self.ids.insert(name.to_string(), i);
        self.names.push(name.to_string());
        self.runnable.push(runnable);
        i
    }

    fn skip(&mut self, def: &RuleDef, reason: String) {
        self.report.skipped.push(def.origin.skipped(def.kind.as_str(), &def.name, reason));
        if let Some(&i) = self.ids.get(&def.name) {
            self.runnable[i] = false;
        }
    }

    fn tflags(&self, name: &str) -> TFlags {
        self.cfg.tflags.get(name).cloned().unwrap_or_default()
    }

    fn pattern_rule(&mut self, def: &RuleDef) {
        if matches!(def.kind, Kind::Eval { .. })
            && let Some(f) = FilterEval::parse(&def.text)
        {
            match f.resolve(&self.rbl_sets, &self.cfg.uri_lists) {
                Ok(f) => self.filter_evals.push((self.ids[&def.name], f)),
                Err(reason) => self.skip(def, reason),
            }
            return;
        }
        if self.tflags(&def.name).net {
            self.skip_net(def, "tflags net: network test (moat's DNS filters do network checks)".into());
            return;
        }
        if let Kind::Eval { rawbody } = def.kind {
            match EvalFn::parse(&def.text).map(|f| f.reading_rawbody(rawbody)) {
                Ok(f) => self.evals.push((self.ids[&def.name], f)),
                Err(reason) => self.skip(def, reason),
            }
            return;
        }
        let text = if self.cfg.replace_rules.contains(&def.name) { replace::expand(&def.text, self.cfg) } else { def.text.clone() };
        let result =
            if matches!(def.kind, Kind::Header | Kind::MimeHeader) { self.header_rule(def, &text) } else { self.text_rule(def, &text) };
        match result {
            Ok(()) => {}
            Err(TranslateError::Unsupported(r)) => self.skip(def, format!("unsupported regex construct: {r}")),
            Err(TranslateError::Syntax(m)) => {
                self.errors.push(def.origin.error(format!("{} rule {}: {m}", def.kind.as_str(), def.name)));
            }
        }
    }

    fn max_hits(&self, name: &str) -> u32 {
        let t = self.tflags(name);
        if t.multiple { t.maxhits.unwrap_or(1000) } else { 1 }
    }

    fn header_rule(&mut self, def: &RuleDef, text: &str) -> Result<(), TranslateError> {
        let id = self.ids[&def.name];
        match header::parse(text)? {
            HeaderSpec::Exists(name) if def.kind == Kind::MimeHeader => {
                let _ = name;
                return Err(TranslateError::Syntax("mimeheader does not support exists:".into()));
            }
            HeaderSpec::Exists(name) => self.exists.push((id, name)),
            HeaderSpec::Match { mut key, negate, body, flags, if_unset } => {
                let (matcher, superset) = self.matcher(&body, &flags)?;
                let max = self.max_hits(&def.name);
                let rule = HeaderRule { id, matcher, negate, if_unset, max };
                if def.kind == Kind::MimeHeader {
                    key.name = key.name.to_ascii_lowercase();
                    self.mime.entry(key).or_default().push(rule);
                } else {
                    let required = literals::study(&superset).required;
                    self.headers.entry(key).or_default().push((rule, required));
                }
            }
        }
        Ok(())
    }

    fn text_rule(&mut self, def: &RuleDef, text: &str) -> Result<(), TranslateError> {
        let lit = perlre::split_literal(text)?;
        if !lit.rest.trim().is_empty() {
            return Err(TranslateError::Syntax(format!("unexpected text after the regex: {:?}", lit.rest.trim())));
        }
        let (matcher, superset) = self.matcher(&lit.body, lit.flags)?;
        let study = literals::study(&superset);
        let rule = TextRule {
            id: self.ids[&def.name],
            matcher: Some(matcher),
            max: self.max_hits(&def.name),
            nosubject: self.tflags(&def.name).nosubject,
        };
        self.text.entry(def.kind).or_default().push((rule, study, superset));
        Ok(())
    }

    /// Translates and compiles; returns the matcher and the superset pattern.
    fn matcher(&mut self, body: &str, flags: &str) -> Result<(Matcher, String), TranslateError> {
        let t = perlre::translate(body, flags)?;
        let superset = self.slots.regex(&t.superset, REGEX_SIZE_LIMIT, DFA_SIZE_LIMIT).map_err(|e| match t.engine {
            Engine::Plain => TranslateError::Syntax(format!("regex does not compile: {}", first_line(&e))),
            Engine::Fancy => TranslateError::Unsupported(format!("regex not accepted by the backtracking engine: {}", first_line(&e))),
        })?;
        let m = match t.engine {
            Engine::Plain => Matcher::Plain(superset),
            Engine::Fancy => {
                let re = Backtracking::new(&t.pattern).map_err(|e| {
                    TranslateError::Unsupported(format!("regex not accepted by the backtracking engine: {}", first_line(&e.to_string())))
                })?;
                self.report.backtracking_rules += 1;
                Matcher::Fancy { re, superset, starts: Starts::of(&t.superset) }
            }
        };
        Ok((m, t.superset))
    }

    fn skip_net(&mut self, def: &RuleDef, reason: String) {
        self.skip(def, reason);
        if let Some(&i) = self.ids.get(&def.name) {
            self.net.insert(i);
        }
    }

    /// Metas flagged `net` or reading a net rule are skipped too (SpamAssassin's local mode
    /// does not run them), and so are metas reading any other rule moat does not run (an
    /// `eval:` rule, a rule of an inactive `ifplugin` branch, an unsupported pattern): reading it as
    /// "not hit" would make `!RULE` always true, where SpamAssassin evaluates it. `order` has
    /// dependencies first, so inheritance is transitive.
    fn inherit_skips(&mut self, order: &[usize]) {
        for &k in order {
            let (id, _, origin) = &self.metas[k];
            let id = *id;
            let mut deps = Vec::new();
            self.metas[k].1.deps(&mut deps);
            let reason = if self.tflags(&self.names[id]).net {
                Some("tflags net: network test (moat's DNS filters do network checks)".to_string())
            } else {
                deps.iter()
                    .find(|d| self.net.contains(d))
                    .map(|d| format!("tflags net inherited: depends on the network test {}", self.names[*d]))
            };
            let net = reason.is_some();
            let reason = reason.or_else(|| {
                deps.iter().find(|d| !self.runnable[**d]).map(|d| format!("depends on {}, which moat does not run", self.names[*d]))
            });
            if let Some(reason) = reason {
                let origin = origin.clone();
                self.report.skipped.push(origin.skipped("meta", &self.names[id], reason));
                if net {
                    self.net.insert(id);
                }
                self.runnable[id] = false;
            }
        }
    }

    fn meta_rule(&mut self, def: &RuleDef) {
        let ids = &self.ids;
        let runnable = &self.runnable;
        let names = &self.names;
        let mut resolve = |n: &str| ids.get(n).copied().ok_or_else(|| format!("undefined rule {n}"));
        let mut glob = |g: &str| -> Vec<usize> { (0..names.len()).filter(|&i| runnable[i] && meta::glob_match(g, &names[i])).collect() };
        match meta::parse(&def.text, &mut resolve, &mut glob) {
            Ok(expr) => {
                let id = self.ids[&def.name];
                self.metas.push((id, expr, def.origin.clone()));
            }
            Err(m) => self.errors.push(def.origin.error(format!("meta rule {}: {m}", def.name))),
        }
    }

    /// Orders metas so dependencies come first; every cycle is an error.
    fn meta_order(&mut self) -> Vec<usize> {
        let index: HashMap<usize, usize> = self.metas.iter().enumerate().map(|(k, (id, _, _))| (*id, k)).collect();
        let mut state = vec![0u8; self.metas.len()];
        let mut order = Vec::with_capacity(self.metas.len());
        for start in 0..self.metas.len() {
            if state[start] != 0 {
                continue;
            }
            // Iterative DFS: (meta, next dependency position).
            let mut stack: Vec<(usize, usize, Vec<usize>)> = vec![(start, 0, self.deps_of(start, &index))];
            state[start] = 1;
            while let Some((m, pos, deps)) = stack.last_mut() {
                if *pos < deps.len() {
                    let d = deps[*pos];
                    *pos += 1;
                    match state[d] {
                        0 => {
                            state[d] = 1;
                            let dd = self.deps_of(d, &index);
                            stack.push((d, 0, dd));
                        }
                        1 => {
                            let path: Vec<&str> = stack
                                .iter()
                                .skip_while(|(x, _, _)| *x != d)
                                .map(|(x, _, _)| self.names[self.metas[*x].0].as_str())
                                .chain(std::iter::once(self.names[self.metas[d].0].as_str()))
                                .collect();
                            let o = &self.metas[d].2;
                            self.errors.push(o.error(format!("meta rule dependency cycle: {}", path.join(" -> "))));
                        }
                        _ => {}
                    }
                } else {
                    let m = *m;
                    state[m] = 2;
                    order.push(m);
                    stack.pop();
                }
            }
        }
        order
    }

    fn deps_of(&self, k: usize, index: &HashMap<usize, usize>) -> Vec<usize> {
        let mut d = Vec::new();
        self.metas[k].1.deps(&mut d);
        d.into_iter().filter_map(|id| index.get(&id).copied()).collect()
    }

    fn finish(mut self, order: Vec<usize>) -> (Compiled, LoadReport) {
        let n = self.names.len();
        let mut scores = vec![0.0; n];
        let mut descriptions = vec![None; n];
        for (i, name) in self.names.iter().enumerate() {
            let sign = if self.tflags(name).nice { -1.0 } else { 1.0 };
            scores[i] = match self.cfg.scores.get(name) {
                Some((s, _)) => *s,
                None if name.starts_with("__") => 0.0,
                None if name.starts_with("T_") => 0.01 * sign,
                None => sign,
            };
            descriptions[i] = self.cfg.describes.get(name).cloned();
        }
        // A filter's answer is that filter's own symbol already: never reported twice.
        let mut uncertain = vec![false; n];
        for (id, _) in &self.filter_evals {
            uncertain[*id] = true;
        }
        let reportable: Vec<bool> =
            (0..n).map(|i| self.runnable[i] && !uncertain[i] && !self.names[i].starts_with("__") && scores[i] != 0.0).collect();
        let metas: Vec<(usize, Expr)> =
            order.into_iter().filter(|&k| self.runnable[self.metas[k].0]).map(|k| (self.metas[k].0, self.metas[k].1.clone())).collect();
        let meta_unknown_if = unknown_inputs(&metas, &mut uncertain);
        let runs = |id: &usize| self.runnable[*id];
        self.report.filter_answered = self.filter_evals.iter().filter(|(id, f)| runs(id) && !f.reads_lists()).count();
        self.report.list_zones = list_zones(self.filter_evals.iter().filter(|(id, _)| runs(id)));
        let needed = needed(&reportable, &metas, n);
        let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
        for def in &self.cfg.rules {
            if self.ids.get(&def.name).is_some_and(|&i| self.runnable[i]) {
                // Body and rawbody eval rules are counted together, as the report names them.
                let kind = if let Kind::Eval { .. } = def.kind { Kind::Eval { rawbody: false } } else { def.kind };
                *kinds.entry(kind).or_default() += 1;
            }
        }
        self.report.loaded = kinds.values().sum();
        self.report.loaded_by_kind = kinds;
        for sk in &self.report.skipped {
            *self.report.skipped_by_kind.entry(sk.kind.clone()).or_default() += 1;
        }
        let index: HashMap<String, usize> = self.names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        // Scores and descriptions for names without a rule: symbols of other moat filters.
        let unruled_scores: HashMap<String, f64> =
            self.cfg.scores.iter().filter(|(n, _)| !index.contains_key(*n)).map(|(n, (s, _))| (n.clone(), *s)).collect();
        let unruled_descriptions: HashMap<String, String> =
            self.cfg.describes.iter().filter(|(n, _)| !index.contains_key(*n)).map(|(n, d)| (n.clone(), d.clone())).collect();
        let mut groups: HashMap<Kind, TextGroup> = HashMap::new();
        for (kind, rules) in std::mem::take(&mut self.text) {
            let (group, pre) = build_group(rules, &mut self.slots);
            self.report.prefiltered_rules += pre;
            groups.insert(kind, group);
        }
        let mut take = |k| groups.remove(&k).unwrap_or_default();
        let (body, rawbody, uri, full) = (take(Kind::Body), take(Kind::Rawbody), take(Kind::Uri), take(Kind::Full));
        let mut text_caps = vec![None; n];
        for rule in [&body, &rawbody, &uri, &full].into_iter().flat_map(|g| &g.rules) {
            text_caps[rule.id] = Some(rule.max);
        }
        let compiled = Compiled {
            body,
            rawbody,
            uri,
            full,
            text_caps,
            headers: std::mem::take(&mut self.headers).into_iter().map(|(key, rules)| (key, HeaderGroup::build(rules))).collect(),
            mime: std::mem::take(&mut self.mime).into_iter().collect(),
            exists: std::mem::take(&mut self.exists),
            evals: std::mem::take(&mut self.evals),
            filter_evals: std::mem::take(&mut self.filter_evals),
            meta_unknown_if,
            eval_config: EvalConfig {
                freemail: self.cfg.freemail.clone(),
                addrlists: self.cfg.addrlists.clone(),
                bounce_relays: self.cfg.bounce_relays.clone(),
            },
            metas,
            hash: hash_files(&self.cfg.files),
            runnable: self.report.loaded,
            index,
            unruled_scores,
            unruled_descriptions,
            caches: self.slots.caches(),
            names: self.names,
            scores,
            descriptions,
            reportable,
            runs: self.runnable,
            needed,
        };
        (compiled, self.report)
    }
}

/// Each `check_rbl` set's zone and scope, from the rules that call it (the first one wins).
fn rbl_sets(cfg: &Config) -> RblSets {
    let mut sets = RblSets::new();
    for def in cfg.rules.iter().filter(|d| matches!(d.kind, Kind::Eval { .. })) {
        if let Some((set, zone, scope)) = FilterEval::parse(&def.text).as_ref().and_then(FilterEval::rbl_set) {
            sets.entry(set.to_string()).or_insert((zone.to_string(), scope));
        }
    }
    sets
}

/// The DNS-list zones the rules that run read, each with how many rules read it.
fn list_zones<'a>(evals: impl Iterator<Item = &'a (usize, FilterEval)>) -> BTreeMap<String, usize> {
    let mut zones = BTreeMap::new();
    for (_, f) in evals {
        if let FilterEval::Rbl { test, .. } | FilterEval::Listed(test) = f {
            *zones.entry(test.zone.clone()).or_default() += 1;
        }
    }
    zones
}

/// For each meta (in `metas`' order), the rules it reads when one of them may be unknown at
/// evaluation (a [`FilterEval`] the filter did not answer, or a meta over one): the meta is
/// unknown whenever one of them is. `uncertain` starts with the filter evals and gains the metas.
fn unknown_inputs(metas: &[(usize, Expr)], uncertain: &mut [bool]) -> Vec<Option<Box<[usize]>>> {
    // Metas are in dependency order, so one pass carries uncertainty upwards.
    metas
        .iter()
        .map(|(id, expr)| {
            let mut deps = Vec::new();
            expr.deps(&mut deps);
            deps.retain(|&d| uncertain.get(d).copied().unwrap_or(false));
            deps.dedup();
            if deps.is_empty() {
                return None;
            }
            uncertain[*id] = true;
            Some(deps.into_boxed_slice())
        })
        .collect()
}

/// Rules whose value can affect a reported hit: reportable ones and what their metas read.
fn needed(reportable: &[bool], metas: &[(usize, Expr)], n: usize) -> Vec<bool> {
    let mut needed = reportable.to_vec();
    needed.resize(n, false);
    // Metas are in dependency order, so walking them backwards propagates need downwards.
    for (id, expr) in metas.iter().rev() {
        if needed[*id] {
            let mut d = Vec::new();
            expr.deps(&mut d);
            for x in d {
                if x < n {
                    needed[x] = true;
                }
            }
        }
    }
    needed
}

/// A rule of a set: its index in the group, the existence form of its pattern, and the length
/// of that pattern as written.
type SetMember = (usize, Hir, usize);

fn build_group(rules: Vec<PendingText>, slots: &mut Slots) -> (TextGroup, usize) {
    let mut g = TextGroup::default();
    let mut literals = prefilter::Builder::default();
    let mut always: Vec<(usize, String, literals::Study)> = Vec::new();
    for (k, (rule, study, superset)) in rules.into_iter().enumerate() {
        literals.add(k, &study.required);
        if study.required.is_empty() {
            always.push((k, superset, study));
        }
        g.rules.push(rule);
    }
    let prefiltered = literals.rules();
    let mut by_separator: BTreeMap<(bool, u8), Vec<SetMember>> = BTreeMap::new();
    let mut per_segment = Vec::new();
    for (k, superset, study) in always {
        // A set only says whether its patterns match: they need not be whole (see `existence`).
        let Some(pattern) = existence::existence_form(&superset) else {
            g.always.push(k);
            continue;
        };
        let separator = study.separators.preferred();
        match separator.filter(|_| matches!(g.rules[k].matcher, Some(Matcher::Plain(_)))) {
            Some(separator) => by_separator.entry((g.rules[k].nosubject, separator)).or_default().push((k, pattern, superset.len())),
            None => per_segment.push((k, pattern, superset.len(), study.edge_blind)),
        }
    }
    for ((nosubject, separator), rules) in by_separator {
        for chunk in set_chunks(&rules, |(_, _, len)| *len) {
            let (rules, patterns): (Vec<usize>, Vec<Hir>) = chunk.iter().map(|(k, p, _)| (*k, p.clone())).unzip();
            match slots.set_of(&patterns, REGEX_SIZE_LIMIT * 4, SET_DFA_SIZE_LIMIT) {
                Ok(set) => {
                    for &k in &rules {
                        if set_decides(&g.rules[k]) {
                            g.rules[k].matcher = None;
                        }
                    }
                    g.joined_sets.push(JoinedSet { set, rules, separator, nosubject });
                }
                Err(_) => g.always.extend(rules),
            }
        }
    }
    let (joinable, anchored): (Vec<_>, Vec<_>) = per_segment.into_iter().partition(|(_, _, _, edge_blind)| *edge_blind);
    let size = |(_, _, len, _): &(usize, Hir, usize, bool)| *len;
    let chunks =
        set_chunks(&joinable, size).into_iter().map(|c| (c, true)).chain(set_chunks(&anchored, size).into_iter().map(|c| (c, false)));
    for (chunk, joinable) in chunks {
        let (rules, patterns): (Vec<usize>, Vec<Hir>) = chunk.iter().map(|(k, p, _, _)| (*k, p.clone())).unzip();
        let built = slots.set_of(&patterns, REGEX_SIZE_LIMIT * 4, SET_DFA_SIZE_LIMIT);
        match built {
            Ok(set) => {
                for &k in &rules {
                    if set_decides(&g.rules[k]) {
                        g.rules[k].matcher = None;
                    }
                }
                g.always_sets.push(AlwaysSet { set, rules, joinable });
            }
            Err(_) => g.always.extend(rules),
        }
    }
    // The rules the prefilter picks (none when the automaton failed to build).
    match literals.build() {
        Ok(prefilter) => {
            g.prefilter = prefilter;
            (g, prefiltered)
        }
        Err(mut rules) => {
            g.always.append(&mut rules);
            (g, 0)
        }
    }
}

/// Splits rules into runs for one set each: at most [`ALWAYS_SET_SIZE`] patterns, and no more
/// than [`SET_PATTERN_BYTES`] of pattern text unless one pattern is that long alone.
fn set_chunks<T>(rules: &[T], len: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, rule) in rules.iter().enumerate() {
        let n = len(rule);
        if i > start && (i - start == ALWAYS_SET_SIZE || bytes + n > SET_PATTERN_BYTES) {
            chunks.push(&rules[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < rules.len() {
        chunks.push(&rules[start..]);
    }
    chunks
}

/// Whether a rule's pattern in an [`AlwaysSet`] or a [`JoinedSet`] answers for it: plain, at
/// most one hit.
fn set_decides(rule: &TextRule) -> bool {
    matches!(rule.matcher, Some(Matcher::Plain(_))) && rule.max <= 1
}

fn first_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.last().copied().unwrap_or("").to_string()
}

fn hash_files(files: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_take_a_few_rules_or_one_large_pattern() {
        let lens = [10, 10, 10, 10, 10, SET_PATTERN_BYTES, 10, SET_PATTERN_BYTES - 20, 10, 10, 5000];
        let chunks: Vec<Vec<usize>> = set_chunks(&lens, |n| *n).into_iter().map(<[usize]>::to_vec).collect();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 1, 1, 3, 1, 1], "{chunks:?}");
        assert!(set_chunks(&[] as &[usize], |n| *n).is_empty());
    }

    /// A backtracking pattern is checked at load but compiled only when its superset first
    /// matches; it then counts as before, and a bad one is refused at load.
    #[test]
    fn a_backtracking_pattern_is_compiled_when_first_needed() {
        let mut slots = Slots::default();
        let m = Matcher::Fancy {
            re: Backtracking::new(r"(?i)(\w+) \1").expect("compiles"),
            superset: slots.regex(r"(?i-u)\w+ \w+", 1 << 20, 1 << 20).expect("compiles"),
            starts: None,
        };
        let Matcher::Fancy { re, .. } = &m else { unreachable!() };
        let caches = slots.caches();
        let mut scratch = caches.take();
        assert_eq!(m.count(&mut scratch, b"single", 5), 0);
        assert!(!re.is_compiled(), "the superset did not match: not compiled");
        assert_eq!(m.count(&mut scratch, b"this is is the the end", 5), 2);
        assert!(re.is_compiled());
        assert_eq!(m.count(&mut scratch, b"no repeat here", 5), 0);
        assert!(Backtracking::new(r"(?<=a+)b(").is_err());
    }

    /// A link whose tags make the backtracker retry every length of every tag used to run out
    /// of its backtrack limit, which counted as no match and stopped the search before the
    /// real match further on; with those repetitions atomic it finishes and finds it.
    #[test]
    fn atomic_repetitions_keep_a_search_within_the_backtrack_limit() {
        let pattern = r"(?i)<a href=([^>\s]+)>(?:<[^>]+>\s*)*(?!\1)[a-z]+\.com\b";
        let superset = r"(?i-u)<a href=([^>\s]+)>(?:<[^>]+>\s*)*[a-z]+\.com\b";
        let tag = format!("<{}>", "b".repeat(1000));
        let text = format!("<a href=x>{}! <a href=y>z.com", tag.repeat(300));
        let as_written = Backtracking::build(pattern).expect("compiles");
        let first = as_written.find_input(fancy_regex::RegexInput::new(text.as_bytes()).anchored(true));
        assert!(first.is_err(), "as written, the first link exhausts the backtrack limit");
        let mut slots = Slots::default();
        let m = Matcher::Fancy {
            re: Backtracking::new(pattern).expect("compiles"),
            superset: slots.regex(superset, 1 << 20, 1 << 20).expect("compiles"),
            starts: Some(Starts::of(superset).expect("a literal prefix")),
        };
        let caches = slots.caches();
        let mut scratch = caches.take();
        assert_eq!(m.count(&mut scratch, text.as_bytes(), 5), 1);
    }
}
