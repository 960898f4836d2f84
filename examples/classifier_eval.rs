//! Evaluates moat's classifier on a labelled corpus laid out like the SpamAssassin public corpus
//! (`DIR/{easy-ham-1,easy-ham-2,hard-ham-1,spam-1,spam-2}/*.txt`).
//!
//! The split is fixed and shared with the peers' bench: a message's key is its path relative to
//! DIR; the first byte of SHA-256(key) modulo 4 puts it in train (0, 1), tune (2) or test (3).
//! The model learns the train part once each message, in a deterministic shuffle (seeded, so every run
//! learns in the same order), then scores the chosen part and writes `key<TAB>spam|ham<TAB>p`
//! per message. With `--online` it instead runs the TREC-style online test over the whole
//! corpus in order of the Date header: classify each message, then learn its true label.
//!
//! ```text
//! cargo run --release --example classifier_eval -- --corpus /work/corpus/package/data --part tune --out /tmp/tune.tsv
//! ```
//! Timings are of one thread: learning includes parsing and tokenizing, and so does classifying.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use moat::classifier::{Label, Model, Settings};
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    /// The corpus directory (holding easy-ham-1, ..., spam-2).
    #[arg(long)]
    corpus: PathBuf,
    /// The part scored: tune or test.
    #[arg(long, default_value = "tune")]
    part: String,
    /// Where to write the scores (key, label, probability per line).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    bits: Option<u8>,
    #[arg(long)]
    min_dev: Option<f32>,
    #[arg(long)]
    robs: Option<f32>,
    #[arg(long)]
    robx: Option<f32>,
    /// The hold (quarantine) threshold: messages scored above it are held.
    #[arg(long, default_value_t = 0.5)]
    hold: f64,
    /// Run the online (TREC-style) test instead.
    #[arg(long)]
    online: bool,
    /// With --online: the message keys in the order to take them, one per line (the peers'
    /// bench writes its Date order here so every contender sees the same stream); --out then
    /// gets the scores and a `.json` file beside it the timings.
    #[arg(long)]
    order: Option<PathBuf>,
    /// Write every message's features instead (key, label, part, hex hashes per line), for
    /// experiments with other combining methods outside Rust.
    #[arg(long)]
    dump: Option<PathBuf>,
}

struct Message {
    key: String,
    label: Label,
    raw: Vec<u8>,
}

const DIRS: &[(&str, Label)] =
    &[("easy-ham-1", Label::Ham), ("easy-ham-2", Label::Ham), ("hard-ham-1", Label::Ham), ("spam-1", Label::Spam), ("spam-2", Label::Spam)];

fn part_of(key: &str) -> &'static str {
    match Sha256::digest(key.as_bytes())[0] % 4 {
        0 | 1 => "train",
        2 => "tune",
        _ => "test",
    }
}

fn load(corpus: &std::path::Path) -> Vec<Message> {
    let mut out = Vec::new();
    for (dir, label) in DIRS {
        let mut names: Vec<String> = std::fs::read_dir(corpus.join(dir))
            .unwrap_or_else(|e| panic!("{}: {e}", corpus.join(dir).display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".txt"))
            .collect();
        names.sort();
        for name in names {
            let raw = std::fs::read(corpus.join(dir).join(&name)).expect("read a message");
            out.push(Message { key: format!("{dir}/{name}"), label: *label, raw });
        }
    }
    out
}

/// SplitMix64, for a deterministic shuffle.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn settings(args: &Args) -> Settings {
    let mut s = Settings::default();
    if let Some(v) = args.bits {
        s.table_bits = v;
    }
    if let Some(v) = args.min_dev {
        s.min_dev = v;
    }
    if let Some(v) = args.robs {
        s.robs = v;
    }
    if let Some(v) = args.robx {
        s.robx = v;
    }
    s
}

