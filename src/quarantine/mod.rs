//! The quarantine: where held copies go after the session said 250, and how they come back.
//!
//! **Holding → store.** The session writes each held copy, with the verdict behind it
//! ([`Hold`]), to the local *holding* spool (fsynced) before it answers 250. [`Quarantine::ingest`]
//! then moves every held copy into the store: one item per recipient, its contents sealed by the
//! vault, and only when all of a copy's items are in the store is the spool copy removed. Item ids
//! are derived from the spool id and the recipient, so an ingest that stopped half-way (crash,
//! store unreachable) inserts what is missing on its next run and nothing twice. While the store is
//! unreachable, held copies simply wait in the holding spool.
//!
//! **Release, exactly once** (two clicks, the CLI and a click, two nodes): the contents are opened
//! and a copy for that one recipient is *staged* in the local staging spool (fsynced); then the
//! store's conditional state change decides, recording the staged copy's id as the release's
//! ticket. The winner moves its staged copy into the delivery spool; a loser deletes its own.
//! After a crash, [`Quarantine::recover`] settles every staged copy by asking the store whose
//! ticket won, so a release is neither lost nor delivered twice.
//!
//! **Notices and digests.** A newly held virus gets its recipient a notice (`moat::notices`);
//! the background task also sends the scheduled digests (`moat::digest`), which use the same
//! staged, store-gated sending as releases ([`Quarantine::send_once`]).
//!
//! **Retention.** [`Quarantine::sweep`] expires items with their contents, old audit records and
//! stale greylist rows; the server runs it at start and every hour.
//!
//! Nothing here logs a subject or contents: log lines carry item ids, spool ids and addresses.

pub mod export;
mod ingest;
pub mod offboard;

use crate::classifier::Label;
use crate::clock::blocking;
use crate::config::Config;
use crate::learning::{self, Learner, Teacher};
use crate::links::LinkKey;
use crate::notices;
use crate::spool::{Envelope, Hold, Spool, SpoolError, Staged};
use crate::store::vault::{Vault, VaultError};
use crate::store::{self, Category, ItemState, QuarantineItem, Recorded, ReleaseVia, Store, StoreError};
use arc_swap::ArcSwap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

pub use ingest::{item_id, items_for};

/// How often held copies are retried when the store was unreachable.
const INGEST_RETRY: Duration = Duration::from_secs(10);
/// Held copies moved into the store at once.
const INGEST_PARALLEL: usize = 4;

/// Everything the quarantine can fail with. Never carries message contents.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    #[error("{0}")]
    Key(#[from] crate::keys::KeyError),
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("quarantine task failed: {0}")]
    Task(String),
}

/// What one ingest run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Held copies moved into the store.
    pub copies: usize,
    /// Spool ids of the virus notices written, to be submitted to the delivery queue.
    pub notices: Vec<String>,
}

/// A release that won: the spool id of the copy now on its way to the recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub item: String,
    pub recipient: String,
    pub queue_id: String,
}

/// The quarantine service: the store, the vault and the three spools it moves copies between.
pub struct Quarantine {
    store: Store,
    /// The classifier's learner: a released message is taught as ham.
    learner: Arc<Learner>,
    vault: Vault,
    /// Held copies waiting to go into the store (written by sessions).
    holding: Arc<Spool>,
    /// Release copies written before the store decides.
    staging: Arc<Spool>,
    /// Where released copies go to be delivered.
    delivery: Arc<Spool>,
    config: Arc<ArcSwap<Config>>,
    /// The rule files' plain-language reasons, shown first for each held item.
    reasons: ArcSwap<crate::ruleset::reasons::Reasons>,
    /// Signs the links in notices; `None` without a `[web]` section (then no notices).
    links: Option<LinkKey>,
    /// Held copies a session is still writing (it may yet undo them): ingest leaves them alone.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
    wake: Notify,
}

impl std::fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Quarantine({:?})", self.store)
    }
}

