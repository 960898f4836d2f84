//! The integration-test harness: real peers on loopback, every one of them stopped on Drop.
//!
//! Use it from a test module with `use crate::support::*;`.
//!
//! * [`Moat`] runs the `moat` binary (`moat serve -c <file>`) on a config written from [`MoatConfig`].
//! * [`Sink`] is Postfix's `smtp-sink` dumping every transaction to files ([`Sink::messages`]).
//!   It stores lines with LF endings and drops bare CRs, so compare with [`crlf_to_lf`].
//! * [`Capture`] is a minimal downstream written here that keeps the exact DATA bytes (after
//!   un-dot-stuffing), for byte-for-byte comparisons that smtp-sink cannot make.
//! * [`Postfix`] is a private Postfix instance (`postfix -c <dir>`) delivering every recipient of
//!   its domain into one Maildir ([`Postfix::delivered`]). Needs root. Instances run in parallel.
//! * [`Smtp`] is a raw client: exact bytes out, parsed replies in, TLS via [`Smtp::starttls`];
//!   [`Smtp::expect`] runs a dialogue of commands and the reply codes they must get.
//! * [`swaks`] runs the swaks client with a timeout.
//! * [`browser::Browser`] is headless Chromium driven through ChromeDriver (WebDriver).
//! * [`clamd::Clamd`] is a real clamd with a private signature database; [`dns::DnsZone`] a
//!   dnsmasq serving a test zone; [`postgres::PgServer`] a private PostgreSQL server.
//! * [`quarantine`] opens a running moat's store and quarantine beside it.
//! * [`relay::Harness`] is moat's delivery queue run in the test process over a temporary spool
//!   (for async relay tests); its downstream is a [`Sink`] too.
//!
//! Every wait has a deadline and panics with what it was waiting for; nothing can hang.
//! The external programs come from Debian packages that `scripts/test` installs.

pub mod browser;
pub mod clamd;
pub mod dns;
pub mod postgres;
pub mod quarantine;
pub mod relay;
#[allow(unused_imports)]
pub use quarantine::*;

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The default deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The host name moat is configured with in tests.
pub const MOAT_HOSTNAME: &str = "mx.example.test";

/// The domain moat relays for in tests (recipient check "any").
pub const DOMAIN: &str = "example.test";

/// A second relay domain whose recipients are checked against a static list.
pub const LIST_DOMAIN: &str = "list.example.test";

/// The only valid recipient of [`LIST_DOMAIN`].
pub const LIST_USER: &str = "known@list.example.test";

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// Ports [`free_port`] picks from: below Linux's ephemeral range (32768-60999), from which the
/// kernel gives every outgoing connection its local port. A port the kernel picked for a
/// listener (`bind` to port 0) and the test then released could be taken by some other test's
/// client socket before the server under test bound it (seen in CI: moat exited with "Address
/// already in use"); below that range only another test's explicit bind can take it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A TCP port on 127.0.0.1 that was free a moment ago: drawn at random (another seed in every
/// test process) from [`TEST_PORTS`], each drawn at most once per process, and bound once to
/// check that it is free.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    static STATE: std::sync::LazyLock<std::hash::RandomState> = std::sync::LazyLock::new(std::hash::RandomState::new);
    static DRAWN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    static DRAWS: AtomicUsize = AtomicUsize::new(0);
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..span {
        let draw = STATE.hash_one(DRAWS.fetch_add(1, Ordering::Relaxed));
        let port = TEST_PORTS.start + u16::try_from(draw % span).expect("within the range");
        let mut drawn = DRAWN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if drawn.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        drawn.push(port);
        return port;
    }
    panic!("no free port left in {TEST_PORTS:?}");
}

/// A temporary directory that other users (postfix) can traverse; removed on Drop.
pub fn temp_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("moat-test-").tempdir().expect("create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

/// Polls `probe` every 20 ms until it returns `Some`, or panics after `deadline` naming `what`.
pub fn wait_until<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `future` to completion on a runtime of its own, for blocking tests that call async
/// library code (moat's store, the quarantine).
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// Held by a test while it loads the machine and then judges throughput (`faults_load`'s
/// senders): all tests share one process under `cargo test`, and two such tests at once (both
/// start together, their names being neighbours) would each measure the other. Other tests may
/// run meanwhile, as they did beside them before. Under nextest, where every test has a process
/// of its own, the lock serialises nothing.
pub fn load_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOAD: Mutex<()> = Mutex::new(());
    // A test that panicked while holding it leaves nothing to repair.
    LOAD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Whether the tests run as root (smtp-sink needs `-u root` then; private Postfix needs root).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The path of an external program, or a panic telling how to get it.
pub fn require_program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("`{name}` is not installed: run scripts/test, which installs the Debian packages the tests need");
}

/// Runs a command to completion, killing it after `deadline`. Stdin is closed.
pub fn run_with_deadline(command: &mut Command, deadline: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// Runs swaks with `args` (a `--timeout 15` is added) and returns its output; killed after 30 s.
/// swaks prints the whole conversation on stdout (`<-` lines are the server's replies).
pub fn swaks(args: &[&str]) -> Output {
    let swaks = require_program("swaks");
    run_with_deadline(Command::new(swaks).args(["--timeout", "15"]).args(args), Duration::from_secs(30))
}

/// Replaces every CRLF with LF (smtp-sink and Postfix's Maildir store LF line endings).
pub fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// Splits a message after its first header field (with continuation lines): `(field, rest)`.
/// Works for CRLF and LF line endings.
pub fn split_first_header(data: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    loop {
        match data[pos..].iter().position(|&b| b == b'\n') {
            None => return (data, &[]),
            Some(n) => {
                pos += n + 1;
                if !matches!(data.get(pos), Some(b' ') | Some(b'\t')) {
                    return data.split_at(pos);
                }
            }
        }
    }
}

/// Lossy text for assertions and panic messages.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A process we started; killed (and reaped) on Drop.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(|c| c.id())
    }
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, name: &str) {
    // The shell's built-in kill: /bin/kill (procps) is missing on minimal Debian images.
    let status = Command::new("sh").args(["-c", &format!("kill -{name} {pid}")]).status().expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

// ---------------------------------------------------------------------------------------------
// A message as a downstream received it
// ---------------------------------------------------------------------------------------------

/// One transaction as a downstream stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Reverse path without angle brackets ("" for the null sender).
    pub sender: String,
    /// Forward paths without angle brackets, in RCPT order.
    pub recipients: Vec<String>,
    /// The message. [`Capture`]: exact bytes (CRLF, un-dot-stuffed). [`Sink`]: LF line endings.
    pub data: Vec<u8>,
}

