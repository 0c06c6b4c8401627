//! The UnionPay-style pre-authorisation family through a real switch on 127.0.0.1 with a
//! SQLite journal: a pre-authorisation void (0100, 60.1 = 11) releases the hold and marks
//! it voided, after which it cannot be completed (25); a completion (0200, 60.1 = 20) uses
//! its pre-authorisation once (marked completed; a second completion gets 25); a
//! completion void (0200, 60.1 = 21) voids the completion; a completion advice (0220,
//! 60.1 = 24) completes its pre-authorisation too; and the batch settlement counts the
//! completions left, never the holds.

mod common;
#[path = "common/pos.rs"]
mod pos;

use std::sync::atomic::Ordering;

use common::{MockIssuer, Mode};
use pos::{Pos, switch, tempdir};

const TID: &str = "10000031";

/// (status, fee, txn_type) of the terminal's row with this trace.
fn row(c: &rusqlite::Connection, stan: u32) -> (String, i64, String) {
    c.query_row(
        "SELECT COALESCE(status, ''), fee, txn_type FROM transactions WHERE terminal_id = ?1 AND stan = ?2",
        rusqlite::params![TID, format!("{stan:06}")],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

/// A request of the pre-authorisation family naming trace `of` of batch 1 in field 61 and
/// the pre-authorisation's code in 38.
fn naming(
    pos: &Pos,
    mti: &str,
    kind: &str,
    stan: u32,
    pc: &str,
    amount: u64,
    of: u32,
) -> isoswitch::iso::Message {
    let mut m = pos.card(mti, kind, stan, 1, pc, amount);
    m.set(61, &format!("{:06}{of:06}", 1)).unwrap().set(38, "AUTH01").unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_authorisations_are_voided_completed_once_and_settled_by_their_completions() {
    let dir = tempdir("cup-preauth");
    let issuer = MockIssuer::start(Mode::Approve).await;
    let (sw, stop) = switch(&dir, &issuer).await;
    let mut pos = Pos::connect(sw.listen_addrs()[0], TID).await;
    let preauth = |pos: &Pos, stan: u32, amount: u64| pos.card("0100", "10", stan, 1, "030000", amount);

    // A: held, then released; a completion of it finds no open hold.
    let a = pos.send(&preauth(&pos, 1, 5_000)).await;
    assert_eq!((a.mti(), a.text(39).as_deref()), ("0110", Some("00")));
    assert_eq!(pos.rc(&naming(&pos, "0100", "11", 2, "200000", 5_000, 1)).await, "00");
    assert_eq!(pos.rc(&naming(&pos, "0200", "20", 3, "000000", 5_000, 1)).await, "25");

    // B: completed once; the second completion and a void of an unknown hold get 25.
    assert_eq!(pos.rc(&preauth(&pos, 4, 6_000)).await, "00");
    assert_eq!(pos.rc(&naming(&pos, "0200", "20", 5, "000000", 6_000, 4)).await, "00");
    assert_eq!(pos.rc(&naming(&pos, "0200", "20", 6, "000000", 6_000, 4)).await, "25");
    assert_eq!(pos.rc(&naming(&pos, "0100", "11", 7, "200000", 6_000, 99)).await, "25");
    // The completion is voided (60.1 = 21 names the completion's trace).
    assert_eq!(pos.rc(&naming(&pos, "0200", "21", 8, "200000", 6_000, 5)).await, "00");

    // C: completed by an advice.
    assert_eq!(pos.rc(&preauth(&pos, 9, 7_000)).await, "00");
    let advice = pos.send(&naming(&pos, "0220", "24", 10, "000000", 7_000, 9)).await;
    assert_eq!((advice.mti(), advice.text(39).as_deref()), ("0230", Some("00")));

    // What is left to settle in batch 1 is C's completion alone: holds are not money,
    // and B's completion was voided.
    assert_eq!(pos.rc(&pos.settle(11, 1, 13_000, 2)).await, "95");
    assert_eq!(pos.rc(&pos.settle(12, 1, 7_000, 1)).await, "00");
    stop.cancel();
    sw.join().await;

    let c = rusqlite::Connection::open(dir.join("journal.db")).unwrap();
    assert_eq!(row(&c, 1), ("voided".into(), 0, "preauth".into()));
    assert_eq!(row(&c, 2).2, "void");
    assert_eq!(row(&c, 2).1, 0, "releasing a hold charges no fee");
    assert_eq!(row(&c, 4).0, "completed");
    assert_eq!(row(&c, 5).0, "voided");
    assert_eq!(row(&c, 5).2, "preauth_completion");
    assert_eq!(row(&c, 9).0, "completed");
    assert_eq!(row(&c, 10).2, "preauth_completion");
    for stan in [3, 6, 7] {
        assert_eq!(row(&c, stan).0, "declined", "trace {stan}");
    }
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 7, "the 25s never reached the issuer");
    let _ = std::fs::remove_dir_all(&dir);
}
