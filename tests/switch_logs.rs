//! No log line carries a test PAN: every event of a run with approvals, declines,
//! undecodable frames, timeouts, late replies and a lost issuer is captured at debug
//! level into a buffer and searched.

mod common;

use std::time::Duration;

use common::*;
use isoswitch::switch::serve;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_contains_a_test_pan() {
    let logs = Logs::capture();

    // Replies come after 150 ms but the deadline is 100 ms: every reply is late.
    let slow = MockIssuer::start(Mode::Delay(150)).await;
    let stop = CancellationToken::new();
    let sw = serve(config(&[slow.addr], 100), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    assert_eq!(t.exchange(&auth(PAN, 1, 100)).await.text(39).as_deref(), Some("68"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // A frame that does not decode, with a PAN in it.
    t.send_raw(format!("0200400000000000000099{PAN}").as_bytes()).await.unwrap();
    assert_eq!(t.recv().await.unwrap().text(39).as_deref(), Some("30"));
    slow.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = t.exchange(&auth(PAN2, 2, 151)).await;
    stop.cancel();
    sw.join().await;

    let iss = MockIssuer::start(Mode::Approve).await;
    let stop = CancellationToken::new();
    let sw = serve(config(&[iss.addr], 1000), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    let mut t = Terminal::connect(sw.listen_addrs()[0]).await;
    assert_eq!(t.exchange(&auth(PAN, 3, 100)).await.text(39).as_deref(), Some("00"));
    assert_eq!(t.exchange(&auth(PAN2, 4, 151)).await.text(39).as_deref(), Some("51"));
    stop.cancel();
    sw.join().await;

    let logs = logs.text();
    assert!(logs.contains("timed out"), "the run logged its timeout:\n{logs}");
    assert!(logs.contains("late or unmatched"), "the run logged the late reply:\n{logs}");
    assert!(logs.contains("undecodable"), "the run logged the bad frame:\n{logs}");
    for pan in [PAN, PAN2] {
        assert!(!logs.contains(pan), "a log line holds a PAN:\n{logs}");
        assert!(!logs.contains(&pan[..12]), "a log line holds most of a PAN:\n{logs}");
    }
}
