//! Tests of store-and-forward: the backoff, and the worker driven through its seam
//! (`SafIssuer`, `SafLink`) with an in-memory store, a fake issuer and a fake link.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

#[test]
fn backoff_doubles_and_caps() {
    let p = SafPolicy {
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(1000),
        ..SafPolicy::default()
    };
    let got: Vec<u128> = (1..=6).map(|a| p.backoff(a).as_millis()).collect();
    assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    assert_eq!(p.backoff(u32::MAX).as_millis(), 1000);
}

// The worker against doubles of its store, issuer and link: what it writes, and what it
// records, for a reversal that is answered, one that never is, and links that are down.

/// Field 90: original MTI, switch STAN, field 7, acquiring and forwarding institutions.
const F90: &str = "020000012311241000000000000123400000006789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Acked,
    Expired,
}

struct Row {
    id: i64,
    field90: String,
    msg: Message,
    attempts: u32,
    next_at: i64,
    state: State,
}

#[derive(Default)]
struct MemStore {
    rows: Mutex<Vec<Row>>,
}

impl MemStore {
    fn state(&self) -> Vec<(u32, State)> {
        self.rows.lock().unwrap().iter().map(|r| (r.attempts, r.state)).collect()
    }
}

impl SafStore for MemStore {
    fn enqueue(&self, _: &str, field90: &str, rev: &Message, now_ms: i64) -> Result<bool, IssuerError> {
        let mut rows = self.rows.lock().unwrap();
        if rows.iter().any(|r| r.field90 == field90) {
            return Ok(false);
        }
        let id = rows.len() as i64 + 1;
        let row = Row {
            id,
            field90: field90.into(),
            msg: rev.clone(),
            attempts: 0,
            next_at: now_ms,
            state: State::Pending,
        };
        rows.push(row);
        Ok(true)
    }
    fn due(&self, _: &str, _: &Arc<Spec>, now_ms: i64, limit: usize) -> Result<Vec<SafItem>, IssuerError> {
        let rows = self.rows.lock().unwrap();
        let due = rows.iter().filter(|r| r.state == State::Pending && r.next_at <= now_ms).take(limit);
        Ok(due
            .map(|r| SafItem {
                id: r.id,
                field90: r.field90.clone(),
                attempts: r.attempts,
                reversal: r.msg.clone(),
            })
            .collect())
    }
    fn attempted(&self, id: i64, attempts: u32, next_attempt_at: i64) -> Result<(), IssuerError> {
        let mut rows = self.rows.lock().unwrap();
        let r = rows.iter_mut().find(|r| r.id == id).unwrap();
        (r.attempts, r.next_at) = (attempts, next_attempt_at);
        Ok(())
    }
    fn acked(&self, id: i64, _: i64) -> Result<bool, IssuerError> {
        let mut rows = self.rows.lock().unwrap();
        let r = rows.iter_mut().find(|r| r.id == id).unwrap();
        let first = r.state == State::Pending;
        r.state = State::Acked;
        Ok(first)
    }
    fn expired(&self, id: i64, _: i64) -> Result<(), IssuerError> {
        self.rows.lock().unwrap().iter_mut().find(|r| r.id == id).unwrap().state = State::Expired;
        Ok(())
    }
    fn depth(&self, _: &str) -> Result<u64, IssuerError> {
        Ok(self.rows.lock().unwrap().iter().filter(|r| r.state == State::Pending).count() as u64)
    }
}

/// The MTI and field 90 of one write.
type Written = (String, String);

/// A link that records the MTI and field 90 of every write and answers 0410 when told to.
struct FakeLink {
    answers: bool,
    written: Mutex<Vec<Written>>,
}

impl SafLink for FakeLink {
    fn exchange_stored(&self, msg: &Message, _: i64) -> impl Future<Output = Outcome> + Send {
        let f90 = msg.text(90).map(|t| t.into_owned()).unwrap_or_default();
        self.written.lock().unwrap().push((msg.mti().to_string(), f90));
        let outcome = match self.answers {
            true => Outcome::Reply(Box::new(Message::new(msg.spec().clone(), "0410").unwrap())),
            false => Outcome::Timeout,
        };
        std::future::ready(outcome)
    }
}

struct FakeIssuer {
    up: AtomicBool,
    link: FakeLink,
    book: Book,
}

impl SafIssuer for FakeIssuer {
    type Link = FakeLink;
    fn name(&self) -> &str {
        "fake"
    }
    fn links_up(&self) -> usize {
        usize::from(self.up.load(Ordering::Relaxed))
    }
    fn advices(&self) -> &Book {
        &self.book
    }
    fn link_for_stored(&self) -> Option<&FakeLink> {
        self.up.load(Ordering::Relaxed).then_some(&self.link)
    }
}

/// Runs the worker over one stored 0400 until `done` holds of the store (at most
/// `bound`), then stops it; returns what was written and the store's rows.
fn run_worker(
    up: bool,
    answers: bool,
    done: impl Fn(&MemStore) -> bool,
    bound: Duration,
) -> (Vec<Written>, Vec<(u32, State)>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let spec = crate::iso::spec::shipped("iso87ascii").unwrap();
        let mut rev = Message::new(spec.clone(), "0400").unwrap();
        rev.set(11, "000042").unwrap();
        rev.set(90, F90).unwrap();
        let store = Arc::new(MemStore::default());
        assert!(store.enqueue("fake", F90, &rev, 0).unwrap());
        let policy = SafPolicy {
            retry_min: Duration::from_millis(5),
            retry_max: Duration::from_millis(10),
            max_attempts: 3,
            ..SafPolicy::default()
        };
        let ctx = Arc::new(SafCtx::new(store.clone(), policy));
        let link = FakeLink { answers, written: Mutex::default() };
        let issuer = Arc::new(FakeIssuer { up: AtomicBool::new(up), link, book: Book::new("fake") });
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker(issuer.clone(), ctx, spec, stop.clone()));
        let started = std::time::Instant::now();
        while !done(&store) && started.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A little longer: a write that should not happen has time to.
        tokio::time::sleep(Duration::from_millis(60)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(3), task).await.unwrap().unwrap();
        let written = issuer.link.written.lock().unwrap().clone();
        (written, store.state())
    })
}

#[test]
fn an_answered_reversal_is_written_once_and_acknowledged() {
    let (written, rows) = run_worker(true, true, |s| s.state()[0].1 == State::Acked, Duration::from_secs(3));
    assert_eq!(written, vec![("0400".to_string(), F90.to_string())]);
    assert_eq!(rows, vec![(1, State::Acked)]);
}

#[test]
fn an_unanswered_reversal_is_repeated_with_its_field_90_then_expired() {
    let (written, rows) =
        run_worker(true, false, |s| s.state()[0].1 == State::Expired, Duration::from_secs(3));
    let mtis: Vec<&str> = written.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(mtis, ["0400", "0401", "0401"]);
    assert!(written.iter().all(|(_, f90)| f90 == F90), "{written:?}");
    assert_eq!(rows, vec![(3, State::Expired)]);
}

#[test]
fn nothing_is_written_while_every_link_is_down() {
    let (written, rows) = run_worker(false, true, |_| false, Duration::from_millis(300));
    assert!(written.is_empty(), "{written:?}");
    assert_eq!(rows, vec![(0, State::Pending)]);
}
