//! The sans-IO path of a session: line framing, command parsing, and DATA/BDAT bodies.
//! Invariants checked: nothing panics; a finished body never holds a bare CR or LF.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::smtp::body::{Body, Framing};
use moat::smtp::command;
use moat::smtp::line::{Line, LineFramer};

fuzz_target!(|input: &[u8]| {
    let mut framer = LineFramer::new(512);
    let mut rest = input;
    while let Some((line, used)) = framer.next(rest) {
        if let Line::Complete(line) = line {
            let _ = command::parse(line);
        }
        rest = &rest[used..];
    }
    for framing in [Framing::Data, Framing::Bdat] {
        let mut body = Body::new(framing, 1 << 16);
        let mut fed = 0;
        for chunk in input.chunks(7) {
            fed += body.feed(chunk);
            if body.is_done() {
                break;
            }
        }
        assert!(fed <= input.len());
        let out = body.finish();
        for (i, &b) in out.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && out[i - 1] == b'\r', "bare LF in output");
            }
            if b == b'\r' {
                assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR in output");
            }
        }
    }
});
