//! Scoring: the configured filter chain, the score table and the per-recipient policy, as one
//! value the session (and `moat scan`) asks "what do we do with this message for this
//! recipient?".
//!
//! Guarantees: a [`Scorer`] is built whole from one configuration (filters, rule files, lists)
//! or not at all, so a reload either switches to a complete new scorer or keeps the old one;
//! the session and `moat scan` go through the same code, so `moat scan` explains exactly what
//! the server would do.

use crate::config::Config;
use crate::filter::attachments::AttachmentFilter;
use crate::filter::auth::AuthFilter;
use crate::filter::clamav::ClamavFilter;
use crate::filter::classifier::ClassifierFilter;
use crate::filter::dnsbl::DnsblFilter;
use crate::filter::rdns::RdnsFilter;
use crate::filter::rules::RulesFilter;
use crate::filter::{Chain, Facts, Filter, Phase};
use crate::lists::{HeaderFrom, Lists, UserPolicy};
use crate::ruleset::RuleSet;
use crate::verdict::{self, Evidence, Policy, Symbol, Verdict};
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Where symbol scores and descriptions come from (the rule files' `score`/`describe` lines).
pub trait ScoreTable: Send + Sync {
    fn score(&self, name: &str) -> Option<f64>;
    fn describe(&self, name: &str) -> Option<String>;
}

/// A fixed table, for tests and for a configuration without rule files.
#[derive(Debug, Default, Clone)]
pub struct FixedScores(pub HashMap<String, (f64, String)>);

impl ScoreTable for FixedScores {
    fn score(&self, name: &str) -> Option<f64> {
        self.0.get(name).map(|(s, _)| *s)
    }
    fn describe(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|(_, d)| d.clone())
    }
}

/// How long one filter call may take before it counts as failed.
pub const FILTER_DEADLINE: Duration = Duration::from_secs(30);

/// Why a scorer could not be built: every problem, each with its location where known.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildErrors(pub Vec<String>);

impl std::fmt::Display for BuildErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

/// Builds the scorer the configuration describes: its filters in order, the score table of
/// its rule files and its policy. All or nothing. The classifier filter scores with the model
/// `in_force` holds at the time of each message.
pub fn build(config: Arc<Config>, in_force: &crate::classifier::InForce) -> Result<Scorer, BuildErrors> {
    let mut errors = Vec::new();
    let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
    let resolver = crate::dns::resolver(&config.dns).map_err(|e| errors.push(e.to_string())).ok();
    if let Some(resolver) = &resolver {
        if config.auth.enabled {
            match AuthFilter::new(&config.auth, &config.hostname, resolver.clone()) {
                Ok(auth) => filters.push(Arc::new(auth)),
                Err(error) => errors.push(error.to_string()),
            }
        }
        filters.extend(reputation_filters(&config, resolver.clone()));
    }
    if let Some(clamav) = &config.clamav {
        filters.push(Arc::new(ClamavFilter::new(clamav)));
    }
    if config.attachments.enabled {
        filters.push(Arc::new(AttachmentFilter::new(&config.attachments)));
    }
    let classifier = config.classifier.enabled.then(|| (in_force.clone(), config.classifier.min_learned));
    if let Some((in_force, min_learned)) = &classifier {
        filters.push(Arc::new(ClassifierFilter::new(in_force.clone(), *min_learned)));
    }
    let mut scores: Arc<dyn ScoreTable> = Arc::new(FixedScores::default());
    let mut rules_in_use = None;
    let mut reasons = Arc::default();
    let dirs = config.rule_dirs();
    if !dirs.is_empty() {
        match RuleSet::load(&dirs) {
            Ok((rules, report)) => {
                let rules = Arc::new(rules);
                rules_in_use = Some(RulesInUse { loaded: report.loaded, skipped: report.skipped.len(), hash: rules.hash() });
                reasons = Arc::new(rules.reasons().clone());
                filters.push(Arc::new(RulesFilter::new(rules.clone())));
                scores = rules;
            }
            Err(rule_errors) => errors.extend(rule_errors.iter().map(ToString::to_string)),
        }
    }
    if !errors.is_empty() {
        return Err(BuildErrors(errors));
    }
    let lists = config.lists.build();
    let mut scorer = Scorer::new(Chain::new(filters, FILTER_DEADLINE), scores, config).with_lists(lists);
    scorer.rules = rules_in_use;
    scorer.reasons = reasons;
    scorer.classifier = classifier;
    Ok(scorer)
}

impl ScoreTable for RuleSet {
    fn score(&self, name: &str) -> Option<f64> {
        RuleSet::score(self, name)
    }
    fn describe(&self, name: &str) -> Option<String> {
        RuleSet::describe(self, name).map(str::to_string)
    }
}

