//! What SpamAssassin's HTML reader (`Mail::SpamAssassin::HTML`) learns about a text/html part,
//! for the HTMLEval `eval:` functions (`html_test`, `html_range`, `html_image_only`, …): tag
//! counts and balance, font sizes and colours (text as good as invisible), image area against
//! visible text, comments, titles, link texts, scripts and the rendered text's length.
//!
//! moat's own code, written to give the same figures as SpamAssassin 4 on the same part (the
//! agreement test runs both): the tokenizer follows HTML::Parser's events (text split where a
//! `<` starts no tag, `<!…>` that is no `<!DOCTYPE` a comment, markup left open at the end a
//! comment, `script`/`style`/`xmp`/`plaintext`/`title`/`textarea` contents literal), and each
//! event updates the facts as SpamAssassin's handlers do, quirks included (a `bgcolor`
//! attribute sets no background; sizes count only after a recognised attribute). One forward
//! pass, linear in the part's length, bounded stacks; never panics.

use std::collections::HashMap;

use super::html::decode_entities;
use super::message::squeeze_space;
use super::perlre::is_perl_space;

/// Open text styles kept at most (hostile nesting is not followed further).
const MAX_STYLE_DEPTH: usize = 256;
/// Strings kept per list (comments, titles, anchors, scripts).
const MAX_STRINGS: usize = 1000;

/// Elements SpamAssassin knows (HTML 4 plus a few of its own).
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "address",
    "area",
    "b",
    "base",
    "bdo",
    "big",
    "blockquote",
    "body",
    "br",
    "button",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "fieldset",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "hr",
    "html",
    "i",
    "img",
    "input",
    "ins",
    "kbd",
    "label",
    "legend",
    "li",
    "link",
    "map",
    "meta",
    "noscript",
    "object",
    "ol",
    "optgroup",
    "option",
    "p",
    "param",
    "pre",
    "q",
    "samp",
    "script",
    "select",
    "small",
    "span",
    "strong",
    "style",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "tt",
    "ul",
    "var",
    "applet",
    "basefont",
    "center",
    "dir",
    "font",
    "frame",
    "frameset",
    "iframe",
    "isindex",
    "menu",
    "noframes",
    "s",
    "strike",
    "u",
    "nobr",
    "x-sigsep",
    "x-tab",
];
const TRICKS: &[&str] = &["bgsound", "embed", "listing", "plaintext", "xmp"];
const TEXT_STYLE: &[&str] = &["body", "font", "table", "tr", "th", "td", "big", "small", "basefont", "marquee", "span", "p", "div", "a"];
const WHITESPACE: &[&str] = &[
    "br",
    "div",
    "li",
    "th",
    "td",
    "dt",
    "dd",
    "p",
    "hr",
    "blockquote",
    "pre",
    "embed",
    "listing",
    "plaintext",
    "xmp",
    "title",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
];
/// Elements whose contents HTML::Parser reads literally (no tags inside).
const LITERAL: &[&str] = &["script", "style", "xmp", "plaintext", "title", "textarea"];

/// The facts about one HTML part.
#[derive(Debug, Default, Clone)]
pub struct HtmlFacts {
    /// Characters of the part as given to the reader.
    pub length: usize,
    inside: HashMap<String, i64>,
    tags: u32,
    elements: u32,
    tags_seen: u32,
    elements_seen: u32,
    closed_extra: u32,
    obfuscation: u32,
    max_size: f64,
    min_size: f64,
    image_area: f64,
    font_low_contrast: bool,
    font_invalid_color: bool,
    font_face_bad: bool,
    form_action_mailto: bool,
    embeds: bool,
    iframe_src: bool,
    comments: Vec<String>,
    titles: Vec<String>,
    anchors: Vec<String>,
    scripts: Vec<String>,
    /// `mailto:` targets of links.
    mailtos: Vec<String>,
    /// Characters of the rendered text, and of them not whitespace.
    html_length: usize,
    non_space_len: usize,
}

impl HtmlFacts {
    /// Reads one decoded text/html part.
    pub fn analyze(html: &str) -> HtmlFacts {
        Self::read(html, false).0
    }

    /// Reads one part and also returns its text as SpamAssassin renders it (every piece,
    /// invisible ones included).
    pub fn analyze_with_text(html: &str) -> (HtmlFacts, String) {
        Self::read(html, true)
    }

    fn read(html: &str, keep_text: bool) -> (HtmlFacts, String) {
        let mut r = Reader::new(html.chars().count());
        r.rendered = keep_text.then(String::new);
        let prepared = prepare(html);
        tokenize(&prepared, &mut r);
        r.finish()
    }

    /// `html_test(NAME)`: a flag SpamAssassin's reader sets (`html` for every part it read).
    pub fn test(&self, name: &str) -> bool {
        match name {
            "html" => true,
            "font_low_contrast" => self.font_low_contrast,
            "font_invalid_color" => self.font_invalid_color,
            "font_face_bad" => self.font_face_bad,
            "form_action_mailto" => self.form_action_mailto,
            "embeds" => self.embeds,
            _ => self.value(name).is_some_and(|v| v != 0.0),
        }
    }

