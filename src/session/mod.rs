//! The async SMTP session: one per connection, a thin driver around the protocol state machine
//! `smtp::machine`. It reads under deadlines, feeds the machine, answers its questions with the
//! filters, the recipient checks and the spool (all the I/O), and writes the replies the machine
//! queues. Phase handlers live beside it: `rcpt.rs` (recipient policy and verification),
//! `deferral.rs` (greylisting, rate limits) and `data.rs`/`disposition.rs` (end of message:
//! verdicts, Received header, spool, 250).
//!
//! Guarantees:
//! - every read has a deadline (command or data-block timeout, as the machine's reading mode
//!   says) and reads are bounded (4 KiB while waiting for commands, 64 KiB in a message);
//! - replies to pipelined commands are sent in order, flushed before we wait for more input;
//! - bytes pipelined after STARTTLS are discarded (command injection defence) and the session
//!   restarts from scratch after the handshake (both in the machine);
//! - `250` after the end of data is sent only after the spool has fsynced the message;
//! - logs carry envelope metadata only, never a subject or body;
//! - the filter chain runs at every phase (connect, HELO, MAIL, RCPT, end of data) and its
//!   evidence accumulates (the machine keeps MAIL's and each recipient's in its transaction);
//!   `scoring::Scorer` turns it into one verdict per recipient.

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
use crate::smtp::command::MailCommand;
use crate::smtp::machine::{self, Answer, Ending, Event, Machine, Reading, Settings};
use crate::verdict::{Evidence, Symbol};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// The mail transaction as the session sees it: the machine's, with the MAIL and RCPT filters'
/// evidence attached (MAIL's in `mail_data`, each recipient's beside it).
type Transaction = machine::Transaction<Evidence>;

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
    /// The connect filters while they run (from the greeting until the first HELO joins them).
    connect_pending: Option<tokio::task::JoinHandle<Evidence>>,
    helo_evidence: Evidence,
    peer: IpAddr,
    conn: Conn,
    /// The protocol state: what was said, what is read next, the transaction, the counters.
    machine: Machine<Evidence>,
    /// Where reads land before they are fed to the machine.
    read_buf: Vec<u8>,
    /// When the command being read began (the previous reply): its whole-line deadline.
    command_since: Option<Instant>,
    /// When the message data being read began, and how many bytes arrived since: its rate bound.
    data_since: Option<(Instant, u64)>,
    /// The acceptor STARTTLS was answered with, for the handshake that follows.
    acceptor: Option<TlsAcceptor>,
    /// Changes of stress mode: a wait for input wakes on them to re-take its deadline.
    stress: tokio::sync::watch::Receiver<bool>,
}

/// The machine's limits, from `[limits]`.
fn settings(config: &Config) -> Settings {
    let limits = &config.limits;
    Settings {
        hostname: config.hostname.clone(),
        max_line_length: limits.max_line_length,
        max_message_size: limits.max_message_size,
        max_recipients: limits.max_recipients,
        max_commands: limits.max_commands,
        max_errors: limits.max_errors,
        max_messages: limits.max_messages_per_connection,
    }
}

impl Session {
    /// `input` holds bytes already read (after a PROXY header).
    pub fn new(shared: Arc<App>, listener: ListenerInfo, peer: SocketAddr, conn: Conn, input: Vec<u8>) -> Session {
        let config = shared.config.load_full();
        let mut machine = Machine::new(settings(&config));
        machine.feed(&input);
        let scorer = shared.scorer.load_full();
        let stress = shared.connections.watch_stress();
        Session {
            stress,
            shared,
            listener,
            config,
            scorer,
            connect_evidence: Evidence::default(),
            connect_pending: None,
            helo_evidence: Evidence::default(),
            peer: peer.ip(),
            conn,
            machine,
            read_buf: Vec::new(),
            command_since: None,
            data_since: None,
            acceptor: None,
        }
    }

    /// Runs the whole conversation; never panics, always logs one line at the end.
    pub async fn run(mut self) {
        let started = Instant::now();
        let limit = self.config.timeouts.session.duration();
        let ending = match tokio::time::timeout(limit, self.converse()).await {
            Ok(ending) => ending,
            Err(_) => {
                self.machine.timed_out();
                let _ = self.flush().await;
                Ending::Timeout
            }
        };
        if let Some(task) = self.connect_pending.take() {
            task.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.shutdown()).await;
        metrics::counter!("moat_connections_total", "ending" => ending.as_str()).increment(1);
        tracing::info!(
            event = "connection",
            client_ip = %self.peer,
            helo = self.machine.helo().unwrap_or(""),
            tls = self.conn.is_tls(),
            messages = self.machine.messages(),
            errors = self.machine.errors(),
            duration_ms = started.elapsed().as_millis() as u64,
            ending = ?ending,
        );
    }

