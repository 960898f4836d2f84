//! The digest email: what arrived in the quarantine since the last digest, each item with its
//! date, sender, subject, score and a plain-language reason, and signed release links.
//!
//! Guarantees: multipart text + HTML (mail-builder), both from templates
//! (`templates/mail/digest.*`); every value from a message (subject, sender, symbol details) is
//! [`shown`] (no control characters, bidi controls made visible, cut to a list's length) in both
//! and escaped in the HTML part; no images, no remote content, no tracking; an opt-out link in the body and RFC 8058
//! `List-Unsubscribe` / `List-Unsubscribe-Post` headers.

use crate::config::{Config, Web};
use crate::links::{LinkAction, LinkKey};
use crate::notices::{ToUser, shown, text_body};
use crate::spool::{Envelope, Spool, Staged};
use crate::store::QuarantineItem;
use askama::Template;

/// Up to three reasons, from the highest-scoring positive symbols' descriptions.
pub fn reason(item: &QuarantineItem) -> String {
    let reasons: Vec<String> = item
        .symbols
        .iter()
        .filter(|s| s.score > 0.0)
        .take(3)
        .map(|s| {
            let text = s.detail.as_deref().unwrap_or(&s.name);
            // "description (detail)": the description is the plain-language part.
            let plain = text.rsplit_once(" (").filter(|_| text.ends_with(')')).map_or(text, |(d, _)| d);
            shown(plain)
        })
        .collect();
    if reasons.is_empty() { "held by policy".into() } else { reasons.join("; ") }
}

struct Row {
    date: String,
    sender: String,
    subject: String,
    score: f64,
    reason: String,
    view: String,
    release: String,
    release_allow: String,
}

/// The digest's rows, lowest score first: the message most likely wanted (a false positive) is
/// where the user starts reading; equal scores newest first.
fn rows(web: &Web, key: &LinkKey, address: &str, items: &[QuarantineItem], now: i64, zone: &str) -> Vec<Row> {
    let mut ordered: Vec<&QuarantineItem> = items.iter().collect();
    ordered.sort_by(|a, b| a.score.total_cmp(&b.score).then(b.date.cmp(&a.date)));
    ordered
        .into_iter()
        .map(|item| Row {
            date: crate::clock::minute_in(item.date, zone),
            sender: if item.sender.is_empty() { "(no sender)".into() } else { shown(&item.sender) },
            subject: if item.subject.is_empty() { "(no subject)".into() } else { shown(&item.subject) },
            score: item.score,
            reason: reason(item),
            view: key.url(web, LinkAction::View, address, &item.id, now),
            release: key.url(web, LinkAction::Release, address, &item.id, now),
            release_allow: key.url(web, LinkAction::ReleaseAllow, address, &item.id, now),
        })
        .collect()
}

/// The two parts' contents.
struct Parts<'a> {
    address: &'a str,
    rows: &'a [Row],
    retention_days: u64,
    center: &'a str,
    unsubscribe: &'a str,
}

#[derive(Template)]
#[template(path = "mail/digest.txt")]
struct TextPart<'a> {
    parts: &'a Parts<'a>,
}

#[derive(Template)]
#[template(path = "mail/digest.html")]
struct HtmlPart<'a> {
    parts: &'a Parts<'a>,
}

impl<'a> std::ops::Deref for TextPart<'a> {
    type Target = Parts<'a>;

    fn deref(&self) -> &Parts<'a> {
        self.parts
    }
}

impl<'a> std::ops::Deref for HtmlPart<'a> {
    type Target = Parts<'a>;

    fn deref(&self) -> &Parts<'a> {
        self.parts
    }
}

/// The digest for `address` listing `items`, ready for the spool (staged: its id is the ticket
/// recorded with the cursor), or `None` without a `[web]` section for its links.
pub fn digest(config: &Config, key: &LinkKey, address: &str, items: &[QuarantineItem], now: i64) -> Option<(Envelope, Vec<u8>)> {
    let web = config.web.as_ref()?;
    let unsubscribe = key.url(web, LinkAction::Unsubscribe, address, "", now);
    let center = key.url(web, LinkAction::Login, address, "", now);
    let zone = config.digest_for_address(address).timezone;
    let rows = rows(web, key, address, items, now, &zone);
    let retention_days = config.store.retention.0 / 86400;
    let subject = match items.len() {
        0 => "Quarantine digest: nothing new".to_string(),
        1 => "Quarantine digest: 1 message held for you".to_string(),
        n => format!("Quarantine digest: {n} messages held for you"),
    };
    let id = Spool::new_id();
    let outgoing = ToUser { config, address, unsubscribe: &unsubscribe, now };
    let address_shown = shown(address);
    let parts = Parts { address: &address_shown, rows: &rows, retention_days, center: &center, unsubscribe: &unsubscribe };
    let text = text_body(&TextPart { parts: &parts })?;
    let html = HtmlPart { parts: &parts }.render().ok()?;
    let message = outgoing.message(&subject, &format!("digest.{id}"), text, Some(html))?;
    let envelope = outgoing.envelope(id, &message, Some(Staged::Digest { address: address.to_string() }));
    Some((envelope, message))
}
