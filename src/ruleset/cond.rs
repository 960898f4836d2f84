//! The expressions of `if …` / `ifplugin …` lines in rule files.
//!
//! Grammar (SpamAssassin's): `version`, `perl_version`, numbers, `plugin(Name)`, `can(Pkg::fn)`,
//! `has(Pkg::fn)`, `!`, `&&`, `||`, `and`, `or`, `not`, comparisons and parentheses.
//! `plugin(…)` is true for the plugins moat emulates ([`EMULATED_PLUGINS`]) and for the plugins a
//! default SpamAssassin 4 installation loads ([`SA_DEFAULT_PLUGINS`]): rules in such blocks are
//! written for a set where the plugin is present, so their plain rules load and their `eval:`
//! rules are skipped (counted, never hit) rather than silently vanishing. `can(…)` is true
//! for the `Conf` features whose meaning moat implements, for `compat_*` names enabled with
//! `enable_compat`, and for the plugins' `has_…` methods of `eval:` functions moat runs. Anything else evaluates to false. Never panics; recursion is bounded.

/// The SpamAssassin version moat claims compatibility with, in SA's `x.yyyzzz` form.
pub const SA_VERSION: f64 = 4.000001;
/// Perl version reported to `perl_version` (5.36).
pub const PERL_VERSION: f64 = 5.036000;

/// Plugins whose rule syntax moat implements; `ifplugin` of these is true.
pub const EMULATED_PLUGINS: &[&str] = &["Mail::SpamAssassin::Plugin::ReplaceTags", "Mail::SpamAssassin::Plugin::MIMEHeader"];

/// Plugins loaded by SpamAssassin 4's default `v*.pre` files. `ifplugin` of these is true; the
/// `eval:` rules inside are skipped with a reason by the reader.
pub const SA_DEFAULT_PLUGINS: &[&str] = &[
    "Mail::SpamAssassin::Plugin::URIDNSBL",
    "Mail::SpamAssassin::Plugin::SPF",
    "Mail::SpamAssassin::Plugin::Pyzor",
    "Mail::SpamAssassin::Plugin::Razor2",
    "Mail::SpamAssassin::Plugin::SpamCop",
    "Mail::SpamAssassin::Plugin::AutoLearnThreshold",
    "Mail::SpamAssassin::Plugin::WelcomeListSubject",
    "Mail::SpamAssassin::Plugin::WhiteListSubject",
    "Mail::SpamAssassin::Plugin::DKIM",
    "Mail::SpamAssassin::Plugin::Check",
    "Mail::SpamAssassin::Plugin::HTTPSMismatch",
    "Mail::SpamAssassin::Plugin::URIDetail",
    "Mail::SpamAssassin::Plugin::Bayes",
    "Mail::SpamAssassin::Plugin::BodyEval",
    "Mail::SpamAssassin::Plugin::DNSEval",
    "Mail::SpamAssassin::Plugin::HTMLEval",
    "Mail::SpamAssassin::Plugin::HeaderEval",
    "Mail::SpamAssassin::Plugin::MIMEEval",
    "Mail::SpamAssassin::Plugin::RelayEval",
    "Mail::SpamAssassin::Plugin::URIEval",
    "Mail::SpamAssassin::Plugin::WLBLEval",
    "Mail::SpamAssassin::Plugin::VBounce",
    "Mail::SpamAssassin::Plugin::ImageInfo",
    "Mail::SpamAssassin::Plugin::FreeMail",
    "Mail::SpamAssassin::Plugin::AskDNS",
    "Mail::SpamAssassin::Plugin::HashBL",
    "Mail::SpamAssassin::Plugin::DMARC",
];

/// `can(Mail::SpamAssassin::Conf::…)` features that are true here.
const FEATURES: &[&str] = &["feature_bug6558_free", "perl_min_version_5010000", "feature_registryboundaries", "feature_yesno_takes_args"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Call(String, String),
    Op(&'static str),
    LParen,
    RParen,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let st = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == '.' || b[i] == '_') {
                i += 1;
            }
            let t: String = b[st..i].iter().filter(|c| **c != '_').collect();
            out.push(Tok::Num(t.parse().map_err(|_| format!("bad number {t:?}"))?));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
                i += 1;
            }
            let word: String = b[st..i].iter().collect();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            if matches!(word.as_str(), "plugin" | "can" | "has") && b.get(j) == Some(&'(') {
                let close = b[j..].iter().position(|&c| c == ')').ok_or("missing `)`")?;
                let arg: String = b[j + 1..j + close].iter().collect();
                out.push(Tok::Call(word, arg.trim().to_string()));
                i = j + close + 1;
            } else {
                out.push(Tok::Ident(word));
            }
            continue;
        }
        let two: String = b[i..(i + 2).min(b.len())].iter().collect();
        let op2 = ["&&", "||", ">=", "<=", "==", "!="].into_iter().find(|o| *o == two);
        if let Some(o) = op2 {
            out.push(Tok::Op(o));
            i += 2;
            continue;
        }
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '!' => Tok::Op("!"),
            '>' => Tok::Op(">"),
            '<' => Tok::Op("<"),
            _ => return Err(format!("unexpected {c:?}")),
        };
        out.push(tok);
        i += 1;
    }
    Ok(out)
}

/// `Plugin::X::has_…` capability methods of `eval:` functions moat implements (`evalfn`).
const PLUGIN_METHODS: &[&str] = &["Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length"];

/// Context for evaluating conditions.
pub struct CondContext<'a> {
    /// Names given to `enable_compat`.
    pub compat: &'a [String],
}