    /// The driver loop: the machine says what to do next; questions are answered at once.
    async fn converse(&mut self) -> Ending {
        if let Err(ending) = self.before_greeting().await {
            return ending;
        }
        loop {
            match self.machine.poll() {
                Event::Read => {
                    if self.flush().await.is_err() {
                        return Ending::IoError;
                    }
                    if let Err(ending) = self.read_more().await {
                        match ending {
                            Ending::Timeout => self.machine.timed_out(),
                            Ending::Shutdown => self.machine.shutting_down(),
                            _ => return ending,
                        }
                        let _ = self.flush().await;
                        return ending;
                    }
                }
                Event::Close(ending) => {
                    return if self.flush().await.is_err() { Ending::IoError } else { ending };
                }
                Event::Hello => self.hello().await,
                Event::Mail(mail) => self.mail(mail).await,
                Event::Rcpt(raw) => self.rcpt(&raw).await,
                Event::RecipientRefused { sender, recipient, reply } => self.log_rcpt_refused(&sender, &recipient, &reply),
                Event::Message(message) => self.finish_message(message).await,
                Event::MessageRefused { transaction, size, reply } => self.message_refused(&transaction, size, &reply),
                Event::StartTls => self.starttls(),
                Event::Handshake => {
                    if self.handshake().await.is_err() {
                        return Ending::IoError;
                    }
                }
                Event::Waiting => {
                    // Every question above is answered before the next poll, so this is a bug.
                    tracing::error!(event = "session_stalled", client_ip = %self.peer);
                    return Ending::IoError;
                }
            }
        }
    }

