//! moat's delivery queue run in the test process, for the relay tests that need the spool in
//! their hands: [`Harness`] is the library's [`Queue`] (and quarantine) over a spool in a
//! temporary directory, on a [`config`] with quick retries; [`store`] spools a message as an SMTP
//! session would; [`Counter`] is a loopback TCP forwarder that counts the connections it
//! carries. The downstream is the harness's [`Sink`](super::Sink). Everything here is async:
//! the queue runs on the test's own runtime, so wait with `.await`
//! ([`Sink::wait_for_dumps`](super::Sink::wait_for_dumps)), never with a blocking call.

use arc_swap::ArcSwap;
use moat::config::Config;
use moat::relay::{Queue, QueueHandle};
use moat::spool::{Envelope, Spool};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A loopback TCP forwarder that counts the connections it carries to `target`.
pub struct Counter {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    pub async fn start(target: u16) -> Counter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Counter { port, connections, task }
    }

    pub fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A configuration for tests: tiny retry intervals, short deadlines. `extra` is appended. Its
/// listener address is never bound: only the queue runs, not an SMTP server.
pub fn config(state_dir: &Path, downstream_port: u16, extra: &str) -> Config {
    let domain = if extra.contains("[[domain]]") { "" } else { "[[domain]]\nname = \"good.test\"\n" };
    let extra = format!("{domain}{extra}");
    let text = format!(
        r#"
hostname = "moat.test"
state_dir = "{state}"
[[listen]]
address = "127.0.0.1:2525"
starttls = false
[downstream]
host = "127.0.0.1"
port = {downstream_port}
tls = "opportunistic"
{extra}
"#,
        state = state_dir.display()
    );
    let text = if text.contains("[delivery]") {
        text
    } else {
        text + "[delivery]\nretry_initial = \"1s\"\nretry_max = \"2s\"\nconnect_timeout = \"2s\"\nreply_timeout = \"5s\"\n"
    };
    moat::config::load_str("test.toml", &text, state_dir).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// A running queue over a spool in a temporary directory.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: Arc<ArcSwap<Config>>,
    pub spool: Arc<Spool>,
    pub queue: QueueHandle,
    pub quarantine: Arc<moat::quarantine::Quarantine>,
    pub shutdown: watch::Sender<bool>,
}

impl Harness {
    pub async fn start(dir: tempfile::TempDir, config: Config) -> Harness {
        let spool = Arc::new(Spool::open(&config.spool_dir()).unwrap());
        let config = Arc::new(ArcSwap::from_pointee(config));
        let (shutdown, watch) = watch::channel(false);
        let queue = Queue::start(config.clone(), spool.clone(), watch).await.unwrap();
        let quarantine = Arc::new(moat::quarantine::Quarantine::open(config.clone(), spool.clone()).await.unwrap());
        Harness { dir, config, spool, queue, quarantine, shutdown }
    }

    /// Spools a message the way the SMTP session does, then submits it.
    pub fn send(&self, sender: &str, recipients: &[&str], message: &[u8]) -> String {
        let id = store(&self.spool, sender, recipients, message);
        self.queue.submit(id.clone());
        id
    }

    /// Waits until the queue holds nothing (every message delivered or bounced and removed).
    pub async fn wait_empty(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.spool.list().map(|l| l.is_empty()).unwrap_or(false) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    pub async fn stop(self) -> tempfile::TempDir {
        let _ = self.shutdown.send(true);
        self.queue.stopped().await;
        self.dir
    }
}

/// Stores a message in `spool` as the SMTP session would.
pub fn store(spool: &Spool, sender: &str, recipients: &[&str], message: &[u8]) -> String {
    let id = Spool::new_id();
    let envelope = Envelope {
        id: id.clone(),
        received_at: chrono::Utc::now().timestamp(),
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        helo: "client.example".into(),
        sender: sender.into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        smtputf8: false,
        body_8bit: false,
        tls: None,
        hold: None,
        staged: None,
    };
    spool.store(&envelope, message).unwrap();
    id
}
