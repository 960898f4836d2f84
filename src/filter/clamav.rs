//! Virus scanning with clamd (data phase): the whole message is streamed with `zINSTREAM`
//! over TCP or a Unix socket, and clamd's answer is parsed exactly.
//!
//! The protocol is small enough to speak here (no client crate): the command `zINSTREAM\0`,
//! then chunks each preceded by its length as a 4-byte big-endian number, then a zero length,
//! then one NUL-terminated reply. Doing it ourselves gives every step a deadline and the reply
//! a size bound, and keeps the three kinds of answer apart.
//!
//! Guarantees:
//! - only `stream: OK` is clean and only `stream: <Name> FOUND` is a virus (`CLAMAV_VIRUS`,
//!   the signature name as detail). Everything else — an `ERROR` reply, `INSTREAM size limit
//!   exceeded`, a connection closed while sending (clamd closes it over `StreamMaxLength`), a
//!   reply that is not one of these, no reply, a refused connection, a deadline — is a failure
//!   (`CLAMAV_FAIL`), never "clean" and never "virus";
//! - with `failure = "fail_closed"` a failure is a [`Failure`] that tempfails the message;
//!   with `"fail_open"` it is the `CLAMAV_FAIL` symbol plus an `X-Virus-Scan` header, and the
//!   message goes on;
//! - waiting for a scan slot (`max_concurrent`), sending and reading the reply share one
//!   deadline (`scan_timeout`); connecting has its own (`connect_timeout`); the reply is read
//!   up to [`MAX_REPLY`] bytes. One connection per scan (no sessions), so a clamd restart costs
//!   at most the scans in flight, each of which fails with the configured stance.

use super::{Facts, Filter, FilterFuture, Findings};
use crate::config;
use crate::verdict::{Failure, Stance, Symbol};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub const CLAMAV_VIRUS: &str = "CLAMAV_VIRUS";
pub const CLAMAV_FAIL: &str = "CLAMAV_FAIL";

/// Bytes sent per INSTREAM chunk.
const CHUNK: usize = 64 * 1024;
/// Longest reply read from clamd (a signature name is well under this).
pub const MAX_REPLY: usize = 4096;
/// How long, after clamd closed the connection while we were sending, we still wait for the
/// reply it may have written first (to log why, e.g. the size limit).
const LATE_REPLY: Duration = Duration::from_millis(500);

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What clamd said about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Clean,
    /// The signature name, e.g. `Eicar-Test-Signature` or `Test.EICAR.UNOFFICIAL`.
    Virus(String),
}

