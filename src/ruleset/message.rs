//! The message as rules see it, built once per message from raw bytes with mail-parser.
//!
//! - headers: top-level fields in order, each raw (as written, folding kept) and decoded
//!   (unfolded, RFC 2047 words decoded); several occurrences are joined with `\n` when read.
//! - body: SpamAssassin's rendered body — the Subject as the first line, then each text part
//!   (HTML rendered to text) split into paragraphs, each paragraph one whitespace-collapsed line,
//!   lines longer than [`MAX_LINE`] split.
//! - rawbody: decoded text parts, HTML kept, in chunks of at most [`RAW_CHUNK`] bytes.
//! - uri: URIs from text and HTML links, as found plus normalized.
//! - full: the raw message.
//!
//! Work is bounded: at most [`MAX_PARTS`] MIME parts (mail-parser itself limits nesting of
//! attached messages), [`BODY_PART_SCAN`] bytes of text per part for body rules and
//! [`RAWBODY_PART_SCAN`] for rawbody rules (SpamAssassin 4's defaults), [`MAX_BODY_TOTAL`] of
//! body text per message, [`MAX_FULL`] bytes for full rules, and only the first [`MAX_PARSE`]
//! bytes of a message are parsed at all. [`ParsedMessage::parse`] never
//! panics: input that mail-parser cannot parse gives a message with only what could be read.

use std::borrow::Cow;
use std::sync::OnceLock;

use mail_parser::parsers::MessageStream;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::header::{self, HeaderKey, Modifier};
use super::{html, uri};

/// Longest body line (SpamAssassin splits longer paragraphs too).
pub const MAX_LINE: usize = 2048;
/// Bytes of decoded text per part used for body rules.
pub const BODY_PART_SCAN: usize = 50_000;
/// Bytes of decoded text per part used for rawbody rules.
pub const RAWBODY_PART_SCAN: usize = 500_000;
/// Total rendered body text per message.
pub const MAX_BODY_TOTAL: usize = 512 * 1024;
/// Rawbody chunk size.
pub const RAW_CHUNK: usize = 4096;
/// MIME parts looked at.
pub const MAX_PARTS: usize = 256;
/// Bytes of the raw message given to full rules.
pub const MAX_FULL: usize = 2 * 1024 * 1024;
/// MIME part header fields kept for mimeheader rules.
pub const MAX_MIME_FIELDS: usize = 2000;
/// Bytes handed to the MIME parser at most: like SpamAssassin (and spamc's size limit), only
/// the beginning of a huge message is scanned. Parts cut off at this point are scanned as far
/// as they go; headers are always read in full (they come first).
pub const MAX_PARSE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Field {
    /// Lower-cased for lookups.
    name: String,
    /// As written (for `ALL`).
    original: String,
    raw: String,
    decoded: String,
}

/// A message prepared for rule evaluation. Immutable once built; `Send + Sync`.
#[derive(Debug)]
pub struct ParsedMessage {
    fields: Vec<Field>,
    /// Header fields of every MIME part (the top level included), for mimeheader rules.
    mime_fields: Vec<Field>,
    header_block: String,
    envelope_from: Option<String>,
    filter_facts: super::filtereval::FilterFacts,
    body: Vec<String>,
    subject_lines: usize,
    rawbody: Vec<String>,
    uris: Vec<String>,
    full: Vec<u8>,
    /// The decoded text of each text/html part (for the HTMLEval `eval:` functions).
    html_parts: Vec<String>,
    /// The first text/plain part: its chunks in `rawbody` (BodyEval's `check_stock_info`).
    first_plain: Option<std::ops::Range<usize>>,
    /// MIME structure facts (for the MIMEEval `eval:` functions), gathered by the walk.
    mime: super::mimeeval::MimeFacts,
    /// Facts for callers (and tests): parts seen and whether limits cut anything.
    pub stats: MessageStats,
    all_decoded: OnceLock<String>,
    /// The Date header's distance from the closest Received time, seconds, computed once for
    /// all the `check_for_shifted_date` rules (see `evalfn`).
    pub(crate) date_shift: OnceLock<i64>,
    /// How the connection the message came on bears on trust (see `received`).
    connection: super::received::ConnectionTrust,
    /// The Received trail split into relays, parsed on first use.
    relays: OnceLock<super::received::Relays>,
}

