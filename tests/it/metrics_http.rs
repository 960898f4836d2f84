//! `/metrics`, `/healthz` and `/readyz` on the operator's listener, against the real binary:
//! after real SMTP traffic the Prometheus text shows connections, messages, bytes, verdicts by
//! action, symbols, filter latency histograms with buckets, deliveries, the quarantine and the
//! hash of the rule set in force (the one the log names) — and no mail addresses.

use crate::support::*;
use std::fs;

const RULES: &str = "body LOCAL_PRIZE /you have won/i\nscore LOCAL_PRIZE 12\nbody LOCAL_OFFER /cheap/i\nscore LOCAL_OFFER 6\n";

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_count_real_traffic_and_name_the_rule_set_in_force() {
    let rules = temp_dir();
    fs::write(rules.path().join("local.cf"), RULES).unwrap();
    let capture = Capture::new();
    let port = free_port();
    let moat = Moat::start(
        MoatConfig::new(capture.port)
            .append(&format!("\n[rules]\ndirs = [\"{}\"]\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n", rules.path().display())),
    );
    assert_eq!(http(port, "GET", "/healthz", "").status, 200);
    assert_eq!(http(port, "GET", "/readyz", "").status, 200, "the store answers");

    let offer = moat.smtp_ehlo().send_mail("a@remote.example", &["tagme@example.test"], b"Subject: x\r\n\r\ncheap stuff\r\n");
    assert_eq!(offer.code, 250, "{offer}");
    let prize = moat.smtp_ehlo().send_mail("a@remote.example", &["holdme@example.test"], b"Subject: y\r\n\r\nyou have won\r\n");
    assert_eq!(prize.code, 250, "{prize}");
    capture.wait_for(1, DEADLINE);
    moat.wait_quarantined(1);

    let metrics = wait_until("the delivery to be counted", DEADLINE, || {
        let text = http(port, "GET", "/metrics", "").body;
        value(&text, "moat_delivery_attempts_total{outcome=\"delivered\"}").is_some_and(|n| n >= 1.0).then_some(text)
    });
    assert_eq!(value(&metrics, "moat_messages_total{outcome=\"accepted\"}"), Some(2.0), "{metrics}");
    assert!(value(&metrics, "moat_message_bytes_total").is_some_and(|n| n > 50.0));
    assert_eq!(value(&metrics, "moat_verdicts_total{action=\"tag\"}"), Some(1.0));
    assert_eq!(value(&metrics, "moat_verdicts_total{action=\"quarantine\"}"), Some(1.0));
    assert_eq!(value(&metrics, "moat_symbols_total{symbol=\"LOCAL_PRIZE\"}"), Some(1.0));
    assert_eq!(value(&metrics, "moat_quarantined_total{category=\"spam\"}"), Some(1.0));
    let connections: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("moat_connections_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(connections >= 2.0, "every connection is counted by how it ended: {metrics}");
    assert!(metrics.contains("moat_filter_seconds_bucket{filter=\"rules\",phase=\"data\",le=\"0.005\"}"), "{metrics}");
    assert!(metrics.contains("moat_spool_messages"), "{metrics}");
    assert!(value(&metrics, "moat_holding_messages").is_some_and(|n| n <= 1.0), "held copies waiting for the store: {metrics}");
    let hash = moat
        .log()
        .split("event=\"rules_loaded\"")
        .nth(1)
        .and_then(|rest| rest.split("hash=").nth(1))
        .and_then(|h| h.split_whitespace().next())
        .map(|h| h.trim_matches('"').to_string())
        .expect("rules_loaded hash in the log");
    assert_eq!(value(&metrics, &format!("moat_rules_info{{hash=\"{hash}\"}}")), Some(1.0), "the rule set in force: {metrics}");
    assert!(!metrics.contains("example.test") && !metrics.contains("remote.example"), "no addresses in metrics");
}

#[test]
fn the_grafana_dashboard_only_uses_documented_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("grafana/moat.json")).unwrap()).expect("valid JSON");
    let documented = fs::read_to_string(root.join("src/metrics.rs")).unwrap();
    let mut used = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("moat_")) {
                used.push(word.trim_end_matches("_bucket").to_string());
            }
        }
    }
    assert!(used.len() > 10);
    for name in used {
        assert!(documented.contains(&format!("`{name}`")), "{name} is not in the metrics table of src/metrics.rs");
    }
}
