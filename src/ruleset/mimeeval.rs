//! SpamAssassin's MIMEEval facts about a message's MIME structure, gathered while the message
//! view walks its parts (one pass, no second parse): base64 and quoted-printable parts,
//! quoted-printable lines too long, text sent as base64, odd ISO charsets, attachments, the
//! text/plain to text/html size ratio of an alternative, the longest base64 line, non-text
//! alternatives. They answer `check_for_mime(NAME)`, `check_mime_multipart_ratio`,
//! `check_base64_length`, `check_ma_non_text` and `check_for_mime_html`; the images the
//! walk meets go to [`ImageFacts`] (ImageInfo).
//!
//! moat's own code following `Mail::SpamAssassin::Plugin::MIMEEval` (4.0) `_check_attachments`,
//! quirks included: `mime_qp_count` is the count of encoded characters once any quoted-printable
//! text was seen; `mimepart_limit_exceeded` is never set where the plugin looks for it, so it
//! never hits; with SpamAssassin's default `ok_locales all` no charset is far away.

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use super::imageinfo::ImageFacts;

/// What the walk over the parts saw.
#[derive(Debug, Clone)]
pub struct MimeFacts {
    base64_count: u32,
    qp_parts: u32,
    qp_long_line: bool,
    base64_encoded_text: bool,
    bad_iso_charset: bool,
    attachment: bool,
    body_html_count: u32,
    body_text_count: u32,
    multipart_alternative: bool,
    qp_bytes: usize,
    qp_encoded: f64,
    /// Bytes of each leaf not an attachment, with its type, for the alternative's ratio.
    leaf_bytes: Vec<(String, Option<usize>)>,
    base64_length: usize,
    ma_non_text: bool,
    /// Charsets named by the parts (SpamAssassin's `mime_html_charsets`).
    charsets: Vec<String>,
    images: ImageFacts,
    /// The text/plain (false) and text/html (true) parts under each multipart/alternative.
    alternatives: Vec<Vec<(bool, String)>>,
    /// The message is an alternative of exactly text/html and text/calendar (an invitation).
    calendar_invite: bool,
    parts_seen: usize,
}

impl Default for MimeFacts {
    fn default() -> MimeFacts {
        MimeFacts {
            base64_count: 0,
            qp_parts: 0,
            qp_long_line: false,
            base64_encoded_text: false,
            bad_iso_charset: false,
            attachment: false,
            body_html_count: 0,
            body_text_count: 0,
            multipart_alternative: false,
            qp_bytes: 0,
            qp_encoded: 0.0,
            leaf_bytes: Vec::new(),
            base64_length: 0,
            ma_non_text: false,
            charsets: Vec::new(),
            images: ImageFacts::default(),
            alternatives: Vec::new(),
            calendar_invite: false,
            parts_seen: 0,
        }
    }
}

/// A part's type fields as SpamAssassin reads them, lower-cased.
struct PartType3 {
    ctype: String,
    charset: String,
    cte: String,
    cd: String,
}

fn part_type(part: &MessagePart<'_>) -> PartType3 {
    let (ctype, charset) = match part.content_type() {
        Some(ct) => {
            let sub = ct.c_subtype.as_deref().unwrap_or(if ct.c_type.eq_ignore_ascii_case("text") { "plain" } else { "" });
            let ctype = if sub.is_empty() { ct.c_type.to_ascii_lowercase() } else { format!("{}/{}", ct.c_type, sub).to_ascii_lowercase() };
            (ctype, ct.attribute("charset").unwrap_or("").to_ascii_lowercase())
        }
        None => ("text/plain".to_string(), String::new()),
    };
    let cte = part.content_transfer_encoding().unwrap_or("").trim().to_ascii_lowercase();
    let cd = part.content_disposition().map(|d| d.c_type.to_ascii_lowercase()).unwrap_or_default();
    PartType3 { ctype, charset, cte, cd }
}

