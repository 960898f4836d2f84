//! Email authentication: SPF (MAIL FROM and HELO), DKIM, DMARC and ARC, with mail-auth over
//! moat's resolver; the results become symbols and one RFC 8601 `Authentication-Results` field,
//! optionally ARC-sealed for the downstream.
//!
//! Everything runs in the DATA phase, where every identity is known (client IP, HELO, MAIL FROM,
//! the message): SPF for HELO and MAIL FROM, DKIM, ARC and the lookup of the From domain's DMARC
//! record run concurrently; DMARC then combines SPF and DKIM with that policy (from the cache).
//!
//! Guarantees:
//! - evidence only: the filter never decides. It emits `SPF_*`, `SPF_HELO_*`, `DKIM_*`, `DMARC_*`,
//!   `DMARC_POLICY_REJECT` / `DMARC_POLICY_QUARANTINE` and `ARC_*` symbols; the policy (see
//!   [`crate::config::Auth::forced_actions`]) and the scores decide;
//! - DNS failures are results, never crashes: with `dns_failure = "fail_open"` they are
//!   `*_TEMPERROR` symbols; with `"fail_closed"` the filter returns an `AUTH_TEMPERROR` failure
//!   (451). Every lookup runs under the resolver's deadline, and the chain adds its own;
//! - `Findings.headers` holds exactly one `Authentication-Results` field with our authserv-id
//!   (CRLF-terminated, one method per folded line), preceded by `ARC-Seal`,
//!   `ARC-Message-Signature` and `ARC-Authentication-Results` when sealing is configured and the
//!   chain can be sealed;
//! - nothing derived from the message or the envelope can make it panic (no unwrap on input);
//! - bounded time: SPF, DKIM, ARC and the DMARC record's lookup share one `timeout` budget,
//!   DMARC's evaluation gets another (it only waits again when the record's lookup was answered
//!   but the tree walk needs more); a resolver that does not answer costs one DNS timeout, and a
//!   method that runs out is a temperror, so a sender whose DNS is slow (or who adds many signatures
//!   with slow keys) cannot push the whole filter past the chain's deadline and so hide the From
//!   domain's DMARC failure. At most [`MAX_DKIM_SIGNATURES`] signatures are verified.
//!
//! DMARC: mail-auth implements RFC 9989 (policy discovery by tree walk, `sp`/`np`, `t=y`), which
//! dropped RFC 7489's `pct`. Records still carry `pct`, so it is honoured here, deterministically:
//! a `pct` below 100 applies the next weaker policy (reject → quarantine → none) to every failing
//! message, instead of sampling (verdicts stay reproducible, and nothing is refused that the domain
//! did not ask to refuse every time).

use crate::config::Auth;
use crate::filter::{Facts, Filter, FilterFuture, Findings, Outcome};
use crate::keys::{SealKey, load_seal_key};
use crate::verdict::{Failure, Stance, Symbol};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dkim::{Canonicalization, Done};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};
use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

/// DKIM signatures verified per message (the first ones, top down); the rest are ignored.
pub const MAX_DKIM_SIGNATURES: usize = 10;

/// Header fields the ARC-Message-Signature covers (those present in the message).
/// `Subject` is left out on purpose: tagging may add a subject prefix after the seal is made.
const SEALED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "DKIM-Signature",
];

/// Why the filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The ARC sealing key could not be read or is not a usable key.
    #[error("ARC sealing key {0}")]
    Key(#[from] crate::keys::KeyError),
}

enum Sealer {
    Ed25519(ArcSealer<Ed25519Key, Done>),
    Rsa(ArcSealer<RsaKey<Sha256>, Done>),
}

impl Sealer {
    fn new(key: SealKey, domain: &str, selector: &str) -> Sealer {
        match key {
            SealKey::Ed25519(key) => Sealer::Ed25519(
                ArcSealer::from_key(key)
                    .domain(domain)
                    .selector(selector)
                    .headers(SEALED_HEADERS.iter().copied())
                    .header_canonicalization(Canonicalization::Relaxed)
                    .body_canonicalization(Canonicalization::Relaxed),
            ),
            SealKey::Rsa(key) => Sealer::Rsa(
                ArcSealer::from_key(key)
                    .domain(domain)
                    .selector(selector)
                    .headers(SEALED_HEADERS.iter().copied())
                    .header_canonicalization(Canonicalization::Relaxed)
                    .body_canonicalization(Canonicalization::Relaxed),
            ),
        }
    }

