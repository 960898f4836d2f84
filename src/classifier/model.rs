//! The model: hashed features in, a spam probability out; learning, unlearning, aging, bytes.
//!
//! A chi-square combined Bayes (Robinson's per-feature probabilities combined by Fisher's
//! method, as bogofilter and SpamBayes do), chosen over online logistic regression by
//! measurement (bench/results/classifier.md). Each feature hash picks one bucket of a table of
//! 2^`table_bits` buckets (the hash's top bits); a bucket holds two counts, the spam and the ham
//! messages learned that had a feature of that bucket. Nothing else is kept: no tokens, no
//! full hashes, so the model holds no text. Collisions merge features; at the default 2^21
//! buckets (16 MiB) they cost nothing measurable on 3,000 messages, and 2^18 did cost.
//!
//! - Scoring: for each feature with counts `s`, `h` out of `S` spam and `H` ham learned,
//!   `p = (s/S) / (s/S + h/H)`, shrunk towards `robx` with strength `robs`:
//!   `f = (robs·robx + n·p) / (robs + n)`, `n = s + h`. Features with `|f − 0.5| < min_dev` are
//!   ignored (a high `min_dev` keeps only decisive features; it won clearly). The remaining
//!   `f` are combined: `S' = Q(−2 Σ ln(1−f), 2k)`, `H' = Q(−2 Σ ln f, 2k)` (Q the chi-square
//!   upper tail), and the spam probability is `(1 + H' − S') / 2`; 0.5 with no feature left.
//!   Messages with many decisive features on both sides get exactly 0.5 (both tails vanish):
//!   bogofilter's "unsure". The ratio `H' / (H' + S')` keeps them apart but ranked worse on
//!   the tune part (1-ROCA 0.19 % against 0.023 %), so the classic form stays.
//! - Learning adds one to each of a message's buckets for its label; unlearning subtracts the
//!   same, so [`Model::unlearn`] exactly undoes [`Model::learn`] (counts saturate at 0 and
//!   `u32::MAX`). Relabelling is unlearn with the old label, learn with the new one. The caller
//!   (the store) makes sure one message is learned at most once per label.
//! - Expiry: [`Model::age`] multiplies every count (and the learned totals) by a factor, so
//!   features not seen again fade out and are dropped when they reach zero, while live ones
//!   are refreshed by new learning. The scheduler's model maintenance calls it periodically
//!   (e.g. 0.5 after each 10,000 messages learned or each quarter; choose when wiring).
//! - Bytes: [`Model::to_bytes`] / [`Model::from_bytes`], versioned, with a SHA-256 trailer;
//!   only non-zero buckets are written when that is smaller, so the size is at most
//!   [`Model::max_bytes`] (16 MiB + 80 bytes at the default) and usually far less.

use sha2::{Digest, Sha256};

use super::Label;
use super::tokens::{Features, Tokenizer};

/// A model's parameters; stored with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// log2 of the number of buckets ([`MIN_TABLE_BITS`]..=[`MAX_TABLE_BITS`]); 8 bytes each.
    pub table_bits: u8,
    /// Robinson's strength of the prior (bogofilter's robs).
    pub robs: f32,
    /// The prior probability of a feature seen little (robx).
    pub robx: f32,
    /// Features whose probability is within this of 0.5 are ignored.
    pub min_dev: f32,
}

/// Smallest table: 2^10 buckets.
pub const MIN_TABLE_BITS: u8 = *crate::config::CLASSIFIER_TABLE_BITS.start();
/// Largest table: 2^23 buckets, 64 MiB.
pub const MAX_TABLE_BITS: u8 = *crate::config::CLASSIFIER_TABLE_BITS.end();

impl Default for Settings {
    fn default() -> Settings {
        Settings { table_bits: 21, robs: 0.0178, robx: 0.52, min_dev: 0.46 }
    }
}

/// Why bytes did not load as a model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("not a moat classifier model")]
    NotAModel,
    #[error("model format version {0} is not supported")]
    Version(u16),
    #[error("model is damaged: {0}")]
    Damaged(&'static str),
}

