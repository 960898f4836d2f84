//! Faults under concurrent load, with the real binary and smtp-sink on loopback: the spool's disk
//! fills up (a real, small tmpfs), moat is SIGKILLed while senders keep sending, the downstream
//! goes away and comes back again and again while mail flows. The invariant every time: a
//! message that got `250` reaches the downstream, exactly once (save the duplicate window SMTP
//! relaying cannot close: a crash after the downstream took a message but before its `250` was
//! recorded), and a message refused with a 4xx or 5xx never does.
//!
//! The timings under these faults are measured by `bench/faults`; these tests keep its
//! invariants.

use crate::support::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What one message's sender saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// The reply to the end of DATA, or an earlier refusal: code and enhanced code.
    Reply(u16, String),
    /// The connection failed or closed before a final reply: the message may or may not have
    /// been taken.
    NoAnswer(&'static str),
}

impl Seen {
    fn accepted(&self) -> bool {
        matches!(self, Seen::Reply(250, _))
    }
    fn refused(&self) -> bool {
        matches!(self, Seen::Reply(code, _) if *code >= 400)
    }
}

/// One message on its own connection; never panics.
fn try_send(port: u16, marker: &str, padding: usize) -> Seen {
    let Ok(mut smtp) = Smtp::try_connect(port) else { return Seen::NoAnswer("connect") };
    smtp.timeout = Duration::from_secs(30);
    let step = |smtp: &mut Smtp, line: Option<&str>, expect: u16, stage: &'static str| -> Result<(), Seen> {
        if let Some(line) = line
            && !smtp.send_lossy(format!("{line}\r\n").as_bytes())
        {
            return Err(Seen::NoAnswer(stage));
        }
        match smtp.try_reply() {
            Ok(reply) if reply.code == expect => Ok(()),
            Ok(reply) => Err(Seen::Reply(reply.code, reply.enhanced().unwrap_or("").to_string())),
            Err(_) => Err(Seen::NoAnswer(stage)),
        }
    };
    let steps: [(Option<&str>, u16, &'static str); 5] = [
        (None, 220, "greeting"),
        (Some("EHLO load.example.org"), 250, "EHLO"),
        (Some("MAIL FROM:<load@remote.example>"), 250, "MAIL"),
        (Some(&format!("RCPT TO:<user@{DOMAIN}>")), 250, "RCPT"),
        (Some("DATA"), 354, "DATA"),
    ];
    for (line, expect, stage) in steps {
        if let Err(seen) = step(&mut smtp, line, expect, stage) {
            return seen;
        }
    }
    let mut message = simple_message(marker);
    message.extend(format!("{}\r\n", "x".repeat(70)).repeat(padding / 72).into_bytes());
    message.extend(format!("end-{marker}\r\n").into_bytes());
    if !smtp.send_lossy(&dot_stuff(&message)) || !smtp.send_lossy(b".\r\n") {
        return Seen::NoAnswer("message");
    }
    let seen = match smtp.try_reply() {
        Ok(reply) => Seen::Reply(reply.code, reply.enhanced().unwrap_or("").to_string()),
        Err(_) => Seen::NoAnswer("end of data"),
    };
    smtp.send_lossy(b"QUIT\r\n");
    seen
}

/// Runs `senders` threads sending one message per connection until `stop`, while `faults` runs
/// on this thread; returns every marker with what its sender saw. It holds [`load_lock`]
/// meanwhile: one load at a time in the test process.
fn under_load(port: u16, senders: usize, faults: impl FnOnce(&AtomicBool)) -> Vec<(String, Seen)> {
    let _load = load_lock();
    let stop = AtomicBool::new(false);
    let sent = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for n in 0..senders {
            let (stop, sent) = (&stop, &sent);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = marker(&format!("load{n}"));
                    let seen = try_send(port, &id, 2_000);
                    if matches!(seen, Seen::NoAnswer("connect")) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    sent.lock().unwrap().push((id, seen));
                }
            });
        }
        faults(&stop);
        stop.store(true, Ordering::Relaxed);
    });
    sent.into_inner().unwrap()
}