impl Mail {
    /// True if the message contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.data.windows(needle.len().max(1)).any(|w| w == needle.as_bytes())
    }
}

fn angle_address(args: &str) -> String {
    let args = args.trim();
    match (args.find('<'), args.find('>')) {
        (Some(start), Some(end)) if start < end => args[start + 1..end].to_string(),
        _ => args.split_whitespace().next().unwrap_or("").to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// smtp-sink
// ---------------------------------------------------------------------------------------------

/// Postfix's `smtp-sink` on a loopback port, dumping each transaction into its own file.
pub struct Sink {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: ChildGuard,
}

impl Sink {
    /// A sink that accepts everything.
    pub fn new() -> Sink {
        Sink::with_args(&[])
    }

    /// A sink with extra smtp-sink options, e.g. `["-r", "RCPT"]` (4xx for every RCPT),
    /// `["-f", "."]` (5xx after the data), `["-Q", "MAIL"]` (421 and close).
    pub fn with_args(args: &[&str]) -> Sink {
        let mut sink =
            Sink { port: free_port(), dir: temp_dir(), args: args.iter().map(|s| s.to_string()).collect(), child: ChildGuard(None) };
        sink.start();
        sink
    }

    /// A sink port that nothing listens on yet (the "downstream is down" case); [`Sink::start`]
    /// brings it up later on the same port.
    pub fn stopped() -> Sink {
        Sink { port: free_port(), dir: temp_dir(), args: Vec::new(), child: ChildGuard(None) }
    }

    /// (Re)starts smtp-sink on the same port. Messages dumped before are kept.
    pub fn start(&mut self) {
        if self.child.0.is_some() {
            return;
        }
        let program = require_program("smtp-sink");
        let mut command = Command::new(program);
        if is_root() {
            command.args(["-u", "root"]);
        }
        let template = self.dir.path().join("dump").join("m.");
        command
            .args(&self.args)
            .arg("-d")
            .arg(&template)
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("start smtp-sink");
        self.child = ChildGuard(Some(child));
        let port = self.port;
        wait_until(&format!("smtp-sink on port {port}"), DEADLINE, || port_accepts(port).then_some(()));
    }

    /// Restarts smtp-sink on the same port with other options (e.g. `&[]` to stop refusing).
    pub fn restart_with_args(&mut self, args: &[&str]) {
        self.stop();
        self.args = args.iter().map(|s| s.to_string()).collect();
        self.start();
    }

    /// Kills smtp-sink: connections to its port are refused until [`Sink::start`].
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// The dump files so far, oldest first, as smtp-sink wrote them (a transaction still being
    /// written included).
    fn dump_files(&self) -> Vec<Vec<u8>> {
        let dump = self.dir.path().join("dump");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = match fs::read_dir(&dump) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files.iter().filter_map(|(_, path)| fs::read(path).ok()).collect()
    }

    /// Every completed transaction so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        self.dump_files().iter().filter_map(|d| parse_sink_dump(d)).collect()
    }

    /// Every dump file so far as text, oldest first: smtp-sink's `X-Client-Addr`, `X-Helo-Args`,
    /// `X-Mail-Args` and `X-Rcpt-Args` records, its Received header, then the message (LF
    /// endings). For tests that check what a client said (HELO, MAIL and RCPT parameters);
    /// [`parse_sink_dump`] takes one apart.
    pub fn dumps(&self) -> Vec<String> {
        self.dump_files().iter().map(|d| text(d)).collect()
    }

    /// Waits until at least `n` transactions arrived (and the dump files stopped growing).
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Mail> {
        let port = self.port;
        wait_until(&format!("{n} message(s) at smtp-sink port {port}"), deadline, || {
            let first = self.messages();
            if first.len() < n {
                return None;
            }
            thread::sleep(Duration::from_millis(100));
            let second = self.messages();
            (first == second).then_some(second)
        })
    }

    /// [`Sink::wait_for`] for async tests whose code under test runs on the test's own runtime
    /// (a blocking wait would stop it): waits without blocking until at least `n` dump files
    /// exist and stopped growing, and returns them as [`Sink::dumps`] does.
    pub async fn wait_for_dumps(&self, n: usize, deadline: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let first = self.dumps();
            if first.len() >= n {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let second = self.dumps();
                if first == second {
                    return second;
                }
            }
            if start.elapsed() > deadline {
                panic!("timed out after {deadline:?} waiting for {n} message(s) at smtp-sink port {}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Default for Sink {
    fn default() -> Self {
        Sink::new()
    }
}

/// Parses one smtp-sink dump file: X-* records, its three-line Received header, the message,
/// and a final empty line. Returns `None` for a file that is not complete yet.
pub fn parse_sink_dump(dump: &[u8]) -> Option<Mail> {
    let mut sender = None;
    let mut recipients = Vec::new();
    let mut pos = 0;
    // X-Client-Addr, X-Client-Proto, X-Helo-Args, X-Mail-Args, X-Rcpt-Args..., then Received.
    loop {
        let end = pos + dump[pos..].iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&dump[pos..end]).ok()?;
        if let Some(args) = line.strip_prefix("X-Mail-Args: ") {
            sender = Some(angle_address(args));
        } else if let Some(args) = line.strip_prefix("X-Rcpt-Args: ") {
            recipients.push(angle_address(args));
        } else if line.starts_with("Received: ") {
            break;
        } else if !line.starts_with("X-") {
            return None;
        }
        pos = end + 1;
    }
    let (_, rest) = split_first_header(&dump[pos..]);
    // The message is followed by one empty line.
    let data = rest.strip_suffix(b"\n")?.to_vec();
    Some(Mail { sender: sender?, recipients, data })
}

// ---------------------------------------------------------------------------------------------
// Capture: an exact-bytes downstream
// ---------------------------------------------------------------------------------------------

/// A minimal SMTP server that keeps the exact message bytes it receives (DATA un-dot-stuffed).
/// It offers PIPELINING, 8BITMIME, SMTPUTF8 and ENHANCEDSTATUSCODES (no CHUNKING, no STARTTLS).
/// A DATA body ends only at CRLF "." CRLF, so a relay that sends a bare-LF dot line shows up as
/// a message that never ends.
pub struct Capture {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Transactions begun (MAIL commands), for "nothing more was attempted" checks.
    pub transactions: Arc<AtomicUsize>,
}

impl Capture {
    pub fn new() -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind capture server");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let transactions = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (mails, stop, transactions) = (mails.clone(), stop.clone(), transactions.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (mails, transactions) = (mails.clone(), transactions.clone());
                            thread::spawn(move || {
                                let _ = capture_session(stream, &mails, &transactions);
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Capture { port, mails, stop, thread: Some(thread), transactions }
    }

    pub fn messages(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived.
    pub fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Mail> {
        wait_until(&format!("{n} message(s) at the capture server"), deadline, || {
            let mails = self.messages();
            (mails.len() >= n).then_some(mails)
        })
    }
}

impl Default for Capture {
    fn default() -> Self {
        Capture::new()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn capture_session(stream: TcpStream, mails: &Mutex<Vec<Mail>>, transactions: &AtomicUsize) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 capture.test ESMTP\r\n")?;
    let (mut sender, mut recipients) = (None::<String>, Vec::new());
    let mut line = Vec::new();
    let mut count = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = command.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-capture.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n",
            "HELO" | "NOOP" => b"250 2.0.0 Ok\r\n",
            "RSET" => {
                sender = None;
                recipients.clear();
                b"250 2.0.0 Ok\r\n"
            }
            "MAIL" => {
                transactions.fetch_add(1, Ordering::SeqCst);
                sender = Some(angle_address(&command[command.find(':').map_or(4, |i| i + 1)..]));
                recipients.clear();
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" if sender.is_some() => {
                recipients.push(angle_address(&command[command.find(':').map_or(4, |i| i + 1)..]));
                b"250 2.1.5 Ok\r\n"
            }
            "DATA" if !recipients.is_empty() => {
                writer.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let data = read_dot_data(&mut reader)?;
                count += 1;
                mails.lock().unwrap().push(Mail {
                    sender: sender.take().unwrap_or_default(),
                    recipients: std::mem::take(&mut recipients),
                    data,
                });
                writer.write_all(format!("250 2.0.0 Ok: queued as CAP{count}\r\n").as_bytes())?;
                continue;
            }
            "QUIT" => {
                writer.write_all(b"221 2.0.0 Bye\r\n")?;
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            "RCPT" | "DATA" => b"503 5.5.1 Bad sequence of commands\r\n",
            _ => b"500 5.5.2 Unknown command\r\n",
        };
        writer.write_all(reply)?;
    }
}

/// Reads a DATA body up to CRLF.CRLF, removing dot-stuffing; everything else is kept exactly.
fn read_dot_data(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    let mut at_line_start = true; // after CRLF (or at the start)
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF inside DATA"));
        }
        if at_line_start && line == b".\r\n" {
            return Ok(data);
        }
        let body = if at_line_start && line.first() == Some(&b'.') { &line[1..] } else { &line[..] };
        data.extend_from_slice(body);
        at_line_start = line.ends_with(b"\r\n");
    }
}

// ---------------------------------------------------------------------------------------------
// Private Postfix instance
// ---------------------------------------------------------------------------------------------

/// A private Postfix (`postfix -c <dir>`, its own queue, data directory and log file) listening on
/// a loopback port and delivering every recipient of its virtual domain into one Maildir.
/// Several run in parallel; none touches /etc/postfix. Needs root.
pub struct Postfix {
    pub port: u16,
    dir: tempfile::TempDir,
    child: ChildGuard,
}

impl Postfix {
    /// Starts an instance that accepts mail for `domain` (and refuses to relay anything else).
    pub fn start(domain: &str) -> Postfix {
        Postfix::start_with_mailboxes(domain, "static:inbox/")
    }

    /// Starts an instance whose only mailboxes are `users` (full addresses in `domain`); other
    /// recipients of the domain get Postfix's `550 5.1.1 ... User unknown`.
    pub fn start_with_users(domain: &str, users: &[&str]) -> Postfix {
        let entries: Vec<String> = users.iter().map(|u| format!("{u}=inbox/")).collect();
        Postfix::start_with_mailboxes(domain, &format!("inline:{{ {} }}", entries.join(", ")))
    }

    fn start_with_mailboxes(domain: &str, mailbox_map: &str) -> Postfix {
        assert!(is_root(), "the private Postfix instance needs root (run the tests as root or via sudo scripts/test)");
        let postconf = require_program("postconf");
        let postfix = require_program("postfix");
        let dir = temp_dir();
        let base = dir.path();
        let port = free_port();
        let etc = base.join("etc");
        for sub in ["etc", "spool", "data", "mail"] {
            fs::create_dir_all(base.join(sub)).unwrap();
        }
        let chown = Command::new("chown").args(["postfix:postfix"]).arg(base.join("data")).arg(base.join("mail")).status().expect("chown");
        assert!(chown.success(), "chown postfix:postfix failed (is the postfix user there?)");
        let master = ["/etc/postfix/master.cf", "/usr/share/postfix/master.cf.dist"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("no master.cf template: is postfix installed?");
        fs::copy(master, etc.join("master.cf")).unwrap();
        fs::write(etc.join("main.cf"), "").unwrap();
        let id = |flag: &str| {
            let out = run_with_deadline(Command::new("id").args([flag, "postfix"]), Duration::from_secs(5));
            text(&out.stdout).trim().to_string()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let b = base.display();
        let settings = [
            "compatibility_level=3.6".to_string(),
            format!("queue_directory={b}/spool"),
            format!("data_directory={b}/data"),
            "inet_interfaces=loopback-only".into(),
            "inet_protocols=ipv4".into(),
            "myhostname=downstream.test".into(),
            "mydestination=".into(),
            "mynetworks=127.0.0.2/32".into(), // moat (127.0.0.1) is not trusted: no relaying
            "smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination".into(),
            "alias_maps=".into(),
            "alias_database=".into(),
            format!("virtual_mailbox_domains={domain}"),
            format!("virtual_mailbox_base={b}/mail"),
            format!("virtual_mailbox_maps={mailbox_map}"),
            format!("virtual_uid_maps=static:{uid}"),
            format!("virtual_gid_maps=static:{gid}"),
            format!("maillog_file_prefixes={b}"),
            format!("maillog_file={b}/maillog"),
            "smtputf8_enable=yes".into(),
            "message_size_limit=52428800".into(),
            "virtual_mailbox_limit=0".into(),
            // Keep messages as received: no header rewriting or added Date/Message-ID.
            "local_header_rewrite_clients=".into(),
        ];
        let out = run_with_deadline(Command::new(&postconf).arg("-c").arg(&etc).arg("-e").args(&settings), DEADLINE);
        assert!(out.status.success(), "postconf -e failed: {}", text(&out.stderr));
        let out = run_with_deadline(
            Command::new(&postconf).arg("-c").arg(&etc).arg("-M").arg(format!("smtp/inet=127.0.0.1:{port} inet n - n - - smtpd")),
            DEADLINE,
        );
        assert!(out.status.success(), "postconf -M failed: {}", text(&out.stderr));
        let log = fs::File::create(base.join("start-fg.out")).unwrap();
        let child = Command::new(&postfix)
            .arg("-c")
            .arg(&etc)
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postfix");
        let instance = Postfix { port, dir, child: ChildGuard(Some(child)) };
        let start = Instant::now();
        while !port_accepts(port) {
            if start.elapsed() > DEADLINE {
                panic!("private postfix did not listen on {port}: {}\n{}", instance.output(), instance.maillog());
            }
            thread::sleep(Duration::from_millis(50));
        }
        instance
    }

    fn output(&self) -> String {
        fs::read_to_string(self.dir.path().join("start-fg.out")).unwrap_or_default()
    }

    /// Postfix's own log (maillog_file).
    pub fn maillog(&self) -> String {
        fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Raw Maildir files delivered so far (Postfix adds Return-Path, X-Original-To,
    /// Delivered-To and its own Received header; see [`strip_postfix_headers`]). LF line endings.
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = fs::read_dir(self.dir.path().join("mail/inbox").join(sub)) {
                for entry in entries.flatten() {
                    let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                    files.push((modified, entry.path()));
                }
            }
        }
        files.sort();
        files.iter().filter_map(|(_, p)| fs::read(p).ok()).collect()
    }

    /// Waits until at least `n` messages are in the Maildir and Postfix has logged their
    /// delivery (`status=sent`): its delivery agent writes the file first and logs afterwards,
    /// through postlogd, so a test reading [`Postfix::maillog`] right after the file appeared
    /// could miss the line.
    pub fn wait_delivered(&self, n: usize, deadline: Duration) -> Vec<Vec<u8>> {
        let start = Instant::now();
        loop {
            let delivered = self.delivered();
            if delivered.len() >= n && self.maillog().matches("status=sent").count() >= n {
                return delivered;
            }
            if start.elapsed() > deadline {
                panic!("timed out waiting for {n} message(s) in the Postfix Maildir; maillog:\n{}", self.maillog());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Postfix {
    /// Stops the instance (its port then refuses connections); its Maildir stays readable.
    pub fn stop(&mut self) {
        let etc = self.dir.path().join("etc");
        if let Some(postfix) = ["/usr/sbin/postfix", "/usr/bin/postfix"].iter().find(|p| Path::new(p).is_file()) {
            let _ = Command::new(postfix)
                .arg("-c")
                .arg(&etc)
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The start-fg wrapper exits when master does; if it does not, kill master by its pid file.
        let start = Instant::now();
        if let Some(child) = self.child.0.as_mut() {
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let pid_file = fs::read_to_string(self.dir.path().join("spool/pid/master.pid"));
        if let Some(pid) = pid_file.ok().and_then(|p| p.trim().parse::<u32>().ok()) {
            let _ = Command::new("sh").args(["-c", &format!("kill -KILL {pid}")]).status();
        }
        self.child.kill();
    }
}

/// Removes what Postfix's local delivery added in front of a message: Return-Path, X-Original-To,
/// Delivered-To and Postfix's own Received header (the first one, "by downstream.test (Postfix)").
pub fn strip_postfix_headers(mut data: &[u8]) -> &[u8] {
    for name in ["Return-Path:", "X-Original-To:", "Delivered-To:"] {
        while data.starts_with(name.as_bytes()) {
            data = split_first_header(data).1;
        }
    }
    let (first, rest) = split_first_header(data);
    if first.starts_with(b"Received:") && text(first).contains("by downstream.test (Postfix)") {
        data = rest;
    }
    data
}

// ---------------------------------------------------------------------------------------------
// Raw SMTP client
// ---------------------------------------------------------------------------------------------

/// One SMTP reply: its code and the text of each line (without "250-" / "250 ").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code at the start of the last line, e.g. "5.7.1".
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.last()?.split_whitespace().next()?;
        let parts: Vec<&str> = first.split('.').collect();
        (parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))).then_some(first)
    }

    /// True if the code is `code` and the enhanced code is `enhanced`.
    pub fn is(&self, code: u16, enhanced: &str) -> bool {
        self.code == code && self.enhanced() == Some(enhanced)
    }

    /// All lines joined with newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// EHLO keywords (upper-cased first word of each line after the first).
    pub fn keywords(&self) -> Vec<String> {
        self.lines.iter().skip(1).map(|l| l.split_whitespace().next().unwrap_or("").to_ascii_uppercase()).collect()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i + 1 == self.lines.len() { ' ' } else { '-' };
            writeln!(f, "{}{sep}{line}", self.code)?;
        }
        Ok(())
    }
}

/// Asserts that `reply` has `code` and `enhanced` code, showing the reply and `context` otherwise.
#[track_caller]
pub fn assert_reply(reply: &Reply, code: u16, enhanced: &str, context: &str) {
    assert!(reply.is(code, enhanced), "{context}: expected {code} {enhanced}, got:\n{reply}");
}

/// Why no reply could be read (the bytes received so far show in a panic message's `{:?}`).
#[derive(Debug)]
#[allow(dead_code)]
pub enum ReadError {
    /// The server closed the connection (or reset it) before a complete reply.
    Closed(Vec<u8>),
    /// Nothing complete within the deadline.
    Timeout(Vec<u8>),
    /// The server sent something that is not an SMTP reply.
    Garbage(Vec<u8>),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    Gone,
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
            Stream::Gone => unreachable!(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// A raw SMTP conversation: send exact bytes, read parsed replies, each read with a deadline.
pub struct Smtp {
    stream: Stream,
    buf: Vec<u8>,
    /// Deadline for each reply (default [`DEADLINE`]).
    pub timeout: Duration,
    /// Everything received so far, for panic messages.
    transcript: String,
}

impl Smtp {
    /// Connects to 127.0.0.1:`port` without reading anything.
    pub fn connect(port: u16) -> Smtp {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).unwrap();
        Smtp { stream: Stream::Plain(stream), buf: Vec::new(), timeout: DEADLINE, transcript: String::new() }
    }

    /// Connects to 127.0.0.1:`port`, or the error (e.g. connection refused).
    pub fn try_connect(port: u16) -> io::Result<Smtp> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        Ok(Smtp { stream: Stream::Plain(stream), buf: Vec::new(), timeout: DEADLINE, transcript: String::new() })
    }

    /// Connects and reads the greeting, which must be 220.
    pub fn open(port: u16) -> Smtp {
        let mut smtp = Smtp::connect(port);
        let greeting = smtp.reply();
        assert_eq!(greeting.code, 220, "greeting: {greeting}");
        smtp
    }

    /// Connects, checks the greeting and says EHLO; returns the EHLO reply too.
    pub fn open_ehlo(port: u16) -> (Smtp, Reply) {
        let mut smtp = Smtp::open(port);
        let ehlo = smtp.cmd("EHLO client.example.org");
        assert_eq!(ehlo.code, 250, "EHLO: {ehlo}");
        (smtp, ehlo)
    }

    /// Sends exact bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = write!(self.transcript, "C: {}", text(bytes).escape_debug());
        self.transcript.push('\n');
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("send failed: {e}\ntranscript:\n{}", self.transcript));
        self.stream.flush().unwrap();
    }

    /// Sends bytes, ignoring errors (for peers that may already have closed).
    pub fn send_lossy(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).and_then(|_| self.stream.flush()).is_ok()
    }

    /// Sends `line` + CRLF and reads one reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Reads one complete reply or panics with the transcript.
    #[track_caller]
    pub fn reply(&mut self) -> Reply {
        match self.try_reply() {
            Ok(reply) => reply,
            Err(e) => panic!("no SMTP reply: {e:?}\ntranscript:\n{}", self.transcript),
        }
    }

    /// Reads one complete reply within [`Smtp::timeout`].
    pub fn try_reply(&mut self) -> Result<Reply, ReadError> {
        let start = Instant::now();
        loop {
            if let Some(result) = self.parse_reply() {
                if let Ok(reply) = &result {
                    let _ = write!(self.transcript, "S: {reply}");
                }
                return result;
            }
            let left = self.timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(ReadError::Timeout(self.buf.clone()));
            }
            if let Stream::Gone = self.stream {
                return Err(ReadError::Closed(self.buf.clone()));
            }
            self.stream.tcp().set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed(self.buf.clone())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Closed(self.buf.clone())),
            }
        }
    }

    /// A complete reply from the buffer, if there is one.
    fn parse_reply(&mut self) -> Option<Result<Reply, ReadError>> {
        let mut lines = Vec::new();
        let mut code;
        let mut pos = 0;
        loop {
            let end = pos + self.buf[pos..].iter().position(|&b| b == b'\n')?;
            let line = String::from_utf8_lossy(&self.buf[pos..end]).trim_end_matches('\r').to_string();
            pos = end + 1;
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) || !matches!(bytes.get(3), None | Some(b' ') | Some(b'-')) {
                let garbage = self.buf.clone();
                self.buf.clear();
                return Some(Err(ReadError::Garbage(garbage)));
            }
            code = line[..3].parse().unwrap();
            lines.push(line.get(4..).unwrap_or("").to_string());
            if bytes.get(3) != Some(&b'-') {
                break;
            }
        }
        self.buf.drain(..pos);
        Some(Ok(Reply { code, lines }))
    }

    /// True if the server closes the connection within `deadline` (anything it sends before is
    /// discarded). False if it is still open then.
    pub fn closed_within(&mut self, deadline: Duration) -> bool {
        let start = Instant::now();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            if let Stream::Gone = self.stream {
                return true;
            }
            self.stream.tcp().set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                Err(_) => return true,
            }
        }
    }

    /// Bytes received but not yet parsed as a reply.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// What was said so far (for assertion messages).
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// Runs a TLS handshake on the connection (after a 220 to STARTTLS), trusting only `ca_der`
    /// and checking the name `server_name`. Unread plaintext bytes are an error: a server must
    /// not send anything after its 220.
    pub fn starttls(&mut self, ca_der: &[u8], server_name: &str) {
        assert!(self.buf.is_empty(), "plaintext after the STARTTLS reply: {:?}", text(&self.buf));
        let tcp = match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(tcp) => tcp,
            _ => panic!("STARTTLS on a connection that is not plain"),
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(ca_der.to_vec())).expect("add test CA");
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.sock.set_read_timeout(Some(self.timeout)).unwrap();
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                panic!("TLS handshake failed: {e}\ntranscript:\n{}", self.transcript);
            }
        }
        self.transcript.push_str("-- TLS handshake done --\n");
        self.stream = Stream::Tls(Box::new(tls));
    }

    /// The TLS protocol version in use, if any.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.stream {
            Stream::Tls(s) => s.conn.protocol_version(),
            _ => None,
        }
    }

    /// A dialogue: sends each command (CRLF added), one at a time, and checks its reply's code.
    /// Returns the replies.
    ///
    /// ```ignore
    /// smtp.expect(&[("MAIL FROM:<a@remote.example>", 250), ("RCPT TO:<c@elsewhere.test>", 550)]);
    /// ```
    #[track_caller]
    pub fn expect(&mut self, dialogue: &[(&str, u16)]) -> Vec<Reply> {
        let mut replies = Vec::new();
        for &(command, code) in dialogue {
            let reply = self.cmd(command);
            assert_eq!(reply.code, code, "{command}: expected {code}, got:\n{reply}transcript:\n{}", self.transcript);
            replies.push(reply);
        }
        replies
    }

    /// [`Smtp::expect`] that checks each reply's enhanced status code too:
    /// `smtp.expect_enhanced(&[("RCPT TO:<c@elsewhere.test>", 550, "5.7.1")])`.
    #[track_caller]
    pub fn expect_enhanced(&mut self, dialogue: &[(&str, u16, &str)]) -> Vec<Reply> {
        let mut replies = Vec::new();
        for &(command, code, enhanced) in dialogue {
            let reply = self.cmd(command);
            assert!(reply.is(code, enhanced), "{command}: expected {code} {enhanced}, got:\n{reply}transcript:\n{}", self.transcript);
            replies.push(reply);
        }
        replies
    }

    /// Sends a whole transaction (MAIL, RCPTs, DATA, `message` dot-stuffed, ".") one command at a
    /// time, asserting each positive reply; returns the final reply (the caller checks it).
    pub fn send_mail(&mut self, from: &str, to: &[&str], message: &[u8]) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert_eq!(r.code, 250, "MAIL: {r}");
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"));
            assert_eq!(r.code, 250, "RCPT {rcpt}: {r}");
        }
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "DATA: {r}");
        self.send(&dot_stuff(message));
        self.send(b".\r\n");
        self.reply()
    }
}

