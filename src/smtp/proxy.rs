//! PROXY protocol, receiving side: versions 1 (text) and 2 (binary) of HAProxy's specification.
//!
//! A load balancer in front of moat writes one header at the start of each TCP connection giving the
//! real client's address. [`parse`] looks at the bytes read so far and says one of three things:
//! need more bytes, here is the header and its length, or this is not a valid header (drop the
//! connection). It does no I/O and keeps no state, so the caller re-runs it on the grown buffer.
//!
//! Guarantees:
//! * Never asks for more than [`MAX_HEADER_LEN`] bytes: `Ok(None)` is only returned while
//!   `buf.len() < MAX_HEADER_LEN`, and only while what is there can still become a valid header.
//! * `consumed` covers the header only; the SMTP bytes after it are the caller's.
//! * v1 is strict: single spaces, addresses of the stated family, decimal ports 0-65535 without sign
//!   or leading zeros, CRLF within 107 bytes. `UNKNOWN` yields no addresses, and anything after it
//!   up to the CRLF is ignored, as the spec says.
//! * v2: signature, version 2, command `LOCAL` (no addresses) or `PROXY`; `AF_INET`/`AF_INET6` over
//!   `STREAM` give addresses, `AF_UNIX` and `UNSPEC` give none, datagram transports are refused.
//!   TLVs are skipped, but each must fit exactly in the announced length (an `UNSPEC` body is opaque).
//!   The CRC32C TLV is not verified.
//! * No panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 signature, including its separating space.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 line, CRLF included (spec §2.1).
pub const MAX_V1_LEN: usize = 107;
/// The v2 signature (spec §2.2).
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Fixed part of a v2 header: signature, version/command, family/transport, length.
const V2_FIXED_LEN: usize = 16;
/// Longest header we accept. v2 addresses take at most 216 bytes; the rest is room for TLVs
/// (AWS, GCP and HAProxy's SSL TLVs fit comfortably). A v1 line is always shorter.
pub const MAX_HEADER_LEN: usize = 1024;

/// Address lengths of the v2 families (spec §2.2).
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;
const V2_UNIX_LEN: usize = 216;

/// The endpoints a PROXY header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The real client. `None` for v1 `UNKNOWN`, v2 `LOCAL`, `AF_UNIX` and `UNSPEC`: use the socket's peer.
    pub source: Option<SocketAddr>,
    /// The address the client connected to. `None` in the same cases as `source`.
    pub destination: Option<SocketAddr>,
}

impl ProxyHeader {
    const NONE: ProxyHeader = ProxyHeader { source: None, destination: None };
}

/// Why the start of a connection is not an acceptable PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes start with neither the v1 nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A v1 (text) header that breaks the syntax; the text says where.
    #[error("invalid PROXY v1 header: {0}")]
    InvalidV1(&'static str),
    /// A v2 (binary) header that breaks the format; the text says where.
    #[error("invalid PROXY v2 header: {0}")]
    InvalidV2(&'static str),
    /// The header would be longer than [`MAX_HEADER_LEN`] (or a v1 line longer than 107 bytes).
    #[error("PROXY header too long")]
    TooLong,
}

/// Parses a PROXY header at the start of `buf`.
///
/// `Ok(None)`: need more bytes. `Ok(Some((header, consumed)))`: the first `consumed` bytes were the
/// header. `Err`: not a valid header; drop the connection.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

// ---------------------------------------------------------------- v1 ----

/// The v1 protocol word, which fixes how the addresses must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Tcp4,
    Tcp6,
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(MAX_V1_LEN)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= MAX_V1_LEN {
            return Err(ProxyError::TooLong);
        }
        check_v1_prefix(buf)?;
        return Ok(None);
    };
    if window[cr] == b'\n' {
        return Err(ProxyError::InvalidV1("bare LF"));
    }
    let line = &window[..cr];
    let header = parse_v1_line(line)?;
    match window.get(cr + 1) {
        Some(b'\n') => Ok(Some((header, cr + 2))),
        Some(_) => Err(ProxyError::InvalidV1("CR not followed by LF")),
        None if buf.len() >= MAX_V1_LEN => Err(ProxyError::TooLong),
        None => Ok(None),
    }
}

