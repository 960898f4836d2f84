//! The words users read, in their language: one catalog per language (`locales/<code>.toml`,
//! built into the binary), parsed into the typed [`Catalog`] that every user-facing template and
//! message takes its text from (digests, login emails, virus notices, the Message Center, the
//! pages behind the links in emails, and the page shell around them; the admin console stays in
//! English). A user's language is their preference, else their domain's `language`, else English
//! (see `Config::language_for`); a page that cannot tell whose it is follows the browser's
//! `Accept-Language` ([`from_accept_language`]).
//!
//! Guarantees: every shipped catalog has every key and no other (`deny_unknown_fields`, no
//! defaults): a missing or misspelled key fails the unit tests, and the configuration check at
//! start (`config::load`), never a render. Every translation of a text has the same named
//! placeholders (`{count}`, `{address}`) as the English one (tested). Placeholders are filled in
//! one pass ([`Text::with`]), so a value that itself contains `{name}` stays as it is; catalog
//! text is plain text, escaped by the templates like any value, placeholder values included.
//! Counts choose their plural form by the language's rule ([`Plural`]).

use serde::Deserialize;
use std::fmt;
use std::sync::LazyLock;

/// A language moat ships a catalog for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    /// Every shipped language, English (the default) first.
    pub const ALL: &'static [Lang] = &[Lang::En, Lang::De];

    /// Its code: `en`, `de` (as in configuration, preferences and `<html lang>`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// The shipped language with code `code` (any letter case, surrounding space ignored).
    pub fn parse(code: &str) -> Option<Lang> {
        let code = code.trim();
        Lang::ALL.iter().copied().find(|lang| lang.code().eq_ignore_ascii_case(code))
    }

    /// Its catalog.
    pub fn catalog(self) -> &'static Catalog {
        match &*CATALOGS {
            Ok(catalogs) => &catalogs[Lang::ALL.iter().position(|l| *l == self).unwrap_or(0)],
            // Unreachable in a binary that started: `check` runs with every configuration load,
            // and the unit tests parse every catalog.
            Err(error) => panic!("{error}"),
        }
    }

    /// The codes of every shipped language, for messages: `en, de`.
    pub fn codes() -> String {
        Lang::ALL.iter().map(|l| l.code()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// How one user reads moat: in their language, with times in their IANA time zone (see
/// `Config::locale_for`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale {
    pub lang: Lang,
    pub zone: String,
}

impl Locale {
    /// The texts in the user's language.
    pub fn t(&self) -> &'static Catalog {
        self.lang.catalog()
    }
}

/// Labels of a plain-text block (`From:`, `Subject:` …), each padded with spaces to the widest
/// one and one more, so the values after them line up in any language.
pub fn padded<const N: usize>(labels: [&Text; N]) -> [String; N] {
    let width = labels.iter().map(|l| l.as_str().chars().count()).max().unwrap_or(0) + 1;
    labels.map(|label| format!("{:<width$}", label.as_str()))
}

/// The catalogs' sources, in the order of [`Lang::ALL`].
const SOURCES: &[(&str, &str)] = &[("en", include_str!("../locales/en.toml")), ("de", include_str!("../locales/de.toml"))];

static CATALOGS: LazyLock<Result<Vec<Catalog>, String>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(code, source)| {
            let catalog: Catalog = toml::from_str(source).map_err(|e| format!("locales/{code}.toml: {e}"))?;
            let lang = Lang::parse(code).ok_or_else(|| format!("locales/{code}.toml: not a language of Lang::ALL"))?;
            if catalog.code != *code {
                return Err(format!("locales/{code}.toml: its code is {:?}", catalog.code));
            }
            Ok(Catalog { lang: Some(lang), ..catalog })
        })
        .collect()
});

/// Whether every built-in catalog parses (checked with the configuration, so a binary with a
/// broken catalog refuses to start).
pub fn check() -> Result<(), String> {
    CATALOGS.as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The first shipped language in an `Accept-Language` header value, by its weights (`de-DE,
/// de;q=0.9, en;q=0.8` → German), else English.
pub fn from_accept_language(header: &str) -> Lang {
    let mut wanted: Vec<(f32, usize, Lang)> = header
        .split(',')
        .enumerate()
        .filter_map(|(at, item)| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let primary = tag.split('-').next()?;
            let weight = parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
            let lang = Lang::parse(primary)?;
            (weight > 0.0).then_some((weight, at, lang))
        })
        .collect();
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    wanted.first().map_or(Lang::En, |(_, _, lang)| *lang)
}

