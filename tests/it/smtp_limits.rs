//! Bounded everything: message size, recipients, line length, NUL bytes, errors, idle time and
//! connections. Over a bound a client gets the right reply (and a clean close where the reply
//! table says so); moat keeps serving others.

use crate::support::*;
use std::time::Duration;

#[test]
fn size_announced_and_too_big_size_parameter_refused_at_mail() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_message_size", 10_000));
    let (mut smtp, ehlo) = Smtp::open_ehlo(moat.port);
    assert!(ehlo.lines.iter().any(|l| l.eq_ignore_ascii_case("SIZE 10000")), "EHLO must announce SIZE 10000:\n{ehlo}");
    assert_reply(&smtp.cmd("MAIL FROM:<a@remote.example> SIZE=20000"), 552, "5.3.4", "SIZE over the limit");
    assert_reply(&smtp.cmd("MAIL FROM:<a@remote.example> SIZE=9000"), 250, "2.1.0", "SIZE under the limit");
}

#[test]
fn message_too_big_while_streaming_is_refused_and_not_relayed() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_message_size", 10_000));
    let mut smtp = moat.smtp_ehlo();
    let line = "x".repeat(76) + "\r\n";
    let big = format!("Subject: big\r\n\r\n{}", line.repeat(300));
    assert!(big.len() > 20_000);
    smtp.expect(&[("MAIL FROM:<a@remote.example>", 250), ("RCPT TO:<user@example.test>", 250), ("DATA", 354)]);
    // moat may answer early and close; a failed write is fine, a missing 552 is not.
    smtp.send_lossy(big.as_bytes());
    smtp.send_lossy(b".\r\n");
    assert_reply(&smtp.reply(), 552, "5.3.4", "message over max_message_size");
    // A new connection still works, and the big message never reaches the downstream.
    let mut again = moat.smtp_ehlo();
    assert_reply(
        &again.send_mail("a@remote.example", &["user@example.test"], b"Subject: small\r\n\r\nsmall\r\n"),
        250,
        "2.0.0",
        "small message",
    );
    let mails = sink.wait_for(1, DEADLINE);
    std::thread::sleep(Duration::from_millis(500));
    let mails_later = sink.messages();
    assert_eq!(mails_later.len(), 1, "only the small message is relayed: {mails:?}");
    assert!(mails_later[0].contains("small"));
}

#[test]
fn too_big_bdat_is_refused() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_message_size", 10_000));
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<user@example.test>").code, 250);
    let chunk = vec![b'y'; 20_000];
    smtp.send(b"BDAT 20000 LAST\r\n");
    smtp.send_lossy(&chunk);
    assert_reply(&smtp.reply(), 552, "5.3.4", "BDAT over max_message_size");
}

#[test]
fn recipients_over_the_limit_get_452_and_the_rest_is_delivered() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_recipients", 3));
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<a@remote.example>").code, 250);
    for i in 1..=3 {
        assert_reply(&smtp.cmd(&format!("RCPT TO:<u{i}@example.test>")), 250, "2.1.5", "RCPT within the limit");
    }
    assert_reply(&smtp.cmd("RCPT TO:<u4@example.test>"), 452, "4.5.3", "fourth RCPT");
    assert_eq!(smtp.cmd("DATA").code, 354);
    smtp.send(b"Subject: many\r\n\r\nmany\r\n.\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "queued");
    let mails = sink.wait_for(1, DEADLINE);
    let mut rcpts = mails[0].recipients.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["u1@example.test", "u2@example.test", "u3@example.test"]);
}

#[test]
fn overlong_command_line_gets_500_and_moat_survives() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_line_length", 1000));
    let mut smtp = moat.smtp_ehlo();
    let long = format!("NOOP {}\r\n", "a".repeat(100_000));
    smtp.send_lossy(long.as_bytes());
    let reply = smtp.reply();
    assert_reply(&reply, 500, "5.5.2", "overlong command line");
    // Other clients are unaffected.
    let mut other = moat.smtp_ehlo();
    assert_reply(&other.cmd("NOOP"), 250, "2.0.0", "another connection");
}

#[test]
fn a_huge_line_does_not_grow_memory_and_the_session_resyncs() {
    // 64 MiB without a line end: moat must drop it as it comes (bounded memory), answer 500 once
    // the line ends (or right away), and then read the next command normally.
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_line_length", 1000));
    let mut smtp = moat.smtp_ehlo();
    let before = moat.peak_memory_kib();
    let chunk = vec![b'b'; 1 << 20];
    for _ in 0..64 {
        if !smtp.send_lossy(&chunk) {
            break;
        }
    }
    let after = moat.peak_memory_kib();
    assert!(after < before + 16 * 1024, "moat's peak memory grew from {before} KiB to {after} KiB while a client sent a 64 MiB line");
    smtp.send_lossy(b"\r\n");
    assert_reply(&smtp.reply(), 500, "5.5.2", "64 MiB line");
    assert_reply(&smtp.cmd("NOOP"), 250, "2.0.0", "the next command after the long line");
}

