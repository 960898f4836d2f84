//! Feature extraction: a raw message in, a set of hashed features out.
//!
//! The message is decoded before it is tokenized: mail-parser splits the MIME parts, undoes
//! base64 and quoted-printable, converts charsets to UTF-8 and decodes encoded-word header
//! fields; HTML is rendered to text by [`crate::ruleset::html`] and its tags, a few telling
//! attributes and its link hosts become tokens of their own. The features, each tagged with
//! its source so a word in the Subject differs from the same word in the body:
//!
//! - body words, lower-cased (the Subject's words count twice: as body words and under
//!   their own tag);
//! - header tokens: From display-name words, sender address and domain, Reply-To domain,
//!   Message-ID domain, Received hosts and IPs, X-Mailer/User-Agent, Content-Type and charset
//!   per part, the MIME structure, attachment types and extensions, URL hosts; the name of
//!   every top-level field, and the words of every other field prefixed by its name.
//!
//! Orthogonal sparse bigrams and character 4-grams were tried and lost with the chosen model
//! (bench/results/classifier.md), so they are not extracted.
//!
//! Features are 64-bit hashes under the model's seed ([`super::hash`]); no text leaves this
//! module. Work is bounded whatever the input: only the first [`MAX_PARSE`] bytes are parsed,
//! at most [`MAX_PARTS`] parts, [`MAX_DEPTH`] levels of attached messages, [`MAX_PART_TEXT`]
//! bytes of text per part and [`MAX_TEXT`] per message, [`MAX_HEADER_FIELDS`] header fields of
//! at most [`MAX_FIELD_TEXT`] bytes each, and [`MAX_FEATURES`] features. It never panics.

use mail_parser::{Address, HeaderValue, Host, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::hash::hash;

/// Bytes of the raw message handed to the MIME parser.
pub const MAX_PARSE: usize = 1024 * 1024;
/// MIME parts looked at (attached messages' parts included).
pub const MAX_PARTS: usize = 64;
/// Levels of message/rfc822 attachments followed.
pub const MAX_DEPTH: usize = 3;
/// Bytes of decoded text tokenized per part.
pub const MAX_PART_TEXT: usize = 64 * 1024;
/// Bytes of decoded text tokenized per message.
pub const MAX_TEXT: usize = 256 * 1024;
/// Header fields read per part.
pub const MAX_HEADER_FIELDS: usize = 200;
/// Bytes of a header field's decoded value tokenized.
pub const MAX_FIELD_TEXT: usize = 2048;
/// Features kept per message (later ones are dropped and [`Features::truncated`] is set).
pub const MAX_FEATURES: usize = 40_000;
/// Longest word (in bytes) that is a token; longer runs are one "long word" token by length.
const MAX_WORD: usize = 40;
/// Received fields read for host tokens.
const MAX_RECEIVED: usize = 8;
/// URL hosts per message.
const MAX_URLS: usize = 200;

// One tag per source of tokens (part of every feature's hash).
const BODY: u8 = 1;
const SUBJECT: u8 = 2;
const FROM_NAME: u8 = 4;
const FROM_ADDR: u8 = 5;
const FROM_DOMAIN: u8 = 6;
const REPLY_DOMAIN: u8 = 7;
const MSGID_DOMAIN: u8 = 8;
const RECEIVED: u8 = 9;
const MAILER: u8 = 10;
const CTYPE: u8 = 11;
const CHARSET: u8 = 12;
const MIME: u8 = 13;
const ATTACH: u8 = 14;
const URL_HOST: u8 = 15;
const URL_DOMAIN: u8 = 16;
const HTML_TAG: u8 = 17;
const HTML_ATTR: u8 = 18;
const HEADER_NAME: u8 = 19;
const HEADER_WORD: u8 = 20;
const LONG_WORD: u8 = 21;
const LIMIT: u8 = 22;
const ENCODING: u8 = 23;

/// A message's features: distinct 64-bit hashes, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    hashes: Vec<u64>,
    /// Some limit cut the extraction short (the message was huge or oddly built).
    pub truncated: bool,
}

