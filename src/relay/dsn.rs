//! RFC 3464 delivery status notifications ("bounces") for recipients that failed.
//!
//! The DSN is `multipart/report; report-type=delivery-status` with three parts: a short
//! human-readable explanation, the `message/delivery-status` fields (Reporting-MTA,
//! Arrival-Date, and per failed recipient Final-Recipient, Action, Status, Remote-MTA,
//! Diagnostic-Code), and `text/rfc822-headers` with the original message's header section.
//!
//! Guarantees (all pure, tested): no DSN for the null sender, nor when nothing failed; the
//! original body is never included (only its headers, cut at [`MAX_RETURNED_HEADERS`]); the
//! DSN itself is sent from the null sender (`MAIL FROM:<>`) so it can never bounce back; every
//! line is 7-bit and shorter than 1000 octets.

use crate::spool::{DeliveryState, Envelope, Status};
use chrono::{DateTime, TimeZone, Utc};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// Most bytes of original headers returned in the third part.
pub const MAX_RETURNED_HEADERS: usize = 64 * 1024;
/// Longest field value we write before cutting it.
const MAX_FIELD: usize = 900;

/// The envelope of the DSN for `original`: null sender, to the original sender.
/// Its id is the original id plus "D", so building it again after a crash replaces the same
/// spool entry instead of creating a second bounce.
pub fn dsn_envelope(original: &Envelope, hostname: &str, now: i64) -> Envelope {
    let id = if original.id.len() < 64 { format!("{}D", original.id) } else { crate::spool::Spool::new_id() };
    Envelope {
        id,
        received_at: now,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: hostname.to_string(),
        sender: String::new(),
        recipients: vec![original.sender.clone()],
        smtputf8: !original.sender.is_ascii(),
        body_8bit: false,
        tls: None,
        hold: None,
        staged: None,
    }
}

