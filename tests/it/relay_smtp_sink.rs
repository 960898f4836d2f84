//! The queue delivering into a real Postfix smtp-sink on loopback.

use crate::support::relay::*;
use crate::support::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// A body that a careless relay would alter: leading dots, an embedded end-of-data line,
/// a line that is just "..", trailing spaces.
const TRICKY: &[u8] = b"From: a@sender.test\r\nTo: r@good.test\r\nSubject: dots\r\n\r\n\
.starts with a dot\r\n\
.\r\n\
..\r\n\
middle . line \r\n\
last line\r\n";

#[tokio::test]
async fn delivered_message_is_byte_exact_including_dot_lines() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::new();
    let config = config(&dir.path().join("state"), sink.port, "");
    let harness = Harness::start(dir, config).await;
    harness.send("a@sender.test", &["r@good.test", "s@good.test"], TRICKY);
    assert!(harness.wait_empty(WAIT).await, "message still queued");
    let dumps = sink.wait_for_dumps(1, WAIT).await;
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let dump = &dumps[0];
    assert!(dump.contains("X-Helo-Args: moat.test\n"), "{dump}");
    assert!(dump.contains("X-Mail-Args: <a@sender.test>\n"), "{dump}");
    assert!(dump.contains("X-Rcpt-Args: <r@good.test>\nX-Rcpt-Args: <s@good.test>\n"), "{dump}");
    assert_eq!(text(&parse_sink_dump(dump.as_bytes()).unwrap().data), text(&crlf_to_lf(TRICKY)));
    harness.stop().await;
}

#[tokio::test]
async fn one_recipient_refused_another_delivered_and_the_sender_gets_a_dsn() {
    let dir = tempfile::tempdir().unwrap();
    let good = Sink::new();
    let bad = Sink::with_args(&["-f", "RCPT"]);
    let dsn = Sink::new();
    let extra = format!(
        "[[domain]]\nname = \"good.test\"\n[[domain]]\nname = \"bad.test\"\nroute = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n\
         [delivery]\nretry_initial = \"1s\"\nretry_max = \"2s\"\nconnect_timeout = \"2s\"\nreply_timeout = \"5s\"\n\
         dsn_route = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n",
        bad.port, dsn.port
    );
    let state = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir, config(state.path(), good.port, &extra)).await;
    harness.send("a@sender.test", &["ok@good.test", "nobody@bad.test"], TRICKY);
    assert!(harness.wait_empty(WAIT).await, "message or DSN still queued");

    let delivered = good.wait_for_dumps(1, WAIT).await;
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].contains("X-Rcpt-Args: <ok@good.test>\n"));
    assert!(!delivered[0].contains("nobody@bad.test"));
    assert!(bad.dumps().iter().all(|d| !d.contains("Subject: dots")), "the refused recipient got nothing");

    let bounces = dsn.wait_for_dumps(1, WAIT).await;
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    let bounce = &bounces[0];
    for needle in [
        "X-Mail-Args: <>\n",
        "X-Rcpt-Args: <a@sender.test>\n",
        "From: Mail Delivery System <MAILER-DAEMON@moat.test>\n",
        "report-type=delivery-status",
        "Reporting-MTA: dns; moat.test\n",
        "Final-Recipient: rfc822; nobody@bad.test\nAction: failed\nStatus: 5.3.0\n",
        "Remote-MTA: dns; 127.0.0.1\n",
        "Diagnostic-Code: smtp; 500 5.3.0 Error: command failed\n",
        "Content-Type: text/rfc822-headers\n\nFrom: a@sender.test\nTo: r@good.test\nSubject: dots\n",
    ] {
        assert!(bounce.contains(needle), "missing {needle:?} in\n{bounce}");
    }
    assert!(!bounce.contains("starts with a dot"), "the DSN must not contain the body");
    assert!(!bounce.contains("ok@good.test"), "delivered recipients are not reported");
    harness.stop().await;
}

#[tokio::test]
async fn no_dsn_for_the_null_sender() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Sink::with_args(&["-f", "RCPT"]);
    let dsn = Sink::new();
    let extra = format!(
        "[delivery]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n\
         dsn_route = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n",
        dsn.port
    );
    let state = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir, config(state.path(), bad.port, &extra)).await;
    harness.send("", &["nobody@good.test"], b"Subject: bounce of a bounce\r\n\r\nx\r\n");
    assert!(harness.wait_empty(WAIT).await, "the failed message must leave the queue");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(dsn.dumps().is_empty(), "a DSN was sent to the null sender: {:?}", dsn.dumps());
    harness.stop().await;
}

