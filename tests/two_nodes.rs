//! Two switch nodes sharing one PostgreSQL journal: a transaction one node has seen is
//! answered alike on the other and never forwarded twice (94 when its key comes back with
//! another amount), and settlement sees both nodes' transactions. Needs the
//! server named by `ISOSWITCH_TEST_PG` (`.ci/run` starts one); without it the test is
//! ignored, except under CI where its absence fails.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{MockIssuer, Mode, PAN, PAN2, Terminal, auth};
use isoswitch::config::Config;
use isoswitch::journal::{Journal, JournalConfig, Query, business_date};
use isoswitch::switch::serve;
use isoswitch::time::UnixMs;
use tokio_util::sync::CancellationToken;

async fn database() -> String {
    pg::fresh_database(&format!("isoswitch_nodes_{}", std::process::id())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
async fn two_nodes_share_retransmissions_and_settlement() {
    let url = database().await;
    let issuer = MockIssuer::start(Mode::Approve).await;
    let stop = CancellationToken::new();
    let mut nodes = Vec::new();
    // Each node's in-doubt log in a directory of this run (the default is under the
    // working directory, which would carry it to the next run over a new database).
    let logs = std::env::temp_dir().join(format!("isoswitch-two-nodes-{}", std::process::id()));
    for id in ["node-a", "node-b"] {
        let text = format!(
            "journal_url = {url:?}\nswitch_id = \"{id}\"\n[[listener]]\naddr = \"127.0.0.1:0\"\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 2000\n\
             [saf]\nindoubt_dir = {:?}\n",
            issuer.addr,
            logs.join(id)
        );
        let sw = serve(Config::parse("node.toml", &text).unwrap(), stop.clone()).await.unwrap();
        assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
        nodes.push(sw);
    }
    let mut a = Terminal::connect(nodes[0].listen_addrs()[0]).await;
    let mut b = Terminal::connect(nodes[1].listen_addrs()[0]).await;

    // The terminal's request reaches node A; its retransmission lands on node B.
    // It gets the original's answer there too, and is never forwarded a second time.
    let req = auth(PAN, 41, 12_000);
    let first = a.exchange(&req).await;
    assert_eq!(first.text(39).as_deref(), Some("00"));
    let again = b.exchange(&req).await;
    assert_eq!((again.text(39), again.text(38)), (first.text(39), first.text(38)));
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 1, "the retransmission never reached the issuer");
    // The same terminal key with another amount is another transaction reusing it: 94.
    let reused = auth(PAN, 41, 12_001);
    assert_eq!(b.exchange(&reused).await.text(39).as_deref(), Some("94"));
    assert_eq!(issuer.requests.load(Ordering::SeqCst), 1);
    // Other traffic on both nodes.
    assert_eq!(b.exchange(&auth(PAN2, 42, 3_000)).await.text(39).as_deref(), Some("00"));
    assert_eq!(a.exchange(&auth(PAN2, 43, 5_000)).await.text(39).as_deref(), Some("00"));
    stop.cancel();
    for n in nodes {
        n.join().await;
    }

    // Settlement reads one journal with both nodes' rows.
    let url2 = url.clone();
    let j = tokio::task::spawn_blocking(move || Journal::open(&JournalConfig::Postgres { url: url2 }))
        .await
        .unwrap()
        .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let day = j.query(Query::Day(business_date(UnixMs::from_i64(now), 0))).await.unwrap();
    let nodes: std::collections::BTreeSet<&str> = day.iter().map(|r| r.switch_id.as_str()).collect();
    assert_eq!(nodes, ["node-a", "node-b"].into_iter().collect());
    let lines = isoswitch::settle::settle(&day, &business_date(UnixMs::from_i64(now), 0), &[], 0).unwrap();
    let gross: i64 = lines.iter().map(|l| l.gross).sum();
    assert_eq!(gross, 12_000 + 3_000 + 5_000);
    // The retransmission left no row of its own; the reused key left its 94, without the key.
    let rcs: Vec<&str> = day.iter().map(|r| isoswitch::journal::record::rc_text(&r.rc)).collect();
    assert_eq!(rcs.iter().filter(|rc| **rc == "00").count(), 3, "{rcs:?}");
    assert_eq!(
        day.iter().filter(|r| r.rc.is_some_and(|rc| rc == "94") && r.txn_key.is_none()).count(),
        1,
        "{rcs:?}"
    );
    assert_eq!(day.len(), 4);
    let _ = std::fs::remove_dir_all(&logs);
}
