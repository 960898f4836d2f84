//! The `moat` command: serve, check a configuration, scan a message, inspect and steer the queue.
//!
//! Exit codes: 0 success; 1 a runtime failure; 78 (EX_CONFIG) a configuration error, so that
//! systemd's `RestartPreventExitStatus=78` stops a restart loop on a bad file; 65 (EX_DATAERR)
//! from `moat rules check` when a rule file has errors. Output goes through `cli_out`: a reader
//! that goes away (`moat quarantine list | grep -q …`) ends a command quietly with 0.

mod cli_out;
mod learn_cmd;
mod quarantine_cmd;

use clap::{Parser, Subcommand};
use cli_out::{out, outln};
use futures_util::StreamExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

const EXIT_CONFIG: u8 = 78;
const EXIT_DATAERR: u8 = 65;
const DEFAULT_CONFIG: &str = "/etc/moat/moat.toml";

#[derive(Parser)]
#[command(name = "moat", version, about = "Spam and virus filtering SMTP proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SMTP proxy until SIGTERM (SIGHUP reloads the configuration).
    Serve {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log one JSON object per line instead of key=value text.
        #[arg(long)]
        log_json: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Score a message as the server would and explain the verdict (like `spamassassin -t`).
    Scan {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The message(s) (RFC 5322 files, e.g. .eml); "-" reads standard input. Several files are
        /// scanned one after the other with the filters built once.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Envelope sender; default the message's Return-Path, else its From address.
        #[arg(long)]
        from: Option<String>,
        /// Envelope recipient (repeat for several); default postmaster of the first relay domain.
        #[arg(long)]
        rcpt: Vec<String>,
        /// The client IP the message came from.
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
        /// The HELO name the client used.
        #[arg(long, default_value = "localhost")]
        helo: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Messages scanned at the same time (the rule filter evaluates one per core at once);
        /// reports are still printed in the order of the files.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
    },
    /// Rule file tools.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Inspect and steer the delivery queue (like mailq / postqueue).
    Queue {
        #[arg(short, long, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// List, release and delete quarantined mail (metadata only, never contents).
    Quarantine {
        #[arg(short, long, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        command: quarantine_cmd::QuarantineCommand,
    },
    /// Quarantine digests: send now, or preview one.
    Digest {
        #[arg(short, long, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        command: quarantine_cmd::DigestCommand,
    },
    /// Per-user data.
    User {
        #[arg(short, long, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        command: quarantine_cmd::UserCommand,
    },
    /// Teach the classifier spam and ham (like sa-learn), forget, export or import its model.
    Learn {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        args: learn_cmd::LearnArgs,
    },
    /// Customer domains: remove what moat holds about one that leaves.
    Domain {
        #[arg(short, long, global = true, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(subcommand)]
        command: quarantine_cmd::DomainCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print every error with its location.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load rule directories as the server would: print loaded and skipped counts per rule
    /// type, every skipped rule and every error with FILE:LINE. Exit 65 on any error.
    Check {
        /// Rule directories in load order (later ones override). Default: the configured ones.
        dirs: Vec<PathBuf>,
        /// Configuration file whose `[rules]` directories are checked when no DIR is given.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queued messages: id, age, size, sender, recipients and their state.
    List,
    /// Retry every deferred message now.
    Flush,
    /// Remove messages from the queue (no bounce is sent).
    Remove {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

fn main() -> ExitCode {
    moat::allocator::tune();
    let cli = Cli::parse();
    match cli.command {
        Command::Config { command: ConfigCommand::Check { file } } => config_check(&file),
        Command::Serve { config, log_json } => serve(&config, log_json),
        Command::Queue { config, command } => queue(&config, command),
        Command::Quarantine { config, command } => {
            with_store_config(&config, "quarantine", |config| async move { quarantine_cmd::quarantine(&config, command).await })
        }
        Command::Digest { config, command } => {
            with_store_config(&config, "digest", |config| async move { quarantine_cmd::digest(&config, command).await })
        }
        Command::User { config, command } => {
            with_store_config(&config, "user", |config| async move { quarantine_cmd::user(&config, command).await })
        }
        Command::Learn { config, args } => with_store_config(&config, "learn", |config| async move { learn_cmd::run(&config, args).await }),
        Command::Domain { config, command } => {
            with_store_config(&config, "domain", |config| async move { quarantine_cmd::domain(&config, command).await })
        }
        Command::Scan { config, files, from, rcpt, ip, helo, json, jobs } => {
            scan(&config, &files, ScanOptions { from, rcpt, ip, helo, json, jobs: usize::from(jobs) })
        }
        Command::Rules { command: RulesCommand::Check { dirs, config } } => rules_check(dirs, &config),
    }
}

fn rules_check(dirs: Vec<PathBuf>, config: &Path) -> ExitCode {
    let dirs = if dirs.is_empty() {
        let config = match load_config(config) {
            Ok(config) => config,
            Err(code) => return code,
        };
        let dirs = config.rule_dirs();
        if dirs.is_empty() {
            eprintln!("no rule directories: add a [rules] section with `dirs` to the configuration");
            return ExitCode::from(EXIT_DATAERR);
        }
        dirs
    } else {
        dirs
    };
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    match moat::ruleset::RuleSet::load(&dirs) {
        Ok((rules, report)) => {
            outln!("rules from {} ({} files), hash {}", names.join(", "), report.files, rules.hash());
            outln!("loaded {} rules:", report.loaded);
            for (kind, n) in &report.loaded_by_kind {
                outln!("  {:<10} {n}", kind.as_str());
            }
            if report.filter_answered > 0 {
                outln!(
                    "  of which {} SPF/DKIM eval rules are answered by moat's auth filter ([auth]); with it off they and the metas over them do not run",
                    report.filter_answered
                );
            }
            if !report.list_zones.is_empty() {
                let rules: usize = report.list_zones.values().sum();
                let zones: Vec<&str> = report.list_zones.keys().map(String::as_str).collect();
                outln!(
                    "  of which {rules} DNS-list eval rules are answered by moat's dnsbl filter for the zones [reputation] asks; for any other zone they and the metas over them do not run: {}",
                    zones.join(", ")
                );
            }
            outln!("skipped {} rules:", report.skipped.len());
            for (kind, n) in &report.skipped_by_kind {
                outln!("  {kind:<10} {n}");
            }
            for (category, n) in report.skip_categories() {
                outln!("  reason {category:?}: {n}");
            }
            for skipped in &report.skipped {
                outln!("{skipped}");
            }
            for warning in &report.warnings {
                outln!("{warning}: warning");
            }
            outln!("ok: 0 errors");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            eprintln!("{} error(s) in {}", errors.len(), names.join(", "));
            ExitCode::from(EXIT_DATAERR)
        }
    }
}

struct ScanOptions {
    from: Option<String>,
    rcpt: Vec<String>,
    ip: std::net::IpAddr,
    helo: String,
    json: bool,
    jobs: usize,
}

fn scan(path: &Path, files: &[PathBuf], options: ScanOptions) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Ok(runtime) = scan_runtime(options.jobs) else { return ExitCode::FAILURE };
    let limit = config.limits.max_message_size;
    let default_rcpt = config.domains.first().map(|d| vec![format!("postmaster@{}", d.name)]).unwrap_or_default();
    let in_force = if config.classifier.enabled { runtime.block_on(stored_model(&config)) } else { moat::classifier::nothing_in_force() };
    let scorer = match runtime.block_on(async { moat::scoring::build(Arc::new(config), &in_force) }) {
        Ok(scorer) => Arc::new(scorer),
        Err(errors) => {
            eprintln!("moat scan: the filters could not be built:\n{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut status = ExitCode::SUCCESS;
    let (json, jobs) = (options.json, options.jobs.max(1));
    // Up to `jobs` messages scanned at once, each on the runtime's worker threads; reports in
    // file order (the same output for any `jobs`). The order is kept by a window of
    // REPORTS_AHEAD × `jobs` scans: a slow message holds back the printing, not the scanning.
    let scanning = Arc::new(tokio::sync::Semaphore::new(jobs));
    let envelope_of = Arc::new(move |message: &[u8]| moat::scan::Envelope {
        client_ip: options.ip,
        helo: options.helo.clone(),
        sender: options.from.clone().unwrap_or_else(|| sender_of(message)),
        recipients: if options.rcpt.is_empty() { default_rcpt.clone() } else { options.rcpt.clone() },
    });
    let scans = files.iter().map(|file| {
        let (scorer, envelope_of, file, scanning) = (scorer.clone(), envelope_of.clone(), file.clone(), scanning.clone());
        runtime.spawn(async move {
            let _turn = scanning.acquire_owned().await.map_err(std::io::Error::other)?;
            let message = read_message(&file, limit)?;
            let envelope = envelope_of(&message);
            Ok::<_, std::io::Error>(moat::scan::scan(&scorer, &envelope, message).await)
        })
    });
    let mut reports = futures_util::stream::iter(scans).buffered(jobs * REPORTS_AHEAD);
    let mut file_names = files.iter();
    while let Some(joined) = runtime.block_on(reports.next()) {
        let Some(file) = file_names.next() else { break };
        let report = match joined.map_err(std::io::Error::other).and_then(|scanned| scanned) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("moat scan: {}: {error}", file.display());
                status = ExitCode::FAILURE;
                continue;
            }
        };
        if json {
            let value = serde_json::json!({ "file": file, "report": report });
            outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        } else {
            if files.len() > 1 {
                outln!("== {}", file.display());
            }
            out!("{}", moat::scan::render(&report));
        }
    }
    status
}

/// Scans `moat scan` runs ahead of the report it is printing, per job.
const REPORTS_AHEAD: usize = 8;

/// `moat scan`'s runtime: `jobs` worker threads, so messages in flight use that many cores for
/// the work outside the rule threads (parsing, the classifier, authentication, attachments).
fn scan_runtime(jobs: usize) -> Result<tokio::runtime::Runtime, ()> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(jobs.max(1)).enable_all().build().map_err(|error| {
        eprintln!("cannot start the runtime: {error}");
    })
}

/// Reads at most `limit` bytes of the message; more is an error, like the server's SIZE limit.
fn read_message(file: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let reader: Box<dyn Read> = if file == Path::new("-") { Box::new(std::io::stdin()) } else { Box::new(std::fs::File::open(file)?) };
    let mut message = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut message)?;
    if message.len() > limit {
        return Err(std::io::Error::other(format!("larger than limits.max_message_size ({limit} bytes)")));
    }
    Ok(message)
}

/// The envelope sender a message most likely had: Return-Path, else the From address.
fn sender_of(message: &[u8]) -> String {
    let value = moat::headers::first_value(message, "Return-Path").or_else(|| moat::headers::first_value(message, "From"));
    let value = value.unwrap_or_default();
    let address = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.as_str(),
    };
    address.trim().to_string()
}

fn load_config(path: &Path) -> Result<moat::config::Config, ExitCode> {
    moat::config::load(path).map_err(|errors| {
        for error in &errors {
            eprintln!("{error}");
        }
        eprintln!("{}: {} error(s)", path.display(), errors.len());
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Loads the configuration and runs `job` with it on a short-lived runtime; errors go to stderr.
fn with_store_config<F: std::future::Future<Output = Result<(), String>>>(
    path: &Path,
    name: &str,
    job: impl FnOnce(moat::config::Config) -> F,
) -> ExitCode {
    let (config, runtime) = match config_and_runtime(path) {
        Ok(both) => both,
        Err(code) => return code,
    };
    match runtime.block_on(job(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat {name}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The classifier model in the configured store (what the server classifies with); none, with
/// a note on standard error, when the store cannot be read.
async fn stored_model(config: &moat::config::Config) -> moat::classifier::InForce {
    let in_force = moat::classifier::nothing_in_force();
    let store = match moat::store::Store::open(config).await {
        Ok(store) => store,
        Err(error) => {
            eprintln!("moat scan: the classifier's model is not used: the store cannot be opened: {error}");
            return in_force;
        }
    };
    let learner = moat::learning::Learner::new(store, in_force.clone(), moat::learning::settings(&config.classifier));
    if let Err(error) = learner.refresh().await {
        eprintln!("moat scan: the classifier's model is not used: {error}");
    }
    in_force
}

/// The configuration at `path` and a runtime for a short-lived command.
fn config_and_runtime(path: &Path) -> Result<(moat::config::Config, tokio::runtime::Runtime), ExitCode> {
    Ok((load_config(path)?, current_thread_runtime()?))
}

/// A single-threaded runtime for the short-lived commands.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|error| {
        eprintln!("cannot start the runtime: {error}");
        ExitCode::FAILURE
    })
}

fn config_check(path: &Path) -> ExitCode {
    match load_config(path) {
        Ok(_) => {
            outln!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Libraries whose verbose logs would carry message content, held at `info` whatever `MOAT_LOG`
/// asks for: tokio-postgres logs every statement's parameters at `debug` (a quarantined item's
/// subject), and hickory logs every name it looks up (URI-list lookups are the domains of a
/// message's links), and html5ever (under the Message Center's HTML sanitiser) logs the text it
/// parses. moat's own events never carry a subject or a body at any level.
const CONTENT_LOGGING_LIBRARIES: [&str; 7] =
    ["tokio_postgres", "hickory_proto", "hickory_net", "hickory_resolver", "html5ever", "markup5ever", "ammonia"];

fn init_logging(json: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("MOAT_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for library in CONTENT_LOGGING_LIBRARIES {
        // A directive for the same target replaces the user's, so this cap always holds.
        if let Ok(directive) = format!("{library}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(false).init();
    }
}

fn serve(path: &Path, log_json: bool) -> ExitCode {
    let config = match load_config(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    init_logging(log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(moat::server::serve(path.to_path_buf(), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(event = "fatal", error = %error);
            eprintln!("moat: {error}");
            ExitCode::FAILURE
        }
    }
}

fn queue(path: &Path, command: QueueCommand) -> ExitCode {
    let (config, runtime) = match config_and_runtime(path) {
        Ok(both) => both,
        Err(code) => return code,
    };
    use moat::control;
    let result = match command {
        QueueCommand::List => control::list(&config).map(|entries| print_queue(&entries)),
        QueueCommand::Flush => {
            runtime.block_on(control::flush(&config)).map(|count| outln!("{count} deferred message(s) scheduled for delivery now"))
        }
        QueueCommand::Remove { ids } => runtime.block_on(control::remove(&config, &ids)).map(|removed| {
            for id in &removed {
                outln!("removed {id}");
            }
            let missing = ids.iter().filter(|id| !removed.contains(id)).count();
            if missing > 0 {
                outln!("{missing} id(s) not in the queue");
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("moat queue: {error}");
            ExitCode::FAILURE
        }
    }
}

/// mailq-style listing: one block per message, one line per recipient with its last reply.
fn print_queue(entries: &[moat::control::QueueEntry]) {
    let now = chrono::Utc::now().timestamp();
    for entry in entries {
        let sender = if entry.sender.is_empty() { "<>" } else { entry.sender.as_str() };
        let kind = if entry.dsn { " (bounce)" } else { "" };
        outln!(
            "{}  {} bytes  {}s old  attempts {}  {}{}",
            entry.id,
            entry.size,
            (now - entry.received_at).max(0),
            entry.attempts,
            sender,
            kind
        );
        for rcpt in &entry.recipients {
            let reply = rcpt.reply.as_ref().map(|r| format!("  ({} {} {})", r.code, r.status(), r.text)).unwrap_or_default();
            outln!("    {:?}  {}{}", rcpt.status, rcpt.address, reply);
        }
    }
    outln!("{} message(s) in the queue", entries.len());
}