    /// A numeric result by SpamAssassin's name; None where it leaves the result undefined.
    pub fn value(&self, name: &str) -> Option<f64> {
        let ratio = |n: u32, d: u32| (d > 0).then(|| f64::from(n) / f64::from(d));
        match name {
            "length" => Some(self.length as f64),
            "max_size" => Some(self.max_size),
            "min_size" => Some(self.min_size),
            "image_area" => Some(self.image_area),
            "html_length" => Some(self.html_length as f64),
            "non_space_len" => Some(self.non_space_len as f64),
            "closed_extra_ratio" => ratio(self.closed_extra, self.tags),
            "bad_tag_ratio" if self.elements > 0 => ratio(self.tags - self.elements.min(self.tags), self.tags),
            "non_element_ratio" if self.elements_seen > 0 => ratio(self.tags_seen - self.elements_seen.min(self.tags_seen), self.tags_seen),
            "obfuscation_ratio" if self.obfuscation > 0 => ratio(self.obfuscation, self.tags),
            "ratio" => {
                let text = self.length as f64;
                (self.length > 0).then(|| (text - self.html_length as f64) / text)
            }
            _ => None,
        }
    }

    /// A list of strings by SpamAssassin's name (`comment`, `title`, `anchor`, `script`).
    pub fn texts(&self, name: &str) -> Option<&[String]> {
        match name {
            "comment" => Some(&self.comments),
            "title" => Some(&self.titles),
            "anchor" => Some(&self.anchors),
            "script" => Some(&self.scripts),
            _ => None,
        }
    }

    /// Open minus closed tags of this name, or None if it never occurred.
    pub fn inside(&self, tag: &str) -> Option<i64> {
        self.inside.get(tag).copied()
    }

    /// Whether an `iframe` has a source.
    pub fn iframe_src(&self) -> bool {
        self.iframe_src
    }

    /// The `mailto:` links.
    pub fn mailtos(&self) -> &[String] {
        &self.mailtos
    }
}

