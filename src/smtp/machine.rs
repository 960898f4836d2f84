//! The SMTP protocol state machine, sans-IO: client bytes and the driver's answers go in, reply
//! bytes and events come out. `session` drives it over a socket; the `smtp_input` fuzz target
//! drives the same machine with made-up answers.
//!
//! [`Machine`] owns everything about a conversation that is protocol rather than policy: the
//! greeting, the HELO/EHLO state, whether TLS is active, the mail transaction (MAIL, the
//! recipients accepted so far), what is being read (command lines, a DATA body, a BDAT chunk),
//! the order commands must come in and the replies that refuse them, RSET, the fresh start after
//! STARTTLS, and the per-connection counters and limits. What needs I/O or policy (filters, DNS,
//! the recipient check, rate limits, the spool, TLS itself) is asked of the driver as an
//! [`Event`], and the driver's answer (an `answer_*` call) becomes the reply.
//!
//! Driving it: [`feed`](Machine::feed) what the client sent, then [`poll`](Machine::poll) until it
//! returns [`Event::Read`] (write [`take_output`](Machine::take_output), then read more under the
//! deadline [`reading`](Machine::reading) calls for) or [`Event::Close`] (write the output, then
//! close). An event that asks a question is answered with its method before the next `poll`;
//! until then `poll` returns [`Event::Waiting`] and looks at no further input.
//!
//! Guarantees:
//! - the first `poll` queues the greeting; replies come out in the order of the commands they
//!   answer, and a command pipelined after one that waits for an answer is not looked at until
//!   the answer is in (a RCPT after a refused MAIL gets 503, never a recipient check);
//! - command order: MAIL needs HELO/EHLO and no open transaction, RCPT needs MAIL, DATA and BDAT
//!   need MAIL (503 5.5.1) and an accepted recipient (554 5.5.1), DATA cannot follow BDAT in one
//!   transaction, STARTTLS is refused inside a transaction or when TLS is already active;
//! - DATA ends only at `CRLF . CRLF`, dot-unstuffed and normalised by [`body`](super::body); a
//!   BDAT chunk is exactly its announced size, read raw, and read (then dropped) even when the
//!   command is refused (RFC 3030), so its bytes are never taken for commands;
//! - after STARTTLS's 220, input not yet processed is dropped and so is anything fed until the
//!   handshake is done (RFC 3207 §4.2, no command injection); after the handshake the session
//!   starts over: no HELO, no transaction;
//! - limits, each answered as before: line length (500, then the line is skipped), commands per
//!   connection (421, close), errors (every 5xx counts; 421 and close once a command's reply
//!   reaches the limit), messages per connection (421 at MAIL, close), declared and actual
//!   message size (552), recipients per message (452);
//! - memory is what was fed and not yet used plus one message body (bounded by the size limit):
//!   an overlong line is dropped as it comes;
//! - nothing panics, whatever the input or the order of calls: a call out of turn is ignored.

use super::address::{self, Mailbox, SenderProblem};
use super::body::{Body, Framing};
use super::command::{self, Command, MailCommand};
use super::line::{Line, LineFramer};
use super::reply::{Reply, replies};

/// The limits and names the machine needs (the session fills them from `[limits]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our name in the greeting, EHLO and 421 replies.
    pub hostname: String,
    /// Longest command line, terminator included.
    pub max_line_length: usize,
    /// Largest message body; announced in EHLO as SIZE.
    pub max_message_size: usize,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Most command lines in one connection.
    pub max_commands: u32,
    /// Most 5xx replies before the connection is closed.
    pub max_errors: u32,
    /// Most accepted messages in one connection.
    pub max_messages: u32,
}

/// How a conversation ended (the connection log line and the `moat_connections_total` label).
/// The machine ends with `Quit`, `TooManyErrors`, `TooManyCommands`, `Shutdown` (a 421 reply),
/// `TlsFailed`, or what the driver reports with [`Machine::timed_out`] and
/// [`Machine::shutting_down`]; the driver adds the endings only it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Quit,
    ClientClosed,
    Timeout,
    TooManyErrors,
    TooManyCommands,
    Shutdown,
    TlsFailed,
    IoError,
    /// Talked before the greeting while the server was under stress.
    Pregreet,
}

impl Ending {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Quit => "quit",
            Ending::ClientClosed => "client_closed",
            Ending::Timeout => "timeout",
            Ending::TooManyErrors => "too_many_errors",
            Ending::TooManyCommands => "too_many_commands",
            Ending::Shutdown => "shutdown",
            Ending::TlsFailed => "tls_failed",
            Ending::IoError => "io_error",
            Ending::Pregreet => "pregreet",
        }
    }
}

/// What the machine reads next, so the driver can pick the deadline and the read size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Command lines (the command timeout; a shutdown may interrupt the wait).
    Command,
    /// A DATA body or a BDAT chunk (the data-block timeout; the message may finish).
    Message,
}

/// The mail transaction in progress (between MAIL and the end of its message). `T` is whatever
/// the driver attaches when it accepts MAIL and each RCPT (the session: the filters' evidence).
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction<T> {
    pub mail: MailCommand,
    /// What the driver attached to MAIL.
    pub mail_data: T,
    /// The accepted recipients, in the order accepted.
    pub recipients: Vec<Recipient<T>>,
}

/// An accepted recipient and what the driver attached to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient<T> {
    pub mailbox: Mailbox,
    pub data: T,
}

/// A complete message, handed to the driver with its transaction.
#[derive(Debug)]
pub struct Message<T> {
    pub transaction: Transaction<T>,
    /// Content bytes received (after normalisation).
    pub size: usize,
    /// The body, finished (CRLF line ends, ending with CRLF unless empty).
    pub content: Vec<u8>,
}

/// The driver's answer to a MAIL or RCPT question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<A> {
    /// Accepted: the machine records it and replies 250.
    Accept(A),
    /// Answered with this reply and nothing recorded (a refusal, or a 250 for a repeated recipient).
    Reply(Reply),
}

