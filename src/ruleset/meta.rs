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

    /// The range of values this expression can take when each rule `r` is anywhere in
    /// `range(r)`: sound (every value [`Expr::eval`] can give is inside), not always tight.
    pub fn range(&self, range: &dyn Fn(usize) -> Range) -> Range {
        match self {
            Expr::Num(n) => Range::point(*n),
            Expr::Rule(r) => range(*r),
            Expr::Not(e) => {
                let a = e.range(range);
                if a.is_point(0.0) {
                    Range::point(1.0)
                } else if !a.holds(0.0) {
                    Range::point(0.0)
                } else {
                    Range::TRUTH
                }
            }
            Expr::Neg(e) => {
                let a = e.range(range);
                Range::of(-a.hi, -a.lo, a.whole)
            }
            Expr::Sum(rs) => rs.iter().fold(Range::point(0.0), |sum, r| sum.add(range(*r))),
            Expr::Bin(op, l, r) => {
                let a = l.range(range);
                match op {
                    // `&&` gives its left operand when that is 0, else its right one; `||` its
                    // left one when that is not 0, else its right one.
                    Op::And if a.is_point(0.0) => a,
                    Op::And if !a.holds(0.0) => r.range(range),
                    Op::And => Range::point(0.0).hull(r.range(range)),
                    Op::Or if !a.holds(0.0) => a,
                    Op::Or if a.is_point(0.0) => r.range(range),
                    Op::Or => a.nonzero().hull(r.range(range)),
                    _ => a.binary(*op, r.range(range)),
                }
            }
        }
    }

    /// Calls `each` with every rule index this expression reads.
    pub fn each_dep(&self, each: &mut impl FnMut(usize)) {
        match self {
            Expr::Num(_) => {}
            Expr::Rule(r) => each(*r),
            Expr::Sum(rs) => rs.iter().for_each(|r| each(*r)),
            Expr::Not(e) | Expr::Neg(e) => e.each_dep(each),
            Expr::Bin(_, l, r) => {
                l.each_dep(each);
                r.each_dep(each);
            }
        }
    }

    /// Every rule index this expression reads.
    pub fn deps(&self, out: &mut Vec<usize>) {
        self.each_dep(&mut |r| out.push(r));
    }
}

/// The values a rule or an expression can take: `lo..=hi`, whole numbers only when `whole`;
/// never NaN (an unknown value is [`Range::ANY`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub lo: f64,
    pub hi: f64,
    pub whole: bool,
}

impl Range {
    pub const ANY: Range = Range { lo: f64::NEG_INFINITY, hi: f64::INFINITY, whole: false };
    /// A comparison's or a negation's values.
    const TRUTH: Range = Range { lo: 0.0, hi: 1.0, whole: true };

    /// `lo..=hi`; [`Range::ANY`] when either end is NaN.
    fn of(lo: f64, hi: f64, whole: bool) -> Range {
        if lo.is_nan() || hi.is_nan() { Range::ANY } else { Range { lo: lo.min(hi), hi: lo.max(hi), whole } }
    }

    /// The whole numbers `lo..=hi` (a rule's hit counts).
    pub fn counts(lo: f64, hi: f64) -> Range {
        Range::of(lo, hi, true)
    }

    pub fn point(v: f64) -> Range {
        Range::of(v, v, v.fract() == 0.0)
    }

    /// Whether this is the one value `v`.
    pub fn is_point(self, v: f64) -> bool {
        self.lo == v && self.hi == v
    }

    /// Whether it holds just one value.
    pub fn is_settled(self) -> bool {
        self.lo == self.hi
    }

    fn holds(self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }

    fn hull(self, other: Range) -> Range {
        Range::of(self.lo.min(other.lo), self.hi.max(other.hi), self.whole && other.whole)
    }

    /// The values other than 0 (for whole numbers, 0 cut off an end); itself when that cannot
    /// be told as a range.
    fn nonzero(self) -> Range {
        match (self.whole, self.lo == 0.0, self.hi == 0.0) {
            (true, true, false) => Range::of(1.0, self.hi, true),
            (true, false, true) => Range::of(self.lo, -1.0, true),
            _ => self,
        }
    }

