//! The on-disk message record: `queue/<id>.msg`.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! magic "MOATMSG" | version u8 (=1) | header_len u32 | header JSON | body_len u64 | body bytes
//! ```
//!
//! The header JSON is the [`Envelope`] plus a few record-only fields (the [`Origin`] of the
//! message). The body is the raw message exactly as accepted. Both lengths are checked, so a
//! truncated or padded file is rejected as a whole.
//!
//! Guarantees: [`decode_record`] is pure and never panics, whatever the input (a fuzz target
//! calls it); a record that [`encode_record`] wrote decodes to the same envelope and bytes.

use super::{Envelope, SpoolError};
use serde::{Deserialize, Serialize};

/// Seven bytes that start every record.
pub const MAGIC: &[u8; 7] = b"MOATMSG";
/// The only record version written and read today.
pub const VERSION: u8 = 1;
/// Largest header JSON accepted: an envelope is small; anything bigger is garbage.
pub const MAX_HEADER_LEN: usize = 4 * 1024 * 1024;

const PREFIX_LEN: usize = MAGIC.len() + 1 + 4;

/// Who made a message: a client we accepted it from, or moat itself (a bounce).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Accepted from an SMTP client; routed by recipient domain.
    #[default]
    Inbound,
    /// A delivery status notification moat generated; routed via `delivery.dsn_route`.
    Dsn,
}

#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(flatten)]
    envelope: Envelope,
    #[serde(default)]
    origin: Origin,
}

#[derive(Serialize)]
struct HeaderRef<'a> {
    #[serde(flatten)]
    envelope: &'a Envelope,
    origin: Origin,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<'a> {
    pub envelope: Envelope,
    pub origin: Origin,
    pub body: &'a [u8],
}