/// What [`Machine::poll`] wants the driver to do next.
#[derive(Debug)]
pub enum Event<T> {
    /// Everything fed so far is used: write the output, then read more (see [`Machine::reading`]).
    Read,
    /// Write the output, then close the connection.
    Close(Ending),
    /// HELO or EHLO (the name is [`Machine::helo`], EHLO when [`Machine::esmtp`]); the
    /// transaction was reset. Answer with [`Machine::answer_hello`].
    Hello,
    /// MAIL passed the protocol checks (order, limits, parameters, sender syntax). Answer with
    /// [`Machine::answer_mail`].
    Mail(MailCommand),
    /// RCPT inside a transaction, under the recipient limit: the raw address (or `postmaster`).
    /// Answer with [`Machine::answer_rcpt`]; [`Machine::transaction`] has the sender and the
    /// recipients so far.
    Rcpt(String),
    /// A message ended within its limits: filter it, store it, answer with
    /// [`Machine::answer_message`].
    Message(Message<T>),
    /// The machine refused a recipient itself (the recipient limit); the reply is already queued.
    /// For the log.
    RecipientRefused { sender: String, recipient: String, reply: Reply },
    /// The machine refused a finished message itself (over the size limit, or with NUL bytes);
    /// the reply is already queued. For the log.
    MessageRefused { transaction: Transaction<T>, size: usize, reply: Reply },
    /// STARTTLS, TLS not yet active: answer with [`Machine::answer_starttls`], saying whether TLS
    /// can be offered now.
    StartTls,
    /// The 220 for STARTTLS is queued: write the output, run the TLS handshake, then report with
    /// [`Machine::handshake_done`].
    Handshake,
    /// An earlier question is still unanswered (a driver that answers each event at once never
    /// sees this).
    Waiting,
}

/// What is being read.
#[derive(Debug)]
enum Mode {
    Command,
    Data(Body),
    /// A BDAT chunk: `remaining` bytes still to come; `last` if it ends the message; `refusal`
    /// when the chunk is read only to be thrown away, answered with that reply.
    Chunk {
        remaining: usize,
        last: bool,
        refusal: Option<Reply>,
    },
}

/// The question the machine waits on.
#[derive(Debug)]
enum Awaiting {
    Hello,
    Mail(MailCommand),
    Rcpt,
    Message,
    StartTls,
    /// `announced` once `poll` has returned [`Event::Handshake`].
    Handshake {
        announced: bool,
    },
}

/// Above this, an empty input buffer is given back while waiting for commands.
const KEEP_INPUT: usize = 16 * 1024;

/// One SMTP conversation's protocol state. See the module documentation.
#[derive(Debug)]
pub struct Machine<T> {
    settings: Settings,
    input: Vec<u8>,
    output: Vec<u8>,
    framer: LineFramer,
    mode: Mode,
    greeted: bool,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    tx: Option<Transaction<T>>,
    /// BDAT body in progress (survives between chunks).
    bdat: Option<Body>,
    awaiting: Option<Awaiting>,
    closing: Option<Ending>,
    errors: u32,
    commands: u32,
    messages: u32,
}

impl<T> Machine<T> {
    pub fn new(settings: Settings) -> Machine<T> {
        let framer = LineFramer::new(settings.max_line_length);
        Machine {
            settings,
            input: Vec::new(),
            output: Vec::new(),
            framer,
            mode: Mode::Command,
            greeted: false,
            helo: None,
            esmtp: false,
            tls: false,
            tx: None,
            bdat: None,
            awaiting: None,
            closing: None,
            errors: 0,
            commands: 0,
            messages: 0,
        }
    }

    /// Adds bytes received from the client. Bytes fed after the conversation ended, or between
    /// STARTTLS's 220 and the end of the handshake, are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closing.is_some() || matches!(self.awaiting, Some(Awaiting::Handshake { .. })) {
            return;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The reply bytes queued so far, to be written to the client.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Runs the conversation as far as the input and the answers allow.
    pub fn poll(&mut self) -> Event<T> {
        if let Some(ending) = self.closing {
            return Event::Close(ending);
        }
        match &mut self.awaiting {
            Some(Awaiting::Handshake { announced }) if !*announced => {
                *announced = true;
                return Event::Handshake;
            }
            Some(_) => return Event::Waiting,
            None => {}
        }
        if !self.greeted {
            self.greeted = true;
            self.reply(&replies::greeting(&self.settings.hostname));
        }
        loop {
            if let Some(ending) = self.closing {
                return Event::Close(ending);
            }
            let event = match self.mode {
                Mode::Command => self.next_command(),
                Mode::Data(_) => self.feed_data(),
                Mode::Chunk { .. } => self.feed_chunk(),
            };
            match event {
                Some(Event::Read) => {
                    if matches!(self.mode, Mode::Command) && self.input.is_empty() && self.input.capacity() > KEEP_INPUT {
                        self.input = Vec::new();
                    }
                    return Event::Read;
                }
                Some(event) => return event,
                None => {}
            }
        }
    }

    /// What is read next.
    pub fn reading(&self) -> Reading {
        match self.mode {
            Mode::Command => Reading::Command,
            Mode::Data(_) | Mode::Chunk { .. } => Reading::Message,
        }
    }

    /// The name given in the last HELO/EHLO (none before it and after STARTTLS).
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// True after EHLO (ESMTP), false after HELO.
    pub fn esmtp(&self) -> bool {
        self.esmtp
    }

    /// True once a STARTTLS handshake succeeded.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The open transaction, if any.
    pub fn transaction(&self) -> Option<&Transaction<T>> {
        self.tx.as_ref()
    }

    /// 5xx replies sent so far.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Command lines read so far.
    pub fn commands(&self) -> u32 {
        self.commands
    }

    /// Messages accepted so far (positive end-of-data replies).
    pub fn messages(&self) -> u32 {
        self.messages
    }

