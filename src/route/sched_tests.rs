//! Scheduler tests in virtual time.

use super::*;

fn cfg(window: usize, bounds: [usize; 5], latency_us: u64) -> QueueConfig {
    QueueConfig { window, bounds, latency_us }
}

const W: Weights = [16, 8, 6, 3, 1];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Waiting,
    Sent(u64),
    Shed,
    Saf,
}

/// An issuer that answers every request after exactly `latency` microseconds, offered
/// three times what it can take, for ten virtual seconds.
#[test]
fn at_three_times_capacity_reversals_pass_priority_keeps_its_deadline_queues_stay_bounded() {
    let (window, latency) = (4usize, 10_000u64); // 400 requests per second
    let bounds = [10_000, 64, 128, 256, 64];
    let mut s: Scheduler<usize> = Scheduler::new(cfg(window, bounds, latency), W);
    let gap = 833; // 1,200 arrivals per second
    let class_of = |i: usize| match i % 20 {
        0 => Class::Reversal,
        1..=3 => Class::Priority,
        4 if i % 100 == 4 => Class::Network,
        4..=17 => Class::Ordinary,
        _ => Class::Batch,
    };
    let mut reqs: Vec<(Class, u64, u64, Fate)> = Vec::new(); // class, arrival, deadline, fate
    let mut flying: Vec<(u64, usize)> = Vec::new(); // finish, id
    let (mut next_arrival, end) = (0u64, 10_000_000u64);
    let mut t = 0u64;
    while t <= end {
        // Completions due by now, earliest first.
        flying.sort_unstable();
        while flying.first().is_some_and(|&(f, _)| f <= t) {
            flying.remove(0);
            if let Some((id, _)) = s.complete(t) {
                reqs[id].3 = Fate::Sent(t);
                flying.push((t + latency, id));
            }
        }
        while next_arrival <= t {
            let id = reqs.len();
            let class = class_of(id);
            let deadline = t + if class == Class::Batch { 2_000_000 } else { 1_000_000 };
            reqs.push((class, t, deadline, Fate::Waiting));
            match s.offer(id, class, deadline, t) {
                Offer::Admit(id) => {
                    reqs[id].3 = Fate::Sent(t);
                    flying.push((t + latency, id));
                }
                Offer::Queued => {}
                Offer::Shed { rc, req } => {
                    assert_eq!(rc, Rc::ISSUER_UNAVAILABLE);
                    reqs[req].3 = Fate::Shed;
                }
                Offer::StoreAndForward(req) => reqs[req].3 = Fate::Saf,
            }
            next_arrival += gap;
        }
        if t.is_multiple_of(10_000) {
            for shed in s.expire(t) {
                assert_ne!(shed.class, Class::Reversal, "a reversal was shed");
                reqs[shed.req].3 = Fate::Shed;
            }
        }
        for c in Class::ALL {
            assert!(s.queued(c) <= bounds[c.index()], "{c:?} queue over its bound");
        }
        assert!(s.in_flight() <= window);
        t += 100;
    }
    let count = |c: Class, f: &dyn Fn(Fate) -> bool| reqs.iter().filter(|r| r.0 == c && f(r.3)).count();
    let is_shed = |f: Fate| f == Fate::Shed;
    // No reversal shed, none even pushed to store-and-forward at this load.
    assert_eq!(count(Class::Reversal, &is_shed), 0);
    assert_eq!(count(Class::Reversal, &|f| f == Fate::Saf), 0);
    // Everything sent was sent by its deadline.
    for (i, r) in reqs.iter().enumerate() {
        if let Fate::Sent(at) = r.3 {
            assert!(r.0 == Class::Reversal || at <= r.2, "request {i} ({:?}) sent {} us late", r.0, at - r.2);
        }
    }
    let total = |c: Class| count(c, &|_| true);
    let prio_shed = count(Class::Priority, &is_shed);
    assert_eq!(prio_shed, 0, "priority shed {prio_shed} of {}", total(Class::Priority));
    // The overload lands on the lowest classes.
    let ord_shed = count(Class::Ordinary, &is_shed) as f64 / total(Class::Ordinary) as f64;
    assert!(ord_shed > 0.5, "ordinary shed ratio {ord_shed}");
    assert!(count(Class::Batch, &is_shed) > 0);
    // The issuer was kept busy: about 400 per second for ten seconds.
    let sent = reqs.iter().filter(|r| matches!(r.3, Fate::Sent(_))).count();
    let max_wait = |c: Class| {
        reqs.iter()
            .filter(|r| r.0 == c)
            .filter_map(|r| if let Fate::Sent(at) = r.3 { Some(at - r.1) } else { None })
            .max()
    };
    // Priority requests wait far less than their deadline (1 s): 26.8 ms at most here.
    assert!(max_wait(Class::Priority).is_some_and(|w| w < 100_000));
    for c in Class::ALL {
        eprintln!("{c:?}: offered {}, shed {}, max wait {:?} us", total(c), count(c, &is_shed), max_wait(c));
    }
    assert!(sent >= 3_900, "sent {sent}");
}

