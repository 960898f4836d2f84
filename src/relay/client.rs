//! Our SMTP client towards the downstream server: connect, EHLO (HELO fallback), STARTTLS per
//! the route's policy, pipelined envelope, byte-exact DATA, RSET for reuse, QUIT.
//!
//! smtp-proto only parses replies; framing, deadlines and the DATA encoding are ours
//! ([`super::wire`]), because a transparent relay must not change a single byte of the body.
//!
//! Guarantees:
//! - every read has a deadline (`reply_timeout` per whole reply, not per byte) and a size
//!   bound ([`wire::MAX_REPLY_BYTES`]); every write has a deadline; connecting has
//!   `connect_timeout`;
//! - the downstream's replies are kept exactly (code, enhanced code, text) per recipient and
//!   for the end of data;
//! - bytes the server sent before the TLS handshake are discarded (RFC 3207 §5);
//! - `tls = "opportunistic"`: STARTTLS when offered, any certificate; if the handshake fails,
//!   one new connection in plain text. `tls = "required"`: STARTTLS must be offered and the
//!   certificate verified, otherwise [`ClientError`] (the queue defers).
//! - errors never contain message content, only peers, steps and replies.

use super::tls::{self, TlsSetupError};
use super::wire::{self, Capabilities};
use crate::config::{Config, Route, TlsPolicy};
use crate::spool::{DeliveryOutcome, DownstreamReply};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

/// Any byte stream the client can speak SMTP over (TCP, TLS over TCP, an in-memory pipe).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Size of one DATA write.
const DATA_SEGMENT: usize = 64 * 1024;
/// Deadline for the courtesy QUIT.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client needs from the configuration.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Sent in EHLO/HELO.
    pub hostname: String,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
}

impl ClientSettings {
    pub fn from_config(config: &Config) -> ClientSettings {
        ClientSettings {
            hostname: config.hostname.clone(),
            connect_timeout: config.delivery.connect_timeout.duration(),
            reply_timeout: config.delivery.reply_timeout.duration(),
        }
    }
}

