//! The durable queue on disk. The spool, not memory, is the source of truth for every message
//! moat has said 250 to.
//!
//! Layout under the spool directory:
//! - `incoming/`: files being written (`<id>.msg.tmp`, `<id>.state.tmp`). Never acknowledged;
//!   [`Spool::recover`] deletes whatever is left there after a crash.
//! - `queue/<id>.msg`: the immutable record (see [`record`]): envelope + exact message bytes.
//! - `queue/<id>.state`: per-recipient delivery state (see [`state`]); absent until the first
//!   attempt, which means "every recipient pending, due now".
//! - `corrupt/`: records that cannot be decoded, moved aside with a log line, never deleted.
//!
//! Guarantees:
//! - [`Spool::store`] returns `Ok` only after the record was written to `incoming/`, fsynced,
//!   renamed into `queue/` and the `queue/` directory fsynced. On any error (ENOSPC included)
//!   it removes its temporary file and `queue/` holds no partial record.
//! - State files are replaced atomically the same way (tmp, fsync, rename, fsync dir), so a
//!   reader sees either the old or the new state, never a mix.
//! - A message is deleted by removing `.msg` first, then `.state`, then fsyncing the directory;
//!   a `.state` without its `.msg` is an orphan that recovery deletes.
//! - Nothing here logs or returns subject or body content: errors name ids and paths only.
//!
//! Every function here does blocking file I/O; call it from `spawn_blocking` in async code.

mod listing;
pub mod record;
pub mod state;

pub use listing::{QueueEntry, list_queue};
pub use record::{Origin, decode_record};
pub use state::{DeliveryOutcome, DeliveryState, DownstreamReply, RecipientState, RetryPolicy, Status};

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Everything known about a message besides its bytes. Envelope metadata only (no subject, no body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Queue id: unique, sortable, safe as a file name.
    pub id: String,
    /// Unix seconds when we said 250.
    pub received_at: i64,
    pub client_ip: IpAddr,
    pub helo: String,
    /// Reverse path; "" is the null sender.
    pub sender: String,
    /// Forward paths, already validated as ours.
    pub recipients: Vec<String>,
    /// MAIL FROM had SMTPUTF8.
    pub smtputf8: bool,
    /// MAIL FROM had BODY=8BITMIME.
    pub body_8bit: bool,
    /// Inbound TLS, e.g. "TLSv1.3 TLS13_AES_256_GCM_SHA384", when used.
    pub tls: Option<String>,
    /// Why the message is held, for a copy in the holding spool (never delivered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// What a copy in the quarantine's staging spool is for (see `moat::quarantine`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<Staged>,
}

/// A copy staged before the store decides whether it goes out (exactly once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Staged {
    /// The release of this quarantine item.
    Release { item: String },
    /// The digest that advances this user's cursor.
    Digest { address: String },
}

/// The verdict behind a held copy: what the quarantine index records about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub category: crate::store::Category,
    pub score: f64,
    /// Every symbol with its score and detail (e.g. the virus signature).
    pub symbols: Vec<crate::verdict::Symbol>,
}

/// What can go wrong with the spool. Messages name ids and paths, never message content.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The disk is full (ENOSPC/EDQUOT): the caller should answer 452.
    #[error("spool disk full while writing {path}")]
    DiskFull { path: PathBuf },
    #[error("spool I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("invalid queue id {0:?}")]
    InvalidId(String),
    #[error("no message {0} in the queue")]
    NotFound(String),
    #[error("corrupt spool record: {0}")]
    Corrupt(String),
    #[error("cannot encode spool record: {0}")]
    Encode(String),
    /// Spool work on the blocking pool panicked (a bug).
    #[error("spool task failed: {0}")]
    Task(String),
}

impl From<crate::clock::TaskFailed> for SpoolError {
    fn from(failed: crate::clock::TaskFailed) -> SpoolError {
        SpoolError::Task(failed.0)
    }
}

