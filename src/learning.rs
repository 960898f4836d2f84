//! Learning: keeping this node's classifier model in step with the store, and teaching it.
//!
//! Teaching only records a lesson (the message's content digest, label, teacher, hashed
//! features) in the store; [`Learner::fold`] later folds pending lessons into the model in
//! batches and saves the model together with the marks of what it now holds, by
//! compare-and-set on the model's version. Every node does this for the one shared model (SQLite
//! for one node, PostgreSQL for several): [`run`] asks the store every `[classifier] sync` for a
//! newer model, folds pending lessons, and puts the result in force.
//!
//! Guarantees:
//! - One message is learned at most once per label: lessons are keyed by content digest; a
//!   message taught again with the same label changes nothing, with the other label it moves
//!   (unlearned from the old label, learned with the new) when folded.
//! - Lessons and model never disagree: the model and the lesson marks are saved in one
//!   transaction that only succeeds on the version read, so two nodes (or `moat learn` beside
//!   a running server) never lose or double each other's lessons; the loser reads the winner's
//!   model and folds again.
//! - A node that cannot reach the store keeps classifying with the model it has.
//! - One user teaches at most `[classifier] user_lessons_per_day` messages a day.

use crate::classifier::{self, Features, InForce, Label, Model, Settings, Snapshot, Tokenizer};
use crate::clock::{TaskFailed, blocking, unix_now};
use crate::store::{Lesson, LessonChange, Recorded, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Lessons folded into the model per save.
pub const FOLD_BATCH: u32 = 2_000;
/// How often a fold that lost the compare-and-set to another node is tried again at once.
const FOLD_ATTEMPTS: usize = 5;
const DAY: i64 = 86_400;

/// Why learning failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the stored model cannot be read: {0}")]
    Model(#[from] classifier::LoadError),
    #[error("{teacher} already taught {count} messages today, the most one user may")]
    DailyBound { teacher: String, count: u64 },
    #[error("other learners kept changing the model; try again")]
    Contended,
    #[error("learning failed internally: {0}")]
    Task(String),
}

impl From<TaskFailed> for LearnError {
    fn from(failed: TaskFailed) -> LearnError {
        LearnError::Task(failed.0)
    }
}

/// Who taught a message, and how (recorded with the lesson; metadata only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teacher {
    /// A user's address, an admin's name, or `root` for the command line.
    pub name: String,
    /// `release`, `report`, `message_center`, `cli`, `autolearn`.
    pub via: &'static str,
    /// Lessons this teacher may give per day (0: no bound).
    pub daily_bound: u64,
}

/// This node's learner.
pub struct Learner {
    store: Store,
    in_force: InForce,
    /// Parameters for a model created here (the first lesson of an installation).
    settings: Settings,
    /// One fold or forget at a time on this node.
    writing: tokio::sync::Mutex<()>,
}

impl Learner {
    pub fn new(store: Store, in_force: InForce, settings: Settings) -> Learner {
        Learner { store, in_force, settings, writing: tokio::sync::Mutex::new(()) }
    }

