//! Reconciliation of an in-doubt log against a journal, table-driven, on SQLite and on
//! PostgreSQL (ignored unless `ISOSWITCH_TEST_PG` is set, or under CI): a request whose answer the journal holds
//! is left alone; one without a row, with a claim only, with a 68 row or with another
//! switch STAN gets a reversal, once (a second reconciliation of the same requests queues
//! nothing); a segment sealed under another key refuses the start, naming the file, and
//! is kept.

#[path = "common/pg.rs"]
mod pg;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use isoswitch::config::Config;
use isoswitch::iso::{Message, spec};
use isoswitch::issuer::SafStore;
use isoswitch::issuer::indoubt::{InDoubt, IssuerLog, issuer_dir, segments};
use isoswitch::journal::Decided;
use isoswitch::journal::saf_store::{SafKey, SqlSaf};
use isoswitch::journal::{Journal, JournalConfig, TxnRecord};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::switch::reconcile::{JournalSettled, Reconciled, reconcile};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// The request as the switch wrote it: terminal STAN `t`, switch STAN `s`.
fn written(s: u32) -> Message {
    let mut m = Message::new(spec::shipped("iso87ascii").unwrap(), "0200").unwrap();
    m.set(2, "4761739001010135").unwrap().set(3, "000000").unwrap().set_number(4, 1500).unwrap();
    m.set(7, "1124103000").unwrap().set_number(11, u64::from(s)).unwrap();
    m.set(41, "TERM0001").unwrap().set(42, "MERCHANT0000001").unwrap();
    m
}

fn row(t: u32, rc: &str, switch_stan: Option<u32>) -> TxnRecord {
    TxnRecord {
        switch_id: "n".into(),
        business_date: "20261124".into(),
        terminal_id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        stan: format!("{t:06}").into(),
        switch_stan: switch_stan.map(|s| format!("{s:06}").into()),
        transmission_time: "1124103000".into(),
        txn_key: Some("0200 1124103000".into()),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        decision: Decided::Forward,
        rc: ResponseCode::parse(rc),
        ..TxnRecord::default()
    }
}

/// (terminal STAN, switch STAN, journal row (rc, switch STAN), reversed?)
type Case = (u32, u32, Option<(&'static str, Option<u32>)>, bool);

/// A store call off the runtime's threads (the PostgreSQL store blocks on its own runtime).
async fn blk<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn case(jc: JournalConfig, dir: PathBuf) {
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = Config::parse(
        "t.toml",
        "[[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"127.0.0.1:9\"\nspec = \"iso87ascii\"\n",
    )
    .unwrap();
    let j2 = jc.clone();
    let journal = tokio::task::spawn_blocking(move || Journal::open(&j2)).await.unwrap().unwrap();
    let j3 = jc.clone();
    let saf: Arc<dyn SafStore> = tokio::task::spawn_blocking(move || {
        SqlSaf::open(&j3, SafKey::from_hex(KEY).unwrap()).unwrap().shared()
    })
    .await
    .unwrap();
    let table: &[Case] = &[
        (1, 900_001, Some(("00", Some(900_001))), false), // approved, answer journalled
        (2, 900_002, Some(("05", Some(900_002))), false), // declined by the issuer
        (3, 900_003, None, true),                         // no row: the crash came first
        (4, 900_004, Some(("", None)), true),             // a claim without outcome
        (5, 900_005, Some(("68", None)), true),           // timed out (reversal maybe lost)
        (6, 900_006, Some(("00", Some(800_006))), true),  // another forward's answer
        (7, 900_007, Some(("05", None)), false),          // answered, no STAN recorded
    ];
    for (t, _, r, _) in table {
        if let Some((rc, sw)) = r {
            journal.record(row(*t, rc, *sw)).await.unwrap();
        }
    }
    let key = SafKey::from_hex(KEY).unwrap().aead();
    let settled = Arc::new(JournalSettled(journal.clone()));
    let log_cfg = InDoubt {
        dir: dir.clone(),
        key: key.clone(),
        rotate: Duration::from_secs(60),
        fsync: false,
        settled,
        lock: Arc::new(isoswitch::issuer::indoubt::lock_dir(&dir).unwrap()),
    };
    let write = || {
        let log = IssuerLog::new("bank".into(), &log_cfg).unwrap();
        let mut w = log.writer(0);
        for (t, s, _, _) in table {
            w.add(format!("{t:06}").as_bytes(), &written(*s).to_bytes().unwrap());
        }
        w.flush();
    };
    let run = |k: ring::aead::LessSafeKey| {
        let (c, d, j, s) = (cfg.clone(), dir.clone(), journal.clone(), saf.clone());
        tokio::task::spawn_blocking(move || reconcile(&c, &d, &k, &j, &s))
    };
    write();
    let got = run(key.clone()).await.unwrap().unwrap();
    let want_rev = table.iter().filter(|c| c.3).count();
    let want = Reconciled {
        segments: 1,
        requests: table.len(),
        answered: table.len() - want_rev,
        reversed: want_rev,
        already_queued: 0,
        unreadable: 0,
    };
    assert_eq!(got, want);
    assert!(segments(&issuer_dir(&dir, "bank")).unwrap().is_empty(), "segments deleted");
    let s = saf.clone();
    assert_eq!(blk(move || s.depth("bank").unwrap()).await, want_rev as u64);
    let s = saf.clone();
    let due = blk(move || s.due("bank", &spec::shipped("iso87ascii").unwrap(), i64::MAX, 100).unwrap()).await;
    let mut stans: Vec<String> = due.iter().map(|i| i.field90[4..10].to_string()).collect();
    stans.sort();
    let expect: Vec<String> = table.iter().filter(|c| c.3).map(|c| format!("{:06}", c.1)).collect();
    assert_eq!(stans, expect);
    for i in &due {
        assert_eq!(i.reversal.mti(), "0400");
        assert_eq!(i.reversal.text(39).as_deref(), Some("68"));
        assert_eq!(i.reversal.text(2).as_deref(), Some("4761739001010135"));
    }

    // The same requests again (a crash during reconciliation): nothing queued twice.
    write();
    let again = run(key.clone()).await.unwrap().unwrap();
    assert_eq!((again.reversed, again.already_queued), (0, want_rev));
    let s = saf.clone();
    assert_eq!(blk(move || s.depth("bank").unwrap()).await, want_rev as u64);

    // Another key: the start is refused, the file named, the segment kept.
    write();
    let e = run(SafKey::from_hex(OTHER).unwrap().aead()).await.unwrap().unwrap_err().to_string();
    let left = segments(&issuer_dir(&dir, "bank")).unwrap();
    assert_eq!(left.len(), 1);
    assert!(e.contains(&left[0].1.display().to_string()), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_reverses_exactly_what_the_journal_does_not_answer() {
    let base = std::env::temp_dir().join(format!("isoswitch-reconcile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let jc = JournalConfig::Sqlite { path: base.join("j.db"), full_sync: false };
    case(jc, base.join("j.db.indoubt")).await;
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn reconciliation_on_postgres() {
    let base = std::env::temp_dir().join(format!("isoswitch-reconcile-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    // A database of its own, so that rows and reversals of other runs do not count.
    let url = pg::fresh_database(&format!("isoswitch_reconcile_{}", std::process::id())).await;
    case(JournalConfig::Postgres { url }, base.join("pg.indoubt")).await;
    let _ = std::fs::remove_dir_all(&base);
}