/// Serializes a record for `envelope` and `body`.
pub fn encode_record(envelope: &Envelope, origin: Origin, body: &[u8]) -> Result<Vec<u8>, SpoolError> {
    let header = serde_json::to_vec(&HeaderRef { envelope, origin }).map_err(|e| SpoolError::Encode(e.to_string()))?;
    let header_len = u32::try_from(header.len())
        .ok()
        .filter(|len| (*len as usize) <= MAX_HEADER_LEN)
        .ok_or_else(|| SpoolError::Encode("envelope too large".into()))?;
    let mut out = Vec::with_capacity(PREFIX_LEN + header.len() + 8 + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&header_len.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Decodes a whole record into its envelope and message bytes. Never panics.
pub fn decode_record(bytes: &[u8]) -> Result<(Envelope, &[u8]), SpoolError> {
    decode_full(bytes).map(|d| (d.envelope, d.body))
}

/// Decodes a whole record, with its origin.
pub fn decode_full(bytes: &[u8]) -> Result<Decoded<'_>, SpoolError> {
    let (header, rest) = split_header(bytes)?;
    let Some((len_bytes, body)) = rest.split_first_chunk::<8>() else {
        return Err(SpoolError::Corrupt("truncated before the body length".into()));
    };
    let body_len = u64::from_be_bytes(*len_bytes);
    if body.len() as u64 != body_len {
        return Err(SpoolError::Corrupt(format!("body is {} bytes, the record says {body_len}", body.len())));
    }
    Ok(Decoded { envelope: header.envelope, origin: header.origin, body })
}

/// Decodes only the envelope from the start of a record (enough bytes for the header).
/// Used to list the queue without reading every message body.
pub fn decode_header(prefix: &[u8]) -> Result<(Envelope, Origin, Option<u64>), SpoolError> {
    let (header, rest) = split_header(prefix)?;
    let body_len = rest.split_first_chunk::<8>().map(|(len, _)| u64::from_be_bytes(*len));
    Ok((header.envelope, header.origin, body_len))
}

/// How many bytes of a record hold its prefix and header, if the prefix is readable.
pub fn header_extent(prefix: &[u8]) -> Option<usize> {
    let len = prefix.get(MAGIC.len() + 1..PREFIX_LEN)?;
    let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
    Some(PREFIX_LEN + len.min(MAX_HEADER_LEN) + 8)
}

fn split_header(bytes: &[u8]) -> Result<(Header, &[u8]), SpoolError> {
    let Some((magic, rest)) = bytes.split_first_chunk::<7>() else {
        return Err(SpoolError::Corrupt("shorter than the magic".into()));
    };
    if magic != MAGIC {
        return Err(SpoolError::Corrupt("bad magic".into()));
    }
    let Some((version, rest)) = rest.split_first() else {
        return Err(SpoolError::Corrupt("truncated before the version".into()));
    };
    if *version != VERSION {
        return Err(SpoolError::Corrupt(format!("unknown record version {version}")));
    }
    let Some((len_bytes, rest)) = rest.split_first_chunk::<4>() else {
        return Err(SpoolError::Corrupt("truncated before the header length".into()));
    };
    let header_len = u32::from_be_bytes(*len_bytes) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(SpoolError::Corrupt(format!("header length {header_len} is too large")));
    }
    if rest.len() < header_len {
        return Err(SpoolError::Corrupt("truncated inside the header".into()));
    }
    let (json, rest) = rest.split_at(header_len);
    let header: Header = serde_json::from_slice(json).map_err(|e| SpoolError::Corrupt(format!("bad header: {e}")))?;
    Ok((header, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn envelope() -> Envelope {
        Envelope {
            id: "0001".into(),
            received_at: 1_700_000_000,
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            helo: "client.example".into(),
            sender: "a@example.org".into(),
            recipients: vec!["b@example.net".into(), "c@example.net".into()],
            smtputf8: false,
            body_8bit: true,
            tls: Some("TLSv1.3".into()),
            hold: None,
            staged: None,
        }
    }

    #[test]
    fn round_trip_keeps_envelope_origin_and_bytes() {
        let body = b"Subject: x\r\n\r\n.leading dot\r\n\0binary\xff\r\n";
        let record = encode_record(&envelope(), Origin::Dsn, body).unwrap();
        let decoded = decode_full(&record).unwrap();
        assert_eq!(decoded.envelope, envelope());
        assert_eq!(decoded.origin, Origin::Dsn);
        assert_eq!(decoded.body, body);
        let (env, bytes) = decode_record(&record).unwrap();
        assert_eq!(env, envelope());
        assert_eq!(bytes, body);
    }

    #[test]
    fn header_alone_is_enough_to_list() {
        let record = encode_record(&envelope(), Origin::Inbound, b"body\r\n").unwrap();
        let extent = header_extent(&record).unwrap();
        let (env, origin, len) = decode_header(&record[..extent]).unwrap();
        assert_eq!(env, envelope());
        assert_eq!(origin, Origin::Inbound);
        assert_eq!(len, Some(6));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let record = encode_record(&envelope(), Origin::Inbound, b"hello\r\n").unwrap();
        for len in 0..record.len() {
            assert!(decode_record(&record[..len]).is_err(), "truncated at {len} was accepted");
        }
    }

    #[test]
    fn padding_and_garbage_are_rejected() {
        let mut record = encode_record(&envelope(), Origin::Inbound, b"hello\r\n").unwrap();
        record.push(b'x');
        assert!(decode_record(&record).is_err());
        assert!(decode_record(b"").is_err());
        assert!(decode_record(b"MOATMSG\x02\0\0\0\0").is_err());
        assert!(decode_record(b"MOATMSG\x01\xff\xff\xff\xff").is_err());
        assert!(decode_record(b"MOATMSG\x01\0\0\0\x02{}\0\0\0\0\0\0\0\0").is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic stand-in for the fuzz target.
        let record = encode_record(&envelope(), Origin::Inbound, b"hello\r\n").unwrap();
        let mut seed: u32 = 12345;
        for _ in 0..2000 {
            let mut mutated = record.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = (seed as usize >> 8) % mutated.len();
                mutated[at] = (seed >> 16) as u8;
            }
            let _ = decode_record(&mutated);
        }
    }
}