/// A classifier model.
#[derive(Debug, Clone)]
pub struct Model {
    settings: Settings,
    seed: u64,
    spam: u64,
    ham: u64,
    counts: Vec<[u32; 2]>,
}

const MAGIC: &[u8; 8] = b"MOATCLF\0";
const VERSION: u16 = 1;
const HEADER: usize = 8 + 2 + 1 + 8 + 8 + 8 + 3 * 4 + 1 + 8;

impl Model {
    /// An empty model with a fresh random seed.
    pub fn new(settings: Settings) -> Model {
        let mut seed = [0u8; 8];
        // Without an OS random source the seed is merely fixed; that costs no correctness.
        let _ = getrandom::fill(&mut seed);
        Model::with_seed(settings, u64::from_le_bytes(seed))
    }

    /// An empty model with a given seed (tests and the evaluation tool). Out-of-range settings
    /// are brought into range (the table size clamped, bad parameters replaced by defaults).
    pub fn with_seed(mut settings: Settings, seed: u64) -> Model {
        settings.table_bits = settings.table_bits.clamp(MIN_TABLE_BITS, MAX_TABLE_BITS);
        let default = Settings::default();
        if !(settings.robs >= 0.0 && settings.robs.is_finite()) {
            settings.robs = default.robs;
        }
        if !(0.0..=1.0).contains(&settings.robx) {
            settings.robx = default.robx;
        }
        if !(0.0..=0.5).contains(&settings.min_dev) {
            settings.min_dev = default.min_dev;
        }
        let counts = vec![[0, 0]; 1usize << settings.table_bits];
        Model { settings, seed, spam: 0, ham: 0, counts }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The tokenizer whose features this model understands (same seed).
    pub fn tokenizer(&self) -> Tokenizer {
        Tokenizer::new(self.seed)
    }

    /// Messages learned as spam and as ham (less those unlearned).
    pub fn learned(&self) -> (u64, u64) {
        (self.spam, self.ham)
    }

    /// Whether the model has learned at least `min` messages of each kind (the cold start).
    pub fn is_ready(&self, min: u64) -> bool {
        self.spam >= min && self.ham >= min
    }

    /// Bytes of memory held by the table.
    pub fn memory(&self) -> usize {
        self.counts.len() * 8
    }

    #[inline]
    fn bucket(&self, h: u64) -> usize {
        (h >> (64 - u32::from(self.settings.table_bits))) as usize
    }

    /// The spam probability of a message, 0..=1.
    pub fn score(&self, features: &Features) -> f64 {
        self.fisher(features)
    }

    /// Learns one message (the caller makes sure each message is learned once per label).
    pub fn learn(&mut self, features: &Features, label: Label) {
        match label {
            Label::Spam => self.spam += 1,
            Label::Ham => self.ham += 1,
        }
        self.count(features, label, true);
    }

    /// Takes back one learning of a message with `label` (exactly, unless a count saturated).
    pub fn unlearn(&mut self, features: &Features, label: Label) {
        match label {
            Label::Spam => self.spam = self.spam.saturating_sub(1),
            Label::Ham => self.ham = self.ham.saturating_sub(1),
        }
        self.count(features, label, false);
    }

    fn count(&mut self, features: &Features, label: Label, add: bool) {
        let k = usize::from(label == Label::Ham);
        for h in features.hashes() {
            let b = self.bucket(*h);
            let c = &mut self.counts[b][k];
            *c = if add { c.saturating_add(1) } else { c.saturating_sub(1) };
        }
    }

    fn fisher(&self, features: &Features) -> f64 {
        let s = &self.settings;
        let (robs, robx, min_dev) = (f64::from(s.robs), f64::from(s.robx), f64::from(s.min_dev));
        let ns = self.spam.max(1) as f64;
        let nh = self.ham.max(1) as f64;
        let (mut ln_p, mut ln_q, mut n) = (0.0f64, 0.0f64, 0u64);
        for h in features.hashes() {
            let [cs, ch] = self.counts[self.bucket(*h)];
            if cs == 0 && ch == 0 {
                continue;
            }
            let ps = f64::from(cs) / ns;
            let ph = f64::from(ch) / nh;
            let p = ps / (ps + ph);
            let count = f64::from(cs) + f64::from(ch);
            let f = ((robs * robx + count * p) / (robs + count)).clamp(1e-6, 1.0 - 1e-6);
            if (f - 0.5).abs() < min_dev {
                continue;
            }
            ln_p += f.ln();
            ln_q += (1.0 - f).ln();
            n += 1;
        }
        if n == 0 {
            return 0.5;
        }
        let spam_tail = chi2_ln_q(-2.0 * ln_q, n).exp();
        let ham_tail = chi2_ln_q(-2.0 * ln_p, n).exp();
        ((1.0 + ham_tail - spam_tail) / 2.0).clamp(0.0, 1.0)
    }

    /// Ages the model: every count and the learned totals are multiplied by `factor` (0..1,
    /// rounded down), so features not seen since fade away (a bucket at zero is gone) while live
    /// ones are kept up by new learning. Unlearning a message learned before an aging is then
    /// approximate (its counts were scaled too); counts never go below zero.
    pub fn age(&mut self, factor: f32) {
        let factor = factor.clamp(0.0, 1.0);
        for c in &mut self.counts {
            *c = c.map(|v| (f64::from(v) * f64::from(factor)) as u32);
        }
        self.spam = (self.spam as f64 * f64::from(factor)) as u64;
        self.ham = (self.ham as f64 * f64::from(factor)) as u64;
    }

    /// The most bytes [`Model::to_bytes`] can produce for these settings.
    pub fn max_bytes(settings: &Settings) -> usize {
        HEADER + (1usize << settings.table_bits.clamp(MIN_TABLE_BITS, MAX_TABLE_BITS)) * 8 + 32
    }

    /// The model as bytes: a header, the table (only its non-zero buckets when that is
    /// smaller), and a SHA-256 of all that.
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = &self.settings;
        let mut out = Vec::with_capacity(HEADER + 1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(s.table_bits);
        out.extend_from_slice(&self.seed.to_le_bytes());
        out.extend_from_slice(&self.spam.to_le_bytes());
        out.extend_from_slice(&self.ham.to_le_bytes());
        for v in [s.robs, s.robx, s.min_dev] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let size = 1usize << s.table_bits;
        let nonzero = self.counts.iter().filter(|c| **c != [0, 0]).count();
        let sparse = nonzero * 12 < size * 8;
        out.push(u8::from(sparse));
        out.extend_from_slice(&(if sparse { nonzero } else { size } as u64).to_le_bytes());
        for (i, [spam, ham]) in self.counts.iter().enumerate() {
            if sparse && *spam == 0 && *ham == 0 {
                continue;
            }
            if sparse {
                out.extend_from_slice(&(i as u32).to_le_bytes());
            }
            out.extend_from_slice(&spam.to_le_bytes());
            out.extend_from_slice(&ham.to_le_bytes());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// A model from [`Model::to_bytes`] output, checked (magic, version, digest, every length).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, LoadError> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(LoadError::NotAModel);
        }
        if bytes.len() < HEADER + 32 {
            return Err(LoadError::Damaged("too short"));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(LoadError::Version(version));
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(LoadError::Damaged("checksum mismatch"));
        }
        let mut r = Reader { bytes: body, at: 10 };
        let table_bits = r.u8()?;
        if !(MIN_TABLE_BITS..=MAX_TABLE_BITS).contains(&table_bits) {
            return Err(LoadError::Damaged("table size"));
        }
        let seed = r.u64()?;
        let spam = r.u64()?;
        let ham = r.u64()?;
        let mut f = [0f32; 3];
        for v in &mut f {
            *v = f32::from_bits(r.u32()?);
            if !v.is_finite() {
                return Err(LoadError::Damaged("parameter"));
            }
        }
        let [robs, robx, min_dev] = f;
        if robs < 0.0 || !(0.0..=1.0).contains(&robx) || !(0.0..=0.5).contains(&min_dev) {
            return Err(LoadError::Damaged("parameter"));
        }
        let settings = Settings { table_bits, robs, robx, min_dev };
        let mut model = Model::with_seed(settings, seed);
        model.spam = spam;
        model.ham = ham;
        let sparse = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(LoadError::Damaged("table kind")),
        };
        let size = 1usize << table_bits;
        let entries = r.u64()?;
        if entries > size as u64 || (!sparse && entries != size as u64) {
            return Err(LoadError::Damaged("table length"));
        }
        for n in 0..entries as usize {
            let i = if sparse { r.u32()? as usize } else { n };
            if i >= size {
                return Err(LoadError::Damaged("bucket out of range"));
            }
            model.counts[i] = [r.u32()?, r.u32()?];
        }
        if r.at != body.len() {
            return Err(LoadError::Damaged("trailing bytes"));
        }
        Ok(model)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], LoadError> {
        let end = self.at.checked_add(N).filter(|e| *e <= self.bytes.len()).ok_or(LoadError::Damaged("truncated"))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, LoadError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, LoadError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
}

/// The log of the upper tail of the chi-square distribution with `2·k` degrees of freedom at
/// `x2` (the series for even degrees of freedom, rescaled so that no term under- or overflows).
fn chi2_ln_q(x2: f64, k: u64) -> f64 {
    let m = x2 / 2.0;
    if m <= 0.0 {
        return 0.0;
    }
    let (mut term, mut sum, mut log_scale) = (1.0f64, 1.0f64, -m);
    for i in 1..k {
        term *= m / i as f64;
        sum += term;
        if sum > 1e250 {
            term /= 1e250;
            sum /= 1e250;
            log_scale += 250.0 * std::f64::consts::LN_10;
        }
    }
    (sum.ln() + log_scale).min(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(words: &[u64]) -> Features {
        Features::from_hashes(words.iter().map(|w| super::super::hash::hash(0, 0, &w.to_le_bytes())).collect())
    }

    fn trained() -> Model {
        let mut m = Model::with_seed(Settings { table_bits: 16, ..Settings::default() }, 3);
        for i in 0..50 {
            m.learn(&features(&[1, 2, 3, 100 + i]), Label::Spam);
            m.learn(&features(&[4, 5, 6, 200 + i]), Label::Ham);
        }
        m
    }

    #[test]
    fn learning_moves_scores_the_right_way() {
        let m = trained();
        assert!(m.score(&features(&[1, 2, 3, 999])) > 0.99);
        assert!(m.score(&features(&[4, 5, 6, 999])) < 0.01);
        assert_eq!(m.score(&features(&[998, 999])), 0.5, "nothing known: no opinion");
        assert_eq!(m.learned(), (50, 50));
        assert!(m.is_ready(50) && !m.is_ready(51));
        let empty = Model::with_seed(Settings::default(), 1);
        assert_eq!(empty.score(&features(&[1, 2])), 0.5);
        assert!(!empty.is_ready(1));
    }

    #[test]
    fn unlearning_restores_the_model_exactly_and_relabelling_moves_a_message() {
        let mut m = trained();
        let before = m.to_bytes();
        let f = features(&[7, 8, 9, 1]);
        let p = m.score(&f);
        m.learn(&f, Label::Spam);
        assert!(m.score(&f) > p);
        m.unlearn(&f, Label::Spam);
        assert_eq!(m.to_bytes(), before);
        assert_eq!(m.score(&f), p);
        // Relabel: unlearn as spam, learn as ham = having learned it as ham.
        let mut relabelled = trained();
        relabelled.learn(&f, Label::Spam);
        relabelled.unlearn(&f, Label::Spam);
        relabelled.learn(&f, Label::Ham);
        let mut direct = trained();
        direct.learn(&f, Label::Ham);
        assert_eq!(relabelled.to_bytes(), direct.to_bytes());
    }

    #[test]
    fn bytes_round_trip_and_damage_is_detected() {
        let m = trained();
        let bytes = m.to_bytes();
        assert!(bytes.len() < 10_000, "sparse: {}", bytes.len());
        let back = Model::from_bytes(&bytes).expect("loads");
        for f in [features(&[1, 2, 5, 6, 77]), features(&[1, 2, 3]), features(&[5])] {
            assert_eq!(back.score(&f), m.score(&f));
        }
        assert_eq!(back.learned(), m.learned());
        assert_eq!(back.settings(), m.settings());
        assert_eq!(back.to_bytes(), bytes);
        let mut bad = bytes.clone();
        bad[HEADER + 3] ^= 1;
        assert_eq!(Model::from_bytes(&bad).unwrap_err(), LoadError::Damaged("checksum mismatch"));
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert_eq!(Model::from_bytes(&newer).unwrap_err(), LoadError::Version(9));
        assert_eq!(Model::from_bytes(b"junk").unwrap_err(), LoadError::NotAModel);
        for len in [0, 8, 20, HEADER, bytes.len() - 1] {
            assert!(Model::from_bytes(&bytes[..len]).is_err(), "{len}");
        }
        // A full table is written dense, and round-trips too.
        let mut m = Model::with_seed(Settings { table_bits: 10, ..Settings::default() }, 1);
        m.learn(&Features::from_hashes((0..1024u64).map(|i| i << 54).collect()), Label::Spam);
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), Model::max_bytes(m.settings()));
        assert_eq!(Model::from_bytes(&bytes).expect("loads").to_bytes(), bytes);
    }

