//! The queue manager: takes spooled messages to the downstream.
//!
//! [`Queue::start`] recovers the spool (see [`Spool::recover`]), then runs one manager task
//! that schedules deliveries: at most `delivery.concurrency` messages at once, each attempt
//! grouping the pending recipients by route (`config.route_for(domain)`; DSNs we generated go
//! to `delivery.dsn_route`, else `[downstream]`). Per recipient: 2xx → delivered, 5xx →
//! failed, 4xx / connection error / timeout → deferred, retried after `retry_initial` doubling
//! up to `retry_max`; a message older than `max_lifetime` fails its pending recipients with
//! 4.4.7. When every recipient is final: an RFC 3464 DSN to the sender if any failed (never to
//! the null sender), then the message is deleted.
//!
//! Guarantees:
//! - the per-recipient state is written durably (tmp, fsync, rename, fsync dir) right after
//!   each attempt, before anything else happens to the message; when it cannot be (the disk is
//!   full), the manager keeps it in memory, so retries never repeat a delivery already done,
//!   and writes it at the next attempt; a message whose every recipient is delivered is removed
//!   without writing anything, so a full disk does not hold delivered mail;
//! - the config is read through the `ArcSwap` at every attempt, so a SIGHUP reload applies to
//!   the next attempt (in-flight ones finish with the config they started with);
//! - channels are bounded: [`QueueHandle::submit`] never blocks; if its channel is full the
//!   periodic scan of the spool picks the message up;
//! - on shutdown no new attempt starts; in-flight ones get `timeouts.shutdown_grace` to finish,
//!   then are abandoned; the spool keeps everything and the next start resumes it.
//!
//! Duplicates: the only way a recipient gets a message twice is when the downstream accepted
//! it (250 after the data) and moat died, or the attempt was abandoned or lost the connection,
//! before the state was fsynced (or, on a full disk, before it could be written at all); the
//! recipient is then still "pending" and is sent again. A DSN
//! is keyed by the original's id, so a crash while bouncing rewrites the same DSN rather than
//! queueing a second one.

use super::client::{self, ClientError, ClientSettings, Connection, MessageRequest, TransactionResult};
use super::dsn;
use super::pool::{self, Pool};
use crate::clock::{blocking, unix_now};
use crate::config::{Config, Route};
use crate::spool::{DeliveryOutcome, DeliveryState, Envelope, Origin, RetryPolicy, Spool, SpoolError};
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

/// Capacity of the submit channel (new messages from sessions).
pub const WAKE_CAPACITY: usize = 4096;
/// Capacity of the command channel (flush, remove).
const COMMAND_CAPACITY: usize = 16;
/// How often the spool is rescanned for messages whose submit was dropped.
const SCAN_INTERVAL: Duration = Duration::from_secs(30);
/// How often idle connections past `idle_timeout` are closed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Queue failures.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the queue manager is not running")]
    Stopped,
    #[error("background task failed: {0}")]
    Task(String),
}

/// Namespace for [`Queue::start`].
pub struct Queue;

/// A cheap, cloneable handle on the running queue manager.
#[derive(Clone)]
pub struct QueueHandle {
    wake: mpsc::Sender<String>,
    commands: mpsc::Sender<Command>,
    stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

enum Command {
    Flush(oneshot::Sender<usize>),
    Remove(Vec<String>, oneshot::Sender<Vec<String>>),
}

/// What the manager and the delivery tasks share.
struct Shared {
    config: Arc<ArcSwap<Config>>,
    spool: Arc<Spool>,
    pool: Pool,
    /// Ids removed by an operator while an attempt was running: the attempt must not write
    /// state or bounce; the manager deletes the files when it ends.
    cancelled: Mutex<HashSet<String>>,
    /// Delivery states the spool could not write (a full disk), newer than the files: the next
    /// attempt starts from them, so nothing delivered is delivered again, and writes them.
    unsaved: Mutex<HashMap<String, DeliveryState>>,
    wake: mpsc::Sender<String>,
}

impl Shared {
    fn is_cancelled(&self, id: &str) -> bool {
        self.cancelled.lock().map(|set| set.contains(id)).unwrap_or(false)
    }

    fn unsaved(&self, id: &str) -> Option<DeliveryState> {
        self.unsaved.lock().ok().and_then(|map| map.get(id).cloned())
    }