    /// The three ARC fields (seal, message signature, results), CRLF-terminated, in that order.
    fn seal(
        &self,
        message: &AuthenticatedMessage<'_>,
        results: &AuthenticationResults<'_>,
        arc: &ArcOutput<'_>,
    ) -> mail_auth::Result<String> {
        match self {
            Sealer::Ed25519(sealer) => sealer.seal(message, results, arc).map(|set| set.to_header()),
            Sealer::Rsa(sealer) => sealer.seal(message, results, arc).map(|set| set.to_header()),
        }
    }
}

/// The authentication filter. Cheap to share (`Arc<dyn Filter>`); the resolver caches answers.
pub struct AuthFilter {
    authenticator: MessageAuthenticator,
    authserv_id: String,
    hostname: String,
    dns_failure: Stance,
    budget: Duration,
    sealer: Option<Sealer>,
}

impl AuthFilter {
    /// Builds the filter over `resolver` (from [`crate::dns::resolver`]). `hostname` is our name:
    /// the default authserv-id and SPF's `%{r}`. Loads the ARC sealing key when configured.
    pub fn new(config: &Auth, hostname: &str, resolver: TokioResolver) -> Result<AuthFilter, AuthError> {
        let sealer = match &config.arc_seal {
            Some(seal) => Some(Sealer::new(load_seal_key(&seal.key_file)?, &seal.domain, &seal.selector)),
            None => None,
        };
        Ok(AuthFilter {
            authenticator: MessageAuthenticator(resolver),
            authserv_id: config.authserv_id(hostname).to_string(),
            hostname: hostname.to_string(),
            dns_failure: config.dns_failure,
            budget: config.timeout.duration(),
            sealer,
        })
    }

