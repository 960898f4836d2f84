//! Spam reports: the messages a user attached to a report (forwarded "as attachment", or an
//! ARF feedback report's `message/rfc822` part), each to be learned as spam.
//!
//! Guarantees: only whole attached messages count (an inline forward or a `text/rfc822-headers`
//! part is not a message); at most [`MAX_ATTACHED`] are taken from one report; parsing is
//! bounded by the report's size (the SMTP size limit) and never panics.

use mail_parser::{MessageParser, PartType};

/// Attached messages taken from one report.
pub const MAX_ATTACHED: usize = 20;

/// The messages attached to `report`, raw, in order.
pub fn attached_messages(report: &[u8]) -> Vec<Vec<u8>> {
    let Some(message) = MessageParser::default().parse(report) else { return Vec::new() };
    message
        .parts
        .iter()
        .filter_map(|part| match &part.body {
            PartType::Message(inner) => Some(inner.raw_message().to_vec()),
            _ => None,
        })
        .filter(|raw| !raw.is_empty())
        .take(MAX_ATTACHED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAM: &str =
        "From: lottery@remote.example\r\nSubject: You won\r\nMessage-ID: <won@remote.example>\r\n\r\nClaim your prize now\r\n";

    #[test]
    fn a_forwarded_attachment_and_an_arf_report_yield_the_attached_message() {
        let forwarded = format!(
            "From: alice@example.test\r\nSubject: Fwd: You won\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nThis is spam.\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n{SPAM}--b--\r\n"
        );
        let found = attached_messages(forwarded.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(crate::classifier::content_digest(&found[0]), crate::classifier::content_digest(SPAM.as_bytes()));

        let arf = format!(
            "From: alice@example.test\r\nSubject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=r\r\n\r\n\
             --r\r\nContent-Type: text/plain\r\n\r\nspam\r\n--r\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\r\n\
             --r\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--r--\r\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SPAM.as_bytes())
        );
        let found = attached_messages(arf.as_bytes());
        assert_eq!(found.len(), 1, "the base64-encoded attached message is decoded");
        assert_eq!(crate::classifier::content_digest(&found[0]), crate::classifier::content_digest(SPAM.as_bytes()));
    }

    #[test]
    fn an_inline_forward_or_headers_only_is_not_a_message() {
        let inline = format!("From: alice@example.test\r\nSubject: Fwd\r\n\r\n---------- Forwarded message ----------\r\n{SPAM}");
        assert!(attached_messages(inline.as_bytes()).is_empty());
        let headers_only =
            "Content-Type: multipart/report; boundary=r\r\n\r\n--r\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: x\r\n--r--\r\n";
        assert!(attached_messages(headers_only.as_bytes()).is_empty());
        assert!(attached_messages(b"").is_empty() && attached_messages(&[0xff; 100]).is_empty());
    }
}
