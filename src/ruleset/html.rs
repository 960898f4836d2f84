//! HTML to text, the way body rules want it: tags stripped, `script`/`style` contents and
//! comments dropped, entities decoded, block elements ending paragraphs (`\n\n`), `<br>` a line
//! break. Link targets (`href`, `src`, `action`, `background`) are collected for `uri` rules.
//!
//! A single forward pass over the input with no backtracking: linear time, never panics, and
//! never produces more text than it reads plus entity expansions (bounded per entity).

/// Rendered text and the link targets found.
#[derive(Debug, Default, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub links: Vec<String>,
}

const BLOCK: &[&str] = &[
    "p",
    "div",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "blockquote",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "pre",
    "dd",
    "dt",
    "dl",
    "form",
    "center",
    "address",
    "section",
    "article",
    "header",
    "footer",
    "title",
    "tbody",
    "thead",
    "tfoot",
    "body",
    "html",
    "head",
    "nav",
    "aside",
    "main",
    "figure",
    "caption",
];
const SKIP_CONTENT: &[&str] = &["script", "style", "noscript", "template"];
const LINK_ATTRS: &[&str] = &["href", "src", "action", "background", "data", "poster", "cite"];
/// At most this many links per document.
const MAX_LINKS: usize = 500;

/// Renders `html` to text and collects links.
pub fn render(html: &str) -> Rendered {
    let mut out = Rendered { text: String::with_capacity(html.len() / 2), links: Vec::new() };
    let b = html.as_bytes();
    let mut i = 0;
    let mut text_start = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        push_text(&mut out.text, &html[text_start..i]);
        if html[i..].starts_with("<!--") {
            i = html[i + 4..].find("-->").map_or(b.len(), |e| i + 4 + e + 3);
            text_start = i;
            continue;
        }
        match parse_tag(html, i) {
            Some(tag) => {
                i = tag.end;
                handle_tag(&tag, &mut out);
                if !tag.closing && SKIP_CONTENT.contains(&tag.name.as_str()) {
                    i = skip_until_close(html, i, &tag.name);
                }
            }
            None => {
                // A `<` that does not start a tag is text.
                out.text.push('<');
                i += 1;
            }
        }
        text_start = i;
    }
    push_text(&mut out.text, &html[text_start.min(html.len())..]);
    out
}

struct Tag {
    name: String,
    closing: bool,
    attrs: Vec<(String, String)>,
    end: usize,
}

fn handle_tag(tag: &Tag, out: &mut Rendered) {
    let name = tag.name.as_str();
    if name == "br" {
        out.text.push('\n');
    } else if BLOCK.contains(&name) || name == "td" || name == "th" || name == "img" {
        if name == "td" || name == "th" {
            out.text.push(' ');
        } else if name == "img" {
            // alt text is visible when images are off, as SpamAssassin renders it
            if let Some((_, alt)) = tag.attrs.iter().find(|(k, _)| k == "alt") {
                out.text.push(' ');
                out.text.push_str(alt);
                out.text.push(' ');
            }
        } else {
            out.text.push_str("\n\n");
        }
    }
    if tag.closing {
        return;
    }
    for (k, v) in &tag.attrs {
        if LINK_ATTRS.contains(&k.as_str()) && !v.is_empty() && out.links.len() < MAX_LINKS {
            out.links.push(v.clone());
        }
    }
}

/// Parses a tag starting at `start` (which holds `<`). None if it is not a tag.
fn parse_tag(html: &str, start: usize) -> Option<Tag> {
    let b = html.as_bytes();
    let mut i = start + 1;
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let first = *b.get(i)?;
    if first == b'!' || first == b'?' {
        // doctype, CDATA, processing instruction: skip to '>'
        let end = html[i..].find('>').map_or(b.len(), |e| i + e + 1);
        return Some(Tag { name: String::new(), closing: true, attrs: Vec::new(), end });
    }
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b':') {
        i += 1;
    }
    let name = html[name_start..i].to_ascii_lowercase();
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return Some(Tag { name, closing, attrs, end: b.len() });
        }
        if b[i] == b'>' {
            return Some(Tag { name, closing, attrs, end: i + 1 });
        }
        let ks = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let key = html[ks..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let (v, next) = attr_value(html, i);
            value = decode_entities(v.trim());
            i = next;
        }
        if !key.is_empty() && attrs.len() < 64 {
            attrs.push((key, value));
        }
        if ks == i {
            i += 1;
        }
    }
}

