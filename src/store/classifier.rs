//! The classifier's state in the store: the model (an opaque, versioned blob of hashed features
//! and weights; the store never interprets it) and the lessons (one row per message taught).
//!
//! Guarantees: [`Store::commit_model`] replaces the model only if its version is still the one the
//! caller read, so concurrent learners on several nodes never overwrite each other (the loser
//! gets `false`, reloads and tries again); [`Store::model_version`] is a cheap query nodes poll to
//! pick up a new model within seconds. A lesson holds no text of the message: a digest of its
//! content (so the same message taught twice is recognised), the label, who taught it and how,
//! when, and its hashed features (so it can be forgotten after the message is gone).

use super::{Store, StoreError, Ty, UnixTime, Val, int, lower, stmt, text};

/// The model as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredModel {
    /// Starts at 1; each save adds one.
    pub version: i64,
    pub data: Vec<u8>,
}

/// One message taught to the classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lesson {
    /// A digest of the message's content (hex), its identity.
    pub digest: String,
    pub spam: bool,
    /// The address of the user who taught it, or an operator name (`root` for the CLI);
    /// empty once that user's data was purged.
    pub taught_by: String,
    /// How: `release`, `report`, `message_center`, `cli`, `autolearn`.
    pub via: String,
    pub at: UnixTime,
    /// The message's hashed features, as the classifier encodes them.
    pub features: Vec<u8>,
    /// What the model holds of this message: learned as spam (`Some(true)`), as ham, or not yet
    /// (`None`: taught but not folded into the model yet).
    pub in_model: Option<bool>,
}

impl Lesson {
    /// Whether the model does not hold this lesson as taught yet (new, or relabelled).
    pub fn is_pending(&self) -> bool {
        self.in_model != Some(self.spam)
    }
}

/// One change to the lessons, saved together with the model it went into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LessonChange {
    /// The model now holds the lesson `digest` as `in_model` (spam: `Some(true)`).
    Folded { digest: String, in_model: Option<bool> },
    /// The lesson `digest` is forgotten: out of the model and gone.
    Forgotten { digest: String },
    /// The model was replaced by one from elsewhere (`moat learn --import`): it holds none of the
    /// lessons recorded here, and their features were hashed with the replaced model's secret
    /// seed, which the imported model does not share, so every lesson is dropped.
    AllForgotten,
}

/// What recording a lesson did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A message not taught before.
    New,
    /// Taught before with the other label: it will move.
    Relabelled,
    /// Taught before with the same label: nothing to do.
    Already,
}

fn in_model_code(in_model: Option<bool>) -> i64 {
    match in_model {
        None => 0,
        Some(true) => 1,
        Some(false) => 2,
    }
}

