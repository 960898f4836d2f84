//! SpamAssassin `eval:` functions that ask the network, answered by what moat's own filters
//! found instead: SPF (`check_for_spf_*`) and DKIM (`check_dkim_signed`, `check_dkim_valid`,
//! `check_dkim_valid_author_sig`, `check_dkim_valid_envelopefrom`, `check_dkim_dependable`) from the auth filter's
//! symbols; the DNS lists (`check_rbl`, `check_rbl_sub`, `check_uridnsbl`) from the dnsbl
//! filter's answers (see `listeval`). The stock rules flag these `tflags net`; here they load,
//! and the metas over them (`__NOT_SPOOFED`, `FORM_FRAUD_3`, `HTML_SINGLET_MANY`,
//! `KHOP_HELO_FCRDNS`, `RCVD_IN_MSPIKE_ZBI`, …) run when the answer is known.
//!
//! Guarantees: an answer is three-valued. When the filter did not run for the message (it is
//! off, failed or timed out, or the caller gave no facts: a file in `moat scan` without the
//! network), the rule is *unknown*, never "not hit", and every meta that reads it is unknown
//! too (see `eval`), as if moat did not run the rule at all. These rules are echoes of the
//! filter's own symbols (which carry the scores), so they are never reported themselves.

use super::cf::UriList;
use super::header::Modifier;
use super::listeval::{ListTest, Scope, Subtest, scope_of_set, zone_name};
use super::message::ParsedMessage;
use crate::verdict::ListLookup;
use std::collections::HashMap;

/// What moat's other filters found about one message, for the rules that read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterFacts {
    /// The auth filter's symbols (`SPF_PASS`, `SPF_HELO_NONE`, `DKIM_VALID`, `DKIM_NONE`, …)
    /// with their details (for `DKIM_VALID`: the signing domains, space-separated); None when the
    /// auth filter did not answer for this message.
    pub auth: Option<Vec<(String, String)>>,
    /// What the dnsbl filter's lists said, at connect (the client) and at end of data (domains).
    pub lists: Vec<ListLookup>,
}

/// SPF results as the auth filter names them (`SPF_<RESULT>`, `SPF_HELO_<RESULT>`).
const SPF_RESULTS: [&str; 7] = ["PASS", "FAIL", "SOFTFAIL", "NEUTRAL", "NONE", "TEMPERROR", "PERMERROR"];
/// The auth filter's DKIM outcomes; `DKIM_NONE` when the message has no signature.
const DKIM_OUTCOMES: [&str; 4] = ["DKIM_VALID", "DKIM_INVALID", "DKIM_TEMPERROR", "DKIM_NONE"];