/// DNSBL/DNSWL/URIBL when any zone is configured; reverse DNS and HELO checks when enabled.
fn reputation_filters(config: &Config, resolver: TokioResolver) -> Vec<Arc<dyn Filter>> {
    let mut filters: Vec<Arc<dyn Filter>> = Vec::new();
    let dnsbl = DnsblFilter::new(&config.reputation, resolver.clone());
    if dnsbl.is_active() {
        filters.push(Arc::new(dnsbl));
    }
    if config.reputation.rdns || config.reputation.helo_checks {
        let domains: Vec<String> = config.domains.iter().map(|d| d.name.clone()).collect();
        filters.push(Arc::new(RdnsFilter::new(&config.reputation, &config.hostname, &domains, resolver)));
    }
    filters
}

/// A cheap fingerprint of the rule files (names, sizes, modification times) for noticing
/// changes without reading them.
pub fn rules_fingerprint(config: &Config) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut seen = Vec::new();
    for dir in config.rule_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "cf") {
                let meta = entry.metadata().ok();
                seen.push((path, meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok())));
            }
        }
    }
    seen.sort();
    seen
}

/// The rule files a scorer was built from, for the log.
#[derive(Debug, Clone)]
struct RulesInUse {
    loaded: usize,
    skipped: usize,
    hash: String,
}

/// The verdict policies of one configuration, by relay domain.
struct Policies {
    default: Policy,
    by_domain: HashMap<String, Policy>,
}

impl Policies {
    /// `[policy]` with each domain's override, plus the forced actions `[auth]` implies where
    /// the configuration does not force those symbols itself.
    fn resolve(config: &Config) -> Policies {
        let with_auth = |mut policy: Policy| {
            for (symbol, action) in config.auth.forced_actions() {
                policy.forced.entry(symbol).or_insert(action);
            }
            policy
        };
        let by_domain = config
            .domains
            .iter()
            .map(|d| (d.name.to_ascii_lowercase(), with_auth(crate::verdict::Policy::resolve(&config.policy, d.policy.as_ref()))))
            .collect();
        Policies { default: with_auth(crate::verdict::Policy::resolve(&config.policy, None)), by_domain }
    }

    fn for_domain(&self, domain: Option<&str>) -> &Policy {
        domain.and_then(|d| self.by_domain.get(&d.to_ascii_lowercase())).unwrap_or(&self.default)
    }
}

/// One verdict for one recipient, with what the tagging step needs.
#[derive(Debug, Clone)]
pub struct RecipientVerdict {
    pub recipient: String,
    pub verdict: Verdict,
    /// The subject prefix for this recipient's domain ("" for none).
    pub subject_prefix: String,
}

/// Filters, scores and policy from one configuration.
#[derive(Clone)]
pub struct Scorer {
    chain: Chain,
    scores: Arc<dyn ScoreTable>,
    config: Arc<Config>,
    /// Each relay domain's resolved policy (thresholds and forced actions), and the one for
    /// recipients of no configured domain; resolved once here, not per message.
    policies: Arc<Policies>,
    lists: Arc<Lists>,
    /// What the rule files in use amount to, if any (for the log line when they take effect).
    rules: Option<RulesInUse>,
    /// The classifier's model and cold-start bound, when the classifier is on (for `moat scan`).
    classifier: Option<(crate::classifier::InForce, u64)>,
    /// The rule files' plain-language reasons (for the quarantine's pages and digests).
    reasons: Arc<crate::ruleset::reasons::Reasons>,
}

impl Scorer {
    /// What the classifier makes of `raw` (`None` when it is off): the filter's own judgement.
    pub fn classifier_opinion(&self, raw: &[u8]) -> Option<crate::filter::classifier::Opinion> {
        self.classifier.as_ref().map(|(in_force, min)| crate::filter::classifier::judge(in_force, *min, raw))
    }

    pub fn new(chain: Chain, scores: Arc<dyn ScoreTable>, config: Arc<Config>) -> Scorer {
        let policies = Arc::new(Policies::resolve(&config));
        Scorer {
            chain,
            scores,
            config,
            policies,
            lists: Arc::new(Lists::default()),
            rules: None,
            classifier: None,
            reasons: Arc::default(),
        }
    }

    /// The plain-language reasons of the rule files this scorer was built from.
    pub fn reasons(&self) -> Arc<crate::ruleset::reasons::Reasons> {
        self.reasons.clone()
    }

    /// Uses these allow/block lists (and their per-recipient filtering switches).
    pub fn with_lists(mut self, lists: Lists) -> Scorer {
        self.lists = Arc::new(lists);
        self
    }

