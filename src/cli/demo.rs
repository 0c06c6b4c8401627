//! `isoswitch demo`: a switch, two simulated issuers and simulated terminals in one
//! process on loopback, with the journal as shipped (SQLite, FULL: an approval is on disk
//! before the terminal hears of it). The terminals run a short mixed workload (purchases,
//! pre-auths, declines by the issuers' rules, echo tests) through the switch, whose rules
//! route two card ranges to two issuers and price every approval, in two labelled parts:
//! first the latency at a realistic estate load (a paced rate well below capacity, one
//! request in flight per terminal), then the capacity (as fast as replies come, many in
//! flight). Then it prints the journal's count, fees and the merchant settlement.
//! May import: crate::acceptor, crate::config, crate::iso, crate::journal, crate::route,
//! crate::settle, crate::sim, crate::switch, crate::time.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::acceptor::Services;
use crate::config::Config;
use crate::iso::spec;
use crate::journal::{Journal, JournalConfig, PanHasher, Query, business_date};
use crate::route::{self, RuleSet, rules::RuleTexts};
use crate::settle;
use crate::sim::{SimIssuerConfig, SimStop, SimTerminalConfig, run_issuer, run_terminals};
use crate::switch::serve_with;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long the terminals send, in seconds: two fifths at the estate's rate, the rest
    /// as fast as they can.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Simulated terminal connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Requests in flight per connection in the capacity run.
    #[arg(long, default_value_t = 16)]
    pub pipeline: usize,
    /// Requests per second of the realistic estate load (all terminals together, one in
    /// flight each).
    #[arg(long, default_value_t = 2000.0)]
    pub estate_rate: f64,
}

/// The demo estate: the simulated terminals belong to one restaurant (standard merchant
/// category), cards starting 4761 go to issuer A as debit, 4000 to issuer B as credit.
const DEMO_REGISTRY: &str = r#"
utc_offset = "+08:00"

# Every simulated terminal is accepted as this restaurant.
[unknown]
id = "SIMMERCHANT0001"
name = "Demo Restaurant"
mcc = 5812
settlement = "T+1"
"#;

const DEMO_ROUTES: &str = r#"
[default]
issuer = "issuer-a"
card_type = "debit"

[[route]]
prefix = "4761"
issuer = "issuer-a"
card_type = "debit"

[[route]]
prefix = "4000"
issuer = "issuer-b"
card_type = "credit"
"#;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("isoswitch demo: {msg}");
    ExitCode::from(1)
}