    fn add(self, b: Range) -> Range {
        Range::of(self.lo + b.lo, self.hi + b.hi, self.whole && b.whole)
    }

    /// A truth value: 1 when `yes`, 0 when `no`, else either.
    fn truth(yes: bool, no: bool) -> Range {
        if yes {
            Range::point(1.0)
        } else if no {
            Range::point(0.0)
        } else {
            Range::TRUTH
        }
    }

    /// The arithmetic and comparison operators over ranges, as [`Expr::eval`] computes them
    /// (`&&` and `||` are [`Expr::range`]'s).
    fn binary(self, op: Op, b: Range) -> Range {
        let a = self;
        let corners = |f: fn(f64, f64) -> f64, whole: bool| {
            let v = [f(a.lo, b.lo), f(a.lo, b.hi), f(a.hi, b.lo), f(a.hi, b.hi)];
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if v.iter().any(|x| x.is_nan()) { Range::ANY } else { Range::of(lo, hi, whole) }
        };
        match op {
            Op::Add => a.add(b),
            Op::Sub => Range::of(a.lo - b.hi, a.hi - b.lo, a.whole && b.whole),
            Op::Mul => corners(|x, y| x * y, a.whole && b.whole),
            // Division by zero gives 0.
            Op::Div if b.is_point(0.0) => Range::point(0.0),
            Op::Div if b.holds(0.0) => Range::ANY,
            Op::Div => corners(|x, y| x / y, false),
            Op::Lt => Range::truth(a.hi < b.lo, a.lo >= b.hi),
            Op::Gt => Range::truth(a.lo > b.hi, a.hi <= b.lo),
            Op::Le => Range::truth(a.hi <= b.lo, a.lo > b.hi),
            Op::Ge => Range::truth(a.lo >= b.hi, a.hi < b.lo),
            Op::Eq => Range::truth(a.is_settled() && b.is_settled() && a.lo == b.lo, a.hi < b.lo || b.hi < a.lo),
            Op::Ne => Range::truth(a.hi < b.lo || b.hi < a.lo, a.is_settled() && b.is_settled() && a.lo == b.lo),
            Op::And | Op::Or => Range::point(0.0).hull(a).hull(b),
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

    /// Whatever values the rules take within their ranges, the expression's value lies in its
    /// range; and a range that holds one value is that value.
    #[test]
    fn a_range_holds_every_value_the_expression_can_take() {
        let exprs = [
            "A && !B",
            "(A + B + C) > 1 || __X_1",
            "A || B",
            "!(A || B) && C",
            "A * 2 - B / C",
            "A == B",
            "A != 1 && (B >= 2 || C < 1)",
            "-A + 0.5",
            "(A || B) && !__X_1",
            "A / (B - 1)",
            "__X_1 || A",
        ];
        // A and B are unknown (0..=2), C is known to be 1, __X_1 known to be 0.
        let ranges = [Range::counts(0.0, 2.0), Range::counts(0.0, 2.0), Range::point(1.0), Range::point(0.0), Range::point(0.0)];
        for text in exprs {
            let e = p(text).expect("parses");
            let range = e.range(&|r| ranges[r]);
            let mut seen = Vec::new();
            for a in 0..=2 {
                for b in 0..=2 {
                    let vals = [f64::from(a), f64::from(b), 1.0, 0.0, 0.0];
                    let v = e.eval(&|r| vals[r]);
                    assert!(range.lo <= v && v <= range.hi, "{text}: {v} outside {range:?}");
                    seen.push(v);
                }
            }
            if range.is_settled() {
                assert!(seen.iter().all(|v| *v == range.lo), "{text}: settled at {} but gives {seen:?}", range.lo);
            }
        }
        let settled = |text: &str| p(text).expect("parses").range(&|r| ranges[r]).is_settled();
        assert!(settled("__X_1 && A") && settled("C || A") && settled("(A || C) && !__X_1") && settled("A * __X_1"));
        assert!(!settled("A || __X_1") && !settled("A > 1"));
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
