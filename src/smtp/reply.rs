//! SMTP replies: one type, one table of every reply moat sends.
//!
//! Guarantees: every reply has a basic code and, where RFC 2034 applies, an enhanced status code
//! whose class matches the basic code's (checked by a test over the whole table). Texts are
//! generic: they never name rules, filters or internal hosts.

use std::fmt::Write as _;

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// RFC 3463 enhanced status code (class, subject, detail); `None` for 220/221 greetings and EHLO.
    pub enhanced: Option<(u8, u8, u8)>,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: (u8, u8, u8), text: impl Into<String>) -> Reply {
        Reply { code, enhanced: Some(enhanced), lines: vec![text.into()] }
    }

    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: None, lines: vec![text.into()] }
    }

    /// A multi-line reply (EHLO, HELP) without enhanced codes.
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, enhanced: None, lines }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 421: the server closes the connection after sending it.
    pub fn closes_connection(&self) -> bool {
        self.code == 421
    }

    /// Renders the reply with CRLF line endings into `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let _ = write!(text, "{}{}", self.code, sep);
            if let Some((a, b, c)) = self.enhanced {
                let _ = write!(text, "{a}.{b}.{c} ");
            }
            text.push_str(line);
            text.push_str("\r\n");
        }
        if self.lines.is_empty() {
            let _ = write!(text, "{}\r\n", self.code);
        }
        out.extend_from_slice(text.as_bytes());
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// The first line, for logs.
    pub fn summary(&self) -> String {
        let text = self.lines.first().map(String::as_str).unwrap_or("");
        match self.enhanced {
            Some((a, b, c)) => format!("{} {a}.{b}.{c} {text}", self.code),
            None => format!("{} {text}", self.code),
        }
    }
}

/// The replies of the session core. `host` is our hostname where a reply names it.
pub mod replies {
    use super::Reply;

    pub fn greeting(host: &str) -> Reply {
        Reply::plain(220, format!("{host} ESMTP moat"))
    }
    pub fn helo(host: &str) -> Reply {
        Reply::plain(250, host.to_string())
    }
    pub fn ok() -> Reply {
        Reply::new(250, (2, 0, 0), "Ok")
    }
    pub fn sender_ok() -> Reply {
        Reply::new(250, (2, 1, 0), "Sender OK")
    }
    pub fn recipient_ok() -> Reply {
        Reply::new(250, (2, 1, 5), "Recipient OK")
    }
    pub fn start_data() -> Reply {
        Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
    }
    pub fn queued(id: &str) -> Reply {
        Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
    }
    pub fn chunk_ok(octets: usize) -> Reply {
        Reply::new(250, (2, 0, 0), format!("{octets} octets received"))
    }
    pub fn bye() -> Reply {
        Reply::new(221, (2, 0, 0), "Bye")
    }
    pub fn vrfy() -> Reply {
        Reply::new(252, (2, 5, 0), "Cannot VRFY user, but will accept message and attempt delivery")
    }
    pub fn help() -> Reply {
        Reply::new(214, (2, 0, 0), "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS")
    }
    pub fn start_tls() -> Reply {
        Reply::new(220, (2, 0, 0), "Ready to start TLS")
    }
    pub fn tls_unavailable() -> Reply {
        Reply::new(454, (4, 7, 0), "TLS not available")
    }
    pub fn tls_active() -> Reply {
        Reply::new(503, (5, 5, 1), "TLS already active")
    }
    pub fn bad_sequence(text: &str) -> Reply {
        Reply::new(503, (5, 5, 1), text.to_string())
    }
    pub fn no_valid_recipients() -> Reply {
        Reply::new(554, (5, 5, 1), "No valid recipients")
    }
    pub fn unknown_command() -> Reply {
        Reply::new(500, (5, 5, 2), "Command unrecognized")
    }
    pub fn line_too_long() -> Reply {
        Reply::new(500, (5, 5, 2), "Line too long")
    }
    pub fn nul_in_command() -> Reply {
        Reply::new(500, (5, 5, 2), "NUL characters are not allowed in commands")
    }
    pub fn syntax(text: &str) -> Reply {
        Reply::new(501, (5, 5, 4), format!("Syntax: {text}"))
    }
    pub fn bad_parameter(text: &str) -> Reply {
        Reply::new(555, (5, 5, 4), format!("Unsupported or invalid parameter {text}"))
    }
    pub fn not_implemented() -> Reply {
        Reply::new(502, (5, 5, 1), "Command not implemented")
    }
    pub fn bad_sender() -> Reply {
        Reply::new(501, (5, 1, 7), "Bad sender address syntax")
    }
    pub fn bad_recipient() -> Reply {
        Reply::new(501, (5, 1, 3), "Bad recipient address syntax")
    }
    pub fn needs_smtputf8() -> Reply {
        Reply::new(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8")
    }
    pub fn report_not_ours() -> Reply {
        Reply::new(550, (5, 7, 1), "Only our own users may report spam here")
    }
    pub fn report_received(learned: usize) -> Reply {
        Reply::new(250, (2, 0, 0), format!("Ok: report received, {learned} message(s) learned as spam"))
    }
    pub fn relay_denied() -> Reply {
        Reply::new(550, (5, 7, 1), "Relaying denied")
    }
    pub fn unknown_user(code: u16) -> Reply {
        if code == 450 {
            Reply::new(450, (4, 1, 1), "Recipient address rejected: user unknown")
        } else {
            Reply::new(550, (5, 1, 1), "Recipient address rejected: user unknown")
        }
    }
    pub fn recipient_unverified() -> Reply {
        Reply::new(450, (4, 1, 1), "Recipient address cannot be verified now, try again later")
    }
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, (4, 5, 3), "Too many recipients")
    }
    pub fn size_exceeded() -> Reply {
        Reply::new(552, (5, 3, 4), "Message size exceeds fixed maximum message size")
    }
    pub fn nul_in_message() -> Reply {
        Reply::new(554, (5, 6, 0), "Message contains NUL characters")
    }
    pub fn storage_full() -> Reply {
        Reply::new(452, (4, 3, 1), "Insufficient system storage")
    }
    pub fn local_error() -> Reply {
        Reply::new(451, (4, 3, 0), "Local error in processing, try again later")
    }
    pub fn too_many_messages(host: &str) -> Reply {
        Reply::new(421, (4, 7, 0), format!("{host} Too many messages in one connection, closing"))
    }
    pub fn too_many_errors(host: &str) -> Reply {
        Reply::new(421, (4, 7, 0), format!("{host} Too many errors, closing connection"))
    }
    pub fn too_many_commands(host: &str) -> Reply {
        Reply::new(421, (4, 7, 0), format!("{host} Too many commands, closing connection"))
    }
    pub fn timeout(host: &str) -> Reply {
        Reply::new(421, (4, 4, 2), format!("{host} Timeout, closing connection"))
    }
    pub fn too_many_connections(host: &str) -> Reply {
        Reply::new(421, (4, 7, 0), format!("{host} Too many connections, try again later"))
    }
    /// Under stress, to a client that talked before the greeting.
    pub fn talked_too_soon(host: &str) -> Reply {
        Reply::new(421, (4, 7, 0), format!("{host} Busy, and you talked before the greeting; try again later"))
    }
    pub fn shutting_down(host: &str) -> Reply {
        Reply::new(421, (4, 3, 2), format!("{host} Service shutting down, try again later"))
    }
    /// End of data: every recipient's policy refuses the message. `why` names symbols, never content.
    pub fn rejected_spam(why: &str) -> Reply {
        Reply::new(550, (5, 7, 1), format!("Message rejected as spam ({why})"))
    }
    /// End of data: the message carries a virus. `signature` is clamd's name for it.
    pub fn rejected_virus(signature: &str) -> Reply {
        Reply::new(550, (5, 7, 1), format!("Message rejected: it contains a virus ({signature})"))
    }
    /// End of data: a policy rule (block list, attachment type, DMARC …) refuses the message.
    pub fn rejected_by_rule(why: &str) -> Reply {
        Reply::new(550, (5, 7, 1), format!("Message rejected by policy ({why})"))
    }
    /// RCPT: the evidence known before the message already refuses it for this recipient.
    pub fn rejected_policy(why: &str) -> Reply {
        Reply::new(550, (5, 7, 1), format!("Rejected by policy ({why})"))
    }
    /// A filter that must answer could not (fail-closed stance): the sender retries.
    pub fn filter_tempfail() -> Reply {
        Reply::new(451, (4, 7, 1), "Message cannot be checked now, try again later")
    }
    /// RCPT: an unknown (network, sender, recipient) triplet; a retry after the delay passes.
    pub fn greylisted(retry_in: u64) -> Reply {
        Reply::new(451, (4, 7, 1), format!("Greylisted, please try again in {retry_in} seconds"))
    }
    /// MAIL: too many messages from this client or sender in the current window.
    pub fn rate_limited() -> Reply {
        Reply::new(450, (4, 7, 1), "Too many messages, slow down and try again later")
    }
}

