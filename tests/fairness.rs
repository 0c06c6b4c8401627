//! Fair admission and answers before their deadline, with real sockets on 127.0.0.1:
//! twenty connections pipelining requests without reading their replies beside a terminal
//! that sends one request at a time (it loses nothing to them); and an issuer offered
//! three times what it takes, a peak-style weighting of 12 for priority merchants against 3
//! for ordinary ones, where every answer reaches the terminal before its deadline and the
//! priority class's 91s come at once, not after waiting out the deadline (three runs, to
//! catch the intermittent case).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{MockIssuer, Mode, PAN, ShopRules, Terminal, auth};
use futures_util::{SinkExt, StreamExt};
use isoswitch::config::Config;
use isoswitch::frame::{Frame, FrameCodec, FrameConfig};
use isoswitch::iso::Message;
use isoswitch::switch::{RunningSwitch, serve};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

async fn switch(
    name: &str,
    rules: &ShopRules,
    issuer: &MockIssuer,
    window: usize,
) -> (RunningSwitch, CancellationToken) {
    let text = format!(
        "journal = \"off\"\nrules = {:?}\nmetrics = \"127.0.0.1:0\"\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\n\
         [[issuer]]\nname = \"{name}\"\n[[issuer.link]]\naddr = \"{}\"\nwindow = {window}\n\
         deadline_ms = 1000\necho_interval_ms = 60000\n",
        rules.0, issuer.addr
    );
    let cfg = Config::parse("fairness.toml", &text).unwrap();
    let stop = CancellationToken::new();
    let sw = serve(cfg, stop.clone()).await.unwrap();
    assert!(sw.wait_issuers_up(Duration::from_secs(5)).await);
    (sw, stop)
}

fn request(tid: &str, mid: &str, stan: u32) -> Message {
    let mut m = auth(PAN, stan, 1000 + u64::from(stan % 1000) * 100);
    m.set(41, tid).unwrap();
    m.set(42, mid).unwrap();
    m
}

