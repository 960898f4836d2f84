//! The signed-link token verifier (`LinkKey::verify`) with a fixed key. The first input byte
//! picks how the rest is used:
//! - any byte but 1 and 2: the rest is a token as it would arrive in a URL;
//! - 1: the rest builds a `Link` (action, expiry, address and item from the bytes), which is
//!   signed and verified back;
//! - 2: the rest is a payload that gets a valid tag under the key (the one thing a fuzzer
//!   cannot find on its own), so the payload decoder behind the signature check runs too.
//!
//! Invariants checked: nothing panics; whatever verifies, re-signed with the same key, gives a
//! token that verifies to the same link (the address as `sign` writes it: lower-cased); a
//! signed link that fits in a token and whose fields hold no NUL verifies to itself until it
//! expires.
#![no_main]
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use moat::links::{Link, LinkAction, LinkError, LinkKey, MAX_TOKEN};
use sha2::Sha256;

const KEY: [u8; 32] = *b"moat fuzz link key, fixed 32 B!!";
/// The clock for modes 0 and 2: tokens in the seed corpus expire well after it.
const NOW: i64 = 1_800_000_000;

fuzz_target!(|input: &[u8]| {
    let key = LinkKey::from_bytes(KEY);
    let Some((&mode, rest)) = input.split_first() else { return };
    match mode {
        1 => signed_link(&key, rest),
        2 => {
            let token = forge(rest);
            check_verified(&key, &token, NOW);
        }
        _ => check_verified(&key, &String::from_utf8_lossy(rest), NOW),
    }
});

/// Verifies `token`; when it is accepted, the link must survive a sign/verify round trip.
fn check_verified(key: &LinkKey, token: &str, now: i64) {
    let Ok(link) = key.verify(token, now) else { return };
    assert!(link.expires >= now, "{link:?} accepted at {now}");
    let again = key.sign(&link);
    let expected = Link { address: link.address.to_ascii_lowercase(), ..link.clone() };
    assert_eq!(key.verify(&again, now), Ok(expected), "{token:?} re-signed as {again:?}");
}

/// Mode 1: `action expires[8] now[8] address 0xFF item`.
fn signed_link(key: &LinkKey, data: &[u8]) {
    let Some((&action, data)) = data.split_first() else { return };
    let Some((expires, data)) = data.split_first_chunk::<8>() else { return };
    let Some((now, data)) = data.split_first_chunk::<8>() else { return };
    let (address, item) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let action = [LinkAction::Release, LinkAction::ReleaseAllow, LinkAction::View, LinkAction::Unsubscribe][usize::from(action % 4)];
    let link = Link {
        action,
        address: String::from_utf8_lossy(address).into_owned(),
        item: String::from_utf8_lossy(item).into_owned(),
        expires: i64::from_be_bytes(*expires),
    };
    let now = i64::from_be_bytes(*now);
    let token = key.sign(&link);
    let result = key.verify(&token, now);
    if let Ok(verified) = &result {
        assert_eq!(verified, &Link { address: link.address.to_ascii_lowercase(), ..link.clone() });
    }
    if token.len() <= MAX_TOKEN && !link.address.contains('\0') && !link.item.contains('\0') {
        let expected = if link.expires < now {
            Err(LinkError::Expired)
        } else {
            Ok(Link { address: link.address.to_ascii_lowercase(), ..link.clone() })
        };
        assert_eq!(result, expected, "{link:?} as {token:?}");
    }
    check_verified(key, &token, now);
}

/// Mode 2: a token for `payload` with a correct tag (the format `moat::links` documents).
fn forge(payload: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&KEY).expect("any key length");
    mac.update(b"moat-link-v1\0");
    mac.update(payload);
    let tag = mac.finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
}