    /// The answer to [`Event::Hello`]: whether STARTTLS can be offered on this connection now
    /// (it is offered only while TLS is not active).
    pub fn answer_hello(&mut self, tls_available: bool) {
        if !matches!(self.awaiting, Some(Awaiting::Hello)) {
            return;
        }
        self.awaiting = None;
        let host = &self.settings.hostname;
        let reply = if self.esmtp {
            let mut lines = vec![
                host.clone(),
                "PIPELINING".to_string(),
                format!("SIZE {}", self.settings.max_message_size),
                "8BITMIME".to_string(),
                "SMTPUTF8".to_string(),
                "ENHANCEDSTATUSCODES".to_string(),
                "CHUNKING".to_string(),
            ];
            if tls_available && !self.tls {
                lines.push("STARTTLS".to_string());
            }
            lines.push("HELP".to_string());
            Reply::multi(250, lines)
        } else {
            replies::helo(host)
        };
        self.answer(reply);
    }

    /// The answer to [`Event::Mail`]: accept (a transaction opens, 250) or reply.
    pub fn answer_mail(&mut self, answer: Answer<T>) {
        let mail = match self.awaiting.take() {
            Some(Awaiting::Mail(mail)) => mail,
            other => {
                self.awaiting = other;
                return;
            }
        };
        match answer {
            Answer::Accept(data) => {
                self.tx = Some(Transaction { mail, mail_data: data, recipients: Vec::new() });
                self.answer(replies::sender_ok());
            }
            Answer::Reply(reply) => self.answer(reply),
        }
    }

    /// The answer to [`Event::Rcpt`]: accept the checked mailbox (250) or reply.
    pub fn answer_rcpt(&mut self, answer: Answer<(Mailbox, T)>) {
        if !matches!(self.awaiting, Some(Awaiting::Rcpt)) {
            return;
        }
        self.awaiting = None;
        match answer {
            Answer::Accept((mailbox, data)) => {
                if let Some(tx) = &mut self.tx {
                    tx.recipients.push(Recipient { mailbox, data });
                }
                self.answer(replies::recipient_ok());
            }
            Answer::Reply(reply) => self.answer(reply),
        }
    }

    /// The answer to [`Event::Message`]: the end-of-data reply. A positive reply means the
    /// message was accepted; it counts toward the messages-per-connection limit.
    pub fn answer_message(&mut self, reply: Reply) {
        if !matches!(self.awaiting, Some(Awaiting::Message)) {
            return;
        }
        self.awaiting = None;
        if reply.is_positive() {
            self.messages = self.messages.saturating_add(1);
        }
        self.reply(&reply);
    }

    /// The answer to [`Event::StartTls`]: whether TLS is available. If it is and no transaction
    /// is open, the 220 is queued, unprocessed input is dropped and [`Event::Handshake`] follows.
    pub fn answer_starttls(&mut self, available: bool) {
        if !matches!(self.awaiting, Some(Awaiting::StartTls)) {
            return;
        }
        self.awaiting = None;
        if !available {
            return self.answer(replies::tls_unavailable());
        }
        if self.tx.is_some() {
            return self.answer(replies::bad_sequence("STARTTLS not allowed during a mail transaction"));
        }
        self.reply(&replies::start_tls());
        // RFC 3207 §4.2 / CVE-2011-0411: nothing sent before the handshake may be acted upon.
        self.input.clear();
        self.framer = LineFramer::new(self.settings.max_line_length);
        self.awaiting = Some(Awaiting::Handshake { announced: false });
    }

    /// The end of the handshake after [`Event::Handshake`]: on success the session starts over
    /// (no HELO, no transaction) inside TLS; on failure it ends.
    pub fn handshake_done(&mut self, ok: bool) {
        if !matches!(self.awaiting, Some(Awaiting::Handshake { .. })) {
            return;
        }
        self.awaiting = None;
        if ok {
            self.tls = true;
            self.helo = None;
            self.esmtp = false;
            self.reset_transaction();
        } else {
            self.closing = Some(Ending::TlsFailed);
        }
    }

    /// The driver's deadline passed: queues the 421 and ends the conversation.
    pub fn timed_out(&mut self) {
        self.reply(&replies::timeout(&self.settings.hostname));
        self.closing.get_or_insert(Ending::Timeout);
    }

    /// The server is shutting down: queues the 421 and ends the conversation.
    pub fn shutting_down(&mut self) {
        self.reply(&replies::shutting_down(&self.settings.hostname));
        self.closing.get_or_insert(Ending::Shutdown);
    }

    /// Queues a reply; every 5xx counts as an error.
    fn reply(&mut self, reply: &Reply) {
        if reply.code >= 500 {
            self.errors = self.errors.saturating_add(1);
        }
        reply.write_to(&mut self.output);
    }

    /// Queues the reply to a command line: a 421 closes, and an error count at the limit adds
    /// the 421 that closes.
    fn answer(&mut self, reply: Reply) {
        if reply.closes_connection() && self.closing.is_none() {
            self.closing = Some(Ending::Shutdown);
        }
        self.reply(&reply);
        if self.errors >= self.settings.max_errors && self.closing.is_none() {
            self.reply(&replies::too_many_errors(&self.settings.hostname));
            self.closing = Some(Ending::TooManyErrors);
        }
    }

    fn reset_transaction(&mut self) {
        self.tx = None;
        self.bdat = None;
    }

    /// Handles one buffered command line, if there is one. `None`: go on.
    fn next_command(&mut self) -> Option<Event<T>> {
        let (parsed, used) = match self.framer.next(&self.input) {
            Some((Line::Complete(line), used)) => (Some(command::parse(line)), used),
            Some((Line::TooLong, used)) => (None, used),
            None => {
                if self.framer.overflowing(&self.input) {
                    self.framer.discard();
                    self.input.clear();
                }
                return Some(Event::Read);
            }
        };
        self.input.drain(..used);
        self.commands = self.commands.saturating_add(1);
        if self.commands > self.settings.max_commands {
            self.reply(&replies::too_many_commands(&self.settings.hostname));
            self.closing = Some(Ending::TooManyCommands);
            return None;
        }
        match parsed {
            None => self.answer(replies::line_too_long()),
            Some(Err(reply)) => self.answer(reply),
            Some(Ok(command)) => return self.dispatch(command),
        }
        None
    }

