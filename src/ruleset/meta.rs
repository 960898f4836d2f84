//! Meta rule expressions: boolean and arithmetic over rule names and numbers.
//!
//! Perl's precedence and value semantics, as SpamAssassin evaluates metas:
//! `!` and unary `-` bind tightest, then `* /`, `+ -`, `< > <= >=`, `== !=`, `&&`, `||`.
//! `&&`/`||` return an operand's value (not just 0/1), comparisons give 1 or 0, division by zero
//! gives 0. A rule's value is 0 if not hit, 1 if hit, or its hit count with `tflags multiple`.
//! `rules_matching(GLOB)` expands to the sum of the matching rules. Parsing is bounded
//! (nesting depth) and never panics.

/// A parsed expression; `Rule` holds an index resolved by the compiler.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Rule(usize),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    /// Sum of several rules (from `rules_matching`).
    Sum(Vec<usize>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Mul,
    Div,
    Add,
    Sub,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Glob(String),
    Op(&'static str),
    LParen,
    RParen,
}

const MAX_DEPTH: usize = 128;

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let st = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let t = &s[st..i];
            out.push(Tok::Num(t.parse().map_err(|_| format!("bad number {t:?}"))?));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &s[st..i];
            if word == "rules_matching" {
                let rest = &s[i..];
                let open = rest.find('(').filter(|p| rest[..*p].trim().is_empty());
                let close = rest.find(')');
                match (open, close) {
                    (Some(o), Some(c)) if o < c => {
                        out.push(Tok::Glob(rest[o + 1..c].trim().to_string()));
                        i += c + 1;
                    }
                    _ => return Err("rules_matching needs (GLOB)".into()),
                }
            } else {
                out.push(Tok::Name(word.to_string()));
            }
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            if let Some(op) = ["&&", "||", ">=", "<=", "==", "!="].into_iter().find(|o| *o == two) {
                out.push(Tok::Op(op));
                i += 2;
                continue;
            }
            out.push(match c {
                b'(' => Tok::LParen,
                b')' => Tok::RParen,
                b'!' => Tok::Op("!"),
                b'+' => Tok::Op("+"),
                b'-' => Tok::Op("-"),
                b'*' => Tok::Op("*"),
                b'/' => Tok::Op("/"),
                b'<' => Tok::Op("<"),
                b'>' => Tok::Op(">"),
                _ => {
                    let ch = s[i..].chars().next().unwrap_or('?');
                    return Err(format!("unexpected character {ch:?}"));
                }
            });
            i += 1;
        }
    }
    Ok(out)
}

/// Parses `text`, resolving names with `resolve` (which returns None for unknown names) and
/// globs with `glob`. Errors name the problem.
pub fn parse(
    text: &str,
    resolve: &mut dyn FnMut(&str) -> Result<usize, String>,
    glob: &mut dyn FnMut(&str) -> Vec<usize>,
) -> Result<Expr, String> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err("empty meta expression".into());
    }
    let mut p = Parser { t: &toks, i: 0, resolve, glob, depth: 0 };
    let e = p.binary(0)?;
    if p.i != toks.len() {
        return Err(format!("unexpected {} in meta expression", describe(&toks[p.i])));
    }
    Ok(e)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Name(n) => format!("name {n}"),
        Tok::Glob(g) => format!("rules_matching({g})"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
    }
}

/// Binary operator levels, loosest first.
const LEVELS: &[&[(&str, Op)]] = &[
    &[("||", Op::Or)],
    &[("&&", Op::And)],
    &[("==", Op::Eq), ("!=", Op::Ne)],
    &[("<", Op::Lt), (">", Op::Gt), ("<=", Op::Le), (">=", Op::Ge)],
    &[("+", Op::Add), ("-", Op::Sub)],
    &[("*", Op::Mul), ("/", Op::Div)],
];

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    resolve: &'a mut dyn FnMut(&str) -> Result<usize, String>,
    glob: &'a mut dyn FnMut(&str) -> Vec<usize>,
    depth: usize,
}

impl Parser<'_> {
    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut l = self.binary(level + 1)?;
        while let Some(Tok::Op(o)) = self.t.get(self.i) {
            let Some(&(_, op)) = LEVELS[level].iter().find(|(s, _)| s == o) else { break };
            self.i += 1;
            let r = self.binary(level + 1)?;
            l = Expr::Bin(op, Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("meta expression nested too deeply".into());
        }
        let tok = self.t.get(self.i).cloned().ok_or("meta expression ends too early")?;
        self.i += 1;
        let e = match tok {
            Tok::Op("!") => Expr::Not(Box::new(self.unary()?)),
            Tok::Op("-") => Expr::Neg(Box::new(self.unary()?)),
            Tok::Op("+") => self.unary()?,
            Tok::Num(n) => Expr::Num(n),
            Tok::Name(n) => Expr::Rule((self.resolve)(&n)?),
            Tok::Glob(g) => Expr::Sum((self.glob)(&g)),
            Tok::LParen => {
                let e = self.binary(0)?;
                if self.t.get(self.i) != Some(&Tok::RParen) {
                    return Err("missing `)` in meta expression".into());
                }
                self.i += 1;
                e
            }
            t => return Err(format!("unexpected {} in meta expression", describe(&t))),
        };
        self.depth -= 1;
        Ok(e)
    }
}

