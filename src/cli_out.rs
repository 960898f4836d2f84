//! The commands' standard output. Every line a command prints goes through [`outln!`] or [`out!`]
//! (never `println!`, which panics with "failed printing to stdout" when the write fails).
//!
//! A reader that went away is the normal end of `moat quarantine list | grep -q …` or
//! `moat rules check | head`: moat stops at once, quietly, with **exit status 0**, as if the rest
//! had been read. Not 141 (128 + SIGPIPE, what a C tool killed by the signal reports): with
//! `set -o pipefail` that would fail a script's pipeline that already has its answer. Any other
//! write error (a full disk, a closed descriptor) is a real failure: one line on standard error
//! and exit status 1. Whatever the command had done before printing (a release, a purge) stays
//! done; only its report is cut short.
//!
//! A module of the binary, like `main`: above every layer of `src/layers.rs`, and imported only
//! by the binary's own modules.

use std::io::{self, Write};

/// Writes `args` to the locked standard output; on a write error ends the process (see above).
pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut stdout = io::stdout().lock();
    let result = stdout.write_fmt(args).and_then(|()| if newline { stdout.write_all(b"\n") } else { Ok(()) });
    drop(stdout);
    if let Err(error) = result {
        exit_on(&error);
    }
}

/// Ends the process after a failed write to standard output: 0 for a reader that went away,
/// 1 with a message for anything else.
fn exit_on(error: &io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe {
        // process::exit flushes what std still buffers for stdout; that write fails too, quietly.
        std::process::exit(0);
    }
    eprintln!("moat: cannot write to standard output: {error}");
    std::process::exit(1);
}

/// `println!` for the commands: through [`write`], so a closed pipe is not a panic.
macro_rules! outln {
    () => {
        $crate::cli_out::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli_out::write(format_args!($($arg)*), true)
    };
}

/// `print!` for the commands: through [`write`], so a closed pipe is not a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli_out::write(format_args!($($arg)*), false)
    };
}

pub(crate) use {out, outln};