/// Why there is no verdict. The text is for logs and the symbol's detail: it names clamd's
/// endpoint but never message content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub String);

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one clamd reply to INSTREAM (trailing NUL and newline already allowed for).
///
/// `stream: OK` → clean; `stream: <Name> FOUND` (one word, printable) → virus; anything else
/// (an `… ERROR` reply, a size-limit message, an empty or unknown reply) → error.
pub fn parse_reply(reply: &[u8]) -> Result<ScanResult, ScanError> {
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    let text = std::str::from_utf8(&reply[..end]).map_err(|_| ScanError("clamd replied with non-UTF-8 bytes".into()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    let shown: String = text.chars().take(200).collect();
    let Some(rest) = text.strip_prefix("stream: ") else {
        return Err(ScanError(format!("clamd error: {shown}")));
    };
    if rest == "OK" {
        return Ok(ScanResult::Clean);
    }
    if let Some(name) = rest.strip_suffix(" FOUND") {
        let plausible = !name.is_empty() && name.len() <= 256 && name.bytes().all(|b| b.is_ascii_graphic());
        if plausible {
            return Ok(ScanResult::Virus(name.to_string()));
        }
    }
    Err(ScanError(format!("clamd error: {shown}")))
}

/// Sends `message` with INSTREAM over `stream` and reads the reply. No deadline of its own:
/// the caller bounds it.
pub async fn instream<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> Result<ScanResult, ScanError> {
    let sent = send(stream, message).await;
    match sent {
        Ok(()) => {
            let reply = read_reply(stream).await?;
            parse_reply(&reply)
        }
        Err(error) => {
            // clamd closes the connection over StreamMaxLength, usually after writing why.
            let late = tokio::time::timeout(LATE_REPLY, read_reply(stream)).await;
            let said = match late {
                Ok(Ok(reply)) if !reply.is_empty() => {
                    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
                    format!(" (clamd said: {})", String::from_utf8_lossy(&reply[..end.min(200)]).trim_end())
                }
                _ => String::new(),
            };
            Err(ScanError(format!("clamd closed the connection while the message was sent: {error}{said}")))
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> std::io::Result<()> {
    stream.write_all(b"zINSTREAM\0").await?;
    for chunk in message.chunks(CHUNK) {
        // CHUNK fits in u32.
        let length = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        stream.write_all(&length.to_be_bytes()).await?;
        stream.write_all(chunk).await?;
    }
    stream.write_all(&0u32.to_be_bytes()).await?;
    stream.flush().await
}

/// Reads until NUL or end of stream, at most [`MAX_REPLY`] bytes.
async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, ScanError> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| ScanError(format!("reading clamd's reply: {e}")))?;
        if n == 0 {
            if reply.is_empty() {
                return Err(ScanError("clamd closed the connection without a reply".into()));
            }
            return Ok(reply);
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.contains(&0) {
            return Ok(reply);
        }
        if reply.len() > MAX_REPLY {
            return Err(ScanError(format!("clamd's reply is longer than {MAX_REPLY} bytes")));
        }
    }
}

/// The clamd filter. Cheap to share.
pub struct ClamavFilter {
    endpoint: Endpoint,
    connect_timeout: Duration,
    scan_timeout: Duration,
    slots: Arc<Semaphore>,
    stance: Stance,
}

/// The least time left for a scan to be worth starting once a slot is free.
const MIN_SCAN_WINDOW: Duration = Duration::from_millis(50);

impl ClamavFilter {
    pub fn new(config: &config::Clamav) -> ClamavFilter {
        let endpoint = match (&config.address, &config.socket) {
            (_, Some(path)) => Endpoint::Unix(path.clone()),
            (Some(addr), None) => Endpoint::Tcp(*addr),
            // Validation requires one of them; the conventional port is the harmless fallback.
            (None, None) => Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 3310))),
        };
        ClamavFilter {
            endpoint,
            connect_timeout: config.connect_timeout.duration(),
            scan_timeout: config.scan_timeout.duration(),
            slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            stance: config.failure,
        }
    }

    /// Scans one message: a verdict, or why there is none. Never longer than
    /// `scan_timeout` (+ `connect_timeout` while connecting).
    pub async fn scan(&self, message: &[u8]) -> Result<ScanResult, ScanError> {
        let deadline = Instant::now() + self.scan_timeout;
        let late = |what: &str| ScanError(format!("clamd at {} {what} within {:?}", self.endpoint, self.scan_timeout));
        let _slot = match tokio::time::timeout_at(deadline, self.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(ScanError("scan slots closed".into())),
            Err(_) => return Err(late("had no free scan slot")),
        };
        let now = Instant::now();
        // A slot that frees just before the deadline (the scan ahead timing out) leaves no time
        // for a scan: report the wait, not a doomed scan and a second late answer.
        if deadline.saturating_duration_since(now) < MIN_SCAN_WINDOW {
            return Err(late("had no free scan slot"));
        }
        let connect_deadline = (now + self.connect_timeout).min(deadline);
        let window = connect_deadline - now;
        match &self.endpoint {
            Endpoint::Tcp(addr) => {
                let mut stream = match tokio::time::timeout_at(connect_deadline, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return Err(ScanError(format!("clamd at {addr} unreachable: {e}"))),
                    Err(_) => return Err(ScanError(format!("clamd at {addr}: no connection within {window:?}"))),
                };
                let _ = stream.set_nodelay(true);
                tokio::time::timeout_at(deadline, instream(&mut stream, message)).await.map_err(|_| late("did not answer"))?
            }
            Endpoint::Unix(path) => {
                let mut stream = match tokio::time::timeout_at(connect_deadline, tokio::net::UnixStream::connect(path)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return Err(ScanError(format!("clamd at {} unreachable: {e}", path.display()))),
                    Err(_) => return Err(ScanError(format!("clamd at {}: no connection within {window:?}", path.display()))),
                };
                tokio::time::timeout_at(deadline, instream(&mut stream, message)).await.map_err(|_| late("did not answer"))?
            }
        }
    }

    /// Turns a scan result into the filter's answer.
    fn outcome(&self, result: Result<ScanResult, ScanError>) -> super::Outcome {
        match result {
            Ok(ScanResult::Clean) => Ok(Findings::default()),
            Ok(ScanResult::Virus(name)) => {
                tracing::info!(event = "virus_found", signature = %name);
                Ok(vec![Symbol::with_detail(CLAMAV_VIRUS, name)].into())
            }
            Err(error) => {
                tracing::warn!(event = "clamav_fail", endpoint = %self.endpoint, error = %error, stance = ?self.stance);
                match self.stance {
                    Stance::FailClosed => Err(Failure { symbol: CLAMAV_FAIL.into(), stance: Stance::FailClosed, detail: error.0 }),
                    Stance::FailOpen => Ok(Findings {
                        symbols: vec![Symbol::with_detail(CLAMAV_FAIL, error.0)],
                        headers: vec!["X-Virus-Scan: not scanned (virus scanner unavailable)\r\n".to_string()],
                        lists: Vec::new(),
                    }),
                }
            }
        }
    }
}