fn truth(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

impl Expr {
    /// Evaluates with `value(rule)` giving each rule's value.
    pub fn eval(&self, value: &dyn Fn(usize) -> f64) -> f64 {
        match self {
            Expr::Num(n) => *n,
            Expr::Rule(r) => value(*r),
            Expr::Not(e) => truth(e.eval(value) == 0.0),
            Expr::Neg(e) => -e.eval(value),
            Expr::Sum(rs) => rs.iter().map(|r| value(*r)).sum(),
            Expr::Bin(op, l, r) => {
                let a = l.eval(value);
                match op {
                    Op::And if a == 0.0 => a,
                    Op::Or if a != 0.0 => a,
                    Op::And | Op::Or => r.eval(value),
                    _ => {
                        let b = r.eval(value);
                        match op {
                            Op::Mul => a * b,
                            Op::Div if b == 0.0 => 0.0,
                            Op::Div => a / b,
                            Op::Add => a + b,
                            Op::Sub => a - b,
                            Op::Lt => truth(a < b),
                            Op::Gt => truth(a > b),
                            Op::Le => truth(a <= b),
                            Op::Ge => truth(a >= b),
                            Op::Eq => truth(a == b),
                            _ => truth(a != b),
                        }
                    }
                }
            }
        }
    }

    /// Every rule index this expression reads.
    pub fn deps(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Num(_) => {}
            Expr::Rule(r) => out.push(*r),
            Expr::Sum(rs) => out.extend(rs),
            Expr::Not(e) | Expr::Neg(e) => e.deps(out),
            Expr::Bin(_, l, r) => {
                l.deps(out);
                r.deps(out);
            }
        }
    }
}

/// SpamAssassin's glob: `*` any run, `?` one character; case-sensitive.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["A", "B", "C", "__X_1", "__X_2"];

    fn p(s: &str) -> Result<Expr, String> {
        parse(s, &mut |n| NAMES.iter().position(|x| *x == n).ok_or(format!("undefined rule {n}")), &mut |g| {
            (0..NAMES.len()).filter(|i| glob_match(g, NAMES[*i])).collect()
        })
    }

    fn ev(s: &str, vals: [f64; 5]) -> f64 {
        p(s).expect("parse").eval(&|i| vals[i])
    }

    #[test]
    fn precedence() {
        // && binds tighter than ||
        assert_eq!(ev("A || B && C", [1.0, 0.0, 0.0, 0.0, 0.0]), 1.0);
        assert_eq!(ev("(A || B) && C", [1.0, 0.0, 0.0, 0.0, 0.0]), 0.0);
        // ! binds tighter than &&
        assert_eq!(ev("!A && B", [0.0, 1.0, 0.0, 0.0, 0.0]), 1.0);
        // * before +, + before comparison
        assert_eq!(ev("1 + 2 * 3 == 7", [0.0; 5]), 1.0);
        assert_eq!(ev("(3 * A - 2 * B) > 0", [1.0, 1.0, 0.0, 0.0, 0.0]), 1.0);
        assert_eq!(ev("A + B + C >= 2", [1.0, 0.0, 1.0, 0.0, 0.0]), 1.0);
        assert_eq!(ev("-A + 2", [1.0, 0.0, 0.0, 0.0, 0.0]), 1.0);
    }

    #[test]
    fn perl_value_semantics_and_division() {
        assert_eq!(ev("A || B", [0.0, 3.0, 0.0, 0.0, 0.0]), 3.0);
        assert_eq!(ev("A && B", [2.0, 5.0, 0.0, 0.0, 0.0]), 5.0);
        assert_eq!(ev("A / B", [2.0, 0.0, 0.0, 0.0, 0.0]), 0.0);
        assert_eq!(ev("A / 4", [2.0, 0.0, 0.0, 0.0, 0.0]), 0.5);
    }

    #[test]
    fn rules_matching_glob() {
        assert_eq!(ev("rules_matching(__X_*) >= 2", [0.0, 0.0, 0.0, 1.0, 1.0]), 1.0);
        assert_eq!(ev("rules_matching(__X_?) >= 2", [0.0, 0.0, 0.0, 1.0, 0.0]), 0.0);
        assert!(glob_match("A*", "ABC") && !glob_match("a*", "ABC"));
    }

    #[test]
    fn syntax_errors() {
        assert!(p("A &&").is_err());
        assert!(p("(A || B").is_err());
        assert!(p("A B").is_err());
        assert!(p("A & B").is_err());
        assert_eq!(p("A && NOPE"), Err("undefined rule NOPE".into()));
        assert!(p(&"(".repeat(500)).is_err());
        assert!(p("").is_err());
    }
}
