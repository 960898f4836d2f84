//! The model: hashed features in, a spam probability out; learning and unlearning; bytes.
//!
//! Each feature hash picks one bucket of a fixed-size table (2^`table_bits` buckets; the top
//! bits of the hash). Two methods share the table shape:
//!
//! - [`Method::Logistic`]: online logistic regression over binary features (Goodman & Yih
//!   2006; the TREC 2007 runs): one f32 weight per bucket, the score is the logistic of the
//!   sum of the message's weights, learning is one gradient step of `learning_rate · (y − p)`
//!   on each of its buckets, skipped when the message is already classified right by more than
//!   `train_margin`.
//! - [`Method::Bayes`]: Robinson's per-feature probabilities combined by Fisher's chi-square
//!   method (as bogofilter and SpamBayes do) over per-bucket spam/ham message counts.
//!
//! The model holds no text: only the seed, the counts of learned messages and the table.

use sha2::{Digest, Sha256};

use super::Label;
use super::tokens::{self, Features, Tokenizer};

/// The classification method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Logistic,
    Bayes,
}

/// What a model is made of; stored with it (except `tokens`, which only the tokenizer reads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub method: Method,
    /// log2 of the number of buckets (10..=23).
    pub table_bits: u8,
    pub tokens: tokens::Settings,
    /// Logistic: step size.
    pub learning_rate: f32,
    /// Logistic: a message already scored within this distance of its label is not learned.
    pub train_margin: f32,
    /// Bayes: Robinson's strength of the prior (bogofilter's robs).
    pub robs: f32,
    /// Bayes: the prior probability of an unseen feature (robx).
    pub robx: f32,
    /// Bayes: features whose probability is within this of 0.5 are ignored.
    pub min_dev: f32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            method: Method::Logistic,
            table_bits: 22,
            tokens: tokens::Settings::default(),
            learning_rate: 0.02,
            train_margin: 0.0,
            robs: 0.0178,
            robx: 0.52,
            min_dev: 0.1,
        }
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
    weights: Vec<f32>,
    counts: Vec<[u32; 2]>,
}

const MAGIC: &[u8; 8] = b"MOATCLF\0";
const VERSION: u16 = 1;
const HEADER: usize = 8 + 2 + 1 + 1 + 8 + 8 + 8 + 5 * 4 + 1 + 8;

impl Model {
    /// An empty model with a fresh random seed.
    pub fn new(settings: Settings) -> Model {
        let mut seed = [0u8; 8];
        // Without an OS random source the seed is merely fixed; that costs no correctness.
        let _ = getrandom::fill(&mut seed);
        Model::with_seed(settings, u64::from_le_bytes(seed))
    }