impl Quarantine {
    /// Opens the store (running its migrations), the vault (creating the key on first use) and
    /// the holding and staging spools under the state directory. `delivery` is the spool
    /// released copies join.
    pub async fn open(config: Arc<ArcSwap<Config>>, delivery: Arc<Spool>) -> Result<Quarantine, QuarantineError> {
        let current = config.load_full();
        let store = Store::open(&current).await?;
        let key_file = current.vault_key_file();
        let vault =
            tokio::task::spawn_blocking(move || Vault::open(&key_file)).await.map_err(|e| QuarantineError::Task(e.to_string()))??;
        let (holding_dir, staging_dir) = (current.quarantine_dir(), current.release_staging_dir());
        let (holding, staging) = blocking(move || Ok::<_, SpoolError>((Spool::open(&holding_dir)?, Spool::open(&staging_dir)?))).await?;
        let links = match current.web {
            Some(_) => {
                let path = current.link_key_file();
                Some(tokio::task::spawn_blocking(move || LinkKey::open(&path)).await.map_err(|e| QuarantineError::Task(e.to_string()))??)
            }
            None => None,
        };
        let learner = Arc::new(Learner::new(store.clone(), crate::classifier::nothing_in_force(), learning::settings(&current.classifier)));
        let reasons = ArcSwap::from_pointee(read_reasons(&current).unwrap_or_default());
        Ok(Quarantine {
            store,
            learner,
            vault,
            holding: Arc::new(holding),
            staging: Arc::new(staging),
            delivery,
            config,
            reasons,
            links,
            in_flight: std::sync::Mutex::new(std::collections::HashSet::new()),
            wake: Notify::new(),
        })
    }