/// What building the view saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MessageStats {
    pub parts: usize,
    pub text_parts: usize,
    pub html_parts: usize,
    pub attachments: usize,
    /// Parts declared `text/html`, and parts declared any other `text/*` (no Content-Type is
    /// text/plain), counted over the whole tree as SpamAssassin's MIMEEval counts them.
    pub declared_html: usize,
    pub declared_other_text: usize,
    pub truncated: bool,
}

impl ParsedMessage {
    /// Builds the view from raw message bytes (CRLF or LF). Never panics.
    pub fn parse(raw: &[u8]) -> ParsedMessage {
        let raw = &raw[..raw.len().min(MAX_PARSE)];
        let mut pm = ParsedMessage {
            fields: Vec::new(),
            mime_fields: Vec::new(),
            header_block: String::new(),
            envelope_from: None,
            filter_facts: Default::default(),
            body: Vec::new(),
            subject_lines: 0,
            rawbody: Vec::new(),
            uris: Vec::new(),
            full: raw[..raw.len().min(MAX_FULL)].to_vec(),
            html_parts: Vec::new(),
            first_plain: None,
            mime: Default::default(),
            stats: MessageStats::default(),
            all_decoded: OnceLock::new(),
            date_shift: OnceLock::new(),
            connection: Default::default(),
            relays: OnceLock::new(),
        };
        pm.read_headers(raw);
        if let Some(subject) = pm.header_value("subject", Modifier::Decoded) {
            pm.body.push(collapse(&subject));
            pm.subject_lines = 1;
        }
        // An unclosed last part is read, as mail clients read it.
        let closed = crate::mime::close_multiparts(raw);
        if let Some(msg) = MessageParser::default().parse(closed.as_deref().unwrap_or(raw)) {
            let mut body_total = 0;
            pm.walk(&msg, &mut body_total);
        }
        pm.finish_uris();
        pm
    }

    /// Sets the SMTP envelope sender (`MAIL FROM`), read by `EnvelopeFrom` header rules.
    pub fn with_envelope_from(mut self, from: impl Into<String>) -> ParsedMessage {
        self.envelope_from = Some(from.into());
        self
    }

    /// Says which client the message came from (`None`: a file), for the trust boundary of
    /// the Received trail (see [`super::received::ConnectionTrust`]).
    pub fn with_client(mut self, ip: Option<std::net::IpAddr>) -> ParsedMessage {
        self.connection = ip.map_or(Default::default(), super::received::ConnectionTrust::of);
        self.relays = OnceLock::new();
        self
    }

    /// The Received trail as SpamAssassin reads it, parsed once, on first use.
    pub fn relays(&self) -> &super::received::Relays {
        self.relays.get_or_init(|| {
            let fields = self.fields.iter().filter(|f| f.name == "received").map(|f| f.raw.as_str());
            super::received::Relays::infer(fields, self.connection)
        })
    }

    /// Gives what moat's other filters found about the message (SPF, DKIM), read by the
    /// stock rules whose `eval:` functions ask the network (see `filtereval`).
    pub fn with_filter_facts(mut self, facts: super::filtereval::FilterFacts) -> ParsedMessage {
        self.filter_facts = facts;
        self
    }

    /// What the caller said moat's other filters found (nothing by default).
    pub fn filter_facts(&self) -> &super::filtereval::FilterFacts {
        &self.filter_facts
    }

    /// The SMTP envelope sender, when the caller set one.
    pub fn smtp_envelope_from(&self) -> Option<&str> {
        self.envelope_from.as_deref()
    }

    /// Top-level header fields, from the raw bytes (so raw values are exact even when the MIME
    /// parser would reinterpret them) by the one header-field parser, [`crate::headers::fields`].
    fn read_headers(&mut self, raw: &[u8]) {
        let end = crate::headers::header_section_end(raw);
        self.header_block = String::from_utf8_lossy(&raw[..end]).into_owned();
        for field in crate::headers::fields(raw) {
            let name = String::from_utf8_lossy(field.name).into_owned();
            self.push_field(name, String::from_utf8_lossy(field.value).into_owned());
        }
    }

    fn push_field(&mut self, name: String, value: String) {
        if self.fields.len() >= 1000 {
            self.stats.truncated = true;
            return;
        }
        let raw = value.trim_start_matches([' ', '\t']).trim_end_matches(['\r', '\n']).to_string();
        let decoded = decode_header(&unfold_decoded(&raw));
        self.fields.push(Field { name: name.to_ascii_lowercase(), original: name, raw, decoded });
    }