/// One network `eval:` function, answered from [`FilterFacts`].
#[derive(Debug, Clone, PartialEq)]
pub enum FilterEval {
    /// `check_for_spf_<result>()` (`helo: false`) or `check_for_spf_helo_<result>()`.
    Spf { helo: bool, result: &'static str },
    /// `check_dkim_signed()`: some signature, valid or not.
    DkimSigned,
    /// `check_dkim_valid()`, or with domains: a valid signature (by one of these domains).
    DkimValid(Vec<String>),
    /// `check_dkim_valid_author_sig()`: a valid signature by the author's (From) domain or a
    /// parent of it.
    DkimValidAuthor,
    /// `check_dkim_valid_envelopefrom()`: a valid signature by the envelope sender's domain.
    DkimValidEnvelopeFrom,
    /// `check_dkim_dependable()`: the DKIM results can be relied on. SpamAssassin says no only
    /// for a signed message it cut short before verifying (its size limit); the auth filter
    /// verifies the message as received, so whenever it checked DKIM, yes.
    DkimDependable,
    /// `check_rbl(set, zone[, subtest])`; the set names the lookups (see `listeval`).
    Rbl { set: String, test: ListTest },
    /// `check_rbl_sub(set, subtest)` as written: [`FilterEval::resolve`] finds its zone.
    RblSub { set: String, subtest: Subtest },
    /// `check_uridnsbl(rule)` as written: [`FilterEval::resolve`] reads the rule's URIDNSBL line.
    UriRule(String),
    /// A resolved `check_rbl_sub` or `check_uridnsbl`.
    Listed(ListTest),
}

/// Each `check_rbl` set's zone and scope, by set name.
pub type RblSets = HashMap<String, (String, Scope)>;

impl FilterEval {
    /// The function a rule's `eval:` text calls, when moat's filters answer it.
    pub fn parse(call: &str) -> Option<FilterEval> {
        let (name, args) = call.trim().strip_suffix(')')?.split_once('(')?;
        let args = super::evalfn::split_args(args).ok()?;
        if let Some(list) = list_call(name.trim(), &args) {
            return list;
        }
        let args: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).filter(|a| !a.is_empty()).collect();
        if let Some(result) = name.strip_prefix("check_for_spf_helo_") {
            return spf_result(result, &args).map(|result| FilterEval::Spf { helo: true, result });
        }
        if let Some(result) = name.strip_prefix("check_for_spf_") {
            return spf_result(result, &args).map(|result| FilterEval::Spf { helo: false, result });
        }
        match (name, args.is_empty()) {
            ("check_dkim_signed", true) => Some(FilterEval::DkimSigned),
            ("check_dkim_valid", _) => Some(FilterEval::DkimValid(args)),
            ("check_dkim_valid_author_sig", true) => Some(FilterEval::DkimValidAuthor),
            ("check_dkim_valid_envelopefrom", true) => Some(FilterEval::DkimValidEnvelopeFrom),
            ("check_dkim_dependable", true) => Some(FilterEval::DkimDependable),
            _ => None,
        }
    }

    /// The call with what it names elsewhere in the rule files found: a `check_rbl_sub`'s zone
    /// (from the `check_rbl` of its set) and a `check_uridnsbl`'s list (from its rule's
    /// URIDNSBL line). Err says why moat cannot answer it.
    pub fn resolve(self, sets: &RblSets, uri_lists: &HashMap<String, UriList>) -> Result<FilterEval, String> {
        match self {
            FilterEval::RblSub { set, subtest } => match sets.get(&set) {
                Some((zone, scope)) => Ok(FilterEval::Listed(ListTest { zone: zone.clone(), scope: *scope, subtest })),
                None => Err(format!("eval:check_rbl_sub: no check_rbl rule of set {set:?} names its zone")),
            },
            FilterEval::UriRule(rule) => uri_list(&rule, uri_lists.get(&rule)).map(FilterEval::Listed),
            resolved => Ok(resolved),
        }
    }

    /// For a `check_rbl` call: its set, zone and scope.
    pub fn rbl_set(&self) -> Option<(&str, &str, Scope)> {
        match self {
            FilterEval::Rbl { set, test } => Some((set, &test.zone, test.scope)),
            _ => None,
        }
    }

    /// Whether the call reads the DNS lists (not the auth filter).
    pub fn reads_lists(&self) -> bool {
        matches!(self, FilterEval::Rbl { .. } | FilterEval::RblSub { .. } | FilterEval::UriRule(_) | FilterEval::Listed(_))
    }

    /// Whether the rule hits; None when the filter did not answer for this message.
    pub fn answer(&self, msg: &ParsedMessage) -> Option<bool> {
        match self {
            FilterEval::Rbl { test, .. } | FilterEval::Listed(test) => test.answer(&msg.filter_facts().lists),
            FilterEval::RblSub { .. } | FilterEval::UriRule(_) => None,
            _ => self.auth_answer(msg),
        }
    }

