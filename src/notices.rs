//! The virus notice: a short email telling a recipient that a virus addressed to them was
//! quarantined. It names the sender, subject and date of the infected message and the virus,
//! nothing of its contents, and carries a working opt-out (a link and RFC 8058 one-click
//! `List-Unsubscribe` headers). No images, no tracking. Every body comes from a template
//! (`templates/mail/`), its text part with CRLF line ends ([`text_body`]).
//!
//! Delivery: through moat's own delivery spool to the recipient's mailbox at the downstream, with
//! the null reverse path (an automatic message must not cause bounces back to moat, RFC 3834).
//! The spool id is derived from the item id, so building it again replaces the same entry.

use crate::config::Config;
use crate::i18n::{Catalog, Lang, Locale};
use crate::links::{LinkAction, LinkKey};
use crate::spool::Envelope;
use crate::store::QuarantineItem;
use askama::Template;
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use std::net::{IpAddr, Ipv4Addr};

/// The virus's name, from the item's `CLAMAV_VIRUS` symbol.
pub fn signature_of(item: &QuarantineItem) -> Option<String> {
    let detail = item.symbols.iter().find(|s| s.name == crate::filter::clamav::CLAMAV_VIRUS)?.detail.as_deref()?;
    Some(signature_from_detail(detail))
}

/// The signature in a `CLAMAV_VIRUS` detail: the scorer writes "description (signature)" when
/// the symbol has a description, the filter just "signature".
pub fn signature_from_detail(detail: &str) -> String {
    match detail.strip_suffix(')').and_then(|d| d.rsplit_once(" (")) {
        Some((_, signature)) => signature.to_string(),
        None => detail.to_string(),
    }
}

/// The unsubscribe URL for `address`, valid for the configured link lifetime from `now`.
pub fn unsubscribe_url(config: &Config, key: &LinkKey, address: &str, now: i64) -> Option<String> {
    Some(key.url(config.web.as_ref()?, LinkAction::Unsubscribe, address, "", now))
}

/// Text from mail shown in an email (see [`crate::html::shown`]): never a forged line break, a
/// disguising control character, or more than [`crate::html::LIST_TEXT`] characters.
pub fn shown(text: &str) -> String {
    crate::html::shown(text, crate::html::LIST_TEXT)
}

/// Most characters of a From display name in a list (a digest row, the Message Center's list):
/// the address after it must still show.
pub const LIST_NAME: usize = 60;

/// Who an item is from, as shown: the From field's display name and address first, the envelope
/// sender as a detail where it differs (a newsletter's one-off bounce address). Items without a
/// From address (held before moat kept it, or a From field naming no single address) are shown
/// by their envelope sender. Every part is [`crate::html::shown`]: bidi and invisible controls
/// made visible, cut with "…" past its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The display name, if the From field has one.
    pub name: Option<String>,
    /// The From address, or the envelope sender ("(no sender)" for the null sender).
    pub address: String,
    /// The envelope sender when it is not the From address ("<>" for the null sender).
    pub via: Option<String>,
}

impl Author {
    /// `item`'s author, the name cut at `name_max` characters and the addresses at `max`
    /// ([`LIST_NAME`] and [`crate::html::LIST_TEXT`] in lists, `usize::MAX` on a view page);
    /// `t` words the null sender.
    pub fn of(item: &QuarantineItem, name_max: usize, max: usize, t: &Catalog) -> Author {
        let show = |text: &str, max| crate::html::shown(text, max);
        if item.from_address.is_empty() {
            return Author::envelope(item, max, t);
        }
        let name = (!item.from_name.trim().is_empty()).then(|| show(item.from_name.trim(), name_max));
        let via = match item.sender.as_str() {
            "" => Some("<>".to_string()),
            sender if sender.eq_ignore_ascii_case(&item.from_address) => None,
            sender => Some(show(sender, max)),
        };
        Author { name, address: show(&item.from_address, max), via }
    }

    /// The envelope sender alone, cut at `max` characters: for whoever may not see the message's
    /// header fields (an admin of a domain that keeps subjects from them).
    pub fn envelope(item: &QuarantineItem, max: usize, t: &Catalog) -> Author {
        let address = if item.sender.is_empty() { t.words.no_sender.to_string() } else { crate::html::shown(&item.sender, max) };
        Author { name: None, address, via: None }
    }