#[test]
fn nul_byte_in_a_command_is_refused() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let mut smtp = moat.smtp_ehlo();
    smtp.send(b"MAIL FROM:<a\0b@remote.example>\r\n");
    let reply = smtp.reply();
    assert!(reply.code >= 500 && reply.code < 600, "NUL in MAIL must be refused: {reply}");
    let mut other = moat.smtp_ehlo();
    assert_reply(&other.cmd("NOOP"), 250, "2.0.0", "moat still serves");
}

#[test]
fn nul_byte_in_the_message_is_refused_and_not_relayed() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let mut smtp = moat.smtp_ehlo();
    smtp.expect(&[("MAIL FROM:<a@remote.example>", 250), ("RCPT TO:<user@example.test>", 250), ("DATA", 354)]);
    smtp.send(b"Subject: nul\r\n\r\nbefore\0after\r\n.\r\n");
    assert_reply(&smtp.reply(), 554, "5.6.0", "NUL in DATA");
    // The session goes on: the next transaction works.
    let reply = smtp.send_mail("a@remote.example", &["user@example.test"], b"Subject: clean\r\n\r\nclean\r\n");
    assert_reply(&reply, 250, "2.0.0", "next message");
    let mails = sink.wait_for(1, DEADLINE);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().len(), 1, "only the clean message: {mails:?}");
    assert!(sink.messages()[0].contains("clean"));
}

#[test]
fn too_many_errors_get_421_and_a_close() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_errors", 3));
    let mut smtp = moat.smtp_ehlo();
    let mut replies = Vec::new();
    for _ in 0..10 {
        if !smtp.send_lossy(b"BOGUS\r\n") {
            break;
        }
        match smtp.try_reply() {
            Ok(reply) => {
                let last = reply.code == 421;
                replies.push(reply);
                if last {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let last = replies.last().expect("some replies");
    assert_reply(last, 421, "4.7.0", "after max_errors errors");
    assert!(replies.len() <= 4, "421 must come by the 4th error, got {} replies", replies.len());
    assert!(smtp.closed_within(Duration::from_secs(5)), "moat must close after 421");
}

#[test]
fn idle_client_gets_421_and_a_close() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).timeout("command", "2s"));
    let mut smtp = moat.smtp_ehlo();
    smtp.timeout = Duration::from_secs(10);
    let reply = smtp.reply();
    assert_reply(&reply, 421, "4.4.2", "idle past the command timeout");
    assert!(smtp.closed_within(Duration::from_secs(5)));
}

#[test]
fn stalled_data_gets_421_and_nothing_is_relayed() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).timeout("data_block", "2s"));
    let mut smtp = moat.smtp_ehlo();
    smtp.expect(&[("MAIL FROM:<a@remote.example>", 250), ("RCPT TO:<user@example.test>", 250), ("DATA", 354)]);
    smtp.send(b"Subject: half\r\n\r\nhalf a mess");
    smtp.timeout = Duration::from_secs(10);
    assert_reply(&smtp.reply(), 421, "4.4.2", "stalled DATA");
    assert!(smtp.closed_within(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty(), "a half message must not be relayed");
}

#[test]
fn a_command_trickled_a_byte_at_a_time_still_gets_its_deadline() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).timeout("command", "2s"));
    let mut smtp = moat.smtp_ehlo();
    let started = std::time::Instant::now();
    // One byte every half second: each read is well within the 2 s, the whole line is not.
    for byte in b"MAIL FROM:<slow@remote.example>" {
        if started.elapsed() > Duration::from_secs(3) || !smtp.send_lossy(&[*byte]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    smtp.timeout = Duration::from_secs(10);
    assert_reply(&smtp.reply(), 421, "4.4.2", "a command not complete within the command timeout");
    assert!(smtp.closed_within(Duration::from_secs(5)));
    // Per read alone the client would have had 2 s after its last byte (past 5 s).
    assert!(started.elapsed() < Duration::from_millis(4500), "{:?}", started.elapsed());
}

#[test]
fn message_data_below_the_minimum_rate_gets_421_and_nothing_is_relayed() {
    let sink = Sink::new();
    let config =
        MoatConfig::new(sink.port).timeout("data_block", "10s").timeout("data_rate_grace", "1s").timeout_number("data_min_rate", 100);
    let moat = Moat::start(config);
    let mut smtp = moat.smtp_ehlo();
    smtp.expect(&[("MAIL FROM:<a@remote.example>", 250), ("RCPT TO:<user@example.test>", 250), ("DATA", 354)]);
    let started = std::time::Instant::now();
    // 10 bytes a second, each read far inside data_block: under the 100 B/s bound after 1 s.
    while started.elapsed() < Duration::from_secs(6) && smtp.send_lossy(b"0123456789") {
        std::thread::sleep(Duration::from_secs(1));
    }
    smtp.timeout = Duration::from_secs(10);
    assert_reply(&smtp.reply(), 421, "4.4.2", "a trickle below data_min_rate");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty(), "a half message must not be relayed");
}

