//! Verdicts: evidence (named symbols and filter failures) × policy → one action. Pure code.
//!
//! Guarantees:
//! - `decide` is a pure function: same evidence and policy, same verdict; no I/O, no clock.
//! - every verdict keeps all its symbols with their scores, so the digest, the web UI,
//!   `moat scan` and the X-Spam headers can explain it;
//! - precedence (documented in README): a fail-closed filter failure tempfails unless some
//!   symbol forces a reject; otherwise the most severe forced action wins (a forced `accept`,
//!   e.g. from an allow list, only overrides the score); otherwise the score picks the action
//!   from the thresholds (reject ≥ quarantine ≥ tag). With filtering switched off for the
//!   recipient, only forced actions apply.
//! - `combine` never loses mail for anyone: when recipients disagree, the message is accepted
//!   and a recipient who wanted a reject gets it quarantined instead.

pub use crate::config::{Action, Stance};
use crate::config::{PolicyConfig, PolicyOverride};
use std::collections::BTreeMap;

/// A named piece of evidence from a filter, e.g. `SPF_FAIL` or a rule name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Symbol {
    pub name: String,
    /// Score from the score table (or the rule file); filled in by `decide`.
    pub score: f64,
    /// Free text for `moat scan`, the quarantine record and the message's owner (e.g. the virus
    /// name, a rule's description). It can quote the message (a listed link's host, a file
    /// name), so logs carry symbol names only and admins see details only where the domain's
    /// `admin_sees_subjects` allows.
    pub detail: Option<String>,
}

impl Symbol {
    pub fn new(name: impl Into<String>) -> Symbol {
        Symbol { name: name.into(), score: 0.0, detail: None }
    }

    pub fn with_detail(name: impl Into<String>, detail: impl Into<String>) -> Symbol {
        Symbol { name: name.into(), score: 0.0, detail: Some(detail.into()) }
    }

    pub fn scored(name: impl Into<String>, score: f64) -> Symbol {
        Symbol { name: name.into(), score, detail: None }
    }
}

/// A filter that could not give an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The symbol recorded for it, e.g. `CLAMAV_FAIL`, `DNS_TEMPFAIL`.
    pub symbol: String,
    pub stance: Stance,
    pub detail: String,
}

/// What one DNS list said about what moat asked it, for the rules that read lists
/// (SpamAssassin's `check_rbl*` and `check_uridnsbl`, see `ruleset::filtereval`). A zone with a
/// `ListLookup` was asked about everything it was meant to be asked about in that phase (the
/// client, or the sender's and the links' domains); a zone without one was not asked. It can
/// name the message's link domains: never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct ListLookup {
    /// The zone, lower-case, without the trailing dot.
    pub zone: String,
    pub kind: ListKind,
    pub answers: Vec<ListAnswer>,
}

/// What a zone is asked about: the client's address (DNSBL, DNSWL) or domains (URIBL, DBL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Client,
    Domains,
}

/// One item looked up in a list, and what came back.
#[derive(Debug, Clone, PartialEq)]
pub struct ListAnswer {
    pub item: ListedItem,
    /// The A records (empty: not listed); `None` when the query failed (timeout, SERVFAIL).
    pub records: Option<Vec<std::net::Ipv4Addr>>,
}

/// What was looked up.
#[derive(Debug, Clone, PartialEq)]
pub enum ListedItem {
    /// The connecting client's address.
    Client(std::net::IpAddr),
    /// A registrable domain: the envelope sender's, a link's, or both.
    Domain { name: String, sender: bool, link: bool },
}

/// Everything the filters found about one message.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub symbols: Vec<Symbol>,
    pub failures: Vec<Failure>,
    /// Header fields filters want added for every recipient (complete, CRLF-terminated).
    pub headers: Vec<String>,
    /// What the DNS lists said (see [`ListLookup`]).
    pub lists: Vec<ListLookup>,
}

impl Evidence {
    pub fn add(&mut self, symbol: Symbol) {
        self.symbols.push(symbol);
    }

    /// Adds everything `other` found (symbols, failures, headers, list answers).
    pub fn extend(&mut self, other: &Evidence) {
        self.symbols.extend(other.symbols.iter().cloned());
        self.failures.extend(other.failures.iter().cloned());
        self.headers.extend(other.headers.iter().cloned());
        self.lists.extend(other.lists.iter().cloned());
    }

