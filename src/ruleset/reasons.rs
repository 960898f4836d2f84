//! Plain-language reasons for held mail: the `reason` directive of the rule files.
//!
//! `reason SYMBOL One short sentence.` (or `reason PREFIX_* …` for every symbol starting with
//! `PREFIX_`) gives the sentence a user reads first for an item that symbol helped hold; the
//! rule descriptions follow as details. `lang de reason SYMBOL Ein Satz.` (SpamAssassin's
//! `lang` prefix) gives it for users who read German: a user's language's lines are looked at
//! first, then the lines without a language. Admins edit them next to the rules (moat ships
//! `rules/60_reasons.cf`); a later file's line for the same language and symbol or prefix
//! replaces an earlier one. Read with the rule files, so a bad line is an error with file:line
//! and nothing is applied.

use std::path::PathBuf;

use super::RuleError;

/// Longest sentence a `reason` line may give (it leads a digest line).
pub const MAX_LEN: usize = 120;

/// One `reason` line: its language ("" for none), symbol or `PREFIX_*`, and sentence.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    lang: String,
    pattern: String,
    sentence: String,
}

/// The `reason` lines in force, in every language.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reasons(Vec<Line>);

impl Reasons {
    /// Adds or replaces the sentence for `pattern` in `lang` ("" for the lines without one).
    pub(crate) fn set(&mut self, lang: &str, pattern: &str, sentence: &str) {
        match self.0.iter_mut().find(|l| l.lang == lang && l.pattern == pattern) {
            Some(line) => line.sentence = sentence.to_string(),
            None => self.0.push(Line { lang: lang.to_string(), pattern: pattern.to_string(), sentence: sentence.to_string() }),
        }
    }

    /// The sentence for `symbol` for a reader of `lang`: among that language's lines, then
    /// among the lines without one, its own line, else the longest matching prefix line.
    pub fn for_symbol(&self, symbol: &str, lang: &str) -> Option<&str> {
        self.in_lang(symbol, lang).or_else(|| self.in_lang(symbol, ""))
    }

    fn in_lang(&self, symbol: &str, lang: &str) -> Option<&str> {
        let lines = || self.0.iter().filter(move |l| l.lang == lang);
        let exact = lines().find(|l| l.pattern == symbol);
        let prefixed = || {
            lines()
                .filter_map(|l| l.pattern.strip_suffix('*').filter(|prefix| symbol.starts_with(prefix)).map(|prefix| (prefix.len(), l)))
                .max_by_key(|(len, _)| *len)
                .map(|(_, l)| l)
        };
        exact.or_else(prefixed).map(|l| l.sentence.as_str())
    }

    /// The sentence of the first symbol in `symbols` (most important first) that has one, for a
    /// reader of `lang`.
    pub fn first_of<'a>(&self, symbols: impl IntoIterator<Item = &'a str>, lang: &str) -> Option<&str> {
        symbols.into_iter().find_map(|s| self.for_symbol(s, lang))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Checks the language of a `lang LANG reason …` line: a language code such as `de` or `pt_br`.
pub(crate) fn check_lang(lang: &str) -> Result<(), String> {
    let (code, region) = lang.split_once('_').unwrap_or((lang, "ok"));
    let letters = |s: &str, n: std::ops::RangeInclusive<usize>| n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase());
    if letters(code, 2..=3) && letters(region, 2..=3) {
        Ok(())
    } else {
        Err(format!("lang: {lang:?} is not a language code such as de or pt_br"))
    }
}

/// Checks one `reason` line's arguments: a symbol name, or a prefix ending in `*`, then text.
pub(crate) fn check(pattern: &str, sentence: &str) -> Result<(), String> {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("reason: {pattern:?} is not a symbol name or a PREFIX_* pattern"));
    }
    if sentence.is_empty() {
        return Err(format!("reason: no sentence for {pattern}"));
    }
    if sentence.chars().count() > MAX_LEN {
        return Err(format!("reason: the sentence for {pattern} is longer than {MAX_LEN} characters"));
    }
    Ok(())
}

/// The reasons in the rule files of `dirs` (the same files the rule set loads), or every error.
/// Reads the files only: no rule is compiled.
pub fn read(dirs: &[PathBuf]) -> Result<Reasons, Vec<RuleError>> {
    let cfg = super::cf::Config::read_dirs(dirs);
    if cfg.errors.is_empty() { Ok(cfg.reasons) } else { Err(cfg.errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_lines_win_over_prefixes_and_the_longest_prefix_wins() {
        let mut r = Reasons::default();
        r.set("", "MOAT_*", "Generic");
        r.set("", "MOAT_CLASSIFIER_*", "Looks like bulk advertising");
        r.set("", "MOAT_CLASSIFIER_99", "Almost certainly spam");
        assert_eq!(r.for_symbol("MOAT_CLASSIFIER_80", "en"), Some("Looks like bulk advertising"));
        assert_eq!(r.for_symbol("MOAT_CLASSIFIER_99", "en"), Some("Almost certainly spam"));
        assert_eq!(r.for_symbol("MOAT_PHARMA", "en"), Some("Generic"));
        assert_eq!(r.for_symbol("SPF_FAIL", "en"), None);
        r.set("", "MOAT_*", "Replaced");
        assert_eq!(r.for_symbol("MOAT_PHARMA", "en"), Some("Replaced"), "a later line replaces");
        assert_eq!(r.first_of(["SPF_FAIL", "MOAT_X", "MOAT_CLASSIFIER_99"], "en"), Some("Replaced"), "the first symbol that has one");
    }

    #[test]
    fn a_readers_language_comes_first_then_the_lines_without_one() {
        let mut r = Reasons::default();
        r.set("", "SPF_FAIL", "Sender failed authentication.");
        r.set("", "CLAMAV_VIRUS", "Contains a virus.");
        r.set("de", "SPF_*", "Der Absender hat die Prüfung nicht bestanden.");
        r.set("fr", "CLAMAV_VIRUS", "Contient un virus.");
        assert_eq!(
            r.for_symbol("SPF_FAIL", "de"),
            Some("Der Absender hat die Prüfung nicht bestanden."),
            "German prefix before the default's exact line"
        );
        assert_eq!(r.for_symbol("SPF_FAIL", "en"), Some("Sender failed authentication."));
        assert_eq!(r.for_symbol("CLAMAV_VIRUS", "de"), Some("Contains a virus."), "no German line: the default");
        assert_eq!(r.first_of(["CLAMAV_VIRUS", "SPF_FAIL"], "fr"), Some("Contient un virus."));
        r.set("de", "SPF_*", "Ersetzt.");
        assert_eq!(r.for_symbol("SPF_SOFTFAIL", "de"), Some("Ersetzt."), "a later line for the same language replaces");
        assert_eq!(r.for_symbol("SPF_FAIL", "en"), Some("Sender failed authentication."), "and leaves the other languages alone");
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(check("SPF_FAIL", "Sender failed authentication").is_ok());
        assert!(check("RCVD_IN_*", "Sent from a listed network").is_ok());
        assert!(check("*", "x").is_err());
        assert!(check("A B", "x").is_err());
        assert!(check("SPF_FAIL", "").is_err());
        assert!(check("SPF_FAIL", &"x".repeat(MAX_LEN + 1)).is_err());
        assert!(check_lang("de").is_ok() && check_lang("pt_br").is_ok());
        assert!(check_lang("DE").is_err() && check_lang("deutsch").is_err() && check_lang("").is_err() && check_lang("de_").is_err());
    }
}
