//! Two moat nodes on one real PostgreSQL, on loopback: a message quarantined through node A is
//! listed and released through node B (exactly once: A's later release is refused), both nodes
//! asked for digests at the same moment send one per user, and PostgreSQL stopped in the middle
//! of the run loses nothing — clean mail keeps flowing, held mail waits in the node's holding
//! spool and reaches the shared quarantine when PostgreSQL is back.

use crate::support::postgres::PgServer;
use crate::support::*;
use std::fs;
use std::time::Duration;

const HOLD_RULE: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\n";

struct Cluster {
    _shared: tempfile::TempDir,
    capture: Capture,
    a: Moat,
    b: Moat,
}

/// Two nodes sharing the database at `url`, the vault key and the link key; each with its own
/// state directory (spool, holding spool), relaying to one capture server.
fn cluster(url: &str) -> Cluster {
    cluster_with(url, &[], "")
}

/// [`cluster`] with more rule directories first and more configuration.
fn cluster_with(url: &str, rule_dirs: &[&std::path::Path], extra: &str) -> Cluster {
    let shared = temp_dir();
    fs::write(shared.path().join("local.cf"), HOLD_RULE).unwrap();
    let capture = Capture::new();
    let first: String = rule_dirs.iter().map(|d| format!("\"{}\", ", d.display())).collect();
    let node = || {
        let web = free_port();
        MoatConfig::new(capture.port).append(&format!(
            "\n[rules]\ndirs = [{first}\"{dir}\"]\n{extra}\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nkey_file = \"{dir}/vault.key\"\n\
             [web]\nlisten = \"127.0.0.1:{web}\"\npublic_url = \"http://127.0.0.1:{web}\"\nkey_file = \"{dir}/links.key\"\n",
            dir = shared.path().display()
        ))
    };
    let a = Moat::start(node());
    let b = Moat::start(node());
    Cluster { _shared: shared, capture, a, b }
}

fn config(moat: &Moat) -> String {
    moat.config_path().to_str().unwrap().to_string()
}

fn held_ids(moat: &Moat, n: usize) -> Vec<String> {
    let ids = wait_until(&format!("{n} item(s) in the shared quarantine"), DEADLINE, || {
        let out = moat.cli(&["quarantine", "list", "--json", "-c", &config(moat)]);
        let ids: Vec<String> = text(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|v| v["state"] == "held")
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        (ids.len() >= n).then_some(ids)
    });
    assert_eq!(ids.len(), n);
    ids
}

fn prize(marker: &str) -> Vec<u8> {
    format!("Subject: prize {marker}\r\n\r\nYou have won {marker}\r\n").into_bytes()
}

#[test]
fn a_message_held_on_one_node_is_released_once_through_the_other_and_digests_go_out_once() {
    let pg = PgServer::shared();
    let url = block_on(pg.create_database());
    let cluster = cluster(&url);
    let (a, b) = (&cluster.a, &cluster.b);

    let reply = a.smtp_ehlo().send_mail("lottery@remote.example", &["alice@example.test"], &prize("a"));
    assert_eq!(reply.code, 250, "{reply}");
    let ids = held_ids(b, 1);
    let released = b.cli(&["quarantine", "release", &ids[0], "-c", &config(b)]);
    assert!(text(&released.stdout).contains("queued as"), "{}{}", text(&released.stdout), text(&released.stderr));
    let mails = cluster.capture.wait_for(1, DEADLINE);
    assert!(text(&mails[0].data).contains("You have won a"), "node B delivered the copy node A held");
    let again = a.cli(&["quarantine", "release", &ids[0], "-c", &config(a)]);
    assert!(!again.status.success() && text(&again.stderr).contains("already released"), "{}", text(&again.stderr));

    for (n, node) in [a, b, a].iter().enumerate() {
        let reply = node.smtp_ehlo().send_mail("lottery@remote.example", &[&format!("user{n}@example.test")], &prize(&format!("d{n}")));
        assert_eq!(reply.code, 250, "{reply}");
    }
    held_ids(a, 3);
    let (ca, cb) = (config(a), config(b));
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(|| a.cli(&["digest", "run", "--now", "-c", &ca]));
        let two = scope.spawn(|| b.cli(&["digest", "run", "--now", "-c", &cb]));
        (one.join().unwrap(), two.join().unwrap())
    });
    let count = |out: &std::process::Output| text(&out.stdout).split_whitespace().next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    let digests = count(&one) + count(&two);
    assert!(digests <= 3, "never more than one digest per user: {}{}", text(&one.stdout), text(&two.stdout));
    cluster.capture.wait_for(1 + digests, DEADLINE);
    std::thread::sleep(Duration::from_millis(500));
    let mails = cluster.capture.messages();
    let mut recipients: Vec<String> = mails.iter().filter(|m| m.sender.is_empty()).flat_map(|m| m.recipients.clone()).collect();
    recipients.sort();
    assert_eq!(recipients, ["user0@example.test", "user1@example.test", "user2@example.test"], "exactly one digest per user");
}

