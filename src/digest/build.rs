//! The digest email: what arrived in the quarantine since the last digest, each item with its
//! date, sender, subject, score and a plain-language reason, and signed release links.
//!
//! Guarantees: multipart text + HTML (mail-builder); every value from a message (subject,
//! sender, symbol details) is escaped in the HTML part and stripped of control characters in
//! both; no images, no remote content, no tracking; an opt-out link in the body and RFC 8058
//! `List-Unsubscribe` / `List-Unsubscribe-Post` headers.

use crate::config::{Config, Web};
use crate::html::escape;

/// A value already made [`shown`], escaped and isolated for the HTML part.
fn bdi(text: &str) -> String {
    format!("<bdi>{}</bdi>", escape(text))
}
use crate::links::{LinkAction, LinkKey};
use crate::notices::{ToUser, shown};
use crate::spool::{Envelope, Spool, Staged};
use crate::store::QuarantineItem;

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

fn text_part(address: &str, rows: &[Row], retention_days: u64, center: &str, unsubscribe: &str) -> String {
    let mut text = format!("Quarantine digest for {}\r\n\r\n", shown(address));
    if rows.is_empty() {
        text.push_str("Nothing new was held for you since your last digest.\r\n");
    } else {
        text.push_str(&format!(
            "{} message(s) were held for you since your last digest. Each is deleted after {retention_days} days.\r\n",
            rows.len()
        ));
    }
    for (n, row) in rows.iter().enumerate() {
        text.push_str(&format!(
            "\r\n{}. {}  From: {}\r\n   Subject: {}\r\n   Score {:.1}: {}\r\n   View: {}\r\n   Release: {}\r\n   Release and always allow this sender: {}\r\n",
            n + 1,
            row.date,
            row.sender,
            row.subject,
            row.score,
            row.reason,
            row.view,
            row.release,
            row.release_allow
        ));
    }
    text.push_str(&format!("\r\nYour whole quarantine, preferences and allow/block lists: {center}\r\n"));
    text.push_str(&format!("\r\nTo stop these digests: {unsubscribe}\r\n"));
    text
}

fn html_part(address: &str, rows: &[Row], retention_days: u64, center: &str, unsubscribe: &str) -> String {
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.4\">\
         <h2 style=\"font-size:1.2em\">Quarantine digest for {}</h2>",
        escape(address)
    );
    if rows.is_empty() {
        html.push_str("<p>Nothing new was held for you since your last digest.</p>");
    } else {
        html.push_str(&format!(
            "<p>{} message(s) were held for you since your last digest. Each is deleted after {retention_days} days.</p>\
             <table cellpadding=\"6\" style=\"border-collapse:collapse\"><tr><th align=\"left\">Date</th><th align=\"left\">From</th>\
             <th align=\"left\">Subject</th><th align=\"left\">Why</th><th></th></tr>",
            rows.len()
        ));
        for row in rows {
            html.push_str(&format!(
                "<tr style=\"border-top:1px solid #ccc\"><td style=\"white-space:nowrap\">{}</td><td style=\"overflow-wrap:anywhere;word-break:break-word\">{}</td>\
                 <td style=\"overflow-wrap:anywhere;word-break:break-word\">{}</td><td>{:.1}: {}</td>\
                 <td><a href=\"{}\">View</a><br><a href=\"{}\">Release</a><br><a href=\"{}\">Release and allow sender</a></td></tr>",
                escape(&row.date),
                bdi(&row.sender),
                bdi(&row.subject),
                row.score,
                escape(&row.reason),
                escape(&row.view),
                escape(&row.release),
                escape(&row.release_allow)
            ));
        }
        html.push_str("</table>");
    }
    html.push_str(&format!(
        "<p><a href=\"{}\">Open your Message Center</a> (your whole quarantine, preferences and allow/block lists)</p>",
        escape(center)
    ));
    html.push_str(&format!(
        "<p style=\"font-size:.9em\">Opening a link shows a page with a button; nothing is released until you press it. \
         <a href=\"{}\">Stop these digests</a>.</p></body></html>",
        escape(unsubscribe)
    ));
    html
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
    let text = text_part(address, &rows, retention_days, &center, &unsubscribe);
    let html = html_part(address, &rows, retention_days, &center, &unsubscribe);
    let message = outgoing.message(&subject, &format!("digest.{id}"), text, Some(html))?;
    let envelope = outgoing.envelope(id, &message, Some(Staged::Digest { address: address.to_string() }));
    Some((envelope, message))
}
