//! A private PostgreSQL server for tests: `initdb` into a temporary directory as the `postgres`
//! user, then `postgres` itself (no pg_ctl, no wrapper) on a free loopback port with its socket
//! in the temporary directory. Stopped (SIGQUIT, then SIGKILL) and removed on Drop.
//!
//! Tests run as root and PostgreSQL refuses to run as root, so both programs are started with
//! the uid and gid of the `postgres` system user (Debian's `postgresql` package creates it and
//! puts the binaries under `/usr/lib/postgresql/<version>/bin`).
//!
//! [`PgServer::shared`] hands every test of a process the same server while any test holds it,
//! and each test makes its own database ([`PgServer::create_database`]), so tests stay
//! independent and the server is still stopped when the last holder drops it.
//!
//! ```ignore
//! let pg = PgServer::shared();
//! let url = pg.create_database().await; // "host=127.0.0.1 port=… user=postgres dbname=…"
//! ```

use super::{DEADLINE, free_port};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A running PostgreSQL server owned by the test process.
pub struct PgServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The newest installed PostgreSQL's bin directory.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql missing): run scripts/test, which installs it")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
        .collect();
    dirs.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0));
    dirs.pop().expect("no /usr/lib/postgresql/<version>/bin with initdb and postgres")
}

/// uid and gid of the `postgres` user.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd.lines().find(|l| l.starts_with("postgres:")).expect("no `postgres` user: install the postgresql package");
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().expect("uid"), fields[3].parse().expect("gid"))
}

fn as_postgres(program: &Path, uid: u32, gid: u32) -> Command {
    let mut command = Command::new(program);
    command.uid(uid).gid(gid).env("LC_ALL", "C").env_remove("PGDATA");
    command
}

static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl PgServer {
    /// Starts a new server (about a second: initdb without fsync, then start-up).
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let (uid, gid) = postgres_ids();
        let dir = tempfile::Builder::new().prefix("moat-pg-").tempdir().expect("temp dir");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the temp dir to postgres");
        let data = dir.path().join("data");
        let output = as_postgres(&bin.join("initdb"), uid, gid)
            .args(["-D"])
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        std::os::unix::fs::chown(dir.path().join("postgres.log"), Some(uid), Some(gid)).expect("chown log");
        drop(log);
        let mut server = PgServer { port: free_port(), child: None, dir };
        server.resume();
        server
    }

    /// (Re)starts the server process on its data directory and port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        let bin = bin_dir();
        let (uid, gid) = postgres_ids();
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.path().join("postgres.log")).expect("log file");
        let child = as_postgres(&bin.join("postgres"), uid, gid)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "synchronous_commit=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        self.wait_ready(&bin);
    }

    /// Stops the server process (fast shutdown: clients are disconnected), keeping its data.
    pub fn halt(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we own and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// The server every test of this process shares while at least one holds it.
    pub fn shared() -> Arc<PgServer> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = shared.upgrade() {
            return server;
        }
        let server = Arc::new(PgServer::start());
        *shared = Arc::downgrade(&server);
        server
    }

    fn wait_ready(&mut self, bin: &Path) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("postgres exited ({status}) before it was ready:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "postgres not ready on port {} within {DEADLINE:?}:\n{}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A connection string for database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={name}", self.port)
    }

    /// Creates a fresh, empty database and returns its connection string.
    pub async fn create_database(&self) -> String {
        let name = format!("moat_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        let (client, connection) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the test server: {e}\n{}", self.log()));
        let task = tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        drop(client);
        let _ = task.await;
        self.url(&name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: immediate shutdown (the data is thrown away anyway).
            // SAFETY: kill(2) on the pid of a child we own and have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
