//! The statistical spam classifier's core: pure code, no I/O.
//!
//! [`tokens`] turns a raw message into hashed [`Features`] (decoded MIME, words, header
//! tokens); [`model`], a chi-square combined Bayes over a fixed table of counts, scores them
//! ([`Model::score`], a spam probability), learns and unlearns labelled messages exactly, ages
//! stale features and serialises itself to checked bytes. The store keeps those bytes; the filter chain, `moat learn` and the
//! Message Center drive the model; none of that lives here.
//!
//! Guarantees: the model holds hashed features and numbers only, never readable text;
//! its memory is fixed at creation (a table of 2^`table_bits` buckets of 8 bytes, 16 MiB by
//! default, at most 64 MiB); feature extraction is bounded on any input and never panics.
//! [`band`] maps a probability to the symbol the filter emits (rule files score the symbols);
//! [`content_digest`] names a message the same way wherever it is taught from (the quarantine's
//! copy, a forwarded attachment, a file).
pub mod hash;
pub mod model;
pub mod reports;
pub mod tokens;

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub use model::{LoadError, Model, Settings};
pub use tokens::{Features, Tokenizer};

/// How many messages of each kind the model must have learned before it is used (the cold
/// start; SpamAssassin's Bayes default too).
pub const DEFAULT_MIN_LEARNED: u64 = 200;

/// The two kinds of mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    Spam,
    Ham,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Spam => "spam",
            Label::Ham => "ham",
        }
    }

    pub fn is_spam(self) -> bool {
        self == Label::Spam
    }

    pub fn from_spam(spam: bool) -> Label {
        if spam { Label::Spam } else { Label::Ham }
    }
}

/// A model as read from the store, with the store version it was read at.
#[derive(Debug)]
pub struct Snapshot {
    /// The store's version of this model (0: never saved).
    pub version: i64,
    pub model: Model,
}

/// The model in force on this node, shared by the filter that scores with it and the learner
/// that replaces it (whole, atomically) when the store has a newer one. Empty until a model
/// was read.
pub type InForce = Arc<ArcSwapOption<Snapshot>>;

/// A fresh, empty [`InForce`].
pub fn nothing_in_force() -> InForce {
    Arc::new(ArcSwapOption::empty())
}

/// The probability bands and the symbol each emits, highest first: a band is named by its
/// lower bound in percent (SpamAssassin's BAYES_nn convention). Exactly 0.5 (no decisive
/// feature, or as many on each side) emits nothing. The bands meet at 0.5 because the
/// chi-square combination puts many messages just either side of it, and the side matters:
/// above it held out ham is rare, spam common (bench/results/classifier.md).
pub const BANDS: [(f64, &str); 10] = [
    (0.99, "MOAT_CLASSIFIER_99"),
    (0.95, "MOAT_CLASSIFIER_95"),
    (0.80, "MOAT_CLASSIFIER_80"),
    (0.60, "MOAT_CLASSIFIER_60"),
    (0.50, "MOAT_CLASSIFIER_50"),
    (0.40, "MOAT_CLASSIFIER_40"),
    (0.20, "MOAT_CLASSIFIER_20"),
    (0.05, "MOAT_CLASSIFIER_05"),
    (0.01, "MOAT_CLASSIFIER_01"),
    (0.0, "MOAT_CLASSIFIER_00"),
];

/// The symbol for spam probability `p`, or `None` when the classifier has no opinion.
pub fn band(p: f64) -> Option<&'static str> {
    if p == 0.5 || !p.is_finite() {
        return None;
    }
    BANDS.iter().find(|(low, _)| p >= *low).map(|(_, name)| *name)
}

/// A message's identity for learning: SHA-256 (hex) of its Message-ID and its body, with line
/// endings, trailing blanks and trailing empty lines normalised. The header fields relays add or rewrite (Received,
/// moat's own X-Spam-*, a forwarder's) do not change it, so the quarantine's copy, the copy a
/// user forwards back as an attachment and a file of the same message are one message.
pub fn content_digest(raw: &[u8]) -> String {
    let mut sha = Sha256::new();
    let id = crate::headers::first_value(raw, "Message-ID").unwrap_or_default();
    sha.update(id.trim().as_bytes());
    sha.update([0]);
    let body = &raw[crate::headers::body_start(raw).min(raw.len())..];
    // Empty lines are written only when text follows: a body that ends with or without a line
    // break (a MIME boundary takes the last one) is the same body.
    let mut blank_lines = 0usize;
    for line in body.split(|b| *b == b'\n') {
        let end = line.iter().rposition(|b| !b" \t\r".contains(b)).map_or(0, |i| i + 1);
        if end == 0 {
            blank_lines += 1;
            continue;
        }
        for _ in 0..blank_lines {
            sha.update(b"\n");
        }
        blank_lines = 0;
        sha.update(&line[..end]);
        sha.update(b"\n");
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_every_probability_and_one_half_abstains() {
        assert_eq!(band(1.0), Some("MOAT_CLASSIFIER_99"));
        assert_eq!(band(0.995), Some("MOAT_CLASSIFIER_99"));
        assert_eq!(band(0.97), Some("MOAT_CLASSIFIER_95"));
        assert_eq!(band(0.5), None);
        assert_eq!(band(0.5000001), Some("MOAT_CLASSIFIER_50"));
        assert_eq!(band(0.4999999), Some("MOAT_CLASSIFIER_40"));
        assert_eq!(band(0.03), Some("MOAT_CLASSIFIER_01"));
        assert_eq!(band(0.0), Some("MOAT_CLASSIFIER_00"));
        assert_eq!(band(f64::NAN), None);
    }

    #[test]
    fn the_digest_ignores_added_headers_and_line_endings_but_not_the_body_or_id() {
        let original = b"Message-ID: <a@x.test>\r\nSubject: hi\r\n\r\nHello there\r\nBye\r\n";
        let relayed = b"Received: from x by y\nX-Spam-Status: No\nMessage-ID: <a@x.test>\nSubject: hi\n\nHello there  \nBye\n";
        assert_eq!(content_digest(original), content_digest(relayed));
        let other_body = b"Message-ID: <a@x.test>\r\n\r\nHello there\r\nBye!\r\n";
        let other_id = b"Message-ID: <b@x.test>\r\nSubject: hi\r\n\r\nHello there\r\nBye\r\n";
        assert_ne!(content_digest(original), content_digest(other_body));
        assert_ne!(content_digest(original), content_digest(other_id));
        assert_eq!(content_digest(original).len(), 64);
    }
}