/// A catalog text, possibly with named placeholders (`{count}`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    /// The text with placeholder `name` filled with `value` (more with [`Filled::with`]).
    pub fn with(&self, name: &'static str, value: impl fmt::Display) -> Filled<'_> {
        Filled { text: &self.0, values: vec![(name, value.to_string())] }
    }

    /// The text before placeholder `name` (all of it if there is none): for a template that
    /// wraps the value in markup, `{{ t.x.before("a") }}<strong>{{ a }}</strong>{{ t.x.after("a") }}`.
    pub fn before(&self, name: &str) -> &str {
        self.0.split_once(&format!("{{{name}}}")).map_or(self.0.as_str(), |(before, _)| before)
    }

    /// The text after placeholder `name` (nothing if there is none).
    pub fn after(&self, name: &str) -> &str {
        self.0.split_once(&format!("{{{name}}}")).map_or("", |(_, after)| after)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The placeholders' names, in order.
    pub fn placeholders(&self) -> Vec<&str> {
        placeholders(&self.0)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn placeholders(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        match rest.find('}') {
            Some(close) if is_name(&rest[..close]) => {
                found.push(&rest[..close]);
                rest = &rest[close + 1..];
            }
            _ => {}
        }
    }
    found
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// A text and the values for its placeholders; shown ([`fmt::Display`]) with them filled in
/// one pass. A placeholder without a value is left as it is.
#[derive(Debug, Clone)]
pub struct Filled<'a> {
    text: &'a str,
    values: Vec<(&'static str, String)>,
}

impl Filled<'_> {
    /// One more value.
    pub fn with(mut self, name: &'static str, value: impl fmt::Display) -> Self {
        self.values.push((name, value.to_string()));
        self
    }
}

impl fmt::Display for Filled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.text;
        while let Some(open) = rest.find('{') {
            f.write_str(&rest[..open])?;
            let after = &rest[open + 1..];
            let filled = after.find('}').and_then(|close| {
                let name = &after[..close];
                self.values.iter().find(|(n, _)| *n == name).map(|(_, value)| (value, &after[close + 1..]))
            });
            match filled {
                Some((value, tail)) => {
                    f.write_str(value)?;
                    rest = tail;
                }
                None => {
                    f.write_str("{")?;
                    rest = after;
                }
            }
        }
        f.write_str(rest)
    }
}

/// A text about a count, in the forms the shipped languages need: `one` (exactly 1) and
/// `other` (English and German share this rule; a language with more forms would add them here,
/// with its rule). `{count}` in either form is the count.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Plural {
    one: Text,
    other: Text,
}

impl Plural {
    /// The form for `n`, its `{count}` filled (more values with [`Filled::with`]).
    pub fn count(&self, n: impl Count) -> Filled<'_> {
        let n = n.value();
        if n == 1 { self.one.with("count", n) } else { self.other.with("count", n) }
    }
}

/// A count, as [`Plural::count`] takes it (also by reference, as templates pass values).
pub trait Count: Copy {
    fn value(self) -> u64;
}

impl Count for u64 {
    fn value(self) -> u64 {
        self
    }
}

impl Count for usize {
    fn value(self) -> u64 {
        self as u64
    }
}

impl Count for u32 {
    fn value(self) -> u64 {
        u64::from(self)
    }
}

impl<T: Count> Count for &T {
    fn value(self) -> u64 {
        (*self).value()
    }
}

/// Every text a user reads, in one language: the fields of `locales/<code>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The language's code (`en`): must be the file's.
    pub code: String,
    /// The language's name in itself (`Deutsch`), as the preferences offer it.
    pub language_name: Text,
    /// The decimal separator of scores (`.` or `,`).
    pub decimal_separator: String,
    pub dates: Dates,
    pub words: Words,
    pub page: PageText,
    pub digest: DigestText,
    pub login_email: LoginEmailText,
    pub virus_notice: VirusNoticeText,
    pub login: LoginText,
    pub center: CenterText,
    pub prefs: PrefsText,
    pub links: LinksText,
    #[serde(skip)]
    lang: Option<Lang>,
}