    fn walk(&mut self, msg: &Message<'_>, body_total: &mut usize) {
        for (i, part) in msg.parts.iter().enumerate() {
            if self.stats.parts >= MAX_PARTS {
                self.stats.truncated = true;
                return;
            }
            self.stats.parts += 1;
            self.part_headers(msg, part);
            self.count_declared_type(part);
            self.mime.add_part(msg, part);
            match &part.body {
                PartType::Text(text) => {
                    let is_text = i == 0 || part.content_type().is_none_or(|ct| ct.c_type.eq_ignore_ascii_case("text"));
                    if is_text {
                        self.stats.text_parts += 1;
                        let chunks = self.rawbody.len();
                        self.add_text(text, false, body_total);
                        if self.first_plain.is_none() && is_plain(part) {
                            self.first_plain = Some(chunks..self.rawbody.len());
                        }
                    }
                }
                PartType::Html(text) => {
                    self.stats.html_parts += 1;
                    self.add_text(text, true, body_total);
                }
                PartType::Message(inner) => self.walk(inner, body_total),
                PartType::Binary(_) | PartType::InlineBinary(_) => self.stats.attachments += 1,
                PartType::Multipart(_) => {}
            }
        }
    }

    /// The decoded text of the first text/plain part (at most [`RAWBODY_PART_SCAN`] bytes).
    pub fn first_plain_text(&self) -> Option<String> {
        self.first_plain.clone().and_then(|r| self.rawbody.get(r)).map(|chunks| chunks.concat())
    }

    fn count_declared_type(&mut self, part: &mail_parser::MessagePart<'_>) {
        let (kind, sub) = declared_type(part);
        if !kind.eq_ignore_ascii_case("text") {
            return;
        }
        if sub.is_some_and(|s| s.eq_ignore_ascii_case("html")) {
            self.stats.declared_html += 1;
        } else {
            self.stats.declared_other_text += 1;
        }
    }

    fn part_headers(&mut self, msg: &Message<'_>, part: &mail_parser::MessagePart<'_>) {
        for h in &part.headers {
            if self.mime_fields.len() >= MAX_MIME_FIELDS {
                self.stats.truncated = true;
                return;
            }
            let range = h.offset_start as usize..h.offset_end as usize;
            let Some(bytes) = msg.raw_message.get(range) else { continue };
            let value = String::from_utf8_lossy(bytes);
            let raw = value.trim_start_matches([' ', '\t']).trim_end_matches(['\r', '\n']).to_string();
            let decoded = decode_header(&unfold_decoded(&raw));
            let original = h.name.as_str().to_string();
            self.mime_fields.push(Field { name: original.to_ascii_lowercase(), original, raw, decoded });
        }
    }

    /// Values of a header in every MIME part, for mimeheader rules.
    pub fn mime_values(&self, key: &HeaderKey) -> Vec<String> {
        self.mime_fields
            .iter()
            .filter(|f| f.name == key.name)
            .map(|f| {
                let v = if key.modifier == Modifier::Raw { f.raw.clone() } else { f.decoded.clone() };
                apply(v, key.modifier)
            })
            .collect()
    }

