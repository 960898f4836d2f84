//! Perl regular expressions (as written in SpamAssassin rule files) translated to Rust syntax.
//!
//! Guarantees:
//! - Byte semantics like SpamAssassin's: every translated pattern runs in ASCII mode (`(?-u)`)
//!   over bytes, so `\xE4` is one byte, `.` is one byte, `\w`/`\b` are ASCII, and `/i` folds
//!   ASCII only (PERFORMANCE.md: ASCII mode keeps the lazy DFA fast). Non-ASCII characters in the
//!   pattern become their UTF-8 bytes, as Perl (without `use utf8`) sees them.
//! - Constructs that Rust's `regex` cannot run (lookaround, backreferences, atomic groups,
//!   possessive quantifiers, `\K`) mark the pattern [`Engine::Fancy`]; the caller runs those with
//!   fancy-regex (bounded backtracking). For those, [`Translated::superset`] is a plain Rust
//!   pattern that matches at least everything the real one does (lookarounds dropped), used as a
//!   cheap prefilter and for literal extraction.
//! - Constructs no engine here supports (code blocks, recursion, conditionals, case-modifying
//!   escapes, backtracking verbs) give [`TranslateError::Unsupported`] with the reason, so the
//!   rule is skipped with a warning rather than silently changing meaning.
//! - Never panics on any input; work is linear in the pattern length.

use std::fmt::Write as _;

/// Which engine a translated pattern needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Rust's `regex` crate (finite automata, linear time).
    Plain,
    /// fancy-regex (backtracking for lookaround/backreferences, with a backtrack limit).
    Fancy,
}

/// A Perl regex literal split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal<'a> {
    /// The pattern between the delimiters, delimiter escapes removed.
    pub body: String,
    /// The modifier letters after the closing delimiter.
    pub flags: &'a str,
    /// Whatever follows the flags (e.g. `[if-unset: …]`), not trimmed.
    pub rest: &'a str,
}

/// A pattern translated to Rust syntax, flags embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The pattern for the engine named by `engine`.
    pub pattern: String,
    pub engine: Engine,
    /// A plain-regex pattern matching a superset of `pattern` (equal to it for `Plain`).
    pub superset: String,
}

/// Why a pattern could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranslateError {
    /// Valid Perl that we deliberately do not run: the rule is skipped with a warning.
    Unsupported(String),
    /// Not a valid regex literal at all: an error in the rule file.
    Syntax(String),
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranslateError::Unsupported(r) => write!(f, "unsupported regex construct: {r}"),
            TranslateError::Syntax(r) => write!(f, "bad regex: {r}"),
        }
    }
}

/// Splits `/re/flags`, `m{re}flags`, `m!re!flags` … into body, flags and the remaining text.
pub fn split_literal(s: &str) -> Result<Literal<'_>, TranslateError> {
    let s = s.trim_start();
    let (open, start) = if let Some(rest) = s.strip_prefix('m') {
        let c = rest.chars().next().ok_or_else(|| TranslateError::Syntax("`m` without a delimiter".into()))?;
        if c.is_alphanumeric() || c.is_whitespace() || c == '_' {
            return Err(TranslateError::Syntax(format!("invalid delimiter {c:?} after `m`")));
        }
        (c, 1 + c.len_utf8())
    } else if s.starts_with('/') {
        ('/', 1)
    } else {
        return Err(TranslateError::Syntax("expected a regex like /…/ or m{…}".into()));
    };
    let close = match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        c => c,
    };
    let (body, end) = scan_delimited(&s[start..], open, close)?;
    let after = &s[start + end..];
    let flag_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
    Ok(Literal { body, flags: &after[..flag_len], rest: &after[flag_len..] })
}

/// Finds the closing delimiter; returns the body (with `\<delim>` unescaped) and the index just
/// past the closing delimiter.
fn scan_delimited(s: &str, open: char, close: char) -> Result<(String, usize), TranslateError> {
    let mut body = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        if c == '\\' {
            match it.next() {
                Some((_, n)) if n == close || n == open => {
                    // `\/` in /…/ is a plain `/`; for brackets keep the escape (it is a regex escape too).
                    if open == close {
                        body.push(n);
                    } else {
                        body.push('\\');
                        body.push(n);
                    }
                }
                Some((_, n)) => {
                    body.push('\\');
                    body.push(n);
                }
                None => body.push('\\'),
            }
            continue;
        }
        if c == close && depth == 0 {
            return Ok((body, i + c.len_utf8()));
        }
        if open != close {
            if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
            }
        }
        body.push(c);
    }
    Err(TranslateError::Syntax(format!("regex is not terminated (missing closing {close:?})")))
}

