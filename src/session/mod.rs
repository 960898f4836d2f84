//! The async SMTP session: one per connection. It reads, feeds the sans-IO core (`smtp`), applies
//! deadlines and limits, and writes replies. Phase handlers live beside it: `rcpt.rs` (recipient
//! policy and verification) and `data.rs` (end of message: Received header, spool, 250).
//!
//! Guarantees:
//! - every read has a deadline (command or data-block timeout) and the input buffer is bounded;
//! - replies to pipelined commands are sent in order, flushed before we wait for more input;
//! - bytes pipelined after STARTTLS are discarded (command injection defence) and the session
//!   restarts from scratch after the handshake;
//! - `250` after the end of data is sent only after the spool has fsynced the message;
//! - logs carry envelope metadata only, never a subject or body;
//! - the filter chain runs at every phase (connect, HELO, MAIL, RCPT, end of data) and its
//!   evidence accumulates; `scoring::Scorer` turns it into one verdict per recipient.

mod conn;
mod data;
mod deferral;
mod disposition;
mod rcpt;

pub use conn::Conn;

use crate::app::App;
use crate::config::Config;
use crate::filter::{Facts, Phase};
use crate::scoring::Scorer;
use crate::smtp::address::{self, Mailbox};
use crate::smtp::body::{Body, Framing};
use crate::smtp::command::{self, Command, MailCommand};
use crate::smtp::line::{Line, LineFramer};
use crate::smtp::reply::{Reply, replies};
use crate::verdict::{Evidence, Symbol};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The mail transaction in progress (between MAIL and the end of data).
#[derive(Debug)]
struct Transaction {
    mail: MailCommand,
    recipients: Vec<Mailbox>,
    /// What the MAIL phase's filters found.
    evidence: Evidence,
    /// What the RCPT phase's filters found, index-aligned with `recipients`.
    rcpt_evidence: Vec<Evidence>,
}

/// What the session reads next.
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

/// How a connection ended, for the connection log line.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Quit,
    ClientClosed,
    Timeout,
    TooManyErrors,
    TooManyCommands,
    Shutdown,
    TlsFailed,
    IoError,
}

impl Ending {
    /// The metric label.
    fn as_str(self) -> &'static str {
        match self {
            Ending::Quit => "quit",
            Ending::ClientClosed => "client_closed",
            Ending::Timeout => "timeout",
            Ending::TooManyErrors => "too_many_errors",
            Ending::TooManyCommands => "too_many_commands",
            Ending::Shutdown => "shutdown",
            Ending::TlsFailed => "tls_failed",
            Ending::IoError => "io_error",
        }
    }
}

/// Read at most this much at a time while a message streams in.
const READ_CHUNK: usize = 64 * 1024;
/// Read size while waiting for commands: keeps idle connections small.
const COMMAND_READ: usize = 4 * 1024;

/// Per-listener settings a session needs.
#[derive(Debug, Clone, Copy)]
pub struct ListenerInfo {
    pub starttls: bool,
}

pub struct Session {
    shared: Arc<App>,
    listener: ListenerInfo,
    config: Arc<Config>,
    scorer: Arc<Scorer>,
    /// Evidence from the connection (connect phase, pregreet) and from the last HELO.
    connect_evidence: Evidence,
    helo_evidence: Evidence,
    peer: IpAddr,
    conn: Conn,
    input: Vec<u8>,
    output: Vec<u8>,
    framer: LineFramer,
    mode: Mode,
    helo: Option<String>,
    esmtp: bool,
    tx: Option<Transaction>,
    /// BDAT body in progress (survives between chunks).
    bdat: Option<Body>,
    errors: u32,
    commands: u32,
    messages: u32,
    closing: Option<Ending>,
}

impl Session {
    /// `input` holds bytes already read (after a PROXY header).
    pub fn new(shared: Arc<App>, listener: ListenerInfo, peer: SocketAddr, conn: Conn, input: Vec<u8>) -> Session {
        let config = shared.config.load_full();
        let framer = LineFramer::new(config.limits.max_line_length);
        let scorer = shared.scorer.load_full();
        Session {
            shared,
            listener,
            config,
            scorer,
            connect_evidence: Evidence::default(),
            helo_evidence: Evidence::default(),
            peer: peer.ip(),
            conn,
            input,
            output: Vec::new(),
            framer,
            mode: Mode::Command,
            helo: None,
            esmtp: false,
            tx: None,
            bdat: None,
            errors: 0,
            commands: 0,
            messages: 0,
            closing: None,
        }
    }