    #[test]
    fn memory_is_fixed_by_the_table_size_and_bounded() {
        assert_eq!(Model::new(Settings::default()).memory(), 16 << 20);
        assert_eq!(Model::max_bytes(&Settings::default()), (16 << 20) + HEADER + 32);
        let big = Model::new(Settings { table_bits: 40, ..Settings::default() });
        assert_eq!(big.memory(), 64 << 20, "clamped to the largest table");
        let mut m = Model::with_seed(Settings { table_bits: 12, ..Settings::default() }, 1);
        for i in 0..200u64 {
            m.learn(
                &Features::from_hashes((0..500).map(|j| super::super::hash::hash(1, 0, &(i * 1000 + j).to_le_bytes())).collect()),
                Label::Spam,
            );
        }
        assert_eq!(m.memory(), 8 << 12);
        assert!(m.to_bytes().len() <= Model::max_bytes(m.settings()));
    }

    #[test]
    fn aging_fades_counts_until_features_expire() {
        let mut m = trained();
        m.age(0.5);
        assert_eq!(m.learned(), (25, 25));
        assert!(m.score(&features(&[1, 2, 3])) > 0.99, "live features survive aging");
        m.age(0.0);
        assert_eq!(m.learned(), (0, 0));
        assert_eq!(m.score(&features(&[1, 2, 3])), 0.5);
        assert!(m.to_bytes().len() < HEADER + 64, "expired buckets are not stored");
    }

    #[test]
    fn chi2_tail_matches_known_values() {
        let chi2_q = |x2, k| chi2_ln_q(x2, k).exp();
        assert!((chi2_q(2.0, 1) - (-1.0f64).exp()).abs() < 1e-12);
        // 4 degrees of freedom: Q = e^-m (1 + m).
        assert!((chi2_q(6.0, 2) - (-3.0f64).exp() * 4.0).abs() < 1e-12);
        assert!((chi2_q(0.0, 5) - 1.0).abs() < 1e-12);
        assert!(chi2_q(10_000.0, 2000) < 1e-100);
        assert!(chi2_ln_q(5000.0, 2000) > -1000.0);
        assert!(chi2_ln_q(1e9, 2000) < -1e8, "no underflow to -inf");
        assert!(chi2_q(100.0, 2000) > 0.999);
    }
}