    /// Our authserv-id (for [`strip_forged_results`]).
    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    /// Runs every check on the facts of a DATA phase (also usable by `moat scan`).
    pub async fn check(&self, facts: &Facts) -> Outcome {
        let ip = facts.client_ip;
        let helo = facts.helo.as_deref().map(str::trim).unwrap_or("");
        let helo_domain = Some(helo).filter(|h| is_checkable_domain(h));
        let sender = facts.sender.as_deref().map(bare_address).unwrap_or("");
        // RFC 7208 §2.4: with a null reverse path, the MAIL FROM identity is postmaster@HELO.
        let mail_from = if sender.is_empty() { helo_domain.map(|h| format!("postmaster@{h}")) } else { Some(sender.to_string()) };
        let mail_from_domain = mail_from.as_deref().and_then(|m| m.rsplit_once('@')).map(|(_, d)| d).unwrap_or("");
        let mut message = facts.message.as_deref().and_then(|raw| AuthenticatedMessage::parse(raw));
        if let Some(message) = &mut message {
            message.dkim_headers.truncate(MAX_DKIM_SIGNATURES);
        }
        let message = message;

        let spf_helo = async {
            match (ip, helo_domain) {
                (Some(ip), Some(helo)) => Some(
                    self.within(self.authenticator.verify_spf(SpfParameters::verify_ehlo(ip, helo, &self.hostname)), || {
                        SpfOutput::new(helo.to_string()).with_result(SpfResult::TempError)
                    })
                    .await,
                ),
                _ => None,
            }
        };
        let spf_mail = async {
            match (ip, mail_from.as_deref()) {
                (Some(ip), Some(from)) if is_checkable_domain(mail_from_domain) => Some(
                    self.within(self.authenticator.verify_spf(SpfParameters::verify_mail_from(ip, helo, &self.hostname, from)), || {
                        SpfOutput::new(mail_from_domain.to_string()).with_result(SpfResult::TempError)
                    })
                    .await,
                ),
                (Some(_), _) => Some(SpfOutput::default()),
                (None, _) => None,
            }
        };
        // One verification per signature, each within the budget, so that slow keys of some
        // signatures do not turn a (failing) aligned one into a temperror.
        let singles = message.as_ref().map(single_signatures).unwrap_or_default();
        let dkim = async {
            let message = message.as_ref()?;
            let mut outputs: Vec<DkimOutput<'_>> = message
                .errors
                .iter()
                .filter(|e| matches!(e.header, mail_auth::Error::Dkim(_)))
                .map(|e| DkimOutput::neutral(e.header.clone()))
                .collect();
            let verified = futures_util::future::join_all(singles.iter().map(|single| {
                self.within(self.authenticator.verify_dkim(single), || {
                    single.dkim_headers.iter().map(|h| DkimOutput::temp_err(timed_out()).with_signature(&h.header)).collect()
                })
            }))
            .await;
            outputs.extend(verified.into_iter().flatten());
            Some(outputs)
        };
        let arc = async {
            match &message {
                Some(message) => Some(
                    self.within(self.authenticator.verify_arc(message), || {
                        ArcOutput::default().with_result(DkimResult::TempError(timed_out()))
                    })
                    .await,
                ),
                None => None,
            }
        };
        let from_domain = message.as_ref().and_then(|m| m.from.first()).and_then(|f| f.rsplit_once('@')).map(|(_, d)| d);
        let dmarc_answerable = self.dmarc_answerable(from_domain);
        let (spf_helo, spf_mail, dkim, arc, dmarc_answerable) = tokio::join!(spf_helo, spf_mail, dkim, arc, dmarc_answerable);

        let no_spf = SpfOutput::default();
        let dmarc = match (&message, &dkim) {
            (Some(_), Some(_)) if !dmarc_answerable => {
                let from_domain = from_domain.unwrap_or("").to_lowercase();
                Some(DmarcOutput::new(from_domain).with_dkim_result(DmarcResult::TempError(timed_out())))
            }
            (Some(message), Some(dkim)) => {
                let spf = spf_mail.as_ref().unwrap_or(&no_spf);
                let from_domain = from_domain.unwrap_or("");
                Some(
                    self.within(self.authenticator.verify_dmarc(DmarcParameters::new(message, dkim, mail_from_domain, spf)), || {
                        DmarcOutput::new(from_domain.to_lowercase()).with_dkim_result(DmarcResult::TempError(timed_out()))
                    })
                    .await,
                )
            }
            _ => None,
        };
        let policy = match &dmarc {
            Some(dmarc) if matches!(dmarc.result(), DmarcResult::Fail(_)) => self.effective_policy(dmarc).await,
            _ => None,
        };

        let mut report = Report::default();
        if let Some(spf) = &spf_mail {
            report.spf("SPF", spf.result(), spf.domain());
        }
        if let (Some(spf), Some(helo)) = (&spf_helo, helo_domain) {
            report.spf("SPF_HELO", spf.result(), helo);
        }
        report.dkim(dkim.as_deref().unwrap_or(&[]));
        report.dmarc(dmarc.as_ref(), policy);
        report.arc(arc.as_ref());

        if !report.temperrors.is_empty() && self.dns_failure == Stance::FailClosed {
            return Err(Failure { symbol: "AUTH_TEMPERROR".to_string(), stance: Stance::FailClosed, detail: report.temperrors.join("; ") });
        }

        // Authentication-Results, built by mail-auth; methods it cannot express are added here.
        let header_from = message.as_ref().and_then(|m| m.from.first()).map(String::as_str).unwrap_or("");
        let mut results = AuthenticationResults::new(&self.authserv_id);
        if let (Some(spf), Some(ip), Some(helo)) = (&spf_helo, ip, helo_domain) {
            results = results.with_spf_ehlo_result(spf, ip, helo);
        }
        if let (Some(spf), Some(ip)) = (&spf_mail, ip) {
            results = results.with_spf_mailfrom_result(spf, ip, sender, helo);
        }
        let mut extra = String::new();
        match &dkim {
            Some(dkim) if dkim.iter().any(|d| *d.result() != DkimResult::None) => {
                results = results.with_dkim_results(dkim, header_from);
            }
            _ => extra.push_str(";\r\n\tdkim=none"),
        }
        match &dmarc {
            Some(dmarc) if !dmarc.domain().is_empty() => results = results.with_dmarc_result(dmarc),
            _ => extra.push_str(";\r\n\tdmarc=none"),
        }
        match (&arc, ip) {
            (Some(arc), Some(ip)) => results = results.with_arc_result(arc, ip),
            (Some(arc), None) => {
                extra.push_str(";\r\n\tarc=");
                extra.push_str(arc_keyword(arc.result()));
            }
            (None, _) => extra.push_str(";\r\n\tarc=none"),
        }
        let mut headers = Vec::with_capacity(2);
        if let (Some(sealer), Some(message), Some(arc)) = (&self.sealer, &message, &arc)
            && let Some(set) = self.seal(sealer, message, &results, arc)
        {
            headers.push(set);
        }
        headers.push(authentication_results(&results, &self.authserv_id, &extra));
        tracing::debug!(event = "auth", symbols = ?report.symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
        Ok(Findings { symbols: report.symbols, headers, lists: Vec::new() })
    }

    /// Asks for the From domain's DMARC record alongside SPF, DKIM and ARC, so that DMARC
    /// afterwards finds the answer (or its absence) in the resolver's cache. False when the
    /// resolver gave no answer at all (timeout, server failure): DMARC is then a temperror at
    /// once instead of a second wait, so a dead resolver costs the message one timeout, not two.
    async fn dmarc_answerable(&self, from_domain: Option<&str>) -> bool {
        let Some(domain) = from_domain.filter(|d| is_checkable_domain(d)) else { return true };
        let name = format!("_dmarc.{}.", domain.trim_end_matches('.'));
        match tokio::time::timeout(self.budget, self.authenticator.0.txt_lookup(name.as_str())).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => e.is_no_records_found(),
            Err(_) => false,
        }
    }