impl CondContext<'_> {
    fn plugin(&self, name: &str) -> bool {
        EMULATED_PLUGINS.contains(&name) || SA_DEFAULT_PLUGINS.contains(&name)
    }

    fn can(&self, name: &str) -> bool {
        match name.rsplit_once("::") {
            Some(("Mail::SpamAssassin::Conf", f)) => {
                FEATURES.contains(&f) || f.strip_prefix("compat_").is_some_and(|c| self.compat.iter().any(|e| e == c))
            }
            // `Plugin::X::has_…` methods: those of the `eval:` functions moat runs itself.
            _ => PLUGIN_METHODS.contains(&name),
        }
    }

    /// Evaluates an `if` expression; `Err` for syntax the parser does not understand.
    pub fn eval(&self, expr: &str) -> Result<bool, String> {
        let toks = tokenize(expr)?;
        let mut p = Parser { t: &toks, i: 0, cx: self, depth: 0 };
        let v = p.or()?;
        if p.i != toks.len() {
            return Err(format!("unexpected {:?}", toks[p.i]));
        }
        Ok(v != 0.0)
    }
}

struct Parser<'a, 'c> {
    t: &'a [Tok],
    i: usize,
    cx: &'a CondContext<'c>,
    depth: usize,
}

impl Parser<'_, '_> {
    fn peek_op(&self, ops: &[&str]) -> Option<&'static str> {
        match self.t.get(self.i) {
            Some(Tok::Op(o)) if ops.contains(o) => Some(o),
            Some(Tok::Ident(w)) if w == "and" && ops.contains(&"&&") => Some("&&"),
            Some(Tok::Ident(w)) if w == "or" && ops.contains(&"||") => Some("||"),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<f64, String> {
        let mut l = self.and()?;
        while self.peek_op(&["||"]).is_some() {
            self.i += 1;
            let r = self.and()?;
            l = if l != 0.0 { l } else { r };
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<f64, String> {
        let mut l = self.cmp()?;
        while self.peek_op(&["&&"]).is_some() {
            self.i += 1;
            let r = self.cmp()?;
            l = if l == 0.0 { l } else { r };
        }
        Ok(l)
    }

    fn cmp(&mut self) -> Result<f64, String> {
        let l = self.unary()?;
        if let Some(op) = self.peek_op(&[">=", "<=", "==", "!=", ">", "<"]) {
            self.i += 1;
            let r = self.unary()?;
            let v = match op {
                ">=" => l >= r,
                "<=" => l <= r,
                "==" => l == r,
                "!=" => l != r,
                ">" => l > r,
                _ => l < r,
            };
            return Ok(f64::from(u8::from(v)));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<f64, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("expression nested too deeply".into());
        }
        let tok = self.t.get(self.i).cloned().ok_or("unexpected end of expression")?;
        self.i += 1;
        let v = match tok {
            Tok::Op("!") => f64::from(u8::from(self.unary()? == 0.0)),
            Tok::Ident(w) if w == "not" => f64::from(u8::from(self.unary()? == 0.0)),
            Tok::Num(n) => n,
            Tok::Ident(w) if w == "version" => SA_VERSION,
            Tok::Ident(w) if w == "perl_version" => PERL_VERSION,
            Tok::Ident(w) => return Err(format!("unknown word {w:?}")),
            Tok::Call(f, arg) => {
                let v = match f.as_str() {
                    "plugin" => self.cx.plugin(&arg),
                    _ => self.cx.can(&arg),
                };
                f64::from(u8::from(v))
            }
            Tok::LParen => {
                let v = self.or()?;
                if self.t.get(self.i) != Some(&Tok::RParen) {
                    return Err("missing `)`".into());
                }
                self.i += 1;
                v
            }
            t => return Err(format!("unexpected {t:?}")),
        };
        self.depth -= 1;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Result<bool, String> {
        CondContext { compat: &["welcomelist_blocklist".to_string()] }.eval(s)
    }

    #[test]
    fn versions_plugins_and_features() {
        assert_eq!(ev("(version >= 3.004002)"), Ok(true));
        assert_eq!(ev("version > 4.001000"), Ok(false));
        assert_eq!(ev("plugin(Mail::SpamAssassin::Plugin::ReplaceTags)"), Ok(true));
        assert_eq!(ev("!plugin(Mail::SpamAssassin::Plugin::DKIM)"), Ok(false));
        assert_eq!(ev("plugin(Mail::SpamAssassin::Plugin::PDFInfo)"), Ok(false));
        assert_eq!(ev("can(Mail::SpamAssassin::Conf::feature_bug6558_free)"), Ok(true));
        assert_eq!(ev("can(Mail::SpamAssassin::Conf::feature_capture_rules)"), Ok(false));
        assert_eq!(ev("can(Mail::SpamAssassin::Conf::compat_welcomelist_blocklist)"), Ok(true));
        assert_eq!(ev("can(Mail::SpamAssassin::Plugin::BodyEval::has_check_body_length)"), Ok(true), "moat runs it");
        assert_eq!(ev("can(Mail::SpamAssassin::Plugin::MIMEEval::has_check_abundant_unicode_ratio)"), Ok(false));
        assert_eq!(ev("version >= 3.4 && perl_version >= 5.010"), Ok(true));
        assert_eq!(ev("not (1 or 0)"), Ok(false));
        assert!(ev("version >=").is_err());
        assert!(ev("frobnicate").is_err());
    }
}