/// 1 − the area under the ROC curve, in %, ties counted half.
fn one_minus_roca(scores: &[(f64, Label)]) -> f64 {
    let mut sorted: Vec<(f64, Label)> = scores.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let spam = sorted.iter().filter(|s| s.1 == Label::Spam).count() as f64;
    let ham = sorted.len() as f64 - spam;
    // Sum over spam of the number of ham scored lower (+ half the ties).
    let (mut area, mut ham_below, mut i) = (0.0, 0.0, 0);
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let tie_ham = sorted[i..j].iter().filter(|s| s.1 == Label::Ham).count() as f64;
        let tie_spam = (j - i) as f64 - tie_ham;
        area += tie_spam * (ham_below + tie_ham / 2.0);
        ham_below += tie_ham;
        i = j;
    }
    100.0 * (1.0 - area / (spam * ham))
}

/// The fraction of spam scored above every ham but the top `allowed` hams.
fn spam_caught_at(scores: &[(f64, Label)], ham_fraction: f64) -> f64 {
    let mut hams: Vec<f64> = scores.iter().filter(|s| s.1 == Label::Ham).map(|s| s.0).collect();
    hams.sort_by(|a, b| b.total_cmp(a));
    let allowed = (hams.len() as f64 * ham_fraction).floor() as usize;
    let threshold = hams.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let spam: Vec<f64> = scores.iter().filter(|s| s.1 == Label::Spam).map(|s| s.0).collect();
    100.0 * spam.iter().filter(|s| **s > threshold).count() as f64 / spam.len().max(1) as f64
}

fn held(scores: &[(f64, Label)], label: Label, threshold: f64) -> (usize, usize) {
    let of: Vec<f64> = scores.iter().filter(|s| s.1 == label).map(|s| s.0).collect();
    (of.iter().filter(|s| **s > threshold).count(), of.len())
}

fn main() {
    let args = Args::parse();
    let settings = settings(&args);
    let all = load(&args.corpus);
    if let Some(dump) = &args.dump {
        let tokenizer = Model::with_seed(settings, 0x6d6f_6174).tokenizer();
        let mut w = std::io::BufWriter::new(std::fs::File::create(dump).expect("create the dump"));
        for m in &all {
            let label = if m.label == Label::Spam { "spam" } else { "ham" };
            write!(w, "{}\t{label}\t{}\t", m.key, part_of(&m.key)).expect("write");
            for h in tokenizer.features(&m.raw).hashes() {
                write!(w, "{h:x} ").expect("write");
            }
            // The header's own features (the message cut after its header), so that header and
            // body evidence can be told apart.
            let end = m.raw.windows(2).position(|w| w == b"\n\n").map_or(m.raw.len(), |i| i + 2);
            write!(w, "\t").expect("write");
            for h in tokenizer.features(&m.raw[..end]).hashes() {
                write!(w, "{h:x} ").expect("write");
            }
            writeln!(w).expect("write");
        }
        return;
    }
    if args.online {
        online(&all, settings, args.order.as_deref(), args.out.as_deref());
        return;
    }
    let mut train: Vec<&Message> = all.iter().filter(|m| part_of(&m.key) == "train").collect();
    let scored: Vec<&Message> = all.iter().filter(|m| part_of(&m.key) == args.part).collect();
    let mut rng = Rng(16);
    for i in (1..train.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        train.swap(i, j);
    }
    let mut model = Model::with_seed(settings, 0x6d6f_6174);
    let tokenizer = model.tokenizer();
    let started = Instant::now();
    for m in &train {
        let f = tokenizer.features(&m.raw);
        model.learn(&f, m.label);
    }
    let learn_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut scores = Vec::with_capacity(scored.len());
    for m in &scored {
        let f = tokenizer.features(&m.raw);
        scores.push((model.score(&f), m.label));
    }
    let score_secs = started.elapsed().as_secs_f64();
    if let Some(out) = &args.out {
        let mut w = std::io::BufWriter::new(std::fs::File::create(out).expect("create the scores file"));
        for (m, (p, label)) in scored.iter().zip(&scores) {
            let label = if *label == Label::Spam { "spam" } else { "ham" };
            writeln!(w, "{}\t{label}\t{p}", m.key).expect("write scores");
        }
    }
    let (ham_held, hams) = held(&scores, Label::Ham, args.hold);
    let (spam_held, spams) = held(&scores, Label::Spam, args.hold);
    let bytes = model.to_bytes().len();
    println!("{settings:?}");
    println!(
        "trained on {} (spam {}, ham {}), scored {} part: {} spam, {} ham",
        train.len(),
        model.learned().0,
        model.learned().1,
        args.part,
        spams,
        hams
    );
    println!(
        "hold at p > {}: ham held {:.2} % ({ham_held}), spam held {:.2} % ({spam_held})",
        args.hold,
        100.0 * ham_held as f64 / hams as f64,
        100.0 * spam_held as f64 / spams as f64
    );
    println!("spam caught at <= 0.1 % ham held: {:.2} %", spam_caught_at(&scores, 0.001));
    println!("spam caught at 0 ham held: {:.2} %", spam_caught_at(&scores, 0.0));
    println!("1-ROCA: {:.4} %", one_minus_roca(&scores));
    println!(
        "learning: {:.0} msg/s; classifying: {:.3} ms/msg; model {} MiB in memory, {} KiB as bytes",
        train.len() as f64 / learn_secs,
        1000.0 * score_secs / scored.len() as f64,
        model.memory() >> 20,
        bytes >> 10
    );
}