#[test]
fn reversals_overflow_to_store_and_forward_never_shed() {
    let mut s: Scheduler<u32> = Scheduler::new(cfg(1, [2, 1, 1, 1, 1], 1_000_000), W);
    assert_eq!(s.offer(0, Class::Ordinary, 10, 0), Offer::Admit(0));
    // A reversal's deadline is ignored.
    assert_eq!(s.offer(1, Class::Reversal, 0, 5), Offer::Queued);
    assert_eq!(s.offer(2, Class::Reversal, 0, 5), Offer::Queued);
    assert_eq!(s.offer(3, Class::Reversal, 0, 5), Offer::StoreAndForward(3));
    assert!(s.expire(1_000_000).is_empty());
    assert_eq!(s.complete(2_000_000), Some((1, Class::Reversal)));
}

#[test]
fn shed_when_full_or_when_the_wait_would_pass_the_deadline() {
    // Window 1, latency 1 ms: a slot frees every 1,000 us.
    let mut s: Scheduler<u32> = Scheduler::new(cfg(1, [8, 8, 2, 8, 8], 1_000), W);
    assert_eq!(s.offer(0, Class::Priority, 100, 0), Offer::Admit(0));
    // One priority request waits ~1 slot x weight 6 / 6 = 1 ms.
    assert_eq!(s.offer(1, Class::Priority, 500, 0), Offer::Shed { rc: Rc::ISSUER_UNAVAILABLE, req: 1 });
    assert_eq!(s.offer(2, Class::Priority, 1_000, 0), Offer::Queued);
    assert_eq!(s.offer(3, Class::Priority, 1_000_000, 0), Offer::Queued);
    // Its queue (bound 2) is full.
    assert_eq!(s.offer(4, Class::Priority, 1_000_000, 0), Offer::Shed { rc: Rc::ISSUER_UNAVAILABLE, req: 4 });
    // Past-deadline requests are shed by expire, and set aside by complete.
    assert_eq!(s.offer(5, Class::Ordinary, 5_000, 0), Offer::Queued);
    let shed = s.expire(1_001);
    assert_eq!(shed, vec![Shed { req: 2, class: Class::Priority, rc: Rc::ISSUER_UNAVAILABLE }]);
    assert_eq!(s.complete(6_000), Some((3, Class::Priority)));
    assert_eq!(s.complete(7_000), None);
    assert_eq!(s.expire(7_000), vec![Shed { req: 5, class: Class::Ordinary, rc: Rc::ISSUER_UNAVAILABLE }]);
}

/// Serve `n` slots with every class backlogged; the share each class got.
fn shares(weights: Weights, n: usize) -> [usize; 5] {
    let mut s: Scheduler<()> = Scheduler::new(cfg(1, [1000; 5], 1), weights);
    assert_eq!(s.offer((), Class::Batch, u64::MAX, 0), Offer::Admit(()));
    for c in Class::ALL {
        for _ in 0..n {
            assert_eq!(s.offer((), c, u64::MAX, 0), Offer::Queued);
        }
    }
    let mut got = [0; 5];
    for k in 0..n {
        let (_, c) = s.complete(k as u64 + 1).unwrap();
        got[c.index()] += 1;
    }
    got
}

#[test]
fn weights_and_peak_weights_set_the_shares() {
    // 34 slots with weights 16/8/6/3/1 give exactly those counts (smooth WRR).
    assert_eq!(shares(W, 34), [16, 8, 6, 3, 1]);
    assert_eq!(shares(W, 340), [160, 80, 60, 30, 10]);
    // A peak window that doubles the priority class's weight.
    assert_eq!(shares([16, 8, 12, 2, 1], 39), [16, 8, 12, 2, 1]);
    let mut s: Scheduler<u8> = Scheduler::new(cfg(1, [10; 5], 1), W);
    s.set_weights([0, 0, 0, 0, 0]);
    // Zero weights are raised to 1 so that no class starves.
    assert_eq!(s.offer(1, Class::Batch, 9, 0), Offer::Admit(1));
}