impl Features {
    /// Features from hashes (deduplicated and sorted here); for tests and tools.
    pub fn from_hashes(mut hashes: Vec<u64>) -> Features {
        hashes.sort_unstable();
        hashes.dedup();
        Features { hashes, truncated: false }
    }

    /// The distinct feature hashes, ascending.
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The hashes as bytes (8 little-endian bytes each), how a lesson stores them.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.iter().flat_map(|h| h.to_le_bytes()).collect()
    }

    /// Features from [`Features::to_bytes`]'s bytes; a trailing partial hash is ignored.
    pub fn from_bytes(bytes: &[u8]) -> Features {
        Features::from_hashes(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
    }
}

/// Turns messages into [`Features`] under one seed (the model's).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    seed: u64,
}

impl Tokenizer {
    pub fn new(seed: u64) -> Tokenizer {
        Tokenizer { seed }
    }

    /// The features of a raw message (CRLF or LF line endings). Bounded, never panics.
    pub fn features(&self, raw: &[u8]) -> Features {
        let cut = raw.len().min(MAX_PARSE);
        let mut sink = Sink::new(self.seed);
        if cut < raw.len() {
            sink.limit(b"parse");
        }
        let raw = &raw[..cut];
        // An unclosed last part is read, as mail clients read it.
        let closed = crate::mime::close_multiparts(raw);
        let raw = closed.as_deref().unwrap_or(raw);
        match MessageParser::default().parse(raw) {
            Some(message) => sink.message(&message, 0),
            None => {
                sink.limit(b"unparsed");
                let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_PART_TEXT)]);
                sink.text(&text);
            }
        }
        sink.finish()
    }
}

/// Collects features while walking one message.
struct Sink {
    seed: u64,
    out: Vec<u64>,
    truncated: bool,
    parts: usize,
    text_total: usize,
    urls: usize,
    mime: Vec<u8>,
    word: String,
}

impl Sink {
    fn new(seed: u64) -> Sink {
        Sink {
            seed,
            out: Vec::with_capacity(4096),
            truncated: false,
            parts: 0,
            text_total: 0,
            urls: 0,
            mime: Vec::new(),
            word: String::new(),
        }
    }

    fn push(&mut self, feature: u64) {
        if self.out.len() < MAX_FEATURES {
            self.out.push(feature);
        } else {
            self.truncated = true;
        }
    }

    fn token(&mut self, tag: u8, bytes: &[u8]) {
        let h = hash(self.seed, tag, bytes);
        self.push(h);
    }

    fn limit(&mut self, what: &[u8]) {
        self.truncated = true;
        self.token(LIMIT, what);
    }

    fn finish(mut self) -> Features {
        if !self.mime.is_empty() {
            let mime = std::mem::take(&mut self.mime);
            self.token(MIME, &mime);
        }
        let truncated = self.truncated;
        let mut features = Features::from_hashes(self.out);
        features.truncated = truncated;
        features
    }

    fn message(&mut self, message: &Message<'_>, depth: usize) {
        self.headers(message.root_part(), true);
        if let Some(subject) = message.subject() {
            let subject = cut(subject, MAX_FIELD_TEXT);
            self.words(SUBJECT, subject);
            self.text(subject);
        }
        for (i, part) in message.parts.iter().enumerate() {
            if self.parts >= MAX_PARTS {
                self.limit(b"parts");
                return;
            }
            self.parts += 1;
            if i > 0 {
                self.headers(part, false);
            }
            match &part.body {
                PartType::Text(text) => {
                    let is_text = i == 0 || part.content_type().is_none_or(|ct| ct.c_type.eq_ignore_ascii_case("text"));
                    if is_text {
                        self.text(text);
                    } else {
                        self.attachment(part);
                    }
                }
                PartType::Html(html) => self.html(html),
                PartType::Binary(_) | PartType::InlineBinary(_) => self.attachment(part),
                PartType::Message(inner) => {
                    if depth + 1 > MAX_DEPTH {
                        self.limit(b"depth");
                    } else {
                        self.message(inner, depth + 1);
                    }
                }
                PartType::Multipart(_) => {}
            }
        }
    }

