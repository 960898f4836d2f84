//! PROXY protocol v1/v2 parser: never panics, never claims more bytes than it was given.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(Some((_, used))) = moat::smtp::proxy::parse(input) {
        assert!(used <= input.len());
    }
});
