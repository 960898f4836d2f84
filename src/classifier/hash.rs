//! The seeded 64-bit hash that turns tokens into features.
//!
//! A small multiply-rotate hash (8 bytes per step, a 64-bit finaliser), keyed by the model's
//! seed so that two installations hash the same word differently. It is fast, deterministic on
//! every platform (little-endian reads) and total: any byte string hashes, nothing panics. It is
//! not a cryptographic MAC; its job is spreading tokens over the model's table, and keeping
//! the model free of readable text (the table holds only bucket weights, never a token).

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// The final avalanche (the 64-bit finaliser of MurmurHash3's design, constants of SplitMix64).
#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// Hashes `bytes` under `seed` and a one-byte `tag` naming the token's source (so the same word
/// in the Subject and in the body are different features).
#[inline]
pub fn hash(seed: u64, tag: u8, bytes: &[u8]) -> u64 {
    let mut h = seed ^ (u64::from(tag) << 56) ^ (bytes.len() as u64).wrapping_mul(K2);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ v.wrapping_mul(K1)).rotate_left(29).wrapping_mul(K2);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(buf).wrapping_mul(K1)).rotate_left(29).wrapping_mul(K2);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_tag_and_bytes_all_change_the_hash() {
        let h = hash(1, 1, b"viagra");
        assert_eq!(h, hash(1, 1, b"viagra"));
        assert_ne!(h, hash(2, 1, b"viagra"));
        assert_ne!(h, hash(1, 2, b"viagra"));
        assert_ne!(h, hash(1, 1, b"viagrA"));
        assert_ne!(hash(1, 1, b""), hash(1, 1, b"\0"));
    }
}