/// Why a connection or a transaction could not go on. Everything here is temporary from the
/// queue's point of view (the recipients are deferred), except what [`DeliveryOutcome`]s report.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {peer}: {source}")]
    Connect { peer: String, source: io::Error },
    #[error("timeout waiting for {step} with {peer}")]
    Timeout { peer: String, step: &'static str },
    #[error("I/O error during {step} with {peer}: {source}")]
    Io { peer: String, step: &'static str, source: io::Error },
    #[error("{peer} closed the connection during {step}")]
    Closed { peer: String, step: &'static str },
    #[error("protocol error from {peer} during {step}: {detail}")]
    Protocol { peer: String, step: &'static str, detail: String },
    #[error("{peer} answered {step} with {reply}")]
    Replied { peer: String, step: &'static str, reply: DownstreamReply },
    #[error("TLS required but {peer} does not offer STARTTLS")]
    TlsNotOffered { peer: String },
    #[error("TLS with {peer} failed: {detail}")]
    Tls { peer: String, detail: String },
    #[error("TLS setup: {0}")]
    TlsSetup(#[from] TlsSetupError),
    #[error("sender address cannot be sent in SMTP")]
    InvalidSender,
}

impl ClientError {
    /// The reply to record for the recipients this error deferred: the server's own reply when
    /// there was one, otherwise a 4xx with an enhanced code naming the kind of trouble.
    pub fn as_reply(&self) -> DownstreamReply {
        let enhanced = match self {
            ClientError::Replied { reply, .. } => return reply.clone(),
            ClientError::Connect { .. } | ClientError::Closed { .. } | ClientError::Io { .. } => [4, 4, 1],
            ClientError::Timeout { .. } => [4, 4, 2],
            ClientError::Protocol { .. } => [4, 5, 0],
            ClientError::TlsNotOffered { .. } | ClientError::Tls { .. } | ClientError::TlsSetup(_) => [4, 7, 5],
            ClientError::InvalidSender => [5, 1, 7],
        };
        let code = if enhanced[0] == 5 { 553 } else { 451 };
        DownstreamReply::new(code, Some(enhanced), self.to_string())
    }
}

/// One message to send over an open connection.
#[derive(Debug, Clone, Copy)]
pub struct MessageRequest<'a> {
    /// Reverse path; "" is the null sender.
    pub sender: &'a str,
    pub recipients: &'a [String],
    /// The exact message bytes.
    pub message: &'a [u8],
    pub body_8bit: bool,
    pub smtputf8: bool,
}

/// What the downstream said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionResult {
    /// One per recipient, in order: delivered/failed/deferred with the exact reply.
    pub outcomes: Vec<DeliveryOutcome>,
    /// The reply to the end of data, when the transaction got that far.
    pub final_reply: Option<DownstreamReply>,
}

/// An open SMTP connection to a downstream server, greeted and EHLO'd (and TLS'd if so).
pub struct Connection {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    peer: String,
    caps: Capabilities,
    tls: Option<String>,
    settings: ClientSettings,
    messages: u32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("peer", &self.peer).field("tls", &self.tls).finish()
    }
}

/// 2xx → delivered, 5xx → failed, anything else → deferred.
pub fn classify(reply: &DownstreamReply) -> DeliveryOutcome {
    if reply.is_success() {
        DeliveryOutcome::Delivered(reply.clone())
    } else if reply.is_permanent() {
        DeliveryOutcome::Failed(reply.clone())
    } else {
        DeliveryOutcome::Deferred(reply.clone())
    }
}

impl Connection {
    /// Connects to `route` and gets it ready for MAIL (greeting, EHLO, STARTTLS per policy).
    pub async fn connect(route: &Route, settings: &ClientSettings) -> Result<Connection, ClientError> {
        let tls = tls::client_config(route)?;
        match Connection::connect_once(route, settings, tls).await {
            Err(error @ ClientError::Tls { .. }) if route.tls == TlsPolicy::Opportunistic => {
                tracing::warn!(downstream = %peer_of(route), %error, "opportunistic TLS failed; retrying in plain text");
                Connection::connect_once(route, settings, None).await
            }
            other => other,
        }
    }

    async fn connect_once(
        route: &Route,
        settings: &ClientSettings,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    ) -> Result<Connection, ClientError> {
        let peer = peer_of(route);
        let stream = timeout(settings.connect_timeout, TcpStream::connect((route.host.as_str(), route.port)))
            .await
            .map_err(|_| ClientError::Timeout { peer: peer.clone(), step: "connect" })?
            .map_err(|source| ClientError::Connect { peer: peer.clone(), source })?;
        let _ = stream.set_nodelay(true);
        let conn = Connection::handshake(Box::new(stream), peer.clone(), settings.clone()).await?;
        match tls {
            Some((config, name)) if conn.caps.starttls => conn.starttls(config, name).await,
            _ if route.tls == TlsPolicy::Required => Err(ClientError::TlsNotOffered { peer }),
            _ => Ok(conn),
        }
    }

    /// Reads the greeting and says EHLO over an already open stream (no TLS).
    pub async fn handshake(io: Box<dyn Io>, peer: String, settings: ClientSettings) -> Result<Connection, ClientError> {
        let mut conn = Connection { io, buf: Vec::new(), peer, caps: Capabilities::default(), tls: None, settings, messages: 0 };
        let greeting = conn.read_reply("greeting").await?;
        if greeting.code != 220 {
            return Err(conn.unexpected("greeting", greeting));
        }
        conn.ehlo().await?;
        Ok(conn)
    }

    /// "host:port" of the server.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The TLS protocol and cipher, when the connection is encrypted.
    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// Transactions completed on this connection.
    pub fn messages(&self) -> u32 {
        self.messages
    }

    fn unexpected(&self, step: &'static str, reply: DownstreamReply) -> ClientError {
        ClientError::Replied { peer: self.peer.clone(), step, reply }
    }

    async fn ehlo(&mut self) -> Result<(), ClientError> {
        let hostname = self.settings.hostname.clone();
        self.write(format!("EHLO {hostname}\r\n").as_bytes(), "EHLO").await?;
        let raw = self.read_raw_reply("EHLO").await?;
        let reply = self.parse(&raw, "EHLO")?;
        if reply.code == 250 {
            self.caps = wire::parse_ehlo(&raw);
            return Ok(());
        }
        if !reply.is_permanent() {
            return Err(self.unexpected("EHLO", reply));
        }
        let reply = self.command(&format!("HELO {hostname}"), "HELO").await?;
        if reply.code != 250 {
            return Err(self.unexpected("HELO", reply));
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    async fn starttls(mut self, config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Connection, ClientError> {
        let reply = self.command("STARTTLS", "STARTTLS").await?;
        if reply.code != 220 {
            return Err(ClientError::Tls { peer: self.peer, detail: format!("STARTTLS answered {reply}") });
        }
        let Connection { io, peer, settings, .. } = self;
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = timeout(settings.reply_timeout, connector.connect(name, io))
            .await
            .map_err(|_| ClientError::Timeout { peer: peer.clone(), step: "TLS handshake" })?
            .map_err(|e| ClientError::Tls { peer: peer.clone(), detail: e.to_string() })?;
        let (_, session) = stream.get_ref();
        let description = format!(
            "{} {}",
            session.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
            session.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default()
        );
        let mut conn = Connection {
            io: Box::new(stream),
            buf: Vec::new(),
            peer,
            caps: Capabilities::default(),
            tls: Some(description),
            settings,
            messages: 0,
        };
        conn.ehlo().await?;
        Ok(conn)
    }

    /// Sends one message. Per-recipient rejections are outcomes, not errors; an `Err` means
    /// the connection is unusable and nothing is known about the recipients (defer them all).
    /// Call [`reset`](Self::reset) before sending another message on the same connection.
    pub async fn send_message(&mut self, request: &MessageRequest<'_>) -> Result<TransactionResult, ClientError> {
        let from = wire::smtp_path(request.sender).ok_or(ClientError::InvalidSender)?;
        let mail = self.mail_command(&from, request);
        let paths: Vec<Option<String>> = request.recipients.iter().map(|r| wire::smtp_path(r)).collect();
        let (mail_reply, mut rcpt_replies) = self.envelope(&mail, &paths).await?;
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; paths.len()];
        for (i, path) in paths.iter().enumerate() {
            if path.is_none() {
                outcomes[i] =
                    Some(DeliveryOutcome::Failed(DownstreamReply::new(553, Some([5, 1, 3]), "recipient address cannot be sent in SMTP")));
            }
        }
        if !mail_reply.is_success() {
            let outcome = classify(&mail_reply);
            return Ok(finish(outcomes, Some(outcome), None));
        }
        let mut accepted = Vec::new();
        for (i, reply) in rcpt_replies.drain(..) {
            if reply.is_success() {
                accepted.push(i);
            } else {
                outcomes[i] = Some(classify(&reply));
            }
        }
        if accepted.is_empty() {
            self.messages += 1;
            return Ok(finish(outcomes, None, None));
        }
        let data_reply = self.command("DATA", "DATA").await?;
        let final_reply = if data_reply.code == 354 {
            self.write_data(request.message).await?;
            self.read_reply("end of data").await?
        } else {
            data_reply
        };
        for i in accepted {
            outcomes[i] = Some(classify(&final_reply));
        }
        self.messages += 1;
        Ok(finish(outcomes, None, Some(final_reply)))
    }

    fn mail_command(&self, from: &str, request: &MessageRequest<'_>) -> String {
        let mut mail = format!("MAIL FROM:{from}");
        if request.body_8bit && self.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if request.smtputf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", request.message.len()));
        }
        mail
    }

    /// MAIL and the RCPTs: in one write when the server offers PIPELINING, else one by one
    /// (stopping after a refused MAIL). Returns the MAIL reply and (index, reply) per RCPT sent.
    async fn envelope(
        &mut self,
        mail: &str,
        paths: &[Option<String>],
    ) -> Result<(DownstreamReply, Vec<(usize, DownstreamReply)>), ClientError> {
        let rcpts: Vec<(usize, String)> =
            paths.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i, format!("RCPT TO:{p}\r\n")))).collect();
        let mut replies = Vec::with_capacity(rcpts.len());
        if self.caps.pipelining {
            let mut batch = format!("{mail}\r\n");
            rcpts.iter().for_each(|(_, line)| batch.push_str(line));
            self.write(batch.as_bytes(), "MAIL").await?;
            let mail_reply = self.read_reply("MAIL").await?;
            for (i, _) in &rcpts {
                replies.push((*i, self.read_reply("RCPT").await?));
            }
            return Ok((mail_reply, replies));
        }
        let mail_reply = self.command(mail, "MAIL").await?;
        if mail_reply.is_success() {
            for (i, line) in &rcpts {
                self.write(line.as_bytes(), "RCPT").await?;
                replies.push((*i, self.read_reply("RCPT").await?));
            }
        }
        Ok((mail_reply, replies))
    }

    /// Writes the message dot-stuffed, then the terminator. Byte-exact otherwise.
    async fn write_data(&mut self, message: &[u8]) -> Result<(), ClientError> {
        let mut at_line_start = true;
        let mut out = Vec::with_capacity(DATA_SEGMENT + DATA_SEGMENT / 8);
        for segment in message.chunks(DATA_SEGMENT) {
            out.clear();
            wire::stuff_segment(segment, &mut at_line_start, &mut out);
            self.write(&out, "DATA").await?;
        }
        self.write(wire::data_terminator(message), "DATA").await
    }

    /// RSET: ends any open transaction so the connection can carry the next message. Also a
    /// liveness check for a cached connection.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        let reply = self.command("RSET", "RSET").await?;
        if reply.code == 250 { Ok(()) } else { Err(self.unexpected("RSET", reply)) }
    }

    /// A recipient probe: MAIL FROM:<>, RCPT TO:<rcpt>, RSET. Returns the RCPT reply.
    pub async fn probe(&mut self, rcpt: &str) -> Result<DownstreamReply, ClientError> {
        let reply = self.command("MAIL FROM:<>", "MAIL").await?;
        if !reply.is_success() {
            return Err(self.unexpected("MAIL", reply));
        }
        let path = wire::smtp_path(rcpt).ok_or_else(|| ClientError::Protocol {
            peer: self.peer.clone(),
            step: "RCPT",
            detail: "invalid address".into(),
        })?;
        let answer = self.command(&format!("RCPT TO:{path}"), "RCPT").await?;
        let _ = self.reset().await;
        Ok(answer)
    }

    /// Says QUIT (briefly waiting for the answer) and closes.
    pub async fn quit(mut self) {
        let _ = timeout(QUIT_TIMEOUT, async {
            if self.write(b"QUIT\r\n", "QUIT").await.is_ok() {
                let _ = self.read_reply("QUIT").await;
            }
            let _ = self.io.shutdown().await;
        })
        .await;
    }

    async fn command(&mut self, line: &str, step: &'static str) -> Result<DownstreamReply, ClientError> {
        self.write(format!("{line}\r\n").as_bytes(), step).await?;
        self.read_reply(step).await
    }

    async fn write(&mut self, bytes: &[u8], step: &'static str) -> Result<(), ClientError> {
        let io = &mut self.io;
        let result = timeout(self.settings.reply_timeout, async move {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await;
        match result {
            Err(_) => Err(ClientError::Timeout { peer: self.peer.clone(), step }),
            Ok(Err(source)) => Err(ClientError::Io { peer: self.peer.clone(), step, source }),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn read_reply(&mut self, step: &'static str) -> Result<DownstreamReply, ClientError> {
        let raw = self.read_raw_reply(step).await?;
        self.parse(&raw, step)
    }

    fn parse(&self, raw: &[u8], step: &'static str) -> Result<DownstreamReply, ClientError> {
        wire::parse_reply(raw).map_err(|e| ClientError::Protocol { peer: self.peer.clone(), step, detail: e.to_string() })
    }

    /// Reads until `buf` holds one complete reply, within one deadline for the whole reply.
    async fn read_raw_reply(&mut self, step: &'static str) -> Result<Vec<u8>, ClientError> {
        let deadline = Instant::now() + self.settings.reply_timeout;
        let mut chunk = [0u8; 4096];
        loop {
            match wire::reply_end(&self.buf) {
                Ok(Some(end)) => return Ok(self.buf.drain(..end).collect()),
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol { peer: self.peer.clone(), step, detail: e.to_string() });
                }
            }
            let n = timeout_at(deadline, self.io.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout { peer: self.peer.clone(), step })?
                .map_err(|source| ClientError::Io { peer: self.peer.clone(), step, source })?;
            if n == 0 {
                return Err(ClientError::Closed { peer: self.peer.clone(), step });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn finish(
    outcomes: Vec<Option<DeliveryOutcome>>,
    default: Option<DeliveryOutcome>,
    final_reply: Option<DownstreamReply>,
) -> TransactionResult {
    let fallback = DeliveryOutcome::Deferred(DownstreamReply::new(451, Some([4, 3, 0]), "no reply for this recipient"));
    let outcomes = outcomes.into_iter().map(|o| o.or_else(|| default.clone()).unwrap_or_else(|| fallback.clone())).collect();
    TransactionResult { outcomes, final_reply }
}

/// "host:port" of a route.
pub fn peer_of(route: &Route) -> String {
    if route.host.contains(':') { format!("[{}]:{}", route.host, route.port) } else { format!("{}:{}", route.host, route.port) }
}

#[cfg(test)]
mod tests;
