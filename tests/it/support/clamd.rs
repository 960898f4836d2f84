//! A real clamd on loopback for tests (Debian `clamav-daemon`), with a private signature
//! database written here, since freshclam cannot download on these machines:
//!
//! * `Test.EICAR.Pattern` (.ndb): the EICAR test file's text, anywhere in a scanned file;
//! * `Moat.Test.Marker` (.ndb): the bytes of [`CUSTOM_MARKER`];
//! * `Moat.Test.Hash` (.hdb): a file whose whole content is [`HASHED_FILE`].
//!
//! clamd reports them with a `.UNOFFICIAL` suffix (e.g. `Test.EICAR.Pattern.UNOFFICIAL`).
//! It listens on a free TCP port on 127.0.0.1 and on a Unix socket in its temp dir, with
//! `StreamMaxLength` [`STREAM_MAX`]. [`Clamd::start`] waits until it answers PING; it is
//! killed on Drop.

use super::{ChildGuard, DEADLINE, free_port, require_program, temp_dir};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// clamd's `StreamMaxLength` in these tests: a larger message is refused by clamd.
pub const STREAM_MAX: &str = "1M";

/// Bytes that the custom `.ndb` signature `Moat.Test.Marker` matches.
pub const CUSTOM_MARKER: &str = "MOAT-CUSTOM-TEST-SIGNATURE-7f3a2c";

/// The whole content of the file that the `.hdb` signature `Moat.Test.Hash` matches.
pub const HASHED_FILE: &str = "moat hash-signature test payload\n";

/// The EICAR anti-virus test file (built from parts, so this source file is not itself one).
pub fn eicar() -> String {
    ["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS-", "TEST-FILE!$H+H*"].concat()
}

/// A running clamd; killed on Drop.
pub struct Clamd {
    pub port: u16,
    pub socket: PathBuf,
    dir: tempfile::TempDir,
    child: ChildGuard,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Clamd {
    /// Writes the database and config, starts clamd and waits until it answers PING.
    pub fn start() -> Clamd {
        let clamd = require_program("clamd");
        let dir = temp_dir();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("db dir");
        let ndb = format!(
            "Test.EICAR.Pattern:0:*:{}\nMoat.Test.Marker:0:*:{}\n",
            hex(b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"),
            hex(CUSTOM_MARKER.as_bytes())
        );
        std::fs::write(db.join("moat-test.ndb"), ndb).expect("write ndb");
        let md5 = super::run_with_deadline(Command::new(require_program("md5sum")).arg(write_temp(&dir, "hashed", HASHED_FILE)), DEADLINE);
        let md5 = String::from_utf8_lossy(&md5.stdout).split_whitespace().next().unwrap_or_default().to_string();
        assert_eq!(md5.len(), 32, "md5sum output");
        std::fs::write(db.join("moat-test.hdb"), format!("{md5}:{}:Moat.Test.Hash\n", HASHED_FILE.len())).expect("write hdb");
        let port = free_port();
        let socket = dir.path().join("clamd.sock");
        let config = format!(
            "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nLocalSocket {}\n\
             StreamMaxLength {STREAM_MAX}\nUser root\nLogFile {}\nLogTime yes\nMaxThreads 4\nSelfCheck 0\n",
            db.display(),
            socket.display(),
            dir.path().join("clamd.log").display()
        );
        let config_path = write_temp(&dir, "clamd.conf", &config);
        let child = Command::new(clamd)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clamd");
        let mut clamd = Clamd { port, socket, dir, child: ChildGuard(Some(child)) };
        clamd.wait_ready();
        clamd
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while !self.pings() {
            if let Some(status) = self.child.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let mut err = String::new();
                if let Some(mut stderr) = self.child.0.as_mut().and_then(|c| c.stderr.take()) {
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("clamd exited with {status}: {err}\nlog:\n{}", self.log());
            }
            assert!(started.elapsed() < DEADLINE, "clamd did not answer PING on port {}; log:\n{}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True when clamd answers `zPING` with PONG.
    pub fn pings(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"zPING\0").is_err() {
            return false;
        }
        let mut reply = [0u8; 16];
        matches!(stream.read(&mut reply), Ok(n) if reply[..n].starts_with(b"PONG"))
    }

    /// clamd's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    /// The `[clamav]` section for moat over TCP, with `extra` keys (TOML lines) appended.
    pub fn tcp_section(&self, extra: &str) -> String {
        format!("\n[clamav]\naddress = \"127.0.0.1:{}\"\n{extra}", self.port)
    }

    /// The `[clamav]` section for moat over the Unix socket.
    pub fn unix_section(&self, extra: &str) -> String {
        format!("\n[clamav]\nsocket = \"{}\"\n{extra}", self.socket.display())
    }

    /// Kills clamd (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts clamd again with the same config (after [`Clamd::kill`]) and waits for PING.
    pub fn restart(&mut self) {
        self.child.kill();
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(require_program("clamd"))
            .arg("-c")
            .arg(self.dir.path().join("clamd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("restart clamd");
        self.child = ChildGuard(Some(child));
        self.wait_ready();
    }
}

fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}
