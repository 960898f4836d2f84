//! `moat learn`: teaching the classifier from mail an operator already has (like `sa-learn`),
//! forgetting, and moving a model between installations.
//!
//! Works whether or not the server runs: lessons go into the configured store and are folded
//! into the shared model here; running nodes pick the new model up within `[classifier] sync`.
//! Prints a progress line on a terminal and a summary at the end; never prints message content.

use crate::cli_out::outln;
use moat::classifier::{Label, Tokenizer};
use moat::config::Config;
use moat::learning::{self, Learner};
use moat::mailbox::{self, Item};
use moat::store::{Lesson, Recorded, Store};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct LearnArgs {
    /// Spam to learn: a message file, a directory of them (recursively, e.g. a maildir) or an
    /// mbox file. Repeatable.
    #[arg(long)]
    spam: Vec<PathBuf>,
    /// Ham (good mail) to learn, as for --spam. Repeatable.
    #[arg(long)]
    ham: Vec<PathBuf>,
    /// Unlearn the messages given with --spam/--ham (whatever they were learned as).
    #[arg(long)]
    forget: bool,
    /// Unlearn everything USER taught (an address, an admin name, or `root`).
    #[arg(long, value_name = "USER")]
    forget_by: Option<String>,
    /// Write the model to FILE (hashed features and counts only, no text).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["import", "forget"])]
    export: Option<PathBuf>,
    /// Replace the model with the one in FILE (the lessons recorded here are dropped: their
    /// hashed features do not fit the imported model).
    #[arg(long, value_name = "FILE")]
    import: Option<PathBuf>,
    /// Age the model: multiply every count by FACTOR (0 < FACTOR < 1), so features not seen
    /// since fade out (a count reaching zero is gone) while mail learned from now on keeps the
    /// live ones up. E.g. 0.5 once a quarter.
    #[arg(long, value_name = "FACTOR", value_parser = parse_factor)]
    age: Option<f32>,
    /// Recorded as the teacher of these lessons (default: root).
    #[arg(long, default_value = "root")]
    actor: String,
}

/// Lessons written to the store per transaction.
const BATCH: usize = 500;

#[derive(Debug, Default)]
struct Summary {
    learned: u64,
    relabelled: u64,
    already: u64,
    unreadable: u64,
    forgotten: u64,
    not_learned: u64,
}

pub async fn run(config: &Config, args: LearnArgs) -> Result<(), String> {
    let store = Store::open(config).await.map_err(|e| e.to_string())?;
    let learner = Learner::new(store, moat::classifier::nothing_in_force(), learning::settings(&config.classifier));
    let mut summary = Summary::default();
    if let Some(file) = &args.import {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (spam, ham) = learner.import(bytes).await.map_err(|e| format!("{}: {e}", file.display()))?;
        outln!("imported a model that learned {spam} spam and {ham} ham from {}", file.display());
    }
    if let Some(user) = &args.forget_by {
        let lessons = learner.store().lessons_by(user).await.map_err(|e| e.to_string())?;
        summary.forgotten += learner.forget(&lessons).await.map_err(|e| e.to_string())? as u64;
    }
    let inputs = args.spam.iter().map(|p| (p, Label::Spam)).chain(args.ham.iter().map(|p| (p, Label::Ham)));
    for (path, label) in inputs {
        if args.forget {
            forget_messages(&learner, path, &mut summary).await?;
        } else {
            teach_messages(&learner, path, label, &args.actor, &mut summary).await?;
        }
    }
    if let Some(factor) = args.age {
        let (spam, ham) = learner.age(factor).await.map_err(|e| e.to_string())?;
        outln!("aged the model by {factor}: it now counts {spam} spam and {ham} ham");
    }
    let mut progress = Progress::new("folding into the model");
    learner.fold_all(|n| progress.add(n as u64)).await.map_err(|e| e.to_string())?;
    progress.done();
    learner.refresh().await.map_err(|e| e.to_string())?;
    if let Some(file) = &args.export {
        let bytes = learner.export().await.map_err(|e| e.to_string())?.ok_or("there is no model to export yet")?;
        std::fs::write(file, &bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        outln!("exported the model ({} bytes) to {}", bytes.len(), file.display());
    }
    print_summary(&learner, &summary);
    Ok(())
}

fn print_summary(learner: &Learner, s: &Summary) {
    outln!(
        "learned {}, relabelled {}, skipped as already learned {}, unreadable {}, forgotten {}, not learned before {}",
        s.learned,
        s.relabelled,
        s.already,
        s.unreadable,
        s.forgotten,
        s.not_learned
    );
    if let Some(snapshot) = learner.in_force().load().as_ref() {
        let (spam, ham) = snapshot.model.learned();
        outln!("the model now holds {spam} spam and {ham} ham (version {})", snapshot.version);
    }
}

/// Reads, tokenizes and records every message under `path` as `label`.
async fn teach_messages(learner: &Learner, path: &Path, label: Label, actor: &str, summary: &mut Summary) -> Result<(), String> {
    let tokenizer = learner.tokenizer().await.map_err(|e| e.to_string())?;
    let mut progress = Progress::new(&format!("learning {} as {}", path.display(), label.as_str()));
    let mut lessons = read_lessons(path.to_path_buf(), tokenizer, label);
    let now = moat::clock::unix_now();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let next = lessons.recv().await;
        let finished = next.is_none();
        match next {
            Some(Ok(lesson)) => batch.push(Lesson { taught_by: actor.to_string(), via: "cli".to_string(), at: now, ..lesson }),
            Some(Err(origin)) => {
                summary.unreadable += 1;
                progress.note(&format!("unreadable: {origin}"));
            }
            None => {}
        }
        if batch.len() >= BATCH || (finished && !batch.is_empty()) {
            let recorded = learner.store().put_lessons(&batch).await.map_err(|e| e.to_string())?;
            for r in &recorded {
                match r {
                    Recorded::New => summary.learned += 1,
                    Recorded::Relabelled => summary.relabelled += 1,
                    Recorded::Already => summary.already += 1,
                }
            }
            progress.add(batch.len() as u64);
            batch.clear();
        }
        if finished {
            break;
        }
    }
    progress.done();
    Ok(())
}