    fn add_text(&mut self, text: &str, is_html: bool, body_total: &mut usize) {
        let raw_part = cut(text, RAWBODY_PART_SCAN);
        if raw_part.len() < text.len() {
            self.stats.truncated = true;
        }
        chunk_into(raw_part, &mut self.rawbody);
        if is_html && !raw_part.is_empty() {
            self.html_parts.push(raw_part.to_string());
        }
        let scan = cut(text, BODY_PART_SCAN);
        let rendered: Cow<'_, str> = if is_html {
            let r = html::render(scan);
            for link in &r.links {
                uri::from_link(link, &mut self.uris);
            }
            Cow::Owned(r.text)
        } else {
            Cow::Borrowed(scan)
        };
        uri::from_text(&rendered, &mut self.uris);
        for line in paragraphs(&rendered) {
            if *body_total >= MAX_BODY_TOTAL {
                self.stats.truncated = true;
                return;
            }
            *body_total += line.len();
            self.body.push(line);
        }
    }

    fn finish_uris(&mut self) {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(self.uris.len() * 2);
        for u in std::mem::take(&mut self.uris) {
            let n = uri::normalize(&u);
            for v in [u, n] {
                if out.len() < uri::MAX_URIS && seen.insert(v.clone()) {
                    out.push(v);
                }
            }
        }
        self.uris = out;
    }

    /// The value a header rule reads, or None if no such header exists.
    pub fn header_value(&self, name: &str, modifier: Modifier) -> Option<String> {
        match name {
            "ALL" => {
                return Some(match modifier {
                    Modifier::Raw => self.header_block.clone(),
                    _ => self.all_decoded().to_string(),
                });
            }
            "ToCc" => {
                let to = self.header_value("to", modifier);
                let cc = self.header_value("cc", modifier);
                return match (to, cc) {
                    (Some(t), Some(c)) => Some(format!("{t}\n{c}")),
                    (t, c) => t.or(c),
                };
            }
            "MESSAGEID" => {
                let ids: Vec<String> =
                    ["message-id", "resent-message-id", "x-message-id"].iter().filter_map(|n| self.header_value(n, modifier)).collect();
                return if ids.is_empty() { None } else { Some(ids.join("\n")) };
            }
            "EnvelopeFrom" => {
                let v = self.envelope_from.clone().or_else(|| {
                    ["x-envelope-from", "envelope-sender", "return-path"].iter().find_map(|n| self.header_value(n, Modifier::Decoded))
                })?;
                return Some(apply(v, modifier));
            }
            _ => {}
        }
        if let Some(which) = name.strip_prefix("X-Spam-Relays-") {
            return self.relays().pseudo_header(which);
        }
        let mut values = self.fields.iter().filter(|f| f.name == name);
        let first = values.next()?;
        let pick = |f: &Field| match modifier {
            Modifier::Raw => f.raw.clone(),
            _ => f.decoded.clone(),
        };
        let mut v = pick(first);
        for f in values {
            v.push('\n');
            v.push_str(&pick(f));
        }
        Some(apply(v, modifier))
    }

    /// True if the header field occurs at all.
    pub fn has_header(&self, name: &str) -> bool {
        if header::PSEUDO.contains(&name) {
            return self.header_value(name, Modifier::Decoded).is_some();
        }
        self.fields.iter().any(|f| f.name == name)
    }

    fn all_decoded(&self) -> &str {
        self.all_decoded.get_or_init(|| {
            let mut s = String::new();
            for f in &self.fields {
                s.push_str(&f.original);
                s.push_str(": ");
                s.push_str(&unfold(&f.raw));
                s.push('\n');
            }
            s
        })
    }

    /// Body lines (subject first unless `nosubject`).
    pub fn body_lines(&self, nosubject: bool) -> &[String] {
        if nosubject { &self.body[self.subject_lines.min(self.body.len())..] } else { &self.body }
    }

    pub fn rawbody_chunks(&self) -> &[String] {
        &self.rawbody
    }

    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    pub fn full(&self) -> &[u8] {
        &self.full
    }

    /// What the walk over the MIME parts saw, for the MIMEEval functions.
    pub fn mime_facts(&self) -> &super::mimeeval::MimeFacts {
        &self.mime
    }

    /// The decoded text of each text/html part, in order.
    pub fn html_parts(&self) -> &[String] {
        &self.html_parts
    }

    /// Header key lookup used by the evaluator.
    pub(crate) fn value_for(&self, key: &HeaderKey) -> Option<String> {
        self.header_value(&key.name, key.modifier)
    }
}

fn apply(v: String, modifier: Modifier) -> String {
    match modifier {
        Modifier::Addr => header::first_addr(&v),
        Modifier::Name => header::first_name(&v),
        _ => v,
    }
}

