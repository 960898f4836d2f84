//! Spool record decoder: never panics on any bytes read back from disk.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = moat::spool::decode_record(input);
});