    /// `check` within the time budget, or `expired()` (a temperror result).
    async fn within<T>(&self, check: impl Future<Output = T>, expired: impl FnOnce() -> T) -> T {
        tokio::time::timeout(self.budget, check).await.unwrap_or_else(|_| expired())
    }

    fn seal(
        &self,
        sealer: &Sealer,
        message: &AuthenticatedMessage<'_>,
        results: &AuthenticationResults<'_>,
        arc: &ArcOutput<'_>,
    ) -> Option<String> {
        // A chain whose verification hit a DNS error is not known to be broken: sealing it with
        // cv=fail would break it for good, so leave it alone.
        if matches!(arc.result(), DkimResult::TempError(_)) || !arc.can_be_sealed() {
            return None;
        }
        match sealer.seal(message, results, arc) {
            Ok(set) => Some(set),
            Err(error) => {
                tracing::warn!(event = "arc_seal_failed", %error);
                None
            }
        }
    }

    /// The DMARC policy to apply to a failing message: the domain's (`sp`/`np`/`t` already
    /// applied by mail-auth), one step weaker when the record's `pct` is below 100.
    async fn effective_policy(&self, dmarc: &DmarcOutput) -> Option<(Policy, u8)> {
        let policy = dmarc.policy();
        if !matches!(policy, Policy::Reject | Policy::Quarantine) {
            return None;
        }
        let pct = self.within(self.dmarc_pct(dmarc), || 100).await;
        let policy = match (policy, pct < 100) {
            (Policy::Reject, true) => Policy::Quarantine,
            (Policy::Quarantine, true) => Policy::None,
            (policy, _) => policy,
        };
        Some((policy, pct))
    }

    /// The `pct` of the record mail-auth applied: found again by walking up from the From
    /// domain (the answers are in the resolver's cache by now). 100 when absent or unreadable.
    async fn dmarc_pct(&self, dmarc: &DmarcOutput) -> u8 {
        let Some(applied) = dmarc.dmarc_record() else { return 100 };
        let labels: Vec<&str> = dmarc.domain().split('.').filter(|l| !l.is_empty()).collect();
        for skip in 0..labels.len().min(8) {
            let name = format!("_dmarc.{}.", labels[skip..].join("."));
            let Ok(lookup) = self.authenticator.0.txt_lookup(name.as_str()).await else { continue };
            for answer in lookup.answers() {
                let RData::TXT(txt) = &answer.data else { continue };
                let text: Vec<u8> = txt.txt_data.iter().flat_map(|part| part.iter().copied()).collect();
                if Dmarc::parse(&text).is_ok_and(|record| record == *applied) {
                    return pct_tag(&text).unwrap_or(100);
                }
            }
        }
        100
    }
}