    fn forget_unsaved(&self, id: &str) {
        if let Ok(mut map) = self.unsaved.lock() {
            map.remove(id);
        }
    }
}

/// When to look at a message again after an attempt.
enum Next {
    Done,
    At(i64),
}

impl Queue {
    /// Recovers the spool and starts the manager. Call before accepting SMTP connections.
    /// `shutdown` turning `true` stops it (see the module doc). The control socket is not
    /// started here: run [`crate::control::serve`] with the returned handle.
    pub async fn start(
        config: Arc<ArcSwap<Config>>,
        spool: Arc<Spool>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<QueueHandle, QueueError> {
        let recovering = spool.clone();
        let recovery = blocking(move || recovering.recover()).await?;
        tracing::info!(
            event = "spool_recovered",
            queued = recovery.queued.len(),
            discarded_temporary = recovery.discarded_temporary,
            corrupt = recovery.corrupt.len(),
            orphan_states = recovery.orphan_states,
            "spool recovered"
        );
        let (wake_tx, wake_rx) = mpsc::channel(WAKE_CAPACITY);
        let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            spool,
            pool: Pool::new(),
            cancelled: Mutex::new(HashSet::new()),
            unsaved: Mutex::new(HashMap::new()),
            wake: wake_tx.clone(),
        });
        let manager = Manager {
            shared: shared.clone(),
            due: recovery.queued.into_iter().map(|id| (id, 0)).collect(),
            forced: HashSet::new(),
            in_flight: HashMap::new(),
            tasks: JoinSet::new(),
            wake: wake_rx,
            commands: command_rx,
            shutdown,
        };
        tokio::spawn(async move {
            manager.run().await;
            let _ = stopped_tx.send(true);
        });
        Ok(QueueHandle { wake: wake_tx, commands: command_tx, stopped: stopped_rx, shared })
    }
}

impl QueueHandle {
    /// Wakes the manager for a newly spooled message. Never blocks; if the channel is full the
    /// message is found by the next scan of the spool (within 30 s).
    pub fn submit(&self, id: impl Into<String>) {
        if let Err(error) = self.wake.try_send(id.into()) {
            tracing::warn!(queue_id = %error.into_inner(), "submit channel full; the spool scan will pick the message up");
        }
    }

    /// Makes every deferred message due now. Returns how many were waiting.
    pub async fn flush(&self) -> Result<usize, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Flush(tx)).await.map_err(|_| QueueError::Stopped)?;
        rx.await.map_err(|_| QueueError::Stopped)
    }

    /// Removes messages from the queue (no DSN). A message being delivered right now is
    /// removed when that attempt ends. Returns the ids that were queued.
    pub async fn remove(&self, ids: Vec<String>) -> Result<Vec<String>, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Remove(ids, tx)).await.map_err(|_| QueueError::Stopped)?;
        rx.await.map_err(|_| QueueError::Stopped)
    }

    /// Waits until the manager has stopped (after shutdown and the grace period).
    pub async fn stopped(&self) {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|done| *done).await;
    }

    /// Idle downstream connections currently cached.
    pub fn idle_connections(&self) -> usize {
        self.shared.pool.len()
    }
}

struct Manager {
    shared: Arc<Shared>,
    /// Messages waiting, with the unix second they are due (0: now).
    due: HashMap<String, i64>,
    /// Messages a flush made due regardless of their stored next attempt.
    forced: HashSet<String>,
    /// Attempts running, by task id.
    in_flight: HashMap<tokio::task::Id, String>,
    tasks: JoinSet<Result<Next, QueueError>>,
    wake: mpsc::Receiver<String>,
    commands: mpsc::Receiver<Command>,
    shutdown: watch::Receiver<bool>,
}

impl Manager {
    async fn run(mut self) {
        let mut last_scan = tokio::time::Instant::now();
        let mut last_sweep = tokio::time::Instant::now();
        while !*self.shutdown.borrow() {
            self.start_due();
            let wait = self.wait_time();
            tokio::select! {
                changed = self.shutdown.changed() => if changed.is_err() { break },
                Some(id) = self.wake.recv() => self.enqueue(id),
                Some(command) = self.commands.recv() => self.command(command).await,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => self.finished(joined).await,
                () = tokio::time::sleep(wait) => {}
            }
            if last_scan.elapsed() >= SCAN_INTERVAL {
                last_scan = tokio::time::Instant::now();
                self.scan().await;
            }
            if last_sweep.elapsed() >= SWEEP_INTERVAL {
                last_sweep = tokio::time::Instant::now();
                let idle_timeout = self.shared.config.load().delivery.idle_timeout.duration();
                close_all(self.shared.pool.expired(idle_timeout));
            }
        }
        self.drain().await;
    }

