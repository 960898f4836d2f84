//! The golden scoring corpus: each case in `tests/corpus/scoring/*.toml` gives DNS records, an
//! envelope, a message, extra configuration and what must come out (symbols present, symbols
//! absent, the action per recipient). Each case runs the real filters — against a real DNS
//! server (dnsmasq) serving the case's records — through the same `Scorer` and phase order as
//! the server (`moat::scan`), with the shipped rules in `rules/`.

use crate::support::dns::DnsZone;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    envelope: Envelope,
    #[serde(default)]
    dns: Records,
    /// TOML appended to the base configuration (policy, lists, reputation zones, domains).
    #[serde(default)]
    config: String,
    message: String,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    ip: String,
    helo: String,
    from: String,
    rcpt: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Records {
    #[serde(default)]
    txt: Vec<(String, String)>,
    #[serde(default)]
    a: Vec<(String, String)>,
    #[serde(default)]
    ptr: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    symbols: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
    /// Recipient → action ("accept", "tag", "quarantine", "reject", "tempfail").
    actions: BTreeMap<String, String>,
}

const BASE: &str = r#"
hostname = "mx.example.test"
state_dir = "state"

[[listen]]
address = "127.0.0.1:2525"
starttls = false

[downstream]
host = "127.0.0.1"
port = 2526

[[domain]]
name = "example.test"
"#;

fn cases() -> Vec<(PathBuf, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/scoring");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/corpus/scoring")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let case = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, case)
        })
        .collect()
}

async fn run(path: &Path, case: &Case) -> Result<(), String> {
    let mut zone = DnsZone::new();
    for (name, value) in &case.dns.txt {
        zone = zone.txt(name, value);
    }
    for (name, ip) in &case.dns.a {
        zone = zone.a(name, ip);
    }
    for (ip, name) in &case.dns.ptr {
        zone = zone.ptr(ip, name);
    }
    let dns = zone.start();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let text = format!("{BASE}\n[rules]\ndirs = [\"{}\"]\nwatch = \"0s\"\n\n{}\n{}\n", rules.display(), dns.config_section(), case.config);
    let config = moat::config::load_str("case.toml", &text, Path::new("."))
        .map_err(|e| format!("config: {}", e.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
    let scorer =
        moat::scoring::build(std::sync::Arc::new(config), &moat::classifier::nothing_in_force()).map_err(|e| format!("filters: {e}"))?;
    let envelope = moat::scan::Envelope {
        client_ip: case.envelope.ip.parse().map_err(|e| format!("ip: {e}"))?,
        helo: case.envelope.helo.clone(),
        sender: case.envelope.from.clone(),
        recipients: case.envelope.rcpt.clone(),
    };
    let message = case.message.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes();
    let report = moat::scan::scan(&scorer, &envelope, message).await;
    let mut problems = Vec::new();
    for r in &report.recipients {
        let names: Vec<&str> = r.symbols.iter().map(|s| s.name.as_str()).collect();
        for wanted in &case.expect.symbols {
            if !names.contains(&wanted.as_str()) {
                problems.push(format!("{}: missing {wanted} (got {names:?})", r.recipient));
            }
        }
        for unwanted in &case.expect.absent {
            if names.contains(&unwanted.as_str()) {
                problems.push(format!("{}: unexpected {unwanted} (got {names:?})", r.recipient));
            }
        }
        match case.expect.actions.get(&r.recipient) {
            Some(action) if action != r.action.as_str() => {
                problems.push(format!("{}: action {} ({}), expected {action}; symbols {names:?}", r.recipient, r.action.as_str(), r.reason))
            }
            None => problems.push(format!("{}: no expected action in the case", r.recipient)),
            _ => {}
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{} ({}):\n  {}", path.display(), case.description, problems.join("\n  "))) }
}

#[tokio::test]
async fn every_case_in_the_scoring_corpus_gives_its_expected_symbols_and_actions() {
    let cases = cases();
    assert!(cases.len() >= 10, "the corpus has its cases");
    let mut failures = Vec::new();
    for (path, case) in &cases {
        if let Err(problem) = run(path, case).await {
            failures.push(problem);
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