/// Dot-stuffs a CRLF message for DATA (a "." at the start of a line becomes "..") and makes sure it
/// ends with CRLF, ready for the terminating ".\r\n".
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// TLS test certificate
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for [`MOAT_HOSTNAME`], written as cert.pem and key.pem into `dir`.
/// Returns the certificate in DER for a client to trust.
pub fn write_test_certificate(dir: &Path) -> Vec<u8> {
    let certified = rcgen::generate_simple_self_signed(vec![MOAT_HOSTNAME.to_string()]).expect("generate certificate");
    fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    certified.cert.der().to_vec()
}

// ---------------------------------------------------------------------------------------------
// moat
// ---------------------------------------------------------------------------------------------

/// What the harness writes into moat's config file. Start from [`MoatConfig::new`] and adjust.
#[derive(Debug, Clone)]
pub struct MoatConfig {
    pub hostname: String,
    /// The SMTP listener port (default: a free port).
    pub port: u16,
    /// Offer STARTTLS with a generated certificate.
    pub starttls: bool,
    pub downstream_port: u16,
    /// `[limits]` keys and raw TOML values.
    pub limits: Vec<(String, String)>,
    /// `[timeouts]` keys and raw TOML values.
    pub timeouts: Vec<(String, String)>,
    /// `[delivery]` keys and raw TOML values.
    pub delivery: Vec<(String, String)>,
    /// `[auth]` keys and raw TOML values. Off by default: the harness's moat is the transparent
    /// relay (byte-for-byte plus one Received header); tests of authentication switch it on.
    pub auth: Vec<(String, String)>,
    /// Appended verbatim at the end of the file.
    pub extra: String,
    /// The listener expects a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Environment variables for the moat process (e.g. `MOAT_LOG`).
    pub env: Vec<(String, String)>,
    /// `state_dir` (spool, store, keys): "state" in the test's directory, or an absolute path.
    pub state_dir: String,
}