    fn concurrency(&self) -> usize {
        self.shared.config.load().delivery.concurrency.max(1)
    }

    fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight.values().any(|v| v == id)
    }

    fn enqueue(&mut self, id: String) {
        if Spool::valid_id(&id) && !self.is_in_flight(&id) {
            self.due.entry(id).or_insert(0);
        }
    }

    /// Starts the due messages, oldest due first, up to the concurrency limit.
    fn start_due(&mut self) {
        let free = self.concurrency().saturating_sub(self.in_flight.len());
        if free == 0 || self.due.is_empty() {
            return;
        }
        let now = unix_now();
        let mut ready: Vec<(i64, String)> = self.due.iter().filter(|(_, at)| **at <= now).map(|(id, at)| (*at, id.clone())).collect();
        ready.sort();
        for (_, id) in ready.into_iter().take(free) {
            self.due.remove(&id);
            let forced = self.forced.remove(&id);
            let handle = self.tasks.spawn(attempt(self.shared.clone(), id.clone(), forced));
            self.in_flight.insert(handle.id(), id);
        }
    }

    /// How long to sleep before something may become due (at most the sweep interval).
    fn wait_time(&self) -> Duration {
        if self.in_flight.len() >= self.concurrency() {
            return SWEEP_INTERVAL;
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.due
            .values()
            .map(|at| Duration::from_millis(at.saturating_mul(1000).saturating_sub(now_ms).max(0) as u64))
            .min()
            .unwrap_or(SWEEP_INTERVAL)
            .min(SWEEP_INTERVAL)
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Flush(reply) => {
                let count = self.due.len();
                for (id, at) in self.due.iter_mut() {
                    *at = 0;
                    self.forced.insert(id.clone());
                }
                tracing::info!(messages = count, "queue flush");
                let _ = reply.send(count);
            }
            Command::Remove(ids, reply) => {
                let mut removed = Vec::new();
                for id in ids.into_iter().filter(|id| Spool::valid_id(id)) {
                    if self.is_in_flight(&id) {
                        if let Ok(mut cancelled) = self.shared.cancelled.lock() {
                            cancelled.insert(id.clone());
                        }
                        removed.push(id);
                        continue;
                    }
                    self.due.remove(&id);
                    self.forced.remove(&id);
                    self.shared.forget_unsaved(&id);
                    let spool = self.shared.spool.clone();
                    let target = id.clone();
                    match blocking(move || spool.remove(&target)).await {
                        Ok(true) => removed.push(id),
                        Ok(false) => {}
                        Err(error) => tracing::error!(queue_id = %id, %error, "cannot remove message"),
                    }
                }
                tracing::info!(removed = ?removed, "queue remove");
                let _ = reply.send(removed);
            }
        }
    }

    async fn finished(&mut self, joined: Result<(tokio::task::Id, Result<Next, QueueError>), tokio::task::JoinError>) {
        let (task, result) = match joined {
            Ok((task, result)) => (task, result),
            Err(error) => {
                let task = error.id();
                (task, Err(QueueError::Task(error.to_string())))
            }
        };
        let Some(id) = self.in_flight.remove(&task) else { return };
        let was_cancelled = self.shared.cancelled.lock().map(|mut set| set.remove(&id)).unwrap_or(false);
        if was_cancelled {
            self.shared.forget_unsaved(&id);
            let spool = self.shared.spool.clone();
            let target = id.clone();
            if let Err(error) = blocking(move || spool.remove(&target)).await {
                tracing::error!(queue_id = %id, %error, "cannot remove message");
            }
            return;
        }
        match result {
            Ok(Next::Done) => {}
            Ok(Next::At(at)) => {
                self.due.insert(id, at);
            }
            Err(error) => {
                let retry = self.shared.config.load().delivery.retry_initial.0;
                tracing::error!(queue_id = %id, %error, "delivery attempt failed inside moat; will retry");
                self.due.insert(id, unix_now().saturating_add(retry as i64));
            }
        }
    }

    /// Adds spooled messages the manager does not know (their submit was dropped).
    async fn scan(&mut self) {
        let spool = self.shared.spool.clone();
        match blocking(move || spool.list()).await {
            Ok(ids) => ids.into_iter().for_each(|id| self.enqueue(id)),
            Err(error) => tracing::error!(%error, "cannot scan the spool"),
        }
    }

    /// Shutdown: no new attempts; running ones get the grace period; idle connections QUIT.
    async fn drain(mut self) {
        let grace = self.shared.config.load().timeouts.shutdown_grace.duration();
        let running = self.tasks.len();
        if running > 0 {
            tracing::info!(running, grace_seconds = grace.as_secs(), "queue stopping: waiting for running deliveries");
        }
        let finished = tokio::time::timeout(grace, async {
            while let Some(joined) = self.tasks.join_next_with_id().await {
                self.finished(joined).await;
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(abandoned = self.tasks.len(), "deliveries abandoned at shutdown; they stay queued");
            self.tasks.abort_all();
        }
        let idle = self.shared.pool.drain();
        let quits: Vec<_> = idle.into_iter().map(|conn| tokio::spawn(conn.quit())).collect();
        for quit in quits {
            let _ = quit.await;
        }
        tracing::info!("queue stopped");
    }
}

fn close_all(connections: Vec<Connection>) {
    for conn in connections {
        tokio::spawn(conn.quit());
    }
}

/// One delivery attempt for one message.
async fn attempt(shared: Arc<Shared>, id: String, forced: bool) -> Result<Next, QueueError> {
    let config = shared.config.load_full();
    let policy = retry_policy(&config);
    let spool = shared.spool.clone();
    let target = id.clone();
    let (envelope, origin, _) = match blocking(move || spool.load_envelope(&target)).await {
        Ok(found) => found,
        Err(SpoolError::NotFound(_)) => return Ok(Next::Done),
        Err(SpoolError::Corrupt(reason)) => {
            tracing::error!(queue_id = %id, %reason, "corrupt spool record moved to corrupt/");
            let spool = shared.spool.clone();
            blocking(move || spool.quarantine_corrupt(&id)).await?;
            return Ok(Next::Done);
        }
        Err(error) => return Err(error.into()),
    };
    let mut state = match shared.unsaved(&id) {
        Some(state) => state,
        None => {
            let spool = shared.spool.clone();
            let env = envelope.clone();
            blocking(move || spool.read_state(&env.id, &env)).await?
        }
    };
    let now = unix_now();
    if state.is_final() {
        return finalize(&shared, &config, &envelope, origin, &state, None).await;
    }
    if !forced && state.next_attempt > now {
        return Ok(Next::At(state.next_attempt));
    }
    if state.expire_if_old(envelope.received_at, now, &policy) {
        tracing::info!(event = "message_expired", queue_id = %id, sender = %envelope.sender, "message expired (max_lifetime); pending recipients failed with 4.4.7");
        record_state(&shared, &id, &state).await?;
        return finalize(&shared, &config, &envelope, origin, &state, None).await;
    }
    let spool = shared.spool.clone();
    let target = id.clone();
    let (_, _, message) = match blocking(move || spool.load(&target)).await {
        Err(SpoolError::NotFound(_)) => return Ok(Next::Done),
        other => other?,
    };
    let mut outcomes = Vec::new();
    for (route, indexes) in group_by_route(&config, origin, &envelope, &state.pending()) {
        outcomes.extend(deliver_group(&shared, &config, &route, &envelope, &message, &indexes).await);
    }
    if shared.is_cancelled(&id) {
        return Ok(Next::Done);
    }
    state.record_attempt(&outcomes, envelope.received_at, unix_now(), &policy);
    if state.is_final() && !state.any_failed() {
        // Delivered to everyone: removing the message records that, and needs no free space.
        return finalize(&shared, &config, &envelope, origin, &state, None).await;
    }
    record_state(&shared, &id, &state).await?;
    if state.is_final() {
        finalize(&shared, &config, &envelope, origin, &state, Some(message)).await
    } else {
        Ok(Next::At(state.next_attempt))
    }
}

/// Writes the delivery state; when the spool cannot (a full disk, an I/O error) keeps it in
/// memory for the next attempt, which starts from it and writes it again.
async fn record_state(shared: &Shared, id: &str, state: &DeliveryState) -> Result<(), QueueError> {
    let spool = shared.spool.clone();
    let (target, copy) = (id.to_string(), state.clone());
    match blocking(move || spool.write_state(&target, &copy)).await {
        Ok(()) => {
            shared.forget_unsaved(id);
            Ok(())
        }
        Err(error) if error.is_temporary() => {
            tracing::warn!(event = "state_unsaved", queue_id = %id, %error, note = "kept in memory; written at the next attempt");
            if let Ok(mut map) = shared.unsaved.lock() {
                map.insert(id.to_string(), state.clone());
            }
            Ok(())
        }
        Err(other) => Err(other.into()),
    }
}

/// Every recipient is final: bounce what failed (unless the sender is null or this is itself a
/// DSN), then delete the message.
async fn finalize(
    shared: &Shared,
    config: &Config,
    envelope: &Envelope,
    origin: Origin,
    state: &DeliveryState,
    message: Option<Vec<u8>>,
) -> Result<Next, QueueError> {
    if shared.is_cancelled(&envelope.id) {
        return Ok(Next::Done);
    }
    if state.any_failed() {
        if origin == Origin::Inbound && !envelope.sender.is_empty() {
            queue_dsn(shared, config, envelope, state, message).await?;
        } else {
            tracing::warn!(queue_id = %envelope.id, "undeliverable message from the null sender dropped (no DSN)");
        }
    }
    let spool = shared.spool.clone();
    let id = envelope.id.clone();
    blocking(move || spool.remove(&id)).await?;
    shared.forget_unsaved(&envelope.id);
    tracing::info!(event = "message_done", queue_id = %envelope.id, sender = %envelope.sender, "message done: every recipient final; removed from queue");
    Ok(Next::Done)
}

async fn queue_dsn(
    shared: &Shared,
    config: &Config,
    envelope: &Envelope,
    state: &DeliveryState,
    message: Option<Vec<u8>>,
) -> Result<(), QueueError> {
    let message = match message {
        Some(message) => message,
        None => {
            let spool = shared.spool.clone();
            let id = envelope.id.clone();
            blocking(move || spool.load(&id)).await?.2
        }
    };
    let Some(bytes) = dsn::build_dsn(&config.hostname, envelope, state, &message, chrono::Utc::now()) else {
        return Ok(());
    };
    let dsn_envelope = dsn::dsn_envelope(envelope, &config.hostname, unix_now());
    let spool = shared.spool.clone();
    let stored = dsn_envelope.clone();
    blocking(move || spool.store_as(&stored, Origin::Dsn, &bytes, None)).await?;
    tracing::info!(event = "dsn_queued", queue_id = %envelope.id, dsn_id = %dsn_envelope.id, to = %envelope.sender, "delivery status notification queued");
    if shared.wake.try_send(dsn_envelope.id).is_err() {
        tracing::debug!("submit channel full; the DSN is picked up by the next scan");
    }
    Ok(())
}

/// Pending recipients grouped by route, in recipient order.
fn group_by_route(config: &Config, origin: Origin, envelope: &Envelope, pending: &[usize]) -> Vec<(Route, Vec<usize>)> {
    let mut groups: Vec<(String, Route, Vec<usize>)> = Vec::new();
    for &index in pending {
        let Some(rcpt) = envelope.recipients.get(index) else { continue };
        let route = match origin {
            Origin::Dsn => config.delivery.dsn_route.as_ref().unwrap_or(&config.downstream),
            Origin::Inbound => {
                let domain = rcpt.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase());
                config.route_for(domain.as_deref().unwrap_or(""))
            }
        };
        let key = pool::route_key(route);
        match groups.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, indexes)) => indexes.push(index),
            None => groups.push((key, route.clone(), vec![index])),
        }
    }
    groups.into_iter().map(|(_, route, indexes)| (route, indexes)).collect()
}