    /// The spool sessions write held copies to.
    pub fn holding(&self) -> &Arc<Spool> {
        &self.holding
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This node's classifier learner (and through it the model in force).
    pub fn learner(&self) -> &Arc<Learner> {
        &self.learner
    }

    /// Tells the background task that held copies are waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A session is about to write held copy `id` and may still remove it (when a later copy
    /// of the same message fails): ingest skips it until [`Quarantine::end_holds`].
    pub fn begin_hold(&self, id: &str) {
        self.in_flight().insert(id.to_string());
    }

    /// The session is done with these held copies (kept or removed); ingest may take them.
    pub fn end_holds<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut in_flight = self.in_flight();
        for id in ids {
            in_flight.remove(id);
        }
        drop(in_flight);
        self.wake();
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The plain-language reasons in force (see [`crate::ruleset::reasons`]).
    pub fn reasons(&self) -> Arc<crate::ruleset::reasons::Reasons> {
        self.reasons.load_full()
    }

    /// Puts the reasons of the rule set now in force in force here too (they were read with it,
    /// so the two never differ).
    pub fn set_reasons(&self, reasons: Arc<crate::ruleset::reasons::Reasons>) {
        self.reasons.store(reasons);
    }

    /// The link-signing key, when `[web]` is configured.
    pub fn links(&self) -> Option<&LinkKey> {
        self.links.as_ref()
    }

    /// Moves every held copy from the holding spool into the store, writing a virus notice for
    /// each newly held virus. A copy that cannot be read is moved aside to the holding spool's
    /// `corrupt/`; a store error stops the run (the copies wait for the next one).
    pub async fn ingest(&self) -> Result<Ingested, QuarantineError> {
        use futures_util::StreamExt as _;
        let holding = self.holding.clone();
        let ids = blocking(move || holding.list()).await?;
        let mut done = Ingested::default();
        let mut first_error = None;
        // A copy's time is mostly waiting (the store's commit, the spool's fsync): a few at once.
        let mut copies = futures_util::stream::iter(ids).map(|id| self.ingest_copy(id)).buffer_unordered(INGEST_PARALLEL);
        while let Some(result) = copies.next().await {
            match result {
                Ok(Some(notices)) => {
                    done.copies += 1;
                    done.notices.extend(notices);
                }
                Ok(None) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            // Nothing went in: the caller logs it and the copies wait in the holding spool.
            Some(error) if done.copies == 0 => Err(error),
            Some(error) => {
                tracing::warn!(event = "quarantine_ingest", error = %error, ingested = done.copies, note = "the rest wait in the holding spool");
                Ok(done)
            }
            None => Ok(done),
        }
    }

    /// Moves one held copy into the store and out of the holding spool: `Some(notices)` when it
    /// went in, `None` when there was nothing to do (a session still owns it, it is gone, or it
    /// was corrupt and moved aside).
    async fn ingest_copy(&self, id: String) -> Result<Option<Vec<String>>, QuarantineError> {
        if self.in_flight().contains(&id) {
            return Ok(None);
        }
        let holding = self.holding.clone();
        let spool_id = id.clone();
        let loaded = blocking(move || holding.load(&spool_id)).await;
        let (envelope, _, message) = match loaded {
            Ok(record) => record,
            Err(SpoolError::NotFound(_)) => return Ok(None),
            Err(error @ SpoolError::Task(_)) => return Err(error.into()),
            Err(error) => {
                tracing::error!(event = "quarantine_ingest", queue_id = %id, error = %error, note = "moved aside");
                let holding = self.holding.clone();
                blocking(move || holding.quarantine_corrupt(&id)).await?;
                return Ok(None);
            }
        };
        let notices = self.ingest_one(&envelope, &message).await?;
        let holding = self.holding.clone();
        blocking(move || holding.remove(&id)).await?;
        Ok(Some(notices))
    }

    /// Inserts the items of one held copy that are not in the store yet; returns the spool ids
    /// of the notices written for them.
    async fn ingest_one(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<String>, QuarantineError> {
        let mut notices = Vec::new();
        let config = self.config.load();
        let now = store::unix_now();
        for item in items_for(envelope, message, now, config.store.retention.duration()) {
            match self.store.get_item(&item.id).await {
                Ok(_) => continue,
                Err(StoreError::NotFound { .. }) => {}
                Err(other) => return Err(other.into()),
            }
            let sealed = self.vault.seal(&item.id, message)?;
            self.store.insert_item(&item, &sealed).await?;
            metrics::counter!("moat_quarantined_total", "category" => item.category.as_str()).increment(1);
            tracing::info!(
                event = "quarantined",
                item = %item.id,
                queue_id = %envelope.id,
                recipient = %item.recipient,
                category = item.category.as_str(),
                score = item.score,
            );
            if item.category == Category::Virus {
                notices.extend(self.notify_virus(&item).await);
            }
        }
        Ok(notices)
    }

    /// Writes the virus notice for `item` to the delivery spool, unless notices are off, there
    /// is no `[web]` for the opt-out link, or the user opted out. A notice that cannot be
    /// written is logged, never retried at the cost of the quarantine itself.
    async fn notify_virus(&self, item: &QuarantineItem) -> Option<String> {
        let config = self.config.load_full();
        let key = self.links.as_ref().filter(|_| config.notices.virus)?;
        let prefs = match self.store.get_preferences(&item.recipient).await {
            Ok(prefs) if prefs.opt_out => return None,
            Ok(prefs) => prefs,
            Err(error) => {
                tracing::warn!(event = "virus_notice", item = %item.id, error = %error, note = "preferences unreadable; notice sent");
                store::Preferences::default()
            }
        };
        let locale = config.locale_for(&item.recipient, &prefs.language, &prefs.time_zone);
        let (envelope, message) = notices::virus_notice(&config, key, item, &locale, store::unix_now())?;
        match self.send_to_user(envelope, message).await {
            Ok(id) => {
                metrics::counter!("moat_virus_notices_total").increment(1);
                tracing::info!(event = "virus_notice", item = %item.id, recipient = %item.recipient, queue_id = %id);
                Some(id)
            }
            Err(error) => {
                tracing::error!(event = "virus_notice", item = %item.id, error = %error, outcome = "not sent");
                None
            }
        }
    }

    /// Writes an email of moat's own (a notice, a login link) to the delivery spool; returns
    /// its queue id, for the caller to submit.
    pub async fn send_to_user(&self, envelope: Envelope, message: Vec<u8>) -> Result<String, QuarantineError> {
        let id = envelope.id.clone();
        let delivery = self.delivery.clone();
        blocking(move || delivery.store(&envelope, &message)).await?;
        Ok(id)
    }

    /// Releases item `id` to its recipient, exactly once (see the module docs). The caller
    /// submits [`Released::queue_id`] to the delivery queue when one is running; otherwise the
    /// copy is delivered when the server next starts.
    pub async fn release(&self, id: &str, actor: &str, via: ReleaseVia) -> Result<Released, QuarantineError> {
        let item = self.store.get_item(id).await?;
        if item.state != ItemState::Held {
            return Err(StoreError::NotHeld { id: id.to_string(), current: item.state }.into());
        }
        let message = self.open_contents(id).await?;
        let envelope = release_envelope(&item, &message);
        let lesson = Arc::new(message.clone());
        let gate =
            |ticket: String| async move { self.store.release(id, actor, via, store::unix_now(), Some(&ticket)).await.map(|()| true) };
        // The gate either wins (true) or fails (lost race: NotHeld), so a won send always has an id.
        let queue_id = self
            .send_once(envelope, message, gate)
            .await?
            .ok_or_else(|| QuarantineError::Task("release gate lost without an error".into()))?;
        metrics::counter!("moat_releases_total", "via" => via.as_str()).increment(1);
        tracing::info!(event = "released", item = %id, recipient = %item.recipient, actor, via = via.as_str(), queue_id = %queue_id);
        self.teach(lesson, Label::Ham, actor, "release").await;
        Ok(Released { item: id.to_string(), recipient: item.recipient, queue_id })
    }

    /// Teaches the classifier `message` as `label` on behalf of `actor`, if the classifier is
    /// on. Teaching never fails the action that prompted it (a release, a report): a refusal
    /// (the daily bound) or a store error is logged and the action stands.
    pub async fn teach(&self, message: Arc<Vec<u8>>, label: Label, actor: &str, via: &'static str) -> Option<Recorded> {
        let config = self.config.load();
        if !config.classifier.enabled {
            return None;
        }
        let teacher = Teacher { name: actor.to_string(), via, daily_bound: config.classifier.user_lessons_per_day };
        match self.learner.teach(message, label, &teacher).await {
            Ok(recorded) => Some(recorded),
            Err(error) => {
                tracing::warn!(event = "not_taught", via, teacher = %actor, error = %error);
                None
            }
        }
    }

    /// Sends a message exactly once: stages it, asks `gate` (given the staged copy's id, to
    /// record as the ticket) whether this caller won, then moves it to the delivery spool (won:
    /// returns its id, to be submitted) or drops it (lost: `None`).
    pub(crate) async fn send_once<F, Fut>(&self, envelope: Envelope, message: Vec<u8>, gate: F) -> Result<Option<String>, QuarantineError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<bool, StoreError>>,
    {
        let queue_id = envelope.id.clone();
        let staging = self.staging.clone();
        blocking(move || staging.store(&envelope, &message)).await?;
        let won = gate(queue_id.clone()).await;
        if matches!(won, Ok(true)) {
            self.activate(&queue_id).await?;
            return Ok(Some(queue_id));
        }
        let staging = self.staging.clone();
        let id = queue_id.clone();
        blocking(move || staging.remove(&id)).await?;
        won.map(|_| None).map_err(QuarantineError::from)
    }

    /// Moves a staged release copy into the delivery spool.
    async fn activate(&self, queue_id: &str) -> Result<(), QuarantineError> {
        let (staging, delivery, id) = (self.staging.clone(), self.delivery.clone(), queue_id.to_string());
        Ok(blocking(move || delivery.adopt(&staging, &id)).await?)
    }

    /// The contents of item `id`, opened. Only for the item's own user (the web view behind
    /// their signed link); never logged.
    pub async fn open_contents(&self, id: &str) -> Result<Vec<u8>, QuarantineError> {
        let sealed = self.store.get_content(id).await?;
        Ok(self.vault.open_sealed(id, &sealed)?)
    }

    /// Deletes item `id` (only while held): its contents go at once, its row stays until expiry
    /// so a late click says "already deleted".
    pub async fn delete(&self, id: &str) -> Result<(), QuarantineError> {
        self.store.set_state(id, ItemState::Deleted).await?;
        tracing::info!(event = "quarantine_deleted", item = %id);
        Ok(())
    }

    /// Settles release copies staged before a crash: a copy whose ticket won goes to delivery
    /// (returned, to be submitted), any other is deleted. A copy is left alone (and settled on
    /// the next run) while the store cannot be asked.
    pub async fn recover(&self) -> Result<Vec<String>, QuarantineError> {
        let staging = self.staging.clone();
        let ids = blocking(move || staging.list()).await?;
        let mut activated = Vec::new();
        for queue_id in ids {
            let staging = self.staging.clone();
            let id = queue_id.clone();
            let Ok((envelope, _, _)) = blocking(move || staging.load_envelope(&id)).await else {
                continue;
            };
            let won = match &envelope.staged {
                Some(Staged::Release { item }) => match self.store.releases(item).await {
                    Ok(records) => records.iter().any(|r| r.ticket.as_deref() == Some(queue_id.as_str())),
                    Err(StoreError::NotFound { .. }) => false,
                    Err(error) => return Err(error.into()),
                },
                Some(Staged::Digest { address }) => self.store.digest_ticket(address).await?.as_deref() == Some(queue_id.as_str()),
                None => false,
            };
            if won {
                self.activate(&queue_id).await?;
                tracing::info!(event = "release_recovered", queue_id = %queue_id, outcome = "delivered");
                activated.push(queue_id);
            } else {
                let staging = self.staging.clone();
                let id = queue_id.clone();
                blocking(move || staging.remove(&id)).await?;
                tracing::info!(event = "release_recovered", queue_id = %queue_id, outcome = "dropped");
            }
        }
        Ok(activated)
    }

    /// Expires items and contents past their retention, old audit records and stale greylist rows.
    pub async fn sweep(&self, now: store::UnixTime) -> Result<store::Expired, QuarantineError> {
        let config = self.config.load();
        let expired = self.store.expire(now, config.store.retention.duration(), config.greylist_lifetime()).await?;
        tracing::info!(
            event = "retention_sweep",
            items = expired.items,
            audit_records = expired.audit_records,
            greylist = expired.greylist,
            classifier_lessons = expired.lessons
        );
        Ok(expired)
    }

    /// The quarantine's background work in a running server until shutdown: settle staged
    /// releases, then ingest whenever a session holds a copy (and every [`INGEST_RETRY`] while
    /// copies wait). `submit` hands released copies and notices to the delivery queue.
    pub async fn run(self: Arc<Self>, submit: impl Fn(String) + Send + 'static, mut shutdown: watch::Receiver<bool>) {
        let mut settled = false;
        loop {
            if !settled {
                match self.recover().await {
                    Ok(ids) => {
                        ids.into_iter().for_each(&submit);
                        settled = true;
                    }
                    Err(error) => tracing::warn!(event = "release_recovery", error = %error, note = "retried"),
                }
            }
            match self.ingest().await {
                Ok(done) => done.notices.into_iter().for_each(&submit),
                Err(error) => tracing::warn!(event = "quarantine_ingest", error = %error, note = "held copies wait in the holding spool"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(INGEST_RETRY) => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
        }
    }
}

/// The envelope of a release copy: the original sender, to that one recipient.
fn release_envelope(item: &QuarantineItem, message: &[u8]) -> Envelope {
    Envelope {
        id: Spool::new_id(),
        received_at: store::unix_now(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: String::new(),
        sender: item.sender.clone(),
        recipients: vec![item.recipient.clone()],
        smtputf8: !item.sender.is_ascii() || !item.recipient.is_ascii(),
        body_8bit: !message.is_ascii(),
        tls: None,
        hold: None,
        staged: Some(Staged::Release { item: item.id.clone() }),
    }
}

/// The holding record's verdict, for a held copy written by a session.
pub fn hold_of(category: store::Category, verdict: &crate::verdict::Verdict) -> Hold {
    Hold { category, score: verdict.score, symbols: verdict.symbols.clone() }
}

/// The reasons in `config`'s rule files, or None (logged) when they cannot be read: for a
/// quarantine opened without a rule set (the command line); a server sets its rule set's.
fn read_reasons(config: &Config) -> Option<crate::ruleset::reasons::Reasons> {
    crate::ruleset::reasons::read(&config.rule_dirs())
        .map_err(|errors| {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            tracing::warn!(event = "reasons_unreadable", errors = errors.len(), first = %first);
        })
        .ok()
}