/// Translates a Perl pattern body with Perl modifier letters.
pub fn translate(body: &str, flags: &str) -> Result<Translated, TranslateError> {
    let mut global = String::new();
    for f in flags.chars() {
        match f {
            'i' | 'm' | 's' => {
                if !global.contains(f) {
                    global.push(f)
                }
            }
            'x' | 'o' | 'g' | 'a' | 'u' | 'l' | 'd' | 'n' | 'p' => {}
            'e' | 'r' | 'c' => {
                return Err(TranslateError::Syntax(format!("modifier /{f} is not allowed in a match")));
            }
            other => {
                return Err(TranslateError::Syntax(format!("unknown modifier /{other}")));
            }
        }
    }
    let xmode = flags.contains('x');
    let multiline = flags.contains('m');
    let full = Translator::new(body, xmode, multiline, false).run()?;
    let engine = if full.fancy { Engine::Fancy } else { Engine::Plain };
    let prefix = |ascii: bool| {
        let mut p = String::from("(?");
        p.push_str(&global);
        if ascii {
            p.push_str("-u");
        }
        p.push(')');
        if p == "(?)" { String::new() } else { p }
    };
    let superset = if full.fancy {
        let sup = Translator::new(body, xmode, multiline, true).run()?;
        format!("{}{}", prefix(true), sup.out)
    } else {
        format!("{}{}", prefix(true), full.out)
    };
    let pattern = match engine {
        Engine::Plain => superset.clone(),
        // fancy-regex runs in BytesMode::Ascii, where `-u` is implied.
        Engine::Fancy => format!("{}{}", prefix(false), full.out),
    };
    Ok(Translated { pattern, engine, superset })
}

/// Largest repetition count a superset keeps (see [`widened`]).
const SUPERSET_MAX_COUNT: u64 = 32;

/// A superset's repetition bounds (`n`, `n,` or `n,m`, digits only): above
/// [`SUPERSET_MAX_COUNT`] they widen to `{min(n, max),}`, which matches wherever the original
/// does. SpamAssassin's backtracking rules bound their gaps (`[^>]{0,2048}`,
/// `(?:[^<]{0,1024}<[^>]{1,1024}>){0,99}` in `__SPOOFED_URL`); kept exact, that one superset
/// compiled to a 26 MB NFA with a 20 MB search cache per thread, only to prefilter.
fn widened(inner: &str) -> String {
    let count = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    let (low, high) = match inner.split_once(',') {
        Some((a, "")) => (count(a), None),
        Some((a, b)) => (count(a), Some(count(b))),
        None => (count(inner), Some(count(inner))),
    };
    if low <= SUPERSET_MAX_COUNT && high.is_none_or(|h| h <= SUPERSET_MAX_COUNT) {
        return inner.to_string();
    }
    format!("{},", low.min(SUPERSET_MAX_COUNT))
}

struct Output {
    out: String,
    fancy: bool,
}

/// One pass over the pattern. With `superset`, constructs needing backtracking are replaced by
/// plain ones that match more (lookaround dropped, backreferences become `(?s:.*?)`, large
/// repetition counts widened: [`widened`]).
struct Translator<'a> {
    chars: Vec<char>,
    pos: usize,
    out: String,
    fancy: bool,
    superset: bool,
    /// x-mode per open group (index 0 = top level).
    xstack: Vec<bool>,
    /// Group depths at which output is suppressed (superset mode inside lookaround).
    suppress_at: Option<usize>,
    /// `/m` given: `$` is Rust's multi-line `$`.
    multiline: bool,
    _src: &'a str,
}

impl<'a> Translator<'a> {
    fn new(src: &'a str, xmode: bool, multiline: bool, superset: bool) -> Self {
        Translator {
            chars: src.chars().collect(),
            pos: 0,
            out: String::with_capacity(src.len() + 16),
            fancy: false,
            superset,
            xstack: vec![xmode],
            suppress_at: None,
            multiline,
            _src: src,
        }
    }