/// Parses a complete v1 line without its CRLF.
fn parse_v1_line(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let rest = line.strip_prefix(V1_PREFIX).ok_or(ProxyError::NotProxy)?;
    if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
        return Ok(ProxyHeader::NONE);
    }
    let mut fields = rest.split(|&b| b == b' ');
    let mut next = || fields.next().ok_or(ProxyError::InvalidV1("missing field"));
    let family = v1_family(next()?)?;
    let src_ip = v1_ip(family, next()?)?;
    let dst_ip = v1_ip(family, next()?)?;
    let src_port = v1_port(next()?)?;
    let dst_port = v1_port(next()?)?;
    if fields.next().is_some() {
        return Err(ProxyError::InvalidV1("trailing fields"));
    }
    Ok(ProxyHeader { source: Some(SocketAddr::new(src_ip, src_port)), destination: Some(SocketAddr::new(dst_ip, dst_port)) })
}

fn v1_family(word: &[u8]) -> Result<Family, ProxyError> {
    match word {
        b"TCP4" => Ok(Family::Tcp4),
        b"TCP6" => Ok(Family::Tcp6),
        _ => Err(ProxyError::InvalidV1("protocol")),
    }
}

fn v1_ip(family: Family, text: &[u8]) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(text).map_err(|_| ProxyError::InvalidV1("address"))?;
    let ip = match family {
        Family::Tcp4 => text.parse::<Ipv4Addr>().map(IpAddr::V4),
        Family::Tcp6 => text.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    ip.map_err(|_| ProxyError::InvalidV1("address"))
}

/// A decimal port: 1 to 5 digits, no sign, no leading zero (except `0` itself), at most 65535.
fn v1_port(text: &[u8]) -> Result<u16, ProxyError> {
    let well_formed = (1..=5).contains(&text.len()) && text.iter().all(u8::is_ascii_digit) && (text.len() == 1 || text[0] != b'0');
    if !well_formed {
        return Err(ProxyError::InvalidV1("port"));
    }
    let value = text.iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| ProxyError::InvalidV1("port"))
}

/// Checks that an incomplete v1 line (no CR or LF yet) can still become valid: every finished field
/// is valid and the field being typed is a prefix of something valid.
fn check_v1_prefix(partial: &[u8]) -> Result<(), ProxyError> {
    if partial.len() < V1_PREFIX.len() {
        return if V1_PREFIX.starts_with(partial) { Ok(()) } else { Err(ProxyError::NotProxy) };
    }
    let rest = partial.strip_prefix(V1_PREFIX).ok_or(ProxyError::NotProxy)?;
    if rest.starts_with(b"UNKNOWN") {
        return match rest.get(7) {
            None | Some(b' ') => Ok(()),
            Some(_) => Err(ProxyError::InvalidV1("protocol")),
        };
    }
    let fields: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
    let Some((typing, done)) = fields.split_last() else {
        return Ok(());
    };
    check_v1_done_fields(done)?;
    check_v1_typing_field(done, typing)
}

/// Fields followed by a space must be complete and valid, and there are at most five of them.
fn check_v1_done_fields(done: &[&[u8]]) -> Result<(), ProxyError> {
    if done.len() >= 5 {
        return Err(ProxyError::InvalidV1("trailing fields"));
    }
    let Some((word, rest)) = done.split_first() else {
        return Ok(());
    };
    let family = v1_family(word)?;
    for (i, field) in rest.iter().enumerate() {
        if i < 2 {
            v1_ip(family, field)?;
        } else {
            v1_port(field)?;
        }
    }
    Ok(())
}