impl Filter for AuthFilter {
    fn name(&self) -> &'static str {
        "auth"
    }

    /// A timeout (slow DNS) or an internal failure is a DNS failure with the configured stance.
    fn failure(&self) -> (&'static str, Stance) {
        ("AUTH_TEMPERROR", self.dns_failure)
    }

    fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(self.check(facts))
    }
}

/// Symbols and DNS failures gathered from the results.
#[derive(Default)]
struct Report {
    symbols: Vec<Symbol>,
    temperrors: Vec<String>,
}

impl Report {
    fn add(&mut self, name: String, detail: String) {
        if name.ends_with("_TEMPERROR") {
            self.temperrors.push(format!("{name} {detail}"));
        }
        self.symbols.push(if detail.is_empty() { Symbol::new(name) } else { Symbol::with_detail(name, detail) });
    }

    fn spf(&mut self, family: &str, result: SpfResult, domain: &str) {
        let suffix = match result {
            SpfResult::Pass => "PASS",
            SpfResult::Fail => "FAIL",
            SpfResult::SoftFail => "SOFTFAIL",
            SpfResult::Neutral => "NEUTRAL",
            SpfResult::None => "NONE",
            SpfResult::TempError => "TEMPERROR",
            SpfResult::PermError => "PERMERROR",
        };
        self.add(format!("{family}_{suffix}"), domain.to_string());
    }

    /// One symbol per outcome (a message with two valid signatures gets one `DKIM_VALID`, its
    /// detail listing both domains), so scores are not counted twice.
    fn dkim(&mut self, outputs: &[DkimOutput<'_>]) {
        let mut found: Vec<(&'static str, Vec<String>)> = Vec::new();
        for output in outputs {
            let domain = output.signature().map(|s| s.d.clone());
            let (name, detail) = match output.result() {
                DkimResult::Pass => ("DKIM_VALID", domain.unwrap_or_default()),
                DkimResult::TempError(e) => ("DKIM_TEMPERROR", with_reason(domain, e)),
                DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => ("DKIM_INVALID", with_reason(domain, e)),
                DkimResult::None => continue,
            };
            match found.iter_mut().find(|(n, _)| *n == name) {
                Some((_, details)) => {
                    if !details.contains(&detail) {
                        details.push(detail);
                    }
                }
                None => found.push((name, vec![detail])),
            }
        }
        if found.is_empty() {
            self.add("DKIM_NONE".to_string(), String::new());
        }
        for (name, details) in found {
            let separator = if name == "DKIM_VALID" { " " } else { "; " };
            self.add(name.to_string(), details.join(separator));
        }
    }

    fn dmarc(&mut self, dmarc: Option<&DmarcOutput>, policy: Option<(Policy, u8)>) {
        let Some(dmarc) = dmarc else {
            self.add("DMARC_NONE".to_string(), String::new());
            return;
        };
        let domain = dmarc.domain().to_string();
        match dmarc.result() {
            DmarcResult::Pass => self.add("DMARC_PASS".to_string(), domain),
            DmarcResult::Fail(_) => self.add("DMARC_FAIL".to_string(), domain),
            DmarcResult::TempError(e) => self.add("DMARC_TEMPERROR".to_string(), format!("{domain}: {e}")),
            DmarcResult::PermError(e) => self.add("DMARC_NONE".to_string(), format!("{domain}: {e}")),
            DmarcResult::None => self.add("DMARC_NONE".to_string(), domain),
        }
        let Some((policy, pct)) = policy else { return };
        let detail = if pct < 100 { format!("{} (pct={pct}: one step weaker)", dmarc.domain()) } else { dmarc.domain().to_string() };
        match policy {
            Policy::Reject => self.add("DMARC_POLICY_REJECT".to_string(), detail),
            Policy::Quarantine => self.add("DMARC_POLICY_QUARANTINE".to_string(), detail),
            Policy::None | Policy::Unspecified => {}
        }
    }

    fn arc(&mut self, arc: Option<&ArcOutput<'_>>) {
        let Some(arc) = arc else {
            self.add("ARC_NONE".to_string(), String::new());
            return;
        };
        match arc.result() {
            DkimResult::Pass => self.add("ARC_VALID".to_string(), format!("i={}", arc.sets().len())),
            DkimResult::None => self.add("ARC_NONE".to_string(), String::new()),
            DkimResult::TempError(e) => self.add("ARC_TEMPERROR".to_string(), e.to_string()),
            DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => self.add("ARC_INVALID".to_string(), e.to_string()),
        }
    }
}

/// One copy of `message` per DKIM signature, each holding only that signature (and no
/// malformed-signature errors, which are reported once by the caller).
fn single_signatures<'x>(message: &AuthenticatedMessage<'x>) -> Vec<AuthenticatedMessage<'x>> {
    message
        .dkim_headers
        .iter()
        .map(|signature| {
            let mut single = message.clone();
            single.dkim_headers = vec![signature.clone()];
            single.errors.retain(|e| !matches!(e.header, mail_auth::Error::Dkim(_)));
            single.has_dkim_errors = false;
            single
        })
        .collect()
}

