//! The digest email: what arrived in the quarantine since the last digest, each item with its
//! date, sender, subject, score and a plain-language reason, and signed release links.
//!
//! Guarantees: multipart text + HTML (mail-builder), both from templates
//! (`templates/mail/digest.*`); every value from a message (subject, sender, symbol details) is
//! [`shown`] (no control characters, bidi controls made visible, cut to a list's length) in both
//! and escaped in the HTML part; no images, no remote content, no tracking; an opt-out link in the body and RFC 8058
//! `List-Unsubscribe` / `List-Unsubscribe-Post` headers.

use crate::config::{Config, Web};
use crate::i18n::{Catalog, Locale};
use crate::links::{LinkAction, LinkKey};
use crate::notices::{ToUser, shown, text_body};
use crate::ruleset::reasons::Reasons;
use crate::spool::{Envelope, Spool, Staged};
use crate::store::QuarantineItem;
use askama::Template;

/// The one plain-language sentence an item leads with: the `reason` of its highest-scoring
/// positive symbol that has one (see [`crate::ruleset::reasons`]), in the reader's language
/// where the rule files give one, if any.
pub fn headline(item: &QuarantineItem, reasons: &Reasons, locale: &Locale) -> Option<String> {
    let mut positive: Vec<&crate::verdict::Symbol> = item.symbols.iter().filter(|s| s.score > 0.0).collect();
    positive.sort_by(|a, b| b.score.total_cmp(&a.score));
    reasons.first_of(positive.iter().map(|s| s.name.as_str()), locale.lang.code()).map(shown)
}

/// Up to three reasons, from the highest-scoring positive symbols' descriptions (the rule
/// files' words, as the admin wrote them), or `t`'s "held by policy".
pub fn reason(item: &QuarantineItem, t: &Catalog) -> String {
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
    if reasons.is_empty() { t.words.held_by_policy.to_string() } else { reasons.join("; ") }
}

pub use crate::notices::{Author, LIST_NAME};

struct Row {
    date: String,
    from: Author,
    subject: String,
    /// The score, written the language's way.
    score: String,
    /// The plain-language sentence the item leads with, when a `reason` line covers it.
    headline: Option<String>,
    reason: String,
    view: String,
    release: String,
    release_allow: String,
}

/// The digest's rows, lowest score first: the message most likely wanted (a false positive) is
/// where the user starts reading; equal scores newest first.
fn rows(web: &Web, key: &LinkKey, reasons: &Reasons, address: &str, items: &[QuarantineItem], now: i64, locale: &Locale) -> Vec<Row> {
    let t = locale.t();
    let mut ordered: Vec<&QuarantineItem> = items.iter().collect();
    ordered.sort_by(|a, b| a.score.total_cmp(&b.score).then(b.date.cmp(&a.date)));
    ordered
        .into_iter()
        .map(|item| Row {
            date: crate::clock::minute_in(item.date, &locale.zone),
            from: Author::of(item, LIST_NAME, crate::html::LIST_TEXT, t),
            subject: if item.subject.is_empty() { t.words.no_subject.to_string() } else { shown(&item.subject) },
            score: t.number(item.score),
            headline: headline(item, reasons, locale),
            reason: reason(item, t),
            view: key.url(web, LinkAction::View, address, &item.id, now),
            release: key.url(web, LinkAction::Release, address, &item.id, now),
            release_allow: key.url(web, LinkAction::ReleaseAllow, address, &item.id, now),
        })
        .collect()
}

/// The two parts' contents.
struct Parts<'a> {
    /// The texts, in the user's language.
    t: &'static Catalog,
    /// The text part's labels (subject, from, via, received, why), padded to line up.
    labels: [String; 5],
    address: &'a str,
    /// How the user's domain is named to them (the HTML part's header).
    brand: &'a str,
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