    /// An empty model with a given seed (tests and the evaluation tool).
    pub fn with_seed(mut settings: Settings, seed: u64) -> Model {
        settings.table_bits = settings.table_bits.clamp(10, 23);
        let size = 1usize << settings.table_bits;
        let (weights, counts) = match settings.method {
            Method::Logistic => (vec![0.0; size], Vec::new()),
            Method::Bayes => (Vec::new(), vec![[0, 0]; size]),
        };
        Model { settings, seed, spam: 0, ham: 0, weights, counts }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The tokenizer whose features this model understands (same seed).
    pub fn tokenizer(&self) -> Tokenizer {
        Tokenizer::new(self.seed, self.settings.tokens)
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
        self.weights.len() * 4 + self.counts.len() * 8
    }

    #[inline]
    fn bucket(&self, h: u64) -> usize {
        (h >> (64 - u32::from(self.settings.table_bits))) as usize
    }

    /// The spam probability of a message, 0..=1.
    pub fn score(&self, features: &Features) -> f64 {
        match self.settings.method {
            Method::Logistic => sigmoid(self.margin(features)),
            Method::Bayes => self.fisher(features),
        }
    }

    fn margin(&self, features: &Features) -> f64 {
        features.hashes().iter().map(|h| f64::from(self.weights[self.bucket(*h)])).sum()
    }

    /// Learns one message (the caller makes sure each message is learned once per label).
    pub fn learn(&mut self, features: &Features, label: Label) {
        match label {
            Label::Spam => self.spam += 1,
            Label::Ham => self.ham += 1,
        }
        match self.settings.method {
            Method::Logistic => {
                let y = label.target();
                let p = sigmoid(self.margin(features));
                if (y - p).abs() <= f64::from(self.settings.train_margin) {
                    return;
                }
                self.step(features, (f64::from(self.settings.learning_rate) * (y - p)) as f32);
            }
            Method::Bayes => self.count(features, label, true),
        }
    }

    /// Takes back one learning of a message with `label`.
    pub fn unlearn(&mut self, features: &Features, label: Label) {
        match label {
            Label::Spam => self.spam = self.spam.saturating_sub(1),
            Label::Ham => self.ham = self.ham.saturating_sub(1),
        }
        match self.settings.method {
            Method::Logistic => {
                let y = label.target();
                let p = sigmoid(self.margin(features));
                self.step(features, -(f64::from(self.settings.learning_rate) * (y - p).abs().max(0.5) * (y - 0.5) * 2.0) as f32);
            }
            Method::Bayes => self.count(features, label, false),
        }
    }

    fn step(&mut self, features: &Features, delta: f32) {
        for h in features.hashes() {
            let b = self.bucket(*h);
            self.weights[b] += delta;
        }
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
        let spamminess = chi2_q(-2.0 * ln_q, n);
        let hamminess = chi2_q(-2.0 * ln_p, n);
        ((1.0 + hamminess - spamminess) / 2.0).clamp(0.0, 1.0)
    }

    /// Ages the model: every weight or count is multiplied by `factor` (0..1), so features not
    /// seen since fade away while live ones are kept up by new learning.
    pub fn age(&mut self, factor: f32) {
        let factor = factor.clamp(0.0, 1.0);
        for w in &mut self.weights {
            *w *= factor;
        }
        for c in &mut self.counts {
            *c = c.map(|v| (v as f32 * factor) as u32);
        }
        self.spam = (self.spam as f64 * f64::from(factor)) as u64;
        self.ham = (self.ham as f64 * f64::from(factor)) as u64;
    }

    /// The most bytes [`Model::to_bytes`] can produce for these settings.
    pub fn max_bytes(settings: &Settings) -> usize {
        let per_bucket = match settings.method {
            Method::Logistic => 4,
            Method::Bayes => 8,
        };
        HEADER + (1usize << settings.table_bits.clamp(10, 23)) * per_bucket + 32
    }

    /// The model as bytes: a header, the table (only its non-zero buckets when that is
    /// smaller), and a SHA-256 of all that.
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = &self.settings;
        let mut out = Vec::with_capacity(HEADER + 1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(match s.method {
            Method::Logistic => 0,
            Method::Bayes => 1,
        });
        out.push(s.table_bits);
        out.extend_from_slice(&self.seed.to_le_bytes());
        out.extend_from_slice(&self.spam.to_le_bytes());
        out.extend_from_slice(&self.ham.to_le_bytes());
        for v in [s.learning_rate, s.train_margin, s.robs, s.robx, s.min_dev] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let size = 1usize << s.table_bits;
        let (per_bucket, nonzero) = match s.method {
            Method::Logistic => (4, self.weights.iter().filter(|w| **w != 0.0).count()),
            Method::Bayes => (8, self.counts.iter().filter(|c| **c != [0, 0]).count()),
        };
        let sparse = nonzero * (4 + per_bucket) < size * per_bucket;
        out.push(u8::from(sparse));
        out.extend_from_slice(&(if sparse { nonzero } else { size } as u64).to_le_bytes());
        let put = |i: usize, out: &mut Vec<u8>| {
            if sparse {
                out.extend_from_slice(&(i as u32).to_le_bytes());
            }
            match s.method {
                Method::Logistic => out.extend_from_slice(&self.weights[i].to_le_bytes()),
                Method::Bayes => {
                    out.extend_from_slice(&self.counts[i][0].to_le_bytes());
                    out.extend_from_slice(&self.counts[i][1].to_le_bytes());
                }
            }
        };
        for i in 0..size {
            let zero = match s.method {
                Method::Logistic => self.weights[i] == 0.0,
                Method::Bayes => self.counts[i] == [0, 0],
            };
            if !sparse || !zero {
                put(i, &mut out);
            }
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// A model from [`Model::to_bytes`] output; `tokens` are the tokenizer settings to use.
    pub fn from_bytes(bytes: &[u8], tokens: tokens::Settings) -> Result<Model, LoadError> {
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
        let method = match r.u8()? {
            0 => Method::Logistic,
            1 => Method::Bayes,
            _ => return Err(LoadError::Damaged("unknown method")),
        };
        let table_bits = r.u8()?;
        if !(10..=23).contains(&table_bits) {
            return Err(LoadError::Damaged("table size"));
        }
        let seed = r.u64()?;
        let spam = r.u64()?;
        let ham = r.u64()?;
        let mut f = [0f32; 5];
        for v in &mut f {
            *v = f32::from_bits(r.u32()?);
        }
        let [learning_rate, train_margin, robs, robx, min_dev] = f;
        let settings = Settings { method, table_bits, tokens, learning_rate, train_margin, robs, robx, min_dev };
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
            match method {
                Method::Logistic => {
                    let w = f32::from_bits(r.u32()?);
                    if !w.is_finite() {
                        return Err(LoadError::Damaged("weight"));
                    }
                    model.weights[i] = w;
                }
                Method::Bayes => model.counts[i] = [r.u32()?, r.u32()?],
            }
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

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The upper tail of the chi-square distribution with `2·k` degrees of freedom at `x2`
/// (the series for even degrees of freedom, rescaled so that no term underflows).
fn chi2_q(x2: f64, k: u64) -> f64 {
    let m = x2 / 2.0;
    if m <= 0.0 {
        return 1.0;
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
    (sum.ln() + log_scale).exp().min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(words: &[u64]) -> Features {
        Features::from_hashes(words.iter().map(|w| super::super::hash::mix(*w)).collect())
    }

    fn trained(method: Method) -> Model {
        let mut m = Model::with_seed(Settings { method, table_bits: 16, learning_rate: 0.3, ..Settings::default() }, 3);
        for i in 0..50 {
            m.learn(&features(&[1, 2, 3, 100 + i]), Label::Spam);
            m.learn(&features(&[4, 5, 6, 200 + i]), Label::Ham);
        }
        m
    }

    #[test]
    fn learning_moves_scores_the_right_way() {
        for method in [Method::Logistic, Method::Bayes] {
            let m = trained(method);
            assert!(m.score(&features(&[1, 2, 3, 999])) > 0.9, "{method:?}");
            assert!(m.score(&features(&[4, 5, 6, 999])) < 0.1, "{method:?}");
            assert_eq!(m.learned(), (50, 50));
            assert!(m.is_ready(50) && !m.is_ready(51));
        }
    }

    #[test]
    fn unlearning_takes_a_message_back() {
        for method in [Method::Logistic, Method::Bayes] {
            let mut m = trained(method);
            let f = features(&[7, 8, 9]);
            let before = m.score(&f);
            m.learn(&f, Label::Spam);
            assert!(m.score(&f) > before);
            m.unlearn(&f, Label::Spam);
            assert!((m.score(&f) - before).abs() < 0.1, "{method:?}: {before} → {}", m.score(&f));
            assert_eq!(m.learned(), (50, 50));
        }
        let mut m = trained(Method::Bayes);
        let before = m.to_bytes();
        let f = features(&[1, 7, 8]);
        m.learn(&f, Label::Ham);
        m.unlearn(&f, Label::Ham);
        assert_eq!(m.to_bytes(), before, "Bayes unlearning is exact");
    }

    #[test]
    fn bytes_round_trip_and_damage_is_detected() {
        for method in [Method::Logistic, Method::Bayes] {
            let m = trained(method);
            let bytes = m.to_bytes();
            assert!(bytes.len() <= Model::max_bytes(m.settings()));
            let back = Model::from_bytes(&bytes, tokens::Settings::default()).expect("loads");
            let f = features(&[1, 2, 5, 6, 77]);
            assert_eq!(back.score(&f), m.score(&f));
            assert_eq!(back.to_bytes(), bytes);
            let mut bad = bytes.clone();
            bad[HEADER + 3] ^= 1;
            assert_eq!(Model::from_bytes(&bad, tokens::Settings::default()).unwrap_err(), LoadError::Damaged("checksum mismatch"));
            assert_eq!(Model::from_bytes(b"junk", tokens::Settings::default()).unwrap_err(), LoadError::NotAModel);
            assert!(Model::from_bytes(&bytes[..bytes.len() - 1], tokens::Settings::default()).is_err());
        }
        // A dense table (every bucket set) round-trips too.
        let mut m = Model::with_seed(Settings { table_bits: 10, ..Settings::default() }, 1);
        m.learn(&Features::from_hashes((0..1024u64).map(|i| i << 54).collect()), Label::Spam);
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), Model::max_bytes(m.settings()));
        assert_eq!(Model::from_bytes(&bytes, tokens::Settings::default()).expect("loads").to_bytes(), bytes);
    }

    #[test]
    fn memory_is_bounded_by_the_table_size() {
        let m = Model::new(Settings::default());
        assert_eq!(m.memory(), 16 << 20);
        let big = Model::new(Settings { table_bits: 40, ..Settings::default() });
        assert!(big.memory() <= 32 << 20);
        let mut m = Model::with_seed(Settings { table_bits: 12, ..Settings::default() }, 1);
        for i in 0..200u64 {
            m.learn(&Features::from_hashes((0..500).map(|j| super::super::hash::mix(i * 1000 + j)).collect()), Label::Spam);
        }
        assert_eq!(m.memory(), 4 << 12);
    }

    #[test]
    fn aging_fades_weights_and_counts() {
        for method in [Method::Logistic, Method::Bayes] {
            let mut m = trained(method);
            m.age(0.5);
            assert_eq!(m.learned(), (25, 25));
            m.age(0.0);
            assert_eq!(m.score(&features(&[1, 2, 3])), 0.5);
        }
    }

    #[test]
    fn chi2_tail_matches_known_values() {
        assert!((chi2_q(2.0, 1) - (-1.0f64).exp()).abs() < 1e-12);
        assert!((chi2_q(0.0, 5) - 1.0).abs() < 1e-12);
        assert!(chi2_q(10_000.0, 2000) < 1e-100);
        assert!(chi2_q(5000.0, 2000) > 0.0);
        assert!(chi2_q(100.0, 2000) > 0.999);
    }
}