    pub fn has(&self, name: &str) -> bool {
        self.symbols.iter().any(|s| s.name == name)
    }
}

/// Score thresholds and forced actions for one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub tag_at: f64,
    pub quarantine_at: f64,
    pub reject_at: f64,
    /// Symbols that force an action whatever the score, e.g. `CLAMAV_VIRUS` → reject.
    pub forced: BTreeMap<String, Action>,
    /// The recipient's spam filtering is on (viruses and other forced actions apply regardless).
    pub filtering: bool,
}

impl Default for Policy {
    fn default() -> Self {
        let (tag_at, quarantine_at, reject_at) = PolicyConfig::default().thresholds(None);
        Policy { tag_at, quarantine_at, reject_at, forced: BTreeMap::new(), filtering: true }
    }
}

impl Policy {
    /// The policy for a recipient of a domain with `over` (if any): the domain's value for each
    /// key it sets, else the global one; forced actions merge (built-in, then global, then the
    /// domain's, each able to replace the one before). Whether filtering is on for the recipient
    /// is the lists' business (`[[lists.domain]]`, `[[lists.user]]`).
    pub fn resolve(config: &PolicyConfig, over: Option<&PolicyOverride>) -> Policy {
        let (tag_at, quarantine_at, reject_at) = config.thresholds(over);
        let mut forced = builtin_forced();
        forced.extend(config.forced.clone());
        forced.extend(over.map(|o| o.forced.clone()).unwrap_or_default());
        Policy { tag_at, quarantine_at, reject_at, forced, filtering: true }
    }
}

/// Forced actions that hold unless the configuration says otherwise.
fn builtin_forced() -> BTreeMap<String, Action> {
    [("ALLOW_LIST", Action::Accept), ("BLOCK_LIST", Action::Reject), ("CLAMAV_VIRUS", Action::Reject)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The decision with its explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub action: Action,
    pub score: f64,
    /// Every symbol with its score, highest score first.
    pub symbols: Vec<Symbol>,
    /// Why: "score 12.3 >= 10", "CLAMAV_VIRUS forces reject", "CLAMAV_FAIL (fail closed)".
    pub reason: String,
    /// The symbol whose forced action decided, when one did (not the score).
    pub forced_by: Option<String>,
}

/// Scores symbols and decides. `score_of` gives a symbol's configured score (0 when unknown);
/// a symbol that already carries a non-zero score (a rule hit) keeps it.
pub fn decide(evidence: &Evidence, score_of: impl Fn(&str) -> f64, policy: &Policy) -> Verdict {
    let mut symbols: Vec<Symbol> =
        evidence.symbols.iter().map(|s| Symbol { score: if s.score != 0.0 { s.score } else { score_of(&s.name) }, ..s.clone() }).collect();
    for failure in &evidence.failures {
        symbols.push(Symbol { name: failure.symbol.clone(), score: score_of(&failure.symbol), detail: Some(failure.detail.clone()) });
    }
    let mut symbols = once_each(symbols);
    symbols.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
    let score = round2(symbols.iter().map(|s| s.score).sum());
    let (action, reason, forced_by) = choose(evidence, &symbols, score, policy);
    Verdict { action, score, symbols, reason, forced_by }
}

/// One symbol per name: a name reported twice (two filters finding the same thing, e.g. moat's
/// reverse-DNS filter and SpamAssassin's RDNS_NONE rule, each for its own hop) counts once, with
/// the highest of its scores and both details, as a SpamAssassin rule hits once per message.
fn once_each(symbols: Vec<Symbol>) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = Vec::with_capacity(symbols.len());
    for symbol in symbols {
        match out.iter_mut().find(|s| s.name == symbol.name) {
            None => out.push(symbol),
            Some(seen) => {
                seen.detail = match (seen.detail.take(), symbol.detail) {
                    (Some(a), Some(b)) if a != b => Some(format!("{a}; {b}")),
                    (a, b) => a.or(b),
                };
                seen.score = seen.score.max(symbol.score);
            }
        }
    }
    out
}