impl MimeFacts {
    /// Takes in one part of `msg` (every part, containers included, in document order).
    pub fn add_part(&mut self, msg: &Message<'_>, part: &MessagePart<'_>) {
        let t = part_type(part);
        let top = self.parts_seen == 0;
        self.parts_seen += 1;
        if t.ctype == "multipart/alternative" {
            self.multipart_alternative = true;
            self.ma_non_text |= non_text_alternative(msg, part);
            if top {
                self.calendar_invite = calendar_invite(msg, part);
            }
            if self.alternatives.len() < 16 {
                let mut texts = Vec::new();
                alternative_texts(msg, part, &mut texts, 0);
                self.alternatives.push(texts);
            }
        }
        self.header_facts(&t);
        if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
            return;
        }
        let raw = msg.raw_message.get(part.raw_body_offset() as usize..part.raw_end_offset() as usize).unwrap_or(&[]);
        self.leaf_facts(&t, raw);
        self.images.add(&t.ctype, &t.cte, part.contents());
    }

    fn header_facts(&mut self, t: &PartType3) {
        if t.ctype == "text/html" {
            self.body_html_count += 1;
        } else if t.ctype.starts_with("text") {
            self.body_text_count += 1;
        }
        if t.cte.contains("base64") {
            self.base64_count += 1;
        } else if t.cte.contains("quoted-printable") {
            self.qp_parts += 1;
        }
        if t.cd.contains("attachment") {
            self.attachment = true;
        }
        const ASCII_NAMES: &[&str] = &[
            "us-ascii",
            "ansi_x3.4-1968",
            "iso-ir-6",
            "ansi_x3.4-1986",
            "iso_646.irv:1991",
            "ascii",
            "iso646-us",
            "us",
            "ibm367",
            "cp367",
            "csascii",
        ];
        if t.ctype.starts_with("text")
            && t.cte.contains("base64")
            && (t.charset.is_empty() || ASCII_NAMES.iter().any(|n| t.charset.contains(n)))
            && !(t.cd.starts_with("attachment") || t.cd.starts_with("inline"))
        {
            self.base64_encoded_text = true;
        }
        if bad_iso(&t.charset) {
            self.bad_iso_charset = true;
        }
        if t.charset.chars().any(|c| c.is_ascii_alphabetic()) && self.charsets.len() < 64 {
            self.charsets.push(t.charset.clone());
        }
    }

    fn leaf_facts(&mut self, t: &PartType3, raw: &[u8]) {
        let counted = !t.cd.contains("attachment");
        let mut bytes = counted.then_some(0usize);
        let qp = t.cte == "quoted-printable";
        let base64 = t.cte == "base64" && t.ctype != "application/ics";
        for line in raw.split_inclusive(|&b| b == b'\n') {
            // SpamAssassin reads lines with LF ends.
            let len = line.len() - usize::from(line.ends_with(b"\r\n"));
            if self.multipart_alternative && counted && (t.ctype == "text/plain" || t.ctype == "text/html") {
                bytes = bytes.map(|b| b + len);
            }
            if qp && !line.starts_with(b"SPAM: ") {
                if len > 79 {
                    self.qp_long_line = true;
                }
                self.qp_bytes += len;
                self.qp_encoded += qp_encoded_chars(line);
            }
            if base64 {
                self.base64_length = self.base64_length.max(len);
            }
        }
        self.leaf_bytes.push((t.ctype.clone(), bytes));
    }

    /// `check_for_mime(NAME)`.
    pub fn test(&self, name: &str) -> bool {
        match name {
            "mime_base64_count" => self.base64_count > 0,
            "mime_qp_count" => {
                if self.qp_bytes > 0 {
                    self.qp_encoded > 0.0
                } else {
                    self.qp_parts > 0
                }
            }
            "mime_qp_long_line" => self.qp_long_line,
            "mime_base64_encoded_text" => self.base64_encoded_text,
            "mime_bad_iso_charset" => self.bad_iso_charset,
            "mime_attachment" => self.attachment,
            "mime_body_html_count" => self.body_html_count > 0,
            "mime_body_text_count" => self.body_text_count > 0,
            "mime_multipart_alternative" => self.multipart_alternative,
            "mime_multipart_ratio" => self.multipart_ratio() != 0.0,
            "mime_qp_ratio" => self.qp_ratio() != 0.0,
            _ => false,
        }
    }

    /// Quoted-printable encoded characters per byte of quoted-printable text.
    pub fn qp_ratio(&self) -> f64 {
        if self.qp_bytes == 0 { 0.0 } else { self.qp_encoded / self.qp_bytes as f64 }
    }

    /// The last text/plain alternative's bytes over the last text/html's (1 when not both).
    pub fn multipart_ratio(&self) -> f64 {
        if !self.multipart_alternative {
            return 1.0;
        }
        let last = |ty: &str| self.leaf_bytes.iter().rev().filter(|(t, b)| t == ty && b.is_some()).find_map(|(_, b)| *b);
        match (last("text/plain"), last("text/html")) {
            (Some(text), Some(html)) if html > 0 => text as f64 / html as f64,
            _ => 1.0,
        }
    }

    /// The longest line of a base64 part.
    pub fn base64_length(&self) -> usize {
        self.base64_length
    }

    /// Whether any part is text/html (`check_for_mime_html` also takes a text/html top level).
    pub fn has_html(&self) -> bool {
        self.body_html_count > 0
    }

    /// The charsets the parts name, lower-cased.
    pub fn charsets(&self) -> &[String] {
        &self.charsets
    }

    /// The attached images (ImageInfo).
    pub fn images(&self) -> &ImageFacts {
        &self.images
    }

    /// The text/plain (false) and text/html (true) parts of each multipart/alternative, for
    /// BodyEval's `multipart_alternative_difference`; none for a calendar invitation.
    pub fn alternatives(&self) -> &[Vec<(bool, String)>] {
        if self.calendar_invite { &[] } else { &self.alternatives }
    }

    /// A multipart/alternative with a child part that is neither text nor RTF.
    pub fn ma_non_text(&self) -> bool {
        self.ma_non_text
    }
}