fn online(all: &[Message], settings: Settings, order: Option<&std::path::Path>, out: Option<&std::path::Path>) {
    let mut dated: Vec<(i64, &Message)> = all
        .iter()
        .map(|m| {
            let date = mail_parser::MessageParser::default().parse_headers(&m.raw).and_then(|h| h.date().map(|d| d.to_timestamp()));
            (date.unwrap_or(0), m)
        })
        .collect();
    dated.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key.cmp(&b.1.key)));
    if let Some(order) = order {
        let text = std::fs::read_to_string(order).unwrap_or_else(|e| panic!("{}: {e}", order.display()));
        let by_key: std::collections::HashMap<&str, &Message> = all.iter().map(|m| (m.key.as_str(), m)).collect();
        dated = text
            .lines()
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, key)| (i as i64, *by_key.get(key).unwrap_or_else(|| panic!("{key}: not in the corpus"))))
            .collect();
    }
    let mut model = Model::with_seed(settings, 0x6d6f_6174);
    let tokenizer = model.tokenizer();
    let mut scores = Vec::with_capacity(dated.len());
    let started = Instant::now();
    for (_, m) in &dated {
        let f = tokenizer.features(&m.raw);
        scores.push((model.score(&f), m.label));
        model.learn(&f, m.label);
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(out) = out {
        let mut text = String::new();
        for ((p, label), (_, m)) in scores.iter().zip(&dated) {
            let name = if *label == Label::Spam { "spam" } else { "ham" };
            text.push_str(&format!("{}\t{name}\t{p}\t{}\n", m.key, if *p > 0.5 { "held" } else { "not" }));
        }
        std::fs::write(out, text).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        let timing = format!(
            "{{\"learn_messages\": {n}, \"learn_seconds\": {secs}, \"classify_messages\": {n}, \"classify_seconds\": {secs}}}",
            n = dated.len()
        );
        std::fs::write(format!("{}.json", out.display()), timing).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    }
    let errors = scores.iter().filter(|(p, l)| (*p >= 0.5) != (*l == Label::Spam)).count();
    println!("online, {} messages in Date order: 1-ROCA {:.4} %, errors at 0.5: {errors}", scores.len(), one_minus_roca(&scores));
    println!("spam caught at <= 0.1 % ham: {:.2} %; {:.0} msg/s classify+learn", spam_caught_at(&scores, 0.001), dated.len() as f64 / secs);
}