/// The last, unfinished field must be a prefix of a valid one.
fn check_v1_typing_field(done: &[&[u8]], typing: &[u8]) -> Result<(), ProxyError> {
    let ok = match done.first() {
        None => [&b"TCP4"[..], b"TCP6", b"UNKNOWN"].iter().any(|w| w.starts_with(typing)),
        Some(word) if done.len() < 3 => match v1_family(word)? {
            Family::Tcp4 => typing.len() <= 15 && typing.iter().all(|&b| b.is_ascii_digit() || b == b'.'),
            Family::Tcp6 => typing.len() <= 45 && typing.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
        },
        Some(_) => typing.is_empty() || v1_port(typing).is_ok(),
    };
    if ok { Ok(()) } else { Err(ProxyError::InvalidV1("unexpected byte")) }
}

// ---------------------------------------------------------------- v2 ----

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let sig_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig_len] != V2_SIGNATURE[..sig_len] {
        return Err(ProxyError::NotProxy);
    }
    let command = match buf.get(12) {
        None => return Ok(None),
        Some(&b) => v2_command(b)?,
    };
    let family = buf.get(13).map(|&b| v2_family(b)).transpose()?;
    let (Some(family), Some(&hi), Some(&lo)) = (family, buf.get(14), buf.get(15)) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    let total = V2_FIXED_LEN + len;
    if total > MAX_HEADER_LEN {
        return Err(ProxyError::TooLong);
    }
    let Some(body) = buf.get(V2_FIXED_LEN..total) else {
        check_v2_length(command, family, len)?;
        return Ok(None);
    };
    let header = match command {
        V2Command::Local => ProxyHeader::NONE,
        V2Command::Proxy => v2_proxy_body(family, body)?,
    };
    Ok(Some((header, total)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V2Command {
    Local,
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V2Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

impl V2Family {
    fn address_len(self) -> usize {
        match self {
            V2Family::Unspec => 0,
            V2Family::Inet => V2_INET_LEN,
            V2Family::Inet6 => V2_INET6_LEN,
            V2Family::Unix => V2_UNIX_LEN,
        }
    }
}

/// Byte 13: version 2 in the high nibble, command in the low one.
fn v2_command(byte: u8) -> Result<V2Command, ProxyError> {
    match byte {
        0x20 => Ok(V2Command::Local),
        0x21 => Ok(V2Command::Proxy),
        b if b >> 4 != 2 => Err(ProxyError::InvalidV2("version")),
        _ => Err(ProxyError::InvalidV2("command")),
    }
}

/// Byte 14: address family in the high nibble, transport in the low one. Only stream transports
/// (and the all-zero UNSPEC) make sense in front of SMTP.
fn v2_family(byte: u8) -> Result<V2Family, ProxyError> {
    match byte {
        0x00 => Ok(V2Family::Unspec),
        0x11 => Ok(V2Family::Inet),
        0x21 => Ok(V2Family::Inet6),
        0x31 => Ok(V2Family::Unix),
        0x12 | 0x22 | 0x32 => Err(ProxyError::InvalidV2("datagram transport")),
        _ => Err(ProxyError::InvalidV2("family or transport")),
    }
}

/// The announced length must hold the family's addresses (LOCAL ignores the family).
fn check_v2_length(command: V2Command, family: V2Family, len: usize) -> Result<(), ProxyError> {
    if command == V2Command::Proxy && len < family.address_len() {
        return Err(ProxyError::InvalidV2("length shorter than the addresses"));
    }
    Ok(())
}

/// Reads the addresses of a PROXY command and checks the TLVs after them. An `UNSPEC` body is
/// opaque: the spec tells the receiver to ignore it.
fn v2_proxy_body(family: V2Family, body: &[u8]) -> Result<ProxyHeader, ProxyError> {
    if family == V2Family::Unspec {
        return Ok(ProxyHeader::NONE);
    }
    check_v2_length(V2Command::Proxy, family, body.len())?;
    let (addresses, tlvs) = body.split_at(family.address_len().min(body.len()));
    check_tlvs(tlvs)?;
    Ok(match family {
        V2Family::Inet => v2_inet(addresses),
        V2Family::Inet6 => v2_inet6(addresses),
        V2Family::Unspec | V2Family::Unix => None,
    }
    .unwrap_or(ProxyHeader::NONE))
}

fn v2_inet(a: &[u8]) -> Option<ProxyHeader> {
    let src: [u8; 4] = a.get(0..4)?.try_into().ok()?;
    let dst: [u8; 4] = a.get(4..8)?.try_into().ok()?;
    let (src_port, dst_port) = v2_ports(a.get(8..12)?)?;
    Some(ProxyHeader {
        source: Some(SocketAddr::new(IpAddr::from(src), src_port)),
        destination: Some(SocketAddr::new(IpAddr::from(dst), dst_port)),
    })
}

fn v2_inet6(a: &[u8]) -> Option<ProxyHeader> {
    let src: [u8; 16] = a.get(0..16)?.try_into().ok()?;
    let dst: [u8; 16] = a.get(16..32)?.try_into().ok()?;
    let (src_port, dst_port) = v2_ports(a.get(32..36)?)?;
    Some(ProxyHeader {
        source: Some(SocketAddr::new(IpAddr::from(src), src_port)),
        destination: Some(SocketAddr::new(IpAddr::from(dst), dst_port)),
    })
}

fn v2_ports(p: &[u8]) -> Option<(u16, u16)> {
    match *p {
        [a, b, c, d] => Some((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))),
        _ => None,
    }
}

/// TLVs (type, 2-byte length, value) must tile the rest of the header exactly. Their content is ignored.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_, hi, lo, ..] = *tlvs else {
            return Err(ProxyError::InvalidV2("truncated TLV header"));
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(ProxyError::InvalidV2("TLV longer than the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    fn both(src: &str, dst: &str) -> ProxyHeader {
        ProxyHeader { source: sa(src), destination: sa(dst) }
    }

    /// Every strict prefix of a valid header asks for more bytes.
    fn assert_prefixes_need_more(header: &[u8]) {
        for n in 0..header.len() {
            assert_eq!(parse(&header[..n]), Ok(None), "prefix of {n} bytes");
        }
    }

    // ---- v1 ----

    #[test]
    fn v1_tcp4() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n";
        assert_eq!(parse(h), Ok(Some((both("192.0.2.1:56324", "198.51.100.2:25"), h.len()))));
        assert_prefixes_need_more(h);
    }

    #[test]
    fn v1_tcp6() {
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
        assert_eq!(parse(h), Ok(Some((both("[2001:db8::1]:65535", "[2001:db8::2]:0"), h.len()))));
        assert_prefixes_need_more(h);
        let mapped = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n";
        assert!(matches!(parse(mapped), Ok(Some(_))));
    }

    #[test]
    fn v1_unknown() {
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(h), Ok(Some((ProxyHeader::NONE, h.len()))));
        assert_prefixes_need_more(h);
        let h = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        assert_eq!(parse(h), Ok(Some((ProxyHeader::NONE, h.len()))));
        assert_prefixes_need_more(h);
        assert!(parse(b"PROXY UNKNOWNX\r\n").is_err());
        assert!(parse(b"PROXY UNKNOWNX").is_err());
    }

    #[test]
    fn v1_longest_line_is_accepted() {
        let h = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(h.len(), 104);
        assert!(matches!(parse(h), Ok(Some((_, 104)))));
        assert_prefixes_need_more(h);
        let mut unknown = b"PROXY UNKNOWN ".to_vec();
        unknown.resize(MAX_V1_LEN - 2, b'x');
        unknown.extend_from_slice(b"\r\n");
        assert_eq!(parse(&unknown), Ok(Some((ProxyHeader::NONE, MAX_V1_LEN))));
    }

    #[test]
    fn v1_trailing_smtp_bytes_are_not_consumed() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 1 25\r\n";
        let mut buf = h.to_vec();
        buf.extend_from_slice(b"EHLO client.test\r\n");
        assert!(matches!(parse(&buf), Ok(Some((_, n))) if n == h.len()));
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4  192.0.2.1 198.51.100.2 1 25\r\n"[..],
            b"PROXY  TCP4 192.0.2.1 198.51.100.2 1 25\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 25 \r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 25 7\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
            b"PROXY TCP4 192.0.2.256 198.51.100.2 1 25\r\n",
            b"PROXY TCP4 192.0.2.01 198.51.100.2 1 25\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 25\r\n",
            b"PROXY TCP6 192.0.2.1 2001:db8::2 1 25\r\n",
            b"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 25\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 70000 25\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 25\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 01 25\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 25\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 25\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 25\rX",
            b"PROXY tcp4 192.0.2.1 198.51.100.2 1 25\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 25\r\n",
            b"PROXY\tTCP4 192.0.2.1 198.51.100.2 1 25\r\n",
            b"PROXY \r\n",
            b"PROXY\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn v1_errors_show_up_before_the_line_ends() {
        assert!(parse(b"PROXY TCP4  ").is_err());
        assert!(parse(b"PROXY TCP5").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.x").is_err());
        assert!(parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 70000").is_err());
        assert!(parse(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 ").is_err());
        assert!(parse(b"PROXY TCP4 999.0.2.1 ").is_err());
    }

    #[test]
    fn v1_without_crlf_is_refused_at_107_bytes() {
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(MAX_V1_LEN - 1, b'x');
        assert_eq!(parse(&long), Ok(None));
        long.push(b'x');
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
        // CR as the 107th byte with no room left for its LF.
        long.truncate(MAX_V1_LEN - 1);
        long.push(b'\r');
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
    }

    #[test]
    fn not_proxy_at_all() {
        assert_eq!(parse(b"GET /"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"EHLO x\r\n"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PRX"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIT\r"), Err(ProxyError::NotProxy));
        assert_eq!(parse(b"PRO"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
    }

    // ---- v2 ----

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(ver_cmd);
        h.push(fam);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn inet_body() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 1, 198, 51, 100, 2];
        b.extend_from_slice(&56324u16.to_be_bytes());
        b.extend_from_slice(&25u16.to_be_bytes());
        b
    }

    fn inet6_body() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&[0xdc, 0x04, 0x00, 0x19]);
        b
    }

    #[test]
    fn v2_ipv4() {
        let h = v2(0x21, 0x11, &inet_body());
        assert_eq!(parse(&h), Ok(Some((both("192.0.2.1:56324", "198.51.100.2:25"), 28))));
        assert_prefixes_need_more(&h);
    }

    #[test]
    fn v2_ipv6() {
        let h = v2(0x21, 0x21, &inet6_body());
        assert_eq!(parse(&h), Ok(Some((both("[2001:db8::1]:56324", "[2001:db8::2]:25"), 52))));
        assert_prefixes_need_more(&h);
    }

    #[test]
    fn v2_local_and_unix_and_unspec_give_no_addresses() {
        let local = v2(0x20, 0x00, &[]);
        assert_eq!(parse(&local), Ok(Some((ProxyHeader::NONE, 16))));
        assert_prefixes_need_more(&local);
        // LOCAL ignores whatever family and body it carries.
        let local = v2(0x20, 0x11, &[1, 2, 3]);
        assert_eq!(parse(&local), Ok(Some((ProxyHeader::NONE, 19))));
        let unix = v2(0x21, 0x31, &[0u8; V2_UNIX_LEN]);
        assert_eq!(parse(&unix), Ok(Some((ProxyHeader::NONE, 16 + V2_UNIX_LEN))));
        let unspec = v2(0x21, 0x00, &[]);
        assert_eq!(parse(&unspec), Ok(Some((ProxyHeader::NONE, 16))));
        let unspec = v2(0x21, 0x00, &[9, 9]);
        assert_eq!(parse(&unspec), Ok(Some((ProxyHeader::NONE, 18))));
    }

    #[test]
    fn v2_with_tlvs() {
        let mut body = inet_body();
        body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN
        body.extend_from_slice(&[0x04, 0x00, 0x00]); // NOOP, empty
        body.extend_from_slice(&[0xEA, 0x00, 0x03, 1, 2, 3]); // AWS
        let h = v2(0x21, 0x11, &body);
        assert_eq!(parse(&h), Ok(Some((both("192.0.2.1:56324", "198.51.100.2:25"), h.len()))));
        assert_prefixes_need_more(&h);
    }

    #[test]
    fn v2_bad_tlvs() {
        let mut body = inet_body();
        body.extend_from_slice(&[0x01, 0x00, 0x05, b'h', b'2']);
        assert!(parse(&v2(0x21, 0x11, &body)).is_err());
        let mut body = inet_body();
        body.extend_from_slice(&[0x01, 0x00]);
        assert!(parse(&v2(0x21, 0x11, &body)).is_err());
    }

    #[test]
    fn v2_trailing_smtp_bytes_are_not_consumed() {
        let mut buf = v2(0x21, 0x11, &inet_body());
        buf.extend_from_slice(b"EHLO client.test\r\n");
        assert!(matches!(parse(&buf), Ok(Some((_, 28)))));
    }

    #[test]
    fn v2_truncated_stays_pending_only_while_it_can_complete() {
        let h = v2(0x21, 0x21, &inet6_body());
        assert_eq!(parse(&h[..40]), Ok(None));
        // Length too small for the family: known as soon as the length is there.
        let mut short = v2(0x21, 0x21, &inet_body());
        assert!(parse(&short[..16]).is_err());
        short.truncate(16);
        assert!(parse(&short).is_err());
    }

    #[test]
    fn v2_malformed() {
        assert_eq!(parse(&v2(0x11, 0x11, &inet_body())), Err(ProxyError::InvalidV2("version")));
        assert_eq!(parse(&v2(0x22, 0x11, &inet_body())), Err(ProxyError::InvalidV2("command")));
        assert!(parse(&v2(0x21, 0x12, &inet_body())).is_err());
        assert!(parse(&v2(0x21, 0x10, &inet_body())).is_err());
        assert!(parse(&v2(0x21, 0x41, &inet_body())).is_err());
        assert!(parse(&v2(0x21, 0x11, &inet_body()[..11])).is_err());
        // Errors in the fixed part show before the body arrives.
        assert!(parse(&v2(0x21, 0x12, &[])[..14]).is_err());
        assert!(parse(&v2(0x31, 0x11, &[])[..13]).is_err());
    }

    #[test]
    fn v2_bogus_signature() {
        let mut h = v2(0x21, 0x11, &inet_body());
        h[11] = b'X';
        assert_eq!(parse(&h), Err(ProxyError::NotProxy));
        assert_eq!(parse(&h[..12]), Err(ProxyError::NotProxy));
    }

    #[test]
    fn v2_length_is_bounded() {
        let mut h = v2(0x21, 0x11, &[]);
        let len = u16::try_from(MAX_HEADER_LEN - 16 + 1).unwrap_or(u16::MAX);
        h[14..16].copy_from_slice(&len.to_be_bytes());
        assert_eq!(parse(&h), Err(ProxyError::TooLong));
        h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&h), Err(ProxyError::TooLong));
        let mut body = inet_body();
        body.extend_from_slice(&[0xE0, 0x03, 0xE1]);
        body.resize(MAX_HEADER_LEN - 16, 0);
        let h = v2(0x21, 0x11, &body);
        assert!(matches!(parse(&h), Ok(Some((_, MAX_HEADER_LEN)))));
    }

    #[test]
    fn never_panics_on_mutations() {
        let seeds = [
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO".to_vec(),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n".to_vec(),
            v2(0x21, 0x11, &inet_body()),
            v2(0x21, 0x21, &inet6_body()),
        ];
        for seed in &seeds {
            for i in 0..seed.len() {
                for b in [0u8, b' ', b'\r', b'\n', b'0', b'9', b':', 0xff, 0x21, 0x11] {
                    let mut m = seed.clone();
                    m[i] = b;
                    for n in 0..=m.len() {
                        if let Ok(Some((_, used))) = parse(&m[..n]) {
                            assert!(used <= n);
                        }
                        if parse(&m[..n]) == Ok(None) {
                            assert!(n < MAX_HEADER_LEN);
                        }
                    }
                }
            }
        }
    }
}