impl Catalog {
    /// The catalog's language.
    pub fn lang(&self) -> Lang {
        self.lang.unwrap_or(Lang::En)
    }

    /// A score (or any number) with one decimal, in the language's notation: `12.5`, `12,5`.
    pub fn number(&self, value: f64) -> String {
        format!("{value:.1}").replace('.', &self.decimal_separator)
    }

    /// A time in the IANA zone `zone`, with the day and month named in this language and the
    /// zone's abbreviation: `Fri, 04 Dec 2026 15:50 JST`, `Fr., 04. Dez. 2026, 15:50 JST`. An
    /// unknown zone shows UTC.
    pub fn day_minute(&self, at: i64, zone: &str) -> String {
        use chrono::{Datelike, Timelike};
        let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        let Some(t) = chrono::DateTime::from_timestamp(at, 0).map(|t| t.with_timezone(&tz)) else { return at.to_string() };
        self.dates
            .day_minute
            .with("weekday", &self.dates.weekdays[t.weekday().num_days_from_monday() as usize])
            .with("day", format!("{:02}", t.day()))
            .with("month", &self.dates.months[t.month0() as usize])
            .with("year", t.year())
            .with("time", format!("{:02}:{:02}", t.hour(), t.minute()))
            .with("zone", t.format("%Z"))
            .to_string()
    }
}

/// Names of days and months for dates written in words.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dates {
    /// Short weekday names, Monday first.
    pub weekdays: [String; 7],
    /// Short month names, January first.
    pub months: [String; 12],
    /// A time with its day: `{weekday} {day} {month} {year} {time} {zone}`.
    pub day_minute: Text,
}

/// Words many pages and emails share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Words {
    pub mail_filter: Text,
    pub from: Text,
    pub to: Text,
    pub subject: Text,
    pub received: Text,
    pub why: Text,
    pub score: Text,
    pub via: Text,
    pub no_subject: Text,
    pub no_sender: Text,
    pub unnamed: Text,
    pub held_by_policy: Text,
    pub release: Text,
    pub release_allow: Text,
    pub view: Text,
    pub text: Text,
    pub attachments: Text,
    pub held_message: Text,
    pub held_because: Text,
    pub score_note: Text,
    pub score_category_note: Text,
    pub spam: Text,
    pub virus: Text,
    pub policy: Text,
    pub held: Text,
    pub released: Text,
    pub deleted: Text,
    pub back_to_quarantine: Text,
    pub back_to_preferences: Text,
}

impl Words {
    /// A category's name.
    pub fn category(&self, category: &str) -> &Text {
        match category {
            "virus" => &self.virus,
            "policy" => &self.policy,
            _ => &self.spam,
        }
    }

    /// A state's name.
    pub fn state(&self, state: &str) -> &Text {
        match state {
            "released" => &self.released,
            "deleted" => &self.deleted,
            _ => &self.held,
        }
    }
}

