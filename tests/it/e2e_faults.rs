//! Faults and operations: the downstream goes away and comes back, moat is killed and restarted,
//! stopped gracefully, reloaded with good and broken configs; the queue CLI; bounces.
//! The rule throughout: a message that got 250 is delivered, exactly once.

use crate::support::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sends `n` messages on one connection, each with a unique marker; returns the markers and the
/// queue ids from the 250 replies.
fn send_messages(moat: &Moat, n: usize, tag: &str) -> (Vec<String>, Vec<String>) {
    let mut smtp = moat.smtp_ehlo();
    let mut markers = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = marker(tag);
        let reply = smtp.send_mail("sender@remote.example", &["user@example.test"], &simple_message(&id));
        assert_reply(&reply, 250, "2.0.0", "queued");
        ids.push(reply.text().rsplit("queued as ").next().unwrap().trim().to_string());
        markers.push(id);
    }
    assert_eq!(smtp.cmd("QUIT").code, 221);
    (markers, ids)
}

/// How often each marker's body appears among `mails`.
fn counts(mails: &[Mail], markers: &[String]) -> HashMap<String, usize> {
    markers.iter().map(|m| (m.clone(), mails.iter().filter(|mail| mail.contains(&format!("body-{m}"))).count())).collect()
}

#[track_caller]
fn assert_each_exactly_once(sink: &Sink, markers: &[String]) {
    sink.wait_for(markers.len(), Duration::from_secs(30));
    // Let retries that should not happen have a chance to show up.
    std::thread::sleep(Duration::from_secs(3));
    let mails = sink.messages();
    let counts = counts(&mails, markers);
    let wrong: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(wrong.is_empty(), "each message must be delivered exactly once; wrong counts: {wrong:?}");
    assert_eq!(mails.len(), markers.len(), "no other messages");
}

#[test]
fn downstream_down_then_back_delivers_the_spooled_mail() {
    let mut sink = Sink::stopped();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let (markers, _) = send_messages(&moat, 3, "down");
    // The downstream is down: moat keeps the mail and retries (retry_initial = 1s).
    std::thread::sleep(Duration::from_secs(2));
    sink.start();
    assert_each_exactly_once(&sink, &markers);
}

#[test]
fn downstream_tempfail_is_retried() {
    let mut sink = Sink::with_args(&["-r", "RCPT"]);
    let moat = Moat::start(MoatConfig::new(sink.port));
    let (markers, _) = send_messages(&moat, 1, "tempfail");
    std::thread::sleep(Duration::from_secs(2));
    assert!(sink.messages().is_empty());
    sink.restart_with_args(&[]);
    assert_each_exactly_once(&sink, &markers);
}

#[test]
fn sigkill_after_250_then_restart_delivers_every_message_exactly_once() {
    let mut sink = Sink::stopped();
    let mut moat = Moat::start(MoatConfig::new(sink.port));
    let (markers, _) = send_messages(&moat, 5, "crash");
    moat.sigkill();
    sink.start();
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty(), "nothing can be delivered while moat is dead");
    moat.restart();
    assert_each_exactly_once(&sink, &markers);
}

#[test]
fn sigkill_right_after_250_with_the_downstream_up_loses_nothing() {
    let sink = Sink::new();
    let mut moat = Moat::start(MoatConfig::new(sink.port));
    let (markers, _) = send_messages(&moat, 20, "race");
    moat.sigkill();
    moat.restart();
    let mails = wait_until("all 20 messages (at least once)", Duration::from_secs(30), || {
        let mails = sink.messages();
        counts(&mails, &markers).values().all(|&c| c >= 1).then_some(mails)
    });
    // A kill between the downstream's 250 and the spool update may legitimately duplicate a
    // message, but only such an in-flight one: never more than the delivery concurrency.
    let extra = mails.len() - markers.len();
    assert!(extra <= 16, "{extra} duplicates after one crash");
}

#[test]
fn sigterm_finishes_the_message_in_flight_then_exits_and_keeps_the_spool() {
    let mut sink = Sink::stopped();
    let mut moat = Moat::start(MoatConfig::new(sink.port));
    let mut smtp = moat.smtp_ehlo();
    assert_eq!(smtp.cmd("MAIL FROM:<sender@remote.example>").code, 250);
    assert_eq!(smtp.cmd("RCPT TO:<user@example.test>").code, 250);
    assert_eq!(smtp.cmd("DATA").code, 354);
    let id = marker("term");
    let message = simple_message(&id);
    smtp.send(&message[..20]);
    moat.sigterm();
    std::thread::sleep(Duration::from_millis(500));
    // New connections are no longer served.
    let refused = match Smtp::try_connect(moat.port) {
        Err(_) => true,
        Ok(mut late) => {
            late.timeout = Duration::from_secs(3);
            match late.try_reply() {
                Ok(reply) => reply.code == 421,
                Err(_) => true,
            }
        }
    };
    assert!(refused, "a connection after SIGTERM must be refused or get 421");
    // The session in progress may finish its message.
    smtp.send(&message[20..]);
    smtp.send(b".\r\n");
    assert_reply(&smtp.reply(), 250, "2.0.0", "the message in flight during SIGTERM");
    let status = moat.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "moat must exit 0 after SIGTERM, got {status}");
    // The spool kept the message (the downstream was down): it goes out after a restart.
    sink.start();
    moat.restart();
    assert_each_exactly_once(&sink, &[id]);
}