const DEADLINE: Duration = Duration::from_millis(1000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_flooding_connections_do_not_push_a_one_at_a_time_terminal_into_91() {
    // The mock answers one request at a time after 5 ms: about 200 a second.
    let issuer = MockIssuer::start(Mode::Delay(5)).await;
    let queue = "window = 4\nlatency_ms = 5\nordinary_bound = 1024";
    let rules = ShopRules::new("flooded", &format!("[queue]\n{queue}\n"));
    let (sw, stop) = switch("flooded", &rules, &issuer, 4).await;
    let addr = sw.listen_addrs()[0];

    // Twenty connections write 400 requests each and read nothing (each has at most its
    // in-flight cap, 256, taken in by the switch).
    let mut flooders = Vec::new();
    for c in 0..20u32 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        flooders.push(tokio::spawn(async move {
            let (_r, w) = tcp.into_split();
            let mut w = FramedWrite::new(w, FrameCodec::new(FrameConfig::default()));
            for i in 0..400u32 {
                let m = request("TERM0001", "MERCHANT0000001", 100_000 + c * 1000 + i);
                if w.send(Frame::plain(m.to_bytes().unwrap())).await.is_err() {
                    break;
                }
            }
            // Kept open (unread) until the test ends.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(_r);
        }));
    }
    // Let the flood build up before the well-behaved terminal starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = issuer.requests.load(std::sync::atomic::Ordering::SeqCst);
    let mut t = Terminal::connect(addr).await;
    let (mut rcs, mut slowest) = (HashMap::<String, usize>::new(), Duration::ZERO);
    let started = Instant::now();
    for i in 0..30u32 {
        let sent = Instant::now();
        let rep = t.exchange(&request("TERM0001", "MERCHANT0000001", 1 + i)).await;
        slowest = slowest.max(sent.elapsed());
        *rcs.entry(rep.response_code().unwrap_or_default().into_owned()).or_default() += 1;
    }
    let took = started.elapsed();
    let during = issuer.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    eprintln!("well-behaved: {rcs:?} in {took:?}, slowest {slowest:?}; the issuer took {during} meanwhile");
    // The flood was still on while it ran: the issuer was busy with the flooders too.
    assert!(during >= 30 + 20, "the issuer saw only {during} requests meanwhile");
    assert_eq!(rcs.get("00").copied(), Some(30), "the well-behaved terminal lost requests: {rcs:?}");
    assert!(slowest < DEADLINE, "an answer after {slowest:?}");

    // The flood itself was shed (the issuer takes ~200 a second; 8,000 were sent).
    let metrics = common::http_get(sw.metrics_addr().unwrap(), "/metrics").await;
    let shed: f64 = metrics
        .lines()
        .find(|l| l.starts_with("isoswitch_shed_total") && l.contains("class=\"ordinary\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(shed > 0.0, "nothing shed:\n{metrics}");
    for f in flooders {
        f.abort();
    }
    stop.cancel();
    sw.join().await;
}

/// Per STAN: when it was sent, and its answer's rc and when it came.
type Log = Arc<Mutex<HashMap<u32, (Instant, Option<(String, Instant)>)>>>;

/// One connection sending `n` requests paced `every` apart (writer and reader apart, as a
/// terminal that pipelines), each answer noted against its send time.
async fn paced(
    addr: SocketAddr,
    tid: &'static str,
    mid: &'static str,
    first: u32,
    n: u32,
    every: Duration,
    log: Log,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (r, w) = tcp.into_split();
    let mut w = FramedWrite::new(w, FrameCodec::new(FrameConfig::default()));
    let mut r = FramedRead::new(r, FrameCodec::new(FrameConfig::default()));
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let spec = common::ascii();
            for _ in 0..n {
                let Ok(Some(Ok(f))) = tokio::time::timeout(Duration::from_secs(5), r.next()).await else {
                    break;
                };
                let at = Instant::now();
                let m = Message::decode(&spec, f.body).unwrap();
                let stan = m.stan().unwrap_or(0);
                if let Some(e) = log.lock().unwrap().get_mut(&stan) {
                    e.1 = Some((m.response_code().unwrap_or_default().into_owned(), at));
                }
            }
        })
    };
    let mut tick = tokio::time::interval(every);
    for i in 0..n {
        tick.tick().await;
        let stan = first + i;
        let body = request(tid, mid, stan).to_bytes().unwrap();
        log.lock().unwrap().insert(stan, (Instant::now(), None));
        w.send(Frame::plain(body)).await.unwrap();
    }
    let _ = reader.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_three_times_capacity_every_answer_is_in_time_and_priority_91s_come_at_once() {
    // One request at a time, 10 ms each: 100 a second.
    let issuer = MockIssuer::start(Mode::Delay(10)).await;
    let priority = "priority_groups = [\"vip\"]\n[weights]\npriority = 12\nordinary = 3\n\
                    [queue]\nwindow = 2\nlatency_ms = 10\npriority_bound = 512\nordinary_bound = 512\n";
    let rules = ShopRules::new("thrice", priority);
    let (sw, stop) = switch("thrice", &rules, &issuer, 2).await;
    let addr = sw.listen_addrs()[0];
    for run in 0..3u32 {
        let log: Log = Arc::default();
        let base = 1 + run * 10_000;
        // 150 a second of priority merchants, 150 of ordinary ones, for 1.5 seconds.
        let every = Duration::from_micros(6_667);
        let p = tokio::spawn(paced(addr, "TERM0002", "MERCHANTVIP0001", base, 225, every, log.clone()));
        let o1 = tokio::spawn(paced(
            addr,
            "TERM0001",
            "MERCHANT0000001",
            base + 1000,
            112,
            every * 2,
            log.clone(),
        ));
        let o2 = tokio::spawn(paced(
            addr,
            "TERM0001",
            "MERCHANT0000001",
            base + 2000,
            113,
            every * 2,
            log.clone(),
        ));
        let _ = tokio::join!(p, o1, o2);
        let log = log.lock().unwrap().clone();
        let (mut prio_91, mut rcs) = (Vec::new(), HashMap::<(bool, String), usize>::new());
        for (stan, (sent, answer)) in log.iter() {
            let prio = (stan - base) < 1000;
            let Some((rc, at)) = answer else { panic!("run {run}: request {stan} unanswered") };
            let took = *at - *sent;
            assert!(took < DEADLINE, "run {run}: {rc} after {took:?}, past the deadline");
            if prio && rc == "91" {
                prio_91.push(took);
            }
            *rcs.entry((prio, rc.clone())).or_default() += 1;
        }
        prio_91.sort_unstable();
        eprintln!("run {run}: {rcs:?}; priority 91s: {} {:?}", prio_91.len(), prio_91.get(prio_91.len() / 2));
        assert!(rcs.get(&(true, "00".into())).copied().unwrap_or(0) > 0, "run {run}: {rcs:?}");
        // Before this change the median was ~890 ms in a run of four (waiting out the
        // send-by time); now it is 15-40 ms on an idle machine. 100 ms leaves room for a
        // debug build on two busy cores.
        if let Some(median) = prio_91.get(prio_91.len() / 2) {
            assert!(
                *median < Duration::from_millis(100),
                "run {run}: priority 91s after {median:?} (median)"
            );
        }
        // Let the queues drain before the next run.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let metrics = common::http_get(sw.metrics_addr().unwrap(), "/metrics").await;
    assert!(metrics.contains("isoswitch_late_answers_total 0"), "late answers counted:\n{metrics}");
    stop.cancel();
    sw.join().await;
}