/// The page shell, and the pages any area may answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageText {
    pub skip: Text,
    pub nav_label: Text,
    pub nav_quarantine: Text,
    pub nav_preferences: Text,
    pub signed_in_as: Text,
    pub sign_out: Text,
    pub error_title: Text,
    pub cannot_show: Text,
    pub unavailable_title: Text,
    pub unavailable: Text,
    pub not_found_title: Text,
    pub refused_title: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestText {
    pub subject_none: Text,
    pub subject_held: Plural,
    pub title: Text,
    pub heading: Text,
    pub nothing_new: Text,
    pub held: Plural,
    pub deleted_after: Plural,
    pub lowest_first: Text,
    pub label_subject: Text,
    pub label_from: Text,
    pub label_via: Text,
    pub label_received: Text,
    pub label_why: Text,
    pub score_line: Text,
    pub link_view: Text,
    pub link_release: Text,
    pub link_release_allow: Text,
    pub press_note: Text,
    pub open_center: Text,
    pub center_note: Text,
    pub center_line: Text,
    pub stop: Text,
    pub stop_line: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginEmailText {
    pub subject: Text,
    pub asked: Text,
    pub open: Plural,
    pub ignore: Text,
    pub stop_line: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirusNoticeText {
    pub subject: Text,
    pub intro: Text,
    pub label_from: Text,
    pub label_via: Text,
    pub label_subject: Text,
    pub label_date: Text,
    pub label_virus: Text,
    pub malware: Text,
    pub kept_until: Text,
    pub mistake: Text,
    pub stop_line: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginText {
    pub title: Text,
    pub intro: Text,
    pub address: Text,
    pub send: Text,
    pub who_gets_links: Text,
    pub other_site: Text,
    pub sent_title: Text,
    pub sent: Text,
    pub not_enabled: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterText {
    pub list_title: Text,
    pub search_label: Text,
    pub search: Text,
    pub category: Text,
    pub all: Text,
    pub show: Text,
    pub show_held: Text,
    pub show_released: Text,
    pub spam: Text,
    pub virus: Text,
    pub policy: Text,
    pub total: Plural,
    pub select: Text,
    pub select_message: Text,
    pub pages: Text,
    pub newer: Text,
    pub older: Text,
    pub selected_messages: Text,
    pub this_message: Text,
    pub not_spam_release: Text,
    pub block: Text,
    pub delete: Text,
    pub spam_after_all: Text,
    pub was_released: Text,
    pub html_version: Text,
    pub html_note: Text,
    pub html_frame: Text,
    pub attachments_note: Text,
    pub not_found_title: Text,
    pub not_found: Text,
    pub expired_form: Text,
    pub signed_out_title: Text,
    pub signed_out: Text,
    pub sign_in_again: Text,
    pub nothing_done: Text,
    pub choose_action: Text,
    pub none_selected: Text,
    pub done_title: Text,
    pub released: Plural,
    pub released_allowed: Plural,
    pub blocked: Plural,
    pub deleted: Plural,
    pub reported: Plural,
    pub on_their_way: Text,
    pub failed: Plural,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefsText {
    pub title: Text,
    pub emails: Text,
    pub send_emails: Text,
    pub how_often: Text,
    pub default: Text,
    pub daily: Text,
    pub weekly: Text,
    pub never: Text,
    pub filtering: Text,
    pub on: Text,
    pub off: Text,
    pub language_heading: Text,
    pub language: Text,
    pub language_default: Text,
    pub language_error: Text,
    pub time_zone: Text,
    pub time_zone_hint: Text,
    pub time_zone_error: Text,
    pub save: Text,
    pub allow_title: Text,
    pub block_title: Text,
    pub no_entries: Text,
    pub remove: Text,
    pub remove_entry: Text,
    pub entry_label: Text,
    pub add: Text,
    pub data_title: Text,
    pub data_intro: Text,
    pub data_json: Text,
    pub data_mbox: Text,
    pub saved_title: Text,
    pub saved: Text,
    pub nothing_changed: Text,
    pub unknown_list: Text,
    pub entry_invalid: Text,
    pub entry_restricted: Text,
    pub list_changed_title: Text,
    pub list_changed: Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksText {
    pub invalid_title: Text,
    pub expired: Text,
    pub malformed: Text,
    pub not_enabled: Text,
    pub gone: Text,
    pub already_released: Text,
    pub was_deleted: Text,
    pub nothing_to_do: Text,
    pub unsubscribe_title: Text,
    pub unsubscribe_question: Text,
    pub unsubscribe: Text,
    pub confirm_release: Text,
    pub confirm_release_allow: Text,
    pub press_note: Text,
    pub only_opens: Text,
    pub unsubscribed_title: Text,
    pub unsubscribed: Text,
    pub released_title: Text,
    pub on_its_way: Text,
    pub allowed: Text,
    pub cannot_allow: Text,
    pub attachments_note: Text,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_parses_with_every_key_and_is_the_language_it_says() {
        check().expect("every catalog parses");
        for lang in Lang::ALL {
            let catalog = lang.catalog();
            assert_eq!((catalog.code.as_str(), catalog.lang()), (lang.code(), *lang));
            assert_eq!(Lang::parse(&lang.code().to_ascii_uppercase()), Some(*lang));
        }
        assert_eq!(Lang::parse("fr"), None);
        assert_eq!(Lang::parse(""), None);
        assert_eq!(Lang::codes(), "en, de");
    }

    /// Every string of `value` by its key path (`center.released.one`).
    fn strings(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
        match value {
            toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            toml::Value::Table(table) => {
                for (key, value) in table {
                    strings(&format!("{prefix}{}{key}", if prefix.is_empty() { "" } else { "." }), value, out);
                }
            }
            toml::Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    strings(&format!("{prefix}[{i}]"), value, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }

    #[test]
    fn every_translation_has_the_english_keys_and_the_same_placeholders() {
        let english: toml::Value = toml::from_str(SOURCES[0].1).unwrap();
        let mut english_strings = Vec::new();
        strings("", &english, &mut english_strings);
        assert!(english_strings.len() > 150, "{}", english_strings.len());
        for (code, source) in &SOURCES[1..] {
            let other: toml::Value = toml::from_str(source).unwrap();
            let mut other_strings = Vec::new();
            strings("", &other, &mut other_strings);
            let keys = |list: &[(String, String)]| list.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
            assert_eq!(keys(&other_strings), keys(&english_strings), "locales/{code}.toml has other keys than en.toml");
            for ((key, en), (_, translated)) in english_strings.iter().zip(&other_strings) {
                let mut want = placeholders(en);
                let mut got = placeholders(translated);
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(got, want, "locales/{code}.toml {key}: {translated:?} against {en:?}");
                assert!(!translated.trim().is_empty(), "locales/{code}.toml {key} is empty");
                if key != "code" && key != "decimal_separator" && !key.starts_with("dates.") && key != "language_name" {
                    // A text left in English is a text not translated (a few words are the same).
                    let same_ok = ["words.spam", "words.virus", "words.text", "center.spam", "prefs.filtering"];
                    assert!(
                        translated != en || same_ok.contains(&key.as_str()) || en.len() < 8,
                        "locales/{code}.toml {key} is English: {en:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn placeholders_are_filled_in_one_pass_and_others_are_left_alone() {
        let text = Text("{count} from {address}, {unknown} {not a name} {".into());
        let filled = text.with("count", 3).with("address", "{count}@x.test").to_string();
        assert_eq!(filled, "3 from {count}@x.test, {unknown} {not a name} {");
        assert_eq!(text.placeholders(), ["count", "address", "unknown"]);
        let split = Text("Stop emails to {address}?".into());
        assert_eq!((split.before("address"), split.after("address")), ("Stop emails to ", "?"));
        assert_eq!((split.before("x"), split.after("x")), ("Stop emails to {address}?", ""));
    }

    #[test]
    fn counts_choose_their_plural_form() {
        let en = Lang::En.catalog();
        let de = Lang::De.catalog();
        assert_eq!(en.center.released.count(1u64).to_string(), "1 message released.");
        assert_eq!(en.center.released.count(2u32).to_string(), "2 messages released.");
        assert_eq!(en.center.total.count(0u64).to_string(), "0 messages.");
        assert_eq!(de.center.released.count(1usize).to_string(), "1 Nachricht freigegeben.");
        assert_eq!(de.center.released.count(3usize).to_string(), "3 Nachrichten freigegeben.");
    }

    #[test]
    fn dates_and_numbers_are_written_the_languages_way() {
        let at = 1_796_367_000; // Fri 2026-12-04 06:50 UTC
        assert_eq!(Lang::En.catalog().day_minute(at, "Asia/Tokyo"), crate::clock::day_minute_in(at, "Asia/Tokyo"));
        assert_eq!(Lang::En.catalog().day_minute(at, "Not/AZone"), crate::clock::day_minute_in(at, "UTC"));
        assert_eq!(Lang::De.catalog().day_minute(at, "Europe/Berlin"), "Fr., 04. Dez. 2026, 07:50 CET");
        assert_eq!(Lang::De.catalog().day_minute(at + 86400 * 180, "Europe/Berlin"), "Mi., 02. Juni 2027, 08:50 CEST");
        assert_eq!(Lang::En.catalog().number(12.25), "12.2");
        assert_eq!(Lang::De.catalog().number(10.06), "10,1");
    }

    #[test]
    fn a_browser_asks_for_a_language_by_weight() {
        assert_eq!(from_accept_language("de-DE,de;q=0.9,en;q=0.8"), Lang::De);
        assert_eq!(from_accept_language("fr-FR, en;q=0.5, de;q=0.7"), Lang::De);
        assert_eq!(from_accept_language("en-GB,de;q=0.9"), Lang::En);
        assert_eq!(from_accept_language("de;q=0, fr"), Lang::En);
        assert_eq!(from_accept_language(""), Lang::En);
        assert_eq!(from_accept_language("*"), Lang::En);
    }
}
