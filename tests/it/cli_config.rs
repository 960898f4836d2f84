//! `moat config check` and start-up with a bad configuration: every error at once, each with
//! FILE:LINE:COL, and exit status 78 (EX_CONFIG) so that systemd does not restart-loop. And the
//! commands' output into a pipe whose reader went away: a quiet exit 0, not a panic.

use crate::support::*;
use std::time::Duration;

const EX_CONFIG: i32 = 78;

fn good_config() -> String {
    MoatConfig::new(2526).render()
}

#[test]
fn config_check_accepts_a_good_file() {
    let dir = temp_dir();
    let file = dir.path().join("moat.toml");
    std::fs::write(&file, good_config()).unwrap();
    let out = moat_cli(&["config", "check", file.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(0), "config check on a good file:\n{}{}", text(&out.stdout), text(&out.stderr));
}

/// A config with three independent mistakes on known lines.
fn bad_config() -> (String, Vec<usize>) {
    let mut text = good_config();
    let mut lines = Vec::new();
    // 1. an unknown top-level key
    text = format!("hostnme = \"typo.example.test\"\n{text}");
    lines.push(1);
    // 2. a wrong type in [limits]; 3. an unknown key in a [[domain]]
    text.push_str("\n[limits]\nmax_recipients = \"lots\"\n");
    lines.push(text.lines().count());
    text.push_str("\n[[domain]]\nname = \"other.test\"\nrecipient_chek = \"list\"\n");
    lines.push(text.lines().count());
    (text, lines)
}

#[test]
fn config_check_reports_every_error_with_its_location_and_exits_78() {
    let dir = temp_dir();
    let file = dir.path().join("moat.toml");
    let (config, lines) = bad_config();
    std::fs::write(&file, &config).unwrap();
    let name = file.to_str().unwrap();
    let out = moat_cli(&["config", "check", name], dir.path());
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(EX_CONFIG), "exit status for a bad config:\n{output}");
    for line in lines {
        let location = format!("{name}:{line}:");
        assert!(output.contains(&location), "expected an error at {location}\n--- config:\n{config}\n--- output:\n{output}");
    }
    assert!(output.contains("hostnme") && output.contains("recipient_chek"), "errors name the keys:\n{output}");
}

#[test]
fn config_check_on_a_missing_file_exits_78() {
    let dir = temp_dir();
    let file = dir.path().join("absent.toml");
    let out = moat_cli(&["config", "check", file.to_str().unwrap()], dir.path());
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{output}");
    assert!(output.contains("absent.toml"), "{output}");
}

#[test]
fn serve_with_a_bad_config_exits_78_without_listening() {
    let dir = temp_dir();
    let file = dir.path().join("moat.toml");
    let (config, _) = bad_config();
    std::fs::write(&file, &config).unwrap();
    let out = run_with_deadline(
        std::process::Command::new(moat_binary()).args(["serve", "-c", file.to_str().unwrap()]).current_dir(dir.path()),
        Duration::from_secs(20),
    );
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(EX_CONFIG), "moat serve on a bad config:\n{output}");
    assert!(output.contains("hostnme"), "{output}");
}

#[test]
fn the_shipped_example_configuration_is_valid_and_a_bad_digest_schedule_is_located() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = moat_cli(&["config", "check", root.join("examples/moat.toml").to_str().unwrap()], root);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));

    let dir = temp_dir();
    let file = dir.path().join("moat.toml");
    std::fs::write(&file, format!("{}\n[digest]\nschedule = \"0 8 * *\"\ntimezone = \"Mars/Base\"\n", good_config())).unwrap();
    let out = moat_cli(&["config", "check", file.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let report = text(&out.stderr) + &text(&out.stdout);
    assert!(report.contains("five fields") && report.contains("moat.toml:"), "{report}");
}

/// Runs moat with `args` and its standard output a pipe whose reader is gone before moat writes
/// (as in `moat quarantine list | grep -q …` once grep has its match): moat must end quietly
/// with status 0 (src/cli_out.rs), never panic with "failed printing to stdout".
fn run_with_stdout_closed(args: &[&str], dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(moat_binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat");
    drop(child.stdout.take()); // the reader goes away: moat's first write meets a broken pipe
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read moat's stderr");
    let status = wait_until("moat to exit", Duration::from_secs(60), || child.try_wait().expect("wait for moat"));
    (status, stderr)
}

#[test]
fn listings_end_quietly_with_status_0_when_the_reader_of_their_output_goes_away() {
    let dir = temp_dir();
    let file = dir.path().join("moat.toml");
    std::fs::write(&file, good_config()).unwrap();
    let config = file.to_str().unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    for args in [
        &["quarantine", "list", "-c", config][..],
        &["quarantine", "list", "--json", "-c", config],
        &["queue", "list", "-c", config],
        &["rules", "check", rules],
        &["config", "check", config],
    ] {
        let (status, stderr) = run_with_stdout_closed(args, dir.path());
        assert!(!stderr.contains("panicked"), "moat {} panicked on a closed pipe:\n{stderr}", args.join(" "));
        assert_eq!(status.code(), Some(0), "moat {} on a closed pipe: {status}\n{stderr}", args.join(" "));
        assert!(stderr.is_empty(), "moat {} said on a closed pipe:\n{stderr}", args.join(" "));
    }
}
