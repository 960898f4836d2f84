//! Reading stored mail for `moat learn`: a message file, a directory of message files (walked
//! recursively, like a maildir's `cur/` and `new/`) or an mbox file, one message at a time.
//!
//! Guarantees: messages are read one by one (never a whole mbox in memory); a message larger
//! than [`MAX_MESSAGE`] or a file that does not look like mail (no header field on its first
//! line: a JSON or index file beside the messages) is reported as unreadable and skipped, never
//! guessed at; hidden files and maildir's `tmp/` are passed over; the walk is in name order, so
//! two runs see the same order. mbox `From ` separators are recognised only at the start of a
//! line after an empty line (or the file's start), and `>From ` quoting is undone.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The largest message read; larger ones are skipped as unreadable.
pub const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// One message read, or why one could not be.
#[derive(Debug)]
pub enum Item {
    Message { origin: String, bytes: Vec<u8> },
    Unreadable { origin: String, reason: String },
}

/// Calls `visit` with every message under `path` (a file, an mbox or a directory), in order.
pub fn read(path: &Path, visit: &mut dyn FnMut(Item)) -> io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        for file in files_under(path)? {
            read_file(&file, visit);
        }
    } else {
        read_file(path, visit);
    }
    Ok(())
}

/// Regular files under `dir`, recursively, in name order; hidden entries and `tmp/` left out.
fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || name == "tmp" {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&entry) else { continue };
        if meta.is_dir() {
            files.extend(files_under(&entry)?);
        } else if meta.is_file() || (meta.file_type().is_symlink() && std::fs::metadata(&entry).is_ok_and(|m| m.is_file())) {
            // A link to a file is read; a link to a directory is not followed (no loops).
            files.push(entry);
        }
    }
    Ok(files)
}

fn read_file(path: &Path, visit: &mut dyn FnMut(Item)) {
    let origin = path.display().to_string();
    let unreadable = |reason: String| Item::Unreadable { origin: origin.clone(), reason };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => return visit(unreadable(error.to_string())),
    };
    let mut reader = BufReader::new(file);
    let starts_as_mbox = match reader.fill_buf() {
        Ok(start) => start.starts_with(b"From "),
        Err(error) => return visit(unreadable(error.to_string())),
    };
    if starts_as_mbox {
        if let Err(error) = read_mbox(&origin, reader, visit) {
            visit(unreadable(error.to_string()));
        }
        return;
    }
    let mut bytes = Vec::new();
    match io::Read::take(reader, MAX_MESSAGE as u64 + 1).read_to_end_into(&mut bytes) {
        Err(error) => visit(unreadable(error.to_string())),
        Ok(()) if bytes.len() > MAX_MESSAGE => visit(unreadable(format!("larger than {MAX_MESSAGE} bytes"))),
        Ok(()) if !looks_like_mail(&bytes) => visit(unreadable("not a message (no header field on its first line)".into())),
        Ok(()) => visit(Item::Message { origin, bytes }),
    }
}

trait ReadToEndInto {
    fn read_to_end_into(self, out: &mut Vec<u8>) -> io::Result<()>;
}

impl<R: io::Read> ReadToEndInto for R {
    fn read_to_end_into(mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.read_to_end(out).map(|_| ())
    }
}

/// Splits an mbox into messages at `From ` lines that follow an empty line.
fn read_mbox(origin: &str, mut reader: impl BufRead, visit: &mut dyn FnMut(Item)) -> io::Result<()> {
    let mut current: Option<Vec<u8>> = None;
    let mut too_big = false;
    let mut previous_blank = true;
    let mut line = Vec::new();
    let mut count = 0usize;
    let mut finish = |message: Option<Vec<u8>>, too_big: bool, count: &mut usize| {
        let Some(mut bytes) = message else { return };
        *count += 1;
        let origin = format!("{origin} #{count}");
        if too_big {
            return visit(Item::Unreadable { origin, reason: format!("larger than {MAX_MESSAGE} bytes") });
        }
        // The empty line before the next separator belongs to the mbox, not the message.
        if bytes.ends_with(b"\n\n") {
            bytes.pop();
        } else if bytes.ends_with(b"\r\n\r\n") {
            bytes.truncate(bytes.len() - 2);
        }
        visit(Item::Message { origin, bytes });
    };
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if previous_blank && line.starts_with(b"From ") {
            finish(current.take(), too_big, &mut count);
            current = Some(Vec::new());
            too_big = false;
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        let Some(message) = current.as_mut() else { continue };
        let unquoted = if line.iter().skip_while(|b| **b == b'>').take(5).eq(b"From ".iter()) && line.starts_with(b">") {
            &line[1..]
        } else {
            &line[..]
        };
        if message.len() + unquoted.len() > MAX_MESSAGE {
            too_big = true;
            message.clear();
        } else if !too_big {
            message.extend_from_slice(unquoted);
        }
    }
    finish(current.take(), too_big, &mut count);
    Ok(())
}

/// Whether `bytes` starts like a message: its first line is a header field (`Name: value`, the
/// name of letters, digits, `-` and `_` as every real field name is).
fn looks_like_mail(bytes: &[u8]) -> bool {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let Some(colon) = first.iter().position(|b| *b == b':') else { return false };
    let name = &first[..colon];
    !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path) -> Vec<(String, Result<Vec<u8>, String>)> {
        let mut out = Vec::new();
        read(path, &mut |item| {
            out.push(match item {
                Item::Message { origin, bytes } => (origin, Ok(bytes)),
                Item::Unreadable { origin, reason } => (origin, Err(reason)),
            })
        })
        .unwrap();
        out
    }

    #[test]
    fn a_maildir_is_walked_in_order_without_tmp_hidden_files_or_non_mail() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("new/2"), b"Subject: two\n\nb\n").unwrap();
        std::fs::write(dir.path().join("cur/1:2,S"), b"Subject: one\n\na\n").unwrap();
        std::fs::write(dir.path().join("tmp/3"), b"Subject: half-written\n\n").unwrap();
        std::fs::write(dir.path().join(".index"), b"Subject: hidden\n\n").unwrap();
        std::fs::write(dir.path().join("cur/1.json"), b"{\"label\": \"spam\"}").unwrap();
        let found = collect(dir.path());
        let messages: Vec<&[u8]> = found.iter().filter_map(|(_, r)| r.as_deref().ok()).collect();
        assert_eq!(messages, [&b"Subject: one\n\na\n"[..], b"Subject: two\n\nb\n"]);
        assert_eq!(found.iter().filter(|(_, r)| r.is_err()).count(), 1, "the JSON file is unreadable, not learned: {found:?}");
    }

    #[test]
    fn an_mbox_splits_at_from_lines_after_blank_lines_and_unquotes() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("spam.mbox");
        std::fs::write(
            &mbox,
            b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From the start\n>>From quoted once\n\nFrom c@d Tue Jan  2 00:00:00 2024\nSubject: two\n\nbody\n",
        )
        .unwrap();
        let found = collect(&mbox);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].1.as_deref().unwrap(), b"Subject: one\n\nFrom the start\n>From quoted once\n");
        assert_eq!(found[1].1.as_deref().unwrap(), b"Subject: two\n\nbody\n");
        assert!(found[1].0.ends_with("#2"));
    }

    #[test]
    fn one_message_file_is_one_message() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.eml");
        std::fs::write(&file, b"From: x@y\r\nSubject: hi\r\n\r\nbody\r\n").unwrap();
        assert_eq!(collect(&file)[0].1.as_deref().unwrap(), b"From: x@y\r\nSubject: hi\r\n\r\nbody\r\n");
    }
}