    /// The answer of an SPF or DKIM call, from the auth filter's symbols.
    fn auth_answer(&self, msg: &ParsedMessage) -> Option<bool> {
        let auth = msg.filter_facts().auth.as_deref()?;
        let has = |name: &str| auth.iter().any(|(n, _)| n == name);
        match self {
            FilterEval::Spf { helo, result } => {
                let family = if *helo { "SPF_HELO" } else { "SPF" };
                // No result of this family: the filter did not check it (no HELO name, say).
                let checked = SPF_RESULTS.iter().any(|r| has(&format!("{family}_{r}")));
                checked.then(|| has(&format!("{family}_{result}")))
            }
            _ if !DKIM_OUTCOMES.iter().any(|o| has(o)) => None,
            FilterEval::DkimDependable => Some(true),
            FilterEval::DkimSigned => Some(["DKIM_VALID", "DKIM_INVALID", "DKIM_TEMPERROR"].iter().any(|o| has(o))),
            FilterEval::DkimValid(domains) if domains.is_empty() => Some(has("DKIM_VALID")),
            FilterEval::DkimValid(domains) => Some(valid_signers(auth).any(|d| domains.contains(&d))),
            FilterEval::DkimValidAuthor => {
                let author = domain_of(&msg.header_value("from", Modifier::Addr).unwrap_or_default());
                Some(!author.is_empty() && valid_signers(auth).any(|d| author == d || author.ends_with(&format!(".{d}"))))
            }
            FilterEval::DkimValidEnvelopeFrom => {
                let sender = domain_of(msg.smtp_envelope_from().unwrap_or_default());
                Some(!sender.is_empty() && valid_signers(auth).any(|d| d == sender))
            }
            _ => None,
        }
    }
}

/// A DNS-list call: Some(None) for one moat cannot answer (a TXT lookup, an `-untrusted` set, a
/// bad subtest), None for a function that is not a DNS-list call.
fn list_call(name: &str, args: &[String]) -> Option<Option<FilterEval>> {
    Some(match (name, args) {
        ("check_rbl", [set, zone, rest @ ..]) if rest.len() <= 1 => rbl_call(set, zone, rest.first()),
        ("check_rbl_sub", [set, subtest]) => Subtest::of_rbl(subtest).map(|subtest| FilterEval::RblSub { set: set.clone(), subtest }),
        ("check_uridnsbl", [rule]) => Some(FilterEval::UriRule(rule.clone())),
        _ => return None,
    })
}

/// `check_rbl(set, zone[, subtest])`, when moat can answer it.
fn rbl_call(set: &str, zone: &str, subtest: Option<&String>) -> Option<FilterEval> {
    let subtest = match subtest {
        None => Subtest::Any,
        Some(text) => Subtest::of_rbl(text)?,
    };
    Some(FilterEval::Rbl { set: set.to_string(), test: ListTest { zone: zone_name(zone), scope: scope_of_set(set)?, subtest } })
}

/// The test a `check_uridnsbl(rule)` runs, from the rule's URIDNSBL line.
fn uri_list(rule: &str, list: Option<&UriList>) -> Result<ListTest, String> {
    let list = list.ok_or_else(|| format!("eval:check_uridnsbl: no urirhssub or urirhsbl line for {rule}"))?;
    let directive = list.directive.as_str();
    if !matches!(directive, "urirhssub" | "urirhsbl") {
        return Err(format!("{directive}: looks up the domain's name servers or their addresses, which moat's URI lists do not"));
    }
    if !list.lookup.eq_ignore_ascii_case("A") {
        return Err(format!("{directive}: {} lookup (moat's lists read A records)", list.lookup));
    }
    let subtest = match &list.subtest {
        None => Subtest::Any,
        Some(text) => Subtest::of_uri(text).ok_or_else(|| format!("{directive} {rule}: subtest {text:?} is not one moat reads"))?,
    };
    Ok(ListTest { zone: zone_name(&list.zone), scope: Scope::Links, subtest })
}

/// The result a `check_for_spf_*` name ends in, for the calls without arguments.
fn spf_result(result: &str, args: &[String]) -> Option<&'static str> {
    let upper = result.to_ascii_uppercase();
    SPF_RESULTS.iter().copied().find(|r| *r == upper && args.is_empty())
}