/// One SMTP transaction for the recipients `indexes` over a cached or new connection. Never
/// fails: connection trouble defers the recipients. Logs one line.
async fn deliver_group(
    shared: &Shared,
    config: &Config,
    route: &Route,
    envelope: &Envelope,
    message: &[u8],
    indexes: &[usize],
) -> Vec<(usize, DeliveryOutcome, Option<String>)> {
    let recipients: Vec<String> = indexes.iter().filter_map(|i| envelope.recipients.get(*i).cloned()).collect();
    let peer = client::peer_of(route);
    let request = MessageRequest {
        sender: &envelope.sender,
        recipients: &recipients,
        message,
        body_8bit: envelope.body_8bit,
        smtputf8: envelope.smtputf8,
    };
    let result = transaction(shared, config, route, &request).await;
    log_attempt(envelope, &recipients, &peer, &result);
    match result {
        Ok((result, _)) => indexes.iter().copied().zip(result.outcomes).map(|(i, o)| (i, o, Some(peer.clone()))).collect(),
        Err(error) => {
            let reply = error.as_reply();
            let remote = matches!(error, ClientError::Replied { .. }).then(|| peer.clone());
            indexes.iter().map(|i| (*i, DeliveryOutcome::Deferred(reply.clone()), remote.clone())).collect()
        }
    }
}