    fn peek(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    fn xmode(&self) -> bool {
        self.xstack.last().copied().unwrap_or(false)
    }

    fn emit(&mut self, s: &str) {
        if self.suppress_at.is_none() {
            self.out.push_str(s);
        }
    }

    fn run(mut self) -> Result<Output, TranslateError> {
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            match c {
                '\\' => self.escape()?,
                '[' => self.class()?,
                '(' => self.group()?,
                ')' => self.close_group()?,
                '{' => self.brace(),
                '}' => self.emit("\\}"),
                '*' | '+' | '?' => {
                    let mut s = String::new();
                    s.push(c);
                    self.emit(&s);
                    self.quantifier_suffix();
                }
                '$' => self.dollar(),
                '.' => self.emit("."),
                '^' => self.emit("^"),
                '|' => self.emit("|"),
                '#' if self.xmode() => self.skip_comment(),
                c if c.is_whitespace() && self.xmode() => {}
                c => self.literal_char(c),
            }
        }
        if self.xstack.len() != 1 {
            return Err(TranslateError::Syntax("unbalanced parentheses: missing `)`".into()));
        }
        Ok(Output { out: self.out, fancy: self.fancy })
    }

    fn skip_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if c == '\n' {
                break;
            }
        }
    }

    /// A literal character outside a class, escaped for Rust, non-ASCII as UTF-8 bytes.
    fn literal_char(&mut self, c: char) {
        let mut s = String::new();
        push_literal(&mut s, c);
        self.emit(&s);
    }

    /// After `*`, `+`, `?` or `{n,m}`: a `+` makes it possessive (needs backtracking control).
    fn quantifier_suffix(&mut self) {
        match self.peek(0) {
            Some('?') => {
                self.pos += 1;
                self.emit("?");
            }
            Some('+') => {
                self.pos += 1;
                if !self.superset {
                    self.fancy = true;
                    self.emit("+");
                }
            }
            _ => {}
        }
    }

    fn dollar(&mut self) {
        // `$` is always an anchor in a rule (SpamAssassin does not interpolate variables).
        // Perl's `$` (without /m) also matches before a final newline.
        if self.multiline {
            self.emit("$");
        } else {
            self.emit("(?:\\n?\\z)");
        }
    }

    fn brace(&mut self) {
        // Valid Perl quantifiers: {n} {n,} {n,m} and (Perl ≥ 5.34) {,m}; anything else is literal.
        let rest: String = self.chars[self.pos..].iter().take(32).collect();
        let Some(end) = rest.find('}') else {
            self.emit("\\{");
            return;
        };
        let inner: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
        let ok = {
            let (a, b) = match inner.split_once(',') {
                Some((a, b)) => (a, Some(b)),
                None => (inner.as_str(), None),
            };
            let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
            match b {
                None => digits(a),
                Some(b) => (digits(a) || a.is_empty()) && (b.is_empty() || digits(b)) && !(a.is_empty() && b.is_empty()),
            }
        };
        if !ok {
            self.emit("\\{");
            return;
        }
        let inner = if inner.starts_with(',') { format!("0{inner}") } else { inner };
        let inner = if self.superset { widened(&inner) } else { inner };
        self.pos += rest[..end].chars().count() + 1;
        self.emit(&format!("{{{inner}}}"));
        self.quantifier_suffix();
    }

    fn close_group(&mut self) -> Result<(), TranslateError> {
        if self.xstack.len() <= 1 {
            return Err(TranslateError::Syntax("unmatched `)`".into()));
        }
        self.xstack.pop();
        let depth = self.xstack.len();
        if self.suppress_at == Some(depth) {
            self.suppress_at = None;
            return Ok(());
        }
        self.emit(")");
        Ok(())
    }

    fn open(&mut self, text: &str, x: bool) {
        self.emit(text);
        self.xstack.push(x);
    }

    fn group(&mut self) -> Result<(), TranslateError> {
        let x = self.xmode();
        if self.peek(0) == Some('*') {
            return Err(TranslateError::Unsupported("backtracking verb (*…)".into()));
        }
        if self.peek(0) != Some('?') {
            self.open("(", x);
            return Ok(());
        }
        self.pos += 1;
        let c1 = self.peek(0);
        let c2 = self.peek(1);
        match (c1, c2) {
            (Some('#'), _) => {
                while let Some(c) = self.peek(0) {
                    self.pos += 1;
                    if c == ')' {
                        return Ok(());
                    }
                }
                Err(TranslateError::Syntax("unterminated (?# comment".into()))
            }
            (Some(':'), _) => {
                self.pos += 1;
                self.open("(?:", x);
                Ok(())
            }
            (Some('|'), _) => {
                self.pos += 1;
                self.open("(?:", x);
                Ok(())
            }
            (Some('='), _) | (Some('!'), _) => {
                self.pos += 1;
                self.lookaround(if c1 == Some('=') { "(?=" } else { "(?!" }, x);
                Ok(())
            }
            (Some('<'), Some('=')) | (Some('<'), Some('!')) => {
                self.pos += 2;
                self.lookaround(if c2 == Some('=') { "(?<=" } else { "(?<!" }, x);
                Ok(())
            }
            (Some('>'), _) => {
                self.pos += 1;
                if self.superset {
                    self.open("(?:", x);
                } else {
                    self.fancy = true;
                    self.open("(?>", x);
                }
                Ok(())
            }
            (Some('<'), _) | (Some('\''), _) => {
                let close = if c1 == Some('<') { '>' } else { '\'' };
                self.pos += 1;
                let name = self.take_name(close)?;
                self.open(&format!("(?P<{name}>"), x);
                Ok(())
            }
            (Some('P'), Some('<')) => {
                self.pos += 2;
                let name = self.take_name('>')?;
                self.open(&format!("(?P<{name}>"), x);
                Ok(())
            }
            (Some('P'), Some('=')) => {
                self.pos += 2;
                let name = self.take_name(')')?;
                self.backref(&format!("\\k<{name}>"));
                Ok(())
            }
            (Some('{'), _) | (Some('?'), Some('{')) => Err(TranslateError::Unsupported("Perl code block (?{…})".into())),
            (Some('('), _) => Err(TranslateError::Unsupported("conditional group (?(…)…)".into())),
            (Some('R'), _) | (Some('&'), _) | (Some('P'), Some('>')) => Err(TranslateError::Unsupported("recursion (?R)/(?&name)".into())),
            (Some(c), _) if c.is_ascii_digit() || c == '+' || c == '-' && c2.is_some_and(|d| d.is_ascii_digit()) => {
                Err(TranslateError::Unsupported("recursion (?N)".into()))
            }
            _ => self.flag_group(x),
        }
    }

    fn take_name(&mut self, close: char) -> Result<String, TranslateError> {
        let mut name = String::new();
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if c == close {
                if name.is_empty() {
                    return Err(TranslateError::Syntax("empty group name".into()));
                }
                return Ok(name);
            }
            if !(c.is_ascii_alphanumeric() || c == '_') {
                return Err(TranslateError::Syntax(format!("bad character {c:?} in group name")));
            }
            name.push(c);
        }
        Err(TranslateError::Syntax("unterminated group name".into()))
    }

    fn lookaround(&mut self, open: &str, x: bool) {
        if self.superset {
            // Zero-width: dropping it only widens what matches.
            self.xstack.push(x);
            if self.suppress_at.is_none() {
                self.suppress_at = Some(self.xstack.len() - 1);
            }
        } else {
            self.fancy = true;
            self.open(open, x);
        }
    }

    fn backref(&mut self, text: &str) {
        if self.superset {
            self.emit("(?s:.*?)");
        } else {
            self.fancy = true;
            self.emit(text);
        }
    }

    /// `(?flags)` or `(?flags:…)`, including `(?^…)`.
    fn flag_group(&mut self, x: bool) -> Result<(), TranslateError> {
        let mut on = String::new();
        let mut off = String::new();
        let mut negate = false;
        let mut newx = x;
        loop {
            let Some(c) = self.peek(0) else {
                return Err(TranslateError::Syntax("unterminated (? group".into()));
            };
            self.pos += 1;
            match c {
                '^' => {
                    off.push_str("ims");
                    newx = false;
                }
                '-' => negate = true,
                'i' | 'm' | 's' => {
                    if negate {
                        off.push(c)
                    } else {
                        on.push(c)
                    }
                }
                'x' => newx = !negate,
                'a' | 'u' | 'l' | 'd' | 'n' | 'p' | 'o' => {}
                ':' | ')' => {
                    off.retain(|c| !on.contains(c));
                    let mut flags = on.clone();
                    if !off.is_empty() {
                        flags.push('-');
                        flags.push_str(&off);
                    }
                    if c == ':' {
                        let text = if flags.is_empty() { "(?:".to_string() } else { format!("(?{flags}:") };
                        self.open(&text, newx);
                    } else {
                        if !flags.is_empty() {
                            self.emit(&format!("(?{flags})"));
                        }
                        if let Some(top) = self.xstack.last_mut() {
                            *top = newx;
                        }
                    }
                    return Ok(());
                }
                other => {
                    return Err(TranslateError::Syntax(format!("unknown group syntax (?{other}")));
                }
            }
        }
    }

    fn escape(&mut self) -> Result<(), TranslateError> {
        let Some(c) = self.peek(0) else {
            return Err(TranslateError::Syntax("trailing backslash".into()));
        };
        self.pos += 1;
        match c {
            '1'..='9' => {
                // \1-\9 are backreferences; longer all-octal numbers are octal characters.
                let next = self.peek(0).filter(|d| d.is_ascii_digit());
                if next.is_some() && c <= '7' && next.is_some_and(|d| d <= '7') {
                    let v = self.octal(c.to_digit(8).unwrap_or(0));
                    self.emit(&format!("\\x{v:02X}"));
                } else {
                    let mut n = String::from(c);
                    while let Some(d) = self.peek(0).filter(|d| d.is_ascii_digit()) {
                        n.push(d);
                        self.pos += 1;
                    }
                    self.backref(&format!("\\{n}"));
                }
            }
            'g' | 'k' => self.named_backref(c)?,
            '0' => {
                let v = self.octal(0);
                self.emit(&format!("\\x{v:02X}"));
            }
            'Q' => self.quote(),
            'E' => {}
            'K' | 'G' => {
                if !self.superset {
                    self.fancy = true;
                    self.emit(&format!("\\{c}"));
                }
            }
            'Z' => self.emit("(?:\\n?\\z)"),
            'l' | 'u' | 'L' | 'U' | 'X' | 'C' => {
                return Err(TranslateError::Unsupported(format!("escape \\{c} (case modification / grapheme)")));
            }
            'N' if self.peek(0) != Some('{') => self.emit("[^\\n]"),
            'p' | 'P' => {
                let prop = self.property(c)?;
                self.emit(&format!("(?u:{prop})"));
            }
            'h' => self.emit("[\\t\\x20\\xA0]"),
            'H' => self.emit("[^\\t\\x20\\xA0]"),
            'v' => self.emit("[\\n\\x0B\\x0C\\r\\x85]"),
            'V' => self.emit("[^\\n\\x0B\\x0C\\r\\x85]"),
            'R' => self.emit("(?:\\r\\n|[\\n\\x0B\\x0C\\r\\x85])"),
            'b' if self.peek(0) == Some('{') => {
                return Err(TranslateError::Unsupported("\\b{…} boundary type".into()));
            }
            'b' | 'B' | 'A' | 'z' => self.emit(&format!("\\{c}")),
            _ => {
                let mut s = String::new();
                self.common_escape(c, &mut s)?;
                self.emit(&s);
            }
        }
        Ok(())
    }

    fn named_backref(&mut self, c: char) -> Result<(), TranslateError> {
        let open = self.peek(0);
        let name = match open {
            Some('{') => {
                self.pos += 1;
                self.take_name('}')?
            }
            Some('<') if c == 'k' => {
                self.pos += 1;
                self.take_name('>')?
            }
            Some('\'') if c == 'k' => {
                self.pos += 1;
                self.take_name('\'')?
            }
            Some(d) if c == 'g' && d.is_ascii_digit() => {
                let mut n = String::new();
                while let Some(d) = self.peek(0).filter(|d| d.is_ascii_digit()) {
                    n.push(d);
                    self.pos += 1;
                }
                n
            }
            _ => return Err(TranslateError::Syntax(format!("bad \\{c} escape"))),
        };
        if name.chars().all(|d| d.is_ascii_digit()) {
            self.backref(&format!("\\{name}"));
        } else {
            self.backref(&format!("\\k<{name}>"));
        }
        Ok(())
    }

    /// Up to two more octal digits after a leading `\0` (or a class `\1`…).
    fn octal(&mut self, first: u32) -> u32 {
        let mut v = first;
        for _ in 0..2 {
            match self.peek(0).and_then(|d| d.to_digit(8)) {
                Some(d) => {
                    v = v * 8 + d;
                    self.pos += 1;
                }
                None => break,
            }
        }
        v & 0xFF
    }

    fn quote(&mut self) {
        let mut s = String::new();
        while let Some(c) = self.peek(0) {
            if c == '\\' && self.peek(1) == Some('E') {
                self.pos += 2;
                break;
            }
            self.pos += 1;
            push_literal(&mut s, c);
        }
        self.emit(&s);
    }

    fn property(&mut self, c: char) -> Result<String, TranslateError> {
        match self.peek(0) {
            Some('{') => {
                let mut name = String::new();
                self.pos += 1;
                while let Some(d) = self.peek(0) {
                    self.pos += 1;
                    if d == '}' {
                        return Ok(format!("\\{c}{{{name}}}"));
                    }
                    name.push(d);
                }
                Err(TranslateError::Syntax("unterminated \\p{".into()))
            }
            Some(d) if d.is_ascii_alphabetic() => {
                self.pos += 1;
                Ok(format!("\\{c}{d}"))
            }
            _ => Err(TranslateError::Syntax(format!("bad \\{c}"))),
        }
    }

    /// Escapes that mean the same inside and outside a class.
    fn common_escape(&mut self, c: char, s: &mut String) -> Result<(), TranslateError> {
        match c {
            'x' => {
                let v = self.hex()?;
                if v <= 0xFF {
                    let _ = write!(s, "\\x{v:02X}");
                } else {
                    let _ = write!(s, "(?u:\\x{{{v:X}}})");
                }
            }
            'c' => {
                let Some(x) = self.peek(0) else {
                    return Err(TranslateError::Syntax("\\c at end of pattern".into()));
                };
                self.pos += 1;
                let v = (x.to_ascii_uppercase() as u32) ^ 0x40;
                let _ = write!(s, "\\x{:02X}", v & 0xFF);
            }
            'o' => {
                if self.peek(0) != Some('{') {
                    return Err(TranslateError::Syntax("bad \\o escape".into()));
                }
                self.pos += 1;
                let mut v: u32 = 0;
                while let Some(d) = self.peek(0) {
                    self.pos += 1;
                    if d == '}' {
                        break;
                    }
                    v = v.saturating_mul(8).saturating_add(d.to_digit(8).unwrap_or(0));
                }
                let _ = write!(s, "\\x{:02X}", v & 0xFF);
            }
            'e' => s.push_str("\\x1B"),
            'a' => s.push_str("\\x07"),
            'f' => s.push_str("\\x0C"),
            'n' | 'r' | 't' | 'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                s.push('\\');
                s.push(c);
            }
            c if c.is_ascii_alphanumeric() => {
                // Perl passes unknown letter escapes through as the letter itself.
                s.push(c);
            }
            c => push_literal(s, c),
        }
        Ok(())
    }

    fn hex(&mut self) -> Result<u32, TranslateError> {
        if self.peek(0) == Some('{') {
            self.pos += 1;
            let mut v: u32 = 0;
            while let Some(d) = self.peek(0) {
                self.pos += 1;
                if d == '}' {
                    return Ok(v);
                }
                if d == ' ' || d == '_' {
                    continue;
                }
                let Some(h) = d.to_digit(16) else {
                    return Err(TranslateError::Syntax("bad \\x{…} escape".into()));
                };
                v = v.saturating_mul(16).saturating_add(h).min(0x10FFFF);
            }
            return Err(TranslateError::Syntax("unterminated \\x{".into()));
        }
        let mut v = 0;
        for _ in 0..2 {
            match self.peek(0).and_then(|d| d.to_digit(16)) {
                Some(h) => {
                    v = v * 16 + h;
                    self.pos += 1;
                }
                None => break,
            }
        }
        Ok(v)
    }

    /// A bracketed character class, Perl rules: `]` first is literal, `[` inside is literal
    /// (except POSIX `[:name:]`), `&&`/`--`/`~~` have no special meaning.
    fn class(&mut self) -> Result<(), TranslateError> {
        let mut s = String::from("[");
        if self.peek(0) == Some('^') {
            self.pos += 1;
            s.push('^');
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek(0) else {
                return Err(TranslateError::Syntax("unterminated character class".into()));
            };
            self.pos += 1;
            match c {
                ']' if !first => break,
                '[' => {
                    if let Some(posix) = self.posix_class() {
                        s.push_str(&posix);
                    } else {
                        s.push_str("\\[");
                    }
                }
                '\\' => self.class_escape(&mut s)?,
                '-' => {
                    let at_edge = first || self.peek(0) == Some(']') || s.ends_with('-');
                    if at_edge || self.peek(0) == Some('-') {
                        s.push_str("\\-");
                    } else {
                        s.push('-');
                    }
                }
                c => push_literal(&mut s, c),
            }
            first = false;
        }
        s.push(']');
        self.emit(&s);
        Ok(())
    }

    /// At the character after `[` inside a class: `:name:]` gives `[:name:]`.
    fn posix_class(&mut self) -> Option<String> {
        if self.peek(0) != Some(':') {
            return None;
        }
        let rest: String = self.chars[self.pos..].iter().take(16).collect();
        let end = rest[1..].find(":]")? + 1;
        let name = &rest[1..end];
        let name_ok = name.trim_start_matches('^').chars().all(|c| c.is_ascii_lowercase());
        if !name_ok {
            return None;
        }
        self.pos += rest[..end + 2].chars().count();
        Some(format!("[:{name}:]"))
    }

    fn class_escape(&mut self, s: &mut String) -> Result<(), TranslateError> {
        let Some(c) = self.peek(0) else {
            return Err(TranslateError::Syntax("trailing backslash".into()));
        };
        self.pos += 1;
        match c {
            'b' => s.push_str("\\x08"),
            '0'..='7' => {
                let v = self.octal(c.to_digit(8).unwrap_or(0));
                let _ = write!(s, "\\x{v:02X}");
            }
            'h' => s.push_str("\\t\\x20\\xA0"),
            'v' => s.push_str("\\n\\x0B\\x0C\\r\\x85"),
            'N' | 'H' | 'V' | 'R' | 'X' => {
                return Err(TranslateError::Unsupported(format!("\\{c} inside a class")));
            }
            'p' | 'P' => {
                let prop = self.property(c)?;
                s.push_str(&prop);
            }
            'Q' => {
                while let Some(d) = self.peek(0) {
                    if d == '\\' && self.peek(1) == Some('E') {
                        self.pos += 2;
                        break;
                    }
                    self.pos += 1;
                    push_literal(s, d);
                }
            }
            'E' => {}
            'x' => {
                let v = self.hex()?;
                if v > 0xFF {
                    return Err(TranslateError::Unsupported("code point above \\xFF inside a class (rules match bytes)".into()));
                }
                let _ = write!(s, "\\x{v:02X}");
            }
            c => self.common_escape(c, s)?,
        }
        Ok(())
    }
}