/// The domains of the valid signatures, lower-cased.
fn valid_signers(auth: &[(String, String)]) -> impl Iterator<Item = String> + '_ {
    auth.iter().filter(|(n, _)| n == "DKIM_VALID").flat_map(|(_, d)| d.split_whitespace()).map(str::to_ascii_lowercase)
}

/// The domain of an address, lower-cased; empty without one.
fn domain_of(addr: &str) -> String {
    addr.trim().trim_matches(['<', '>']).rsplit_once('@').map_or(String::new(), |(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(auth: Option<&[(&str, &str)]>) -> ParsedMessage {
        let facts =
            FilterFacts { auth: auth.map(|a| a.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect()), ..Default::default() };
        ParsedMessage::parse(b"From: Ann <ann@news.example.org>\r\nSubject: hi\r\n\r\nhello\r\n")
            .with_envelope_from("bounce@example.org")
            .with_filter_facts(facts)
    }

    fn answer(call: &str, m: &ParsedMessage) -> Option<bool> {
        FilterEval::parse(call).unwrap_or_else(|| panic!("{call} parses")).answer(m)
    }

    #[test]
    fn spf_calls_read_the_auth_filters_result_and_are_unknown_without_it() {
        let pass = msg(Some(&[("SPF_PASS", "example.org"), ("DKIM_NONE", "")]));
        assert_eq!(answer("check_for_spf_pass()", &pass), Some(true));
        assert_eq!(answer("check_for_spf_fail()", &pass), Some(false));
        assert_eq!(answer("check_for_spf_helo_pass()", &pass), None, "HELO not checked");
        assert_eq!(answer("check_for_spf_pass()", &msg(None)), None, "the filter did not answer");
        assert_eq!(answer("check_for_spf_softfail()", &msg(Some(&[("SPF_SOFTFAIL", "x")]))), Some(true));
        assert_eq!(FilterEval::parse("check_for_spf_whitelist_from()"), None);
        assert_eq!(FilterEval::parse("check_for_spf_pass('x')"), None);
    }

    #[test]
    fn dkim_calls_read_the_signing_domains() {
        let signed = msg(Some(&[("SPF_NONE", ""), ("DKIM_VALID", "example.org mailer.test")]));
        assert_eq!(answer("check_dkim_signed()", &signed), Some(true));
        assert_eq!(answer("check_dkim_valid()", &signed), Some(true));
        assert_eq!(answer("check_dkim_valid('linkedin.com')", &signed), Some(false));
        assert_eq!(answer("check_dkim_valid('Mailer.test', 'other.test')", &signed), Some(true));
        assert_eq!(answer("check_dkim_valid_author_sig()", &signed), Some(true), "example.org signs for news.example.org");
        assert_eq!(answer("check_dkim_valid_envelopefrom()", &signed), Some(true));
        let third_party = msg(Some(&[("DKIM_VALID", "mailer.test")]));
        assert_eq!(answer("check_dkim_valid_author_sig()", &third_party), Some(false));
        let broken = msg(Some(&[("DKIM_INVALID", "example.org: bad signature")]));
        assert_eq!((answer("check_dkim_signed()", &broken), answer("check_dkim_valid()", &broken)), (Some(true), Some(false)));
        let unsigned = msg(Some(&[("DKIM_NONE", "")]));
        assert_eq!(answer("check_dkim_signed()", &unsigned), Some(false));
        assert_eq!((answer("check_dkim_dependable()", &unsigned), answer("check_dkim_dependable()", &broken)), (Some(true), Some(true)));
        assert_eq!(answer("check_dkim_dependable()", &msg(Some(&[("SPF_PASS", "")]))), None, "DKIM not checked: unknown");
        assert_eq!(answer("check_dkim_signed()", &msg(Some(&[("SPF_PASS", "")]))), None, "no DKIM outcome: not checked");
        assert_eq!(answer("check_dkim_signed()", &msg(None)), None);
    }
}