    /// On one line: `Name <address>`, or the address alone.
    pub fn line(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} <{}>", self.address),
            None => self.address.clone(),
        }
    }
}

/// A plain-text email body rendered from `template`, its lines ended with CRLF (values in it are
/// single lines: [`shown`] or URLs).
pub fn text_body(template: &impl Template) -> Option<String> {
    template.render().ok().map(|text| text.replace('\n', "\r\n"))
}

#[derive(Template)]
#[template(path = "mail/virus_notice.txt")]
struct VirusNotice<'a> {
    t: &'static Catalog,
    /// The labels (from, via, subject, date, virus), padded to line up.
    labels: [String; 5],
    sender: &'a str,
    /// The envelope sender, where it is not the From address shown as `sender`.
    via: Option<String>,
    subject: &'a str,
    date: String,
    virus: &'a str,
    expires: String,
    reference: &'a str,
    unsubscribe: &'a str,
}

/// The notice for `item` (spool envelope and message), in the recipient's language with times in
/// their zone (`locale`, see [`Config::locale_for`]), or `None` when there is no `[web]` section
/// to serve its opt-out link.
pub fn virus_notice(config: &Config, key: &LinkKey, item: &QuarantineItem, locale: &Locale, now: i64) -> Option<(Envelope, Vec<u8>)> {
    let t = locale.t();
    let unsubscribe = unsubscribe_url(config, key, &item.recipient, now)?;
    let sender = if item.sender.is_empty() { t.words.no_sender.to_string() } else { shown(&item.sender) };
    let author = Author::of(item, LIST_NAME, crate::html::LIST_TEXT, t);
    let subject = if item.subject.is_empty() { t.words.no_subject.to_string() } else { shown(&item.subject) };
    let virus = signature_of(item).map_or_else(|| t.virus_notice.malware.to_string(), |s| shown(&s));
    let v = &t.virus_notice;
    let text = text_body(&VirusNotice {
        t,
        labels: crate::i18n::padded([&v.label_from, &v.label_via, &v.label_subject, &v.label_date, &v.label_virus]),
        sender: &author.line(),
        via: author.via.clone(),
        subject: &subject,
        date: t.day_minute(item.date, &locale.zone),
        virus: &virus,
        expires: t.day_minute(item.expires_at, &locale.zone),
        reference: &item.id,
        unsubscribe: &unsubscribe,
    })?;
    let outgoing = ToUser { config, address: &item.recipient, unsubscribe: &unsubscribe, now, t };
    let message = outgoing.message(&v.subject.with("sender", &sender).to_string(), &format!("virus-notice.{}", item.id), text, None)?;
    Some((outgoing.envelope(format!("N{}", item.id.to_ascii_uppercase()), &message, None), message))
}

#[derive(Template)]
#[template(path = "mail/login.txt")]
struct LoginEmail<'a> {
    t: &'static Catalog,
    minutes: u64,
    link: &'a str,
    unsubscribe: &'a str,
}

/// The "here is your login link" email for `address` (asked for on the Message Center's
/// login page) in their language `lang`, or `None` without a `[web]` section.
pub fn login_email(config: &Config, key: &LinkKey, address: &str, lang: Lang, now: i64) -> Option<(Envelope, Vec<u8>)> {
    let t = lang.catalog();
    let web = config.web.as_ref()?;
    let unsubscribe = unsubscribe_url(config, key, address, now)?;
    let link = key.url_for(web, LinkAction::Login, address, "", now, web.login_link_lifetime.0);
    let text = text_body(&LoginEmail { t, minutes: web.login_link_lifetime.0 / 60, link: &link, unsubscribe: &unsubscribe })?;
    let id = crate::spool::Spool::new_id();
    let outgoing = ToUser { config, address, unsubscribe: &unsubscribe, now, t };
    let message = outgoing.message(&t.login_email.subject.to_string(), &format!("login.{id}"), text, None)?;
    Some((outgoing.envelope(id, &message, None), message))
}

/// An email moat writes to one of its users (notice or digest): from `[notices] from` (named
/// "Mail filter" in the user's language), with the auto-generated marker and the one-click
/// opt-out headers; its envelope has the null sender.
pub struct ToUser<'a> {
    pub config: &'a Config,
    pub address: &'a str,
    /// The user's unsubscribe URL.
    pub unsubscribe: &'a str,
    pub now: i64,
    /// The user's language's texts.
    pub t: &'static Catalog,
}

