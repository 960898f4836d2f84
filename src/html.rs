//! HTML for everything moat shows people (the web pages, the HTML part of digests): escaping
//! and the page shell, written once.
//!
//! Guarantees: [`escape`] leaves no markup and no control characters, in element content and in
//! double-quoted attributes; [`page`] puts only escaped values where it takes text. Text that
//! comes from mail (subjects, sender names, file names) goes through [`shown`] first, so it can
//! neither deceive nor break a layout: bidirectional controls (the `Invoice <U+202E>gnp.exe`
//! trick) and invisible characters are shown as visible escapes such as `[U+202E]`, other
//! control characters become spaces, and long text is cut with an ellipsis; [`mail_value`]
//! also isolates it (`<bdi>`) so right-to-left text cannot reorder what stands around it.

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Longest subject or sender in a list (a digest row, the Message Center, the admin console);
/// the view page shows the whole text, wrapped.
pub const LIST_TEXT: usize = 120;

/// Text from mail as it may be shown (plain text, not yet escaped for HTML): bidirectional
/// controls and invisible characters become visible escapes (`[U+202E]`), other control
/// characters spaces, and text longer than `max_chars` characters is cut with "…".
pub fn shown(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    for (count, c) in text.chars().enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        match c {
            c if is_deceptive(c) => out.push_str(&format!("[U+{:04X}]", u32::from(c))),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Bidirectional formatting characters and characters that show nothing, which mail uses to
/// disguise what a subject or a file name says.
fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' // bidi marks, embeddings, overrides, isolates
        | '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180E}'
        | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{E0000}'..='\u{E007F}' // tags
    )
}

/// [`shown`], escaped for HTML and isolated in `<bdi>`.
pub fn mail_value(text: &str, max_chars: usize) -> String {
    format!("<bdi>{}</bdi>", escape(&shown(text, max_chars)))
}

/// [`escape`], keeping line breaks (for a `<pre>` block).
pub fn escape_keep_lines(text: &str) -> String {
    text.split('\n').map(|line| escape(line.trim_end_matches('\r'))).collect::<Vec<_>>().join("\n")
}

/// A whole HTML document: `title` (escaped here) and `body`, trusted HTML built from escaped values.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}\
         dt{{font-weight:bold}}button{{font-size:1rem;padding:.5rem 1rem}}</style></head>\
         <body><main><h1>{}</h1>{body}</main></body></html>\n",
        escape(title),
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deceptive_characters_become_visible_and_long_text_is_cut() {
        assert_eq!(shown("Invoice \u{202E}gnp.exe", LIST_TEXT), "Invoice [U+202E]gnp.exe");
        assert_eq!(shown("pay\u{200B}pal\u{FEFF} \u{2067}x\u{2069}", LIST_TEXT), "pay[U+200B]pal[U+FEFF] [U+2067]x[U+2069]");
        assert_eq!(shown("a\r\nBcc: x\x1b[31m", LIST_TEXT), "a  Bcc: x [31m");
        assert_eq!(shown(&"x".repeat(600), 10), format!("{}…", "x".repeat(10)));
        assert_eq!(shown("Grüße 日本語 مرحبا", LIST_TEXT), "Grüße 日本語 مرحبا", "ordinary text of any script is untouched");
        assert_eq!(mail_value("<b>\u{202E}", 5), "<bdi>&lt;b&gt;[U+202E]</bdi>");
    }

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(escape("<script>alert('x')</script> & \"q\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
        assert_eq!(escape("a\r\nb"), "a  b");
    }
}
