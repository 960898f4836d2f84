//! The control socket between the CLI and a running server (`<state_dir>/control.sock`), and the
//! commands that use it: `moat queue` (list, flush and remove spooled messages, like mailq /
//! postqueue), quarantine release and `moat digest run --now`.
//!
//! Protocol: one JSON request line (`{"op":"flush"}`, `{"op":"remove","ids":[...]}` or
//! `{"op":"release","id":"...","actor":"..."}`, `{"op":"digest","user":null}`), one JSON answer line
//! (`{"ok":true,"count":N,"ids":[...]}` or `{"ok":false,"error":"..."}`).
//!
//! Guarantees: `list` only reads the spool, so it works with or without a running server;
//! `remove` goes through the server when one answers (so it cannot race a delivery), and
//! acts on the files directly only when none does. The socket is created mode 0600; requests
//! are bounded in size ([`MAX_REQUEST`]) and time ([`IO_TIMEOUT`]), connections in number
//! ([`MAX_CLIENTS`]).

use crate::config::Config;
use crate::quarantine::Quarantine;
use crate::relay::{QueueError, QueueHandle};
pub use crate::spool::QueueEntry;
use crate::spool::{Spool, SpoolError};
use crate::store::ReleaseVia;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

/// Largest request line accepted on the control socket.
pub const MAX_REQUEST: u64 = 1024 * 1024;
/// Deadline for reading a request and for the whole exchange on the client side.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Control connections served at once.
pub const MAX_CLIENTS: usize = 8;

/// Errors of the `moat queue` commands and the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no moat server is answering on {0}")]
    NotRunning(String),
    #[error("control socket {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("control socket: {0}")]
    Protocol(String),
    #[error("the server refused: {0}")]
    Server(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request {
    Flush,
    Remove { ids: Vec<String> },
    Release { id: String, actor: String },
    Digest { user: Option<String> },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Lists the queue by reading the spool (no server needed). Corrupt records are skipped.
pub fn list(config: &Config) -> Result<Vec<QueueEntry>, ControlError> {
    Ok(crate::spool::list_queue(&config.spool_dir())?)
}

/// Asks the running server to retry every deferred message now. Returns how many.
pub async fn flush(config: &Config) -> Result<usize, ControlError> {
    let answer = request(&config.control_socket(), &Request::Flush).await?;
    Ok(answer.count)
}

/// How a `moat quarantine release` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The running server released it and queued the copy (its queue id).
    Queued(String),
    /// No server was running: the copy is in the spool and goes out when the server starts.
    Spooled(String),
}

/// Releases quarantine item `id` through the running server if one answers (so the copy is
/// delivered at once), else directly (the copy waits in the spool for the next start).
pub async fn release(config: &Config, id: &str, actor: &str) -> Result<ReleaseOutcome, ControlError> {
    let request = Request::Release { id: id.to_string(), actor: actor.to_string() };
    match self::request(&config.control_socket(), &request).await {
        Ok(answer) => Ok(ReleaseOutcome::Queued(answer.ids.into_iter().next().unwrap_or_default())),
        Err(ControlError::NotRunning(_)) => {
            let config = Arc::new(ArcSwap::from_pointee(config.clone()));
            let spool = Arc::new(Spool::open(&config.load().spool_dir())?);
            let quarantine = Quarantine::open(config, spool).await.map_err(|e| ControlError::Server(e.to_string()))?;
            let released = quarantine.release(id, actor, ReleaseVia::Cli).await.map_err(|e| ControlError::Server(e.to_string()))?;
            Ok(ReleaseOutcome::Spooled(released.queue_id))
        }
        Err(error) => Err(error),
    }
}

/// Sends digests now (`moat digest run --now`) through the running server if one answers, else
/// directly (they wait in the spool for the next start). Returns the spool ids and whether a
/// server queued them.
pub async fn digest_now(config: &Config, user: Option<&str>) -> Result<(Vec<String>, bool), ControlError> {
    let request = Request::Digest { user: user.map(str::to_string) };
    match self::request(&config.control_socket(), &request).await {
        Ok(answer) => Ok((answer.ids, true)),
        Err(ControlError::NotRunning(_)) => {
            let config = Arc::new(ArcSwap::from_pointee(config.clone()));
            let spool = Arc::new(Spool::open(&config.load().spool_dir())?);
            let quarantine = Quarantine::open(config, spool).await.map_err(|e| ControlError::Server(e.to_string()))?;
            let run = crate::digest::Run::Now { now: crate::store::unix_now(), user: user.map(str::to_string) };
            let sent = crate::digest::run(&quarantine, &run).await.map_err(|e| ControlError::Server(e.to_string()))?;
            Ok((sent.queue_ids, false))
        }
        Err(error) => Err(error),
    }
}

/// Removes messages: through the running server if one answers, else directly from the spool.
/// Returns the ids that were queued.
pub async fn remove(config: &Config, ids: &[String]) -> Result<Vec<String>, ControlError> {
    let invalid: Vec<&String> = ids.iter().filter(|id| !Spool::valid_id(id)).collect();
    if let Some(id) = invalid.first() {
        return Err(SpoolError::InvalidId(id.to_string()).into());
    }
    match request(&config.control_socket(), &Request::Remove { ids: ids.to_vec() }).await {
        Ok(answer) => Ok(answer.ids),
        Err(ControlError::NotRunning(_)) => {
            let spool = Spool::open(&config.spool_dir())?;
            let mut removed = Vec::new();
            for id in ids {
                if spool.remove(id)? {
                    removed.push(id.clone());
                }
            }
            Ok(removed)
        }
        Err(error) => Err(error),
    }
}

async fn request(socket: &Path, request: &Request) -> Result<Answer, ControlError> {
    let name = socket.display().to_string();
    let io_error = |source| ControlError::Io { path: name.clone(), source };
    let exchange = async {
        let mut stream = match UnixStream::connect(socket).await {
            Ok(stream) => stream,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
                return Err(ControlError::NotRunning(name.clone()));
            }
            Err(e) => return Err(io_error(e)),
        };
        let mut line = serde_json::to_vec(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).await.map_err(io_error)?;
        let mut reader = BufReader::new(stream).take(MAX_REQUEST);
        let mut answer = String::new();
        reader.read_line(&mut answer).await.map_err(io_error)?;
        let answer: Answer = serde_json::from_str(&answer).map_err(|e| ControlError::Protocol(e.to_string()))?;
        match answer.error {
            Some(error) if !answer.ok => Err(ControlError::Server(error)),
            _ => Ok(answer),
        }
    };
    tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .map_err(|_| ControlError::Protocol(format!("no answer from {} in time", socket.display())))?
}