/// Builds the DSN message for the failed recipients of `original`, or `None` when no DSN is
/// due (null sender, or no failure).
pub fn build_dsn(hostname: &str, original: &Envelope, state: &DeliveryState, message: &[u8], now: DateTime<Utc>) -> Option<Vec<u8>> {
    if original.sender.is_empty() || !state.any_failed() {
        return None;
    }
    let boundary = boundary(&original.id);
    let mut out = String::new();
    write_headers(&mut out, hostname, original, &boundary, now);
    let _ = write!(out, "This is a MIME-encapsulated message.\r\n\r\n--{boundary}\r\n");
    write_human_part(&mut out, hostname, original, state);
    let _ = write!(out, "--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n");
    write_status_part(&mut out, hostname, original, state);
    let _ = write!(out, "--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&original_headers(message));
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Some(bytes)
}

fn write_headers(out: &mut String, hostname: &str, original: &Envelope, boundary: &str, now: DateTime<Utc>) {
    let host = ascii(hostname);
    let _ = write!(
        out,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n",
        to = cut(&original.sender),
        date = now.to_rfc2822(),
        id = original.id,
    );
}

fn write_human_part(out: &mut String, hostname: &str, original: &Envelope, state: &DeliveryState) {
    let _ = write!(
        out,
        "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         This is the mail system at host {host}.\r\n\r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         It was received on {arrival} (queue id {id}).\r\n\r\n",
        host = ascii(hostname),
        arrival = rfc2822(original.received_at),
        id = original.id,
    );
    for rcpt in state.recipients.iter().filter(|r| r.status == Status::Failed) {
        let reason = rcpt.reply.as_ref().map(|r| r.to_string()).unwrap_or_else(|| "delivery failed".into());
        let _ = write!(out, "<{}>: {}\r\n", ascii(&rcpt.address), ascii(&reason));
    }
    out.push_str("\r\n");
}

fn write_status_part(out: &mut String, hostname: &str, original: &Envelope, state: &DeliveryState) {
    let _ = write!(out, "Reporting-MTA: dns; {}\r\nArrival-Date: {}\r\n", ascii(hostname), rfc2822(original.received_at));
    for rcpt in state.recipients.iter().filter(|r| r.status == Status::Failed) {
        let address_type = if rcpt.address.is_ascii() { "rfc822" } else { "utf-8" };
        let _ = write!(out, "\r\nFinal-Recipient: {address_type}; {}\r\nAction: failed\r\n", ascii(&rcpt.address));
        let status = rcpt.reply.as_ref().map(|r| r.status()).unwrap_or_else(|| "5.0.0".into());
        // A DSN's Status must say failure; a 4.x.x here means "gave up" (e.g. 4.4.7 expired).
        let _ = write!(out, "Status: {status}\r\n");
        if let Some(remote) = &rcpt.remote {
            let host = remote.rsplit_once(':').map(|(h, _)| h).unwrap_or(remote);
            let _ = write!(out, "Remote-MTA: dns; {}\r\n", ascii(host.trim_matches(['[', ']'])));
        }
        if let Some(reply) = &rcpt.reply {
            let _ = write!(out, "Diagnostic-Code: smtp; {}\r\n", ascii(&reply.to_string()));
        }
        if let Some(at) = rcpt.finished_at {
            let _ = write!(out, "Last-Attempt-Date: {}\r\n", rfc2822(at));
        }
    }
}

/// The header section of `message` (up to and including the empty line; or the whole message
/// if it has no body), cut at a line boundary to at most [`MAX_RETURNED_HEADERS`] bytes.
/// The body is never returned.
pub fn original_headers(message: &[u8]) -> Vec<u8> {
    let mut end = 0;
    let mut pos = 0;
    while pos < message.len() && pos < MAX_RETURNED_HEADERS {
        let line_end = message[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i + 1).unwrap_or(message.len());
        let line = &message[pos..line_end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line_end > MAX_RETURNED_HEADERS {
            break;
        }
        end = line_end;
        pos = line_end;
    }
    let mut headers = message[..end].to_vec();
    if !headers.is_empty() && !headers.ends_with(b"\n") {
        headers.extend_from_slice(b"\r\n");
    }
    headers
}

fn boundary(id: &str) -> String {
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("=_moat_{id}_{hex}")
}

fn rfc2822(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0).single().map(|t| t.to_rfc2822()).unwrap_or_else(|| "unknown".into())
}

/// 7-bit, no controls, bounded length: safe inside a header field.
fn ascii(text: &str) -> String {
    cut(&text.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).collect::<String>())
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_FIELD).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{DeliveryOutcome, DownstreamReply, RetryPolicy};

    fn original(sender: &str) -> Envelope {
        Envelope {
            id: "00000000000001ABCD".into(),
            received_at: 1_700_000_000,
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            helo: "client.test".into(),
            sender: sender.into(),
            recipients: vec!["ok@x.test".into(), "gone@x.test".into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
            hold: None,
            staged: None,
        }
    }

    fn failed_state() -> DeliveryState {
        let mut state = DeliveryState::new(&["ok@x.test".into(), "gone@x.test".into()]);
        state.record_attempt(
            &[
                (0, DeliveryOutcome::Delivered(DownstreamReply::new(250, Some([2, 0, 0]), "Ok")), Some("mx.x.test:25".into())),
                (
                    1,
                    DeliveryOutcome::Failed(DownstreamReply::new(550, Some([5, 1, 1]), "<gone@x.test>: no such user")),
                    Some("mx.x.test:25".into()),
                ),
            ],
            1_700_000_000,
            1_700_000_060,
            &RetryPolicy { initial: 60, max: 600, max_lifetime: 86400 },
        );
        state
    }

    const MESSAGE: &[u8] = b"From: a@sender.test\r\nSubject: secret plans\r\n\r\nTOP SECRET BODY\r\n";

    #[test]
    fn dsn_has_the_rfc3464_fields_and_the_headers_but_not_the_body() {
        let dsn = build_dsn("moat.test", &original("a@sender.test"), &failed_state(), MESSAGE, Utc::now()).unwrap();
        let text = String::from_utf8(dsn).unwrap();
        for needle in [
            "From: Mail Delivery System <MAILER-DAEMON@moat.test>\r\n",
            "To: <a@sender.test>\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Content-Type: message/delivery-status\r\n",
            "Reporting-MTA: dns; moat.test\r\n",
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
            "Final-Recipient: rfc822; gone@x.test\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "Remote-MTA: dns; mx.x.test\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <gone@x.test>: no such user\r\n",
            "Content-Type: text/rfc822-headers\r\n\r\nFrom: a@sender.test\r\nSubject: secret plans\r\n\r\n--",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains("TOP SECRET BODY"));
        assert!(!text.contains("Final-Recipient: rfc822; ok@x.test"), "delivered recipients are not reported");
        assert!(text.lines().all(|l| l.len() < 1000 && l.is_ascii()));
        let boundary = text.split("boundary=\"").nth(1).and_then(|s| s.split('"').next()).unwrap();
        assert_eq!(text.matches(&format!("--{boundary}\r\n")).count(), 3);
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn never_a_dsn_to_the_null_sender_nor_without_failure() {
        assert!(build_dsn("moat.test", &original(""), &failed_state(), MESSAGE, Utc::now()).is_none());
        let delivered = DeliveryState::new(&["ok@x.test".into()]);
        assert!(build_dsn("moat.test", &original("a@sender.test"), &delivered, MESSAGE, Utc::now()).is_none());
    }

    #[test]
    fn the_dsn_envelope_is_from_the_null_sender_to_the_original_sender() {
        let env = dsn_envelope(&original("a@sender.test"), "moat.test", 5);
        assert_eq!(env.sender, "");
        assert_eq!(env.recipients, vec!["a@sender.test".to_string()]);
        assert_eq!(env.id, "00000000000001ABCDD");
        assert!(crate::spool::Spool::valid_id(&env.id));
    }

    #[test]
    fn expired_recipients_report_4_4_7() {
        let mut state = DeliveryState::new(&["slow@x.test".into()]);
        state.record_attempt(
            &[(0, DeliveryOutcome::Deferred(DownstreamReply::new(421, None, "busy")), None)],
            0,
            100,
            &RetryPolicy { initial: 1, max: 1, max_lifetime: 50 },
        );
        let dsn = build_dsn("moat.test", &original("a@sender.test"), &state, MESSAGE, Utc::now()).unwrap();
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Status: 4.4.7\r\n"), "{text}");
        assert!(text.contains("last reply: 421 busy"), "{text}");
    }

    #[test]
    fn headers_only_never_the_body() {
        assert_eq!(original_headers(b"A: 1\r\nB: 2\r\n\r\nbody"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(original_headers(b"A: 1\n\nbody"), b"A: 1\n");
        assert_eq!(original_headers(b"\r\nbody only"), b"");
        assert_eq!(original_headers(b"A: no newline"), b"A: no newline\r\n");
        let mut huge = b"X: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 100));
        huge.extend_from_slice(b"\r\n");
        let many: Vec<u8> = huge.iter().copied().cycle().take(huge.len() * 2000).collect();
        let cut = original_headers(&many);
        assert!(cut.len() <= MAX_RETURNED_HEADERS && cut.ends_with(b"\r\n"));
    }
}