fn attr_value(html: &str, i: usize) -> (&str, usize) {
    let b = html.as_bytes();
    match b.get(i) {
        Some(&q @ (b'"' | b'\'')) => {
            let end = html[i + 1..].find(q as char).map_or(b.len(), |e| i + 1 + e);
            (&html[i + 1..end], (end + 1).min(b.len()))
        }
        _ => {
            let mut j = i;
            while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                j += 1;
            }
            (&html[i..j], j)
        }
    }
}

fn skip_until_close(html: &str, from: usize, name: &str) -> usize {
    let close = format!("</{name}");
    let lower_match = |s: &str| s.len() >= close.len() && s.as_bytes()[..close.len()].eq_ignore_ascii_case(close.as_bytes());
    let mut i = from;
    while let Some(p) = html[i..].find('<') {
        let at = i + p;
        if lower_match(&html[at..]) {
            return html[at..].find('>').map_or(html.len(), |e| at + e + 1);
        }
        i = at + 1;
    }
    html.len()
}

fn push_text(out: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if text.contains('&') {
        out.push_str(&decode_entities(text));
    } else {
        out.push_str(text);
    }
}

/// Decodes `&name;`, `&#NNN;` and `&#xHH;` (a missing `;` is tolerated for numeric forms).
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        match entity(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(s: &str) -> Option<(char, usize)> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let (hex, st) = if matches!(b.get(2), Some(b'x' | b'X')) { (true, 3) } else { (false, 2) };
        let mut j = st;
        while j < b.len() && j - st < 8 && (if hex { b[j].is_ascii_hexdigit() } else { b[j].is_ascii_digit() }) {
            j += 1;
        }
        if j == st {
            return None;
        }
        let v = u32::from_str_radix(&s[st..j], if hex { 16 } else { 10 }).ok()?;
        let used = if b.get(j) == Some(&b';') { j + 1 } else { j };
        return Some((char::from_u32(v).unwrap_or('\u{FFFD}'), used));
    }
    let end = s[1..].find(';')? + 1;
    if end > 10 {
        return None;
    }
    let c = match &s[1..end] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{A0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "deg" => '°',
        "middot" => '·',
        "bull" => '•',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "shy" => '\u{AD}',
        "zwnj" => '\u{200C}',
        "zwj" => '\u{200D}',
        "times" => '×',
        "eacute" => 'é',
        "egrave" => 'è',
        "agrave" => 'à',
        "aacute" => 'á',
        "uuml" => 'ü',
        "ouml" => 'ö',
        "auml" => 'ä',
        "szlig" => 'ß',
        "ccedil" => 'ç',
        "ntilde" => 'ñ',
        _ => return None,
    };
    Some((c, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tags_and_decodes_entities() {
        let r = render(
            "<html><head><style>p{color:red}</style><script>var x='<p>';</script></head>\
            <body><p>Hello&nbsp;<b>World</b> &amp; &#65;&#x42;</p><!-- hidden --><div>Next</div>\
            line<br>break</body></html>",
        );
        assert!(r.text.contains("Hello\u{A0}World & AB"), "{:?}", r.text);
        assert!(!r.text.contains("color") && !r.text.contains("var x") && !r.text.contains("hidden"));
        assert!(r.text.contains("\n\nNext"));
        assert!(r.text.contains("line\nbreak"));
    }

    #[test]
    fn collects_links() {
        let r = render(
            "<a href=\"http://x.test/?a=1&amp;b=2\">t</a><img src='http://i.test/p.gif' alt=\"Buy\">\
            <form action=http://f.test/post><a HREF = \"mailto:x@y.test\">m</a>",
        );
        assert_eq!(r.links, ["http://x.test/?a=1&b=2", "http://i.test/p.gif", "http://f.test/post", "mailto:x@y.test"]);
        assert!(r.text.contains("Buy"));
    }

    #[test]
    fn tolerates_broken_html() {
        for s in ["<", "<a href=", "<a href=\"x", "a < b > c", "<!--", "<script>never closed", "&#xFFFFFFFF;", "&#;"] {
            let _ = render(s);
        }
        assert_eq!(render("a < b").text, "a < b");
    }
}