    /// Tokens of one part's header fields; the top-level ones (`root`) get the full treatment.
    fn headers(&mut self, part: &MessagePart<'_>, root: bool) {
        let mut received = 0;
        for (n, header) in part.headers.iter().enumerate() {
            if n >= MAX_HEADER_FIELDS {
                self.limit(b"fields");
                break;
            }
            let name = header.name.as_str().to_ascii_lowercase();
            match (&header.value, name.as_str()) {
                (HeaderValue::ContentType(ct), "content-type") => {
                    let mut t = ct.c_type.to_ascii_lowercase();
                    if let Some(sub) = &ct.c_subtype {
                        t.push('/');
                        t.push_str(&sub.to_ascii_lowercase());
                    }
                    self.token(CTYPE, t.as_bytes());
                    if self.mime.len() < 512 {
                        self.mime.extend_from_slice(t.as_bytes());
                        self.mime.push(b';');
                    }
                    if let Some(charset) = ct.attribute("charset") {
                        self.token(CHARSET, charset.to_ascii_lowercase().as_bytes());
                    }
                    continue;
                }
                (HeaderValue::Text(t), "content-transfer-encoding") => {
                    self.token(ENCODING, t.trim().to_ascii_lowercase().as_bytes());
                    continue;
                }
                _ => {}
            }
            if !root {
                continue;
            }
            self.token(HEADER_NAME, name.as_bytes());
            match (&header.value, name.as_str()) {
                (HeaderValue::Address(address), "from") => {
                    for addr in address_iter(address).take(4) {
                        if let Some(display) = &addr.name {
                            self.words(FROM_NAME, cut(display, MAX_FIELD_TEXT));
                        }
                        if let Some(a) = &addr.address {
                            let a = a.to_ascii_lowercase();
                            self.token(FROM_ADDR, a.as_bytes());
                            if let Some((_, domain)) = a.rsplit_once('@') {
                                self.token(FROM_DOMAIN, domain.as_bytes());
                            }
                        }
                    }
                }
                (HeaderValue::Address(address), "reply-to" | "return-path" | "sender") => {
                    for addr in address_iter(address).take(4) {
                        if let Some((_, domain)) = addr.address.as_deref().and_then(|a| a.rsplit_once('@')) {
                            self.token(REPLY_DOMAIN, domain.to_ascii_lowercase().as_bytes());
                        }
                    }
                }
                (HeaderValue::Text(id), "message-id") => {
                    if let Some((_, domain)) = id.rsplit_once('@') {
                        self.token(MSGID_DOMAIN, domain.trim_end_matches('>').to_ascii_lowercase().as_bytes());
                    }
                }
                (HeaderValue::Received(r), "received") => {
                    received += 1;
                    if received <= MAX_RECEIVED {
                        for host in [&r.from, &r.by, &r.helo].into_iter().flatten() {
                            match host {
                                Host::Name(n) => self.token(RECEIVED, n.to_ascii_lowercase().as_bytes()),
                                Host::IpAddr(ip) => self.token(RECEIVED, ip.to_string().as_bytes()),
                            }
                        }
                        if let Some(ip) = r.from_ip {
                            self.token(RECEIVED, ip.to_string().as_bytes());
                        }
                    }
                    continue;
                }
                (HeaderValue::Text(t), "x-mailer" | "user-agent") => {
                    let t = cut(t, MAX_FIELD_TEXT);
                    self.token(MAILER, t.trim().as_bytes());
                    self.words(MAILER, t);
                }
                _ => {}
            }
            if name != "subject" {
                let prefix = hash(self.seed, HEADER_WORD, name.as_bytes());
                let mut text = String::new();
                value_text(&header.value, &mut text);
                self.words_with(prefix, cut(&text, MAX_FIELD_TEXT));
            }
        }
    }

    fn attachment(&mut self, part: &MessagePart<'_>) {
        let mut kind = part.content_type().map(|ct| ct.c_type.to_ascii_lowercase()).unwrap_or_default();
        if let Some(sub) = part.content_type().and_then(|ct| ct.c_subtype.as_deref()) {
            kind.push('/');
            kind.push_str(&sub.to_ascii_lowercase());
        }
        self.token(ATTACH, kind.as_bytes());
        if let Some(name) = part.attachment_name()
            && let Some((_, ext)) = name.rsplit_once('.')
        {
            let ext = cut(ext, 16).to_ascii_lowercase();
            self.token(ATTACH, format!(".{ext}").as_bytes());
        }
    }