/// The error recorded when a method runs out of its time budget.
fn timed_out() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver("lookups took longer than auth.timeout".to_string()))
}

fn with_reason(domain: Option<String>, error: &mail_auth::Error) -> String {
    match domain {
        Some(domain) => format!("{domain}: {error}"),
        None => error.to_string(),
    }
}

fn arc_keyword(result: &DkimResult) -> &'static str {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::None => "none",
        DkimResult::TempError(_) => "temperror",
        DkimResult::PermError(_) => "permerror",
        DkimResult::Fail(_) | DkimResult::Neutral(_) => "fail",
    }
}

/// `Authentication-Results: <id>; <method>;\r\n\t<method>…\r\n`.
fn authentication_results(results: &AuthenticationResults<'_>, authserv_id: &str, extra: &str) -> String {
    let rendered = results.to_string();
    let methods = rendered.strip_prefix(authserv_id).unwrap_or("");
    if methods.is_empty() && extra.is_empty() {
        return format!("Authentication-Results: {authserv_id}; none\r\n");
    }
    format!("Authentication-Results: {authserv_id}{methods}{extra}\r\n")
}

/// The `pct` tag of a DMARC record, if present and valid.
fn pct_tag(record: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(record).ok()?;
    text.split(';').find_map(|tag| {
        let (name, value) = tag.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("pct") {
            return None;
        }
        value.trim().parse::<u8>().ok().filter(|pct| *pct <= 100)
    })
}

/// The address without angle brackets or surrounding space.
fn bare_address(sender: &str) -> &str {
    let sender = sender.trim();
    sender.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(sender)
}

/// A name SPF can evaluate: a fully qualified domain (at least two labels; U-labels allowed,
/// mail-auth converts them), not an address literal.
fn is_checkable_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || !b.is_ascii())
        })
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// `message` without the `Authentication-Results` fields that claim `authserv_id` (compared
/// case-insensitively, a trailing dot ignored): RFC 8601 §5 forgeries. Everything else,
/// `ARC-Authentication-Results` included, stays byte for byte. Borrowed when nothing matches.
pub fn strip_forged_results<'a>(message: &'a [u8], authserv_id: &str) -> Cow<'a, [u8]> {
    let ours = authserv_id.trim_end_matches('.');
    crate::headers::remove_fields(message, |field| {
        field.is("Authentication-Results")
            && claimed_authserv_id(field.value).is_some_and(|id| id.trim_end_matches('.').eq_ignore_ascii_case(ours))
    })
}