impl SpoolError {
    fn io(path: &Path, source: io::Error) -> SpoolError {
        let full = matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
        if full { SpoolError::DiskFull { path: path.to_path_buf() } } else { SpoolError::Io { path: path.to_path_buf(), source } }
    }

    /// True when retrying later may help (I/O trouble) rather than never (corrupt data).
    pub fn is_temporary(&self) -> bool {
        matches!(self, SpoolError::DiskFull { .. } | SpoolError::Io { .. })
    }
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Queued messages, in id (= arrival) order.
    pub queued: Vec<String>,
    /// Temporary files discarded from `incoming/`.
    pub discarded_temporary: usize,
    /// Records moved to `corrupt/`.
    pub corrupt: Vec<String>,
    /// `.state` files without a `.msg`, deleted.
    pub orphan_states: usize,
}

/// A handle on the spool directory.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
}

static ID_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Spool {
    /// Opens the spool at `dir`, creating it and its subdirectories if missing.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        for sub in ["incoming", "queue", "corrupt"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| SpoolError::io(&path, e))?;
        }
        Ok(Spool { root: dir.to_path_buf() })
    }

    /// A new queue id: 14 hex digits of microseconds since 1970, 4 of a per-process counter,
    /// 6 random. Unique, sorts by arrival time, and only `[0-9A-F]` (safe as a file name).
    pub fn new_id() -> String {
        let micros = chrono::Utc::now().timestamp_micros().max(0) as u64;
        let counter = ID_COUNTER.fetch_add(1, Ordering::Relaxed) & 0xFFFF;
        let mut random = [0u8; 3];
        if getrandom::fill(&mut random).is_err() {
            // Uniqueness still holds within this process thanks to the counter; mix in the pid.
            random = (std::process::id() & 0xFF_FFFF).to_be_bytes()[1..4].try_into().unwrap_or([0; 3]);
        }
        let random = u32::from_be_bytes([0, random[0], random[1], random[2]]);
        format!("{:014X}{counter:04X}{random:06X}", micros & 0xFF_FFFF_FFFF_FFFF)
    }

    /// True for ids that are safe to use as file names (what [`new_id`](Self::new_id) makes,
    /// and any other short alphanumeric id).
    pub fn valid_id(id: &str) -> bool {
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    /// The spool directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }

    fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }

    fn msg_path(&self, id: &str) -> PathBuf {
        self.queue().join(format!("{id}.msg"))
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.queue().join(format!("{id}.state"))
    }

    fn checked(id: &str) -> Result<&str, SpoolError> {
        if Spool::valid_id(id) { Ok(id) } else { Err(SpoolError::InvalidId(id.to_string())) }
    }

    /// Stores an accepted message durably under `envelope.id`. Blocking. Returns only when the
    /// record and its directory entry are on disk; on error nothing is left in `queue/`.
    pub fn store(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SpoolError> {
        self.store_as(envelope, Origin::Inbound, message, None)
    }

    /// Stores a message with its origin and, optionally, an initial state (written first, so a
    /// crash in between leaves only an orphan state that recovery deletes).
    pub fn store_as(&self, envelope: &Envelope, origin: Origin, message: &[u8], state: Option<&DeliveryState>) -> Result<(), SpoolError> {
        let id = Spool::checked(&envelope.id)?;
        let record = record::encode_record(envelope, origin, message)?;
        if let Some(state) = state {
            self.write_state(id, state)?;
        }
        let tmp = self.incoming().join(format!("{id}.msg.tmp"));
        let result = self.publish(&tmp, &record, &self.msg_path(id));
        if result.is_err() && state.is_some() {
            let _ = fs::remove_file(self.state_path(id));
        }
        result
    }

    /// Writes `bytes` to `tmp`, fsyncs it, renames it to `dest` and fsyncs `queue/`.
    /// Removes `tmp` on failure.
    fn publish(&self, tmp: &Path, bytes: &[u8], dest: &Path) -> Result<(), SpoolError> {
        let result = write_synced(tmp, bytes)
            .and_then(|()| fs::rename(tmp, dest).map_err(|e| SpoolError::io(dest, e)))
            .and_then(|()| sync_dir(&self.queue()));
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    /// Replaces the state of `id` atomically and durably.
    pub fn write_state(&self, id: &str, state: &DeliveryState) -> Result<(), SpoolError> {
        let id = Spool::checked(id)?;
        let bytes = serde_json::to_vec(state).map_err(|e| SpoolError::Encode(e.to_string()))?;
        let tmp = self.incoming().join(format!("{id}.state.tmp"));
        self.publish(&tmp, &bytes, &self.state_path(id))
    }

    /// Reads the state of `id`: the stored one, or a fresh all-pending state built from the
    /// envelope when no attempt was recorded yet. A state file that does not parse or does not
    /// match the envelope's recipients is replaced by a fresh one (logged): retrying is safer
    /// than losing the message.
    pub fn read_state(&self, id: &str, envelope: &Envelope) -> Result<DeliveryState, SpoolError> {
        let id = Spool::checked(id)?;
        let path = self.state_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(DeliveryState::new(&envelope.recipients));
            }
            Err(e) => return Err(SpoolError::io(&path, e)),
        };
        match serde_json::from_slice::<DeliveryState>(&bytes) {
            Ok(state) if state_matches(&state, envelope) => Ok(state),
            Ok(_) | Err(_) => {
                tracing::warn!(queue_id = id, "unreadable delivery state; every recipient not known final is retried");
                Ok(DeliveryState::new(&envelope.recipients))
            }
        }
    }

    /// Reads and decodes the whole record of `id`.
    pub fn load(&self, id: &str) -> Result<(Envelope, Origin, Vec<u8>), SpoolError> {
        let id = Spool::checked(id)?;
        let path = self.msg_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpoolError::NotFound(id.into())),
            Err(e) => return Err(SpoolError::io(&path, e)),
        };
        let decoded = record::decode_full(&bytes)?;
        let (envelope, origin, start) = (decoded.envelope, decoded.origin, bytes.len() - decoded.body.len());
        let mut bytes = bytes;
        bytes.drain(..start);
        Ok((envelope, origin, bytes))
    }

    /// Reads only the envelope of `id` (and the body size), without the body.
    pub fn load_envelope(&self, id: &str) -> Result<(Envelope, Origin, u64), SpoolError> {
        let id = Spool::checked(id)?;
        let path = self.msg_path(id);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpoolError::NotFound(id.into())),
            Err(e) => return Err(SpoolError::io(&path, e)),
        };
        let mut prefix = vec![0u8; 12];
        file.read_exact(&mut prefix).map_err(|_| SpoolError::Corrupt(format!("{id}: truncated")))?;
        let extent = record::header_extent(&prefix).unwrap_or(prefix.len());
        prefix.resize(extent, 0);
        file.read_exact(&mut prefix[12..]).map_err(|_| SpoolError::Corrupt(format!("{id}: truncated")))?;
        let (envelope, origin, size) = record::decode_header(&prefix)?;
        Ok((envelope, origin, size.unwrap_or(0)))
    }

    /// True if `id` is still queued.
    pub fn contains(&self, id: &str) -> bool {
        Spool::valid_id(id) && self.msg_path(id).exists()
    }

    /// Ids of the queued messages, sorted (= arrival order).
    pub fn list(&self) -> Result<Vec<String>, SpoolError> {
        let mut ids: Vec<String> = list_dir(&self.queue())?
            .into_iter()
            .filter_map(|name| name.strip_suffix(".msg").map(str::to_string))
            .filter(|id| Spool::valid_id(id))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Deletes a message: `.msg`, then `.state`, then fsyncs the directory. Deleting a message
    /// that is not there is not an error (returns false).
    pub fn remove(&self, id: &str) -> Result<bool, SpoolError> {
        let id = Spool::checked(id)?;
        let existed = remove_if_exists(&self.msg_path(id))?;
        remove_if_exists(&self.state_path(id))?;
        sync_dir(&self.queue())?;
        Ok(existed)
    }

    /// Moves the record `id` (no delivery state yet) from spool `from` into this one: a rename,
    /// then both directories fsynced, so the record is in exactly one of them whatever happens.
    /// On another file system it is copied durably first, then removed from `from`.
    pub fn adopt(&self, from: &Spool, id: &str) -> Result<(), SpoolError> {
        let id = Spool::checked(id)?;
        let (source, dest) = (from.msg_path(id), self.msg_path(id));
        match fs::rename(&source, &dest) {
            Ok(()) => sync_dir(&self.queue()).and_then(|()| sync_dir(&from.queue())),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let (envelope, origin, body) = from.load(id)?;
                self.store_as(&envelope, origin, &body, None)?;
                from.remove(id).map(|_| ())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpoolError::NotFound(id.into())),
            Err(e) => Err(SpoolError::io(&dest, e)),
        }
    }

    /// Moves a record (and its state) to `corrupt/`, where it stays for a human to look at.
    pub fn quarantine_corrupt(&self, id: &str) -> Result<(), SpoolError> {
        let id = Spool::checked(id)?;
        let corrupt = self.root.join("corrupt");
        for (from, name) in [(self.msg_path(id), format!("{id}.msg")), (self.state_path(id), format!("{id}.state"))] {
            let to = corrupt.join(name);
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::io(&from, e)),
            }
        }
        sync_dir(&corrupt)?;
        sync_dir(&self.queue())
    }

    /// Start-up recovery: discards `incoming/` leftovers, moves undecodable records to
    /// `corrupt/`, deletes orphan states, and returns the queued ids. Call it before the
    /// listener accepts connections (it deletes in-progress temporary files).
    pub fn recover(&self) -> Result<Recovery, SpoolError> {
        let mut recovery = Recovery::default();
        for name in list_dir(&self.incoming())? {
            let path = self.incoming().join(&name);
            if remove_if_exists(&path)? {
                recovery.discarded_temporary += 1;
            }
        }
        sync_dir(&self.incoming())?;
        for id in self.list()? {
            match self.load(&id) {
                Ok(_) => recovery.queued.push(id),
                Err(SpoolError::Corrupt(reason)) => {
                    tracing::error!(queue_id = %id, %reason, "corrupt spool record moved to corrupt/");
                    self.quarantine_corrupt(&id)?;
                    recovery.corrupt.push(id);
                }
                Err(SpoolError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for name in list_dir(&self.queue())? {
            let Some(id) = name.strip_suffix(".state") else { continue };
            if !self.msg_path(id).exists() && remove_if_exists(&self.queue().join(&name))? {
                recovery.orphan_states += 1;
            }
        }
        sync_dir(&self.queue())?;
        Ok(recovery)
    }
}

fn state_matches(state: &DeliveryState, envelope: &Envelope) -> bool {
    state.recipients.len() == envelope.recipients.len() && state.recipients.iter().zip(&envelope.recipients).all(|(s, e)| &s.address == e)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path).map_err(|e| SpoolError::io(path, e))?;
    file.write_all(bytes).map_err(|e| SpoolError::io(path, e))?;
    file.sync_all().map_err(|e| SpoolError::io(path, e))
}

/// fsyncs a directory so renames and unlinks in it are durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SpoolError::io(dir, e))
}

fn remove_if_exists(path: &Path) -> Result<bool, SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SpoolError::io(path, e)),
    }
}

fn list_dir(dir: &Path) -> Result<Vec<String>, SpoolError> {
    let entries = fs::read_dir(dir).map_err(|e| SpoolError::io(dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SpoolError::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests;
