//! Kill -9 of the switch with reversals waiting in store-and-forward, through the real
//! binary and its SQLite journal. The issuer drops every 10th of the first 200 requests
//! and at first acknowledges no reversal; the switch answers those 68 and keeps repeating
//! their reversals; it is killed while terminals are still sending, restarted on the same
//! journal, and the issuer becomes healthy. Store-and-forward must resume and finish:
//! every dropped request reversed, one acknowledged reversal per drop, nothing written
//! to the issuer for an original after the issuer acknowledged it (repeats before are
//! fine), and every approval a terminal received is in the journal. The requests that
//! were at the issuer when the switch died, and whose answer the journal does not hold,
//! are reversed too (the in-doubt log), exactly once each; the others are not.

#[path = "common/bank.rs"]
mod bank;
#[path = "common/load.rs"]
mod load;
#[path = "common/process.rs"]
mod process;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bank::{Bank, BankState};
use load::{End, Load, LoadConfig, purchase};
use process::{
    ADMIN_TOKEN, TempDir, answer_journalled, answered_keys, free_port, journal_rows, saf_states, start_ready,
    until,
};

const DROPS_WITHIN: usize = 200;
const DROP_EVERY: usize = 10;
const PAN: &str = "4761739001010119";

/// Wait (bounded) for `cond`, polling.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_reversals_pending_resumes_and_never_resends_an_acknowledged_one() {
    let dir = TempDir::new("saf-crash");
    let state = BankState::new();
    state.drop_every.store(DROP_EVERY, Ordering::SeqCst);
    state.drop_within.store(DROPS_WITHIN, Ordering::SeqCst);
    let bank = Bank::start("127.0.0.1:0".parse().unwrap(), state.clone()).await;
    let journal = dir.path.join("journal.db");
    let listen = free_port().await;
    let admin = free_port().await;
    let config = dir.path.join("switch.toml");
    let log = dir.path.join("switch.log");
    // Answered requests have a generous deadline so that only the drops time out, even on
    // a loaded machine; reversals repeat quickly so that several repeats happen. The
    // journal budget is far above the default for the same reason: the load must reach the
    // issuer, not be shed with 91 by a writer slowed down by a busy machine.
    std::fs::write(
        &config,
        format!(
            "journal = {journal:?}\njournal_budget_ms = 1000\nadmin = \"{admin}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [timeouts]\nreconnect_max_ms = 200\n\
             [saf]\nretry_min_ms = 100\nretry_max_ms = 400\n\
             [[listener]]\naddr = \"{listen}\"\n\
             [[issuer]]\nname = \"bank\"\n[[issuer.link]]\naddr = \"{}\"\ndeadline_ms = 1500\necho_interval_ms = 60000\n",
            bank.addr
        ),
    )
    .unwrap();

    let mut switch = start_ready(&config, &log, listen, admin).await;

    // Four terminals, four requests in flight each, until the switch dies.
    let load = Load::start(LoadConfig {
        addr: listen,
        connections: 4,
        pipeline: 4,
        max: 50_000,
        reply_bound: Duration::from_secs(10),
        run_bound: Duration::from_secs(60),
        make: Arc::new(|c, stan| {
            purchase(PAN, &format!("1000000{}", c + 1), "MERCHANT0000001", stan, 10_000)
        }),
    });
    let drops = DROPS_WITHIN / DROP_EVERY;
    until("the issuer to drop its share", Duration::from_secs(30), || {
        state.dropped.load(Ordering::SeqCst) >= drops
    })
    .await;
    // Each drop times out, is answered 68, and its reversal is written at least once and
    // not acknowledged.
    until("a first reversal of every drop", Duration::from_secs(30), || {
        let log = state.log();
        let dropped: Vec<&String> = log.originals.iter().filter(|(_, o)| o.dropped).map(|(f, _)| f).collect();
        dropped.len() == drops && dropped.iter().all(|f| log.reversals.contains_key(*f))
    })
    .await;
    // Repeats have started for some of them.
    until("a repeat (0401)", Duration::from_secs(10), || {
        state.log().reversals.values().any(|r| r.arrivals.iter().any(|(_, m)| m == "0401"))
    })
    .await;
    let financial_at_kill = state.financial.load(Ordering::SeqCst);
    switch.kill().expect("kill -9");
    let _ = switch.wait();
    let killed_at = Instant::now();
    let first_life = load.join().await;
    let pending = saf_states(&journal);
    assert_eq!(
        pending.get("pending").copied(),
        Some(drops as i64),
        "pending reversals at the kill: {pending:?}"
    );
    assert!(
        state.log().reversals.values().all(|r| r.acked_at.is_none()),
        "nothing acknowledged before the kill"
    );
    // In doubt: requests the issuer saw, not dropped, whose answer the journal lacks. The
    // issuer reads what was already on its sockets first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered = answered_keys(&journal);
    let in_doubt: BTreeSet<String> = state
        .log()
        .originals
        .iter()
        .filter(|(f, o)| !o.dropped && !answer_journalled(&answered, f))
        .map(|(f, _)| f.clone())
        .collect();

    // Second life over the same journal; the issuer acknowledges from now on.
    let mut switch = start_ready(&config, &log, listen, admin).await;
    state.ack_reversals.store(true, Ordering::SeqCst);
    let second = Load::start(LoadConfig {
        addr: listen,
        connections: 2,
        pipeline: 4,
        max: 200,
        reply_bound: Duration::from_secs(10),
        run_bound: Duration::from_secs(30),
        make: Arc::new(|c, stan| {
            purchase(PAN, &format!("2000000{}", c + 1), "MERCHANT0000001", stan, 10_000)
        }),
    });
    until("every reversal acknowledged", Duration::from_secs(30), || {
        let log = state.log();
        in_doubt.iter().all(|f| log.reversals.contains_key(f))
            && log.reversals.len() >= drops + in_doubt.len()
            && log.reversals.values().all(|r| r.acked_at.is_some())
    })
    .await;
    let t0 = Instant::now();
    loop {
        let s = saf_states(&journal);
        if s.get("pending").copied().unwrap_or(0) == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "store-and-forward did not finish: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second_life = second.join().await;
    // Longer than the longest backoff (400 ms) several times: a resend would show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    switch.kill().unwrap();
    let _ = switch.wait();
    bank.stop();

    // The issuer's view.
    assert_eq!(
        state.collisions.load(Ordering::SeqCst),
        0,
        "two requests reached the issuer with one field 90"
    );
    let log = state.log();
    let dropped: BTreeSet<&String> =
        log.originals.iter().filter(|(_, o)| o.dropped).map(|(f, _)| f).collect();
    let reversed: BTreeSet<&String> = log.reversals.keys().collect();
    assert_eq!(dropped.len(), drops);
    let expected: BTreeSet<&String> = dropped.iter().copied().chain(&in_doubt).collect();
    // A request logged and not yet on the socket when the process died is reversed too
    // (the issuer acknowledges the reversal of an original it never saw); at most the
    // terminals' requests in flight.
    let unseen = reversed.iter().filter(|f| !log.originals.contains_key(**f)).count();
    assert!(unseen <= 16, "{unseen} reversals of requests the issuer never saw");
    let seen: BTreeSet<&String> =
        reversed.iter().copied().filter(|f| log.originals.contains_key(*f)).collect();
    assert_eq!(seen, expected, "exactly the dropped and the in-doubt requests are reversed");
    let answered = answered_keys(&journal);
    assert!(reversed.iter().all(|f| !answer_journalled(&answered, f)), "an answered request was reversed");
    let acked = log.reversals.values().filter(|r| r.acked_at.is_some()).count();
    assert_eq!(acked, expected.len() + unseen, "one acknowledged reversal per drop and per in-doubt request");
    let mut writes = 0;
    let mut repeats_across = 0;
    for (f90, r) in &log.reversals {
        writes += r.arrivals.len();
        assert_eq!(r.arrivals[0].1, "0400", "{f90}: first write is the 0400");
        assert!(r.arrivals[1..].iter().all(|(_, m)| m == "0401"), "{f90}: {:?}", r.arrivals);
        assert_eq!(r.after_ack(), 0, "{f90}: written after the issuer acknowledged it: {:?}", r.arrivals);
        if !dropped.contains(f90) {
            assert!(r.arrivals[0].0 > killed_at, "{f90}: an in-doubt request is reversed after the restart");
        } else {
            assert!(
                r.arrivals[0].0 < killed_at && r.acked_at.unwrap() > killed_at,
                "{f90}: resumed across the kill"
            );
        }
        if r.arrivals.iter().filter(|(_, m)| m == "0401").count() > 0 {
            repeats_across += 1;
        }
    }
    drop(log);
    // The journal's view: the same count, all acknowledged.
    let states = saf_states(&journal);
    let want = (drops + in_doubt.len() + unseen) as i64;
    assert_eq!(states.get("acked").copied(), Some(want), "{states:?}");
    assert_eq!(states.values().sum::<i64>(), want, "{states:?}");

    // The terminals' view: the drops were answered 68, every approval is journalled.
    let rows = journal_rows(&journal);
    let mut approvals = 0;
    let mut sixty_eight = 0;
    for r in first_life.iter().chain(&second_life) {
        assert!(r.mismatches.is_empty(), "{:?}", r.mismatches);
        for (stan, a) in &r.answers {
            match a.rc.as_str() {
                "00" => {
                    approvals += 1;
                    let row = rows.get(&(r.terminal.clone(), *stan));
                    assert!(
                        row.is_some_and(|row| row.rc == "00"),
                        "approval {} / {stan} not journalled as approved: {row:?}",
                        r.terminal
                    );
                }
                "68" => sixty_eight += 1,
                other => panic!("unexpected rc {other} for {} / {stan}", r.terminal),
            }
        }
    }
    assert_eq!(sixty_eight, drops, "each drop answered 68");
    for r in &second_life {
        assert_eq!(r.end, End::Done, "second life connection {}", r.conn);
    }
    eprintln!(
        "drops {drops}, in doubt at the kill {}, reversal writes {writes} (originals repeated: {repeats_across}), acknowledged {acked}, \
         issuer requests before kill -9 {financial_at_kill}, approvals received {approvals}, all journalled",
        in_doubt.len()
    );
}
