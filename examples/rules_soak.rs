//! Rule-engine memory soak: RSS against messages scanned (issue 20).
//!
//! Loads rule directories (e.g. SpamAssassin's stock rules), then scans the given message files
//! over and over through `moat::filter::rules::scan`, the function the server's rules filter
//! runs, and prints one row every `--every` messages: messages scanned, resident set size (MB),
//! messages/s since the previous row, and the MB of search caches the rule set keeps between
//! messages. Each message is read from its file when scanned (the corpus is not held in
//! memory, so the RSS is the rules' and the scanning's, as in the server). Threads:
//!
//! - `--threads N` (default 2): N long-lived scanning threads, each taking the next message;
//! - `--fresh`: every message on a new thread (what a blocking pool that keeps spawning and
//!   retiring threads looks like), at most N at a time;
//! - `--filter`: N messages in flight at once through the server's own rules filter
//!   (`RulesFilter::data` on a tokio runtime), so whatever threads the filter uses are measured.
//!
//! `cargo run --release --example rules_soak -- --rules /usr/share/spamassassin --rules rules \
//!   --messages 4000 --every 250 /work/corpus/package/data/*/*.txt`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use moat::ruleset::RuleSet;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    moat::allocator::tune();
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    let (mut threads, mut total, mut every, mut fresh, mut filter) = (2usize, 0usize, 250usize, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| args.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or_else(|| panic!("{what} needs a number"));
        match a.as_str() {
            "--rules" => dirs.push(PathBuf::from(args.next().expect("--rules DIR"))),
            "--threads" => threads = num("--threads").max(1),
            "--messages" => total = num("--messages"),
            "--every" => every = num("--every").max(1),
            "--fresh" => fresh = true,
            "--filter" => filter = true,
            _ => files.push(PathBuf::from(a)),
        }
    }
    assert!(!files.is_empty(), "no message files given");
    let messages: Vec<PathBuf> = files.into_iter().filter(|f| f.is_file()).collect();
    if total == 0 {
        total = messages.len();
    }
    let before = rss_mb();
    let started = Instant::now();
    let (rules, report) = RuleSet::load(&dirs).unwrap_or_else(|e| panic!("{} rule errors, first: {}", e.len(), e[0]));
    let rules = Arc::new(rules);
    println!(
        "# {} rules loaded in {:.1}s; {} message files; {} threads{}; RSS {:.0} MB before loading, {:.0} MB after",
        report.loaded,
        started.elapsed().as_secs_f64(),
        messages.len(),
        threads,
        if fresh { " (a new thread per message)" } else { "" },
        before,
        rss_mb()
    );
    println!("messages\trss_mb\tmsg_per_s\tcache_mb");
    let messages = Arc::new(messages);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let work = {
        let (rules, messages, next, done) = (rules.clone(), messages.clone(), next.clone(), done.clone());
        move || -> bool {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= total {
                return false;
            }
            let m = std::fs::read(&messages[i % messages.len()]).unwrap_or_default();
            std::hint::black_box(moat::filter::rules::scan(&rules, &m, None, None, Default::default()));
            done.fetch_add(1, Ordering::Relaxed);
            true
        }
    };
    let through_filter = {
        let (rules, messages, next, done) = (rules.clone(), messages.clone(), next.clone(), done.clone());
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let filter = Arc::new(moat::filter::rules::RulesFilter::new(rules));
                let tasks: Vec<_> = (0..threads)
                    .map(|_| {
                        let (filter, messages, next, done) = (filter.clone(), messages.clone(), next.clone(), done.clone());
                        tokio::spawn(async move {
                            use moat::filter::Filter;
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= total {
                                    return;
                                }
                                let message = Arc::new(std::fs::read(&messages[i % messages.len()]).unwrap_or_default());
                                let facts = moat::filter::Facts { message: Some(message), ..Default::default() };
                                let _ = std::hint::black_box(filter.data(&facts).await);
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
            });
        }
    };
    let driver = std::thread::spawn(move || {
        if filter {
            through_filter();
        } else if fresh {
            // Waves of `threads` new threads, one message each.
            loop {
                let wave: Vec<_> = (0..threads).map(|_| std::thread::spawn(work.clone())).collect();
                if !wave.into_iter().map(|t| t.join().unwrap_or(false)).fold(false, |a, b| a | b) {
                    break;
                }
            }
        } else {
            let pool: Vec<_> = (0..threads)
                .map(|_| {
                    let work = work.clone();
                    std::thread::spawn(move || while work() {})
                })
                .collect();
            for t in pool {
                let _ = t.join();
            }
        }
    });
    let (mut last_n, mut last_t, mut next_row) = (0usize, Instant::now(), every);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let n = done.load(Ordering::Relaxed);
        let finished = driver.is_finished();
        if n >= next_row || finished {
            let dt = last_t.elapsed().as_secs_f64();
            println!("{n}\t{:.0}\t{:.0}\t{:.0}", rss_mb(), (n - last_n) as f64 / dt.max(1e-9), rules.search_memory() as f64 / 1048576.0);
            (last_n, last_t) = (n, Instant::now());
            while next_row <= n {
                next_row += every;
            }
        }
        if finished {
            break;
        }
    }
    let _ = driver.join();
}
