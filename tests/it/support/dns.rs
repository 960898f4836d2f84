//! A real DNS server on loopback for tests: dnsmasq answering authoritatively for the `test.`
//! zone and for reverse lookups, with the records a test adds.
//!
//! hickory answers reverse lookups of 127.0.0.0/8 itself ("localhost."), so a test that needs
//! a client with a PTR record connects through a PROXY-protocol listener and claims an address
//! from TEST-NET (192.0.2.0/24), whose reverse zone this server holds.
//!
//! Names under `test.` that were not added answer NXDOMAIN (dnsmasq's `--local=/test/`), so SPF
//! "none", DNSBL "not listed" and DKIM "no key" are real answers, not timeouts. Nothing is ever
//! forwarded upstream. The server is killed on Drop.
//!
//! ```ignore
//! let dns = DnsZone::new()
//!     .txt("example.test", "v=spf1 ip4:127.0.0.1 -all")
//!     .a("2.0.0.127.zen.test", "127.0.0.2")
//!     .ptr("127.0.0.1", "mail.sender.test")
//!     .start();
//! // moat config: [dns] nameservers = ["127.0.0.1:<dns.port>"]
//! ```

use super::{ChildGuard, DEADLINE, free_port, require_program};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Records to serve; [`DnsZone::start`] starts dnsmasq with them.
#[derive(Default, Clone)]
pub struct DnsZone {
    args: Vec<String>,
}

/// A running dnsmasq; stopped on Drop.
pub struct Dns {
    pub port: u16,
    _child: ChildGuard,
}

impl DnsZone {
    pub fn new() -> DnsZone {
        DnsZone::default()
    }

    /// A TXT record. Long strings (DKIM keys) are split into 255-byte character-strings.
    ///
    /// dnsmasq takes the strings from its argument list verbatim, comma-separated: quotes would
    /// become part of the record, and a comma cannot be escaped, so values may not contain one.
    pub fn txt(mut self, name: &str, value: &str) -> DnsZone {
        assert!(!value.contains(','), "dnsmasq cannot serve a TXT value with a comma: {value:?}");
        let chunks: Vec<String> = value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        self.args.push(format!("--txt-record={name},{}", chunks.join(",")));
        self
    }

    /// Answers (local records and NXDOMAIN) carry a TTL of `seconds` (dnsmasq's default is 0:
    /// nothing would be cached).
    pub fn ttl(mut self, seconds: u32) -> DnsZone {
        self.args.push(format!("--local-ttl={seconds}"));
        self.args.push(format!("--neg-ttl={seconds}"));
        self
    }

    /// An A (or AAAA) record for exactly `name`.
    pub fn a(mut self, name: &str, ip: &str) -> DnsZone {
        self.args.push(format!("--host-record={name},{ip}"));
        self
    }

    /// A PTR record for `ip` (IPv4), e.g. `ptr("127.0.0.1", "mail.sender.test")`.
    pub fn ptr(mut self, ip: &str, name: &str) -> DnsZone {
        let reversed: Vec<&str> = ip.split('.').rev().collect();
        self.args.push(format!("--ptr-record={}.in-addr.arpa,{name}", reversed.join(".")));
        self
    }

    /// An MX record.
    pub fn mx(mut self, domain: &str, host: &str, preference: u16) -> DnsZone {
        self.args.push(format!("--mx-host={domain},{host},{preference}"));
        self
    }

    /// Every name under `domain` answers REFUSED at once (a list that refuses us, a broken
    /// zone): a lookup failure without a timeout.
    pub fn refused(mut self, domain: &str) -> DnsZone {
        self.args.push(format!("--server=/{domain}/#"));
        self
    }

    /// A DKIM (or ARC) public key at `<selector>._domainkey.<domain>`. `k` is "ed25519" (the
    /// raw 32-byte key) or "rsa" (SubjectPublicKeyInfo or RSAPublicKey DER).
    pub fn dkim_key(self, selector: &str, domain: &str, k: &str, public_key: &[u8]) -> DnsZone {
        let name = format!("{selector}._domainkey.{domain}");
        self.txt(&name, &format!("v=DKIM1; k={k}; p={}", base64(public_key)))
    }

    /// Starts dnsmasq on a free UDP/TCP port on 127.0.0.1 and waits until it answers. A port
    /// taken by a parallel test between choosing it and binding it is retried with another.
    pub fn start(self) -> Dns {
        for _ in 0..5 {
            match self.try_start(free_port()) {
                Ok(dns) => return dns,
                Err(err) if err.contains("Address already in use") => continue,
                Err(err) => panic!("{err}"),
            }
        }
        panic!("dnsmasq found no free port in 5 attempts");
    }

    fn try_start(&self, port: u16) -> Result<Dns, String> {
        let dnsmasq = require_program("dnsmasq");
        let child = Command::new(dnsmasq)
            .args([
                "--keep-in-foreground",
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file=",
                "--cache-size=0",
                "--local=/test/",
                // Everything else is local too (NXDOMAIN), so no lookup waits for an upstream.
                "--local=/#/",
                "--local=/in-addr.arpa/",
                "--local=/ip6.arpa/",
                &format!("--port={port}"),
            ])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dnsmasq");
        let mut child = ChildGuard(Some(child));
        let started = Instant::now();
        while !answers(port) {
            if let Some(status) = child.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let mut err = String::new();
                if let Some(mut stderr) = child.0.as_mut().and_then(|c| c.stderr.take()) {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                return Err(format!("dnsmasq exited with {status}: {err}"));
            }
            assert!(started.elapsed() < DEADLINE, "dnsmasq did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Dns { port, _child: child })
    }
}

impl Dns {
    /// The `[dns]` section pointing moat at this server.
    pub fn config_section(&self) -> String {
        format!("[dns]\nnameservers = [\"127.0.0.1:{}\"]\ntimeout = \"2s\"\nattempts = 1\n", self.port)
    }
}

/// Standard base64 with padding (RFC 4648 §4), for key records.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends one query (for `probe.test` A) and reports whether any answer came back.
fn answers(port: u16) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else { return false };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["probe", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    if socket.send_to(&query, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(socket.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[0] == 0x12 && buf[1] == 0x34)
}
