//! Parses one command line into a [`Command`] moat understands, or the reply that refuses it.
//!
//! Guarantees: only the ESMTP parameters we advertise are accepted (SIZE, BODY=7BIT/8BITMIME,
//! SMTPUTF8); anything else gets 555 5.5.4, never silent acceptance. NUL bytes in a command are
//! refused. Parsing never panics on any input.

use super::reply::{Reply, replies};
use smtp_proto::{Error as ProtoError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, MailFrom, Request};

/// A parsed command. Addresses are raw (the text between < >); policy checks come later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailCommand),
    Rcpt(String),
    Data,
    Bdat {
        size: usize,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    StartTls,
    /// Known but not offered (AUTH, EXPN, ETRN, LHLO, ...).
    NotImplemented(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailCommand {
    pub sender: String,
    /// SIZE= declared by the client (0 when absent).
    pub declared_size: usize,
    pub body_8bit: bool,
    pub smtputf8: bool,
}

/// Parses one line (including its LF).
pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    if line.contains(&0) {
        return Err(replies::nul_in_command());
    }
    let request = match Request::parse(&mut line.iter()) {
        Ok(request) => request,
        // smtp-proto refuses some paths we must classify ourselves (an IP literal is "not our
        // domain", 550 5.7.1, not a syntax error): hand the raw path to the address policy.
        Err(ProtoError::InvalidRecipientAddress) => {
            return raw_rcpt_path(line).filter(|p| p.contains("@[")).map(Command::Rcpt).ok_or_else(replies::bad_recipient);
        }
        Err(error) => return Err(proto_error(&error)),
    };
    Ok(match request {
        Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
        Request::Helo { host } => Command::Helo(host.into_owned()),
        Request::Mail { from } => Command::Mail(mail(&from)?),
        Request::Rcpt { to } => {
            if to.orcpt.is_some() || to.flags != 0 || to.rrvs != 0 {
                return Err(replies::bad_parameter("(DSN and RRVS are not offered)"));
            }
            // smtp-proto returns "" for both <> (invalid here) and <postmaster> (RFC 5321 §4.5.1).
            match to.address.as_ref() {
                "" if is_postmaster(line) => Command::Rcpt("postmaster".to_string()),
                "" => return Err(replies::bad_recipient()),
                _ => Command::Rcpt(to.address.into_owned()),
            }
        }
        Request::Data => Command::Data,
        Request::Bdat { chunk_size, is_last } => Command::Bdat { size: chunk_size, last: is_last },
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Quit => Command::Quit,
        Request::Help { .. } => Command::Help,
        Request::Vrfy { .. } => Command::Vrfy,
        Request::StartTls => Command::StartTls,
        other => Command::NotImplemented(other.name()),
    })
}

/// True when the RCPT path is `<postmaster>` (any case), as opposed to `<>`.
fn is_postmaster(line: &[u8]) -> bool {
    raw_rcpt_path(line).is_some_and(|p| p.trim().eq_ignore_ascii_case("postmaster"))
}

/// The text between the first '<' and the last '>' of a RCPT line, if it is valid UTF-8.
fn raw_rcpt_path(line: &[u8]) -> Option<String> {
    let start = line.iter().position(|&b| b == b'<')? + 1;
    let end = line.iter().rposition(|&b| b == b'>')?;
    let path = line.get(start..end)?;
    std::str::from_utf8(path).ok().map(str::to_string)
}

fn mail(from: &MailFrom<std::borrow::Cow<'_, str>>) -> Result<MailCommand, Reply> {
    let offered = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
    let defaults = MailFrom::<std::borrow::Cow<'_, str>>::default();
    let extra = from.flags & !offered != 0
        || from.trans_id.is_some()
        || from.env_id.is_some()
        || from.solicit.is_some()
        || from.mtrk.is_some()
        || from.auth.is_some()
        || from.by != defaults.by
        || from.hold_for != defaults.hold_for
        || from.hold_until != defaults.hold_until
        || from.mt_priority != defaults.mt_priority;
    if extra {
        return Err(replies::bad_parameter("(only SIZE, BODY and SMTPUTF8 are offered)"));
    }
    Ok(MailCommand {
        sender: from.address.to_string(),
        declared_size: from.size,
        body_8bit: from.flags & MAIL_BODY_8BITMIME != 0,
        smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
    })
}

fn proto_error(error: &ProtoError) -> Reply {
    match error {
        ProtoError::UnknownCommand => replies::unknown_command(),
        ProtoError::InvalidSenderAddress => replies::bad_sender(),
        ProtoError::InvalidRecipientAddress => replies::bad_recipient(),
        ProtoError::SyntaxError { syntax } => replies::syntax(syntax),
        ProtoError::InvalidParameter { param } => Reply::new(501, (5, 5, 4), format!("Invalid parameter {param}")),
        ProtoError::UnsupportedParameter { param } => {
            let shown: String = param.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
            replies::bad_parameter(&shown)
        }
        ProtoError::ResponseTooLong => replies::line_too_long(),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => replies::syntax("incomplete command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> u16 {
        match parse(line.as_bytes()) {
            Ok(_) => 0,
            Err(reply) => reply.code,
        }
    }

    #[test]
    fn parses_mail_with_offered_parameters() {
        let cmd = parse(b"MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME SMTPUTF8\r\n").unwrap();
        assert_eq!(cmd, Command::Mail(MailCommand { sender: "a@b.test".into(), declared_size: 1000, body_8bit: true, smtputf8: true }));
        assert_eq!(
            parse(b"MAIL FROM:<>\r\n").unwrap(),
            Command::Mail(MailCommand { sender: String::new(), declared_size: 0, body_8bit: false, smtputf8: false })
        );
    }

    #[test]
    fn refuses_parameters_not_offered() {
        assert_eq!(code("MAIL FROM:<a@b.test> RET=FULL\r\n"), 555);
        assert_eq!(code("MAIL FROM:<a@b.test> BODY=BINARYMIME\r\n"), 555);
        assert_eq!(code("MAIL FROM:<a@b.test> REQUIRETLS\r\n"), 555);
        assert_eq!(code("RCPT TO:<a@b.test> NOTIFY=NEVER\r\n"), 555);
        assert_eq!(code("MAIL FROM:<a@b.test> FOO=BAR\r\n"), 555);
    }

    #[test]
    fn errors_map_to_replies() {
        assert_eq!(code("FROB\r\n"), 500);
        assert_eq!(code("MAIL FROM:a@b\r\n"), 501);
        assert_eq!(code("NOOP\0\r\n"), 500);
        assert_eq!(code("EHLO\r\n"), 501);
        assert_eq!(parse(b"AUTH PLAIN\r\n").unwrap(), Command::NotImplemented("AUTH"));
        assert_eq!(parse(b"BDAT 10 LAST\r\n").unwrap(), Command::Bdat { size: 10, last: true });
        assert_eq!(parse(b"RCPT TO:<u@[127.0.0.1]>\r\n").unwrap(), Command::Rcpt("u@[127.0.0.1]".into()));
        assert_eq!(parse(b"RCPT TO:<PostMaster>\r\n").unwrap(), Command::Rcpt("postmaster".into()));
        assert_eq!(code("RCPT TO:<>\r\n"), 501);
        assert_eq!(code("RCPT TO:<a@@b.test>\r\n"), 501);
    }
}