#[cfg(test)]
mod tests {
    use super::replies::*;
    use super::*;

    fn table() -> Vec<Reply> {
        let h = "mx.test";
        vec![
            greeting(h),
            helo(h),
            ok(),
            sender_ok(),
            recipient_ok(),
            start_data(),
            queued("X"),
            chunk_ok(3),
            bye(),
            vrfy(),
            help(),
            start_tls(),
            tls_unavailable(),
            tls_active(),
            bad_sequence("x"),
            no_valid_recipients(),
            unknown_command(),
            line_too_long(),
            nul_in_command(),
            syntax("x"),
            bad_parameter("x"),
            not_implemented(),
            bad_sender(),
            bad_recipient(),
            needs_smtputf8(),
            relay_denied(),
            unknown_user(550),
            unknown_user(450),
            recipient_unverified(),
            too_many_recipients(),
            size_exceeded(),
            nul_in_message(),
            storage_full(),
            local_error(),
            too_many_messages(h),
            too_many_errors(h),
            too_many_commands(h),
            timeout(h),
            too_many_connections(h),
            shutting_down(h),
            rejected_spam("X"),
            rejected_policy("X"),
            filter_tempfail(),
        ]
    }

    #[test]
    fn enhanced_class_matches_basic_code() {
        for reply in table() {
            assert!((200..600).contains(&reply.code), "{reply:?}");
            if let Some((class, _, _)) = reply.enhanced {
                assert_eq!(u16::from(class), reply.code / 100, "{reply:?}");
            }
        }
    }

    #[test]
    fn renders_single_and_multi_line() {
        assert_eq!(relay_denied().to_bytes(), b"550 5.7.1 Relaying denied\r\n");
        let ehlo = Reply::multi(250, vec!["mx.test".into(), "PIPELINING".into(), "SIZE 10".into()]);
        assert_eq!(ehlo.to_bytes(), b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    }
}
