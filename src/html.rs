//! HTML for everything moat shows people (the web pages, the HTML part of digests): every page
//! and email body is an askama template under `templates/`, and this module holds what they
//! share: the escaper, rendered markup, and text from mail made safe to show.
//!
//! Guarantees: a template prints every value through [`Escape`] (`askama.toml` makes it the
//! escaper of `.html` and `.svg` templates), which leaves no markup and no control characters
//! but the line break, in element content and in double-quoted attributes; the one value a
//! template may print unescaped (`|safe`) is [`Markup`], which only rendering a template makes
//! (and, in a sandboxed document of its own, a message's HTML part after sanitising: see
//! [`crate::web::sanitize`]).
//! Text that comes from mail (subjects, sender names, file names) goes through [`shown`] first,
//! so it can neither deceive nor break a layout: bidirectional controls (the
//! `Invoice <U+202E>gnp.exe` trick), invisible characters and the look-alike letters of a word
//! mixing scripts (`pаypal` with a Cyrillic `а`) are shown as visible escapes such as `[U+202E]`,
//! other control characters become spaces, and long text is cut with an ellipsis;
//! templates also isolate it (`<bdi>`) so right-to-left text cannot reorder what stands around it.

use askama::Template;
use std::fmt::{self, Write as _};

/// moat's HTML escaper (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Escape;