/// Joins folded lines as SpamAssassin does for decoded values: a line end and the blanks after
/// it become one space (`Lotus\n    Domino` reads `Lotus Domino`, which rules such as
/// __DOMINO_RCVD expect).
fn unfold_decoded(v: &str) -> String {
    if !v.contains('\n') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\r' if it.peek() == Some(&'\n') => {}
            '\n' if matches!(it.peek(), Some(' ' | '\t')) => {
                while matches!(it.peek(), Some(' ' | '\t')) {
                    it.next();
                }
                out.push(' ');
            }
            '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// Joins folded lines: CRLF/LF followed by whitespace becomes that whitespace.
fn unfold(v: &str) -> String {
    if !v.contains('\n') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\r' if it.peek() == Some(&'\n') => {}
            '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// Decodes RFC 2047 encoded words; whitespace between adjacent encoded words is dropped.
fn decode_header(v: &str) -> String {
    if !v.contains("=?") {
        return v.trim().to_string();
    }
    let b = v.as_bytes();
    let mut out = String::with_capacity(v.len());
    let mut i = 0;
    let mut pending_ws = String::new();
    let mut last_was_word = false;
    while i < b.len() {
        if b[i] == b'=' && b.get(i + 1) == Some(&b'?') {
            let mut stream = MessageStream::new(&b[i + 1..]);
            if let Some(text) = stream.decode_rfc2047() {
                if !last_was_word {
                    out.push_str(&pending_ws);
                }
                pending_ws.clear();
                out.push_str(&text);
                i += 1 + stream.offset().max(1);
                last_was_word = true;
                continue;
            }
        }
        let c_len = utf8_len(b[i]);
        let end = (i + c_len).min(b.len());
        let piece = v.get(i..end).unwrap_or("");
        if piece.chars().all(char::is_whitespace) && !piece.is_empty() {
            pending_ws.push_str(piece);
        } else {
            out.push_str(&pending_ws);
            pending_ws.clear();
            out.push_str(piece);
            last_was_word = false;
        }
        i = end.max(i + 1);
    }
    out.push_str(&pending_ws);
    out.trim().to_string()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// The first `max` bytes of `s`, cut at a char boundary.
fn cut(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// Whitespace runs become one space; trimmed.
/// `s` with every run of characters `is_space` takes for space as one space (leading and
/// trailing runs included, unlike [`collapse`]).
pub(super) fn squeeze_space(s: &str, is_space: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if is_space(c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Paragraphs (blank-line separated) as single collapsed lines, long ones split.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut para = String::new();
    let flush = |para: &mut String, out: &mut Vec<String>| {
        let line = collapse(para);
        para.clear();
        split_long(line, out);
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut para, &mut out);
        } else {
            para.push_str(line);
            para.push(' ');
        }
    }
    flush(&mut para, &mut out);
    out
}

fn split_long(mut line: String, out: &mut Vec<String>) {
    while line.len() > MAX_LINE {
        let head = cut(&line, MAX_LINE);
        let at = head.rfind(' ').filter(|&p| p > MAX_LINE / 2).unwrap_or(head.len());
        let rest = line.split_off(at);
        out.push(line);
        line = rest.trim_start().to_string();
    }
    if !line.is_empty() {
        out.push(line);
    }
}

/// A part's declared type and subtype; text/plain without a Content-Type.
fn declared_type<'a>(part: &'a mail_parser::MessagePart<'_>) -> (&'a str, Option<&'a str>) {
    part.content_type().map_or(("text", Some("plain")), |ct| (ct.c_type.as_ref(), ct.c_subtype.as_deref()))
}

/// Whether a part is text/plain (declared, or by default without a Content-Type).
fn is_plain(part: &mail_parser::MessagePart<'_>) -> bool {
    let (kind, sub) = declared_type(part);
    kind.eq_ignore_ascii_case("text") && sub.is_some_and(|s| s.eq_ignore_ascii_case("plain"))
}

/// Splits text into chunks of at most `RAW_CHUNK` bytes, at a line end (or space) when possible.
fn chunk_into(text: &str, out: &mut Vec<String>) {
    let mut rest = text;
    while !rest.is_empty() {
        if rest.len() <= RAW_CHUNK {
            out.push(rest.to_string());
            return;
        }
        let head = cut(rest, RAW_CHUNK);
        let at = head
            .rfind('\n')
            .map(|p| p + 1)
            .or_else(|| head.rfind(' ').map(|p| p + 1))
            .filter(|&p| p > RAW_CHUNK / 2)
            .unwrap_or(head.len().max(1));
        let at = if rest.is_char_boundary(at) { at } else { head.len() };
        out.push(rest[..at].to_string());
        rest = &rest[at..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: \"Foo Blah\" <foo@example.test>\r\nTo: a@x.test\r\nCc: b@y.test\r\n\
Subject: =?UTF-8?B?SGVsbG8gV29ybGQ=?= =?UTF-8?Q?_again?=\r\nX-Long: one\r\n two\r\nReceived: r1\r\nReceived: r2\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nFirst line\r\nsame   paragraph\r\n\r\nSecond http://Plain.test/x.\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p>Hi &amp; <a href=\"http://link.test/a\">click</a></p><p>Bye</p>\r\n--b--\r\n";

    #[test]
    fn headers_decoded_raw_and_multiple() {
        let m = ParsedMessage::parse(MSG);
        assert_eq!(m.header_value("subject", Modifier::Decoded).as_deref(), Some("Hello World again"));
        assert!(m.header_value("subject", Modifier::Raw).is_some_and(|v| v.starts_with("=?UTF-8?B?")));
        assert_eq!(m.header_value("x-long", Modifier::Decoded).as_deref(), Some("one two"));
        assert_eq!(m.header_value("x-long", Modifier::Raw).as_deref(), Some("one\r\n two"));
        assert_eq!(m.header_value("received", Modifier::Decoded).as_deref(), Some("r1\nr2"));
        assert_eq!(m.header_value("from", Modifier::Addr).as_deref(), Some("foo@example.test"));
        assert_eq!(m.header_value("from", Modifier::Name).as_deref(), Some("Foo Blah"));
        assert_eq!(m.header_value("ToCc", Modifier::Decoded).as_deref(), Some("a@x.test\nb@y.test"));
        assert!(m.header_value("ALL", Modifier::Decoded).is_some_and(|a| a.contains("X-Long: one two\n")));
        assert!(m.header_value("nope", Modifier::Decoded).is_none());
        let m = m.with_envelope_from("bounce@z.test");
        assert_eq!(m.header_value("EnvelopeFrom", Modifier::Decoded).as_deref(), Some("bounce@z.test"));
    }

    #[test]
    fn body_is_rendered_with_subject_first() {
        let m = ParsedMessage::parse(MSG);
        let lines = m.body_lines(false);
        assert_eq!(lines[0], "Hello World again");
        assert_eq!(lines[1], "First line same paragraph");
        assert_eq!(lines[2], "Second http://Plain.test/x.");
        assert!(lines.contains(&"Hi & click".to_string()), "{lines:?}");
        assert!(lines.contains(&"Bye".to_string()));
        assert_eq!(m.body_lines(true)[0], "First line same paragraph");
        assert!(m.rawbody_chunks().iter().any(|c| c.contains("<a href=")));
    }

    #[test]
    fn rules_see_fields_in_the_obsolete_name_colon_form_as_the_field() {
        let m = ParsedMessage::parse(b"Subject :  win big\r\nX-Mailer\t: bulk\r\n\r\nbody\r\n");
        assert_eq!(m.header_value("subject", Modifier::Decoded).as_deref(), Some("win big"));
        assert!(m.has_header("x-mailer"));
    }

    #[test]
    fn uris_found_and_normalized() {
        let m = ParsedMessage::parse(MSG);
        let u = m.uris();
        assert!(u.contains(&"http://Plain.test/x".to_string()), "{u:?}");
        assert!(u.contains(&"http://plain.test/x".to_string()));
        assert!(u.contains(&"http://link.test/a".to_string()));
    }

    #[test]
    fn huge_messages_are_scanned_only_in_part() {
        let mut raw = b"Subject: big\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        let para = b"lorem ipsum dolor sit amet consectetur\r\n\r\n";
        while raw.len() < 3 * MAX_PARSE {
            raw.extend_from_slice(para);
        }
        let started = std::time::Instant::now();
        let m = ParsedMessage::parse(&raw);
        assert!(m.stats.truncated);
        assert!(m.full().len() <= MAX_FULL);
        let body: usize = m.body_lines(false).iter().map(String::len).sum();
        assert!(body <= MAX_BODY_TOTAL + MAX_LINE, "{body}");
        let rawbody: usize = m.rawbody_chunks().iter().map(String::len).sum();
        assert!(rawbody <= RAWBODY_PART_SCAN, "{rawbody}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    #[test]
    fn long_paragraphs_are_split_and_garbage_is_tolerated() {
        let long = format!("Subject: x\n\n{}\n", "word ".repeat(2000));
        let m = ParsedMessage::parse(long.as_bytes());
        assert!(m.body_lines(true).len() >= 4);
        assert!(m.body_lines(true).iter().all(|l| l.len() <= MAX_LINE));
        for junk in [&b""[..], b"\xff\xfe\x00", b"no colon line\n\nbody", b"Subject: =?x?Q?", b":\n\n"] {
            let _ = ParsedMessage::parse(junk);
        }
    }
}