pub fn run(a: DemoArgs) -> ExitCode {
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        return fail("--seconds must be between 0 and 3600");
    }
    if a.connections == 0 || a.pipeline == 0 {
        return fail("--connections and --pipeline must be at least 1");
    }
    if !(a.estate_rate >= 1.0 && a.estate_rate <= 1e7) {
        return fail("--estate-rate must be between 1 and 10000000 requests per second");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match rt.block_on(demo(a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn issuer(stop: &CancellationToken) -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let spec = spec::shipped("iso87ascii").ok_or("no iso87ascii spec")?;
    let cfg = SimIssuerConfig { jitter: Duration::from_micros(200), ..SimIssuerConfig::new(spec) };
    tokio::spawn(run_issuer(l, cfg, stop.clone()));
    Ok(addr)
}

async fn demo(a: DemoArgs) -> Result<(), String> {
    let stop = CancellationToken::new();
    let (ia, ib) = (issuer(&stop).await?, issuer(&stop).await?);
    let dir = std::env::temp_dir().join(format!("isoswitch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let journal_path = dir.join("journal.db");
    let text = format!(
        "journal = {journal_path:?}\nmetrics = \"127.0.0.1:0\"\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\n\
         [[issuer]]\nname = \"issuer-a\"\n[[issuer.link]]\naddr = \"{ia}\"\ndeadline_ms = 2000\n\
         [[issuer]]\nname = \"issuer-b\"\n[[issuer.link]]\naddr = \"{ib}\"\ndeadline_ms = 2000\n"
    );
    let cfg = Config::parse("<demo>", &text).map_err(|e| e.to_string())?;
    let rules = RuleSet::from_texts(&RuleTexts {
        registry: Some(("<demo registry>", DEMO_REGISTRY)),
        routes: Some(("<demo routes>", DEMO_ROUTES)),
        ..RuleTexts::default()
    })
    .map_err(|e| e.to_string())?;
    let offset = rules.registry.utc_offset_minutes;
    let jcfg = JournalConfig::Sqlite { path: journal_path.clone(), full_sync: true };
    let journal = Journal::open(&jcfg).map_err(|e| e.to_string())?;
    let services =
        Services::new(&cfg, route::Router::new(rules), Some(journal.clone()), PanHasher::new(b"demo key"))
            .map_err(|e| e.to_string())?;
    let switch = serve_with(cfg, Arc::new(services), stop.clone()).await.map_err(|e| e.to_string())?;
    if !switch.wait_issuers_up(Duration::from_secs(5)).await {
        return Err("the simulated issuers did not come up".into());
    }
    let addr = switch.listen_addrs().first().copied().ok_or("no listener")?;
    println!(
        "isoswitch demo: switch on {addr}, issuers on {ia} and {ib}, metrics on http://{}/metrics",
        switch.metrics_addr().map(|m| m.to_string()).unwrap_or_default()
    );
    println!(
        "journal: SQLite, synchronous FULL (each approval on disk before the terminal hears of it)\n\
         workload: purchases, pre-auths, echo tests; some declined by the issuers\n"
    );
    let spec = spec::shipped("iso87ascii").ok_or("no iso87ascii spec")?;
    let estate_s = a.seconds * 0.4;
    println!(
        "1. latency at a realistic estate load: {} requests/s offered by {} terminals, one in flight each, for {:.1} s (well below capacity)",
        a.estate_rate, a.connections, estate_s
    );
    let estate = SimTerminalConfig {
        connections: a.connections,
        pipeline: 1,
        rate: Some(a.estate_rate),
        stop: SimStop::Duration(Duration::from_secs_f64(estate_s)),
        ..SimTerminalConfig::new(addr, spec.clone())
    };
    let paced = run_terminals(estate).await.map_err(|e| e.to_string())?;
    println!(
        "   latency: p50 {:.2} ms  p99 {:.2} ms  ({:.0} of the {} requests/s offered answered)\n{paced}\n",
        paced.latency_us(0.5) / 1e3,
        paced.latency_us(0.99) / 1e3,
        paced.throughput_per_s(),
        a.estate_rate
    );
    let capacity_s = a.seconds - estate_s;
    println!(
        "2. capacity: {} terminals x {} in flight, as fast as replies come, for {:.1} s",
        a.connections, a.pipeline, capacity_s
    );
    let tcfg = SimTerminalConfig {
        connections: a.connections,
        pipeline: a.pipeline,
        stop: SimStop::Duration(Duration::from_secs_f64(capacity_s)),
        ..SimTerminalConfig::new(addr, spec)
    };
    let report = run_terminals(tcfg).await.map_err(|e| e.to_string())?;
    stop.cancel();
    switch.join().await;

    println!(
        "   capacity: {:.0} transactions/s (latency p50 {:.2} ms, p99 {:.2} ms with {} in flight)\n{report}",
        report.throughput_per_s(),
        report.latency_us(0.5) / 1e3,
        report.latency_us(0.99) / 1e3,
        a.connections * a.pipeline
    );
    // Past what the journal commits within its budget, requests are shed with 91 before
    // any issuer (not journalled): say so, so that a new user does not read them as faults
    // (`isoswitch_journal_shed_total` on the metrics port counts exactly those).
    if let Some(shed) = report.rc.get("91").filter(|n| **n > 0) {
        println!(
            "   {shed} answered 91: shed at once when the journal was behind its budget (journal_budget_ms; not journalled), or no issuer link up"
        );
    }
    let date = business_date(crate::time::now(), offset);
    let rows = journal.query(Query::Day(date.clone())).await.map_err(|e| e.to_string())?;
    let approved = rows.iter().filter(|r| r.approved()).count();
    let fees: i64 = rows.iter().map(|r| r.fee).sum();
    println!(
        "journal: {} transactions recorded, {approved} approved, fees_minor {fees} (minor units: fen)",
        rows.len(),
    );
    println!(
        "  ({}; query it with sqlite3, settle it with `isoswitch settle --journal {} --date {date} --utc-offset-minutes {offset}`)",
        journal_path.display(),
        journal_path.display()
    );
    let lines = settle::settle(&rows, &date, &[12 * 60, 18 * 60], offset).map_err(|e| e.to_string())?;
    // The same columns, in the same unit, as `isoswitch settle`.
    println!("\nmerchant settlement for {date} (money in minor units, fen):");
    println!(
        "  {:<16} {:>5} {:>12} {:>7} {:>14} {:>14} {:>12} {:>14}",
        "merchant_id", "cycle", "window", "count", "gross_minor", "refunds_minor", "fees_minor", "net_minor"
    );
    for l in &lines {
        println!(
            "  {:<16} {:>5} {:>12} {:>7} {:>14} {:>14} {:>12} {:>14}",
            l.merchant_id,
            l.cycle.as_str(),
            l.window,
            l.count,
            l.gross,
            l.refunds,
            l.fees,
            l.net
        );
    }
    let mismatches = paced.mismatches + report.mismatches;
    if mismatches > 0 {
        return Err(format!("{mismatches} replies did not match their requests"));
    }
    Ok(())
}