    fn dispatch(&mut self, command: Command) -> Option<Event<T>> {
        let reply = match command {
            Command::Ehlo(name) => return self.hello(name, true),
            Command::Helo(name) => return self.hello(name, false),
            Command::Mail(mail) => return self.mail(mail),
            Command::Rcpt(raw) => return self.rcpt(raw),
            Command::Data => self.data(),
            Command::Bdat { size, last } => {
                self.bdat(size, last);
                return None;
            }
            Command::Rset => {
                self.reset_transaction();
                replies::ok()
            }
            Command::Noop => replies::ok(),
            Command::Quit => {
                self.closing = Some(Ending::Quit);
                replies::bye()
            }
            Command::Help => replies::help(),
            Command::Vrfy => replies::vrfy(),
            Command::StartTls if self.tls => replies::tls_active(),
            Command::StartTls => {
                self.awaiting = Some(Awaiting::StartTls);
                return Some(Event::StartTls);
            }
            Command::NotImplemented(_) => replies::not_implemented(),
        };
        self.answer(reply);
        None
    }

    fn hello(&mut self, name: String, esmtp: bool) -> Option<Event<T>> {
        self.reset_transaction();
        self.helo = Some(name);
        self.esmtp = esmtp;
        self.awaiting = Some(Awaiting::Hello);
        Some(Event::Hello)
    }

    fn mail(&mut self, mail: MailCommand) -> Option<Event<T>> {
        let refusal = if self.helo.is_none() {
            Some(replies::bad_sequence("Send EHLO/HELO first"))
        } else if self.tx.is_some() {
            Some(replies::bad_sequence("Sender already specified"))
        } else if self.messages >= self.settings.max_messages {
            self.closing = Some(Ending::TooManyCommands);
            Some(replies::too_many_messages(&self.settings.hostname))
        } else if mail.declared_size > self.settings.max_message_size {
            Some(replies::size_exceeded())
        } else if (mail.smtputf8 || mail.body_8bit) && !self.esmtp {
            Some(replies::bad_parameter("(ESMTP parameters need EHLO)"))
        } else {
            match address::check_sender(&mail.sender, mail.smtputf8) {
                Ok(_) => None,
                Err(SenderProblem::NeedsSmtpUtf8) => Some(replies::needs_smtputf8()),
                Err(SenderProblem::Syntax) => Some(replies::bad_sender()),
            }
        };
        if let Some(reply) = refusal {
            self.answer(reply);
            return None;
        }
        self.awaiting = Some(Awaiting::Mail(mail.clone()));
        Some(Event::Mail(mail))
    }

    fn rcpt(&mut self, raw: String) -> Option<Event<T>> {
        let Some(tx) = &self.tx else {
            self.answer(replies::bad_sequence("Need MAIL before RCPT"));
            return None;
        };
        if tx.recipients.len() >= self.settings.max_recipients {
            let sender = tx.mail.sender.clone();
            let reply = replies::too_many_recipients();
            self.answer(reply.clone());
            return Some(Event::RecipientRefused { sender, recipient: raw, reply });
        }
        self.awaiting = Some(Awaiting::Rcpt);
        Some(Event::Rcpt(raw))
    }

    fn data(&mut self) -> Reply {
        match &self.tx {
            None => replies::bad_sequence("Need MAIL before DATA"),
            Some(tx) if tx.recipients.is_empty() => replies::no_valid_recipients(),
            Some(_) if self.bdat.is_some() => replies::bad_sequence("DATA cannot follow BDAT"),
            Some(_) => {
                self.mode = Mode::Data(Body::new(Framing::Data, self.settings.max_message_size));
                replies::start_data()
            }
        }
    }

    /// BDAT: the chunk's bytes follow the command line directly; the reply comes after them.
    fn bdat(&mut self, size: usize, last: bool) {
        let refusal = match &self.tx {
            None => Some(replies::bad_sequence("Need MAIL before BDAT")),
            Some(tx) if tx.recipients.is_empty() => Some(replies::no_valid_recipients()),
            Some(_) => None,
        };
        if refusal.is_none() {
            let max = self.settings.max_message_size;
            self.bdat.get_or_insert_with(|| Body::new(Framing::Bdat, max));
        }
        self.mode = Mode::Chunk { remaining: size, last, refusal };
    }

    fn feed_data(&mut self) -> Option<Event<T>> {
        let Mode::Data(body) = &mut self.mode else { return None };
        if self.input.is_empty() {
            return Some(Event::Read);
        }
        let used = body.feed(&self.input);
        self.input.drain(..used);
        if !body.is_done() {
            return Some(Event::Read);
        }
        let Mode::Data(body) = std::mem::replace(&mut self.mode, Mode::Command) else { return None };
        self.finish_message(body)
    }

    fn feed_chunk(&mut self) -> Option<Event<T>> {
        let Mode::Chunk { remaining, last, refusal } = &mut self.mode else { return None };
        let take = (*remaining).min(self.input.len());
        if refusal.is_none()
            && let Some(body) = &mut self.bdat
        {
            body.feed(&self.input[..take]);
        }
        self.input.drain(..take);
        *remaining -= take;
        if *remaining > 0 {
            return Some(Event::Read);
        }
        let (last, refusal) = (*last, refusal.take());
        self.mode = Mode::Command;
        match refusal {
            Some(reply) => {
                self.reply(&reply);
                None
            }
            None => self.end_of_chunk(last),
        }
    }

    fn end_of_chunk(&mut self, last: bool) -> Option<Event<T>> {
        if self.bdat.as_ref().is_some_and(Body::too_big) {
            self.reset_transaction();
            self.reply(&replies::size_exceeded());
            return None;
        }
        if !last {
            let size = self.bdat.as_ref().map_or(0, Body::size);
            self.reply(&replies::chunk_ok(size));
            return None;
        }
        match self.bdat.take() {
            Some(body) => self.finish_message(body),
            None => {
                self.reply(&replies::bad_sequence("Need MAIL before BDAT"));
                None
            }
        }
    }