fn in_model_of(code: i64) -> Option<bool> {
    match code {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

const MODEL: &str = "default";

impl Store {
    /// The classifier model, if one was ever saved.
    pub async fn load_model(&self) -> Result<Option<StoredModel>, StoreError> {
        let rows = self
            .query(
                "SELECT version, data FROM classifier_model WHERE name = $1",
                vec![text(MODEL)],
                &[Ty::Int, Ty::Bytes],
                "classifier_model",
            )
            .await?;
        rows.first().map(|row| Ok(StoredModel { version: row.int(0)?, data: row.bytes(1)? })).transpose()
    }

    /// The version of the stored model (0: none yet), without reading the model.
    pub async fn model_version(&self) -> Result<i64, StoreError> {
        let rows =
            self.query("SELECT version FROM classifier_model WHERE name = $1", vec![text(MODEL)], &[Ty::Int], "classifier_model").await?;
        rows.first().map_or(Ok(0), |row| row.int(0))
    }

    /// Saves `data` as version `read + 1` if the stored version is still `read` (0: none was
    /// stored) and, in the same transaction and only if the model was saved, records `changes`
    /// to the lessons (what the new model holds). Returns whether it was saved.
    pub async fn commit_model(&self, read: i64, data: &[u8], now: UnixTime, changes: &[LessonChange]) -> Result<bool, StoreError> {
        let blob = Val::Bytes(Some(data.to_vec()));
        let statement = if read == 0 {
            stmt(
                "INSERT INTO classifier_model (name, version, data, updated_at) VALUES ($1, 1, $2, $3) ON CONFLICT (name) DO NOTHING",
                vec![text(MODEL), blob, int(now)],
            )
        } else {
            stmt(
                "UPDATE classifier_model SET version = version + 1, data = $2, updated_at = $3 WHERE name = $1 AND version = $4",
                vec![text(MODEL), blob, int(now), int(read)],
            )
        };
        let mut statements = vec![statement];
        for change in changes {
            statements.push(match change {
                LessonChange::Folded { digest, in_model } => {
                    stmt("UPDATE classifier_lesson SET in_model = $2 WHERE digest = $1", vec![text(digest), int(in_model_code(*in_model))])
                }
                LessonChange::Forgotten { digest } => stmt("DELETE FROM classifier_lesson WHERE digest = $1", vec![text(digest)]),
                LessonChange::AllForgotten => stmt("DELETE FROM classifier_lesson", vec![]),
            });
        }
        let counts = self.transaction(statements, true).await?;
        Ok(counts.first() == Some(&1))
    }

    /// The lesson for the message with `digest`, if it was taught.
    pub async fn get_lesson(&self, digest: &str) -> Result<Option<Lesson>, StoreError> {
        let rows = self
            .query(
                "SELECT digest, spam, taught_by, via, at, features, in_model FROM classifier_lesson WHERE digest = $1",
                vec![text(digest)],
                LESSON_COLUMNS,
                "classifier_lesson",
            )
            .await?;
        rows.first().map(lesson_of).transpose()
    }

    /// Records `lesson` (its `in_model` is ignored): a new message is taught; one taught before
    /// with the other label takes the new label, teacher and time (the model is updated when the
    /// lesson is next folded in); one taught before with the same label is left alone. The
    /// features first recorded are kept, since they are what the model holds.
    pub async fn put_lesson(&self, lesson: &Lesson) -> Result<Recorded, StoreError> {
        let recorded = self.put_lessons(std::slice::from_ref(lesson)).await?;
        Ok(recorded.first().copied().unwrap_or(Recorded::Already))
    }

    /// [`Store::put_lesson`] for many lessons, written in one transaction.
    pub async fn put_lessons(&self, lessons: &[Lesson]) -> Result<Vec<Recorded>, StoreError> {
        let mut recorded = Vec::with_capacity(lessons.len());
        let mut statements = Vec::new();
        let mut seen: std::collections::HashMap<&str, bool> = std::collections::HashMap::new();
        for lesson in lessons {
            let before = match seen.get(lesson.digest.as_str()) {
                Some(spam) => Some(*spam),
                None => self.get_lesson(&lesson.digest).await?.map(|old| old.spam),
            };
            seen.insert(&lesson.digest, lesson.spam);
            let outcome = match before {
                None => Recorded::New,
                Some(spam) if spam == lesson.spam => Recorded::Already,
                Some(_) => Recorded::Relabelled,
            };
            recorded.push(outcome);
            if outcome == Recorded::Already {
                continue;
            }
            statements.push(stmt(
                "INSERT INTO classifier_lesson (digest, spam, taught_by, via, at, features, in_model) VALUES ($1, $2, $3, $4, $5, $6, 0)
                 ON CONFLICT (digest) DO UPDATE SET spam = excluded.spam, taught_by = excluded.taught_by, via = excluded.via,
                 at = excluded.at",
                vec![
                    text(&lesson.digest),
                    Val::Bool(Some(lesson.spam)),
                    text(lower(&lesson.taught_by)),
                    text(&lesson.via),
                    int(lesson.at),
                    Val::Bytes(Some(lesson.features.clone())),
                ],
            ));
        }
        if !statements.is_empty() {
            self.transaction(statements, false).await?;
        }
        Ok(recorded)
    }

    /// Up to `limit` lessons the model does not hold as taught yet, oldest first.
    pub async fn pending_lessons(&self, limit: u32) -> Result<Vec<Lesson>, StoreError> {
        let rows = self
            .query(
                "SELECT digest, spam, taught_by, via, at, features, in_model FROM classifier_lesson
                 WHERE in_model <> CASE WHEN spam THEN 1 ELSE 2 END ORDER BY at, digest LIMIT $1",
                vec![int(i64::from(limit))],
                LESSON_COLUMNS,
                "classifier_lesson",
            )
            .await?;
        rows.iter().map(lesson_of).collect()
    }

    /// Removes the lesson for `digest`; returns whether there was one.
    pub async fn delete_lesson(&self, digest: &str) -> Result<bool, StoreError> {
        let counts = self.transaction(vec![stmt("DELETE FROM classifier_lesson WHERE digest = $1", vec![text(digest)])], false).await?;
        Ok(counts.first().is_some_and(|n| *n > 0))
    }

    /// Every lesson `teacher` gave, oldest first (for `moat learn --forget-by`).
    pub async fn lessons_by(&self, teacher: &str) -> Result<Vec<Lesson>, StoreError> {
        let rows = self
            .query(
                "SELECT digest, spam, taught_by, via, at, features, in_model FROM classifier_lesson WHERE taught_by = $1 ORDER BY at, digest",
                vec![text(lower(teacher))],
                LESSON_COLUMNS,
                "classifier_lesson",
            )
            .await?;
        rows.iter().map(lesson_of).collect()
    }

    /// How many lessons `teacher` gave since `since` (the per-user daily bound).
    pub async fn lessons_since(&self, teacher: &str, since: UnixTime) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "SELECT COUNT(*) FROM classifier_lesson WHERE taught_by = $1 AND at >= $2",
                vec![text(lower(teacher)), int(since)],
                &[Ty::Int],
                "classifier_lesson",
            )
            .await?;
        let count = rows.first().map_or(Ok(0), |row| row.int(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

const LESSON_COLUMNS: &[Ty] = &[Ty::Text, Ty::Bool, Ty::Text, Ty::Text, Ty::Int, Ty::Bytes, Ty::Int];

fn lesson_of(row: &super::Row) -> Result<Lesson, StoreError> {
    Ok(Lesson {
        digest: row.text(0)?,
        spam: row.bool(1)?,
        taught_by: row.text(2)?,
        via: row.text(3)?,
        at: row.int(4)?,
        features: row.bytes(5)?,
        in_model: in_model_of(row.int(6)?),
    })
}