/// Pushes `c` as a literal: ASCII punctuation escaped, whitespace/control as `\xHH`,
/// non-ASCII as its UTF-8 bytes (Perl byte semantics).
fn push_literal(s: &mut String, c: char) {
    if c.is_ascii_alphanumeric() || c == '_' {
        s.push(c);
    } else if c.is_ascii_punctuation() {
        if matches!(c, '<' | '>' | '\'' | '"' | '`' | '@' | '%' | '_' | '!' | ',' | ';' | '=' | '/' | ':') {
            s.push(c);
        } else {
            s.push('\\');
            s.push(c);
        }
    } else if c.is_ascii() {
        let _ = write!(s, "\\x{:02X}", c as u32);
    } else {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            let _ = write!(s, "\\x{b:02X}");
        }
    }
}

/// Perl's `\s`: space, tab, newline, carriage return, vertical tab, form feed.
pub(super) fn is_perl_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(re: &str) -> Translated {
        let lit = split_literal(re).expect("literal");
        translate(&lit.body, lit.flags).expect("translate")
    }

    fn matches(re: &str, text: &[u8]) -> bool {
        let t = tr(re);
        match t.engine {
            Engine::Plain => regex::bytes::Regex::new(&t.pattern).expect("compile").is_match(text),
            Engine::Fancy => fancy_regex::RegexBuilder::new(&t.pattern)
                .bytes_mode(fancy_regex::BytesMode::Ascii)
                .build()
                .expect("compile fancy")
                .is_match(text)
                .expect("match"),
        }
    }

    #[test]
    fn delimiters_and_flags() {
        let l = split_literal("/a\\/b/i [if-unset: x]").unwrap();
        assert_eq!(l.body, "a/b");
        assert_eq!(l.flags, "i");
        assert_eq!(l.rest, " [if-unset: x]");
        let l = split_literal("m{a{2}b}s").unwrap();
        assert_eq!(l.body, "a{2}b");
        assert_eq!(l.flags, "s");
        let l = split_literal("m!x/y!").unwrap();
        assert_eq!(l.body, "x/y");
        assert!(matches!(split_literal("/abc"), Err(TranslateError::Syntax(_))));
        assert!(matches!(split_literal("abc"), Err(TranslateError::Syntax(_))));
    }

    #[test]
    fn flag_i_is_ascii_case_insensitive() {
        assert!(matches("/viagra/i", b"buy VIAGRA now"));
        assert!(!matches("/viagra/", b"buy VIAGRA now"));
        // ASCII mode: no Unicode folding (Kelvin sign is not k).
        assert!(!matches("/k/i", "\u{212A}".as_bytes()));
        assert!(tr("/x/i").pattern.starts_with("(?i-u)"));
    }

    #[test]
    fn flag_s_and_m() {
        assert!(!matches("/a.b/", b"a\nb"));
        assert!(matches("/a.b/s", b"a\nb"));
        assert!(!matches("/^b/", b"a\nb"));
        assert!(matches("/^b/m", b"a\nb"));
        // Perl's `$` matches before a final newline.
        assert!(matches("/a$/", b"a\n"));
        assert!(!matches("/a$/", b"a\nb"));
        assert!(matches("/a$/m", b"a\nb"));
    }

    #[test]
    fn flag_x_strips_space_and_comments_but_not_in_classes() {
        assert!(matches("/a b # comment\n c/x", b"abc"));
        assert!(matches("/a[ ]b/x", b"a b"));
        assert!(!matches("/a b/", b"ab"));
    }

    #[test]
    fn perl_escapes() {
        assert!(matches(r"/\x41\101\e/", b"AA\x1b"));
        assert!(matches(r"/\xE4/", b"\xE4"));
        assert!(matches(r"/\Qa.b\E/", b"a.b"));
        assert!(!matches(r"/\Qa.b\E/", b"axb"));
        assert!(matches(r"/a\hb/", b"a\tb"));
        assert!(matches(r"/a\<b\>/", b"a<b>"));
        assert!(matches(r"/\cA/", b"\x01"));
        assert!(matches(r"/x{,2}y/", b"xxy"));
        assert!(matches(r"/a{b/", b"a{b"));
        assert!(matches(r"/[[]x/", b"[x"));
        assert!(matches(r"/[]a]/", b"]"));
        assert!(matches(r"/[a&&b]/", b"&"));
        assert!(matches(r"/[[:digit:]]+/", b"42"));
        assert!(matches("/é/", "café".as_bytes()));
        assert!(matches(r"/\v/", b"\r"));
    }

    #[test]
    fn groups_and_named_captures() {
        assert!(matches("/(?i)abc/", b"ABC"));
        assert!(matches("/a(?i:b)c/", b"aBc"));
        assert!(!matches("/a(?i:b)c/", b"aBC"));
        assert!(matches("/(?<n>ab)+/", b"abab"));
        assert!(matches("/a(?#comment)b/", b"ab"));
        assert!(matches("/(?^i:AB)/", b"ab"));
    }

    #[test]
    fn fancy_constructs() {
        let t = tr("/foo(?!bar)/");
        assert_eq!(t.engine, Engine::Fancy);
        assert!(!t.superset.contains("(?!"));
        assert!(matches("/foo(?!bar)/", b"foobaz"));
        assert!(!matches("/foo(?!bar)/", b"foobar"));
        assert!(matches(r"/(?<=x)y/", b"xy"));
        assert!(matches(r"/(a)\1/", b"aa"));
        assert!(!matches(r"/(a)\1/", b"ab"));
        assert_eq!(tr(r"/a++b/").engine, Engine::Fancy);
        assert_eq!(tr(r"/(?>a)b/").engine, Engine::Fancy);
        assert_eq!(tr(r"/a+?b/").engine, Engine::Plain);
    }

    #[test]
    fn superset_widens_large_counts_only() {
        let t = tr(r"/<a[^>]{0,2048}>(?:x{1,1024}y){0,99}(?!\/a)z{2,5}w{40}v{3,}/");
        assert_eq!(t.engine, Engine::Fancy);
        assert!(t.superset.ends_with(r"<a[^>]{0,}>(?:x{1,}y){0,}z{2,5}w{32,}v{3,}"), "{}", t.superset);
        assert!(t.pattern.contains("{0,2048}") && t.pattern.contains("w{40}"), "the real pattern keeps its counts");
        assert_eq!(tr(r"/a{0,2048}b/").superset, tr(r"/a{0,2048}b/").pattern, "a plain pattern is its own superset");
        let re = r"/<a[^>]{0,2048}>(?:x{1,1024}y){0,99}(?!\/a)z{2,5}w{40}v{3,}/";
        let sup = regex::bytes::Regex::new(&t.superset).expect("superset compiles");
        for text in [format!("<a x>xxyzz{}vvv", "w".repeat(40)), format!("<a>zz{}vvv", "w".repeat(39))] {
            let real = matches(re, text.as_bytes());
            assert!(sup.is_match(text.as_bytes()) || !real, "the superset matches wherever the pattern does: {text}");
            assert_eq!(real, text.starts_with("<a x>"));
        }
    }

    #[test]
    fn unsupported_constructs() {
        for re in [r"/(?{ 1 })/", r"/(?(1)a|b)/", r"/(?R)/", r"/\Ufoo/", r"/(*FAIL)/"] {
            let lit = split_literal(re).unwrap();
            assert!(matches!(translate(&lit.body, lit.flags), Err(TranslateError::Unsupported(_))), "{re}");
        }
        assert!(matches!(translate("a(b", ""), Err(TranslateError::Syntax(_))));
        assert!(matches!(translate("ab", "q"), Err(TranslateError::Syntax(_))));
    }
}
