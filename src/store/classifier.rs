//! The classifier's state in the store: the model (an opaque, versioned blob of hashed features
//! and weights; the store never interprets it) and the lessons (one row per message taught).
//!
//! Guarantees: [`Store::save_model`] replaces the model only if its version is still the one the
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
    /// stored). Returns whether it was saved.
    pub async fn save_model(&self, read: i64, data: &[u8], now: UnixTime) -> Result<bool, StoreError> {
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
        let counts = self.transaction(vec![statement], false).await?;
        Ok(counts.first() == Some(&1))
    }

    /// The lesson for the message with `digest`, if it was taught.
    pub async fn get_lesson(&self, digest: &str) -> Result<Option<Lesson>, StoreError> {
        let rows = self
            .query(
                "SELECT digest, spam, taught_by, via, at, features FROM classifier_lesson WHERE digest = $1",
                vec![text(digest)],
                LESSON_COLUMNS,
                "classifier_lesson",
            )
            .await?;
        rows.first().map(lesson_of).transpose()
    }

    /// Records `lesson`, replacing an earlier one for the same message.
    pub async fn put_lesson(&self, lesson: &Lesson) -> Result<(), StoreError> {
        self.transaction(
            vec![stmt(
                "INSERT INTO classifier_lesson (digest, spam, taught_by, via, at, features) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (digest) DO UPDATE SET spam = excluded.spam, taught_by = excluded.taught_by, via = excluded.via,
                 at = excluded.at, features = excluded.features",
                vec![
                    text(&lesson.digest),
                    Val::Bool(Some(lesson.spam)),
                    text(lower(&lesson.taught_by)),
                    text(&lesson.via),
                    int(lesson.at),
                    Val::Bytes(Some(lesson.features.clone())),
                ],
            )],
            false,
        )
        .await?;
        Ok(())
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
                "SELECT digest, spam, taught_by, via, at, features FROM classifier_lesson WHERE taught_by = $1 ORDER BY at, digest",
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

const LESSON_COLUMNS: &[Ty] = &[Ty::Text, Ty::Bool, Ty::Text, Ty::Text, Ty::Int, Ty::Bytes];

fn lesson_of(row: &super::Row) -> Result<Lesson, StoreError> {
    Ok(Lesson {
        digest: row.text(0)?,
        spam: row.bool(1)?,
        taught_by: row.text(2)?,
        via: row.text(3)?,
        at: row.int(4)?,
        features: row.bytes(5)?,
    })
}