/// SpamAssassin's rewrites before parsing: `&nbsp;` a space, `<x/>` a start tag, curly double
/// quotes straight ones.
fn prepare(html: &str) -> String {
    let s = html.replace("&nbsp;", " ").replace(['\u{201C}', '\u{201D}'], "\"");
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut i = 0;
    while let Some(p) = s[i..].find('<') {
        let at = i + p;
        let mut j = at + 1;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        let word_end = j;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if word_end > at + 1 && s[j..].starts_with("/>") {
            out.push_str(&s[last..word_end]);
            out.push('>');
            last = j + 2;
            i = last;
        } else {
            i = at + 1;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// One style on SpamAssassin's text-style stack.
#[derive(Debug, Clone)]
struct Style {
    tag: String,
    fg: String,
    bg: String,
    size: f64,
    display: Option<String>,
    visibility: Option<String>,
}

/// The handlers' state while reading.
struct Reader {
    facts: HtmlFacts,
    styles: Vec<Style>,
    basefont: f64,
    title_index: Option<usize>,
    /// The last rendered piece, whether it was whitespace or invisible.
    last: Option<(String, bool, bool)>,
    spaces: usize,
    /// The rendered text before `last`, when asked for.
    rendered: Option<String>,
}

impl Reader {
    fn new(length: usize) -> Reader {
        let facts = HtmlFacts { length, max_size: 3.0, min_size: 3.0, ..HtmlFacts::default() };
        let default =
            Style { tag: "default".into(), fg: "#000000".into(), bg: "#ffffff".into(), size: 3.0, display: None, visibility: None };
        Reader { facts, styles: vec![default], basefont: 3.0, title_index: None, last: None, spaces: 0, rendered: None }
    }

    fn finish(mut self) -> (HtmlFacts, String) {
        self.facts.non_space_len = self.facts.html_length.saturating_sub(self.spaces);
        let text = match (self.rendered.take(), &self.last) {
            (Some(mut text), Some((last, _, _))) => {
                text.push_str(last);
                text
            }
            (text, _) => text.unwrap_or_default(),
        };
        (self.facts, text)
    }

    fn tag(&mut self, tag: &str, attrs: &[(String, String)], open: bool) {
        let namespace = is_namespace(tag);
        let known = ELEMENTS.contains(&tag);
        let seen = self.facts.inside.contains_key(tag);
        if known || namespace {
            self.facts.elements += 1;
            self.facts.elements_seen += u32::from(!seen);
        }
        self.facts.tags += 1;
        self.facts.tags_seen += u32::from(!seen);
        let depth = self.facts.inside.entry(tag.to_string()).or_insert(0);
        *depth += if open { 1 } else { -1 };
        if *depth < 0 {
            *depth = 0;
            self.facts.closed_extra += 1;
        }
        if namespace || !(known || TRICKS.contains(&tag)) {
            return;
        }
        if TEXT_STYLE.contains(&tag) {
            self.text_style(tag, attrs, open);
        }
        if WHITESPACE.contains(&tag) {
            self.whitespace(tag);
        }
        if open {
            self.uri(tag, attrs);
            self.tests(tag, attrs);
        }
    }

    fn inside(&self, tag: &str) -> bool {
        self.facts.inside.get(tag).is_some_and(|d| *d > 0)
    }

    fn whitespace(&mut self, tag: &str) {
        let piece = match tag {
            "br" | "div" => "\n",
            "li" | "th" | "td" | "dt" | "dd" | "embed" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => " ",
            _ => "\n\n",
        };
        if let Some((last, false, false)) = &mut self.last
            && last.ends_with(' ')
        {
            last.pop();
            self.facts.html_length -= 1;
            self.spaces -= 1;
        }
        self.push_piece(piece.to_string(), true, false);
    }

    fn push_piece(&mut self, piece: String, whitespace: bool, invisible: bool) {
        self.facts.html_length += piece.chars().count();
        self.spaces += piece.chars().filter(|c| c.is_whitespace()).count();
        if let (Some(text), Some((last, _, _))) = (&mut self.rendered, &self.last) {
            text.push_str(last);
        }
        self.last = Some((piece, whitespace, invisible));
    }

    fn text(&mut self, text: &str) {
        if self.inside("script") {
            push_bounded(&mut self.facts.scripts, text.to_string());
            return;
        }
        if self.inside("style") {
            return;
        }
        if self.inside("a")
            && let Some(anchor) = self.facts.anchors.last_mut()
        {
            anchor.push_str(text);
        }
        if self.inside("title")
            && let Some(title) = self.title_index.and_then(|i| self.facts.titles.get_mut(i))
        {
            title.push_str(text);
        }
        let visible_chars = text.chars().any(|c| !is_perl_space(c));
        let invisible = visible_chars && self.font_invisible();
        if let Some((last, _, _)) = &self.last
            && text.chars().next().is_some_and(is_wordish)
            && last.chars().next_back().is_some_and(is_wordish)
        {
            self.facts.obfuscation += 1;
        }
        // Perl's \s: ASCII white space only.
        let mut collapsed = squeeze_space(text, is_perl_space);
        if !invisible && matches!(self.last, Some((_, true, _))) && collapsed.starts_with(' ') {
            collapsed.remove(0);
        }
        self.push_piece(collapsed, false, invisible);
    }

    /// SpamAssassin's `html_font_invisible`: sets the contrast flags as it goes.
    fn font_invisible(&mut self) -> bool {
        let Some(style) = self.styles.last() else { return false };
        if tail6(&style.fg) == tail6(&style.bg) {
            self.facts.font_low_contrast = true;
            return true;
        }
        if let (Some(fg), Some(bg)) = (rgb(&style.fg), rgb(&style.bg)) {
            let d = |a: u8, b: u8, w: f64| (w * (f64::from(a) - f64::from(b))).powi(2);
            let distance = (d(fg[0], bg[0], 0.2126) + d(fg[1], bg[1], 0.7152) + d(fg[2], bg[2], 0.0722)).sqrt();
            if distance < 12.0 {
                self.facts.font_low_contrast = true;
                return true;
            }
        }
        if style.fg == "invalid" || style.bg == "invalid" {
            self.facts.font_invalid_color = true;
            return true;
        }
        style.size <= 1.0
            || style.display.as_deref().is_some_and(|d| d.eq_ignore_ascii_case("none"))
            || style.visibility.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("hidden"))
    }

    fn text_style(&mut self, tag: &str, attrs: &[(String, String)], open: bool) {
        let tag = if tag == "th" { "td" } else { tag };
        if !open {
            if tag != "body" {
                self.close_style(tag);
            }
            return;
        }
        if tag == "basefont"
            && let Some(size) = attr(attrs, "size").and_then(leading_unsigned)
        {
            self.basefont = size;
            return;
        }
        if tag == "td" || tag == "tr" {
            self.close_table_style(tag);
        }
        let Some(parent) = self.styles.last() else { return };
        let parent_bg = parent.bg.clone();
        let mut new = Style { tag: tag.to_string(), ..parent.clone() };
        if tag == "big" || tag == "small" {
            new.size += if tag == "big" { 1.0 } else { -1.0 };
            self.push_style(new);
            return;
        }
        for (name, value) in attrs {
            if !ok_attribute(tag, name) {
                continue;
            }
            match name.as_str() {
                "text" | "color" => new.fg = name_to_rgb(value),
                "size" => {
                    if let Some(rel) = leading_signed(value) {
                        new.size = self.basefont + rel;
                    } else if let Some(abs) = leading_unsigned(value) {
                        new.size = abs;
                    }
                }
                "style" => apply_css(&mut new, value, &parent_bg),
                _ => {}
            }
            if new.size > self.facts.max_size {
                self.facts.max_size = new.size;
            } else if new.size < self.facts.min_size {
                self.facts.min_size = new.size;
            }
        }
        self.push_style(new);
    }

    fn push_style(&mut self, style: Style) {
        if self.styles.len() < MAX_STYLE_DEPTH {
            self.styles.push(style);
        }
    }

    fn close_table_style(&mut self, tag: &str) {
        if !self.styles.iter().any(|s| s.tag == tag) {
            return;
        }
        while let Some(top) = self.styles.last() {
            let pop = match tag {
                "td" => top.tag == "font" || top.tag == "td",
                _ => matches!(top.tag.as_str(), "font" | "td" | "tr"),
            };
            if !pop {
                break;
            }
            self.styles.pop();
        }
    }

    fn close_style(&mut self, tag: &str) {
        if !self.styles.iter().any(|s| s.tag == tag) {
            return;
        }
        while let Some(top) = self.styles.pop() {
            if top.tag == tag {
                break;
            }
        }
    }

    fn uri(&mut self, tag: &str, attrs: &[(String, String)]) {
        if tag == "iframe" {
            let src = attrs.iter().rev().find(|(k, _)| k == "src" || is_prefixed(k, "src")).map(|(_, v)| v);
            if src.is_some_and(|s| !s.trim_matches(|c: char| c.is_whitespace() || c == '\u{A0}').is_empty()) {
                self.facts.iframe_src = true;
            }
        }
    }

    fn tests(&mut self, tag: &str, attrs: &[(String, String)]) {
        if tag == "font"
            && let Some(face) = attr(attrs, "face")
            && !good_font_face(face)
        {
            self.facts.font_face_bad = true;
        }
        if tag == "img"
            && self.inside("a")
            && let Some(anchor) = self.facts.anchors.last_mut()
        {
            anchor.push_str("<img>\n");
        }
        if tag == "img"
            && let (Some(w), Some(h)) = (attr(attrs, "width"), attr(attrs, "height"))
        {
            let width = dimension(w, 8.0);
            let height = dimension(h, 6.0);
            self.facts.image_area += width * height;
        }
        if tag == "form" && attr(attrs, "action").is_some_and(|a| a.to_ascii_lowercase().contains("mailto:")) {
            self.facts.form_action_mailto = true;
        }
        if tag == "object" || tag == "embed" {
            self.facts.embeds = true;
        }
        if tag == "a" {
            push_bounded(&mut self.facts.anchors, String::new());
            if let Some(href) = attr(attrs, "href").map(|h| h.trim_matches(|c: char| c.is_whitespace() || c == '\u{A0}'))
                && href.len() > 7
                && href.is_char_boundary(7)
                && href[..7].eq_ignore_ascii_case("mailto:")
            {
                push_bounded(&mut self.facts.mailtos, href.to_string());
            }
        }
        if tag == "title" && self.facts.titles.len() < MAX_STRINGS {
            self.facts.titles.push(String::new());
            self.title_index = Some(self.facts.titles.len() - 1);
        }
    }

    fn comment(&mut self, text: &str) {
        push_bounded(&mut self.facts.comments, text.to_string());
    }

    fn declaration(&mut self, text: &str) {
        if text.len() >= 9 && text[..9].eq_ignore_ascii_case("<!doctype") {
            self.facts.elements += 1;
            self.facts.tags += 1;
            self.facts.inside.insert("!doctype".into(), 0);
        }
    }
}

fn push_bounded(list: &mut Vec<String>, s: String) {
    if list.len() < MAX_STRINGS {
        list.push(s);
    }
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `xyz/src`-style attribute names SpamAssassin takes for `src` (and `href`).
fn is_prefixed(key: &str, what: &str) -> bool {
    key.split_once('/').is_some_and(|(p, w)| w.starts_with(what) && !p.is_empty())
}

fn ok_attribute(tag: &str, name: &str) -> bool {
    let allowed: &[&str] = match tag {
        "basefont" | "font" => &["color", "face", "size"],
        "body" => &["text", "bgcolor", "link", "alink", "vlink", "background"],
        "marquee" => &["bgcolor", "background"],
        "table" | "td" | "th" | "tr" => &["bgcolor", "style"],
        "span" | "p" | "div" | "a" => &["style"],
        _ => &[],
    };
    allowed.contains(&name)
}

/// A `style` attribute's colours, `display` and `visibility`, as SpamAssassin reads them.
fn apply_css(style: &mut Style, css: &str, parent_bg: &str) {
    for decl in css.split(';') {
        let trimmed = decl.trim();
        let lower = trimmed.to_ascii_lowercase();
        let (is_bg, color) =
            if let Some(v) = lower.strip_prefix("background-color:") { (true, Some(v)) } else { (false, lower.strip_prefix("color:")) };
        if let Some(value) = color {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let value = strip_important(value);
            let rgb = if value.contains("rgb") {
                Some(css_rgb(value))
            } else if value == "inherit" {
                None
            } else if value == "transparent" {
                Some(value.to_string())
            } else {
                Some(name_to_rgb(value))
            };
            if let Some(rgb) = rgb {
                if is_bg { style.bg = rgb } else { style.fg = rgb }
            }
        } else if let Some(v) = trimmed.strip_prefix("background:") {
            if let Some(layer) = css_background_layers(&v.trim().to_ascii_lowercase()).last()
                && let Some(color) = layer.iter().map(|t| name_to_rgb(t)).find(|c| c != "invalid")
            {
                style.bg = color;
            }
        } else if let Some((name, value)) = trimmed.split_once(':') {
            let name = name.trim();
            let value = value.trim();
            if !value.is_empty() && !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-') {
                match name {
                    "display" => style.display = Some(value.to_string()),
                    "visibility" => style.visibility = Some(value.to_string()),
                    _ => {}
                }
            }
        }
    }
    if style.bg == "transparent" {
        style.bg = parent_bg.to_string();
    }
    if style.fg == "transparent" {
        style.fg = style.bg.clone();
    }
}

fn strip_important(value: &str) -> &str {
    let Some(rest) = value.strip_suffix("important") else { return value };
    let rest = rest.trim_end();
    match rest.strip_suffix('!') {
        Some(r) => r.trim_end(),
        None => value,
    }
}

/// `rgb(…)` in a style: its digits and commas, three numbers capped at 255.
fn css_rgb(value: &str) -> String {
    let digits: String = value.chars().filter(|c| c.is_ascii_digit() || *c == ',').collect();
    let mut parts = digits.split(',');
    let mut out = String::from("#");
    for _ in 0..3 {
        let n = parts.next().and_then(|p| p.parse::<f64>().ok()).unwrap_or(0.0);
        let n = if n > 255.0 { 255 } else { n as u32 };
        out.push_str(&format!("{n:02x}"));
    }
    out
}

/// CSS `background:` split into comma-separated layers of space-separated tokens (brackets
/// and quotes kept together).
fn css_background_layers(value: &str) -> Vec<Vec<String>> {
    let mut layers = Vec::new();
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut stack: Vec<char> = Vec::new();
    for ch in value.chars() {
        match stack.last() {
            None => match ch {
                ' ' => {
                    if !token.is_empty() {
                        tokens.push(std::mem::take(&mut token));
                    }
                }
                ',' => {
                    if !token.is_empty() {
                        tokens.push(std::mem::take(&mut token));
                    }
                    layers.push(std::mem::take(&mut tokens));
                }
                '(' | '"' | '\'' => {
                    token.push(ch);
                    stack.push(ch);
                }
                _ => token.push(ch),
            },
            Some('(') => {
                token.push(ch);
                match ch {
                    ')' => {
                        tokens.push(std::mem::take(&mut token));
                        stack.pop();
                    }
                    '"' | '\'' => stack.push(ch),
                    _ => {}
                }
            }
            Some(&q) => {
                token.push(ch);
                if ch == q {
                    stack.pop();
                }
            }
        }
    }
    if !token.is_empty() {
        tokens.push(token);
    }
    if !tokens.is_empty() {
        layers.push(tokens);
    }
    layers
}

/// SpamAssassin's `name_to_rgb`: `#rrggbb` or `invalid`.
fn name_to_rgb(color: &str) -> String {
    let color = color.trim().to_ascii_lowercase();
    if let Some(hex) = named_color(&color) {
        return format!("#{hex:06x}");
    }
    let hexish = color.chars().all(|c| c == '#' || c.is_ascii_hexdigit());
    let mut color = color;
    if !hexish {
        match rgb_function(&color) {
            Some(c) => color = c,
            None => return "invalid".into(),
        }
    }
    if !color.starts_with('#') {
        return "invalid".into();
    }
    let mut hex: String = color.chars().filter(char::is_ascii_hexdigit).collect();
    if hex.len() > 6 {
        hex.truncate(6);
    }
    if hex.len() > 3 && hex.len() < 6 {
        hex.truncate(3);
    }
    while !hex.len().is_multiple_of(3) {
        hex.push('0');
    }
    if hex.len() == 3 {
        hex = hex.chars().flat_map(|c| [c, c]).collect();
    }
    format!("#{hex}")
}

/// `rgb(R,G,B)` or `rgb(R%,G%,B%)` somewhere in `color`, as SpamAssassin converts it (a colour
/// value without it and not hex is invalid).
fn rgb_function(color: &str) -> Option<String> {
    let start = color.find("rgb(")?;
    let inner = &color[start + 4..];
    let end = inner.find(')')?;
    let inner = &inner[..end];
    if !inner.chars().all(|c| c.is_ascii_digit() || matches!(c, '%' | ',' | ' ')) {
        return None;
    }
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        return Some(color.to_string());
    }
    let percent = parts.iter().all(|p| p.ends_with('%'));
    let mut out = String::from("#");
    for p in parts {
        let n: u64 = p.trim_end_matches('%').parse().ok()?;
        let n = if percent { n * 255 / 100 } else { n };
        out.push_str(&format!("{n:02x}"));
    }
    Some(out)
}

fn rgb(color: &str) -> Option<[u8; 3]> {
    let hex = color.strip_prefix('#').unwrap_or(color);
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

fn tail6(s: &str) -> &str {
    let n = s.chars().count();
    match s.char_indices().nth(n.saturating_sub(6)) {
        Some((i, _)) => &s[i..],
        None => s,
    }
}

fn named_color(name: &str) -> Option<u32> {
    const COLORS: &[(&str, u32)] = &[
        ("aliceblue", 0xf0f8ff),
        ("antiquewhite", 0xfaebd7),
        ("aqua", 0x00ffff),
        ("aquamarine", 0x7fffd4),
        ("azure", 0xf0ffff),
        ("beige", 0xf5f5dc),
        ("bisque", 0xffe4c4),
        ("black", 0x000000),
        ("blanchedalmond", 0xffebcd),
        ("blue", 0x0000ff),
        ("blueviolet", 0x8a2be2),
        ("brown", 0xa52a2a),
        ("burlywood", 0xdeb887),
        ("cadetblue", 0x5f9ea0),
        ("chartreuse", 0x7fff00),
        ("chocolate", 0xd2691e),
        ("coral", 0xff7f50),
        ("cornflowerblue", 0x6495ed),
        ("cornsilk", 0xfff8dc),
        ("crimson", 0xdc143c),
        ("cyan", 0x00ffff),
        ("darkblue", 0x00008b),
        ("darkcyan", 0x008b8b),
        ("darkgoldenrod", 0xb8860b),
        ("darkgray", 0xa9a9a9),
        ("darkgreen", 0x006400),
        ("darkgrey", 0xa9a9a9),
        ("darkkhaki", 0xbdb76b),
        ("darkmagenta", 0x8b008b),
        ("darkolivegreen", 0x556b2f),
        ("darkorange", 0xff8c00),
        ("darkorchid", 0x9932cc),
        ("darkred", 0x8b0000),
        ("darksalmon", 0xe9967a),
        ("darkseagreen", 0x8fbc8f),
        ("darkslateblue", 0x483d8b),
        ("darkslategray", 0x2f4f4f),
        ("darkslategrey", 0x2f4f4f),
        ("darkturquoise", 0x00ced1),
        ("darkviolet", 0x9400d3),
        ("deeppink", 0xff1493),
        ("deepskyblue", 0x00bfff),
        ("dimgray", 0x696969),
        ("dimgrey", 0x696969),
        ("dodgerblue", 0x1e90ff),
        ("firebrick", 0xb22222),
        ("floralwhite", 0xfffaf0),
        ("forestgreen", 0x228b22),
        ("fuchsia", 0xff00ff),
        ("gainsboro", 0xdcdcdc),
        ("ghostwhite", 0xf8f8ff),
        ("gold", 0xffd700),
        ("goldenrod", 0xdaa520),
        ("gray", 0x808080),
        ("green", 0x008000),
        ("greenyellow", 0xadff2f),
        ("grey", 0x808080),
        ("honeydew", 0xf0fff0),
        ("hotpink", 0xff69b4),
        ("indianred", 0xcd5c5c),
        ("indigo", 0x4b0082),
        ("ivory", 0xfffff0),
        ("khaki", 0xf0e68c),
        ("lavender", 0xe6e6fa),
        ("lavenderblush", 0xfff0f5),
        ("lawngreen", 0x7cfc00),
        ("lemonchiffon", 0xfffacd),
        ("lightblue", 0xadd8e6),
        ("lightcoral", 0xf08080),
        ("lightcyan", 0xe0ffff),
        ("lightgoldenrodyellow", 0xfafad2),
        ("lightgray", 0xd3d3d3),
        ("lightgreen", 0x90ee90),
        ("lightgrey", 0xd3d3d3),
        ("lightpink", 0xffb6c1),
        ("lightsalmon", 0xffa07a),
        ("lightseagreen", 0x20b2aa),
        ("lightskyblue", 0x87cefa),
        ("lightslategray", 0x778899),
        ("lightslategrey", 0x778899),
        ("lightsteelblue", 0xb0c4de),
        ("lightyellow", 0xffffe0),
        ("lime", 0x00ff00),
        ("limegreen", 0x32cd32),
        ("linen", 0xfaf0e6),
        ("magenta", 0xff00ff),
        ("maroon", 0x800000),
        ("mediumaquamarine", 0x66cdaa),
        ("mediumblue", 0x0000cd),
        ("mediumorchid", 0xba55d3),
        ("mediumpurple", 0x9370db),
        ("mediumseagreen", 0x3cb371),
        ("mediumslateblue", 0x7b68ee),
        ("mediumspringgreen", 0x00fa9a),
        ("mediumturquoise", 0x48d1cc),
        ("mediumvioletred", 0xc71585),
        ("midnightblue", 0x191970),
        ("mintcream", 0xf5fffa),
        ("mistyrose", 0xffe4e1),
        ("moccasin", 0xffe4b5),
        ("navajowhite", 0xffdead),
        ("navy", 0x000080),
        ("oldlace", 0xfdf5e6),
        ("olive", 0x808000),
        ("olivedrab", 0x6b8e23),
        ("orange", 0xffa500),
        ("orangered", 0xff4500),
        ("orchid", 0xda70d6),
        ("palegoldenrod", 0xeee8aa),
        ("palegreen", 0x98fb98),
        ("paleturquoise", 0xafeeee),
        ("palevioletred", 0xdb7093),
        ("papayawhip", 0xffefd5),
        ("peachpuff", 0xffdab9),
        ("peru", 0xcd853f),
        ("pink", 0xffc0cb),
        ("plum", 0xdda0dd),
        ("powderblue", 0xb0e0e6),
        ("purple", 0x800080),
        ("red", 0xff0000),
        ("rosybrown", 0xbc8f8f),
        ("royalblue", 0x4169e1),
        ("saddlebrown", 0x8b4513),
        ("salmon", 0xfa8072),
        ("sandybrown", 0xf4a460),
        ("seagreen", 0x2e8b57),
        ("seashell", 0xfff5ee),
        ("sienna", 0xa0522d),
        ("silver", 0xc0c0c0),
        ("skyblue", 0x87ceeb),
        ("slateblue", 0x6a5acd),
        ("slategray", 0x708090),
        ("slategrey", 0x708090),
        ("snow", 0xfffafa),
        ("springgreen", 0x00ff7f),
        ("steelblue", 0x4682b4),
        ("tan", 0xd2b48c),
        ("teal", 0x008080),
        ("thistle", 0xd8bfd8),
        ("tomato", 0xff6347),
        ("turquoise", 0x40e0d0),
        ("violet", 0xee82ee),
        ("wheat", 0xf5deb3),
        ("white", 0xffffff),
        ("whitesmoke", 0xf5f5f5),
        ("yellow", 0xffff00),
        ("yellowgreen", 0x9acd32),
    ];
    COLORS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// A font face list SpamAssassin accepts: words of letters, spaces and dashes, optionally
/// quoted, comma-separated.
fn good_font_face(face: &str) -> bool {
    let face = face.trim_start();
    let face = face.strip_suffix(';').unwrap_or(face);
    let mut rest = face.strip_prefix(['"', '\'', '.']).unwrap_or(face);
    let mut first = true;
    loop {
        if !first {
            let Some(r) = rest.strip_prefix(',') else { return false };
            rest = r.trim_start();
            rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
        }
        // A name: a letter or space, then letters, spaces, dashes, ending in a letter, one digit.
        let name_len = rest.find(|c: char| !(c.is_ascii_alphabetic() || c == ' ' || c == '-')).unwrap_or(rest.len());
        let name = &rest[..name_len];
        let Some(end) = name.rfind(|c: char| c.is_ascii_alphabetic()) else { return false };
        let name = &name[..=end];
        let valid_start = name.starts_with(|c: char| c.is_ascii_alphabetic() || (first && c == ' '));
        if name.len() < 2 || !valid_start {
            return false;
        }
        rest = &rest[name.len()..];
        rest = rest.strip_prefix(|c: char| c.is_ascii_digit()).unwrap_or(rest);
        rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
        first = false;
        if rest.is_empty() {
            return true;
        }
    }
}

/// An image dimension: digits, or digits and `%` (times `percent`); 200 when zero or unreadable.
fn dimension(value: &str, percent: f64) -> f64 {
    let (digits, pct) = match value.strip_suffix('%') {
        Some(d) => (d, true),
        None => (value, false),
    };
    let n = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse::<f64>().unwrap_or(0.0) } else { 0.0 };
    let n = if pct { n * percent } else { n };
    if n <= 0.0 { 200.0 } else { n }
}

fn leading_unsigned(value: &str) -> Option<f64> {
    let v = value.trim_start();
    let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() { None } else { digits.parse().ok() }
}

fn leading_signed(value: &str) -> Option<f64> {
    let v = value.trim_start();
    let (sign, rest) = match v.as_bytes().first() {
        Some(b'+') => (1.0, &v[1..]),
        Some(b'-') => (-1.0, &v[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() { None } else { digits.parse::<f64>().ok().map(|n| sign * n) }
}

fn is_namespace(tag: &str) -> bool {
    let Some((prefix, name)) = tag.split_once(':') else { return false };
    let prefix_ok = prefix == "o" || (prefix.len() == 3 && prefix.starts_with("st") && prefix.as_bytes()[2].is_ascii_digit());
    let name = name.strip_suffix('/').unwrap_or(name);
    prefix_ok && !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Not whitespace and not ASCII punctuation: a character that continues a word.
fn is_wordish(c: char) -> bool {
    !c.is_whitespace() && !c.is_ascii_punctuation()
}

/// One of HTML::Parser's events.
enum Event {
    Start(String, Vec<(String, String)>),
    End(String),
    Comment(String),
    Declaration(String),
    /// Markup without a handler (processing instructions).
    Nothing,
}

/// Splits the document into HTML::Parser's events and hands them to `r`.
fn tokenize(html: &str, r: &mut Reader) {
    let b = html.as_bytes();
    let mut i = 0;
    let mut text_start = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let Some((event, end)) = markup(html, i) else {
            // A `<` that starts no markup ends the text before it; it begins the next text.
            text(r, &html[text_start..i], true);
            text_start = i;
            i += 1;
            continue;
        };
        text(r, &html[text_start..i], true);
        i = end.max(i + 1);
        match event {
            Event::Start(name, attrs) => {
                r.tag(&name, &attrs, true);
                if LITERAL.contains(&name.as_str()) {
                    let close = if name == "plaintext" { None } else { find_close(html, i, &name) };
                    let content_end = close.unwrap_or(b.len());
                    text(r, &html[i..content_end], name == "title" || name == "textarea");
                    i = content_end;
                }
            }
            Event::End(name) => r.tag(&name, &[], false),
            Event::Comment(c) => r.comment(&c),
            Event::Declaration(d) => r.declaration(&d),
            Event::Nothing => {}
        }
        text_start = i;
    }
    text(r, &html[text_start..], true);
}

fn text(r: &mut Reader, raw: &str, decode: bool) {
    if raw.is_empty() {
        return;
    }
    if decode && raw.contains('&') {
        r.text(&decode_entities(raw));
    } else {
        r.text(raw);
    }
}

/// Where `</name` (any case) next starts at or after `from`.
fn find_close(html: &str, from: usize, name: &str) -> Option<usize> {
    let b = html.as_bytes();
    let n = name.len();
    let mut i = from;
    while let Some(p) = html.get(i..)?.find("</") {
        let at = i + p;
        let after = at + 2 + n;
        if after <= b.len()
            && b[at + 2..after].eq_ignore_ascii_case(name.as_bytes())
            && b.get(after).is_none_or(|c| c.is_ascii_whitespace() || *c == b'>')
        {
            return Some(at);
        }
        i = at + 2;
    }
    None
}

/// The markup starting at `i` (a `<`) and where it ends, or None when the `<` is text.
fn markup(html: &str, i: usize) -> Option<(Event, usize)> {
    let b = html.as_bytes();
    let rest = &html[i..];
    let to_gt = |from: usize| html[from..].find('>').map(|e| from + e + 1);
    match b.get(i + 1).copied()? {
        b'!' => {
            if rest.starts_with("<!--") {
                let end = html[i + 4..].find("-->").map_or(b.len(), |e| i + 4 + e + 3);
                return Some((Event::Comment(html[i..end].to_string()), end));
            }
            let end = to_gt(i).unwrap_or(b.len());
            let text = html[i..end].to_string();
            let is_decl = rest.len() >= 9 && rest.as_bytes()[..9].eq_ignore_ascii_case(b"<!doctype") && text.ends_with('>');
            Some((if is_decl { Event::Declaration(text) } else { Event::Comment(text) }, end))
        }
        b'?' => Some((Event::Nothing, to_gt(i).unwrap_or(b.len()))),
        b'/' => {
            let first = b.get(i + 2).copied();
            match (first, to_gt(i)) {
                (Some(c), Some(end)) if c.is_ascii_alphabetic() => {
                    let name_end = html[i + 2..end - 1].find(|c: char| c.is_ascii_whitespace()).map_or(end - 1, |e| i + 2 + e);
                    Some((Event::End(html[i + 2..name_end].to_ascii_lowercase()), end))
                }
                (Some(_), Some(end)) => Some((Event::Comment(html[i..end].to_string()), end)),
                (Some(_), None) => Some((Event::Comment(html[i..].to_string()), b.len())),
                (None, _) => None,
            }
        }
        c if c.is_ascii_alphabetic() => Some(start_tag(html, i)),
        _ => None,
    }
}

/// A start tag at `i`: its name, attributes (names lower-cased, values entity-decoded, a bare
/// name its own value) and end; markup left open at the end of the document is a comment.
fn start_tag(html: &str, i: usize) -> (Event, usize) {
    let b = html.as_bytes();
    let mut j = i + 1;
    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
        j += 1;
    }
    let name = html[i + 1..j].to_ascii_lowercase();
    let mut attrs: Vec<(String, String)> = Vec::new();
    loop {
        while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b'/') {
            j += 1;
        }
        if j >= b.len() {
            return (Event::Comment(html[i..].to_string()), b.len());
        }
        if b[j] == b'>' {
            return (Event::Start(name, attrs), j + 1);
        }
        let key_start = j;
        while j < b.len() && !b[j].is_ascii_whitespace() && !matches!(b[j], b'=' | b'>') {
            j += 1;
        }
        let key = html[key_start..j].to_ascii_lowercase();
        let mut k = j;
        while k < b.len() && b[k].is_ascii_whitespace() {
            k += 1;
        }
        let mut value = key.clone();
        if b.get(k) == Some(&b'=') {
            k += 1;
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            let (raw, next) = match b.get(k) {
                Some(&q @ (b'"' | b'\'')) => match html[k + 1..].find(q as char) {
                    Some(e) => (&html[k + 1..k + 1 + e], k + 2 + e),
                    None => return (Event::Comment(html[i..].to_string()), b.len()),
                },
                _ => {
                    let mut e = k;
                    while e < b.len() && !b[e].is_ascii_whitespace() && b[e] != b'>' {
                        e += 1;
                    }
                    (&html[k..e], e)
                }
            };
            value = decode_entities(raw);
            j = next;
        }
        if !key.is_empty() && !attrs.iter().any(|(k, _)| *k == key) && attrs.len() < 64 {
            attrs.push((key, value));
        }
        if j == key_start {
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tags_balance_and_extra_closings() {
        let f = HtmlFacts::analyze("<html><body><p>Hello</p></p></body></html><foo>x</foo>");
        assert_eq!(f.inside("body"), Some(0));
        assert_eq!(f.value("closed_extra_ratio"), Some(1.0 / 9.0));
        assert_eq!(f.value("bad_tag_ratio"), Some(2.0 / 9.0));
        assert!(f.test("html"));
        let unclosed = HtmlFacts::analyze("<html><head><title>t</title><body>x");
        assert_eq!(unclosed.inside("body"), Some(1));
        assert_eq!(unclosed.texts("title"), Some(&["t".to_string()][..]));
    }

    #[test]
    fn font_sizes_colours_and_faces() {
        let f = HtmlFacts::analyze("<font size=7 face=\"Arial, Helvetica\">BIG</font><font size=-2>small</font>");
        assert_eq!(f.value("max_size"), Some(7.0));
        assert_eq!(f.value("min_size"), Some(1.0));
        assert!(!f.test("font_face_bad"));
        assert!(HtmlFacts::analyze("<font face=\"x$y\">a</font>").test("font_face_bad"));
        let hidden = HtmlFacts::analyze("<body><font color=\"#fffffe\">hidden words</font></body>");
        assert!(hidden.test("font_low_contrast"));
        let css = HtmlFacts::analyze("<div style=\"color: white; background-color: #ffffff\">x</div>");
        assert!(css.test("font_low_contrast"));
        assert!(!HtmlFacts::analyze("<font color=red>x</font>").test("font_low_contrast"));
        assert!(HtmlFacts::analyze("<font color=\"zz\">x</font>").test("font_invalid_color"));
        // SpamAssassin's quirk: a bgcolor attribute sets no background.
        assert!(!HtmlFacts::analyze("<table bgcolor=black><tr><td><font color=black>x</font></td></tr></table>").test("font_low_contrast"));
    }

    #[test]
    fn rendered_text_is_kept_when_asked() {
        let (_, text) = HtmlFacts::analyze_with_text("<p>Hello <b>big</b> world</p><br>Next&amp;last");
        assert_eq!(text, "\n\nHello big world\n\n\nNext&last");
        assert_eq!(HtmlFacts::analyze_with_text("").1, "");
    }

    #[test]
    fn images_text_comments_and_obfuscation() {
        let f = HtmlFacts::analyze("<a href=x><img src=a.gif width=100 height=50></a> <!-- saved from url=(0022)x -->hi");
        assert_eq!(f.value("image_area"), Some(5000.0));
        assert_eq!(f.value("non_space_len"), Some(2.0));
        assert_eq!(f.texts("anchor"), Some(&["<img>\n".to_string()][..]));
        assert_eq!(f.texts("comment").map(|c| c.len()), Some(1));
        let o = HtmlFacts::analyze("<p>Vi<b>ag</b>ra</p>");
        assert_eq!(o.value("obfuscation_ratio"), Some(2.0 / 4.0), "two joins over four tags");
        assert_eq!(HtmlFacts::analyze("<p>plain</p>").value("obfuscation_ratio"), None);
    }

    #[test]
    fn parser_events_follow_html_parser() {
        let f = HtmlFacts::analyze("a < b<!foo><script>if (a<b) x();</script><title>A &amp; B</title><b");
        assert_eq!(f.texts("comment"), Some(&["<!foo>".to_string(), "<b".to_string()][..]));
        assert_eq!(f.texts("script"), Some(&["if (a<b) x();".to_string()][..]));
        assert_eq!(f.texts("title"), Some(&["A & B".to_string()][..]));
        let d = HtmlFacts::analyze("<!DOCTYPE html><html></html>");
        assert_eq!(d.value("bad_tag_ratio"), Some(0.0));
        assert!(HtmlFacts::analyze("<iframe src=\"http://x.test/\"></iframe>").iframe_src());
    }

    #[test]
    fn colours_are_read_as_spamassassin_reads_them() {
        assert_eq!(name_to_rgb("White"), "#ffffff");
        assert_eq!(name_to_rgb("#abc"), "#aabbcc");
        assert_eq!(name_to_rgb("#abcd"), "#aabbcc");
        assert_eq!(name_to_rgb("#1234567"), "#123456");
        assert_eq!(name_to_rgb("ffffff"), "invalid");
        assert_eq!(name_to_rgb("rgb(255, 0, 0)"), "#ff0000");
        assert_eq!(name_to_rgb("rgb(100%,0%,0%)"), "#ff0000");
        assert_eq!(name_to_rgb("bogus"), "invalid");
    }

    #[test]
    fn hostile_input_is_bounded() {
        for s in ["<", "<a", "<a href=\"", "</", "<!", "<!--", "<?", "<font size=99999999999999999999>", "&#xFFFFFFFF;"] {
            let _ = HtmlFacts::analyze(s);
        }
        let deep = "<font color=red>".repeat(10_000);
        let f = HtmlFacts::analyze(&deep);
        assert_eq!(f.inside("font"), Some(10_000));
    }
}
