//! `moat queue` list/flush/remove, and restarts over an existing spool, with a real smtp-sink.

use crate::support::relay::*;
use crate::support::*;
use moat::control::{self, ControlError};
use moat::spool::{DeliveryOutcome, DeliveryState, DownstreamReply, Spool, Status};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);
/// Retries far in the future: only a flush (or a restart) brings a deferred message back.
const SLOW_RETRY: &str = "[delivery]\nretry_initial = \"1h\"\nretry_max = \"2h\"\nconnect_timeout = \"2s\"\nreply_timeout = \"5s\"\n";

async fn wait_attempted(config: &moat::config::Config, id: &str) -> control::QueueEntry {
    let deadline = Instant::now() + WAIT;
    loop {
        let entries = control::list(config).unwrap();
        if let Some(entry) = entries.into_iter().find(|e| e.id == id && e.attempts >= 1) {
            return entry;
        }
        assert!(Instant::now() < deadline, "no attempt recorded for {id}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_socket(config: &moat::config::Config) {
    let deadline = Instant::now() + WAIT;
    while !config.control_socket().exists() {
        assert!(Instant::now() < deadline, "control socket never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn flush_retries_deferred_mail_now_and_remove_drops_it_without_a_bounce() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::stopped();
    let port = sink.port;
    let config = config(&dir.path().join("state"), port, SLOW_RETRY);
    let harness = Harness::start(dir, config.clone()).await;
    let server = tokio::spawn(control::serve(
        harness.config.clone(),
        harness.queue.clone(),
        harness.quarantine.clone(),
        harness.shutdown.subscribe(),
    ));
    wait_socket(&config).await;

    let keep = harness.send("a@sender.test", &["r@good.test"], b"Subject: keep\r\n\r\nx\r\n");
    let drop = harness.send("b@sender.test", &["r@good.test"], b"Subject: drop\r\n\r\ny\r\n");
    let entry = wait_attempted(&config, &keep).await;
    wait_attempted(&config, &drop).await;
    assert_eq!(entry.sender, "a@sender.test");
    assert_eq!(entry.recipients[0].status, Status::Pending);
    assert!(entry.next_attempt > chrono::Utc::now().timestamp() + 1000, "deferred for an hour");

    assert_eq!(control::remove(&config, std::slice::from_ref(&drop)).await.unwrap(), vec![drop.clone()]);
    let listed: Vec<String> = control::list(&config).unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(listed, vec![keep.clone()]);

    sink.start();
    assert_eq!(control::flush(&config).await.unwrap(), 1);
    assert!(harness.wait_empty(WAIT).await, "flush did not deliver");
    let dumps = sink.wait_for_dumps(1, WAIT).await;
    assert_eq!(dumps.len(), 1, "only the kept message, and no DSN for the removed one");
    assert!(dumps[0].contains("Subject: keep"));

    harness.stop().await;
    server.await.unwrap().unwrap();
    assert!(!config.control_socket().exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn without_a_server_remove_works_on_the_files_and_flush_says_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("state"), free_port(), SLOW_RETRY);
    let spool = Spool::open(&config.spool_dir()).unwrap();
    let id = store(&spool, "a@sender.test", &["r@good.test"], b"x\r\n");
    assert_eq!(control::list(&config).unwrap().len(), 1);
    assert!(matches!(control::flush(&config).await, Err(ControlError::NotRunning(_))));
    assert_eq!(control::remove(&config, std::slice::from_ref(&id)).await.unwrap(), vec![id]);
    assert!(control::list(&config).unwrap().is_empty());
    assert!(control::remove(&config, &["../../etc".into()]).await.is_err());
}

#[tokio::test]
async fn a_restart_resumes_the_spool_and_respects_recipients_already_final() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::new();
    let config = config(&dir.path().join("state"), sink.port, "");
    // What a crashed moat left behind: a message with one recipient delivered, one pending,
    // plus a half-written temporary file.
    let spool = Spool::open(&config.spool_dir()).unwrap();
    let id = store(&spool, "a@sender.test", &["done@good.test", "todo@good.test"], b"Subject: resumed\r\n\r\nx\r\n");
    let (envelope, _, _) = spool.load(&id).unwrap();
    let mut state = DeliveryState::new(&envelope.recipients);
    state.record_attempt(
        &[(0, DeliveryOutcome::Delivered(DownstreamReply::new(250, Some([2, 0, 0]), "Ok")), None)],
        envelope.received_at,
        envelope.received_at,
        &moat::relay::queue::retry_policy(&config),
    );
    spool.write_state(&id, &state).unwrap();
    std::fs::write(config.spool_dir().join("incoming/0000.msg.tmp"), b"partial").unwrap();
    drop(spool);

    let harness = Harness::start(dir, config.clone()).await;
    assert!(harness.wait_empty(WAIT).await, "recovered message not delivered");
    let dumps = sink.wait_for_dumps(1, WAIT).await;
    assert_eq!(dumps.len(), 1);
    assert!(dumps[0].contains("X-Rcpt-Args: <todo@good.test>\n"), "{}", dumps[0]);
    assert!(!dumps[0].contains("done@good.test"), "a delivered recipient was sent again");
    assert!(std::fs::read_dir(config.spool_dir().join("incoming")).unwrap().next().is_none());
    harness.stop().await;
}

#[tokio::test]
async fn shutdown_keeps_deferred_mail_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::stopped();
    let port = sink.port;
    let config = config(&dir.path().join("state"), port, "");
    let harness = Harness::start(dir, config.clone()).await;
    let id = harness.send("a@sender.test", &["r@good.test"], b"Subject: later\r\n\r\nx\r\n");
    wait_attempted(&config, &id).await;
    let dir = harness.stop().await;
    assert_eq!(control::list(&config).unwrap().len(), 1, "still spooled after shutdown");

    sink.start();
    let harness = Harness::start(dir, config).await;
    assert!(harness.wait_empty(WAIT).await);
    assert_eq!(sink.wait_for_dumps(1, WAIT).await.len(), 1);
    harness.stop().await;
}