impl askama::filters::Escaper for Escape {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '&' => dest.write_str("&amp;")?,
                '<' => dest.write_str("&lt;")?,
                '>' => dest.write_str("&gt;")?,
                '"' => dest.write_str("&quot;")?,
                '\'' => dest.write_str("&#39;")?,
                '\n' => dest.write_char('\n')?,
                c if c.is_control() => dest.write_char(' ')?,
                c => dest.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// HTML rendered from a template, so every value in it was escaped: the one thing a template
/// prints as it is (`{{ body|safe }}`).
#[derive(Debug, Clone)]
pub struct Markup(String);

impl Markup {
    /// `template`, rendered.
    pub fn render(template: &impl Template) -> Result<Markup, askama::Error> {
        template.render().map(Markup)
    }
}

impl fmt::Display for Markup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest subject or sender in a list (a digest row, the Message Center, the admin console);
/// the view page shows the whole text, wrapped.
pub const LIST_TEXT: usize = 120;

/// Most combining marks shown on one character: more only pile up over the lines around them
/// ("Zalgo" text) and are left out.
const MAX_COMBINING: usize = 2;

/// Text from mail as it may be shown (plain text, not yet escaped for HTML): the one sanitising
/// function every page and email uses for subjects, sender names and file names. Bidirectional
/// controls and invisible characters become visible escapes (`[U+202E]`), other control
/// characters spaces, combining marks past [`MAX_COMBINING`] on one character are left out, the
/// odd letters of a word mixing Latin, Greek and Cyrillic look-alikes become escapes too
/// (`p[U+0430]ypal`), and text longer than `max_chars` characters is cut with "…".
pub fn shown(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    let (mut count, mut combining) = (0usize, 0usize);
    let odd = odd_script_letters(text);
    let mut odd = odd.iter().peekable();
    for (at, c) in text.char_indices() {
        let odd_one = odd.next_if_eq(&&at).is_some();
        if is_combining(c) {
            combining += 1;
            if combining > MAX_COMBINING {
                continue;
            }
        } else {
            combining = 0;
        }
        if count >= max_chars {
            out.push('…');
            break;
        }
        count += 1;
        match c {
            c if odd_one || is_deceptive(c) => {
                let _ = write!(out, "[U+{:04X}]", u32::from(c));
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The scripts whose letters look alike (`а` and `a`, `ο` and `o`, `Р` and `P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
}

fn script(c: char) -> Option<Script> {
    match c {
        'A'..='Z' | 'a'..='z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' if c.is_alphabetic() => Some(Script::Latin),
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' if c.is_alphabetic() => Some(Script::Greek),
        '\u{0400}'..='\u{052F}' if c.is_alphabetic() => Some(Script::Cyrillic),
        _ => None,
    }
}

/// Where (byte offsets, ascending) the letters are that disguise a word as another: in a word
/// mixing Latin, Greek and Cyrillic letters (`pаypal` with a Cyrillic `а`), the letters of every
/// script but the word's main one (the one with most letters; Latin on a tie). Words of one
/// script, whatever it is, are left alone.
fn odd_script_letters(text: &str) -> Vec<usize> {
    let mut odd = Vec::new();
    let mut word: Vec<(usize, Script)> = Vec::new();
    let mut flush = |word: &mut Vec<(usize, Script)>| {
        let count = |s: Script| word.iter().filter(|(_, w)| *w == s).count();
        let counts =
            [(Script::Latin, count(Script::Latin)), (Script::Greek, count(Script::Greek)), (Script::Cyrillic, count(Script::Cyrillic))];
        if counts.iter().filter(|(_, n)| *n > 0).count() > 1 {
            let main = counts.iter().fold(counts[0], |best, &c| if c.1 > best.1 { c } else { best }).0;
            odd.extend(word.iter().filter(|(_, s)| *s != main).map(|(at, _)| *at));
        }
        word.clear();
    };
    for (at, c) in text.char_indices() {
        match script(c) {
            Some(s) => word.push((at, s)),
            None if c.is_alphanumeric() || is_combining(c) => {}
            None => flush(&mut word),
        }
    }
    flush(&mut word);
    odd
}

/// Bidirectional formatting characters, characters that show nothing, and line or paragraph
/// separators, which mail uses to disguise what a subject or a file name says (or to break a
/// line where none may be).
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' // bidi marks, embeddings, overrides, isolates
        | '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180E}'
        | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{2028}' | '\u{2029}' | '\u{FFF9}'..='\u{FFFB}' // line and paragraph separators, annotations
        | '\u{E0000}'..='\u{E007F}' // tags
    )
}

/// Combining marks (the blocks "Zalgo" text draws from).
fn is_combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{0483}'..='\u{0489}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Template)]
    #[template(source = "<p title=\"{{ text }}\">{{ text }}</p>{{ inner|safe }}", ext = "html")]
    struct Probe<'a> {
        text: &'a str,
        inner: Markup,
    }

    #[derive(Template)]
    #[template(source = "<b>{{ text }}</b>", ext = "html")]
    struct Inner<'a> {
        text: &'a str,
    }

    #[test]
    fn look_alike_letters_of_a_word_mixing_scripts_become_visible() {
        assert_eq!(shown("Your p\u{0430}ypal account", LIST_TEXT), "Your p[U+0430]ypal account", "a Cyrillic a among Latin letters");
        assert_eq!(
            shown("\u{0421}\u{0431}\u{0435}\u{0440}\u{0431}\u{0430}\u{043D}\u{043A}", LIST_TEXT),
            "Сбербанк",
            "one script: left alone"
        );
        assert_eq!(
            shown("C\u{0431}\u{0435}\u{0440}\u{0431}\u{0430}\u{043D}\u{043A}", LIST_TEXT),
            "[U+0043]бербанк",
            "the odd Latin C in a Cyrillic word"
        );
        assert_eq!(
            shown("\u{03BF}k caf\u{00E9} \u{0391}\u{03B8}\u{03AE}\u{03BD}\u{03B1} 2fa", LIST_TEXT),
            "[U+03BF]k café Αθήνα 2fa",
            "Greek omicron in a Latin word; é is Latin"
        );
        assert_eq!(shown("p\u{0430}yp", 2), "p[U+0430]…", "escapes count as one character each");
    }

    #[test]
    fn deceptive_characters_become_visible_and_long_text_is_cut() {
        assert_eq!(shown("Invoice \u{202E}gnp.exe", LIST_TEXT), "Invoice [U+202E]gnp.exe");
        assert_eq!(shown("pay\u{200B}pal\u{FEFF} \u{2067}x\u{2069}", LIST_TEXT), "pay[U+200B]pal[U+FEFF] [U+2067]x[U+2069]");
        assert_eq!(shown("a\r\nBcc: x\x1b[31m", LIST_TEXT), "a  Bcc: x [31m");
        assert_eq!(shown(&"x".repeat(600), 10), format!("{}…", "x".repeat(10)));
        assert_eq!(shown("Grüße 日本語 مرحبا", LIST_TEXT), "Grüße 日本語 مرحبا", "ordinary text of any script is untouched");
        assert_eq!(shown("line\u{2028}break\u{2029}", LIST_TEXT), "line[U+2028]break[U+2029]", "no line breaks from separators");
        assert_eq!(shown("e\u{301} Z\u{300}\u{301}\u{302}\u{303}\u{304}a", LIST_TEXT), "e\u{301} Z\u{300}\u{301}a", "marks cannot pile up");
        assert_eq!(shown("\u{202E}abc", 2), "[U+202E]a…", "an escape counts as one character");
        assert_eq!(shown("abc", 3), "abc", "text of exactly the length is not cut");
    }

    #[test]
    fn templates_escape_every_value_and_print_only_rendered_markup_as_it_is() {
        let inner = Markup::render(&Inner { text: "<i>" }).unwrap();
        let html = Probe { text: "<script>alert('x')</script> & \"q\"\r\n\x1b", inner }.render().unwrap();
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot; \n ";
        assert_eq!(html, format!("<p title=\"{escaped}\">{escaped}</p><b>&lt;i&gt;</b>"));
    }
}