/// Serves the control socket until `shutdown` turns true, then removes the socket file.
/// A stale socket file (no server answering) is replaced; a live one is an error.
pub async fn serve(
    config: Arc<ArcSwap<Config>>,
    queue: QueueHandle,
    quarantine: Arc<Quarantine>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ControlError> {
    let path = config.load().control_socket();
    let listener = bind(&path).await?;
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    while !*shutdown.borrow() {
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() { break },
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!("too many control connections; one refused");
                    continue;
                };
                let (queue, quarantine) = (queue.clone(), quarantine.clone());
                tokio::spawn(async move {
                    if let Err(error) = answer(stream, &queue, &quarantine).await {
                        tracing::warn!(%error, "control request failed");
                    }
                    drop(permit);
                });
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let name = path.display().to_string();
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::Protocol(format!("another server is already answering on {name}")));
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::Io { path: name.clone(), source })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| ControlError::Io { path: name.clone(), source })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| ControlError::Io { path: name, source })?;
    Ok(listener)
}

async fn answer(stream: UnixStream, queue: &QueueHandle, quarantine: &Quarantine) -> Result<(), ControlError> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    let mut line = String::new();
    let read = tokio::time::timeout(IO_TIMEOUT, reader.read_line(&mut line)).await;
    let reply = match read {
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Ok(Request::Flush) => match queue.flush().await {
                Ok(count) => Answer { ok: true, count, ..Answer::default() },
                Err(e) => failure(e.to_string()),
            },
            Ok(Request::Remove { ids }) => match queue.remove(ids).await {
                Ok(ids) => Answer { ok: true, count: ids.len(), ids, error: None },
                Err(e) => failure(e.to_string()),
            },
            Ok(Request::Release { id, actor }) => match quarantine.release(&id, &actor, ReleaseVia::Cli).await {
                Ok(released) => {
                    queue.submit(released.queue_id.clone());
                    Answer { ok: true, count: 1, ids: vec![released.queue_id], error: None }
                }
                Err(e) => failure(e.to_string()),
            },
            Ok(Request::Digest { user }) => {
                let run = crate::digest::Run::Now { now: crate::store::unix_now(), user };
                match crate::digest::run(quarantine, &run).await {
                    Ok(sent) => {
                        for id in &sent.queue_ids {
                            queue.submit(id.clone());
                        }
                        Answer { ok: true, count: sent.queue_ids.len(), ids: sent.queue_ids, error: None }
                    }
                    Err(e) => failure(e.to_string()),
                }
            }
            Err(e) => failure(format!("bad request: {e}")),
        },
        Ok(Err(e)) => failure(format!("cannot read request: {e}")),
        Err(_) => failure("request timed out".into()),
    };
    let mut bytes = serde_json::to_vec(&reply).map_err(|e| ControlError::Protocol(e.to_string()))?;
    bytes.push(b'\n');
    let written = tokio::time::timeout(IO_TIMEOUT, write.write_all(&bytes)).await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ControlError::Io { path: "control socket".into(), source }),
        Err(_) => Err(ControlError::Protocol("answer timed out".into())),
    }
}

fn failure(error: String) -> Answer {
    Answer { ok: false, error: Some(error), ..Answer::default() }
}
