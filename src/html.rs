//! HTML for everything moat shows people (the web pages, the HTML part of digests): escaping
//! and the page shell, written once.
//!
//! Guarantees: [`escape`] leaves no markup and no control characters, in element content and in
//! double-quoted attributes; [`page`] puts only escaped values where it takes text.

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
    fn escaping_leaves_no_markup() {
        assert_eq!(escape("<script>alert('x')</script> & \"q\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
        assert_eq!(escape("a\r\nb"), "a  b");
    }
}
