//! Issuer faults through the switch, on 127.0.0.1: in the middle of a pipelined burst the
//! issuer host closes both of its links and its listener, and comes back on the same port
//! a moment later. Terminals get an approval, 68 (lost with the link) or 91 (no link),
//! always for their own request (STAN, RRN, amount and terminal echoed); the links
//! reconnect and sign on, traffic flows again, and every request the issuer did not
//! answer is reversed exactly once and acknowledged: the reversed originals are exactly
//! the requests answered 68. (switch_path.rs covers a stop between requests and the 91s.)

#[path = "common/bank.rs"]
mod bank;
#[path = "common/load.rs"]
mod load;
#[path = "common/process.rs"]
mod process;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bank::{Bank, BankState};
use isoswitch::config::Config;
use isoswitch::switch::serve;
use load::{End, Load, LoadConfig, purchase, rc_counts};
use process::{TempDir, saf_states, until};
use tokio_util::sync::CancellationToken;

const PAN: &str = "4761739001010119";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_closed_mid_burst_reconnect_and_every_unanswered_request_is_reversed_once() {
    let dir = TempDir::new("issuer-faults");
    let state = BankState::new();
    // A little latency keeps requests in flight on the links when they close.
    state.delay_ms.store(30, Ordering::SeqCst);
    state.ack_reversals.store(true, Ordering::SeqCst);
    let first = Bank::start("127.0.0.1:0".parse().unwrap(), state.clone()).await;
    let addr = first.addr;
    let journal = dir.path.join("journal.db");
    let text = format!(
        "journal = {journal:?}\n[timeouts]\nreconnect_max_ms = 200\nconnect_ms = 500\n\
         [saf]\nretry_min_ms = 100\nretry_max_ms = 400\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\n\
         [[issuer]]\nname = \"bank\"\n\
         [[issuer.link]]\naddr = \"{addr}\"\ndeadline_ms = 5000\necho_interval_ms = 60000\n\
         [[issuer.link]]\naddr = \"{addr}\"\ndeadline_ms = 5000\necho_interval_ms = 60000\n"
    );
    let stop = CancellationToken::new();
    let sw = serve(Config::parse("faults.toml", &text).unwrap(), stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(10)).await);
    let bank_links = sw.issuers().by_name("bank").unwrap().clone();
    until("both links up", Duration::from_secs(10), || bank_links.links_up() == 2).await;

    // Six terminals, eight requests in flight each; every amount is unique.
    let load = Load::start(LoadConfig {
        addr: sw.listen_addrs()[0],
        connections: 6,
        pipeline: 8,
        max: 200_000,
        reply_bound: Duration::from_secs(20),
        run_bound: Duration::from_secs(60),
        make: Arc::new(|c, stan| {
            purchase(
                PAN,
                &format!("1000000{}", c + 1),
                "MERCHANT0000001",
                stan,
                (c as u64 + 1) * 1_000_000 + u64::from(stan),
            )
        }),
    });
    until("the burst", Duration::from_secs(30), || state.financial.load(Ordering::SeqCst) >= 400).await;

    // The host goes away with requests on its links, and stays away a moment.
    first.stop();
    until("both links down", Duration::from_secs(10), || bank_links.links_up() == 0).await;
    let answered_when_down = load.answered.load(Ordering::Relaxed);
    until("terminals answered while the host is down", Duration::from_secs(10), || {
        load.answered.load(Ordering::Relaxed) >= answered_when_down + 50
    })
    .await;
    let second = Bank::start(addr, state.clone()).await;
    let back_at = Instant::now();
    until("both links back", Duration::from_secs(15), || bank_links.links_up() == 2).await;
    let at_return = state.financial.load(Ordering::SeqCst);
    until("traffic again", Duration::from_secs(30), || {
        state.financial.load(Ordering::SeqCst) >= at_return + 300
    })
    .await;
    let reports = load.finish().await;

    // Store-and-forward sends the reversals over the new links and they are acknowledged.
    let t0 = Instant::now();
    loop {
        let s = saf_states(&journal);
        if !s.is_empty() && s.get("pending").copied().unwrap_or(0) == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "reversals not acknowledged: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several retry periods: nothing is sent again.
    let writes_then: usize = state.log().reversals.values().map(|r| r.arrivals.len()).sum();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.cancel();
    sw.join().await;
    second.stop();

    // The terminals' view.
    let rcs = rc_counts(&reports);
    let mut by_amount: HashMap<u64, (String, u32, String)> = HashMap::new();
    let mut approved_after_return = 0;
    for r in &reports {
        assert!(r.mismatches.is_empty(), "a terminal got another's answer: {:?}", r.mismatches);
        assert_eq!(r.end, End::Stopped, "terminal {} lost its connection: {:?}", r.terminal, r.end);
        assert!(r.unanswered().is_empty(), "{} unanswered on {}", r.unanswered().len(), r.terminal);
        for (stan, a) in &r.answers {
            assert!(matches!(a.rc.as_str(), "00" | "68" | "91"), "{} / {stan}: rc {}", r.terminal, a.rc);
            by_amount.insert(r.sent[stan].amount, (r.terminal.clone(), *stan, a.rc.clone()));
            if a.rc == "00" && a.at > back_at {
                approved_after_return += 1;
            }
        }
    }
    let lost = rcs.get("68").copied().unwrap_or(0);
    assert!(lost > 0, "nothing was in flight when the links closed: {rcs:?}");
    assert!(rcs.get("91").copied().unwrap_or(0) > 0, "no request met the host down: {rcs:?}");
    assert!(approved_after_return > 0, "no approval after the host came back");
    assert!(state.connections.load(Ordering::SeqCst) >= 4, "the links did not reconnect");
    assert!(state.sign_ons.load(Ordering::SeqCst) >= 4, "the new links did not sign on");

    // The issuer's view: one reversal per request answered 68, none for others.
    assert_eq!(
        state.collisions.load(Ordering::SeqCst),
        0,
        "two requests reached the issuer with one field 90"
    );
    let log = state.log();
    let mut reversed_amounts = HashMap::new();
    for (f90, r) in &log.reversals {
        assert_eq!(r.arrivals[0].1, "0400", "{f90}");
        assert!(r.acked_at.is_some(), "{f90} not acknowledged");
        assert_eq!(r.after_ack(), 0, "{f90} written after its acknowledgement: {:?}", r.arrivals);
        let (t, stan, rc) = by_amount.get(&r.amount).expect("a reversal of a request no terminal sent");
        assert_eq!(rc, "68", "{t} / {stan} was answered {rc} but reversed");
        assert!(reversed_amounts.insert(r.amount, f90.clone()).is_none(), "{t} / {stan} reversed twice");
    }
    for (amount, (t, stan, rc)) in &by_amount {
        if rc == "68" {
            assert!(reversed_amounts.contains_key(amount), "{t} / {stan} answered 68 and never reversed");
        }
    }
    let unanswered_by_issuer: Vec<String> =
        log.originals.iter().filter(|(_, o)| !o.answered).map(|(f, _)| f.clone()).collect();
    for f90 in &unanswered_by_issuer {
        assert!(log.reversals.contains_key(f90), "the issuer never answered {f90} and it was not reversed");
    }
    let writes: usize = log.reversals.values().map(|r| r.arrivals.len()).sum();
    assert_eq!(writes, writes_then, "reversal writes after every one was acknowledged");
    let reversals = log.reversals.len();
    drop(log);
    let states = saf_states(&journal);
    assert_eq!(states.get("acked").copied(), Some(lost as i64), "{states:?}");
    assert_eq!(states.values().sum::<i64>(), lost as i64, "{states:?}");
    eprintln!(
        "answers by rc {rcs:?}; issuer saw {} requests, left {} unanswered at the close; \
         {reversals} reversals ({writes} writes), all acknowledged; {approved_after_return} approvals after the return; \
         issuer connections {}",
        state.financial.load(Ordering::SeqCst),
        unanswered_by_issuer.len(),
        state.connections.load(Ordering::SeqCst)
    );
}