    /// The model in force on this node (shared with the classifier filter).
    pub fn in_force(&self) -> &InForce {
        &self.in_force
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Puts the store's model in force if it is newer than ours; returns whether it changed.
    pub async fn refresh(&self) -> Result<bool, LearnError> {
        let stored = self.store.model_version().await?;
        let ours = self.in_force.load().as_ref().map(|s| s.version);
        if stored == 0 || ours == Some(stored) {
            return Ok(false);
        }
        let Some(stored) = self.store.load_model().await? else { return Ok(false) };
        let model = blocking(move || {
            Model::from_bytes(&stored.data).map(|model| Snapshot { version: stored.version, model }).map_err(LearnError::from)
        })
        .await?;
        let (spam, ham) = model.model.learned();
        tracing::info!(event = "classifier_model_loaded", version = model.version, spam, ham);
        self.in_force.store(Some(Arc::new(model)));
        Ok(true)
    }

    /// The latest model to change: the store's, or a new empty one when none was ever saved.
    async fn latest(&self) -> Result<Arc<Snapshot>, LearnError> {
        self.refresh().await?;
        match self.in_force.load_full() {
            Some(snapshot) => Ok(snapshot),
            None => {
                let settings = self.settings;
                Ok(Arc::new(Snapshot { version: 0, model: blocking(move || Ok::<_, LearnError>(Model::new(settings))).await? }))
            }
        }
    }

    /// The tokenizer of the shared model. Features depend on the model's secret seed, so the
    /// installation's first lesson saves an empty model first (every node then uses its seed).
    pub async fn tokenizer(&self) -> Result<Tokenizer, LearnError> {
        let latest = self.latest().await?;
        if latest.version > 0 {
            return Ok(latest.model.tokenizer());
        }
        let bytes = {
            let latest = latest.clone();
            blocking(move || Ok::<_, LearnError>(latest.model.to_bytes())).await?
        };
        let tokenizer = latest.model.tokenizer();
        let model = Arc::try_unwrap(latest).map(|s| s.model).unwrap_or_else(|shared| shared.model.clone());
        if self.commit(0, model, &bytes, &[]).await? {
            return Ok(tokenizer);
        }
        // Another node saved the first model meanwhile: use its seed.
        self.refresh().await?;
        self.in_force.load().as_ref().map(|s| s.model.tokenizer()).ok_or(LearnError::Contended)
    }

    /// Teaches `raw` as `label`: records the lesson, to be folded into the model by the next
    /// [`Learner::fold`] (on this node within `[classifier] sync`, or by `moat learn` itself).
    pub async fn teach(&self, raw: Arc<Vec<u8>>, label: Label, teacher: &Teacher) -> Result<Recorded, LearnError> {
        let now = unix_now();
        if teacher.daily_bound > 0 {
            let count = self.store.lessons_since(&teacher.name, now - DAY).await?;
            if count >= teacher.daily_bound {
                return Err(LearnError::DailyBound { teacher: teacher.name.clone(), count });
            }
        }
        let tokenizer = self.tokenizer().await?;
        let lesson = blocking(move || Ok::<_, LearnError>(lesson_of(&tokenizer, &raw, label))).await?;
        let lesson = Lesson { taught_by: teacher.name.clone(), via: teacher.via.to_string(), at: now, ..lesson };
        let recorded = self.store.put_lesson(&lesson).await?;
        metrics::counter!("moat_classifier_lessons_total", "label" => label.as_str(), "via" => teacher.via).increment(1);
        tracing::info!(event = "taught", label = label.as_str(), via = teacher.via, teacher = %teacher.name, recorded = ?recorded);
        Ok(recorded)
    }

    /// Folds pending lessons into the model, one batch, and puts the new model in force;
    /// returns how many lessons were folded (0: none pending).
    pub async fn fold(&self) -> Result<usize, LearnError> {
        let _one_at_a_time = self.writing.lock().await;
        for _ in 0..FOLD_ATTEMPTS {
            let pending = self.store.pending_lessons(FOLD_BATCH).await?;
            if pending.is_empty() {
                return Ok(0);
            }
            let base = self.latest().await?;
            let folded = pending.len();
            let changes =
                pending.iter().map(|l| LessonChange::Folded { digest: l.digest.clone(), in_model: Some(l.spam) }).collect::<Vec<_>>();
            let edit = move |model: &mut Model| {
                for lesson in &pending {
                    let features = Features::from_bytes(&lesson.features);
                    if let Some(old) = lesson.in_model {
                        model.unlearn(&features, Label::from_spam(old));
                    }
                    model.learn(&features, Label::from_spam(lesson.spam));
                }
            };
            if self.save(&base, edit, &changes).await? {
                metrics::counter!("moat_classifier_folded_total").increment(folded as u64);
                return Ok(folded);
            }
        }
        Err(LearnError::Contended)
    }

    /// Folds until no lesson is pending; `progress` is told each batch's size.
    pub async fn fold_all(&self, mut progress: impl FnMut(usize)) -> Result<usize, LearnError> {
        let mut total = 0;
        loop {
            match self.fold().await? {
                0 => return Ok(total),
                n => {
                    total += n;
                    progress(n);
                }
            }
        }
    }

    /// Forgets `lessons`: takes what the model holds of each out of it and deletes the lessons.
    pub async fn forget(&self, lessons: &[Lesson]) -> Result<usize, LearnError> {
        if lessons.is_empty() {
            return Ok(0);
        }
        let _one_at_a_time = self.writing.lock().await;
        let changes = lessons.iter().map(|l| LessonChange::Forgotten { digest: l.digest.clone() }).collect::<Vec<_>>();
        for _ in 0..FOLD_ATTEMPTS {
            // Read each lesson again: what the model holds may have changed since the caller read it.
            let mut current = Vec::with_capacity(lessons.len());
            for lesson in lessons {
                if let Some(now) = self.store.get_lesson(&lesson.digest).await? {
                    current.push(now);
                }
            }
            let base = self.latest().await?;
            let edit = move |model: &mut Model| {
                for lesson in &current {
                    if let Some(held) = lesson.in_model {
                        model.unlearn(&Features::from_bytes(&lesson.features), Label::from_spam(held));
                    }
                }
            };
            if self.save(&base, edit, &changes).await? {
                return Ok(lessons.len());
            }
        }
        Err(LearnError::Contended)
    }

    /// Ages the model (`moat learn --age FACTOR`): every count times `factor`, so features not
    /// seen since fade out and vanish at zero while live ones are kept up by new learning.
    /// Returns what the model holds afterwards.
    pub async fn age(&self, factor: f32) -> Result<(u64, u64), LearnError> {
        let _one_at_a_time = self.writing.lock().await;
        for _ in 0..FOLD_ATTEMPTS {
            let base = self.latest().await?;
            if self.save(&base, move |model: &mut Model| model.age(factor), &[]).await? {
                return Ok(self.in_force.load().as_ref().map_or((0, 0), |s| s.model.learned()));
            }
        }
        Err(LearnError::Contended)
    }

    /// The stored model's bytes (`moat learn --export`), if there is one.
    pub async fn export(&self) -> Result<Option<Vec<u8>>, LearnError> {
        Ok(self.store.load_model().await?.map(|m| m.data))
    }

    /// Replaces the model with `bytes` (`moat learn --import`), checked first. The lessons
    /// recorded here are dropped: their hashed features belong to the replaced model's seed and
    /// would be noise in the imported one.
    pub async fn import(&self, bytes: Vec<u8>) -> Result<(u64, u64), LearnError> {
        let _one_at_a_time = self.writing.lock().await;
        let imported = blocking(move || Model::from_bytes(&bytes).map(|m| (m, bytes)).map_err(LearnError::from)).await?;
        let (model, bytes) = imported;
        let learned = model.learned();
        for _ in 0..FOLD_ATTEMPTS {
            let base = self.latest().await?;
            if self.commit(base.version, model.clone(), &bytes, &[LessonChange::AllForgotten]).await? {
                return Ok(learned);
            }
        }
        Err(LearnError::Contended)
    }

    /// Applies `edit` to a copy of `base`, saves it with `changes` if `base` is still the
    /// stored version, and puts it in force. Returns whether it was saved.
    async fn save(
        &self,
        base: &Snapshot,
        edit: impl FnOnce(&mut Model) + Send + 'static,
        changes: &[LessonChange],
    ) -> Result<bool, LearnError> {
        let mut model = base.model.clone();
        let (model, bytes) = blocking(move || {
            edit(&mut model);
            let bytes = model.to_bytes();
            Ok::<_, LearnError>((model, bytes))
        })
        .await?;
        self.commit(base.version, model, &bytes, changes).await
    }

    /// Saves `model` (as `bytes`) with `changes` if `read` is still the stored version (0: none
    /// was saved), and puts it in force. Returns whether it was saved.
    async fn commit(&self, read: i64, model: Model, bytes: &[u8], changes: &[LessonChange]) -> Result<bool, LearnError> {
        if !self.store.commit_model(read, bytes, unix_now(), changes).await? {
            return Ok(false);
        }
        let (spam, ham) = model.learned();
        tracing::info!(event = "classifier_model_saved", version = read + 1, spam, ham, changes = changes.len());
        self.in_force.store(Some(Arc::new(Snapshot { version: read + 1, model })));
        Ok(true)
    }
}

/// The parameters of a model created for `config`.
pub fn settings(config: &crate::config::Classifier) -> Settings {
    Settings { table_bits: config.table_bits, ..Settings::default() }
}

/// The lesson for `raw` (without teacher, way and time): its digest and features.
pub fn lesson_of(tokenizer: &Tokenizer, raw: &[u8], label: Label) -> Lesson {
    Lesson {
        digest: classifier::content_digest(raw),
        spam: label.is_spam(),
        taught_by: String::new(),
        via: String::new(),
        at: 0,
        features: tokenizer.features(raw).to_bytes(),
        in_model: None,
    }
}

/// Keeps this node's model current until shutdown: every `sync`, puts a newer stored model in
/// force and folds pending lessons. When the store cannot be reached the model in force stays.
pub async fn run(learner: Arc<Learner>, sync: impl Fn() -> Duration + Send, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(error) = sync_once(&learner).await {
            metrics::counter!("moat_classifier_sync_failures_total").increment(1);
            tracing::warn!(event = "classifier_sync", error = %error, note = "the model in force stays");
        }
        tokio::select! {
            _ = tokio::time::sleep(sync()) => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
    }
}

/// One round of [`run`].
pub async fn sync_once(learner: &Learner) -> Result<(), LearnError> {
    learner.refresh().await?;
    learner.fold_all(|_| {}).await?;
    if let Some(snapshot) = learner.in_force().load().as_ref() {
        let (spam, ham) = snapshot.model.learned();
        metrics::gauge!("moat_classifier_learned", "label" => "spam").set(spam as f64);
        metrics::gauge!("moat_classifier_learned", "label" => "ham").set(ham as f64);
    }
    Ok(())
}