/// The authserv-id at the start of an `Authentication-Results` value: after any folding white
/// space and comments, a token or a quoted string.
fn claimed_authserv_id(value: &[u8]) -> Option<String> {
    let mut at = skip_cfws(value, 0);
    let rest = value.get(at..)?;
    if rest.first() == Some(&b'"') {
        let mut id = Vec::new();
        at += 1;
        while let Some(&b) = value.get(at) {
            match b {
                b'"' => return Some(String::from_utf8_lossy(&id).into_owned()),
                b'\\' => {
                    id.extend(value.get(at + 1));
                    at += 2;
                }
                b'\r' | b'\n' => at += 1,
                _ => {
                    id.push(b);
                    at += 1;
                }
            }
        }
        return None;
    }
    let end = rest.iter().position(|b| matches!(b, b';' | b'(' | b' ' | b'\t' | b'\r' | b'\n')).unwrap_or(rest.len());
    let id = &rest[..end];
    (!id.is_empty()).then(|| String::from_utf8_lossy(id).into_owned())
}

/// Skips white space, line breaks and (nested) comments from `at`.
fn skip_cfws(value: &[u8], mut at: usize) -> usize {
    let mut depth = 0usize;
    while let Some(&b) = value.get(at) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => at += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_claiming_our_id_are_removed_and_nothing_else() {
        let message = b"Received: from a by b\r\n\
Authentication-Results: MX.Moat.Test; spf=pass smtp.mailfrom=x@y.test\r\n\
Authentication-Results: other.test; dkim=pass\r\n\
Authentication-Results:\r\n\t(forged) mx.moat.test.;\r\n\tdmarc=pass\r\n\
authentication-results: \"mx.moat.test\" 1; arc=pass\r\n\
Authentication-Results: mx.moat.test.evil.test; spf=pass\r\n\
ARC-Authentication-Results: i=1; mx.moat.test; spf=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.moat.test; body line stays\r\n";
        let out = strip_forged_results(message, "mx.moat.test");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "Received: from a by b\r\n\
Authentication-Results: other.test; dkim=pass\r\n\
Authentication-Results: mx.moat.test.evil.test; spf=pass\r\n\
ARC-Authentication-Results: i=1; mx.moat.test; spf=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: mx.moat.test; body line stays\r\n"
        );
        let clean = b"Subject: x\r\n\r\nbody\r\n";
        assert!(matches!(strip_forged_results(clean, "mx.moat.test"), Cow::Borrowed(_)));
    }

    #[test]
    fn authserv_id_parsing_never_panics_on_odd_values() {
        for value in [&b""[..], b"(", b"\"", b"\"a\\", b"  ;", b"(a(b)c) id;", b"\\", b"(\\"] {
            let _ = claimed_authserv_id(value);
        }
        assert_eq!(claimed_authserv_id(b" (a (nested) c) id.test; x").as_deref(), Some("id.test"));
        assert_eq!(claimed_authserv_id(b"\"q\\\"d\"; x").as_deref(), Some("q\"d"));
        assert_eq!(claimed_authserv_id(b"   ").as_deref(), None);
    }

    #[test]
    fn pct_tags_and_identities() {
        assert_eq!(pct_tag(b"v=DMARC1; p=reject; pct=50"), Some(50));
        assert_eq!(pct_tag(b"v=DMARC1;p=reject;PCT = 0 "), Some(0));
        assert_eq!(pct_tag(b"v=DMARC1; p=reject; pct=101"), None);
        assert_eq!(pct_tag(b"v=DMARC1; p=reject"), None);
        assert_eq!(bare_address(" <a@b.test> "), "a@b.test");
        assert_eq!(bare_address("<>"), "");
        assert!(is_checkable_domain("mail.sender.test"));
        assert!(is_checkable_domain("mail.sender.test."));
        assert!(!is_checkable_domain("localhost"));
        assert!(!is_checkable_domain("[192.0.2.1]"));
        assert!(!is_checkable_domain("192.0.2.1"));
        assert!(!is_checkable_domain("a..test"));
        assert!(!is_checkable_domain("a b.test"));
        assert!(is_checkable_domain("bücher.test"));
    }

    #[test]
    fn authentication_results_without_methods_says_none() {
        let results = AuthenticationResults::new("mx.moat.test");
        assert_eq!(authentication_results(&results, "mx.moat.test", ""), "Authentication-Results: mx.moat.test; none\r\n");
        assert_eq!(
            authentication_results(&results, "mx.moat.test", ";\r\n\tdkim=none"),
            "Authentication-Results: mx.moat.test;\r\n\tdkim=none\r\n"
        );
    }
}