/// The action, why, and the symbol that forced it (if one did).
fn choose(evidence: &Evidence, symbols: &[Symbol], score: f64, policy: &Policy) -> (Action, String, Option<String>) {
    let forced = symbols
        .iter()
        .filter_map(|s| policy.forced.get(&s.name).map(|a| (*a, s.name.as_str())))
        .max_by_key(|(action, _)| severity(*action));
    if let Some((Action::Reject, name)) = forced {
        return (Action::Reject, format!("{name} forces reject"), Some(name.to_string()));
    }
    if let Some(failure) = evidence.failures.iter().find(|f| f.stance == Stance::FailClosed) {
        return (Action::Tempfail, format!("{} (fail closed)", failure.symbol), None);
    }
    if let Some((action, name)) = forced {
        return (action, format!("{name} forces {}", action.as_str()), Some(name.to_string()));
    }
    if !policy.filtering {
        return (Action::Accept, "filtering is off for this recipient".to_string(), None);
    }
    let thresholds = [(policy.reject_at, Action::Reject), (policy.quarantine_at, Action::Quarantine), (policy.tag_at, Action::Tag)];
    for (at, action) in thresholds {
        if score >= at {
            return (action, format!("score {score} >= {at}"), None);
        }
    }
    (Action::Accept, format!("score {score} < {}", policy.tag_at), None)
}

/// Order for forced actions: the strongest wins.
fn severity(action: Action) -> u8 {
    match action {
        Action::Accept => 0,
        Action::Tag => 1,
        Action::Quarantine => 2,
        Action::Discard => 3,
        Action::Tempfail => 4,
        Action::Reject => 5,
    }
}

fn round2(x: f64) -> f64 {
    // `+ 0.0` turns the -0.0 of an empty sum into 0.0.
    (x * 100.0).round() / 100.0 + 0.0
}

/// What the session does with one message that has several recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Every recipient's verdict is reject: 5xx.
    Reject,
    /// Every recipient's verdict is tempfail (or tempfail and reject): 4xx.
    Tempfail,
    /// 250; each recipient gets the disposition listed (index-aligned with the input).
    Accept(Vec<Action>),
}

