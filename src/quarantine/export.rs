//! What moat holds about one user, for that user: `moat user export` and the Message Center's
//! download.
//!
//! Guarantees: only records of that address (its quarantined items with their release records,
//! its preferences and lists, its digest cursor, the lessons it taught the classifier; no other
//! user's data, no hashed features); message contents are decrypted only into the returned mbox
//! (items whose contents were deleted or expired are listed without them). Never logged.

use super::{Quarantine, QuarantineError};
use crate::store::{ItemQuery, ItemState};
use serde_json::{Value, json};

/// Items read per store query.
const PAGE: u32 = 500;

/// One user's data.
pub struct Export {
    /// Everything but the messages, as JSON.
    pub metadata: Value,
    /// The user's held (and released, until they expire) messages, as an mbox (mboxrd quoting).
    pub mbox: Vec<u8>,
    /// How many messages the mbox holds.
    pub messages: usize,
}

impl Quarantine {
    /// Gathers what is held about `address`.
    pub async fn export_user(&self, address: &str) -> Result<Export, QuarantineError> {
        let store = self.store();
        let query = ItemQuery { recipient: address.to_string(), state: None, category: None, text: String::new(), search_subjects: false };
        let (mut items, mut mbox, mut messages) = (Vec::new(), Vec::new(), 0usize);
        for page in 0.. {
            let found = store.find_items(&query, PAGE, page * PAGE).await?;
            for item in &found {
                let mut entry = item.metadata_json(true);
                let releases: Vec<Value> =
                    store.releases(&item.id).await?.iter().map(|r| json!({"actor": r.actor, "via": r.via.as_str(), "at": r.at})).collect();
                entry["releases"] = Value::from(releases);
                if item.state != ItemState::Deleted
                    && let Ok(contents) = self.open_contents(&item.id).await
                {
                    append_mbox(&mut mbox, &item.sender, item.date, &contents);
                    messages += 1;
                    entry["in_mbox"] = Value::from(true);
                }
                items.push(entry);
            }
            if found.len() < PAGE as usize {
                break;
            }
        }
        let prefs = store.get_preferences(address).await?;
        let lessons: Vec<Value> = store
            .lessons_by(address)
            .await?
            .iter()
            .map(|l| json!({"message_digest": l.digest, "label": if l.spam { "spam" } else { "ham" }, "via": l.via, "at": l.at}))
            .collect();
        let metadata = json!({
            "address": address.to_ascii_lowercase(),
            "exported_at": crate::clock::unix_now(),
            "preferences": {
                "digest": prefs.digest.map(|d| d.as_str()),
                "opted_out_of_digests": prefs.opt_out,
                "filtering": prefs.filtering,
                "time_zone": prefs.time_zone,
                "language": prefs.language,
                "allow": prefs.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "block": prefs.block.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "digest_cursor": store.digest_cursor(address).await?,
            "quarantine": items,
            "taught_the_classifier": lessons,
        });
        Ok(Export { metadata, mbox, messages })
    }
}

/// Appends one message to an mbox: a `From ` line, the message with LF line endings and every
/// line that starts with `>*From ` quoted with one more `>` (mboxrd), and an empty line.
pub fn append_mbox(mbox: &mut Vec<u8>, sender: &str, date: i64, message: &[u8]) {
    let when = chrono::DateTime::from_timestamp(date, 0).unwrap_or_default().format("%a %b %e %H:%M:%S %Y");
    let sender = if sender.is_empty() || sender.contains(char::is_whitespace) { "MAILER-DAEMON" } else { sender };
    mbox.extend_from_slice(format!("From {sender} {when}\n").as_bytes());
    for line in message.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().position(|b| *b != b'>').is_some_and(|i| line[i..].starts_with(b"From ")) {
            mbox.push(b'>');
        }
        mbox.extend_from_slice(line);
        mbox.push(b'\n');
    }
    mbox.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_entries_quote_from_lines_and_read_back_with_moats_mbox_reader() {
        let mut mbox = Vec::new();
        append_mbox(&mut mbox, "a@x.test", 0, b"Subject: one\r\n\r\nFrom here on\r\n>From there\r\n");
        append_mbox(&mut mbox, "", 0, b"Subject: two\r\n\r\nbody\r\n");
        let text = String::from_utf8(mbox.clone()).unwrap();
        assert!(text.starts_with("From a@x.test Thu Jan  1 00:00:00 1970\n"), "{text}");
        assert!(text.contains("\n>From here on\n>>From there\n") && text.contains("From MAILER-DAEMON "), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.mbox");
        std::fs::write(&path, &mbox).unwrap();
        let mut subjects = Vec::new();
        crate::mailbox::read(&path, &mut |item| {
            if let crate::mailbox::Item::Message { bytes, .. } = item {
                subjects.push(crate::headers::first_value(&bytes, "Subject").unwrap_or_default());
            }
        })
        .unwrap();
        assert_eq!(subjects, ["one", "two"]);
    }
}