    /// The same scorer with the configuration's lists plus these users' own lists and
    /// filtering choices (from the store; they replace `[[lists.user]]` entries of the same address).
    pub fn with_user_policies(&self, users: &[(String, UserPolicy)]) -> Scorer {
        let mut lists = self.config.lists.build();
        for (address, policy) in users {
            lists.set_user(address, policy.clone());
        }
        Scorer { lists: Arc::new(lists), ..self.clone() }
    }

    /// True when an allow list entry decides for this sender, client and recipient.
    pub fn allow_listed(&self, sender: &str, client_ip: Option<std::net::IpAddr>, recipient: &str) -> bool {
        self.lists.check(sender, client_ip, recipient).is_some_and(|hit| hit.symbol == crate::lists::ALLOW_LIST)
    }

    /// A scorer with no filters: every message scores 0 (the relay without filtering).
    pub fn empty(config: Arc<Config>) -> Scorer {
        Scorer::new(Chain::new(Vec::new(), FILTER_DEADLINE), Arc::new(FixedScores::default()), config)
    }

    /// Runs one phase's filters.
    pub async fn run(&self, phase: Phase, facts: &Facts) -> Evidence {
        self.chain.run(phase, facts).await
    }

    /// The decision for `recipient` from all evidence gathered so far, with the recipient's
    /// allow/block list hit (if any) and filtering switch applied.
    pub fn verdict(&self, evidence: &Evidence, facts: &Facts, recipient: &str) -> RecipientVerdict {
        let domain = recipient.rsplit_once('@').and_then(|(_, d)| self.config.domain(d));
        let over = domain.and_then(|d| d.policy.as_ref());
        let mut policy = self.policies.for_domain(domain.map(|d| d.name.as_str())).clone();
        policy.filtering = self.lists.filtering_enabled(recipient);
        let sender = facts.sender.as_deref().unwrap_or("");
        // Once the message is in, lists also match its From field's address (allow entries only
        // when the From domain authenticated it; see `crate::lists`).
        let author = facts.message.as_deref().and_then(|message| crate::headers::author(message));
        let header_from = author.as_ref().map(|(_, address)| HeaderFrom {
            address,
            authenticated: from_authenticated(address.rsplit_once('@').map_or("", |(_, d)| d), evidence),
        });
        let listed = self.lists.check_message(sender, header_from, facts.client_ip, recipient);
        let mut own;
        let evidence = match listed {
            Some(hit) => {
                own = evidence.clone();
                own.add(Symbol::with_detail(hit.symbol, hit.detail()));
                &own
            }
            None => evidence,
        };
        let scores = &self.scores;
        let mut verdict = verdict::decide(evidence, |name| scores.score(name).unwrap_or(0.0), &policy);
        for symbol in &mut verdict.symbols {
            symbol.detail = match (scores.describe(&symbol.name), symbol.detail.take()) {
                (Some(description), Some(detail)) if description != detail => Some(format!("{description} ({detail})")),
                (Some(description), _) => Some(description),
                (None, detail) => detail,
            };
        }
        RecipientVerdict { recipient: recipient.to_string(), verdict, subject_prefix: self.config.policy.subject_prefix(over).to_string() }
    }

    /// Logs `rules_loaded` for the rule files of this scorer. Call it once the scorer is in
    /// force (stored for new sessions), so the line means "new sessions use these rules".
    pub fn log_rules_in_force(&self) {
        if let Some(rules) = &self.rules {
            tracing::info!(event = "rules_loaded", loaded = rules.loaded, skipped = rules.skipped, hash = %rules.hash);
            crate::metrics::rules_in_force(&rules.hash.to_string());
        }
    }

    /// The hash of the rule set in force and how many rules it loaded, if rule files are used.
    pub fn rules_in_force(&self) -> Option<(&str, usize)> {
        self.rules.as_ref().map(|r| (r.hash.as_str(), r.loaded))
    }

    /// The authserv-id whose Authentication-Results fields only we may write.
    pub fn authserv_id(&self) -> &str {
        self.config.auth.authserv_id(&self.config.hostname)
    }

    /// The description of a symbol, for `moat scan` and the X-Spam-Status header.
    pub fn describe(&self, symbol: &Symbol) -> Option<String> {
        self.scores.describe(&symbol.name)
    }
}

