//! UnionPay-style terminal batch numbers (field 60.2) through a real switch on 127.0.0.1
//! with a SQLite journal in a temporary directory: each journal row keeps its terminal's
//! batch number; a void naming its original in field 61 is matched on the original's batch
//! too (another batch's transaction with the same trace is not it: 25); a 0500 settles the
//! rows of the batch it names and leaves the next batch's open; and the "batch already
//! settled" check (77) holds after the switch restarts on the same journal.

mod common;
#[path = "common/pos.rs"]
mod pos;

use common::{MockIssuer, Mode};
use pos::{Pos, switch, tempdir};

/// (terminal_batch, batch, status) of a terminal's row by STAN and MTI.
fn row(
    c: &rusqlite::Connection,
    tid: &str,
    stan: u32,
    mti: &str,
) -> (Option<String>, Option<String>, String) {
    c.query_row(
        "SELECT terminal_batch, batch, COALESCE(status, '') FROM transactions \
         WHERE terminal_id = ?1 AND stan = ?2 AND mti = ?3",
        rusqlite::params![tid, format!("{stan:06}"), mti],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voids_and_settlement_follow_the_terminal_batch_number() {
    let dir = tempdir("cup-batch");
    let issuer = MockIssuer::start(Mode::Approve).await;
    let (sw, stop) = switch(&dir, &issuer).await;
    let mut pos = Pos::connect(sw.listen_addrs()[0], "10000011").await;

    // Batch 1: a purchase with trace 5. The terminal then moves to batch 2 (its batch 1
    // still open at the switch) and reuses trace 5 on another day's counter.
    assert_eq!(pos.rc(&pos.purchase(5, 1, 1_000)).await, "00");
    assert_eq!(pos.rc(&pos.purchase(6, 2, 2_000)).await, "00");
    assert_eq!(pos.rc(&pos.purchase(7, 2, 3_000)).await, "00");
    // A void naming trace 6 in batch 1: trace 6 exists, but in batch 2, so it is not the
    // transaction named.
    assert_eq!(pos.rc(&pos.void(8, 2, 2_000, 1, 6)).await, "25");
    // Named with its own batch it is found and voided.
    assert_eq!(pos.rc(&pos.void(9, 2, 2_000, 2, 6)).await, "00");

    // Batch 1 settles with its own totals only (1 000 once), not batch 2's.
    assert_eq!(pos.rc(&pos.settle(10, 2, 99_999, 9)).await, "95", "wrong totals are not balanced");
    assert_eq!(pos.rc(&pos.settle(11, 1, 1_000, 1)).await, "00");
    // Batch 1 is closed (77); batch 2 is still open and settles with its own totals.
    assert_eq!(pos.rc(&pos.purchase(12, 1, 1_100)).await, "77");
    assert_eq!(pos.rc(&pos.settle(13, 2, 3_000, 1)).await, "00");
    stop.cancel();
    sw.join().await;

    let c = rusqlite::Connection::open(dir.join("journal.db")).unwrap();
    let (tb, b1, st) = row(&c, "10000011", 5, "0200");
    assert_eq!((tb.as_deref(), st.as_str()), (Some("000001"), "approved"));
    assert!(b1.as_deref().is_some_and(|b| b.starts_with("10000011-000001-")), "batch 1 closed: {b1:?}");
    let (tb, _, st) = row(&c, "10000011", 6, "0200");
    assert_eq!((tb.as_deref(), st.as_str()), (Some("000002"), "voided"));
    let (tb, b2, _) = row(&c, "10000011", 7, "0200");
    assert_eq!(tb.as_deref(), Some("000002"));
    assert!(b2.as_deref().is_some_and(|b| b.starts_with("10000011-000002-")), "batch 2 closed apart: {b2:?}");
    assert_eq!(row(&c, "10000011", 8, "0200").0.as_deref(), Some("000002"), "a decline keeps its batch too");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_settled_batch_check_survives_a_restart() {
    let dir = tempdir("cup-batch-restart");
    let issuer = MockIssuer::start(Mode::Approve).await;
    {
        let (sw, stop) = switch(&dir, &issuer).await;
        let mut pos = Pos::connect(sw.listen_addrs()[0], "10000021").await;
        assert_eq!(pos.rc(&pos.purchase(1, 3, 1_000)).await, "00");
        assert_eq!(pos.rc(&pos.settle(2, 3, 1_000, 1)).await, "00");
        assert_eq!(pos.rc(&pos.purchase(3, 3, 1_001)).await, "77");
        stop.cancel();
        sw.join().await;
    }
    // The same journal, a new switch: nothing in memory, the journal knows batch 3 closed.
    let (sw, stop) = switch(&dir, &issuer).await;
    let mut pos = Pos::connect(sw.listen_addrs()[0], "10000021").await;
    assert_eq!(pos.rc(&pos.purchase(4, 3, 1_002)).await, "77", "batch 3 is still settled");
    assert_eq!(pos.rc(&pos.purchase(5, 2, 1_003)).await, "77", "an earlier batch too");
    assert_eq!(pos.rc(&pos.purchase(6, 4, 1_004)).await, "00", "the next batch is open");
    // A terminal the journal has never settled is not held to anyone's batch.
    let mut other = Pos::connect(sw.listen_addrs()[0], "10000022").await;
    assert_eq!(other.rc(&other.purchase(1, 1, 1_005)).await, "00");
    stop.cancel();
    sw.join().await;
    let amounts = issuer.stats.amounts.lock().unwrap().clone();
    for stale in [1_001, 1_002, 1_003] {
        assert!(!amounts.contains(&stale), "a request in a settled batch was forwarded ({stale})");
    }
    assert!(amounts.contains(&1_004) && amounts.contains(&1_005));
    let _ = std::fs::remove_dir_all(&dir);
}