impl MoatConfig {
    /// Relays [`DOMAIN`] (any recipient) and [`LIST_DOMAIN`] (only [`LIST_USER`]) to
    /// 127.0.0.1:`downstream_port` without TLS; quick retries and a short shutdown grace.
    pub fn new(downstream_port: u16) -> MoatConfig {
        let quoted = |s: &str| format!("\"{s}\"");
        MoatConfig {
            hostname: MOAT_HOSTNAME.to_string(),
            port: free_port(),
            starttls: false,
            downstream_port,
            limits: Vec::new(),
            timeouts: vec![("shutdown_grace".into(), quoted("5s"))],
            delivery: vec![
                ("retry_initial".into(), quoted("1s")),
                ("retry_max".into(), quoted("2s")),
                ("connect_timeout".into(), quoted("2s")),
                ("reply_timeout".into(), quoted("10s")),
                ("idle_timeout".into(), quoted("1s")),
            ],
            auth: vec![("enabled".into(), "false".into())],
            extra: String::new(),
            proxy_protocol: false,
            env: Vec::new(),
            state_dir: "state".into(),
        }
    }

    /// The listener expects a PROXY protocol v1/v2 header before SMTP.
    pub fn proxy_protocol(mut self) -> Self {
        self.proxy_protocol = true;
        self
    }