/// Whether the From domain `from_domain` authenticated the message, by the authentication
/// filter's symbols: `DMARC_PASS` for it, or `DKIM_VALID` for a signing domain aligned with it,
/// or `SPF_PASS` for a MAIL FROM domain aligned with it. Aligned: the same domain, or one a
/// subdomain of the other (DMARC's relaxed alignment, approximated without the public suffix
/// list: the shorter name must have two labels at least, so `d=test` vouches for nothing).
/// Without the authentication filter there are no such symbols, and nothing is authenticated.
pub fn from_authenticated(from_domain: &str, evidence: &Evidence) -> bool {
    let from_domain = from_domain.trim_end_matches('.').to_ascii_lowercase();
    if from_domain.is_empty() {
        return false;
    }
    let aligned = |domain: &str| {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let within = |inner: &str, outer: &str| {
            inner == outer || (outer.contains('.') && inner.len() > outer.len() && inner.ends_with(&format!(".{outer}")))
        };
        !domain.is_empty() && (within(&from_domain, &domain) || within(&domain, &from_domain))
    };
    evidence.symbols.iter().any(|symbol| {
        let detail = symbol.detail.as_deref().unwrap_or("");
        match symbol.name.as_str() {
            "DMARC_PASS" => detail.trim_end_matches('.').eq_ignore_ascii_case(&from_domain),
            "DKIM_VALID" => detail.split_ascii_whitespace().any(aligned),
            "SPF_PASS" => aligned(detail.trim()),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_from_domain_authenticates_by_dmarc_or_an_aligned_dkim_or_spf_pass() {
        use crate::verdict::{Evidence, Symbol};
        let with = |symbols: &[(&str, &str)]| Evidence {
            symbols: symbols.iter().map(|(n, d)| Symbol::with_detail(*n, *d)).collect(),
            ..Evidence::default()
        };
        let auth = |domain: &str, symbols: &[(&str, &str)]| super::from_authenticated(domain, &with(symbols));
        assert!(auth("paypal.test", &[("DMARC_PASS", "paypal.test")]));
        assert!(!auth("paypal.test", &[("DMARC_PASS", "other.test")]));
        assert!(auth("PayPal.test", &[("DKIM_VALID", "mailer.test paypal.test")]));
        assert!(auth("news.paypal.test", &[("DKIM_VALID", "paypal.test")]), "signed by the parent domain");
        assert!(auth("paypal.test", &[("DKIM_VALID", "mail.paypal.test")]), "signed by a subdomain");
        assert!(!auth("paypal.test", &[("DKIM_VALID", "paypal.test.evil.test")]));
        assert!(!auth("paypal.test", &[("DKIM_VALID", "evilpaypal.test")]));
        assert!(!auth("paypal.test", &[("DKIM_VALID", "test")]), "a top-level domain vouches for nothing");
        assert!(!auth("paypal.test", &[("DKIM_INVALID", "paypal.test")]));
        assert!(auth("paypal.test", &[("SPF_PASS", "paypal.test")]));
        assert!(
            !auth("paypal.test", &[("SPF_PASS", "mailer.test"), ("DMARC_FAIL", "paypal.test")]),
            "a bounce domain's SPF pass is not the From's"
        );
        assert!(!auth("", &[("SPF_PASS", "")]));
    }

    use super::*;
    use crate::verdict::Action;

    fn config(text: &str) -> Arc<Config> {
        let base = "hostname = \"mx.example.test\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nstarttls = false\n[downstream]\nhost = \"127.0.0.1\"\n";
        Arc::new(crate::config::load_str("test.toml", &format!("{base}{text}"), std::path::Path::new(".")).expect("config"))
    }

    #[test]
    fn each_recipient_gets_its_domains_policy() {
        let config = config(
            "[[domain]]\nname = \"strict.test\"\npolicy = { tag_at = 2.0, quarantine_at = 4.0, subject_prefix = \"[SPAM] \" }\n[[domain]]\nname = \"lax.test\"\n[[domain]]\nname = \"plain.test\"\n[[lists.domain]]\nname = \"lax.test\"\nfiltering = false\n",
        );
        let scores = FixedScores([("SPF_FAIL".to_string(), (6.0, "SPF fails".to_string()))].into());
        let lists = config.lists.build();
        let scorer = Scorer::new(Chain::new(Vec::new(), FILTER_DEADLINE), Arc::new(scores), config).with_lists(lists);
        let evidence = Evidence { symbols: vec![Symbol::new("SPF_FAIL")], ..Default::default() };
        let facts = Facts::default();
        let strict = scorer.verdict(&evidence, &facts, "a@strict.test");
        assert_eq!(strict.verdict.action, Action::Quarantine);
        assert_eq!(strict.subject_prefix, "[SPAM] ");
        assert_eq!(strict.verdict.symbols[0].detail.as_deref(), Some("SPF fails"));
        assert_eq!(scorer.verdict(&evidence, &facts, "b@plain.test").verdict.action, Action::Tag);
        assert_eq!(scorer.verdict(&evidence, &facts, "c@lax.test").verdict.action, Action::Accept);
    }
}