/// Combines per-recipient actions into one SMTP answer without losing mail for anyone.
pub fn combine(actions: &[Action]) -> MessageOutcome {
    if actions.is_empty() {
        return MessageOutcome::Tempfail;
    }
    if actions.iter().all(|a| *a == Action::Reject) {
        return MessageOutcome::Reject;
    }
    if actions.iter().all(|a| matches!(a, Action::Reject | Action::Tempfail)) {
        return MessageOutcome::Tempfail;
    }
    // Mixed: one DATA reply serves all recipients. Accept, and keep the mail held for those who
    // wanted it refused; a tempfail recipient's copy is held too rather than asking the sender to
    // resend to everyone.
    MessageOutcome::Accept(
        actions
            .iter()
            .map(|a| match a {
                Action::Reject | Action::Tempfail => Action::Quarantine,
                other => *other,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_override_wins_key_by_key_and_forced_actions_merge() {
        let global = crate::config::PolicyConfig { forced: [("RCVD_IN_X".to_string(), Action::Reject)].into(), ..Default::default() };
        let over = crate::config::PolicyOverride {
            quarantine_at: Some(6.0),
            forced: [("DMARC_POLICY_REJECT".to_string(), Action::Reject)].into(),
            ..Default::default()
        };
        let policy = Policy::resolve(&global, Some(&over));
        assert_eq!((policy.tag_at, policy.quarantine_at, policy.reject_at), (5.0, 6.0, 20.0));
        assert_eq!(policy.forced.get("DMARC_POLICY_REJECT"), Some(&Action::Reject));
        assert_eq!(policy.forced.get("CLAMAV_VIRUS"), Some(&Action::Reject), "built-in entries stay");
        assert_eq!(policy.forced.get("RCVD_IN_X"), Some(&Action::Reject), "global entries stay");
    }

    fn scores(name: &str) -> f64 {
        match name {
            "SPF_FAIL" => 3.0,
            "TWO" => 2.0,
            "BIG" => 11.0,
            "HUGE" => 25.0,
            "CLAMAV_VIRUS" => 0.0,
            "CLAMAV_FAIL" => 0.0,
            _ => 0.0,
        }
    }

    fn evidence(names: &[&str]) -> Evidence {
        Evidence { symbols: names.iter().map(|n| Symbol::new(*n)).collect(), failures: vec![], headers: vec![], lists: vec![] }
    }

    #[test]
    fn thresholds_pick_the_action_and_symbols_keep_scores() {
        let policy = Policy::default();
        assert_eq!(decide(&evidence(&[]), scores, &policy).action, Action::Accept);
        let v = decide(&evidence(&["SPF_FAIL", "TWO"]), scores, &policy);
        assert_eq!((v.action, v.score), (Action::Tag, 5.0));
        let v = decide(&evidence(&["BIG"]), scores, &policy);
        assert_eq!(v.action, Action::Quarantine);
        assert_eq!(v.symbols[0], Symbol::scored("BIG", 11.0));
        assert_eq!(decide(&evidence(&["HUGE"]), scores, &policy).action, Action::Reject);
    }

    /// moat's reverse-DNS filter and the stock RDNS_NONE rule both finding no reverse name (each
    /// for its own hop) is one finding: scored once, the higher score, both details kept.
    #[test]
    fn a_symbol_reported_twice_counts_once() {
        let e = Evidence {
            symbols: vec![
                Symbol::with_detail("RDNS_NONE", "192.0.2.7"),
                Symbol::scored("RDNS_NONE", 0.8),
                Symbol::scored("TWO", 2.0),
                Symbol::with_detail("RDNS_NONE", "192.0.2.7"),
            ],
            ..Evidence::default()
        };
        let v = decide(&e, |n| if n == "RDNS_NONE" { 1.0 } else { 0.0 }, &Policy::default());
        assert_eq!(v.score, 3.0);
        assert_eq!(v.symbols.iter().filter(|s| s.name == "RDNS_NONE").count(), 1);
        let rdns = v.symbols.iter().find(|s| s.name == "RDNS_NONE").expect("kept");
        assert_eq!((rdns.score, rdns.detail.as_deref()), (1.0, Some("192.0.2.7")));
    }

    #[test]
    fn rule_hits_keep_their_own_score() {
        let e = Evidence { symbols: vec![Symbol::scored("LOCAL_RULE", 7.5)], failures: vec![], headers: vec![], lists: vec![] };
        assert_eq!(decide(&e, scores, &Policy::default()).score, 7.5);
    }

    #[test]
    fn forced_actions_and_precedence() {
        let mut policy = Policy::default();
        policy.forced.insert("CLAMAV_VIRUS".into(), Action::Reject);
        policy.forced.insert("ALLOW_SENDER".into(), Action::Accept);
        let v = decide(&evidence(&["CLAMAV_VIRUS", "ALLOW_SENDER"]), scores, &policy);
        assert_eq!(v.action, Action::Reject, "an allow list never lets a virus through");
        assert_eq!(decide(&evidence(&["HUGE", "ALLOW_SENDER"]), scores, &policy).action, Action::Accept);
        policy.filtering = false;
        assert_eq!(decide(&evidence(&["HUGE"]), scores, &policy).action, Action::Accept);
        assert_eq!(decide(&evidence(&["CLAMAV_VIRUS"]), scores, &policy).action, Action::Reject);
    }

    #[test]
    fn failures_follow_their_stance() {
        let fail = |stance| Evidence {
            symbols: vec![],
            failures: vec![Failure { symbol: "CLAMAV_FAIL".into(), stance, detail: "unreachable".into() }],
            ..Evidence::default()
        };
        let policy = Policy::default();
        let v = decide(&fail(Stance::FailClosed), scores, &policy);
        assert_eq!(v.action, Action::Tempfail);
        let v = decide(&fail(Stance::FailOpen), scores, &policy);
        assert_eq!(v.action, Action::Accept);
        assert!(v.symbols.iter().any(|s| s.name == "CLAMAV_FAIL"), "a fail-open failure stays visible");
    }

    #[test]
    fn combine_never_loses_mail() {
        use Action::*;
        assert_eq!(combine(&[Reject, Reject]), MessageOutcome::Reject);
        assert_eq!(combine(&[Tempfail, Reject]), MessageOutcome::Tempfail);
        assert_eq!(combine(&[Tag, Quarantine]), MessageOutcome::Accept(vec![Tag, Quarantine]));
        assert_eq!(combine(&[Accept, Reject, Tempfail]), MessageOutcome::Accept(vec![Accept, Quarantine, Quarantine]));
    }
}
