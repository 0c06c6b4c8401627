//! `isoswitch journal export|purge` as an operator runs them on a SQLite journal: the
//! export file and its messages, the refusal to replace a different file (exit 3), a purge
//! that deletes only exported days and names the others (exit 3), `--force`, and bad
//! arguments (exit 2).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use isoswitch::journal::{Decided, SettleCycle};
use isoswitch::journal::{Journal, JournalConfig, Status, TxnRecord, business_date};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;
use isoswitch::time::UnixMs;

const DAY: i64 = 86_400_000;
const PAN: &str = "4761739001010010";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let p = std::env::temp_dir().join(format!("isoswitch-cli-journal-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    Scratch(p)
}

fn row(stan: u32, at: i64) -> TxnRecord {
    TxnRecord {
        switch_id: "node".into(),
        received_at: UnixMs::from_i64(at),
        business_date: business_date(UnixMs::from_i64(at), 0).into(),
        terminal_id: "10000001".into(),
        merchant_id: "898340158120001".into(),
        stan: format!("{stan:06}").into(),
        transmission_time: "1124103000".into(),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        amount: 1000,
        pan_masked: Some(isoswitch::iso::mask::mask_pan(PAN).into()),
        pan_hash: Some(isoswitch::journal::PanHasher::new(b"k").hash(PAN)),
        decision: Decided::Forward,
        rc: Some(ResponseCode::APPROVED),
        settle_cycle: SettleCycle::T1,
        status: Some(Status::Approved),
        txn_key: Some(format!("0200 {stan:010}").into()),
        advice_rc: None,
        ..TxnRecord::default()
    }
}

async fn write(path: &Path, rows: Vec<TxnRecord>) {
    let cfg = JournalConfig::Sqlite { path: path.to_path_buf(), full_sync: false };
    let j = tokio::task::spawn_blocking(move || Journal::open(&cfg)).await.unwrap().unwrap();
    for r in rows {
        assert!(j.record(r).await.unwrap());
    }
    tokio::task::spawn_blocking(move || j.barrier_blocking()).await.unwrap().unwrap();
}

fn journal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_isoswitch")).arg("journal").args(args).output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

fn count(path: &Path, day: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row("SELECT COUNT(*) FROM transactions WHERE business_date = ?1", [day], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn export_then_purge_by_hand() {
    let dir = scratch("main");
    let db = dir.0.join("journal.db");
    let out = dir.0.join("exports");
    let now = now_ms();
    let (a, b, kept) = (now - 6 * DAY, now - 5 * DAY, now - DAY);
    let mut rows: Vec<TxnRecord> = (0..40).map(|i| row(i, a + i64::from(i))).collect();
    rows.extend((100..130).map(|i| row(i, b + i64::from(i))));
    rows.extend((200..205).map(|i| row(i, kept)));
    write(&db, rows).await;
    let (day_a, day_b, day_kept) = (
        business_date(UnixMs::from_i64(a), 0),
        business_date(UnixMs::from_i64(b), 0),
        business_date(UnixMs::from_i64(kept), 0),
    );
    let (db_s, out_s) = (db.to_str().unwrap(), out.to_str().unwrap());

    // Export day A, in the dashed form of the date.
    let dashed = format!("{}-{}-{}", &day_a[0..4], &day_a[4..6], &day_a[6..8]);
    let (code, stdout, stderr) = journal(&["export", "--journal", db_s, "--date", &dashed, "--out", out_s]);
    assert_eq!(code, 0, "{stderr}");
    let file = out.join(format!("isoswitch-journal-{day_a}.jsonl"));
    assert!(
        stdout.contains(&format!("exported business day {day_a}: 40 rows to {}", file.display())),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 42);
    assert!(!text.contains(PAN), "no card number in the export");
    // Again: the same file, said so, exit 0.
    let (code, stdout, _) = journal(&["export", "--journal", db_s, "--date", &day_a, "--out", out_s]);
    assert_eq!(code, 0);
    assert!(stdout.contains("already exported"), "{stdout}");
    // A different file under that name is never replaced: exit 3, the file untouched.
    let other = dir.0.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let foreign = other.join(format!("isoswitch-journal-{day_a}.jsonl"));
    std::fs::write(&foreign, "x\n").unwrap();
    let (code, _, stderr) =
        journal(&["export", "--journal", db_s, "--date", &day_a, "--out", other.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("already exists and is not the same export"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "x\n");

    // Purge: day A is exported and goes; day B is not and stays, named; exit 3.
    let (code, stdout, stderr) = journal(&[
        "purge",
        "--journal",
        db_s,
        "--older-than-days",
        "2",
        "--export-dir",
        out_s,
        "--batch-rows",
        "7",
    ]);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("business day {day_a}: 40 rows purged (its export holds 40)")),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("business day {day_b}: not exported")), "{stderr}");
    assert_eq!((count(&db, &day_a), count(&db, &day_b), count(&db, &day_kept)), (0, 30, 5));
    // --force purges without an export; the kept day stays.
    let (code, stdout, stderr) = journal(&["purge", "--journal", db_s, "--older-than-days", "2", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("business day {day_b}: 30 rows purged (--force")), "{stdout}");
    assert_eq!((count(&db, &day_b), count(&db, &day_kept)), (0, 5));
    // Nothing left to purge.
    let (code, stdout, _) =
        journal(&["purge", "--journal", db_s, "--older-than-days", "2", "--export-dir", out_s]);
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing to purge"), "{stdout}");
}

#[test]
fn bad_arguments_exit_2_and_say_what_was_wrong() {
    let dir = scratch("bad");
    let missing = dir.0.join("missing.db");
    let m = missing.to_str().unwrap();
    let out = dir.0.to_str().unwrap();
    for (args, says) in [
        (vec!["export", "--journal", m, "--date", "20261124", "--out", out], "does not exist"),
        (vec!["export", "--journal", m, "--date", "2026-02-30", "--out", out], "--date: `2026-02-30`"),
        (vec!["purge", "--journal", m, "--older-than-days", "0", "--force"], "--older-than-days"),
        (
            vec!["purge", "--journal", m, "--older-than-days", "3", "--force", "--batch-rows", "0"],
            "--batch-rows",
        ),
    ] {
        let (code, _, stderr) = journal(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A purge needs the export directory unless forced (clap's own usage error, exit 2).
    let (code, _, stderr) = journal(&["purge", "--journal", m, "--older-than-days", "3"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--export-dir"), "{stderr}");
}