/// Forgets every message under `path` that was learned.
async fn forget_messages(learner: &Learner, path: &Path, summary: &mut Summary) -> Result<(), String> {
    let mut digests = Vec::new();
    mailbox::read(path, &mut |item| match item {
        Item::Message { bytes, .. } => digests.push(moat::classifier::content_digest(&bytes)),
        Item::Unreadable { .. } => summary.unreadable += 1,
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lessons = Vec::new();
    for digest in digests {
        match learner.store().get_lesson(&digest).await.map_err(|e| e.to_string())? {
            Some(lesson) => lessons.push(lesson),
            None => summary.not_learned += 1,
        }
    }
    for chunk in lessons.chunks(BATCH) {
        summary.forgotten += learner.forget(chunk).await.map_err(|e| e.to_string())? as u64;
    }
    Ok(())
}

/// Reads messages on a thread of their own and turns each into a lesson (digest and features);
/// the bounded channel keeps at most a few batches in memory however big the mailbox.
fn read_lessons(path: PathBuf, tokenizer: Tokenizer, label: Label) -> tokio::sync::mpsc::Receiver<Result<Lesson, String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2 * BATCH);
    let tokenizer = Arc::new(tokenizer);
    std::thread::spawn(move || {
        let outcome = mailbox::read(&path, &mut |item| {
            let lesson = match item {
                Item::Message { bytes, .. } => Ok(learning::lesson_of(&tokenizer, &bytes, label)),
                Item::Unreadable { origin, reason } => Err(format!("{origin}: {reason}")),
            };
            let _ = tx.blocking_send(lesson);
        });
        if let Err(error) = outcome {
            let _ = tx.blocking_send(Err(format!("{}: {error}", path.display())));
        }
    });
    rx
}

fn parse_factor(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("{text:?} is not a factor between 0 and 1 (exclusive)")),
    }
}

/// A progress line on standard error, when it is a terminal.
struct Progress {
    what: String,
    done: u64,
    terminal: bool,
}

impl Progress {
    fn new(what: &str) -> Progress {
        Progress { what: what.to_string(), done: 0, terminal: std::io::stderr().is_terminal() }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.terminal {
            let _ = write!(std::io::stderr(), "\r{}: {}", self.what, self.done);
        }
    }

    fn note(&mut self, line: &str) {
        if self.terminal {
            eprint!("\r\x1b[K");
        }
        eprintln!("moat learn: {line}");
    }

    fn done(&mut self) {
        if self.terminal && self.done > 0 {
            eprintln!();
        }
    }
}
