//! Plain-language reasons for held mail: the `reason` directive of the rule files.
//!
//! `reason SYMBOL One short sentence.` (or `reason PREFIX_* …` for every symbol starting with
//! `PREFIX_`) gives the sentence a user reads first for an item that symbol helped hold; the
//! rule descriptions follow as details. Admins edit them next to the rules (moat ships
//! `rules/60_reasons.cf`); a later file's line for the same symbol or prefix replaces an
//! earlier one. Read with the rule files, so a bad line is an error with file:line and nothing
//! is applied.

use std::path::PathBuf;

use super::RuleError;

/// Longest sentence a `reason` line may give (it leads a digest line).
pub const MAX_LEN: usize = 120;

/// Symbol (or `PREFIX_*`) → sentence.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reasons(Vec<(String, String)>);

impl Reasons {
    /// Adds or replaces the sentence for `pattern`.
    pub(crate) fn set(&mut self, pattern: &str, sentence: &str) {
        match self.0.iter_mut().find(|(p, _)| p == pattern) {
            Some(entry) => entry.1 = sentence.to_string(),
            None => self.0.push((pattern.to_string(), sentence.to_string())),
        }
    }

    /// The sentence for `symbol`: its own line, else the longest matching prefix line.
    pub fn for_symbol(&self, symbol: &str) -> Option<&str> {
        let exact = self.0.iter().find(|(p, _)| p == symbol);
        let prefixed = || {
            (self.0.iter())
                .filter_map(|(p, s)| p.strip_suffix('*').filter(|prefix| symbol.starts_with(prefix)).map(|prefix| (prefix.len(), s)))
                .max_by_key(|(len, _)| *len)
                .map(|(_, s)| s)
        };
        exact.map(|(_, s)| s).or_else(prefixed).map(String::as_str)
    }

    /// The sentence of the first symbol in `symbols` (most important first) that has one.
    pub fn first_of<'a>(&self, symbols: impl IntoIterator<Item = &'a str>) -> Option<&str> {
        symbols.into_iter().find_map(|s| self.for_symbol(s))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        r.set("MOAT_*", "Generic");
        r.set("MOAT_CLASSIFIER_*", "Looks like bulk advertising");
        r.set("MOAT_CLASSIFIER_99", "Almost certainly spam");
        assert_eq!(r.for_symbol("MOAT_CLASSIFIER_80"), Some("Looks like bulk advertising"));
        assert_eq!(r.for_symbol("MOAT_CLASSIFIER_99"), Some("Almost certainly spam"));
        assert_eq!(r.for_symbol("MOAT_PHARMA"), Some("Generic"));
        assert_eq!(r.for_symbol("SPF_FAIL"), None);
        r.set("MOAT_*", "Replaced");
        assert_eq!(r.for_symbol("MOAT_PHARMA"), Some("Replaced"), "a later line replaces");
        assert_eq!(r.first_of(["SPF_FAIL", "MOAT_X", "MOAT_CLASSIFIER_99"]), Some("Replaced"), "the first symbol that has one");
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(check("SPF_FAIL", "Sender failed authentication").is_ok());
        assert!(check("RCVD_IN_*", "Sent from a listed network").is_ok());
        assert!(check("*", "x").is_err());
        assert!(check("A B", "x").is_err());
        assert!(check("SPF_FAIL", "").is_err());
        assert!(check("SPF_FAIL", &"x".repeat(MAX_LEN + 1)).is_err());
    }
}
