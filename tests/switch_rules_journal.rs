//! The routing core and the journal through the running switch, over real sockets on
//! 127.0.0.1: the example estate's rules decide (unknown terminal 03, suspended 58, the
//! supplementary-data rule with field 44, two BIN routes to two issuers), every outcome
//! is journalled with its fee before the terminal hears of it, 0500 batch settlement is
//! balanced (00) or not (95), and `isoswitch settle` adds up to the journal.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{MockIssuer, Mode, Terminal, ascii};
use isoswitch::config::Config;
use isoswitch::iso::Message;
use isoswitch::journal::business_date;
use isoswitch::switch::{RunningSwitch, serve};
use isoswitch::time::UnixMs;
use tokio_util::sync::CancellationToken;

const RESTAURANT_TID: &str = "10000001";
const RESTAURANT_MID: &str = "898340158120001";
const SUPERMARKET_TID: &str = "10000002";
const SUPERMARKET_MID: &str = "898340154110001";
const JEWELLER_TID: &str = "10000004";
const JEWELLER_MID: &str = "898340159440001";
const SUSPENDED_TID: &str = "10000009";

/// A Luhn-valid card number from a prefix.
fn card(prefix: &str, len: usize) -> String {
    let mut digits: Vec<u32> = prefix.chars().filter_map(|c| c.to_digit(10)).collect();
    while digits.len() < len - 1 {
        digits.push((digits.len() as u32 * 7) % 10);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push((10 - sum % 10) % 10);
    digits.iter().map(|d| char::from_digit(*d, 10).unwrap()).collect()
}

fn purchase(pan: &str, tid: &str, mid: &str, stan: u32, amount: u64) -> Message {
    let mut m = Message::new(ascii(), "0200").unwrap();
    m.set(2, pan).unwrap();
    m.set(3, "000000").unwrap();
    m.set_number(4, amount).unwrap();
    m.set(7, &format!("1124{:06}", 100_000 + stan)).unwrap();
    m.set_number(11, u64::from(stan)).unwrap();
    m.set(12, "103000").unwrap();
    m.set(13, "1124").unwrap();
    m.set(37, &format!("R{stan:011}")).unwrap();
    m.set(41, tid).unwrap();
    m.set(42, mid).unwrap();
    m.set(49, "156").unwrap();
    m
}

struct Estate {
    switch: RunningSwitch,
    stop: CancellationToken,
    a: MockIssuer,
    b: MockIssuer,
    journal: PathBuf,
    _dir: TempDir,
}

async fn estate() -> Estate {
    estate_with("").await
}

async fn estate_with(extra: &str) -> Estate {
    let a = MockIssuer::start(Mode::Approve).await;
    let b = MockIssuer::start(Mode::Approve).await;
    let dir = TempDir::new();
    let journal = dir.0.join("journal.db");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/rules");
    let text = format!(
        "{extra}journal = {journal:?}\nrules = {rules:?}\npan_key = \"00112233445566778899aabbccddeeff\"\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\n\
         [[issuer]]\nname = \"issuer-a\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 2000\n\
         [[issuer]]\nname = \"issuer-b\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 2000\n",
        a.addr, b.addr
    );
    let cfg = Config::parse("estate.toml", &text).unwrap();
    let stop = CancellationToken::new();
    let switch = serve(cfg, stop.clone()).await.unwrap();
    assert!(switch.wait_issuers_up(Duration::from_secs(5)).await);
    Estate { switch, stop, a, b, journal, _dir: dir }
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "isoswitch-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// terminal, STAN, rc, amount, fee, masked PAN, transaction type
type Row = (String, String, String, i64, i64, Option<String>, String);

fn rows(journal: &Path) -> Vec<Row> {
    let c = rusqlite::Connection::open(journal).unwrap();
    let mut s = c
        .prepare(
            "SELECT terminal_id, stan, rc, amount, fee, pan_masked, txn_type FROM transactions ORDER BY id",
        )
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(t, s, rc, a, f, p, ty): (String, String, String, i64, i64, Option<String>, String)| {
            (t, s, rc, a, f, p, ty)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_decide_through_the_switch_and_every_outcome_is_journalled() {
    let e = estate().await;
    let addr = e.switch.listen_addrs()[0];
    let mut t = Terminal::connect(addr).await;
    let debit = card("622202", 16);
    let credit = card("622588", 16);

    // Unknown terminal: 03. Suspended terminal: 58. Neither reaches an issuer.
    let rep = t.exchange(&purchase(&debit, "99999999", RESTAURANT_MID, 1, 1_000)).await;
    assert_eq!(rep.text(39).as_deref(), Some("03"));
    let rep = t.exchange(&purchase(&debit, SUSPENDED_TID, RESTAURANT_MID, 2, 1_000)).await;
    assert_eq!(rep.text(39).as_deref(), Some("58"));
    assert_eq!(e.a.requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Two BIN routes reach two issuers.
    let rep = t.exchange(&purchase(&debit, RESTAURANT_TID, RESTAURANT_MID, 3, 10_000)).await;
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    assert_eq!(rep.text(11).as_deref(), Some("000003"));
    let rep = t.exchange(&purchase(&credit, SUPERMARKET_TID, SUPERMARKET_MID, 4, 20_000)).await;
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    assert_eq!(e.a.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(e.b.requests.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A large purchase without the supplementary data: the configured code and field 44.
    let big = purchase(&debit, JEWELLER_TID, JEWELLER_MID, 5, 6_000_000);
    let rep = t.exchange(&big).await;
    assert_eq!(rep.text(39).as_deref(), Some("01"));
    let why = rep.text(44).expect("field 44 says what is missing").into_owned();
    assert!(why.contains("48") && why.contains("61"), "{why}");
    assert_eq!(e.a.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    // With the data it is forwarded.
    let mut with = purchase(&debit, JEWELLER_TID, JEWELLER_MID, 6, 6_000_000);
    with.set(48, "ID110101199001011234").unwrap();
    with.set(61, "CARDHOLDER ID VERIFIED").unwrap();
    let rep = t.exchange(&with).await;
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    assert_eq!(e.a.requests.load(std::sync::atomic::Ordering::SeqCst), 2);

    // The journal holds every outcome, fees on approvals only, no full PAN anywhere.
    let r = rows(&e.journal);
    let rcs: Vec<&str> = r.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(rcs, ["03", "58", "00", "00", "01", "00"]);
    let rules = isoswitch::route::RuleSet::load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/rules"),
    )
    .unwrap();
    let now = isoswitch::time::UnixMs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64,
    );
    for (row, (pan, tid, mid, stan, amount)) in [
        (&r[2], (&debit, RESTAURANT_TID, RESTAURANT_MID, 3, 10_000)),
        (&r[3], (&credit, SUPERMARKET_TID, SUPERMARKET_MID, 4, 20_000)),
    ] {
        let isoswitch::route::Decision::Forward(f) =
            rules.decide(&purchase(pan, tid, mid, stan, amount), now)
        else {
            panic!("forward expected")
        };
        assert!(f.fee > 0);
        assert_eq!(row.4, f.fee, "journalled fee of STAN {stan}");
        assert_eq!(row.3, amount as i64);
        assert_eq!(row.6, "purchase");
    }
    assert!(r.iter().filter(|x| x.2 != "00").all(|x| x.4 == 0), "no fee on a decline");
    let c = rusqlite::Connection::open(&e.journal).unwrap();
    let mut s = c.prepare("SELECT * FROM transactions").unwrap();
    let n = s.column_count();
    let mut q = s.query([]).unwrap();
    while let Some(row) = q.next().unwrap() {
        for i in 0..n {
            let v = format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap());
            assert!(!v.contains(&debit) && !v.contains(&credit), "column {i} holds a full PAN");
        }
    }
    e.stop.cancel();
    e.switch.join().await;
}

fn settlement(m: &mut Message, debits: u64, debit_amount: u64) {
    m.set_number(76, debits).unwrap();
    m.set_number(88, debit_amount).unwrap();
    m.set_number(74, 0).unwrap();
    m.set_number(86, 0).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_settlement_balances_against_the_journal_and_settle_adds_up() {
    let e = estate().await;
    let addr = e.switch.listen_addrs()[0];
    let mut t = Terminal::connect(addr).await;
    let debit = card("622202", 16);
    let mut total = 0u64;
    for (i, amount) in [12_345u64, 500, 99_999, 1].into_iter().enumerate() {
        let rep = t.exchange(&purchase(&debit, RESTAURANT_TID, RESTAURANT_MID, 10 + i as u32, amount)).await;
        assert_eq!(rep.text(39).as_deref(), Some("00"));
        total += amount;
    }
    let mut base = Message::new(ascii(), "0500").unwrap();
    base.set(7, "1124235959").unwrap().set(11, "000099").unwrap();
    base.set(41, RESTAURANT_TID).unwrap().set(42, RESTAURANT_MID).unwrap();

    // Totals that differ: 95, and the batch stays open.
    let mut wrong = base.clone();
    settlement(&mut wrong, 4, total + 1);
    let rep = t.exchange(&wrong).await;
    assert_eq!((rep.mti(), rep.text(39).as_deref()), ("0510", Some("95")));
    // Totals that match: 00, and the batch closes.
    let mut right = base.clone();
    right.set(11, "000100").unwrap();
    settlement(&mut right, 4, total);
    let rep = t.exchange(&right).await;
    assert_eq!(rep.text(39).as_deref(), Some("00"));
    // A second settlement of the now empty batch balances only at zero.
    let mut again = base.clone();
    again.set(11, "000101").unwrap();
    settlement(&mut again, 4, total);
    assert_eq!(t.exchange(&again).await.text(39).as_deref(), Some("95"));
    e.stop.cancel();
    e.switch.join().await;

    // `isoswitch settle` for the business day (the estate runs on UTC+8) adds up to the journal.
    let v = settle_today(&e.journal);
    let r = rows(&e.journal);
    let fees: i64 = r.iter().map(|x| x.4).sum();
    assert_eq!(v["totals"]["gross_minor"], total as i64);
    assert_eq!(v["totals"]["fees_minor"], fees);
    assert_eq!(v["totals"]["net_minor"], total as i64 - fees);
    assert_eq!(v["totals"]["count"], 4);
    assert_eq!(v["lines"][0]["merchant_id"], RESTAURANT_MID);
}

/// `isoswitch settle --format json` over the journal for today's business day (the example
/// estate runs on UTC+8), as a user runs it.
fn settle_today(journal: &Path) -> serde_json::Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let date = business_date(UnixMs::from_i64(now), 480);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(["settle", "--journal"])
        .arg(journal)
        .args(["--date", &date, "--format", "json", "--utc-offset-minutes", "480"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One HTTP request to the admin API; (status, body).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    s.write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_looks_up_suspends_and_reloads() {
    const TOKEN: &str = "admin-token-0123456789";
    let e = estate_with(&format!("admin = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n")).await;
    let admin = e.switch.admin_addr().expect("admin API served");
    let mut t = Terminal::connect(e.switch.listen_addrs()[0]).await;
    let debit = card("622202", 16);
    assert_eq!(
        t.exchange(&purchase(&debit, RESTAURANT_TID, RESTAURANT_MID, 31, 5_000)).await.text(39).as_deref(),
        Some("00")
    );

    assert_eq!(http(admin, "GET", "/health", None).await.0, 200);
    assert_eq!(http(admin, "GET", "/ready", None).await.0, 200);
    assert_eq!(http(admin, "GET", "/transactions?rrn=R00000000031", None).await.0, 401);
    assert_eq!(
        http(admin, "GET", "/transactions?rrn=R00000000031", Some("wrong-token-0123456789")).await.0,
        401
    );
    let (status, body) = http(admin, "GET", "/transactions?rrn=R00000000031", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["stan"], "000031");
    assert_eq!(v[0]["rc"], "00");
    assert!(!body.contains(&debit), "the API never shows a full PAN");
    let (_, body) = http(
        admin,
        "GET",
        &format!(
            "/transactions?terminal={RESTAURANT_TID}&stan=000031&date={}",
            v[0]["business_date"].as_str().unwrap()
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()[0]["stan"], "000031");
    let (_, body) =
        http(admin, "GET", &format!("/terminals/{RESTAURANT_TID}/transactions?limit=5"), Some(TOKEN)).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap().as_array().unwrap().len(), 1);

    // Suspend: 58; activate: served again.
    assert_eq!(
        http(admin, "POST", &format!("/terminals/{RESTAURANT_TID}/suspend"), Some(TOKEN)).await.0,
        200
    );
    assert_eq!(
        t.exchange(&purchase(&debit, RESTAURANT_TID, RESTAURANT_MID, 32, 5_000)).await.text(39).as_deref(),
        Some("58")
    );
    assert_eq!(
        http(admin, "POST", &format!("/terminals/{RESTAURANT_TID}/activate"), Some(TOKEN)).await.0,
        200
    );
    assert_eq!(
        t.exchange(&purchase(&debit, RESTAURANT_TID, RESTAURANT_MID, 33, 5_000)).await.text(39).as_deref(),
        Some("00")
    );
    let (status, body) = http(admin, "POST", "/rules/reload", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(http(admin, "GET", "/nothing", Some(TOKEN)).await.0, 404);
    e.stop.cancel();
    e.switch.join().await;
}

/// A Luhn-valid card number: `prefix`, then `n`, padded to 16 digits.
fn card_n(prefix: &str, n: u32) -> String {
    card(&format!("{prefix}{n:06}"), 16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_traffic_over_every_fee_class_settles_to_the_journal_exactly() {
    let e = estate().await;
    let mut t = Terminal::connect(e.switch.listen_addrs()[0]).await;
    // (terminal, merchant): standard, livelihood T+0, welfare, standard large, livelihood T+0, own plan.
    let shops = [
        ("10000001", "898340158120001"),
        ("10000002", "898340154110001"),
        ("10000003", "898340180620001"),
        ("10000004", "898340159440001"),
        ("10000005", "898340142140001"),
        ("10000006", "898340159990001"),
    ];
    let cards = ["622202", "622588", "623456", "62271234"];
    let mut stan = 100u32;
    let mut approvals = 0;
    for (i, (tid, mid)) in shops.iter().enumerate() {
        for (k, prefix) in cards.iter().enumerate() {
            for j in 0..3u64 {
                stan += 1;
                // Some amounts end in 51: the issuer declines those.
                let amount = 1_000 + 137 * (i as u64 + 1) * (k as u64 + 1) + 51 * (j % 2) * 100 + j;
                let amount = if j == 2 { amount - amount % 100 + 51 } else { amount };
                let req = purchase(&card_n(prefix, stan), tid, mid, stan, amount);
                let rc = t.exchange(&req).await.text(39).map(|s| s.into_owned());
                if rc.as_deref() == Some("00") {
                    approvals += 1;
                }
            }
            // One refund per shop and card type.
            stan += 1;
            let mut refund = purchase(&card_n(prefix, stan), tid, mid, stan, 250);
            refund.set(3, "200000").unwrap();
            assert_eq!(t.exchange(&refund).await.text(39).as_deref(), Some("00"), "refund at {tid}");
        }
    }
    assert!(approvals >= 40, "{approvals} approvals");
    // A batch upload is recorded and acknowledged, and does not count in settlement.
    let mut up = purchase(&card_n("622202", 999), "10000001", "898340158120001", 999, 4_444);
    up.set_mti("0320").unwrap();
    let rep = t.exchange(&up).await;
    assert_eq!((rep.mti(), rep.text(39).as_deref()), ("0330", Some("00")));
    e.stop.cancel();
    e.switch.join().await;

    let v = settle_today(&e.journal);

    // The journal's own sums, straight from SQL.
    let c = rusqlite::Connection::open(&e.journal).unwrap();
    let sum =
        |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).unwrap().unwrap_or(0) };
    let gross = sum("SELECT sum(amount) FROM transactions WHERE rc = '00' AND txn_type = 'purchase'");
    let refunds = sum("SELECT sum(amount) FROM transactions WHERE rc = '00' AND txn_type = 'refund'");
    let fees =
        sum("SELECT sum(fee) FROM transactions WHERE rc = '00' AND txn_type IN ('purchase', 'refund')");
    assert_eq!(v["totals"]["gross_minor"], gross);
    assert_eq!(v["totals"]["refunds_minor"], refunds);
    assert_eq!(v["totals"]["fees_minor"], fees);
    assert_eq!(v["totals"]["net_minor"], gross - refunds - fees);
    // Per merchant too, and every fee class shows: 60 bp, 38 bp, 0 bp at least.
    let mut rates = std::collections::BTreeSet::new();
    for (_, mid) in shops {
        let g = sum(&format!(
            "SELECT sum(amount) FROM transactions WHERE rc = '00' AND txn_type = 'purchase' AND merchant_id = '{mid}'"
        ));
        let f = sum(&format!(
            "SELECT sum(fee) FROM transactions WHERE rc = '00' AND txn_type IN ('purchase', 'refund') AND merchant_id = '{mid}'"
        ));
        let lines: Vec<&serde_json::Value> =
            v["lines"].as_array().unwrap().iter().filter(|l| l["merchant_id"] == mid).collect();
        assert!(!lines.is_empty(), "{mid} settles");
        assert_eq!(lines.iter().map(|l| l["gross_minor"].as_i64().unwrap()).sum::<i64>(), g, "{mid} gross");
        assert_eq!(lines.iter().map(|l| l["fees_minor"].as_i64().unwrap()).sum::<i64>(), f, "{mid} fees");
        let mut q = c
            .prepare(&format!("SELECT amount, fee FROM transactions WHERE rc = '00' AND txn_type = 'purchase' AND merchant_id = '{mid}'"))
            .unwrap();
        for (a, f) in
            q.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).unwrap().map(Result::unwrap)
        {
            rates.insert((f * 10_000 + a / 2) / a);
        }
    }
    assert!(rates.contains(&0) && rates.len() >= 3, "fee rates in basis points: {rates:?}");
    let uploads = sum("SELECT count(*) FROM transactions WHERE txn_type = 'batch_upload'");
    assert_eq!(uploads, 1);
}
