//! Rule-evaluation time per message (issue 20: the relay's DATA→250 tail follows it).
//!
//! Loads rule directories (e.g. SpamAssassin's stock rules + rules/), scans every given message
//! once to warm the search caches, then times `moat::filter::rules::scan` (what the server's rules
//! filter runs) on each message, one thread, and prints p50/p90/p99/max and the slowest messages
//! with their size.
//!
//! `cargo run --release --example rules_latency -- --rules /usr/share/spamassassin --rules rules \
//!   [--slowest 20] /work/corpus/package/data/*/*.txt`

use std::path::PathBuf;
use std::time::Instant;

use moat::ruleset::RuleSet;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn main() {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    let mut slowest = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rules" => dirs.push(PathBuf::from(args.next().expect("--rules DIR"))),
            "--slowest" => slowest = args.next().and_then(|v| v.parse().ok()).expect("--slowest N"),
            _ => files.push(PathBuf::from(a)),
        }
    }
    let (rules, report) = RuleSet::load(&dirs).unwrap_or_else(|e| panic!("{} rule errors, first: {}", e.len(), e[0]));
    let messages: Vec<(PathBuf, Vec<u8>)> = files.into_iter().filter_map(|f| std::fs::read(&f).ok().map(|bytes| (f, bytes))).collect();
    assert!(!messages.is_empty(), "no readable message files given");
    for (_, bytes) in &messages {
        std::hint::black_box(moat::filter::rules::scan(&rules, bytes, None, None, Default::default()));
    }
    let mut timed: Vec<(f64, usize, &PathBuf)> = messages
        .iter()
        .map(|(path, bytes)| {
            let started = Instant::now();
            std::hint::black_box(moat::filter::rules::scan(&rules, bytes, None, None, Default::default()));
            (started.elapsed().as_secs_f64() * 1000.0, bytes.len(), path)
        })
        .collect();
    let mut ms: Vec<f64> = timed.iter().map(|t| t.0).collect();
    ms.sort_by(f64::total_cmp);
    let total: f64 = ms.iter().sum();
    println!(
        "# {} rules, {} messages, warm, one thread: mean {:.2} ms, p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2} ms",
        report.loaded,
        ms.len(),
        total / ms.len() as f64,
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        percentile(&ms, 1.0)
    );
    timed.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("ms\tbytes\tmessage");
    for (ms, bytes, path) in timed.iter().take(slowest) {
        println!("{ms:.2}\t{bytes}\t{}", path.display());
    }
}