fn bad_iso(charset: &str) -> bool {
    let Some(p) = charset.find("iso-") else { return false };
    let rest = &charset[p + 4..];
    let has_two_dashes = rest.split_once('-').is_some_and(|(a, b)| !a.is_empty() && !a.contains(char::is_whitespace) && !b.is_empty());
    let fine = ["8859-", "2022-jp", "2022-kr"].iter().any(|ok| charset.contains(&format!("iso-{ok}")));
    has_two_dashes && !fine
}

/// Encoded characters on one quoted-printable line that did not need encoding-as-is (SpamAssassin
/// counts `=09`, `=20`–`=7E` less trailing `=09`/`=20`).
fn qp_encoded_chars(line: &[u8]) -> f64 {
    if !line.contains(&b'=') {
        return 0.0;
    }
    let mut count = 0usize;
    let mut i = 0;
    while i + 2 < line.len() {
        if line[i] == b'=' && counted_escape(line[i + 1], line[i + 2]) {
            count += 1;
            i += 3;
        } else {
            i += 1;
        }
    }
    if count == 0 {
        return 0.0;
    }
    let trimmed = line.trim_ascii_end();
    let mut trailing = 0usize;
    let mut end = trimmed.len();
    while end >= 3 && (trimmed[end - 3..end] == *b"=09" || trimmed[end - 3..end] == *b"=20") {
        trailing += 1;
        end -= 3;
    }
    count as f64 - trailing as f64
}

fn counted_escape(a: u8, b: u8) -> bool {
    let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
    match a {
        b'0' => b == b'9',
        b'3' => b.is_ascii_digit() || matches!(b, b'A' | b'B' | b'C' | b'E' | b'F'),
        b'2' | b'4' | b'5' | b'6' => hex(b),
        b'7' => b.is_ascii_digit() || (b'A'..=b'E').contains(&b),
        _ => false,
    }
}

/// The text/plain and text/html parts under `part`, in order (nesting bounded).
fn alternative_texts(msg: &Message<'_>, part: &MessagePart<'_>, out: &mut Vec<(bool, String)>, depth: usize) {
    let PartType::Multipart(children) = &part.body else { return };
    for child in children.iter().filter_map(|&id| msg.parts.get(id as usize)) {
        match &child.body {
            PartType::Multipart(_) if depth < 8 => alternative_texts(msg, child, out, depth + 1),
            PartType::Text(text) | PartType::Html(text) => {
                let ctype = part_type(child).ctype;
                if (ctype == "text/plain" || ctype == "text/html") && out.len() < 16 {
                    out.push((ctype == "text/html", text.to_string()));
                }
            }
            _ => {}
        }
    }
}

/// A top-level alternative of exactly a text/html and a text/calendar part.
fn calendar_invite(msg: &Message<'_>, part: &MessagePart<'_>) -> bool {
    let PartType::Multipart(children) = &part.body else { return false };
    let kinds: Vec<Option<String>> = children
        .iter()
        .map(|&id| msg.parts.get(id as usize).filter(|c| !matches!(c.body, PartType::Multipart(_))).map(|c| part_type(c).ctype))
        .collect();
    kinds == [Some("text/html".to_string()), Some("text/calendar".to_string())]
}

/// Whether a multipart/alternative has a direct child leaf that is not text or RTF.
fn non_text_alternative(msg: &Message<'_>, part: &MessagePart<'_>) -> bool {
    let PartType::Multipart(children) = &part.body else { return false };
    children.iter().filter_map(|&id| msg.parts.get(id as usize)).any(|child| {
        if matches!(child.body, PartType::Multipart(_)) {
            return false;
        }
        let t = part_type(child);
        !(t.ctype == "multipart/related" || t.ctype == "application/rtf" || t.ctype.starts_with("text/"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::ParsedMessage;

    fn facts(text: &str) -> MimeFacts {
        ParsedMessage::parse(text.replace('\n', "\r\n").as_bytes()).mime_facts().clone()
    }

    #[test]
    fn encodings_long_lines_and_text_as_base64() {
        let qp = facts(&format!(
            "Subject: x\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n{}\n=41=42c=3D=20\n",
            "x".repeat(80)
        ));
        assert!(qp.test("mime_qp_long_line"));
        assert!(qp.test("mime_qp_count"));
        let b64 = facts("Subject: x\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n");
        assert!(b64.test("mime_base64_encoded_text") && b64.test("mime_base64_count"));
        assert_eq!(b64.base64_length(), 9, "with its line end, as SpamAssassin reads lines");
        assert!(!facts("Subject: x\n\nplain\n").test("mime_base64_count"));
        assert!(bad_iso("iso-1234-5") && !bad_iso("iso-8859-1") && !bad_iso("utf-8"));
    }

    #[test]
    fn alternatives_ratio_and_non_text() {
        let alt = facts(
            "Subject: x\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: text/html\n\n<p>hello there, a longer html part</p>\n--b\nContent-Type: image/gif\n\nR0lG\n--b--\n",
        );
        assert!(alt.multipart_ratio() < 0.2, "{}", alt.multipart_ratio());
        assert!(alt.ma_non_text());
        assert_eq!(facts("Subject: x\n\nplain\n").multipart_ratio(), 1.0);
    }
}
