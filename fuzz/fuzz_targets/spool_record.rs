//! Spool record decoder: any bytes read back from disk.
//! Invariants checked: nothing panics; a record that decodes also decodes from its header
//! alone (as `moat queue list` reads it) to the same envelope and body length, and encoding
//! what was decoded gives a record that decodes to the same envelope, origin and body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::spool::record::{decode_full, decode_header, encode_record, header_extent};

fuzz_target!(|input: &[u8]| {
    let _ = moat::spool::decode_record(input);
    if let Some(extent) = header_extent(input) {
        let _ = decode_header(&input[..extent.min(input.len())]);
    }
    let Ok(decoded) = decode_full(input) else { return };
    let extent = header_extent(input).expect("a decoded record has a header");
    let (envelope, origin, body_len) = decode_header(&input[..extent]).expect("its header decodes alone");
    assert_eq!((&envelope, origin, body_len), (&decoded.envelope, decoded.origin, Some(decoded.body.len() as u64)));
    let again = encode_record(&decoded.envelope, decoded.origin, decoded.body).expect("a decoded envelope encodes");
    let back = decode_full(&again).expect("a re-encoded record decodes");
    assert_eq!(back, decoded);
});
