//! The operator artifacts in `deploy/` held against the switch itself: every metric name
//! that the alert rules, their promtool cases and the Grafana dashboard mention is one a
//! started switch really exports on `/metrics` (after some traffic, so that histograms and
//! per-issuer series exist); the process metrics are there with believable values; the
//! dashboard is valid JSON that shows what an operator watches; and, with promtool on the
//! PATH (CI installs it and sets ISOSWITCH_REQUIRE_PROMTOOL), its queries parse as PromQL.

mod common;
#[path = "common/process.rs"]
mod process;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{MockIssuer, Mode, Terminal, auth, http_get};

const PAN: &str = "4111111111111111";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

const RULES: &str = "prometheus/isoswitch-alerts.yml";
const RULE_TESTS: &str = "prometheus/isoswitch-alerts.test.yml";
const DASHBOARD: &str = "grafana/isoswitch-dashboard.json";

/// Metric names in a text: identifiers that start like the switch's own or its process
/// metrics (alert names are CamelCase, file names use hyphens, so neither is caught).
fn mentioned(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("isoswitch_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Every series name of a Prometheus text exposition, and every family named by `# TYPE`
/// (a histogram's family name as well as its `_bucket`, `_sum` and `_count` series).
fn exported(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            names.insert(n.to_string());
        }
    }
    names
}

/// The value of the sample `series` (labels exactly as rendered), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `/metrics` of a switch process with a journal, an issuer link up and a few approved
/// transactions behind it.
async fn metrics_after_traffic() -> String {
    let issuer = MockIssuer::start(Mode::Approve).await;
    let dir = process::TempDir::new("ops-artifacts");
    let (listen, metrics) = (process::free_port().await, process::free_port().await);
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = \"{journal}\"\nmetrics = \"{metrics}\"\ndefault_issuer = \"bank\"\n\
             [[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{link}\"\n",
            journal = dir.path.join("journal.db").display(),
            link = issuer.addr
        ),
    )
    .unwrap();
    let mut switch = process::start_switch(&config, &dir.path.join("switch.log"));
    process::wait_listening(listen, &mut switch).await;
    let t0 = Instant::now();
    while sample(&http_get(metrics, "/metrics").await, "isoswitch_issuer_up{issuer=\"bank\"}") != Some(1.0) {
        assert!(t0.elapsed() < Duration::from_secs(15), "the issuer link did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut terminal = Terminal::connect(listen).await;
    for stan in 1..=3 {
        let reply = terminal.exchange(&auth(PAN, stan, 1000 + u64::from(stan))).await;
        assert_eq!(reply.text(39).as_deref(), Some("00"), "transaction {stan} approved");
    }
    let body = http_get(metrics, "/metrics").await;
    process::signal(&switch, "TERM");
    assert!(process::wait_exit(&mut switch, Duration::from_secs(20)).await.is_some());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_name_only_metrics_the_switch_exports_and_process_metrics_are_there() {
    let body = metrics_after_traffic().await;
    let exported = exported(&body);
    assert!(exported.contains("isoswitch_end_to_end_latency_seconds_bucket"), "histograms rendered: {body}");

    for file in [RULES, RULE_TESTS, DASHBOARD] {
        let names = mentioned(&read(file));
        assert!(names.len() >= 5, "deploy/{file} names the switch's metrics: {names:?}");
        let unknown: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(unknown.is_empty(), "deploy/{file} names metrics the switch does not export: {unknown:?}");
    }

    // The process metrics, each present, with values a live process has.
    for name in isoswitch::metrics::PROCESS_METRICS {
        assert!(sample(&body, name).is_some(), "{name} missing from /metrics:\n{body}");
    }
    let v = |name: &str| sample(&body, name).unwrap_or(f64::NAN);
    assert!(v("process_resident_memory_bytes") > 1_000_000.0, "resident memory");
    assert!(v("process_virtual_memory_bytes") >= v("process_resident_memory_bytes"));
    assert!(v("process_open_fds") >= 3.0, "open descriptors (stdio, listeners, journal)");
    assert!(v("process_max_fds") >= v("process_open_fds"), "descriptor limit");
    assert!(v("process_threads") >= 2.0, "the runtime's worker threads");
    assert!(v("process_cpu_seconds_total") >= 0.0);
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = v("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 120.0,
        "start time {started} is not the last minutes (now {now})"
    );
    assert!(body.contains("# TYPE process_cpu_seconds_total counter"), "CPU seconds is a counter");
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("deploy/{DASHBOARD} is not JSON: {e}"))
}

/// Each query of each panel (not rows), with its panel's title.
fn queries(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("panel {title} has no targets"));
        assert!(!targets.is_empty(), "panel {title} has no queries");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            out.push((title.clone(), expr.to_string()));
        }
    }
    out
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_showing_what_an_operator_watches() {
    let d = dashboard();
    assert_eq!(d["uid"], "isoswitch");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30), "a current schema version");
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(x + w <= 24 && g["h"].as_u64().is_some_and(|h| h > 0), "panel {id} fits the grid: {g}");
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["datasource", "job", "instance", "issuer"] {
        assert!(vars.contains(&v), "variable ${v}: {vars:?}");
    }
    let q = queries(&d);
    let has = |needle: &str| q.iter().any(|(_, e)| e.contains(needle));
    for needle in [
        "sum by (mti) (rate(isoswitch_requests_total",
        "sum by (rc) (rate(isoswitch_responses_total",
        "histogram_quantile(0.5, sum by (le) (rate(isoswitch_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(isoswitch_end_to_end_latency_seconds_bucket",
        "isoswitch_issuer_latency_seconds_bucket",
        "isoswitch_issuer_up",
        "isoswitch_issuer_links_up",
        "isoswitch_inflight",
        "isoswitch_saf_depth",
        "isoswitch_shed_total",
        "isoswitch_journal_up",
        "isoswitch_journal_write_errors_total",
        "isoswitch_decode_errors_total",
        "rate(process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(has(needle), "no dashboard query has `{needle}`");
    }
    // Every query is scoped to the chosen job and instance.
    for (title, e) in &q {
        assert!(e.contains("instance=~\"$instance\""), "panel {title} ignores $instance: {e}");
    }
}

/// Where promtool is, if anywhere on the PATH.
fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("promtool")).find(|p| p.is_file())
}

#[test]
fn the_dashboard_queries_parse_as_promql() {
    let Some(promtool) = promtool() else {
        assert!(
            std::env::var_os("ISOSWITCH_REQUIRE_PROMTOOL").is_none(),
            "ISOSWITCH_REQUIRE_PROMTOOL is set but promtool is not on the PATH"
        );
        eprintln!("promtool not on the PATH: the dashboard's PromQL is not parsed here (CI does)");
        return;
    };
    // Each query becomes a recording rule; `promtool check rules` parses every expression.
    // Grafana's interval variable is not PromQL: a fixed range stands in for it.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let q = queries(&dashboard());
    for (i, (_, e)) in q.iter().enumerate() {
        let expr = e.replace("$__rate_interval", "5m");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::json!(expr)
        ));
    }
    let dir = process::TempDir::new("dashboard-promql");
    let file = dir.path.join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    let out = std::process::Command::new(promtool).args(["check", "rules"]).arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the dashboard's queries do not parse:\n{text}");
    assert!(text.contains(&format!("{} rules found", q.len())), "every query checked:\n{text}");
}
