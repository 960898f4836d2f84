//! Helpers for the relay integration tests: a real Postfix smtp-sink on a free loopback port
//! (killed on drop), a connection-counting TCP forwarder, and a running queue over a temporary
//! spool.
#![allow(dead_code)]

use arc_swap::ArcSwap;
use moat::config::Config;
use moat::relay::{Queue, QueueHandle};
use moat::spool::{Envelope, Spool};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

/// A running smtp-sink that dumps every message into its own directory.
pub struct Sink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Sink {
    /// Starts `smtp-sink -u root -d <dir>/%M. [extra] 127.0.0.1:<port> 100` and waits until it
    /// accepts connections.
    pub fn start(port: u16, dir: &Path, extra: &[&str]) -> Sink {
        assert!(Path::new(SMTP_SINK).exists(), "{SMTP_SINK} is missing: install Debian's postfix package");
        std::fs::create_dir_all(dir).unwrap();
        let template = format!("{}/%M.", dir.display());
        let mut args = vec!["-u", "root", "-d", &template];
        args.extend_from_slice(extra);
        let address = format!("127.0.0.1:{port}");
        args.push(&address);
        args.push("100");
        let child = Command::new(SMTP_SINK).args(&args).stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("cannot start smtp-sink");
        let sink = Sink { child, port, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }

    /// The dumped transactions so far (smtp-sink writes LF line ends and un-stuffs dots).
    pub fn dumps(&self) -> Vec<String> {
        let mut names: Vec<_> =
            std::fs::read_dir(&self.dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
        names.sort();
        names.iter().filter_map(|p| std::fs::read(p).ok()).map(|b| String::from_utf8_lossy(&b).into_owned()).collect()
    }

    /// Waits until at least `count` dumps exist.
    pub async fn wait_for_dumps(&self, count: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let dumps = self.dumps();
            if dumps.len() >= count || Instant::now() > deadline {
                return dumps;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The message part of a dump: what follows smtp-sink's own 3-line Received header, without
/// the empty line smtp-sink appends.
pub fn dumped_message(dump: &str) -> &str {
    let received = dump.find("Received: from ").expect("no Received header in dump");
    let mut rest = &dump[received..];
    for _ in 0..3 {
        rest = &rest[rest.find('\n').expect("short Received header") + 1..];
    }
    rest.strip_suffix('\n').unwrap_or(rest)
}

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

/// A configuration for tests: tiny retry intervals, short deadlines. `extra` is appended.
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

/// `text` with CRLF turned into LF (as smtp-sink dumps it).
pub fn lf(text: &[u8]) -> String {
    String::from_utf8_lossy(text).replace("\r\n", "\n")
}