    /// Runs the whole conversation; never panics, always logs one line at the end.
    pub async fn run(mut self) {
        let started = Instant::now();
        let limit = self.config.timeouts.session.duration();
        let ending = match tokio::time::timeout(limit, self.converse()).await {
            Ok(ending) => ending,
            Err(_) => {
                let host = self.config.hostname.clone();
                self.reply(replies::timeout(&host));
                let _ = self.flush().await;
                Ending::Timeout
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.shutdown()).await;
        metrics::counter!("moat_connections_total", "ending" => ending.as_str()).increment(1);
        tracing::info!(
            event = "connection",
            client_ip = %self.peer,
            helo = self.helo.as_deref().unwrap_or(""),
            tls = self.conn.is_tls(),
            messages = self.messages,
            errors = self.errors,
            duration_ms = started.elapsed().as_millis() as u64,
            ending = ?ending,
        );
    }

    async fn converse(&mut self) -> Ending {
        let host = self.config.hostname.clone();
        if let Err(ending) = self.before_greeting().await {
            return ending;
        }
        self.reply(replies::greeting(&host));
        loop {
            self.process_input().await;
            if self.flush().await.is_err() {
                return Ending::IoError;
            }
            if let Some(ending) = self.closing {
                return ending;
            }
            if let Err(ending) = self.read_more().await {
                if matches!(ending, Ending::Timeout | Ending::Shutdown) {
                    let reply = if matches!(ending, Ending::Timeout) { replies::timeout(&host) } else { replies::shutting_down(&host) };
                    self.reply(reply);
                    let _ = self.flush().await;
                }
                return ending;
            }
        }
    }

    /// The connect phase: runs the connect filters and, when configured, waits before the
    /// greeting to catch clients that talk first (both at once, so the wait hides DNS time).
    async fn before_greeting(&mut self) -> Result<(), Ending> {
        let scorer = self.scorer.clone();
        let facts = self.facts();
        let wait = self.config.timeouts.pregreet.duration();
        let (evidence, pregreet) = tokio::join!(scorer.run(Phase::Connect, &facts), self.pregreet(wait));
        self.connect_evidence = evidence;
        if pregreet? {
            tracing::info!(event = "pregreet", client_ip = %self.peer);
            self.connect_evidence.add(Symbol::new("PREGREET"));
        }
        Ok(())
    }

    /// Waits up to `wait` for the client to speak before our greeting. True if it did; what it
    /// sent stays in the input and is answered after the greeting.
    async fn pregreet(&mut self, wait: Duration) -> Result<bool, Ending> {
        if wait.is_zero() {
            return Ok(false);
        }
        let mut buf = vec![0u8; COMMAND_READ];
        match tokio::time::timeout(wait, self.conn.read(&mut buf)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Err(Ending::ClientClosed),
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Ok(Err(_)) => Err(Ending::IoError),
        }
    }

    /// What the filters may know at this point of the session.
    fn facts(&self) -> Facts {
        self.facts_with(self.tx.as_ref())
    }

    fn facts_with(&self, tx: Option<&Transaction>) -> Facts {
        Facts {
            client_ip: Some(self.peer),
            helo: self.helo.clone(),
            tls: self.conn.is_tls(),
            sender: tx.map(|tx| tx.mail.sender.clone()),
            rcpt: None,
            recipients: tx.map(|tx| tx.recipients.iter().map(Mailbox::address).collect()).unwrap_or_default(),
            message: None,
        }
    }

    /// Everything found so far in this transaction that applies to recipient `index` (or to
    /// no particular recipient when `index` is None).
    fn evidence_so_far(&self, tx: Option<&Transaction>, index: Option<usize>) -> Evidence {
        let mut all = self.connect_evidence.clone();
        all.extend(&self.helo_evidence);
        if let Some(tx) = tx {
            all.extend(&tx.evidence);
            if let Some(rcpt) = index.and_then(|i| tx.rcpt_evidence.get(i)) {
                all.extend(rcpt);
            }
        }
        all
    }

    /// Reads more input under the deadline of the current mode. Shutdown interrupts only a
    /// session waiting for a command; a message being received may finish.
    async fn read_more(&mut self) -> Result<(), Ending> {
        let deadline = match self.mode {
            Mode::Command => self.config.timeouts.command.duration(),
            _ => self.config.timeouts.data_block.duration(),
        };
        let waiting_for_command = matches!(self.mode, Mode::Command);
        let mut shutdown = self.shared.shutdown.clone();
        let start = self.input.len();
        if waiting_for_command && start == 0 && self.input.capacity() > 4 * COMMAND_READ {
            self.input = Vec::new();
        }
        let want = if waiting_for_command { COMMAND_READ } else { READ_CHUNK };
        self.input.resize(start + want, 0);
        let read = tokio::select! {
            r = tokio::time::timeout(deadline, self.conn.read(&mut self.input[start..])) => r,
            _ = shutdown.wait_for(|down| *down), if waiting_for_command => {
                self.input.truncate(start);
                return Err(Ending::Shutdown);
            }
        };
        let result = match read {
            Err(_) => Err(Ending::Timeout),
            Ok(Err(_)) => Err(Ending::IoError),
            Ok(Ok(0)) => Err(Ending::ClientClosed),
            Ok(Ok(n)) => {
                self.input.truncate(start + n);
                return Ok(());
            }
        };
        self.input.truncate(start);
        result
    }

    fn reply(&mut self, reply: Reply) {
        if reply.code >= 500 {
            self.errors += 1;
        }
        reply.write_to(&mut self.output);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let deadline = self.config.timeouts.command.duration();
        let out = std::mem::take(&mut self.output);
        match tokio::time::timeout(deadline, async {
            self.conn.write_all(&out).await?;
            self.conn.flush().await
        })
        .await
        {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write deadline")),
        }
    }

    /// Consumes as much buffered input as the current mode allows.
    async fn process_input(&mut self) {
        while self.closing.is_none() {
            let progressed = match self.mode {
                Mode::Command => self.next_command().await,
                Mode::Data(_) => self.feed_data().await,
                Mode::Chunk { .. } => self.feed_chunk().await,
            };
            if !progressed {
                return;
            }
        }
    }

    /// Handles one buffered command line, if there is one.
    async fn next_command(&mut self) -> bool {
        let (outcome, used) = match self.framer.next(&self.input) {
            Some((Line::Complete(line), used)) => (Some(command::parse(line)), used),
            Some((Line::TooLong, used)) => (None, used),
            None => {
                if self.framer.overflowing(&self.input) {
                    self.framer.discard();
                    self.input.clear();
                }
                return false;
            }
        };
        self.input.drain(..used);
        self.commands += 1;
        let host = self.config.hostname.clone();
        if self.commands > self.config.limits.max_commands {
            self.reply(replies::too_many_commands(&host));
            self.closing = Some(Ending::TooManyCommands);
            return false;
        }
        let reply = match outcome {
            None => replies::line_too_long(),
            Some(Err(reply)) => reply,
            Some(Ok(command)) => match self.dispatch(command).await {
                Some(reply) => reply,
                None => return true,
            },
        };
        self.reply(reply);
        if self.errors >= self.config.limits.max_errors && self.closing.is_none() {
            self.reply(replies::too_many_errors(&host));
            self.closing = Some(Ending::TooManyErrors);
        }
        true
    }

    /// Runs one command; returns its reply, or None when the handler already replied.
    async fn dispatch(&mut self, command: Command) -> Option<Reply> {
        Some(match command {
            Command::Ehlo(name) => self.hello(name, true).await,
            Command::Helo(name) => self.hello(name, false).await,
            Command::Mail(mail) => self.mail(mail).await,
            Command::Rcpt(raw) => self.rcpt(&raw).await,
            Command::Data => self.data(),
            Command::Bdat { size, last } => return self.bdat(size, last).await,
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
            Command::StartTls => return self.starttls().await,
            Command::NotImplemented(_) => replies::not_implemented(),
        })
        .inspect(|reply| {
            if reply.closes_connection() && self.closing.is_none() {
                self.closing = Some(Ending::Shutdown);
            }
        })
    }

    async fn hello(&mut self, name: String, esmtp: bool) -> Reply {
        self.reset_transaction();
        self.helo = Some(name);
        self.esmtp = esmtp;
        let scorer = self.scorer.clone();
        self.helo_evidence = scorer.run(Phase::Helo, &self.facts()).await;
        if !esmtp {
            return replies::helo(&self.config.hostname);
        }
        let mut lines = vec![
            self.config.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.limits.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
        ];
        if self.tls_available() {
            lines.push("STARTTLS".to_string());
        }
        lines.push("HELP".to_string());
        Reply::multi(250, lines)
    }

    async fn mail(&mut self, mail: MailCommand) -> Reply {
        if self.helo.is_none() {
            return replies::bad_sequence("Send EHLO/HELO first");
        }
        if self.tx.is_some() {
            return replies::bad_sequence("Sender already specified");
        }
        if self.messages >= self.config.limits.max_messages_per_connection {
            self.closing = Some(Ending::TooManyCommands);
            return replies::too_many_messages(&self.config.hostname);
        }
        if mail.declared_size > self.config.limits.max_message_size {
            return replies::size_exceeded();
        }
        if (mail.smtputf8 || mail.body_8bit) && !self.esmtp {
            return replies::bad_parameter("(ESMTP parameters need EHLO)");
        }
        match address::check_sender(&mail.sender, mail.smtputf8) {
            Ok(_) => {}
            Err(address::SenderProblem::NeedsSmtpUtf8) => return replies::needs_smtputf8(),
            Err(_) => return replies::bad_sender(),
        }
        if let Some(refusal) = self.rate_limited(&mail.sender).await {
            return refusal;
        }
        self.tx = Some(Transaction { mail, recipients: Vec::new(), evidence: Evidence::default(), rcpt_evidence: Vec::new() });
        let scorer = self.scorer.clone();
        let evidence = scorer.run(Phase::Mail, &self.facts()).await;
        if let Some(tx) = &mut self.tx {
            tx.evidence = evidence;
        }
        replies::sender_ok()
    }

    fn data(&mut self) -> Reply {
        match &self.tx {
            None => replies::bad_sequence("Need MAIL before DATA"),
            Some(tx) if tx.recipients.is_empty() => replies::no_valid_recipients(),
            Some(_) if self.bdat.is_some() => replies::bad_sequence("DATA cannot follow BDAT"),
            Some(_) => {
                self.mode = Mode::Data(Body::new(Framing::Data, self.config.limits.max_message_size));
                replies::start_data()
            }
        }
    }

    async fn feed_data(&mut self) -> bool {
        let Mode::Data(body) = &mut self.mode else { return false };
        if self.input.is_empty() {
            return false;
        }
        let used = body.feed(&self.input);
        self.input.drain(..used);
        if !body.is_done() {
            return false;
        }
        let Mode::Data(body) = std::mem::replace(&mut self.mode, Mode::Command) else { return false };
        let reply = self.finish_message(body).await;
        self.reply(reply);
        true
    }

    /// BDAT: the chunk's bytes follow the command line directly; the reply comes after them.
    async fn bdat(&mut self, size: usize, last: bool) -> Option<Reply> {
        let refusal = match &self.tx {
            None => Some(replies::bad_sequence("Need MAIL before BDAT")),
            Some(tx) if tx.recipients.is_empty() => Some(replies::no_valid_recipients()),
            Some(_) => None,
        };
        if refusal.is_none() {
            let max = self.config.limits.max_message_size;
            self.bdat.get_or_insert_with(|| Body::new(Framing::Bdat, max));
        }
        self.mode = Mode::Chunk { remaining: size, last, refusal };
        None
    }

    async fn feed_chunk(&mut self) -> bool {
        let Mode::Chunk { remaining, last, refusal } = &mut self.mode else { return false };
        let take = (*remaining).min(self.input.len());
        if let (None, Some(body)) = (&refusal, &mut self.bdat) {
            body.feed(&self.input[..take]);
        }
        self.input.drain(..take);
        *remaining -= take;
        if *remaining > 0 {
            return false;
        }
        let (last, refusal) = (*last, refusal.take());
        self.mode = Mode::Command;
        let reply = match refusal {
            Some(reply) => reply,
            None => self.end_of_chunk(last).await,
        };
        self.reply(reply);
        true
    }

    async fn end_of_chunk(&mut self, last: bool) -> Reply {
        let too_big = self.bdat.as_ref().is_some_and(Body::too_big);
        if too_big {
            self.reset_transaction();
            return replies::size_exceeded();
        }
        if !last {
            let size = self.bdat.as_ref().map_or(0, Body::size);
            return replies::chunk_ok(size);
        }
        match self.bdat.take() {
            Some(body) => self.finish_message(body).await,
            None => replies::bad_sequence("Need MAIL before BDAT"),
        }
    }

    /// STARTTLS: reply, discard anything pipelined after it, handshake, start over.
    async fn starttls(&mut self) -> Option<Reply> {
        if self.conn.is_tls() {
            return Some(replies::tls_active());
        }
        let acceptor = match (self.listener.starttls, self.shared.tls.load_full().as_ref()) {
            (true, Some(acceptor)) => acceptor.clone(),
            _ => return Some(replies::tls_unavailable()),
        };
        if self.tx.is_some() {
            return Some(replies::bad_sequence("STARTTLS not allowed during a mail transaction"));
        }
        self.reply(replies::start_tls());
        if self.flush().await.is_err() {
            self.closing = Some(Ending::IoError);
            return None;
        }
        // RFC 3207 §4.2 / CVE-2011-0411: nothing sent before the handshake may be acted upon.
        self.input.clear();
        self.framer = LineFramer::new(self.config.limits.max_line_length);
        let deadline = self.config.timeouts.command.duration();
        match tokio::time::timeout(deadline, self.conn.start_tls(&acceptor)).await {
            Ok(Ok(())) => {
                self.helo = None;
                self.esmtp = false;
                self.reset_transaction();
            }
            _ => self.closing = Some(Ending::TlsFailed),
        }
        None
    }

    fn reset_transaction(&mut self) {
        self.tx = None;
        self.bdat = None;
    }

    fn tls_available(&self) -> bool {
        self.listener.starttls && !self.conn.is_tls() && self.shared.tls.load().is_some()
    }
}