    /// Decoded body text: words and URL hosts.
    fn text(&mut self, text: &str) {
        if self.text_total >= MAX_TEXT {
            self.limit(b"text");
            return;
        }
        let room = (MAX_TEXT - self.text_total).min(MAX_PART_TEXT);
        let text = cut(text, room);
        if text.len() == room {
            self.truncated = true;
        }
        self.text_total += text.len();
        self.urls_in(text);
        self.words(BODY, text);
    }

    fn html(&mut self, html: &str) {
        let html = cut(html, MAX_PART_TEXT);
        self.tags(html);
        let rendered = crate::ruleset::html::render(html);
        for link in rendered.links.iter().take(MAX_URLS) {
            if let Some(host) = url_host(link) {
                self.url(host);
            }
        }
        self.text(&rendered.text);
    }

    /// Tag names, and tag-attribute pairs (with the value for a few presentational attributes).
    fn tags(&mut self, html: &str) {
        let b = html.as_bytes();
        let mut i = 0;
        let mut count = 0;
        while let Some(at) = b[i..].iter().position(|c| *c == b'<') {
            i += at + 1;
            count += 1;
            if count > 2000 {
                self.limit(b"tags");
                return;
            }
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'/' || b[i] == b'!') {
                i += 1;
            }
            let name = html[start..i].to_ascii_lowercase();
            if name.is_empty() || name.len() > 16 || name.starts_with("!--") {
                continue;
            }
            let tag_hash = hash(self.seed, HTML_TAG, name.as_bytes());
            self.push(tag_hash);
            // Attributes up to the closing '>'.
            let end = b[i..].iter().position(|c| *c == b'>').map_or(b.len(), |e| i + e);
            let attrs = &html[i..end];
            i = end;
            for (k, v) in attributes(attrs).take(16) {
                let k = k.to_ascii_lowercase();
                let attr = hash(tag_hash, HTML_ATTR, k.as_bytes());
                self.push(attr);
                if matches!(k.as_str(), "color" | "bgcolor" | "size" | "face" | "style" | "width" | "height" | "border") {
                    let v = v.to_ascii_lowercase();
                    self.push(hash(attr, HTML_ATTR, cut(&v, 64).as_bytes()));
                }
            }
        }
    }

    fn urls_in(&mut self, text: &str) {
        let mut rest = text;
        while self.urls < MAX_URLS {
            let Some(at) = find_url_start(rest) else { return };
            let tail = &rest[at..];
            if let Some(host) = url_host(tail) {
                self.url(host);
            }
            rest = &tail[4.min(tail.len())..];
        }
    }

    fn url(&mut self, host: &str) {
        if self.urls >= MAX_URLS {
            return;
        }
        self.urls += 1;
        let host = host.to_ascii_lowercase();
        self.token(URL_HOST, host.as_bytes());
        let labels: Vec<&str> = host.rsplitn(3, '.').collect();
        if labels.len() >= 2 {
            self.token(URL_DOMAIN, format!("{}.{}", labels[1], labels[0]).as_bytes());
        }
    }

    fn words(&mut self, tag: u8, text: &str) {
        let prefix = hash(self.seed, tag, b"");
        self.words_with(prefix, text);
    }

    /// Word tokens of `text` under `prefix`.
    fn words_with(&mut self, prefix: u64, text: &str) {
        let mut word = std::mem::take(&mut self.word);
        for raw in text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '\'' | '-' | '.' | '$' | '!' | '_' | '%' | '@'))) {
            let w = raw.trim_matches(|c: char| matches!(c, '\'' | '-' | '.' | '_'));
            if w.is_empty() || (w.len() == 1 && w.as_bytes()[0].is_ascii_alphabetic()) {
                continue;
            }
            let h = if w.len() > MAX_WORD {
                hash(prefix, LONG_WORD, &[(w.len() / 10).min(255) as u8])
            } else {
                word.clear();
                word.extend(w.chars().flat_map(char::to_lowercase));
                hash(prefix, 0, word.as_bytes())
            };
            self.push(h);
            if self.out.len() >= MAX_FEATURES {
                self.truncated = true;
                break;
            }
        }
        self.word = word;
    }
}