    /// Appends raw TOML (e.g. another `[[domain]]`).
    pub fn append(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self
    }

    /// Sets a `[limits]` key (value as TOML, e.g. `"3"`).
    pub fn limit(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        set(&mut self.limits, key, value.to_string());
        self
    }

    /// Sets a `[timeouts]` key to a duration string such as "2s".
    pub fn timeout(mut self, key: &str, value: &str) -> Self {
        set(&mut self.timeouts, key, format!("\"{value}\""));
        self
    }

    /// Sets a numeric `[timeouts]` key, e.g. `data_min_rate`.
    pub fn timeout_number(mut self, key: &str, value: u64) -> Self {
        set(&mut self.timeouts, key, value.to_string());
        self
    }

    /// Sets an `[auth]` key (value as TOML), e.g. `.auth("enabled", "true")`.
    pub fn auth(mut self, key: &str, value: &str) -> Self {
        set(&mut self.auth, key, value.to_string());
        self
    }

    /// Sets a `[delivery]` key (value as TOML).
    pub fn delivery(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        set(&mut self.delivery, key, value.to_string());
        self
    }

    pub fn starttls(mut self) -> Self {
        self.starttls = true;
        self
    }

    /// Sets an environment variable for the moat process, e.g. `.env("MOAT_LOG", "trace")`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        set(&mut self.env, key, value.to_string());
        self
    }

    /// The TOML text (paths relative to the config file's directory).
    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "hostname = \"{}\"", self.hostname);
        let _ = writeln!(t, "state_dir = \"{}\"", self.state_dir);
        let _ = writeln!(
            t,
            "\n[[listen]]\naddress = \"127.0.0.1:{}\"\nstarttls = {}\nproxy_protocol = {}",
            self.port, self.starttls, self.proxy_protocol
        );
        if self.starttls {
            let _ = writeln!(t, "\n[tls]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"");
        }
        for (section, keys) in [("limits", &self.limits), ("timeouts", &self.timeouts), ("delivery", &self.delivery), ("auth", &self.auth)]
        {
            if !keys.is_empty() {
                let _ = writeln!(t, "\n[{section}]");
                for (k, v) in keys {
                    let _ = writeln!(t, "{k} = {v}");
                }
            }
        }
        let _ = writeln!(t, "\n[downstream]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"", self.downstream_port);
        let _ = writeln!(t, "\n[[domain]]\nname = \"{DOMAIN}\"\nrecipient_check = \"any\"");
        let _ = writeln!(t, "\n[[domain]]\nname = \"{LIST_DOMAIN}\"\nrecipient_check = \"list\"\nrecipients = [\"{LIST_USER}\"]");
        t.push_str(&self.extra);
        t
    }
}