#[test]
fn connections_per_ip_are_limited() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_connections_per_ip", 3));
    let mut open: Vec<Smtp> = (0..3).map(|_| moat.smtp()).collect();
    let mut fourth = Smtp::connect(moat.port);
    assert_reply(&fourth.reply(), 421, "4.7.0", "fourth connection from one IP");
    assert!(fourth.closed_within(Duration::from_secs(5)), "moat must close the refused connection");
    // The admitted ones still work; after one leaves, a new one is admitted.
    assert_reply(&open[0].cmd("NOOP"), 250, "2.0.0", "an admitted connection");
    let mut leaving = open.pop().unwrap();
    assert_eq!(leaving.cmd("QUIT").code, 221);
    assert!(leaving.closed_within(Duration::from_secs(5)));
    let greeting = wait_until("a connection slot to free up", Duration::from_secs(5), || {
        let mut again = Smtp::connect(moat.port);
        let reply = again.reply();
        (reply.code == 220).then_some(reply)
    });
    assert_eq!(greeting.code, 220);
}

#[test]
fn connections_in_total_are_limited() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port).limit("max_connections", 2));
    let _open: Vec<Smtp> = (0..2).map(|_| moat.smtp()).collect();
    let mut third = Smtp::connect(moat.port);
    assert_reply(&third.reply(), 421, "4.7.0", "third connection in total");
    assert!(third.closed_within(Duration::from_secs(5)));
}

fn stress_gauge(metrics_port: u16) -> Option<f64> {
    let text = http(metrics_port, "GET", "/metrics", "").body;
    text.lines().find_map(|line| line.strip_prefix("moat_stress ")?.trim().parse().ok())
}

#[test]
fn under_stress_waiting_sessions_get_the_short_deadline_early_talkers_are_turned_away_and_senders_get_through() {
    let sink = Sink::new();
    let metrics = free_port();
    let moat = Moat::start(
        MoatConfig::new(sink.port)
            .limit("max_connections", 10)
            .limit("stress_threshold", 0.5)
            .timeout("command", "60s")
            .timeout("stress_command", "3s")
            .timeout("stress_pregreet", "1s")
            .append(&format!("\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n")),
    );
    assert_eq!(stress_gauge(metrics), Some(0.0), "no stress at start");
    // One session idle under the normal 60 s deadline, then a flood of idle connections.
    let mut waiting = moat.smtp_ehlo();
    // A second before the flood, so its stress deadline ends well before the flood's own (whose
    // end turns stress off again).
    std::thread::sleep(Duration::from_secs(1));
    let flood: Vec<Smtp> = (0..4).map(|_| moat.smtp()).collect();
    let stressed_at = std::time::Instant::now();
    wait_until("stress mode at 5 of 10 connections", Duration::from_secs(5), || (stress_gauge(metrics) == Some(1.0)).then_some(()));

    // A client that talks before the greeting is turned away while the server is under stress.
    let mut early = Smtp::connect(moat.port);
    early.send(b"EHLO too.early.example\r\n");
    assert_reply(&early.reply(), 421, "4.7.0", "talking before the greeting under stress");
    assert!(early.closed_within(Duration::from_secs(5)));
    // A sender that waits for the greeting gets through, and its message is delivered.
    let mut polite = moat.smtp_ehlo();
    let reply = polite.send_mail("a@remote.example", &["user@example.test"], b"Subject: under stress\r\n\r\nstill delivered\r\n");
    assert_eq!(reply.code, 250, "{reply}");
    sink.wait_for(1, DEADLINE);

    // The session that was already waiting gets the stress deadline at once, not its 60 s.
    waiting.timeout = Duration::from_secs(20);
    assert_reply(&waiting.reply(), 421, "4.4.2", "idle past stress_command");
    assert!(stressed_at.elapsed() < Duration::from_secs(10), "cut at the stress deadline: {:?}", stressed_at.elapsed());
    drop(flood);
    wait_until("stress mode off once the flood is gone", Duration::from_secs(10), || (stress_gauge(metrics) == Some(0.0)).then_some(()));
    assert!(moat.log().contains("event=\"stress\""), "the change is logged");
}