    /// The end of a message: the transaction goes with it to the driver, or is refused here.
    fn finish_message(&mut self, body: Body) -> Option<Event<T>> {
        let Some(transaction) = self.tx.take() else {
            self.reply(&replies::bad_sequence("Need MAIL before DATA"));
            return None;
        };
        self.bdat = None;
        let size = body.size();
        let refusal = if body.too_big() {
            Some(replies::size_exceeded())
        } else if body.has_nul() {
            Some(replies::nul_in_message())
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.reply(&reply);
            return Some(Event::MessageRefused { transaction, size, reply });
        }
        self.awaiting = Some(Awaiting::Message);
        Some(Event::Message(Message { transaction, size, content: body.finish() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            hostname: "mx.test".into(),
            max_line_length: 512,
            max_message_size: 1000,
            max_recipients: 3,
            max_commands: 100,
            max_errors: 5,
            max_messages: 3,
        }
    }

    /// How the test driver answers the machine's questions.
    #[derive(Clone, Copy)]
    struct Driver {
        tls_available: bool,
        handshake_ok: bool,
        refuse_mail: bool,
    }

    impl Default for Driver {
        fn default() -> Driver {
            Driver { tls_available: true, handshake_ok: true, refuse_mail: false }
        }
    }

    /// What a run produced: the last line of every reply ("250 2.1.0 Sender OK"), the events
    /// in order (questions and notices), and the messages handed over.
    #[derive(Debug, Default)]
    struct Run {
        replies: Vec<String>,
        events: Vec<String>,
        messages: Vec<Vec<u8>>,
        closed: Option<Ending>,
    }

    impl Run {
        fn codes(&self) -> Vec<u16> {
            self.replies.iter().map(|r| r[..3].parse().unwrap_or(0)).collect()
        }
    }

    /// Final reply lines in `output`.
    fn reply_lines(output: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(output)
            .split_terminator("\r\n")
            .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
            .map(str::to_string)
            .collect()
    }

    impl Driver {
        /// Feeds `input` in reads of `cut` bytes and answers until the machine wants more input
        /// after the last read, or closes.
        fn run(self, m: &mut Machine<()>, input: &[u8], cut: usize) -> Run {
            let mut run = Run::default();
            let mut output = Vec::new();
            let mut reads = input.chunks(cut.max(1));
            loop {
                match m.poll() {
                    Event::Read => match reads.next() {
                        Some(bytes) => m.feed(bytes),
                        None => break,
                    },
                    Event::Close(ending) => {
                        run.closed = Some(ending);
                        break;
                    }
                    Event::Hello => {
                        run.events.push(format!("hello {}", m.helo().unwrap_or("")));
                        m.answer_hello(self.tls_available);
                    }
                    Event::Mail(mail) => {
                        run.events.push(format!("mail {}", mail.sender));
                        m.answer_mail(if self.refuse_mail { Answer::Reply(replies::rate_limited()) } else { Answer::Accept(()) });
                    }
                    Event::Rcpt(raw) => {
                        run.events.push(format!("rcpt {raw}"));
                        let answer = match address::check_recipient(&raw, true, |d| d.ends_with("test")) {
                            Ok(mailbox) => Answer::Accept((mailbox, ())),
                            Err(_) => Answer::Reply(replies::relay_denied()),
                        };
                        m.answer_rcpt(answer);
                    }
                    Event::Message(message) => {
                        run.events.push(format!("message {}", message.transaction.recipients.len()));
                        run.messages.push(message.content);
                        m.answer_message(replies::queued("ID"));
                    }
                    Event::RecipientRefused { recipient, reply, .. } => run.events.push(format!("refused {recipient} {}", reply.code)),
                    Event::MessageRefused { size, reply, .. } => run.events.push(format!("message refused {size} {}", reply.code)),
                    Event::StartTls => {
                        run.events.push("starttls".into());
                        m.answer_starttls(self.tls_available);
                    }
                    Event::Handshake => {
                        run.events.push("handshake".into());
                        output.extend(m.take_output());
                        // What the client sends while the handshake runs is not SMTP.
                        m.feed(b"NOOP\r\n");
                        m.handshake_done(self.handshake_ok);
                    }
                    Event::Waiting => panic!("the test driver answers every question"),
                }
            }
            output.extend(m.take_output());
            run.replies = reply_lines(&output);
            run
        }
    }

    fn session(input: &str) -> Run {
        Driver::default().run(&mut Machine::new(settings()), input.as_bytes(), usize::MAX)
    }

    const OPEN: &str = "EHLO c.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.test>\r\n";

    #[test]
    fn greeting_comes_first_and_only_on_the_first_poll() {
        let mut m: Machine<()> = Machine::new(settings());
        assert!(matches!(m.poll(), Event::Read));
        assert!(matches!(m.poll(), Event::Read));
        assert_eq!(m.take_output(), b"220 mx.test ESMTP moat\r\n");
    }

    #[test]
    fn commands_out_of_order_get_503() {
        let run = session("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.test>\r\nDATA\r\nBDAT 3 LAST\r\nabcNOOP\r\n");
        assert_eq!(
            run.replies[1..],
            [
                "503 5.5.1 Send EHLO/HELO first",
                "503 5.5.1 Need MAIL before RCPT",
                "503 5.5.1 Need MAIL before DATA",
                "503 5.5.1 Need MAIL before BDAT",
                "250 2.0.0 Ok",
            ]
        );
        assert!(run.events.is_empty(), "no question for a refused command: {:?}", run.events);
        let run = session("HELO c.test\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<b@b.example>\r\nDATA\r\n");
        assert_eq!(
            run.replies[1..],
            ["250 mx.test", "250 2.1.0 Sender OK", "503 5.5.1 Sender already specified", "554 5.5.1 No valid recipients"]
        );
    }

    #[test]
    fn a_pipelined_command_waits_for_the_answer_before_it() {
        let mut m: Machine<()> = Machine::new(settings());
        m.feed(OPEN.as_bytes());
        assert!(matches!(m.poll(), Event::Hello));
        assert!(matches!(m.poll(), Event::Waiting));
        m.answer_mail(Answer::Accept(()));
        assert!(m.transaction().is_none(), "an answer out of turn is ignored");
        m.answer_hello(false);
        assert!(matches!(m.poll(), Event::Mail(_)));
        m.answer_mail(Answer::Reply(replies::rate_limited()));
        // The RCPT after a refused MAIL is refused by the machine, never asked about.
        assert!(matches!(m.poll(), Event::Read));
        let replies = reply_lines(&m.take_output());
        assert_eq!(replies[2..], ["450 4.7.1 Too many messages, slow down and try again later", "503 5.5.1 Need MAIL before RCPT"]);
    }

    #[test]
    fn ehlo_lists_the_extensions_and_helo_refuses_esmtp_parameters() {
        let mut m: Machine<()> = Machine::new(settings());
        let run = Driver::default().run(&mut m, b"EHLO c.test\r\n", usize::MAX);
        assert_eq!(run.replies, ["220 mx.test ESMTP moat", "250 HELP"]);
        let mut m: Machine<()> = Machine::new(settings());
        m.feed(b"EHLO c.test\r\n");
        let _ = m.poll();
        m.answer_hello(true);
        let ehlo = String::from_utf8(m.take_output()).unwrap_or_default();
        assert!(ehlo.ends_with(
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-STARTTLS\r\n250 HELP\r\n"
        ));
        let run = session("HELO c.test\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\nMAIL FROM:<a@b.example> SIZE=1001\r\n");
        assert_eq!(run.codes()[2..], [555, 552]);
        assert!(!run.events.iter().any(|e| e.starts_with("mail")));
    }

    #[test]
    fn rset_and_ehlo_end_the_transaction() {
        let run = session(&format!("{OPEN}RSET\r\nRCPT TO:<u@x.test>\r\nMAIL FROM:<a@b.example>\r\nEHLO again.test\r\nDATA\r\n"));
        assert_eq!(run.codes(), [220, 250, 250, 250, 250, 503, 250, 250, 503]);
    }

    #[test]
    fn data_ends_at_crlf_dot_crlf_only_and_is_unstuffed() {
        let body = "Subject: x\r\n\r\n..stuffed\r\nbare\n.\nlf\r\n.\rcr\r\n..\r\n.\r\nNOOP\r\n";
        for cut in [1, 2, 7, usize::MAX] {
            let mut m: Machine<()> = Machine::new(settings());
            let run = Driver::default().run(&mut m, format!("{OPEN}DATA\r\n{body}").as_bytes(), cut);
            assert_eq!(run.codes(), [220, 250, 250, 250, 354, 250, 250], "cut {cut}");
            assert_eq!(run.messages, [b"Subject: x\r\n\r\n.stuffed\r\nbare\r\n.\r\nlf\r\n.\r\ncr\r\n.\r\n".to_vec()], "cut {cut}");
            assert_eq!(m.messages(), 1);
        }
        // An empty message, and the reading mode while a body comes in.
        let mut m: Machine<()> = Machine::new(settings());
        let run = Driver::default().run(&mut m, format!("{OPEN}DATA\r\nSubject: half").as_bytes(), usize::MAX);
        assert_eq!(run.codes().last(), Some(&354));
        assert_eq!(m.reading(), Reading::Message);
        let run = Driver::default().run(&mut m, b"\r\n.\r\nDATA\r\n", usize::MAX);
        assert_eq!(run.replies, ["250 2.0.0 Ok: queued as ID", "503 5.5.1 Need MAIL before DATA"]);
        assert_eq!(m.reading(), Reading::Command);
        let run = session(&format!("{OPEN}DATA\r\n.\r\n"));
        assert_eq!(run.messages, [Vec::<u8>::new()]);
    }

    #[test]
    fn oversized_or_nul_messages_are_refused_by_the_machine() {
        let big = "x".repeat(1200);
        let run = session(&format!("{OPEN}DATA\r\n{big}\r\n.\r\nRCPT TO:<u@x.test>\r\n"));
        assert_eq!(run.replies[5..], ["552 5.3.4 Message size exceeds fixed maximum message size", "503 5.5.1 Need MAIL before RCPT"]);
        assert_eq!(run.events.last().map(String::as_str), Some("message refused 1202 552"));
        let run = session(&format!("{OPEN}DATA\r\na\0b\r\n.\r\n"));
        assert_eq!(run.codes()[5..], [554]);
        assert!(run.messages.is_empty());
    }

    #[test]
    fn bdat_chunks_make_one_message() {
        let input = format!("{OPEN}BDAT 6\r\nab\r\n.\rBDAT 0\r\nBDAT 4 LAST\r\ncd\r\nNOOP\r\n");
        for cut in [1, 3, usize::MAX] {
            let run = Driver::default().run(&mut Machine::new(settings()), input.as_bytes(), cut);
            assert_eq!(
                run.replies[4..],
                ["250 2.0.0 5 octets received", "250 2.0.0 5 octets received", "250 2.0.0 Ok: queued as ID", "250 2.0.0 Ok"],
                "cut {cut}"
            );
            // The bare CR is counted once the next byte shows it is one.
            assert_eq!(run.messages, [b"ab\r\n.\r\ncd\r\n".to_vec()], "BDAT is raw, bare CR normalised");
        }
        let run = session(&format!("{OPEN}BDAT 3\r\nabcBDAT 0 LAST\r\n"));
        assert_eq!(run.codes()[4..], [250, 250]);
        assert_eq!(run.messages, [b"abc\r\n".to_vec()]);
        let run = session(&format!("{OPEN}BDAT 0 LAST\r\nQUIT\r\n"));
        assert_eq!(run.messages, [Vec::<u8>::new()], "BDAT 0 LAST alone is an empty message");
        assert_eq!(run.closed, Some(Ending::Quit));
    }

    #[test]
    fn a_refused_chunk_is_read_and_dropped() {
        let run = session(
            "EHLO c.test\r\nMAIL FROM:<a@b.example>\r\nBDAT 20\r\nRCPT TO:<x@x.test>\r\nRCPT TO:<u@x.test>\r\nBDAT 2 LAST\r\nokQUIT\r\n",
        );
        assert_eq!(
            run.replies[2..],
            [
                "250 2.1.0 Sender OK",
                "554 5.5.1 No valid recipients",
                "250 2.1.5 Recipient OK",
                "250 2.0.0 Ok: queued as ID",
                "221 2.0.0 Bye"
            ]
        );
        assert_eq!(run.messages, [b"ok\r\n".to_vec()]);
        assert_eq!(run.events, ["hello c.test", "mail a@b.example", "rcpt u@x.test", "message 1"], "the chunk's bytes are never commands");
    }

    #[test]
    fn data_and_bdat_do_not_mix_in_one_transaction() {
        let run = session(&format!("{OPEN}BDAT 2\r\nabDATA\r\nBDAT 1 LAST\r\nc"));
        assert_eq!(run.replies[4..], ["250 2.0.0 2 octets received", "503 5.5.1 DATA cannot follow BDAT", "250 2.0.0 Ok: queued as ID"]);
        assert_eq!(run.messages, [b"abc\r\n".to_vec()]);
        // After a DATA message, BDAT starts the next one cleanly (and the other way round).
        let run = session(&format!(
            "{OPEN}DATA\r\none\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<u@x.test>\r\nBDAT 3 LAST\r\ntwoMAIL FROM:<>\r\nRCPT TO:<u@x.test>\r\nDATA\r\nthree\r\n.\r\n"
        ));
        assert_eq!(run.messages, [b"one\r\n".to_vec(), b"two\r\n".to_vec(), b"three\r\n".to_vec()]);
    }

    #[test]
    fn an_oversized_bdat_chunk_ends_the_transaction() {
        let chunk = "y".repeat(1100);
        let run = session(&format!("{OPEN}BDAT 1100\r\n{chunk}RCPT TO:<u@x.test>\r\n"));
        assert_eq!(run.replies[4..], ["552 5.3.4 Message size exceeds fixed maximum message size", "503 5.5.1 Need MAIL before RCPT"]);
        assert!(!run.events.iter().any(|e| e.starts_with("message")), "no message event for an oversized chunk: {:?}", run.events);
    }

    #[test]
    fn starttls_drops_pipelined_input_and_starts_over() {
        let mut m: Machine<()> = Machine::new(settings());
        let run = Driver::default().run(&mut m, b"EHLO c.test\r\nSTARTTLS\r\nMAIL FROM:<evil@b.example>\r\n", usize::MAX);
        assert_eq!(run.replies, ["220 mx.test ESMTP moat", "250 HELP", "220 2.0.0 Ready to start TLS"]);
        assert_eq!(
            run.events,
            ["hello c.test", "starttls", "handshake"],
            "the injected MAIL and the NOOP sent during the handshake are gone"
        );
        assert!(m.tls() && m.helo().is_none() && m.commands() == 2);
        let run = Driver::default().run(&mut m, b"MAIL FROM:<a@b.example>\r\nEHLO c.test\r\nSTARTTLS\r\n", usize::MAX);
        assert_eq!(run.replies, ["503 5.5.1 Send EHLO/HELO first", "250 HELP", "503 5.5.1 TLS already active"]);
        // Inside TLS, EHLO no longer offers STARTTLS even when the driver could do it.
        m.feed(b"EHLO c.test\r\n");
        assert!(matches!(m.poll(), Event::Hello));
        m.answer_hello(true);
        let ehlo = String::from_utf8_lossy(&m.take_output()).into_owned();
        assert!(ehlo.starts_with("250-mx.test\r\n") && !ehlo.contains("STARTTLS"), "{ehlo}");
    }

    #[test]
    fn starttls_refused_when_unavailable_or_in_a_transaction_or_failing() {
        let unavailable = Driver { tls_available: false, ..Driver::default() };
        let run = unavailable.run(&mut Machine::new(settings()), b"EHLO c.test\r\nSTARTTLS\r\nNOOP\r\n", usize::MAX);
        assert_eq!(run.replies[2..], ["454 4.7.0 TLS not available", "250 2.0.0 Ok"]);
        let run = session(&format!("{OPEN}STARTTLS\r\nNOOP\r\n"));
        assert_eq!(run.replies[4..], ["503 5.5.1 STARTTLS not allowed during a mail transaction", "250 2.0.0 Ok"]);
        let failing = Driver { handshake_ok: false, ..Driver::default() };
        let run = failing.run(&mut Machine::new(settings()), b"EHLO c.test\r\nSTARTTLS\r\n", usize::MAX);
        assert_eq!(run.closed, Some(Ending::TlsFailed));
    }

    #[test]
    fn quit_closes_and_ignores_what_follows() {
        let run = session("QUIT\r\nNOOP\r\n");
        assert_eq!(run.replies, ["220 mx.test ESMTP moat", "221 2.0.0 Bye"]);
        assert_eq!(run.closed, Some(Ending::Quit));
    }

    #[test]
    fn overlong_lines_are_refused_once_and_skipped() {
        let long = format!("NOOP {}\r\nNOOP\r\n", "a".repeat(2000));
        for cut in [1, 100, usize::MAX] {
            let run = Driver::default().run(&mut Machine::new(settings()), long.as_bytes(), cut);
            assert_eq!(run.replies[1..], ["500 5.5.2 Line too long", "250 2.0.0 Ok"], "cut {cut}");
        }
    }

    #[test]
    fn errors_over_the_limit_close_after_the_reply_that_reaches_it() {
        let run = session("A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n");
        assert_eq!(run.codes(), [220, 500, 500, 500, 500, 500, 421]);
        assert_eq!(run.replies.last().map(String::as_str), Some("421 4.7.0 mx.test Too many errors, closing connection"));
        assert_eq!(run.closed, Some(Ending::TooManyErrors));
        // A 5xx at the end of a message counts but closes only after the next command's reply.
        let big = "x".repeat(1200);
        let run = session(&format!("A\r\nB\r\nC\r\nD\r\n{OPEN}DATA\r\n{big}\r\n.\r\nNOOP\r\nNOOP\r\n"));
        assert_eq!(run.codes()[5..], [250, 250, 250, 354, 552, 250, 421]);
    }

    #[test]
    fn commands_over_the_limit_close() {
        let mut s = settings();
        s.max_commands = 2;
        let run = Driver::default().run(&mut Machine::new(s), b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n", usize::MAX);
        assert_eq!(run.replies[1..], ["250 2.0.0 Ok", "250 2.0.0 Ok", "421 4.7.0 mx.test Too many commands, closing connection"]);
        assert_eq!(run.closed, Some(Ending::TooManyCommands));
    }

    #[test]
    fn recipients_over_the_limit_get_452_and_a_notice() {
        let run =
            session(&format!("{OPEN}RCPT TO:<v@x.test>\r\nRCPT TO:<w@x.test>\r\nRCPT TO:<z@x.test>\r\nRCPT TO:<u@elsewhere.example>\r\n"));
        assert_eq!(run.codes()[3..], [250, 250, 250, 452, 452]);
        assert_eq!(run.events.last().map(String::as_str), Some("refused u@elsewhere.example 452"));
    }

    #[test]
    fn messages_over_the_limit_close_at_mail() {
        let one = "MAIL FROM:<a@b.example>\r\nRCPT TO:<u@x.test>\r\nDATA\r\nm\r\n.\r\n";
        let run = session(&format!("EHLO c.test\r\n{one}{one}{one}{one}"));
        assert_eq!(run.messages.len(), 3);
        assert_eq!(run.replies.last().map(String::as_str), Some("421 4.7.0 mx.test Too many messages in one connection, closing"));
        assert_eq!(run.closed, Some(Ending::TooManyCommands));
        // A message the driver refuses does not count.
        let mut m: Machine<()> = Machine::new(settings());
        m.feed(format!("{OPEN}DATA\r\n.\r\n").as_bytes());
        loop {
            match m.poll() {
                Event::Hello => m.answer_hello(false),
                Event::Mail(_) => m.answer_mail(Answer::Accept(())),
                Event::Rcpt(_) => m.answer_rcpt(Answer::Accept((Mailbox { local: "u".into(), domain: "x.test".into() }, ()))),
                Event::Message(message) => {
                    assert_eq!(message.transaction.recipients.len(), 1);
                    m.answer_message(replies::rejected_spam("X"));
                }
                _ => break,
            }
        }
        assert_eq!((m.messages(), m.errors()), (0, 1));
        assert!(reply_lines(&m.take_output()).ends_with(&["550 5.7.1 Message rejected as spam (X)".to_string()]));
    }

    #[test]
    fn a_repeated_recipient_is_answered_without_being_added() {
        let mut m: Machine<()> = Machine::new(settings());
        m.feed(OPEN.as_bytes());
        let mut asked = 0;
        loop {
            match m.poll() {
                Event::Hello => m.answer_hello(false),
                Event::Mail(_) => m.answer_mail(Answer::Accept(())),
                Event::Rcpt(_) => {
                    asked += 1;
                    m.answer_rcpt(Answer::Reply(replies::recipient_ok()));
                }
                _ => break,
            }
        }
        assert_eq!(asked, 1);
        assert_eq!(m.transaction().map(|tx| tx.recipients.len()), Some(0));
    }

    #[test]
    fn a_421_answer_closes_and_timeouts_say_so() {
        let mut m: Machine<()> = Machine::new(settings());
        m.feed(b"EHLO c.test\r\nMAIL FROM:<a@b.example>\r\n");
        assert!(matches!(m.poll(), Event::Hello));
        m.answer_hello(false);
        assert!(matches!(m.poll(), Event::Mail(_)));
        m.answer_mail(Answer::Reply(replies::shutting_down("mx.test")));
        assert!(matches!(m.poll(), Event::Close(Ending::Shutdown)));
        let mut m: Machine<()> = Machine::new(settings());
        m.timed_out();
        assert_eq!(m.take_output(), b"421 4.4.2 mx.test Timeout, closing connection\r\n");
        assert!(matches!(m.poll(), Event::Close(Ending::Timeout)));
    }

    #[test]
    fn how_the_input_is_cut_changes_nothing() {
        let big = "z".repeat(1500);
        let input = format!(
            "EHLO c.test\r\nBOGUS\r\n{OPEN}RCPT TO:<x@elsewhere.example>\r\nDATA\r\nhi\n.\n\r\n..\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<u@x.test>\r\nBDAT 5\r\n12\r\n3BDAT 1500 LAST\r\n{big}NOOP {big}\r\nRSET\r\nQUIT\r\n"
        );
        let whole = Driver::default().run(&mut Machine::new(settings()), input.as_bytes(), usize::MAX);
        assert_eq!(whole.closed, Some(Ending::Quit));
        for cut in 1..40 {
            let run = Driver::default().run(&mut Machine::new(settings()), input.as_bytes(), cut);
            assert_eq!((&run.replies, &run.events, &run.messages), (&whole.replies, &whole.events, &whole.messages), "cut {cut}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let words: [&[u8]; 12] = [
            b"EHLO a.test\r\n",
            b"MAIL FROM:<a@b.test>\r\n",
            b"RCPT TO:<u@x.test>\r\n",
            b"DATA\r\n",
            b"BDAT 3",
            b" LAST",
            b"\r\n",
            b".",
            b"\n",
            b"\r",
            b"STARTTLS\r\n",
            b"\0",
        ];
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..40 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.extend_from_slice(words[(state % 12) as usize]);
            }
            let driver = Driver { tls_available: state & 1 == 0, handshake_ok: state & 2 == 0, refuse_mail: state & 4 == 0 };
            let _ = driver.run(&mut Machine::new(settings()), &input, (state % 17) as usize + 1);
        }
    }
}
