//! Spool tests: durability layout, disk-full handling, recovery.

use super::*;
use std::net::Ipv4Addr;

fn envelope(id: &str) -> Envelope {
    Envelope {
        id: id.to_string(),
        received_at: 1_700_000_000,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: "client.test".into(),
        sender: "s@sender.test".into(),
        recipients: vec!["a@x.test".into(), "b@x.test".into()],
        smtputf8: false,
        body_8bit: false,
        tls: None,
        hold: None,
        staged: None,
    }
}

fn spool() -> (tempfile::TempDir, Spool) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    (dir, spool)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names = list_dir(dir).unwrap();
    names.sort();
    names
}

#[test]
fn ids_are_unique_sortable_and_filename_safe() {
    let ids: Vec<String> = (0..1000).map(|_| Spool::new_id()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len());
    assert!(ids.iter().all(|id| Spool::valid_id(id) && id.len() == 24));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids made in sequence sort in sequence");
    assert!(!Spool::valid_id("../etc/passwd"));
    assert!(!Spool::valid_id(""));
}

#[test]
fn store_publishes_a_record_and_leaves_nothing_in_incoming() {
    let (_dir, spool) = spool();
    let id = Spool::new_id();
    spool.store(&envelope(&id), b"Subject: hi\r\n\r\nbody\r\n").unwrap();
    assert_eq!(names(&spool.queue()), vec![format!("{id}.msg")]);
    assert!(names(&spool.incoming()).is_empty());
    let (env, origin, body) = spool.load(&id).unwrap();
    assert_eq!(env, envelope(&id));
    assert_eq!(origin, Origin::Inbound);
    assert_eq!(body, b"Subject: hi\r\n\r\nbody\r\n");
    let (env, _, size) = spool.load_envelope(&id).unwrap();
    assert_eq!((env.id, size), (id, 21));
}

#[test]
fn disk_full_is_reported_and_leaves_no_partial_file() {
    let (_dir, spool) = spool();
    let id = Spool::new_id();
    // Writing to /dev/full fails with ENOSPC, exactly like a full disk.
    std::os::unix::fs::symlink("/dev/full", spool.incoming().join(format!("{id}.msg.tmp"))).unwrap();
    let error = spool.store(&envelope(&id), b"body\r\n").unwrap_err();
    assert!(matches!(error, SpoolError::DiskFull { .. }), "{error:?}");
    assert!(error.is_temporary());
    assert!(names(&spool.queue()).is_empty());
    assert!(names(&spool.incoming()).is_empty());
}

#[test]
fn store_refuses_unsafe_ids() {
    let (_dir, spool) = spool();
    assert!(matches!(spool.store(&envelope("../x"), b""), Err(SpoolError::InvalidId(_))));
    assert!(matches!(spool.remove("a/b"), Err(SpoolError::InvalidId(_))));
}

#[test]
fn state_defaults_to_all_pending_and_round_trips() {
    let (_dir, spool) = spool();
    let id = Spool::new_id();
    let env = envelope(&id);
    spool.store(&env, b"x\r\n").unwrap();
    let mut state = spool.read_state(&id, &env).unwrap();
    assert_eq!(state.pending(), vec![0, 1]);
    state.record_attempt(
        &[(0, DeliveryOutcome::Delivered(DownstreamReply::new(250, Some([2, 0, 0]), "ok")), Some("mx:25".into()))],
        env.received_at,
        env.received_at + 1,
        &RetryPolicy { initial: 1, max: 10, max_lifetime: 100 },
    );
    spool.write_state(&id, &state).unwrap();
    assert_eq!(spool.read_state(&id, &env).unwrap(), state);
    assert!(names(&spool.incoming()).is_empty());
}

#[test]
fn remove_deletes_both_files() {
    let (_dir, spool) = spool();
    let id = Spool::new_id();
    let env = envelope(&id);
    spool.store(&env, b"x\r\n").unwrap();
    spool.write_state(&id, &DeliveryState::new(&env.recipients)).unwrap();
    assert!(spool.remove(&id).unwrap());
    assert!(names(&spool.queue()).is_empty());
    assert!(!spool.remove(&id).unwrap());
}

#[test]
fn recovery_discards_temporaries_moves_corrupt_aside_and_keeps_states() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let good = Spool::new_id();
    let corrupt = Spool::new_id();
    let orphan = Spool::new_id();
    let env = envelope(&good);
    let mut state = DeliveryState::new(&env.recipients);
    state.record_attempt(
        &[
            (0, DeliveryOutcome::Delivered(DownstreamReply::new(250, None, "ok")), None),
            (1, DeliveryOutcome::Failed(DownstreamReply::new(550, Some([5, 1, 1]), "no such user")), None),
        ],
        env.received_at,
        env.received_at,
        &RetryPolicy { initial: 1, max: 10, max_lifetime: 100 },
    );
    {
        let spool = Spool::open(&root).unwrap();
        spool.store(&env, b"x\r\n").unwrap();
        spool.write_state(&good, &state).unwrap();
        fs::write(spool.incoming().join("leftover.msg.tmp"), b"half a messa").unwrap();
        fs::write(spool.queue().join(format!("{corrupt}.msg")), b"MOATMSG\x01garbage").unwrap();
        fs::write(spool.queue().join(format!("{orphan}.state")), b"{}").unwrap();
    }
    // "Restart": a new handle on the same directory.
    let spool = Spool::open(&root).unwrap();
    let recovery = spool.recover().unwrap();
    assert_eq!(recovery.queued, vec![good.clone()]);
    assert_eq!(recovery.discarded_temporary, 1);
    assert_eq!(recovery.corrupt, vec![corrupt.clone()]);
    assert_eq!(recovery.orphan_states, 1);
    assert!(names(&spool.incoming()).is_empty());
    assert_eq!(names(&root.join("corrupt")), vec![format!("{corrupt}.msg")]);
    let after = spool.read_state(&good, &env).unwrap();
    assert_eq!(after.recipients[0].status, Status::Delivered);
    assert_eq!(after.recipients[1].status, Status::Failed);
    assert!(after.is_final());
}

#[test]
fn a_state_that_does_not_match_the_envelope_is_replaced_by_a_fresh_one() {
    let (_dir, spool) = spool();
    let id = Spool::new_id();
    let env = envelope(&id);
    spool.store(&env, b"x\r\n").unwrap();
    fs::write(spool.state_path(&id), b"not json").unwrap();
    assert_eq!(spool.read_state(&id, &env).unwrap(), DeliveryState::new(&env.recipients));
}