impl Filter for ClamavFilter {
    fn name(&self) -> &'static str {
        "clamav"
    }

    fn failure(&self) -> (&'static str, Stance) {
        (CLAMAV_FAIL, self.stance)
    }

    fn data<'a>(&'a self, facts: &'a Facts) -> FilterFuture<'a> {
        Box::pin(async move {
            let Some(message) = &facts.message else { return Ok(Findings::default()) };
            let started = std::time::Instant::now();
            let result = self.scan(message).await;
            let outcome = match &result {
                Ok(ScanResult::Clean) => "clean",
                Ok(ScanResult::Virus(_)) => "virus",
                Err(_) => "failure",
            };
            metrics::histogram!("moat_clamd_scan_seconds", "outcome" => outcome).record(started.elapsed().as_secs_f64());
            self.outcome(result)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[test]
    fn replies_are_parsed_exactly() {
        assert_eq!(parse_reply(b"stream: OK\0"), Ok(ScanResult::Clean));
        assert_eq!(parse_reply(b"stream: OK\n"), Ok(ScanResult::Clean));
        assert_eq!(parse_reply(b"stream: Eicar-Test-Signature FOUND\0"), Ok(ScanResult::Virus("Eicar-Test-Signature".into())));
        assert_eq!(parse_reply(b"stream: Test.EICAR.UNOFFICIAL FOUND\0"), Ok(ScanResult::Virus("Test.EICAR.UNOFFICIAL".into())));
        for bad in [
            &b"INSTREAM size limit exceeded. ERROR\0"[..],
            b"stream: Can't allocate memory ERROR\0",
            b"stream: OK FOUND ERROR\0",
            b"stream:  FOUND\0",
            b"stream: two words FOUND\0",
            b"stream: OKAY\0",
            b"OK\0",
            b"\0",
            b"",
            b"stream: \xff FOUND\0",
            b"UNKNOWN COMMAND\0",
        ] {
            assert!(parse_reply(bad).is_err(), "{:?} must be an error", String::from_utf8_lossy(bad));
        }
        let error = parse_reply(b"stream: Can't open file ERROR\0").unwrap_err();
        assert!(error.0.contains("Can't open file"), "{error}");
    }

    /// A fake clamd on the other end of a duplex pipe: reads the INSTREAM framing, checks it,
    /// then answers `reply`.
    async fn fake_clamd(mut server: tokio::io::DuplexStream, reply: &'static [u8]) -> Vec<u8> {
        let mut command = [0u8; 10];
        server.read_exact(&mut command).await.expect("command");
        assert_eq!(&command, b"zINSTREAM\0");
        let mut body = Vec::new();
        loop {
            let mut length = [0u8; 4];
            server.read_exact(&mut length).await.expect("length");
            let length = u32::from_be_bytes(length) as usize;
            if length == 0 {
                break;
            }
            assert!(length <= CHUNK);
            let mut chunk = vec![0u8; length];
            server.read_exact(&mut chunk).await.expect("chunk");
            body.extend_from_slice(&chunk);
        }
        server.write_all(reply).await.expect("reply");
        body
    }

    #[tokio::test]
    async fn instream_frames_the_message_in_chunks_and_reads_the_reply() {
        let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (mut client, server) = duplex(8192);
        let server = tokio::spawn(fake_clamd(server, b"stream: Fake.Sig FOUND\0"));
        let verdict = instream(&mut client, &message).await;
        assert_eq!(verdict, Ok(ScanResult::Virus("Fake.Sig".into())));
        assert_eq!(server.await.expect("server"), message);
    }

    #[tokio::test]
    async fn a_reply_without_nul_is_bounded_and_a_missing_one_is_an_error() {
        let (mut client, mut server) = duplex(1 << 16);
        tokio::spawn(async move {
            let mut sink = vec![0u8; 1 << 16];
            let _ = server.read(&mut sink).await;
            let _ = server.write_all(&vec![b'x'; MAX_REPLY * 2]).await;
        });
        let error = instream(&mut client, b"tiny").await.unwrap_err();
        assert!(error.0.contains("longer than"), "{error}");
        let (mut client, mut server) = duplex(1 << 16);
        tokio::spawn(async move {
            let mut sink = vec![0u8; 1 << 16];
            let _ = server.read(&mut sink).await;
            drop(server);
        });
        assert!(instream(&mut client, b"tiny").await.is_err());
    }

    fn config(address: SocketAddr, failure: Stance) -> config::Clamav {
        config::Clamav {
            address: Some(address),
            socket: None,
            connect_timeout: config::Seconds(1),
            scan_timeout: config::Seconds(1),
            max_concurrent: 1,
            failure,
        }
    }

    #[tokio::test]
    async fn scans_beyond_max_concurrent_wait_for_a_slot_within_the_scan_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        let filter = ClamavFilter::new(&config(addr, Stance::FailClosed));
        let (a, b) = tokio::join!(filter.scan(b"one"), filter.scan(b"two"));
        let mut errors = [a.unwrap_err().0, b.unwrap_err().0];
        errors.sort();
        assert!(errors[0].contains("did not answer") && errors[1].contains("no free scan slot"), "{errors:?}");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "max_concurrent = 1: one connection at a time");
    }

    #[tokio::test]
    async fn unreachable_and_silent_clamd_are_failures_with_the_configured_stance() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let silent = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let facts = Facts { message: Some(Arc::new(b"Subject: x\r\n\r\nhello\r\n".to_vec())), ..Facts::default() };
        let started = std::time::Instant::now();
        let closed = ClamavFilter::new(&config(silent, Stance::FailClosed));
        let failure = closed.data(&facts).await.unwrap_err();
        assert_eq!((failure.symbol.as_str(), failure.stance), (CLAMAV_FAIL, Stance::FailClosed));
        assert!(failure.detail.contains("did not answer"), "{failure:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "the scan deadline holds");

        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let open = ClamavFilter::new(&config(dead, Stance::FailOpen));
        let findings = open.data(&facts).await.expect("fail open is findings");
        assert_eq!(findings.symbols[0].name, CLAMAV_FAIL);
        assert!(findings.symbols[0].detail.as_deref().unwrap_or("").contains("unreachable"), "{findings:?}");
        assert!(findings.headers[0].starts_with("X-Virus-Scan: not scanned"));
        assert_eq!(open.failure(), (CLAMAV_FAIL, Stance::FailOpen));
    }
}