#[test]
fn postgresql_stopped_mid_run_loses_nothing() {
    let mut pg = PgServer::start();
    let url = block_on(pg.create_database());
    let cluster = cluster(&url);
    let a = &cluster.a;
    let reply = a.smtp_ehlo().send_mail("lottery@remote.example", &["bob@example.test"], &prize("before"));
    assert_eq!(reply.code, 250, "{reply}");
    held_ids(a, 1);

    pg.halt();
    let clean = a.smtp_ehlo().send_mail("friend@remote.example", &["bob@example.test"], b"Subject: lunch\r\n\r\nnoon?\r\n");
    assert_eq!(clean.code, 250, "clean mail is accepted without the database: {clean}");
    let held = a.smtp_ehlo().send_mail("lottery@remote.example", &["carol@example.test"], &prize("during"));
    assert_eq!(held.code, 250, "held mail is accepted without the database: {held}");
    let mails = cluster.capture.wait_for(1, DEADLINE);
    assert!(text(&mails[0].data).contains("noon?"), "clean mail is relayed while the database is down");
    let holding = moat::spool::Spool::open(&a.state_dir().join("quarantine")).unwrap();
    assert_eq!(holding.list().unwrap().len(), 1, "the held copy waits in the node's holding spool");

    pg.resume();
    let ids = held_ids(&cluster.b, 2);
    assert_eq!(ids.len(), 2, "the copy held during the outage reached the shared quarantine");
    assert!(holding.list().unwrap().is_empty());
    assert!(a.log().contains("event=\"quarantine_ingest\""), "the outage was logged");
}

#[test]
fn a_node_starts_and_relays_while_postgresql_is_down() {
    let mut pg = PgServer::start();
    let url = block_on(pg.create_database());
    pg.halt();
    let cluster = cluster(&url);
    let a = &cluster.a;
    let clean =
        a.smtp_ehlo().send_mail("friend@remote.example", &["dan@example.test"], b"Subject: hi\r\n\r\nstarted without the database\r\n");
    assert_eq!(clean.code, 250, "{clean}");
    assert!(text(&cluster.capture.wait_for(1, DEADLINE)[0].data).contains("started without the database"));
    let held = a.smtp_ehlo().send_mail("lottery@remote.example", &["dan@example.test"], &prize("offline"));
    assert_eq!(held.code, 250, "{held}");
    pg.resume();
    held_ids(&cluster.b, 1);
}

#[test]
fn one_node_runs_the_scheduled_work_and_another_takes_over_when_it_stops() {
    let pg = PgServer::shared();
    let url = block_on(pg.create_database());
    let mut cluster = cluster(&url);
    let acquired = |node: &Moat| node.log().contains("event=\"scheduler_lease\"") && node.log().contains("outcome=\"acquired\"");
    wait_until("one node holding the scheduler lease", DEADLINE, || (acquired(&cluster.a) || acquired(&cluster.b)).then_some(()));
    std::thread::sleep(Duration::from_secs(11));
    assert!(
        acquired(&cluster.a) ^ acquired(&cluster.b),
        "exactly one node runs digests and retention:\nA:\n{}\nB:\n{}",
        cluster.a.log(),
        cluster.b.log()
    );
    let (holder, other) = if acquired(&cluster.a) { (&mut cluster.a, &cluster.b) } else { (&mut cluster.b, &cluster.a) };
    holder.sigterm();
    holder.wait_exit(DEADLINE);
    wait_until("the other node taking the lease over", DEADLINE, || acquired(other).then_some(()));
}

#[test]
fn two_nodes_share_one_model_and_keep_classifying_while_postgresql_is_down() {
    use crate::classifier_learning::{corpus, ham, spam, verdicts_with};
    let mut pg = PgServer::start();
    let url = block_on(pg.create_database());
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let cluster = cluster_with(&url, &[&shipped], "[classifier]\nmin_learned = 20\nsync = \"1s\"\n");
    let (a, b) = (&cluster.a, &cluster.b);
    let dir = temp_dir();
    let (spam_dir, ham_dir) = (corpus(dir.path(), "spam", 25, spam), corpus(dir.path(), "ham", 25, ham));
    let learned = a.cli(&["learn", "-c", &config(a), "--spam", &spam_dir, "--ham", &ham_dir]);
    assert!(text(&learned.stdout).contains("learned 50"), "{}{}", text(&learned.stdout), text(&learned.stderr));

    wait_until("node B puts the model node A's store learned in force", DEADLINE, || {
        b.log().contains("event=\"classifier_model_loaded\"").then_some(())
    });
    let reply = b.smtp_ehlo().send_mail("lottery@remote.example", &["erin@example.test"], spam(600).as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    assert_eq!(verdicts_with(b, "MOAT_CLASSIFIER_99"), 1, "node B classifies with the shared model: {}", b.log());

    pg.halt();
    let reply = b.smtp_ehlo().send_mail("lottery@remote.example", &["erin@example.test"], spam(601).as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    let reply = b.smtp_ehlo().send_mail("friend@remote.example", &["erin@example.test"], ham(601).as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
    assert_eq!(verdicts_with(b, "MOAT_CLASSIFIER_99"), 2, "spam is still recognised without the database: {}", b.log());
    assert_eq!(verdicts_with(b, "MOAT_CLASSIFIER_00"), 1, "and ham: {}", b.log());
    wait_until("node B notices the store is gone and keeps its model", DEADLINE, || {
        b.log().contains("event=\"classifier_sync\"").then_some(())
    });
    pg.resume();
}