impl ToUser<'_> {
    /// The message: `text` (and `html`, as an alternative, when given) under our headers;
    /// `message_id` is the local part of the Message-ID.
    pub fn message(&self, subject: &str, message_id: &str, text: String, html: Option<String>) -> Option<Vec<u8>> {
        let from = self.config.notice_from();
        let builder = MessageBuilder::new()
            .from((self.t.words.mail_filter.as_str(), from.as_str()))
            .to(self.address)
            .subject(subject)
            .date(self.now)
            .message_id(format!("{message_id}@{}", self.config.hostname))
            .header("Auto-Submitted", Raw::new("auto-generated"))
            .header("List-Unsubscribe", Raw::new(format!("<{}>", self.unsubscribe)))
            .header("List-Unsubscribe-Post", Raw::new("List-Unsubscribe=One-Click"))
            .text_body(text);
        let builder = match html {
            Some(html) => builder.html_body(html),
            None => builder,
        };
        builder.write_to_vec().ok()
    }

    /// The spool envelope of `message` under queue id `id`.
    pub fn envelope(&self, id: String, message: &[u8], staged: Option<crate::spool::Staged>) -> Envelope {
        Envelope {
            id,
            received_at: self.now,
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: self.config.hostname.clone(),
            sender: String::new(),
            recipients: vec![self.address.to_string()],
            smtputf8: !self.address.is_ascii(),
            body_8bit: !message.is_ascii(),
            tls: None,
            hold: None,
            staged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Category, ItemState};
    use crate::verdict::Symbol;

    fn utc() -> Locale {
        Locale { lang: Lang::En, zone: "UTC".into() }
    }

    fn config(web: bool) -> Config {
        let web = if web { "[web]\nlisten = \"127.0.0.1:8025\"\npublic_url = \"https://q.example.test/\"\n" } else { "" };
        let text = format!(
            "hostname = \"mx.example.test\"\n[[listen]]\naddress = \"127.0.0.1:2525\"\nstarttls = false\n[downstream]\nhost = \"127.0.0.1\"\n[[domain]]\nname = \"example.test\"\n{web}"
        );
        crate::config::load_str("t.toml", &text, std::path::Path::new(".")).expect("config")
    }

    fn item() -> QuarantineItem {
        QuarantineItem {
            id: "00ff".into(),
            recipient: "alice@example.test".into(),
            sender: "evil@remote.example".into(),
            subject: "Invoice\r\nBcc: everyone@example.test".into(),
            from_name: String::new(),
            from_address: String::new(),
            date: 1_700_000_000,
            size: 100,
            score: 100.0,
            symbols: vec![Symbol::with_detail("CLAMAV_VIRUS", "ClamAV found a virus or malware (Eicar-Test-Signature)")],
            category: Category::Virus,
            state: ItemState::Held,
            created_at: 1_700_000_000,
            expires_at: 1_702_592_000,
        }
    }

    #[test]
    fn the_notice_names_the_virus_and_carries_a_working_one_click_opt_out() {
        let key = LinkKey::from_bytes([1; 32]);
        let (envelope, message) = virus_notice(&config(true), &key, &item(), &utc(), 1_700_000_100).expect("a notice");
        let text = String::from_utf8(message).unwrap();
        assert_eq!((envelope.sender.as_str(), envelope.recipients.as_slice()), ("", ["alice@example.test".to_string()].as_slice()));
        assert!(text.contains("Virus:   Eicar-Test-Signature"), "{text}");
        assert!(text.contains("Subject: Invoice  Bcc: everyone@example.test"), "CR/LF from the subject cannot make a header: {text}");
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        let url = text.split("List-Unsubscribe: <").nth(1).and_then(|rest| rest.split('>').next()).expect("List-Unsubscribe URL");
        let token = url.strip_prefix("https://q.example.test/l/").expect("under public_url");
        let link = key.verify(token, 1_700_000_100).expect("a valid link");
        assert_eq!((link.action, link.address.as_str()), (LinkAction::Unsubscribe, "alice@example.test"));
        let parsed = mail_parser::MessageParser::default().parse(text.as_bytes()).expect("parses");
        let body = parsed.body_text(0).expect("a text body");
        assert!(body.contains(&format!("To stop these emails: {url}")), "the opt-out is in the body too: {body}");
        assert!(!text.contains("<img") && !text.to_ascii_lowercase().contains("text/html"), "no images, no HTML");
        assert!(body.contains("  From:    evil@remote.example\r\n  Subject:"), "an item without a From field: {body}");

        let mut forged = item();
        (forged.from_name, forged.from_address) = ("Your \u{202E}kabN".into(), "ceo@bank.test".into());
        let (_, message) = virus_notice(&config(true), &key, &forged, &utc(), 1_700_000_100).expect("a notice");
        let parsed = mail_parser::MessageParser::default().parse(&message).expect("parses");
        let body = parsed.body_text(0).expect("a text body");
        assert!(body.contains("  From:    Your [U+202E]kabN <ceo@bank.test>\r\n  Via:     evil@remote.example\r\n  Subject:"), "{body}");
    }

    #[test]
    fn the_notice_gives_its_times_in_the_zone_given_with_its_name() {
        let (_, message) = virus_notice(
            &config(true),
            &LinkKey::from_bytes([1; 32]),
            &item(),
            &Locale { lang: Lang::En, zone: "Asia/Tokyo".into() },
            1_700_000_100,
        )
        .expect("a notice");
        let parsed = mail_parser::MessageParser::default().parse(&message).expect("parses");
        let body = parsed.body_text(0).expect("a text body");
        assert!(body.contains("  Date:    Wed, 15 Nov 2023 07:13 JST"), "{body}");
        assert!(body.contains("until Fri, 15 Dec 2023 07:13 JST"), "{body}");
        assert!(!body.contains("UTC"), "{body}");
    }

    #[test]
    fn a_german_recipient_gets_the_notice_and_the_login_email_in_german() {
        let key = LinkKey::from_bytes([1; 32]);
        let berlin = Locale { lang: Lang::De, zone: "Europe/Berlin".into() };
        let mut infected = item();
        infected.subject = "Rechnung".into();
        let (_, message) = virus_notice(&config(true), &key, &infected, &berlin, 1_700_000_100).expect("a notice");
        let parsed = mail_parser::MessageParser::default().parse(&message).expect("parses");
        assert_eq!(parsed.subject(), Some("Virus blockiert: Nachricht von evil@remote.example"));
        assert_eq!(parsed.from().and_then(|f| f.first()).and_then(|a| a.name()), Some("E-Mail-Filter"));
        let body = parsed.body_text(0).expect("a text body").replace("\r\n", "\n");
        assert!(body.starts_with("Eine an Sie gerichtete Nachricht enthielt einen Virus und wurde nicht zugestellt.\n"), "{body}");
        assert!(
            body.contains("\n  Von:     evil@remote.example\n  Betreff: Rechnung\n  Datum:   Di., 14. Nov. 2023, 23:13 CET\n"),
            "{body}"
        );
        assert!(body.contains("  Virus:   Eicar-Test-Signature\n"), "{body}");
        assert!(body.contains("Sie bleibt bis Do., 14. Dez. 2023, 23:13 CET in Quarantäne"), "{body}");
        assert!(
            body.contains("nennen Sie die Referenz 00ff.") && body.contains("\nDiese E-Mails abbestellen: https://q.example.test/l/"),
            "{body}"
        );

        let (_, message) = login_email(&config(true), &key, "alice@example.test", Lang::De, 1_700_000_100).expect("an email");
        let parsed = mail_parser::MessageParser::default().parse(&message).expect("parses");
        assert_eq!(parsed.subject(), Some("Ihr Anmeldelink für die Quarantäne"));
        let body = parsed.body_text(0).expect("a text body");
        assert!(body.contains("Hier öffnen (der Link ist 60 Minuten lang gültig):"), "{body}");
        assert!(body.contains("Keine E-Mails mehr zu Ihrer Quarantäne erhalten: https://q.example.test/l/"), "{body}");
    }

    #[test]
    fn no_web_listener_means_no_notice() {
        assert!(virus_notice(&config(false), &LinkKey::from_bytes([1; 32]), &item(), &utc(), 0).is_none());
    }
}