    /// The connect phase: starts the connect filters (reverse DNS, DNS lists), which run on while
    /// we greet and the client says HELO (their lookups overlap the HELO filters' and the
    /// greeting never waits for DNS; the first HELO joins them), and, when configured or under
    /// stress, waits before the greeting to catch clients that talk first. Under stress such a
    /// client is turned away at once, freeing its slot.
    async fn before_greeting(&mut self) -> Result<(), Ending> {
        let scorer = self.scorer.clone();
        let facts = self.facts();
        self.connect_pending = Some(tokio::spawn(async move { scorer.run(Phase::Connect, &facts).await }));
        let stressed = self.shared.connections.stressed();
        let wait = self.config.timeouts.under(stressed).pregreet.duration();
        if self.pregreet(wait).await? {
            tracing::info!(event = "pregreet", client_ip = %self.peer, stress = stressed);
            if stressed {
                let reply = crate::smtp::reply::replies::talked_too_soon(&self.config.hostname).to_bytes();
                let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.write_all(&reply)).await;
                return Err(Ending::Pregreet);
            }
            self.connect_evidence.add(Symbol::new("PREGREET"));
        }
        Ok(())
    }

    /// The deadlines in force now: cut to the `stress_*` bounds while the server is under stress.
    fn timeouts(&self) -> crate::config::Timeouts {
        self.config.timeouts.under(self.shared.connections.stressed())
    }

    /// Waits up to `wait` for the client to speak before our greeting. True if it did; what it
    /// sent goes to the machine and is answered after the greeting.
    async fn pregreet(&mut self, wait: Duration) -> Result<bool, Ending> {
        if wait.is_zero() {
            return Ok(false);
        }
        let mut buf = vec![0u8; COMMAND_READ];
        match tokio::time::timeout(wait, self.conn.read(&mut buf)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Err(Ending::ClientClosed),
            Ok(Ok(n)) => {
                self.machine.feed(&buf[..n]);
                Ok(true)
            }
            Ok(Err(_)) => Err(Ending::IoError),
        }
    }

    /// What the filters may know at this point of the session.
    fn facts(&self) -> Facts {
        self.facts_with(self.machine.transaction())
    }

    fn facts_with(&self, tx: Option<&Transaction>) -> Facts {
        Facts {
            client_ip: Some(self.peer),
            helo: self.machine.helo().map(str::to_string),
            tls: self.conn.is_tls(),
            sender: tx.map(|tx| tx.mail.sender.clone()),
            rcpt: None,
            recipients: tx.map(|tx| tx.recipients.iter().map(|r| r.mailbox.address()).collect()).unwrap_or_default(),
            message: None,
            classifier_opinion: None,
            lists: Vec::new(),
            earlier: None,
        }
    }

    /// Everything found so far in this transaction that applies to recipient `index` (or to
    /// no particular recipient when `index` is None).
    fn evidence_so_far(&self, tx: Option<&Transaction>, index: Option<usize>) -> Evidence {
        let mut all = self.connect_evidence.clone();
        all.extend(&self.helo_evidence);
        if let Some(tx) = tx {
            all.extend(&tx.mail_data);
            if let Some(rcpt) = index.and_then(|i| tx.recipients.get(i)) {
                all.extend(&rcpt.data);
            }
        }
        all
    }

    /// Reads more input under the deadline of the machine's reading mode and feeds it.
    /// Shutdown interrupts only a session waiting for a command; a message being received may
    /// finish. A change of stress mode re-takes the deadline (it shortens or lengthens at once).
    async fn read_more(&mut self) -> Result<(), Ending> {
        let waiting_for_command = self.machine.reading() == Reading::Command;
        let mut shutdown = self.shared.shutdown.clone();
        if waiting_for_command && self.read_buf.capacity() > 4 * COMMAND_READ {
            self.read_buf = Vec::new();
        }
        let want = if waiting_for_command { COMMAND_READ } else { READ_CHUNK };
        self.read_buf.resize(want, 0);
        let read = loop {
            let deadline = self.read_deadline(waiting_for_command);
            if deadline.is_zero() {
                tracing::info!(event = "deadline", client_ip = %self.peer, what = if waiting_for_command { "command" } else { "data_rate" });
                return Err(Ending::Timeout);
            }
            // Biased: a deadline that has passed is not taken back by a stress change that
            // arrives in the same instant.
            tokio::select! {
                biased;
                r = tokio::time::timeout(deadline, self.conn.read(&mut self.read_buf[..want])) => break r,
                _ = shutdown.wait_for(|down| *down), if waiting_for_command => return Err(Ending::Shutdown),
                Ok(()) = self.stress.changed() => continue,
            }
        };
        match read {
            Err(_) => Err(Ending::Timeout),
            Ok(Err(_)) => Err(Ending::IoError),
            Ok(Ok(0)) => Err(Ending::ClientClosed),
            Ok(Ok(n)) => {
                if let Some((_, received)) = &mut self.data_since {
                    *received += n as u64;
                }
                self.machine.feed(&self.read_buf[..n]);
                Ok(())
            }
        }
    }

    /// How long the next read may wait: a command's whole-line deadline runs from the previous
    /// reply; message data gets `data_block` per read and, with `data_min_rate`, no more in all
    /// than the grace plus its size at that rate. Zero: the deadline has passed.
    fn read_deadline(&mut self, waiting_for_command: bool) -> Duration {
        let timeouts = &self.timeouts();
        let now = Instant::now();
        if waiting_for_command {
            self.data_since = None;
            let since = *self.command_since.get_or_insert(now);
            return timeouts.command.duration().saturating_sub(since.elapsed());
        }
        self.command_since = None;
        let (since, received) = *self.data_since.get_or_insert((now, 0));
        let block = timeouts.data_block.duration();
        if timeouts.data_min_rate == 0 {
            return block;
        }
        let allowed = timeouts.data_rate_grace.duration() + Duration::from_secs_f64(received as f64 / timeouts.data_min_rate as f64);
        block.min(allowed.saturating_sub(since.elapsed()))
    }

    /// Writes what the machine queued.
    async fn flush(&mut self) -> std::io::Result<()> {
        let out = self.machine.take_output();
        if out.is_empty() {
            return Ok(());
        }
        // A reply ends the command it answers: the next one's deadline starts now.
        self.command_since = None;
        let deadline = self.timeouts().command.duration();
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

    /// HELO/EHLO: the HELO filters (joined with the connect filters still running after the
    /// first), and whether STARTTLS can be offered.
    async fn hello(&mut self) {
        let scorer = self.scorer.clone();
        let pending = self.connect_pending.take();
        let connect = async {
            match pending {
                Some(task) => Some(task.await),
                None => None,
            }
        };
        let facts = self.facts();
        let (connect, helo) = tokio::join!(connect, scorer.run(Phase::Helo, &facts));
        match connect {
            Some(Ok(mut evidence)) => {
                evidence.extend(&self.connect_evidence);
                self.connect_evidence = evidence;
            }
            Some(Err(error)) => tracing::error!(event = "connect_filters_failed", client_ip = %self.peer, error = %error),
            None => {}
        }
        self.helo_evidence = helo;
        let tls_available = self.listener.starttls && self.shared.tls.load().is_some();
        self.machine.answer_hello(tls_available);
    }

    /// MAIL, after the machine's checks: the rate limits, then the MAIL filters.
    async fn mail(&mut self, mail: MailCommand) {
        if let Some(refusal) = self.rate_limited(&mail.sender).await {
            return self.machine.answer_mail(Answer::Reply(refusal));
        }
        let scorer = self.scorer.clone();
        let mut facts = self.facts();
        facts.sender = Some(mail.sender.clone());
        let evidence = scorer.run(Phase::Mail, &facts).await;
        self.machine.answer_mail(Answer::Accept(evidence));
    }

    /// STARTTLS: available when this listener offers it and a certificate is loaded.
    fn starttls(&mut self) {
        self.acceptor = match (self.listener.starttls, self.shared.tls.load_full().as_ref()) {
            (true, Some(acceptor)) => Some(acceptor.clone()),
            _ => None,
        };
        self.machine.answer_starttls(self.acceptor.is_some());
    }

    /// After STARTTLS's 220: write it, then the handshake. An error only when the write failed.
    async fn handshake(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        let deadline = self.timeouts().command.duration();
        let ok = match self.acceptor.take() {
            Some(acceptor) => matches!(tokio::time::timeout(deadline, self.conn.start_tls(&acceptor)).await, Ok(Ok(()))),
            None => false,
        };
        self.machine.handshake_done(ok);
        Ok(())
    }
}