/// The digest for `address` listing `items`, in the user's language with times in their zone
/// (`locale`, see [`Config::locale_for`]), ready for the spool (staged: its id is the ticket
/// recorded with the cursor), or `None` without a `[web]` section for its links.
pub fn digest(
    config: &Config,
    key: &LinkKey,
    reasons: &Reasons,
    address: &str,
    locale: &Locale,
    items: &[QuarantineItem],
    now: i64,
) -> Option<(Envelope, Vec<u8>)> {
    let t = locale.t();
    let web = config.web.as_ref()?;
    let unsubscribe = key.url(web, LinkAction::Unsubscribe, address, "", now);
    let center = key.url(web, LinkAction::Login, address, "", now);
    let rows = rows(web, key, reasons, address, items, now, locale);
    let retention_days = config.store.retention.0 / 86400;
    let subject = match items.len() {
        0 => t.digest.subject_none.to_string(),
        n => t.digest.subject_held.count(n).to_string(),
    };
    let id = Spool::new_id();
    let outgoing = ToUser { config, address, unsubscribe: &unsubscribe, now, t };
    let address_shown = shown(address);
    let brand = config.display_name_for(address);
    let d = &t.digest;
    let labels = crate::i18n::padded([&d.label_subject, &d.label_from, &d.label_via, &d.label_received, &d.label_why]);
    let parts = Parts {
        t,
        labels,
        address: &address_shown,
        brand: &brand,
        rows: &rows,
        retention_days,
        center: &center,
        unsubscribe: &unsubscribe,
    };
    let text = text_body(&TextPart { parts: &parts })?;
    let html = HtmlPart { parts: &parts }.render().ok()?;
    let message = outgoing.message(&subject, &format!("digest.{id}"), text, Some(html))?;
    let envelope = outgoing.envelope(id, &message, Some(Staged::Digest { address: address.to_string() }));
    Some((envelope, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;
    use crate::store::{Category, ItemState};
    use crate::verdict::Symbol;

    fn config() -> Config {
        let text = "hostname = \"mx.example.test\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nstarttls = false\n[downstream]\nhost = \"127.0.0.1\"\n\
                    [[domain]]\nname = \"example.test\"\n[web]\nlisten = \"127.0.0.1:8025\"\npublic_url = \"https://q.example.test/\"\n";
        crate::config::load_str("t.toml", text, std::path::Path::new(".")).expect("config")
    }

    fn item(id: &str, subject: &str, score: f64) -> QuarantineItem {
        let mut symbol = Symbol::with_detail("LOCAL_NEWSY", "Bulk mail from a list you may not know");
        symbol.score = score;
        QuarantineItem {
            id: id.into(),
            recipient: "alice@example.test".into(),
            sender: "news@club.example".into(),
            subject: subject.into(),
            from_name: String::new(),
            from_address: String::new(),
            date: 1_700_000_000,
            size: 100,
            score,
            symbols: vec![symbol],
            category: Category::Spam,
            state: ItemState::Held,
            created_at: 1_700_000_000,
            expires_at: 1_702_592_000,
        }
    }

    fn parts(items: &[QuarantineItem]) -> (String, String) {
        parts_in("UTC", items)
    }

    fn parts_in(zone: &str, items: &[QuarantineItem]) -> (String, String) {
        let (_, text, html) = message_in(Lang::En, zone, items);
        (text, html)
    }

    /// The digest in `lang` and `zone`: its subject, text part and HTML part.
    fn message_in(lang: Lang, zone: &str, items: &[QuarantineItem]) -> (String, String, String) {
        let locale = Locale { lang, zone: zone.into() };
        let (_, message) =
            digest(&config(), &LinkKey::from_bytes([1; 32]), &Reasons::default(), "alice@example.test", &locale, items, 1_700_000_100)
                .expect("a digest");
        let parsed = mail_parser::MessageParser::default().parse(&message).expect("parses");
        let subject = parsed.subject().unwrap_or_default().to_string();
        (subject, parsed.body_text(0).unwrap().into_owned(), parsed.body_html(0).unwrap().into_owned())
    }

    #[test]
    fn a_german_digest_is_german_in_its_subject_and_both_parts_its_labels_lined_up() {
        let items = [item("01", "Vereinsausflug", 10.1), item("02", "Casino", 12.0)];
        let (subject, text, html) = message_in(Lang::De, "Europe/Berlin", &items);
        assert_eq!(subject, "Quarantäne-Übersicht: 2 Nachrichten für Sie zurückgehalten");
        let text = text.replace("\r\n", "\n");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Quarantäne-Übersicht für alice@example.test");
        assert_eq!(
            lines[2],
            "Seit Ihrer letzten Übersicht wurden 2 Nachrichten für Sie zurückgehalten. Zurückgehaltene Nachrichten werden nach 30 Tagen gelöscht."
        );
        let first = lines.iter().position(|l| l.starts_with("1. ")).expect("a numbered block");
        assert_eq!(lines[first], "1. Betreff:       Vereinsausflug");
        assert_eq!(lines[first + 1], "   Von:           news@club.example");
        assert_eq!(lines[first + 2], "   Empfangen:     2023-11-14 23:13 CET");
        assert_eq!(lines[first + 3], "   Spamwert 10,1: Bulk mail from a list you may not know", "the rule's words stay the admin's");
        assert!(lines[first + 4].starts_with("   Ansehen: https://q.example.test/l/"), "{text}");
        assert!(text.contains("\nDiese Übersichten abbestellen: https://q.example.test/l/"), "{text}");
        assert!(text.contains("\nIhre ganze Quarantäne, Einstellungen sowie Zulassungs- und Sperrlisten: https://"), "{text}");
        for english in ["Subject", "Received", "Release", "digest", "Score"] {
            assert!(!text.contains(english), "{english:?} in {text}");
        }
        assert!(html.contains("<html lang=\"de\">") && html.contains(">Freigeben</a>") && html.contains("(Spamwert 12,0)"), "{html}");
        assert!(html.contains("Diese Übersichten abbestellen</a>") && html.contains("Ihr Nachrichtencenter öffnen</a>"), "{html}");
        for english in [">Release<", ">View<", "Why:", "Stop these digests", "Mail filter"] {
            assert!(!html.contains(english), "{english:?} in {html}");
        }
        let (subject, text, _) = message_in(Lang::De, "UTC", &items[..1]);
        assert_eq!(subject, "Quarantäne-Übersicht: 1 Nachricht für Sie zurückgehalten");
        assert!(text.contains("wurde 1 Nachricht für Sie zurückgehalten."), "{text}");
        assert_eq!(message_in(Lang::De, "UTC", &[]).0, "Quarantäne-Übersicht: nichts Neues");
        assert_eq!(message_in(Lang::En, "UTC", &items[..1]).0, "Quarantine digest: 1 message held for you");
    }

    #[test]
    fn the_text_part_reads_on_its_own_one_block_per_message() {
        let (text, _) = parts(&[item("01", "Casino \u{202E}gnp.exe", 12.0), item("02", "Club outing", 10.1)]);
        let text = text.replace("\r\n", "\n");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Quarantine digest for alice@example.test");
        let first = lines.iter().position(|l| l.starts_with("1. ")).expect("a numbered block");
        assert_eq!(lines[first], "1. Subject:  Club outing", "lowest score first: {text}");
        assert_eq!(lines[first + 1], "   From:     news@club.example");
        assert!(lines[first + 2].starts_with("   Received: 2023-11-14 22:13 UTC"), "{text}");
        assert_eq!(lines[first + 3], "   Score 10.1: Bulk mail from a list you may not know");
        assert!(lines[first + 4].starts_with("   View: https://q.example.test/l/"), "{text}");
        assert_eq!(lines[first + 7], "", "a blank line between messages: {text}");
        assert_eq!(lines[first + 8], "2. Subject:  Casino [U+202E]gnp.exe");
        assert!(text.contains("\nTo stop these digests: https://q.example.test/l/"), "{text}");
        assert!(!text.contains("\n\n\n"), "no runs of empty lines: {text}");
    }

    #[test]
    fn times_are_in_the_zone_given_with_its_name_in_both_parts() {
        let (text, html) = parts_in("Asia/Tokyo", &[item("01", "Club outing", 10.1)]);
        assert!(text.contains("   Received: 2023-11-15 07:13 JST"), "{text}");
        assert!(html.contains("2023-11-15 07:13 JST"), "{html}");
        assert!(!text.contains(" UTC") && !html.contains(" UTC"), "{text}\n{html}");
    }

    #[test]
    fn the_author_is_the_from_name_and_address_with_the_envelope_sender_where_it_differs() {
        let mut news = item("01", "News", 10.0);
        news.sender = "bounce-8f3a91@mailer.test".into();
        news.from_name = format!("PayPal \u{202E}ecivreS {}", "W".repeat(100));
        news.from_address = "service@paypal.test".into();
        let t = Lang::En.catalog();
        let shown = Author::of(&news, LIST_NAME, crate::html::LIST_TEXT, t);
        let name = shown.name.clone().unwrap();
        assert_eq!(name, format!("PayPal [U+202E]ecivreS {}…", "W".repeat(LIST_NAME - 16)), "cut at {LIST_NAME} characters of the name");
        assert_eq!((shown.address.as_str(), shown.via.as_deref()), ("service@paypal.test", Some("bounce-8f3a91@mailer.test")));
        assert_eq!(shown.line(), format!("{name} <service@paypal.test>"));
        news.sender = "Service@PayPal.test".into();
        assert_eq!(Author::of(&news, LIST_NAME, 120, t).via, None, "the same address is not repeated");
        news.sender = String::new();
        assert_eq!(Author::of(&news, LIST_NAME, 120, t).via.as_deref(), Some("<>"));
        let (text, _) = parts(&[news]);
        assert!(text.contains("   Sent via: <>\r\n") || text.contains("   Sent via: <>\n"), "{text}");
    }

    #[test]
    fn the_html_part_names_the_domain_and_needs_no_stylesheet_or_image() {
        let (_, html) = parts(&[item("01", "<b>x</b>", 12.0)]);
        assert!(html.contains("example.test <span"), "the header names the domain: {html}");
        assert!(html.contains("<bdi>&lt;b&gt;x&lt;/b&gt;</bdi>"), "{html}");
        for absent in ["<style", "<link", "<img", "<script", "class="] {
            assert!(!html.contains(absent), "{absent} in {html}");
        }
    }
}