fn address_iter<'a, 'x>(address: &'a Address<'x>) -> Box<dyn Iterator<Item = &'a mail_parser::Addr<'x>> + 'a> {
    match address {
        Address::List(list) => Box::new(list.iter()),
        Address::Group(groups) => Box::new(groups.iter().flat_map(|g| g.addresses.iter())),
    }
}

/// The words of a header value, decoded.
fn value_text(value: &HeaderValue<'_>, out: &mut String) {
    match value {
        HeaderValue::Text(t) => out.push_str(t),
        HeaderValue::TextList(list) => {
            for t in list {
                out.push_str(t);
                out.push(' ');
            }
        }
        HeaderValue::Address(address) => {
            for addr in address_iter(address).take(32) {
                for s in [&addr.name, &addr.address].into_iter().flatten() {
                    out.push_str(s);
                    out.push(' ');
                }
            }
        }
        HeaderValue::ContentType(ct) => {
            out.push_str(&ct.c_type);
            if let Some(s) = &ct.c_subtype {
                out.push('/');
                out.push_str(s);
            }
        }
        HeaderValue::Received(_) | HeaderValue::DateTime(_) | HeaderValue::Empty => {}
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

fn find_url_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 4 <= b.len() {
        let at = b[i..].iter().position(|c| matches!(c, b'h' | b'H' | b'w' | b'W'))? + i;
        let rest = &b[at..];
        let starts = |p: &[u8]| rest.len() >= p.len() && rest[..p.len()].eq_ignore_ascii_case(p);
        if starts(b"http://") || starts(b"https://") || (starts(b"www.") && (at == 0 || !b[at - 1].is_ascii_alphanumeric())) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// The host of an absolute http(s) URL or a `www.` reference, if it looks like one.
fn url_host(url: &str) -> Option<&str> {
    let url = url.trim_start();
    let lower_starts = |p: &str| url.len() >= p.len() && url.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    let rest = if lower_starts("http://") {
        &url[7..]
    } else if lower_starts("https://") {
        &url[8..]
    } else if lower_starts("www.") {
        url
    } else {
        return None;
    };
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '@' || c == '_')).unwrap_or(rest.len());
    let host = &rest[..end];
    let host = host.rsplit('@').next().unwrap_or(host).trim_end_matches('.');
    (host.contains('.') && host.len() <= 253).then_some(host)
}

/// `name=value` pairs of a tag's attribute text (quotes removed); bare names have empty values.
fn attributes(s: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = s;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        let name_end = rest.find(|c: char| c.is_whitespace() || matches!(c, '=' | '/' | '"' | '\'')).unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        if name.is_empty() {
            // A stray '=' or quote: skip one character.
            let skip = rest.chars().next().map_or(0, char::len_utf8);
            rest = &rest[skip..];
            return Some(("", ""));
        }
        let mut value = "";
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') {
                let body = &after[1..];
                let end = body.find(q).unwrap_or(body.len());
                value = &body[..end];
                rest = &body[(end + 1).min(body.len())..];
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                value = &after[..end];
                rest = &after[end..];
            }
        }
        Some((name, value))
    })
    .filter(|(name, _)| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(raw: &[u8]) -> Features {
        Tokenizer::new(7).features(raw)
    }

    #[test]
    fn a_plain_message_has_words_and_header_tokens() {
        let f =
            features(b"From: Bob <bob@example.com>\r\nSubject: hello there\r\n\r\nBuy cheap pills at http://pills.example.net/x now\r\n");
        assert!(f.len() > 15, "{}", f.len());
        assert!(!f.truncated);
        assert!(f.hashes().windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn features_depend_on_the_seed_and_the_text() {
        let raw = b"Subject: x\r\n\r\nsome words here\r\n";
        let a = Tokenizer::new(1).features(raw);
        let b = Tokenizer::new(2).features(raw);
        assert!(a.hashes().iter().all(|h| !b.hashes().contains(h)));
        assert_eq!(a, Tokenizer::new(1).features(raw));
    }

    #[test]
    fn base64_and_quoted_printable_and_charsets_are_decoded_before_tokenizing() {
        let plain = features(b"Subject: a\r\n\r\nbonjour l\xc3\xa9gume\r\n");
        let b64 = features(
            b"Subject: a\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nYm9uam91ciBsw6lndW1l\r\n",
        );
        let latin1 = features(
            b"Subject: a\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbonjour l=E9gume\r\n",
        );
        let word = hash(7, BODY, b"");
        let legume = hash(word, 0, "légume".as_bytes());
        for f in [&plain, &b64, &latin1] {
            assert!(f.hashes().contains(&legume));
        }
    }

    #[test]
    fn html_is_rendered_and_its_tags_and_links_are_tokens() {
        let f = features(
            b"Content-Type: text/html\r\n\r\n<html><body><font color=\"#ff0000\">Win</font> <a href=\"http://win.example.org/a\">here</a></body></html>",
        );
        let font = hash(7, HTML_TAG, b"font");
        assert!(f.hashes().contains(&font));
        assert!(f.hashes().contains(&hash(7, URL_HOST, b"win.example.org")));
        assert!(f.hashes().contains(&hash(hash(7, BODY, b""), 0, b"win")));
    }

    #[test]
    fn encoded_word_headers_are_decoded() {
        let f = features(b"From: =?utf-8?B?Sm9zw6k=?= <j@example.com>\r\nSubject: =?iso-8859-1?Q?caf=E9?=\r\n\r\nx\r\n");
        assert!(f.hashes().contains(&hash(hash(7, FROM_NAME, b""), 0, "josé".as_bytes())));
        assert!(f.hashes().contains(&hash(hash(7, SUBJECT, b""), 0, "café".as_bytes())));
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut m = b"Content-Type: text/plain\r\n\r\ninnermost\r\n".to_vec();
        for d in 0..depth {
            let b = format!("b{d}");
            let mut outer = format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: message/rfc822\r\n\r\n")
                .into_bytes();
            outer.extend_from_slice(&m);
            outer.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
            m = outer;
        }
        m
    }

    #[test]
    fn hostile_messages_cost_bounded_work_and_never_panic() {
        // Deep nesting of attached messages and of multiparts.
        let f = features(&nested(200));
        assert!(f.len() <= MAX_FEATURES);
        let mut multi = Vec::new();
        for d in 0..500 {
            multi.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=\"m{d}\"\r\n\r\n--m{d}\r\n").as_bytes());
        }
        multi.extend_from_slice(b"text\r\n");
        let _ = features(&multi);
        // Bad base64, an unknown charset.
        let _ =
            features(b"Content-Type: text/plain; charset=x-klingon\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!*** not base64 ===\r\n");
        // A 10 MB single line, binary, invalid UTF-8, a huge header.
        let mut line = b"Subject: x\r\n\r\n".to_vec();
        line.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
        let f = features(&line);
        assert!(f.truncated);
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let _ = features(&binary);
        let _ = features(b"Subject: \xff\xfe\xc3(\r\n\r\n\xf0\x28\x8c\x28 \xc3\xa9\r\n");
        let mut header = b"X-Long: ".to_vec();
        header.extend(std::iter::repeat_n(b"word ".as_slice(), 400_000).flatten());
        header.extend_from_slice(b"\r\n\r\nbody\r\n");
        assert!(features(&header).len() <= MAX_FEATURES);
        let words: Vec<u8> = std::iter::repeat_n(b"w1 w2 w3 ".as_slice(), 200_000).flatten().copied().collect();
        assert!(features(&words).len() <= MAX_FEATURES);
        let _ = features(b"");
        let _ = features(b"<<<<<<<<<<<a =\"");
    }

    #[test]
    fn url_hosts_and_attributes_parse_odd_input() {
        assert_eq!(url_host("http://user@Host.example.com:80/x"), Some("Host.example.com"));
        assert_eq!(url_host("www.example.com."), Some("www.example.com"));
        assert_eq!(url_host("http://localhost/"), None);
        let a: Vec<_> = attributes(r#"a="1" b='2' c=3 d = "x y" ="" e"#).collect();
        assert_eq!(a, [("a", "1"), ("b", "2"), ("c", "3"), ("d", "x y"), ("e", "")]);
        assert_eq!(cut("é", 1), "");
    }
}