fn set(list: &mut Vec<(String, String)>, key: &str, value: String) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => list.push((key.to_string(), value)),
    }
}

/// The moat binary under test.
pub fn moat_binary() -> &'static str {
    env!("CARGO_BIN_EXE_moat")
}

/// A running `moat serve`: its config, state and log live in a temp dir. Killed on Drop.
pub struct Moat {
    pub port: u16,
    pub config: MoatConfig,
    dir: tempfile::TempDir,
    child: ChildGuard,
    /// The test certificate (DER) when STARTTLS is on.
    pub certificate: Option<Vec<u8>>,
}

impl Moat {
    /// Writes the config and starts moat; panics (with its log) if it does not accept SMTP
    /// connections within 20 s.
    pub fn start(config: MoatConfig) -> Moat {
        let dir = temp_dir();
        let certificate = config.starttls.then(|| write_test_certificate(dir.path()));
        fs::write(dir.path().join("moat.toml"), config.render()).unwrap();
        let mut moat = Moat { port: config.port, config, dir, child: ChildGuard(None), certificate };
        moat.spawn();
        moat
    }

    /// The config file's path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("moat.toml")
    }

    /// The state directory (spool etc.).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join(&self.config.state_dir)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("moat.log")
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(moat_binary())
            .arg("serve")
            .arg("-c")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env("RUST_BACKTRACE", "1")
            .envs(self.config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the moat binary");
        self.child = ChildGuard(Some(child));
        let start = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.0.as_mut().map(|c| c.try_wait()) {
                self.child.0 = None;
                panic!("moat binary did not start: `moat serve` exited with {status} before listening; log:\n{}", self.log());
            }
            if port_accepts(self.port) {
                self.settle();
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!("moat binary did not start: no SMTP listener on port {} after {DEADLINE:?}; log:\n{}", self.port, self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the first accepted connection: one whole session (greeting, QUIT, close) so that
    /// moat is really serving and the probe no longer counts against connection limits.
    fn settle(&self) {
        if self.config.proxy_protocol {
            return; // no greeting comes without a PROXY header
        }
        let Ok(stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(2)) else {
            return;
        };
        stream.set_nodelay(true).unwrap();
        let mut smtp = Smtp { stream: Stream::Plain(stream), buf: Vec::new(), timeout: Duration::from_secs(5), transcript: String::new() };
        if smtp.try_reply().is_ok() && smtp.send_lossy(b"QUIT\r\n") {
            let _ = smtp.try_reply();
        }
        smtp.closed_within(Duration::from_secs(2));
        thread::sleep(Duration::from_millis(50));
    }

    /// moat's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_memory_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Everything moat wrote to stdout and stderr so far (all runs).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid().expect("moat is not running")
    }

    pub fn sigterm(&self) {
        signal(self.pid(), "TERM");
    }

    pub fn sighup(&self) {
        signal(self.pid(), "HUP");
    }

    /// Kills moat with SIGKILL and reaps it.
    pub fn sigkill(&mut self) {
        self.child.kill();
    }

    /// Waits for moat to exit by itself; panics after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.0.as_mut().expect("moat is not running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for moat") {
                self.child.0 = None;
                return status;
            }
            if start.elapsed() > deadline {
                panic!("moat did not exit within {deadline:?}; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.0.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Starts moat again with the same config file and state directory (after [`Moat::sigkill`]
    /// or an exit). Kills a still-running instance first.
    pub fn restart(&mut self) {
        self.child.kill();
        self.spawn();
    }

    /// Replaces the config file (for SIGHUP tests).
    pub fn write_config(&self, text: &str) {
        fs::write(self.config_path(), text).unwrap();
    }

    /// A raw SMTP connection with the greeting read.
    pub fn smtp(&self) -> Smtp {
        Smtp::open(self.port)
    }

    /// A raw SMTP connection after EHLO.
    pub fn smtp_ehlo(&self) -> Smtp {
        Smtp::open_ehlo(self.port).0
    }

    /// Runs the moat binary with other arguments (e.g. `queue list -c FILE`), with a deadline.
    pub fn cli(&self, args: &[&str]) -> Output {
        run_with_deadline(Command::new(moat_binary()).args(args).current_dir(self.dir.path()), DEADLINE)
    }

    /// Panics if the log contains `needle` (e.g. a subject or body marker).
    #[track_caller]
    pub fn assert_log_lacks(&self, needle: &str) {
        let log = self.log();
        assert!(!log.contains(needle), "moat's log contains {needle:?}:\n{log}");
    }
}

/// Runs the moat binary with `args` (no server), with a deadline.
pub fn moat_cli(args: &[&str], cwd: &Path) -> Output {
    run_with_deadline(Command::new(moat_binary()).args(args).current_dir(cwd), DEADLINE)
}

/// A simple CRLF message with a unique marker in the subject and the body.
pub fn simple_message(marker: &str) -> Vec<u8> {
    format!(
        "From: <sender@remote.example>\r\nTo: <user@{DOMAIN}>\r\nSubject: subject-{marker}\r\nMessage-ID: <{marker}@remote.example>\r\n\r\nbody-{marker}\r\n"
    )
    .into_bytes()
}

/// A per-test unique marker string.
pub fn marker(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{tag}-{}-{}-{nanos:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// Asserts that `got` (as a downstream stored it) is exactly one `Received:` header followed by
/// exactly `sent`. Returns the Received header.
#[track_caller]
pub fn assert_one_received_then(got: &[u8], sent: &[u8]) -> String {
    let (received, rest) = split_first_header(got);
    assert!(received.starts_with(b"Received:"), "the relayed message does not start with a Received header:\n{}", text(got));
    if rest != sent {
        let common = rest.iter().zip(sent).take_while(|(a, b)| a == b).count();
        panic!(
            "the relayed message differs from what the client sent after the Received header, at byte {common} \
             (got {} bytes, sent {} bytes)\ngot from there: {:?}\nsent from there: {:?}",
            rest.len(),
            sent.len(),
            text(&rest[common..rest.len().min(common + 200)]),
            text(&sent[common..sent.len().min(common + 200)]),
        );
    }
    text(received)
}

/// A quarantine digest as the user receives it.
pub struct Digest {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Runs `moat digest run --now` for `user` and returns the digest it sent through moat's relay
/// to `capture`.
pub fn next_digest(moat: &Moat, capture: &Capture, user: &str) -> Digest {
    let before = capture.messages().len();
    let config = moat.config_path().to_str().unwrap().to_string();
    let run = moat.cli(&["digest", "run", "--now", "--user", user, "-c", &config]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let digest = capture.wait_for(before + 1, DEADLINE).remove(before);
    let parsed = mail_parser::MessageParser::default().parse(&digest.data).expect("the digest parses");
    Digest {
        subject: parsed.subject().unwrap_or_default().to_string(),
        text: parsed.body_text(0).expect("a text part").into_owned(),
        html: parsed.body_html(0).expect("an HTML part").into_owned(),
    }
}

/// Sends `to` a prize spam with `subject` (a unique marker tagged `tag` in its body) that the
/// tests' `LOCAL_PRIZE` rule (`/you have won/i`, 12 points) holds; asserts the `250`.
pub fn send_prize_spam(moat: &Moat, to: &str, subject: &str, tag: &str) {
    let message = format!("From: <lottery@remote.example>\r\nSubject: {subject}\r\n\r\nYou have won {}\r\n", marker(tag));
    let reply = moat.smtp_ehlo().send_mail("lottery@remote.example", &[to], message.as_bytes());
    assert_eq!(reply.code, 250, "{reply}");
}