#[test]
fn sigterm_tells_idle_sessions_421_4_3_2() {
    let sink = Sink::new();
    let mut moat = Moat::start(MoatConfig::new(sink.port).timeout("shutdown_grace", "2s"));
    let mut idle = moat.smtp_ehlo();
    moat.sigterm();
    idle.timeout = Duration::from_secs(10);
    assert_reply(&idle.reply(), 421, "4.3.2", "idle session at shutdown");
    assert!(idle.closed_within(Duration::from_secs(5)));
    let status = moat.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn sighup_applies_a_good_config_without_dropping_connections() {
    let sink = Sink::new();
    let moat = Moat::start(MoatConfig::new(sink.port));
    let mut before = moat.smtp_ehlo();
    let mut config = moat.config.clone();
    config.hostname = "mx2.example.test".into();
    moat.write_config(&config.render());
    moat.sighup();
    let greeting = wait_until("the new hostname in the greeting", Duration::from_secs(10), || {
        let mut smtp = Smtp::connect(moat.port);
        let reply = smtp.reply();
        reply.lines[0].starts_with("mx2.example.test").then_some(reply)
    });
    assert_eq!(greeting.code, 220);
    assert_reply(&before.cmd("NOOP"), 250, "2.0.0", "a connection opened before SIGHUP");
    let reply = before.send_mail("sender@remote.example", &["user@example.test"], &simple_message("hup"));
    assert_reply(&reply, 250, "2.0.0", "a message on the old connection");
    sink.wait_for(1, DEADLINE);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one() {
    let sink = Sink::new();
    let mut moat = Moat::start(MoatConfig::new(sink.port));
    let good = moat.config.render();
    moat.write_config(&format!("{good}\n[limits]\nmax_recipients = \"many\"\nbogus_key = 1\n"));
    moat.sighup();
    std::thread::sleep(Duration::from_secs(1));
    assert!(moat.running(), "a broken config on SIGHUP must not stop moat; log:\n{}", moat.log());
    let mut smtp = moat.smtp();
    let reply = smtp.cmd("EHLO client.example.org");
    assert_eq!(reply.code, 250);
    let reply = smtp.send_mail("sender@remote.example", &["user@example.test"], &simple_message("broken-hup"));
    assert_reply(&reply, 250, "2.0.0", "still relaying on the old config");
    sink.wait_for(1, DEADLINE);
    let log = moat.log();
    assert!(log.contains("moat.toml:"), "the log should say what is wrong with the new config (file:line):\n{log}");
}

#[test]
fn permanent_downstream_failure_bounces_to_the_sender() {
    // The downstream refuses every message after DATA with a 5xx; bounces go to a capture server.
    let sink = Sink::with_args(&["-f", "."]);
    let bounces = Capture::new();
    let config =
        MoatConfig::new(sink.port).delivery("dsn_route", format!("{{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}", bounces.port));
    let moat = Moat::start(config);
    let mut smtp = moat.smtp_ehlo();
    let reply = smtp.send_mail("sender@remote.example", &["user@example.test"], &simple_message("bounce-me"));
    assert_reply(&reply, 250, "2.0.0", "queued");
    // A bounce of a bounce must never happen: the null sender gets no DSN.
    let reply = smtp.send_mail("", &["user@example.test"], &simple_message("null-sender"));
    assert_reply(&reply, 250, "2.0.0", "queued");
    let dsns = bounces.wait_for(1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let dsns_later = bounces.messages();
    assert_eq!(dsns_later.len(), 1, "exactly one DSN (none for the null sender): {dsns:?}");
    let dsn = &dsns_later[0];
    assert_eq!(dsn.sender, "", "a DSN has the null sender");
    assert_eq!(dsn.recipients, ["sender@remote.example"]);
    let body = text(&dsn.data).to_ascii_lowercase();
    assert!(body.contains("multipart/report") && body.contains("delivery-status"), "RFC 3464 DSN:\n{body}");
    assert!(body.contains("user@example.test"), "the DSN names the failed recipient:\n{body}");
    assert!(body.contains("5.3.0"), "the DSN carries the downstream's reply:\n{body}");
}

#[test]
fn queue_list_remove_and_flush() {
    let mut sink = Sink::stopped();
    let moat = Moat::start(MoatConfig::new(sink.port).delivery("retry_initial", "\"60s\"").delivery("retry_max", "\"60s\""));
    let (markers, ids) = send_messages(&moat, 2, "queue");
    let config = moat.config_path();
    let config = config.to_str().unwrap();
    let out = moat.cli(&["queue", "list", "-c", config]);
    assert!(out.status.success(), "queue list: {}{}", text(&out.stdout), text(&out.stderr));
    let listing = text(&out.stdout);
    for id in &ids {
        assert!(listing.contains(id.as_str()), "queue list should show {id}:\n{listing}");
    }
    assert!(!listing.contains(&markers[0]), "queue list shows no message content");
    let out = moat.cli(&["queue", "remove", &ids[0], "-c", config]);
    assert!(out.status.success(), "queue remove: {}{}", text(&out.stdout), text(&out.stderr));
    let listing = text(&moat.cli(&["queue", "list", "-c", config]).stdout);
    assert!(!listing.contains(ids[0].as_str()) && listing.contains(ids[1].as_str()), "after remove:\n{listing}");
    // The downstream is back; without flush the next retry would be a minute away.
    sink.start();
    let out = moat.cli(&["queue", "flush", "-c", config]);
    assert!(out.status.success(), "queue flush: {}{}", text(&out.stdout), text(&out.stderr));
    assert_each_exactly_once(&sink, &markers[1..]);
}

/// A resolver that never answers (a UDP socket that reads and stays silent), with `[auth]`,
/// reverse DNS and HELO checks on, for a client on a public address (given by a PROXY header,
/// since loopback clients are never looked up): the greeting does not wait for DNS, the connect
/// and HELO lookups overlap (one timeout for both), and the message's SPF, DKIM, ARC and DMARC
/// lookups share one timeout, so a message costs two DNS timeouts in all instead of one per
/// lookup in turn (four here, before; and each lookup took one timeout more than `attempts`
/// said), and is delivered with temperror symbols (`fail_open`).
#[test]
fn a_dead_resolver_costs_one_timeout_per_phase_not_one_per_lookup() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink = Sink::new();
    let moat =
        Moat::start(MoatConfig::new(sink.port).proxy_protocol().auth("enabled", "true").auth("timeout", "\"10s\"").append(&format!(
            "\n[dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\nattempts = 1\n[reputation]\nrdns = true\nhelo_checks = true\n",
            silent.local_addr().unwrap()
        )));
    let started = Instant::now();
    let mut smtp = Smtp::connect(moat.port);
    smtp.timeout = Duration::from_secs(30);
    smtp.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    assert_eq!(smtp.reply().code, 220);
    let greeted = started.elapsed();
    assert!(greeted < Duration::from_millis(1500), "the greeting waited for DNS: {greeted:?}");
    assert_eq!(smtp.cmd("EHLO mail.sender.test").code, 250);
    let helo_done = started.elapsed();
    let message =
        b"From: a@sender.test\r\nTo: user@example.test\r\nSubject: dead resolver\r\nMessage-ID: <dead@sender.test>\r\n\r\nhello\r\n";
    smtp.expect(&[("MAIL FROM:<a@sender.test>", 250), ("RCPT TO:<user@example.test>", 250), ("DATA", 354)]);
    let data_sent = Instant::now();
    smtp.send(message);
    smtp.send(b".\r\n");
    let reply = smtp.reply();
    assert_eq!(reply.code, 250, "{reply}");
    let data_phase = data_sent.elapsed();
    // Connect + HELO: rDNS and the HELO name's lookup, each 2 s, overlap: about 2 s, not 4.
    assert!(helo_done < Duration::from_millis(3500), "connect and HELO lookups in turn: {helo_done:?}");
    // End of data: SPF (MAIL FROM and HELO), DKIM, ARC and the DMARC record at once: about 2 s, not 4.
    assert!(data_phase < Duration::from_millis(3500), "the message's lookups in turn: {data_phase:?}");
    let mails = sink.wait_for(1, DEADLINE);
    let delivered = text(&mails[0].data);
    assert!(delivered.contains("spf=temperror") && delivered.contains("dmarc=temperror"), "{delivered}");
    assert!(helo_done >= Duration::from_millis(1900), "the HELO answer waits for the connect and HELO lookups: {helo_done:?}");
    let log = moat.log();
    assert!(log.contains("RDNS_TEMPERROR"), "the reverse DNS ran (and timed out): {log}");
    drop(silent);
}
