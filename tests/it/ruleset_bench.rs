//! Rule-engine throughput (a benchmark, not a timed test): SpamAssassin's stock rules over ~56
//! varied messages (the rules corpus, each also padded to about 2, 16 and 64 KiB of extra
//! text), parse + evaluate, single thread. Run in release:
//! `cargo test --release --test it ruleset_bench -- --ignored --nocapture` (or `bench/rules.sh`,
//! which also times SpamAssassin on the same messages). With `MOAT_BENCH_MBOX=FILE` it writes
//! the messages as an mbox for other scanners.

use std::path::PathBuf;
use std::time::Instant;

use moat::ruleset::{ParsedMessage, RuleSet};

const FILLER: &[&str] = &[
    "Thank you for your order. Your package will ship within three business days and you will receive a tracking number by email.",
    "The quarterly report is attached; please review the figures for the northern region before our meeting on Thursday.",
    "Limited offer: save up to 70 percent on selected items, free shipping on all orders over fifty dollars this week only!",
    "We have updated our privacy policy. You can read the new version on our website or contact support with any questions.",
];

/// The benchmark messages: each corpus message as is and with 2, 16 and 64 KiB of text added.
pub fn messages() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for (n, f) in files.iter().enumerate() {
        let raw = std::fs::read(f).expect("read");
        out.push(raw.clone());
        // Padding goes into single-part plain-text messages only, so MIME structure stays valid.
        let plain = !String::from_utf8_lossy(&raw).to_ascii_lowercase().contains("multipart")
            && !String::from_utf8_lossy(&raw).to_ascii_lowercase().contains("content-transfer-encoding: base64");
        for kib in [2usize, 16, 64] {
            let mut m = raw.clone();
            let mut i = n;
            while m.len() < raw.len() + kib * 1024 {
                if plain {
                    m.extend_from_slice(FILLER[i % FILLER.len()].as_bytes());
                    m.extend_from_slice(if i % 3 == 0 { b"\r\n\r\n" } else { b"\r\n" });
                } else {
                    // Extra header lines instead (still work for header rules).
                    let h = format!("X-Padding-{i}: {}\r\n", FILLER[i % FILLER.len()]);
                    m.splice(0..0, h.into_bytes());
                }
                i += 1;
            }
            out.push(m);
        }
    }
    out
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn stock_rules_throughput() {
    let dir = std::env::var_os("MOAT_SA_RULES").map_or_else(|| PathBuf::from("/usr/share/spamassassin"), PathBuf::from);
    let started = Instant::now();
    let (rules, report) = RuleSet::load(&[dir]).expect("stock rules load");
    eprintln!("loaded {} rules in {:.2?}", report.loaded, started.elapsed());
    let msgs = messages();
    if let Some(path) = std::env::var_os("MOAT_BENCH_MBOX") {
        let mut mbox = Vec::new();
        for m in &msgs {
            mbox.extend_from_slice(b"From bench@localhost Thu Jan  1 00:00:00 1970\n");
            mbox.extend_from_slice(&m.iter().copied().filter(|&b| b != b'\r').collect::<Vec<u8>>());
            mbox.extend_from_slice(b"\n\n");
        }
        std::fs::write(path, mbox).expect("write mbox");
    }
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    // Warm up once, then measure several rounds.
    let mut hits = 0;
    for m in &msgs {
        hits += rules.evaluate(&ParsedMessage::parse(m)).len();
    }
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for m in &msgs {
            hits += rules.evaluate(&ParsedMessage::parse(m)).len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = (msgs.len() * rounds) as f64;
    eprintln!(
        "{} messages ({} KiB), {rounds} rounds: {:.0} messages/s, {:.2} ms/message, {:.1} MB/s, {hits} hits",
        msgs.len(),
        bytes / 1024,
        n / secs,
        1000.0 * secs / n,
        (bytes * rounds) as f64 / secs / 1e6
    );
}