/// How often each marker's message arrived whole at the sink (a sink killed mid-DATA leaves a
/// dump without the last line).
fn delivered(sink: &Sink) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for mail in sink.messages() {
        let data = text(&mail.data);
        if let Some(start) = data.find("\nbody-") {
            let id = data[start + 6..].split_whitespace().next().unwrap_or("").to_string();
            if data.contains(&format!("\nend-{id}\n")) {
                *counts.entry(id).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Waits until every accepted marker arrived, then checks the invariant; returns the number of
/// duplicates (each at most `allowed_duplicates`).
#[track_caller]
fn assert_invariant(sink: &Sink, sent: &[(String, Seen)], allowed_duplicates: usize) -> usize {
    let accepted: Vec<&String> = sent.iter().filter(|(_, s)| s.accepted()).map(|(m, _)| m).collect();
    wait_until(&format!("all {} accepted messages at the sink", accepted.len()), Duration::from_secs(90), || {
        let counts = delivered(sink);
        accepted.iter().all(|m| counts.contains_key(*m)).then_some(())
    });
    // Retries that should not happen get a moment to show up.
    std::thread::sleep(Duration::from_secs(3));
    let counts = delivered(sink);
    let mut duplicates = 0;
    for (id, seen) in sent {
        let n = counts.get(id).copied().unwrap_or(0);
        match seen {
            s if s.accepted() => {
                assert!(n >= 1, "{id} got 250 but was not delivered");
                if n > 1 {
                    eprintln!("{id} delivered {n} times");
                }
                duplicates += n - 1;
            }
            s if s.refused() => assert_eq!(n, 0, "{id} was refused ({s:?}) but delivered"),
            _ => assert!(n <= 1, "{id} (no answer) delivered {n} times"),
        }
    }
    let unknown = counts.keys().filter(|id| !sent.iter().any(|(m, _)| m == *id)).count();
    assert_eq!(unknown, 0, "messages at the sink that nobody sent");
    assert!(duplicates <= allowed_duplicates, "{duplicates} duplicates (at most {allowed_duplicates} allowed)");
    duplicates
}

fn tally(sent: &[(String, Seen)]) -> String {
    let mut by: HashMap<String, usize> = HashMap::new();
    for (_, seen) in sent {
        let key = match seen {
            Seen::Reply(code, enhanced) => format!("{code} {enhanced}"),
            Seen::NoAnswer(stage) => format!("no answer at {stage}"),
        };
        *by.entry(key).or_insert(0) += 1;
    }
    let mut keys: Vec<_> = by.into_iter().collect();
    keys.sort();
    format!("{keys:?}")
}

// ---------------------------------------------------------------------------------------------
// A full disk
// ---------------------------------------------------------------------------------------------

/// A tmpfs of `size` mounted on a temporary directory; unmounted on Drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        assert!(is_root(), "mounting a small tmpfs for the full-disk test needs root (as scripts/test runs)");
        let dir = temp_dir();
        let out = run_with_deadline(
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"]).arg(dir.path()),
            DEADLINE,
        );
        assert!(out.status.success(), "mount -t tmpfs: {}", text(&out.stderr));
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `filler` until the file system refuses another byte (ENOSPC).
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        for chunk in [1 << 16, 4096, 1] {
            while file.write_all(&vec![0u8; chunk]).is_ok() {}
        }
        let _ = file.sync_all();
        let probe = std::fs::write(self.path().join("probe"), b"x");
        assert!(probe.is_err(), "the file system still takes data");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_spool_disk_answers_452_4_3_1_and_loses_nothing() {
    let disk = Tmpfs::mount("16m");
    let mut sink = Sink::new();
    let mut config = MoatConfig::new(sink.port);
    config.state_dir = disk.path().join("state").to_str().unwrap().to_string();
    let moat = Moat::start(config);
    let queue_list = || {
        let config = moat.config_path();
        text(&moat.cli(&["queue", "list", "-c", config.to_str().unwrap()]).stdout)
    };

    let before: Vec<String> = (0..3).map(|_| marker("before")).collect();
    for id in &before {
        assert_eq!(try_send(moat.port, id, 8_000), Seen::Reply(250, "2.0.0".into()));
    }
    sink.wait_for(3, DEADLINE);
    // The downstream goes away: these wait in the spool when the disk fills up.
    sink.stop();
    let queued: Vec<String> = (0..3).map(|_| marker("queued")).collect();
    for id in &queued {
        assert_eq!(try_send(moat.port, id, 8_000), Seen::Reply(250, "2.0.0".into()));
    }

    let filler = disk.fill();
    let refused: Vec<String> = (0..5).map(|_| marker("full")).collect();
    for id in &refused {
        assert_eq!(
            try_send(moat.port, id, 8_000),
            Seen::Reply(452, "4.3.1".into()),
            "a message that cannot be spooled is refused with 452 4.3.1; log:\n{}",
            moat.log()
        );
    }
    // The same client may go on, and is still told the truth.
    let mut smtp = moat.smtp_ehlo();
    let reply = smtp.send_mail("again@remote.example", &[&format!("user@{DOMAIN}")], &simple_message(&marker("again")));
    assert_reply(&reply, 452, "4.3.1", "a second message on the same connection");
    let listing = queue_list();
    for id in &refused {
        assert!(!listing.contains(id.as_str()));
    }
    let incoming: Vec<_> = std::fs::read_dir(moat.state_dir().join("spool/incoming"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(incoming.is_empty(), "no partial file is left behind: {incoming:?}");

    // The downstream is back while the disk is still full: the queued mail goes out.
    sink.start();
    std::thread::sleep(Duration::from_secs(4));
    let counts = delivered(&sink);
    for id in &refused {
        assert!(!counts.contains_key(id), "{id} got 452 but was delivered");
    }
    // Space again: the senders retry, as SMTP clients do after a 4xx.
    std::fs::remove_file(filler).unwrap();
    for id in &refused {
        assert_eq!(try_send(moat.port, id, 8_000), Seen::Reply(250, "2.0.0".into()));
    }
    let sent: Vec<(String, Seen)> =
        before.iter().chain(&queued).chain(&refused).map(|id| (id.clone(), Seen::Reply(250, "2.0.0".into()))).collect();
    assert_invariant(&sink, &sent, 0);
    assert!(moat.log().contains("event=\"spool_error\""), "the full disk is logged");
}

// ---------------------------------------------------------------------------------------------
// moat killed under load
// ---------------------------------------------------------------------------------------------

#[test]
fn sigkill_under_concurrent_load_then_restart_loses_nothing() {
    let sink = Sink::new();
    let mut moat = Moat::start(MoatConfig::new(sink.port));
    let port = moat.port;
    let moat_ref = &mut moat;
    let sent = under_load(port, 8, |_| {
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(1500));
            moat_ref.sigkill();
            std::thread::sleep(Duration::from_millis(300));
            moat_ref.restart();
        }
        std::thread::sleep(Duration::from_millis(1500));
    });
    let accepted = sent.iter().filter(|(_, s)| s.accepted()).count();
    assert!(accepted >= 50, "too little load to mean anything: {}", tally(&sent));
    assert!(sent.iter().any(|(_, s)| !s.accepted()), "the kills interrupted nobody: {}", tally(&sent));
    // Each kill may duplicate only deliveries in flight (delivery concurrency 16).
    let duplicates = assert_invariant(&sink, &sent, 2 * 16);
    eprintln!("{accepted} accepted, {duplicates} duplicates; {}", tally(&sent));
    wait_until("an empty queue", DEADLINE, || {
        let config = moat.config_path();
        let listing = text(&moat.cli(&["queue", "list", "-c", config.to_str().unwrap()]).stdout);
        (!listing.contains("example.test")).then_some(())
    });
}

// ---------------------------------------------------------------------------------------------
// The downstream flapping under load
// ---------------------------------------------------------------------------------------------

#[test]
fn a_flapping_downstream_under_load_gets_every_message_exactly_once() {
    let mut sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let sink_ref = &mut sink;
    let flaps: usize = 6;
    let started = Instant::now();
    let sent = under_load(moat.port, 8, |_| {
        for n in 0..flaps {
            std::thread::sleep(Duration::from_millis(300 + 150 * (n as u64 % 3)));
            sink_ref.stop();
            std::thread::sleep(Duration::from_millis(400 + 200 * (n as u64 % 2)));
            sink_ref.start();
        }
    });
    let accepted = sent.iter().filter(|(_, s)| s.accepted()).count();
    assert!(accepted >= 50, "too little load: {}", tally(&sent));
    assert_eq!(accepted, sent.len(), "the downstream's absence never refuses mail: {}", tally(&sent));
    // A kill of smtp-sink between storing a message and its 250 duplicates that message: the
    // window SMTP cannot close, at most the deliveries in flight per flap.
    let duplicates = assert_invariant(&sink, &sent, flaps);
    eprintln!("{accepted} accepted in {:?}, {duplicates} duplicates", started.elapsed());
}
