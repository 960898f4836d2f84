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
pub mod hash;
pub mod model;
pub mod tokens;

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