#[tokio::test]
async fn deferred_while_the_downstream_is_down_then_delivered_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::stopped();
    let port = sink.port;
    let state = tempfile::tempdir().unwrap();
    let config = config(state.path(), port, "");
    let harness = Harness::start(dir, config.clone()).await;
    let id = harness.send("a@sender.test", &["r@good.test"], TRICKY);

    // The first attempt fails to connect: the recipient stays pending with a 4.4.1 reply.
    let deadline = std::time::Instant::now() + WAIT;
    let entry = loop {
        let entries = moat::control::list(&config).unwrap();
        if let Some(entry) = entries.into_iter().find(|e| e.id == id && e.attempts >= 1) {
            break entry;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(entry.recipients[0].status, moat::spool::Status::Pending);
    let reply = entry.recipients[0].reply.clone().unwrap();
    assert_eq!(reply.status(), "4.4.1", "{reply}");

    sink.start();
    assert!(harness.wait_empty(WAIT).await, "not delivered after the downstream came back");
    let dumps = sink.wait_for_dumps(1, WAIT).await;
    assert_eq!(dumps.len(), 1);
    assert_eq!(text(&parse_sink_dump(dumps[0].as_bytes()).unwrap().data), text(&crlf_to_lf(TRICKY)));
    harness.stop().await;
}

#[tokio::test]
async fn consecutive_messages_reuse_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::new();
    let counter = Counter::start(sink.port).await;
    let extra = "[delivery]\nconcurrency = 1\nidle_timeout = \"30s\"\nmax_messages_per_connection = 100\n";
    let state = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir, config(state.path(), counter.port, extra)).await;
    for n in 0..4 {
        harness.send("a@sender.test", &["r@good.test"], format!("Subject: {n}\r\n\r\nbody {n}\r\n").as_bytes());
        // One at a time, so each message finds the previous one's idle connection.
        assert!(harness.wait_empty(WAIT).await);
    }
    let dumps = sink.wait_for_dumps(4, WAIT).await;
    assert_eq!(dumps.len(), 4);
    assert_eq!(counter.count(), 1, "every message should have used the same connection");
    assert_eq!(harness.queue.idle_connections(), 1);
    harness.stop().await;
}

#[tokio::test]
async fn connections_are_not_reused_beyond_max_messages_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::new();
    let counter = Counter::start(sink.port).await;
    let extra = "[delivery]\nconcurrency = 1\nidle_timeout = \"30s\"\nmax_messages_per_connection = 2\n";
    let state = tempfile::tempdir().unwrap();
    let harness = Harness::start(dir, config(state.path(), counter.port, extra)).await;
    for n in 0..4 {
        harness.send("a@sender.test", &["r@good.test"], format!("Subject: {n}\r\n\r\nbody\r\n").as_bytes());
        assert!(harness.wait_empty(WAIT).await);
    }
    assert_eq!(sink.wait_for_dumps(4, WAIT).await.len(), 4);
    assert_eq!(counter.count(), 2);
    harness.stop().await;
}

#[tokio::test]
async fn recipient_probes_report_accept_reject_and_tempfail() {
    use moat::relay::{ProbeAnswer, probe_recipient};
    let dir = tempfile::tempdir().unwrap();
    let ok = Sink::new();
    let hard = Sink::with_args(&["-f", "RCPT"]);
    let soft = Sink::with_args(&["-r", "RCPT"]);
    let config = config(&dir.path().join("state"), ok.port, "");
    let route = |port| moat::config::Route { port, ..config.downstream.clone() };

    let answer = probe_recipient(&route(ok.port), &config, "user@good.test").await.unwrap();
    assert_eq!(answer, ProbeAnswer::Accepted);
    let answer = probe_recipient(&route(hard.port), &config, "user@good.test").await.unwrap();
    assert_eq!(answer, ProbeAnswer::Rejected { code: 500, enhanced: Some([5, 3, 0]), text: "Error: command failed".into() });
    let answer = probe_recipient(&route(soft.port), &config, "user@good.test").await.unwrap();
    assert!(matches!(answer, ProbeAnswer::Temporary { code: 450, .. }), "{answer:?}");
    assert!(ok.dumps().is_empty(), "a probe never sends DATA");

    let down = route(free_port());
    assert!(probe_recipient(&down, &config, "user@good.test").await.is_err());
}

#[tokio::test]
async fn a_message_past_max_lifetime_fails_with_4_4_7_and_bounces() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = Sink::new();
    let extra = format!(
        "[delivery]\nretry_initial = \"1s\"\nretry_max = \"1s\"\nmax_lifetime = \"1s\"\nconnect_timeout = \"2s\"\n\
         dsn_route = {{ host = \"127.0.0.1\", port = {}, tls = \"none\" }}\n",
        dsn.port
    );
    // The downstream never answers: a port nobody listens on.
    let config = config(&dir.path().join("state"), free_port(), &extra);
    let harness = Harness::start(dir, config).await;
    harness.send("a@sender.test", &["r@good.test"], TRICKY);
    assert!(harness.wait_empty(WAIT).await, "expired message and its DSN should leave the queue");
    let bounces = dsn.wait_for_dumps(1, WAIT).await;
    assert_eq!(bounces.len(), 1);
    let bounce = &bounces[0];
    assert!(bounce.contains("Final-Recipient: rfc822; r@good.test\nAction: failed\nStatus: 4.4.7\n"), "{bounce}");
    assert!(bounce.contains("last reply: 451 4.4.1 cannot connect"), "{bounce}");
    harness.stop().await;
}

#[tokio::test]
async fn a_reloaded_configuration_applies_to_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::new();
    let dead = config(&dir.path().join("state"), free_port(), "");
    let live = config(&dir.path().join("state"), sink.port, "");
    let harness = Harness::start(dir, dead).await;
    harness.send("a@sender.test", &["r@good.test"], TRICKY);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.dumps().is_empty());
    // What SIGHUP does: swap in the new configuration.
    harness.config.store(std::sync::Arc::new(live));
    assert!(harness.wait_empty(WAIT).await, "the retry should use the new downstream");
    assert_eq!(sink.wait_for_dumps(1, WAIT).await.len(), 1);
    harness.stop().await;
}
