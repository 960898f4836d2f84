//! From a held copy in the holding spool to quarantine index rows: one item per recipient.
//!
//! Guarantees: pure (no I/O); an item's id depends only on the spool id and the recipient, so
//! running this twice for the same copy gives the same items; subject, date and the From field's
//! name and address come from the message's own header fields (decoded, bounded), the rest from
//! the envelope and the verdict.

use crate::spool::Envelope;
use crate::store::{Category, ItemState, QuarantineItem, UnixTime};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Longest subject kept in the index (characters); the contents keep the whole field.
const MAX_SUBJECT: usize = 500;

/// The quarantine item id of `recipient`'s copy of spool record `queue_id` (32 hex digits).
pub fn item_id(queue_id: &str, recipient: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"moat-quarantine-item\0")
        .chain_update(queue_id.as_bytes())
        .chain_update(b"\0")
        .chain_update(recipient.to_ascii_lowercase().as_bytes())
        .finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The items a held copy becomes, created at `now` and kept for `retention`.
pub fn items_for(envelope: &Envelope, message: &[u8], now: UnixTime, retention: Duration) -> Vec<QuarantineItem> {
    let headers = mail_parser::MessageParser::default().parse_headers(message);
    let subject: String = headers.as_ref().and_then(|m| m.subject()).unwrap_or_default().chars().take(MAX_SUBJECT).collect();
    let (from_name, from_address) = crate::headers::author(message).unwrap_or_default();
    let date = headers.as_ref().and_then(|m| m.date()).map_or(envelope.received_at, |d| d.to_timestamp());
    let (category, score, symbols) = match &envelope.hold {
        Some(hold) => (hold.category, hold.score, hold.symbols.clone()),
        None => (Category::Spam, 0.0, Vec::new()),
    };
    let keep = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    envelope
        .recipients
        .iter()
        .map(|recipient| QuarantineItem {
            id: item_id(&envelope.id, recipient),
            recipient: recipient.to_ascii_lowercase(),
            sender: envelope.sender.clone(),
            subject: subject.clone(),
            from_name: from_name.clone(),
            from_address: from_address.clone(),
            date,
            size: message.len() as u64,
            score,
            symbols: symbols.clone(),
            category,
            state: ItemState::Held,
            created_at: now,
            expires_at: now.saturating_add(keep),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Hold;
    use crate::verdict::Symbol;

    fn envelope(hold: Option<Hold>) -> Envelope {
        Envelope {
            id: "0123456789ABCDEF0000123456".into(),
            received_at: 1_700_000_000,
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "client.test".into(),
            sender: "spammer@example.test".into(),
            recipients: vec!["Alice@Example.TEST".into(), "bob@example.test".into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
            hold,
            staged: None,
        }
    }

    #[test]
    fn one_item_per_recipient_with_decoded_subject_date_and_the_verdict() {
        let hold =
            Hold { category: Category::Virus, score: 100.0, symbols: vec![Symbol::with_detail("CLAMAV_VIRUS", "Eicar-Test-Signature")] };
        let message = b"Subject: =?utf-8?q?Caf=C3=A9_<b>menu</b>?=\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\nbody\r\n";
        let items = items_for(&envelope(Some(hold)), message, 1_800_000_000, Duration::from_secs(30 * 86400));
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].recipient, "alice@example.test");
        assert_eq!(items[0].subject, "Café <b>menu</b>");
        assert_eq!((items[0].from_name.as_str(), items[0].from_address.as_str()), ("", ""), "no From field");
        assert_eq!(items[0].date, 1_700_000_000);
        assert_eq!(items[0].category, Category::Virus);
        assert_eq!(items[0].symbols[0].detail.as_deref(), Some("Eicar-Test-Signature"));
        assert_eq!(items[0].expires_at, 1_800_000_000 + 30 * 86400);
        assert_ne!(items[0].id, items[1].id);
        assert_eq!(items[0].id, item_id("0123456789ABCDEF0000123456", "alice@example.test"), "ids are reproducible");
    }

    #[test]
    fn a_message_without_subject_or_date_uses_the_arrival_time() {
        let items = items_for(&envelope(None), b"From: x@y.test\r\n\r\nhi\r\n", 1_800_000_000, Duration::from_secs(60));
        assert_eq!((items[0].subject.as_str(), items[0].date, items[0].category), ("", 1_700_000_000, Category::Spam));
        assert_eq!((items[0].from_name.as_str(), items[0].from_address.as_str()), ("", "x@y.test"));
    }

    #[test]
    fn the_from_fields_name_and_address_are_kept_beside_the_envelope_sender() {
        let message = b"From: =?utf-8?q?PayPal_Service?= <service@paypal.test>\r\nSubject: News\r\n\r\nhi\r\n";
        let items = items_for(&envelope(None), message, 1_800_000_000, Duration::from_secs(60));
        assert_eq!(items[0].sender, "spammer@example.test");
        assert_eq!((items[0].from_name.as_str(), items[0].from_address.as_str()), ("PayPal Service", "service@paypal.test"));
    }
}