async fn transaction(
    shared: &Shared,
    config: &Config,
    route: &Route,
    request: &MessageRequest<'_>,
) -> Result<(TransactionResult, Option<String>), ClientError> {
    let key = pool::route_key(route);
    let delivery = &config.delivery;
    let mut conn = obtain(shared, config, route, &key).await?;
    let result = conn.send_message(request).await?;
    let tls = conn.tls().map(str::to_string);
    let max_idle = delivery.concurrency.max(1);
    if let Some(conn) = shared.pool.put(&key, conn, delivery.max_messages_per_connection, max_idle) {
        tokio::spawn(conn.quit());
    }
    Ok((result, tls))
}

/// A cached connection that still answers RSET, else a new one.
async fn obtain(shared: &Shared, config: &Config, route: &Route, key: &str) -> Result<Connection, ClientError> {
    let (cached, expired) = shared.pool.take(key, config.delivery.idle_timeout.duration());
    close_all(expired);
    if let Some(mut conn) = cached {
        match conn.reset().await {
            Ok(()) => return Ok(conn),
            Err(error) => tracing::debug!(downstream = %conn.peer(), %error, "cached connection unusable; reconnecting"),
        }
    }
    Connection::connect(route, &ClientSettings::from_config(config)).await
}

/// The one log line per delivery attempt: envelope metadata and the downstream's replies.
fn log_attempt(envelope: &Envelope, recipients: &[String], peer: &str, result: &Result<(TransactionResult, Option<String>), ClientError>) {
    let rcpts = recipients.join(",");
    match result {
        Ok((result, tls)) => {
            let count = |f: fn(&DeliveryOutcome) -> bool| result.outcomes.iter().filter(|o| f(o)).count();
            let delivered = count(|o| matches!(o, DeliveryOutcome::Delivered(_)));
            let failed = count(|o| matches!(o, DeliveryOutcome::Failed(_)));
            let outcome = match (delivered, failed) {
                (d, _) if d == recipients.len() => "delivered",
                (_, f) if f == recipients.len() => "failed",
                (0, 0) => "deferred",
                _ => "partial",
            };
            let replies: Vec<String> = recipients
                .iter()
                .zip(&result.outcomes)
                .map(|(r, o)| match o {
                    DeliveryOutcome::Delivered(reply) | DeliveryOutcome::Failed(reply) | DeliveryOutcome::Deferred(reply) => {
                        format!("<{r}> {reply}")
                    }
                })
                .collect();
            metrics::counter!("moat_delivery_attempts_total", "outcome" => outcome).increment(1);
            tracing::info!(
                event = "delivery", queue_id = %envelope.id, sender = %envelope.sender, recipients = %rcpts, downstream = %peer,
                tls = tls.as_deref().unwrap_or("none"), outcome,
                reply = %result.final_reply.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                replies = %replies.join("; "),
                "delivery attempt"
            );
        }
        Err(error) => {
            metrics::counter!("moat_delivery_attempts_total", "outcome" => "deferred").increment(1);
            tracing::info!(
                event = "delivery", queue_id = %envelope.id, sender = %envelope.sender, recipients = %rcpts, downstream = %peer,
                tls = "unknown", outcome = "deferred", reply = %error.as_reply(), "delivery attempt"
            )
        }
    }
}

/// The retry policy of a configuration.
pub fn retry_policy(config: &Config) -> RetryPolicy {
    let d = &config.delivery;
    RetryPolicy { initial: d.retry_initial.0, max: d.retry_max.0, max_lifetime: d.max_lifetime.0 }
}
