//! `/metrics` of a freshly started switch process, before any traffic: the build's version
//! (`isoswitch_build_info{version} 1`), each issuer up or not (0/1) apart from how many of
//! its links are up, and every counter the README lists already there, at zero (a counter
//! that appears only when it first counts breaks `rate()` and the alerts built on it).

mod common;
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use common::{MockIssuer, Mode, http_get};

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_switch_shows_its_version_issuer_state_and_every_counter_at_zero() {
    let live = MockIssuer::start(Mode::Approve).await;
    let dead = process::free_port().await;
    let dir = process::TempDir::new("metrics-start");
    let (listen, metrics) = (process::free_port().await, process::free_port().await);
    let config = dir.path.join("switch.toml");
    std::fs::write(
        &config,
        format!(
            "journal = \"off\"\nmetrics = \"{metrics}\"\ndefault_issuer = \"live\"\n\
             [[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"live\"\n[[issuer.link]]\naddr = \"{l}\"\n[[issuer.link]]\naddr = \"{l}\"\n\
             [[issuer]]\nname = \"dead\"\n[[issuer.link]]\naddr = \"{dead}\"\n",
            l = live.addr
        ),
    )
    .unwrap();
    let mut switch = process::start_switch(&config, &dir.path.join("switch.log"));
    process::wait_listening(listen, &mut switch).await;

    // Both links of `live` come up; `dead` never does.
    let t0 = Instant::now();
    let body = loop {
        let body = http_get(metrics, "/metrics").await;
        if sample(&body, "isoswitch_issuer_links_up{issuer=\"live\"}") == Some(2.0) {
            break body;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "live's links did not come up:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(sample(&body, &format!("isoswitch_build_info{{version=\"{version}\"}}")), Some(1.0), "{body}");
    assert_eq!(sample(&body, "isoswitch_issuer_up{issuer=\"live\"}"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "isoswitch_issuer_up{issuer=\"dead\"}"), Some(0.0), "{body}");
    assert_eq!(sample(&body, "isoswitch_issuer_links_up{issuer=\"dead\"}"), Some(0.0), "{body}");
    assert!(body.contains("# TYPE isoswitch_issuer_links_up gauge"), "described: {body}");

    // Every counter the README names is there, at zero: no traffic has been sent.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut names: Vec<&str> = readme
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("isoswitch_") && w.ends_with("_total"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "the README lists the counters: {names:?}");
    for name in names {
        let samples: Vec<&str> =
            body.lines().filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' '])).collect();
        assert!(!samples.is_empty(), "{name} is not shown before it first counts");
        for s in samples {
            assert!(s.ends_with(" 0"), "{name} is not zero: {s}");
        }
    }
    process::signal(&switch, "TERM");
    assert!(process::wait_exit(&mut switch, Duration::from_secs(20)).await.is_some());
}
