//! Metric names (the only place they are spelled), their descriptions, the Prometheus
//! recorder, and the endpoint (on [`crate::opsport`]) that serves `/metrics`, `/health` (liveness:
//! 200 while the process runs; a failing liveness probe would get the process restarted,
//! and with it the reversals held in memory lost) and `/ready` (503 while the switch cannot
//! take transactions: its journal cannot write, or an issuer has no link up).
//! Labels are low-cardinality only: MTI, issuer name, response code, class — never a
//! PAN, STAN or terminal id.
//! May import: crate::opsport.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::StatusCode;
use metrics::{Counter, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const REQUESTS_TOTAL: &str = "isoswitch_requests_total";
pub const RESPONSES_TOTAL: &str = "isoswitch_responses_total";
pub const ISSUER_LATENCY_SECONDS: &str = "isoswitch_issuer_latency_seconds";
pub const END_TO_END_LATENCY_SECONDS: &str = "isoswitch_end_to_end_latency_seconds";
pub const INFLIGHT: &str = "isoswitch_inflight";
pub const TERMINAL_CONNECTIONS: &str = "isoswitch_terminal_connections";
pub const ISSUER_UP: &str = "isoswitch_issuer_up";
pub const ISSUER_LINKS_UP: &str = "isoswitch_issuer_links_up";
pub const BUILD_INFO: &str = "isoswitch_build_info";
pub const SAF_DEPTH: &str = "isoswitch_saf_depth";
pub const SHED_TOTAL: &str = "isoswitch_shed_total";
pub const DECODE_ERRORS_TOTAL: &str = "isoswitch_decode_errors_total";
pub const MAC_FAILURES_TOTAL: &str = "isoswitch_mac_failures_total";
pub const PIN_REFUSED_TOTAL: &str = "isoswitch_pin_refused_total";
pub const UNMATCHED_REPLIES_TOTAL: &str = "isoswitch_unmatched_replies_total";
pub const TIMEOUTS_TOTAL: &str = "isoswitch_timeouts_total";
pub const LINK_CONNECTS_TOTAL: &str = "isoswitch_link_connects_total";
pub const FRAME_ERRORS_TOTAL: &str = "isoswitch_frame_errors_total";
pub const REFUSED_CONNECTIONS_TOTAL: &str = "isoswitch_refused_connections_total";
pub const REVERSALS_QUEUED_TOTAL: &str = "isoswitch_reversals_queued_total";
pub const SAF_SENT_TOTAL: &str = "isoswitch_saf_sent_total";
pub const SAF_ACKED_TOTAL: &str = "isoswitch_saf_acked_total";
pub const INDOUBT_REVERSED_TOTAL: &str = "isoswitch_indoubt_reversed_total";
pub const LATE_REPLIES_TOTAL: &str = "isoswitch_late_replies_total";
pub const FAILOVER_TOTAL: &str = "isoswitch_failover_total";
pub const ADMISSION_QUEUE_DEPTH: &str = "isoswitch_admission_queue_depth";
pub const ADMITTED_AFTER_WAIT_TOTAL: &str = "isoswitch_admitted_after_wait_total";
pub const ADMISSION_WAIT_SECONDS: &str = "isoswitch_admission_wait_seconds";
pub const ADMISSION_OVERFLOW_TOTAL: &str = "isoswitch_admission_overflow_total";
pub const REVERSAL_STORE_LATE_TOTAL: &str = "isoswitch_reversal_store_late_total";
pub const ACCEPT_ERRORS_TOTAL: &str = "isoswitch_accept_errors_total";
pub const OPS_REFUSED_CONNECTIONS_TOTAL: &str = "isoswitch_ops_refused_connections_total";
pub const ISSUER_UNEXPECTED_MESSAGES_TOTAL: &str = "isoswitch_issuer_unexpected_messages_total";
pub const REPEATS_TOTAL: &str = "isoswitch_repeats_total";

/// `outcome` labels of `REPEATS_TOTAL`.
pub const REPEAT_OUTCOMES: [&str; 3] = ["answered", "waited", "conflict"];
pub const ISSUER_REPLY_REJECTED_TOTAL: &str = "isoswitch_issuer_reply_rejected_total";
pub const JOURNAL_UP: &str = "isoswitch_journal_up";
pub const JOURNAL_WRITE_ERRORS_TOTAL: &str = "isoswitch_journal_write_errors_total";
pub const JOURNAL_SHED_TOTAL: &str = "isoswitch_journal_shed_total";
pub const SAF_HELD: &str = "isoswitch_saf_held";
pub const LATE_ANSWERS_TOTAL: &str = "isoswitch_late_answers_total";
pub const STANDIN_TOTAL: &str = "isoswitch_standin_total";
pub const STANDIN_EXPOSURE: &str = "isoswitch_standin_exposure";
pub const ADVICE_DEPTH: &str = "isoswitch_advice_depth";
pub const ADVICE_DECLINED_TOTAL: &str = "isoswitch_advice_declined_total";
/// The `decision` labels of `isoswitch_standin_total`: approved on the issuer's behalf, or
/// declined because the policy did not cover the request.
pub const STANDIN_DECISIONS: [&str; 2] = ["approved", "declined"];

/// The process's own resource use, under the names every Prometheus client library uses
/// (so stock dashboards and alerts work): CPU seconds (whole seconds), resident and virtual
/// memory, open and maximum descriptors, threads and start time. Read from `/proc/self` at
/// each scrape; the names listed are those exported on Linux.
pub const PROCESS_METRICS: [&str; 8] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "process_start_time_seconds",
];

static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Refresh the process metrics (`PROCESS_METRICS`); called before each render of `/metrics`.
pub fn collect_process() {
    if let Some(p) = PROCESS.get() {
        p.collect();
    }
}

pub const RETENTION_ROWS_EXPORTED_TOTAL: &str = "isoswitch_retention_rows_exported_total";
pub const RETENTION_ROWS_PURGED_TOTAL: &str = "isoswitch_retention_rows_purged_total";
pub const RETENTION_FAILURES_TOTAL: &str = "isoswitch_retention_failures_total";
pub const RETENTION_LAST_SUCCESS_SECONDS: &str = "isoswitch_retention_last_success_timestamp_seconds";

/// Priority class labels (`class`), highest first, as the routing core names them.
pub const CLASSES: [&str; 5] = ["reversal", "network", "priority", "ordinary", "batch"];

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide Prometheus recorder once and describe every metric; later
/// calls return the same handle. `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            let process = PROCESS.get_or_init(metrics_process::Collector::default);
            process.describe();
            process.collect();
            // Counters the contract lists are shown from the start, at zero.
            counter!(DECODE_ERRORS_TOTAL).absolute(0);
            counter!(JOURNAL_WRITE_ERRORS_TOTAL).absolute(0);
            counter!(LATE_ANSWERS_TOTAL).absolute(0);
            for class in CLASSES {
                counter!(SHED_TOTAL, "class" => class).absolute(0);
                counter!(JOURNAL_SHED_TOTAL, "class" => class).absolute(0);
            }
            for outcome in REPEAT_OUTCOMES {
                counter!(REPEATS_TOTAL, "outcome" => outcome).absolute(0);
            }
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(REQUESTS_TOTAL, "Requests received from terminals, by MTI.");
    describe_counter!(RESPONSES_TOTAL, "Responses sent to terminals, by issuer and response code.");
    describe_histogram!(
        ISSUER_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from writing to an issuer to its reply."
    );
    describe_histogram!(
        END_TO_END_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from a terminal's request to its reply."
    );
    describe_gauge!(INFLIGHT, "Requests waiting for an issuer's reply.");
    describe_gauge!(TERMINAL_CONNECTIONS, "Open terminal connections.");
    describe_gauge!(ISSUER_UP, "1 while at least one link of the issuer is connected and signed on, else 0.");
    describe_gauge!(ISSUER_LINKS_UP, "Links of the issuer that are connected and signed on.");
    describe_gauge!(BUILD_INFO, "Always 1; the label says which version of isoswitch runs.");
    describe_gauge!(SAF_DEPTH, "Store-and-forward messages waiting for the issuer.");
    describe_counter!(
        SHED_TOTAL,
        "Requests answered 91 by admission control (queue full, or their wait would pass their deadline), by class."
    );
    describe_counter!(
        JOURNAL_SHED_TOTAL,
        "Requests answered 91 before any issuer because the journal writer was too far behind to commit them in time (journal_budget_ms), by class; also counted in isoswitch_shed_total. Not journalled."
    );
    describe_gauge!(
        ADMISSION_QUEUE_DEPTH,
        "Requests waiting for a slot in an issuer's in-flight window, by issuer and class."
    );
    describe_counter!(
        ADMITTED_AFTER_WAIT_TOTAL,
        "Requests sent to an issuer after waiting in its admission queue, by issuer and class."
    );
    describe_histogram!(
        ADMISSION_WAIT_SECONDS,
        Unit::Seconds,
        "Time requests sent after waiting spent in the admission queue, by class."
    );
    describe_counter!(
        REVERSAL_STORE_LATE_TOTAL,
        "68s answered at their deadline before their reversal was durable (the store completes after), by issuer."
    );
    describe_counter!(
        ADMISSION_OVERFLOW_TOTAL,
        "Reversals and advices sent past a full window (never shed), by issuer: their queue was full \
         or they waited until their deadline."
    );
    describe_counter!(DECODE_ERRORS_TOTAL, "Frames that did not decode as ISO 8583 messages.");
    describe_counter!(
        REPEATS_TOTAL,
        "Retransmissions and repeats of a terminal transaction, never forwarded again: answered as \
         their original was, waited for their original in flight, or 94 for a key reused with another amount."
    );
    describe_counter!(MAC_FAILURES_TOTAL, "Terminal requests refused for a missing or wrong MAC.");
    describe_counter!(
        PIN_REFUSED_TOTAL,
        "Terminal PIN blocks that did not translate (declined, never forwarded)."
    );
    describe_counter!(
        UNMATCHED_REPLIES_TOTAL,
        "Issuer replies that matched no waiting request (late or unknown)."
    );
    describe_counter!(TIMEOUTS_TOTAL, "Requests that reached their deadline without a reply, by issuer.");
    describe_counter!(LINK_CONNECTS_TOTAL, "Successful issuer link connects, by issuer.");
    describe_counter!(
        FRAME_ERRORS_TOTAL,
        "Terminal connections closed for a framing error (oversized or bad length)."
    );
    describe_counter!(REFUSED_CONNECTIONS_TOTAL, "Terminal connections refused at the connection limit.");
    describe_counter!(
        REVERSALS_QUEUED_TOTAL,
        "Reversals stored for an issuer (one per unanswered original)."
    );
    describe_counter!(SAF_SENT_TOTAL, "Reversal writes (0400 and 0401 repeats) to an issuer.");
    describe_counter!(SAF_ACKED_TOTAL, "Reversals the issuer acknowledged with 0410.");
    describe_counter!(
        INDOUBT_REVERSED_TOTAL,
        "Requests in flight at an issuer when the switch died, reversed at the next start."
    );
    describe_counter!(
        ISSUER_REPLY_REJECTED_TOTAL,
        "Issuer replies not believed (answered 96, reversed when they may have approved), by issuer and \
         reason: mti, echo, missing_echo, missing_rc, unknown_rc."
    );
    describe_counter!(LATE_REPLIES_TOTAL, "Issuer replies that arrived after their request timed out.");
    describe_counter!(
        ACCEPT_ERRORS_TOTAL,
        "Failed accepts (out of descriptors and similar), by listener (terminal, admin, metrics)."
    );
    describe_counter!(
        OPS_REFUSED_CONNECTIONS_TOTAL,
        "Connections to the admin or metrics port closed at its connection cap, by port."
    );
    describe_counter!(
        ISSUER_UNEXPECTED_MESSAGES_TOTAL,
        "Messages from an issuer that are neither a response nor network management (dropped), by issuer."
    );
    describe_counter!(
        LATE_ANSWERS_TOTAL,
        "Answers to forwarded requests that left the switch after the deadline promised to the terminal."
    );
    describe_counter!(
        FAILOVER_TOTAL,
        "Requests sent to a backup issuer because every link of this one was down."
    );
    describe_gauge!(
        JOURNAL_UP,
        "1 while the journal writes, 0 while its writes fail (new financial requests are then declined)."
    );
    describe_counter!(
        JOURNAL_WRITE_ERRORS_TOTAL,
        "Journal rows not written: their write failed, or the journal was down."
    );
    describe_counter!(
        RETENTION_ROWS_EXPORTED_TOTAL,
        "Journal rows written to the daily export files by the retention pass."
    );
    describe_counter!(
        RETENTION_ROWS_PURGED_TOTAL,
        "Journal rows deleted by the retention pass (each held by a checked export file)."
    );
    describe_counter!(
        RETENTION_FAILURES_TOTAL,
        "Retention passes that failed, and business days a pass left alone (export missing, differing or not covering the day)."
    );
    describe_gauge!(
        RETENTION_LAST_SUCCESS_SECONDS,
        "Unix time of the end of the last retention pass that left no day behind."
    );
    describe_gauge!(
        SAF_HELD,
        "Reversals held in memory only, because the store-and-forward store could not take them."
    );
    describe_counter!(
        STANDIN_TOTAL,
        "Requests the switch decided on an issuer's behalf (stand-in), by issuer and decision."
    );
    describe_gauge!(
        STANDIN_EXPOSURE,
        "Minor units approved in stand-in and not yet acknowledged by the issuer's advice answer."
    );
    describe_gauge!(ADVICE_DEPTH, "Stand-in advices waiting for the issuer's acknowledgement.");
    describe_counter!(
        ADVICE_DECLINED_TOTAL,
        "Stand-in advices the issuer answered with a code other than 00 (the acquirer's risk)."
    );
}

/// The reasons of `isoswitch_issuer_reply_rejected_total`, shown at zero from the start.
pub const REJECT_REASONS: [&str; 5] = ["mti", "echo", "missing_echo", "missing_rc", "unknown_rc"];

/// Show every counter at zero from the start, for the configured issuers (a counter that
/// first appears when it first counts breaks `rate()` and alerts on it). Adds zero: a
/// counter that has already counted keeps its value.
pub fn zero_counters<'a>(issuers: impl IntoIterator<Item = &'a str>) {
    for c in [
        DECODE_ERRORS_TOTAL,
        JOURNAL_WRITE_ERRORS_TOTAL,
        LATE_ANSWERS_TOTAL,
        MAC_FAILURES_TOTAL,
        PIN_REFUSED_TOTAL,
        FRAME_ERRORS_TOTAL,
        REFUSED_CONNECTIONS_TOTAL,
        RETENTION_ROWS_EXPORTED_TOTAL,
        RETENTION_ROWS_PURGED_TOTAL,
        RETENTION_FAILURES_TOTAL,
    ] {
        counter!(c).increment(0);
    }
    counter!(ACCEPT_ERRORS_TOTAL, "listener" => "terminal").increment(0);
    for issuer in issuers {
        for c in [
            INDOUBT_REVERSED_TOTAL,
            ADMISSION_OVERFLOW_TOTAL,
            ISSUER_UNEXPECTED_MESSAGES_TOTAL,
            UNMATCHED_REPLIES_TOTAL,
            TIMEOUTS_TOTAL,
            LINK_CONNECTS_TOTAL,
            REVERSALS_QUEUED_TOTAL,
            ADVICE_DECLINED_TOTAL,
            SAF_SENT_TOTAL,
            SAF_ACKED_TOTAL,
            LATE_REPLIES_TOTAL,
            FAILOVER_TOTAL,
            REVERSAL_STORE_LATE_TOTAL,
        ] {
            counter!(c, "issuer" => issuer.to_string()).increment(0);
        }
        counter!(RESPONSES_TOTAL, "issuer" => issuer.to_string(), "rc" => "00").increment(0);
        for decision in STANDIN_DECISIONS {
            counter!(STANDIN_TOTAL, "issuer" => issuer.to_string(), "decision" => decision).increment(0);
        }
        for reason in REJECT_REASONS {
            counter!(ISSUER_REPLY_REJECTED_TOTAL, "issuer" => issuer.to_string(), "reason" => reason)
                .increment(0);
        }
        for class in CLASSES {
            counter!(ADMITTED_AFTER_WAIT_TOTAL, "issuer" => issuer.to_string(), "class" => class)
                .increment(0);
        }
    }
}

/// `isoswitch_issuer_up{issuer}` (0/1) and `isoswitch_issuer_links_up{issuer}` (how many),
/// one per issuer name in the process, fed by that issuer's links as they come and go.
/// The gauges are looked up at each change (rare), not kept: a handle made before the
/// recorder was installed would stay a no-op.
pub struct IssuerUp {
    issuer: String,
    /// Links up; the lock also orders the two gauges' updates so they never disagree.
    links: std::sync::Mutex<usize>,
}

impl IssuerUp {
    /// The one for `issuer`, its gauges shown at their current value.
    pub fn of(issuer: &str) -> Arc<IssuerUp> {
        static ALL: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Arc<IssuerUp>>>> =
            OnceLock::new();
        let mut all = ALL.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        let u = all
            .entry(issuer.to_string())
            .or_insert_with(|| {
                Arc::new(IssuerUp { issuer: issuer.to_string(), links: std::sync::Mutex::new(0) })
            })
            .clone();
        drop(all);
        u.change(|_| {});
        u
    }

    fn change(&self, f: impl FnOnce(&mut usize)) {
        let mut n = self.links.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut n);
        gauge!(ISSUER_LINKS_UP, "issuer" => self.issuer.clone()).set(*n as f64);
        gauge!(ISSUER_UP, "issuer" => self.issuer.clone()).set(if *n > 0 { 1.0 } else { 0.0 });
    }

    pub fn link_up(&self) {
        self.change(|n| *n = n.saturating_add(1));
    }

    pub fn link_down(&self) {
        self.change(|n| *n = n.saturating_sub(1));
    }
}

impl std::fmt::Debug for IssuerUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerUp").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

const KNOWN_MTIS: [&str; 12] =
    ["0100", "0120", "0200", "0220", "0320", "0400", "0401", "0420", "0421", "0500", "0800", "0820"];

/// A label value for an MTI without allocating: the common ones are static.
pub fn mti_label(mti: &str) -> &'static str {
    KNOWN_MTIS.iter().find(|k| **k == mti).copied().unwrap_or("other")
}

/// `isoswitch_requests_total{mti}` handles, looked up once: the hot path then only
/// increments an atomic.
#[derive(Debug)]
pub struct RequestCounters {
    known: Vec<Counter>,
    other: Counter,
}

impl RequestCounters {
    pub fn new() -> RequestCounters {
        RequestCounters {
            known: KNOWN_MTIS.iter().map(|m| counter!(REQUESTS_TOTAL, "mti" => *m)).collect(),
            other: counter!(REQUESTS_TOTAL, "mti" => "other"),
        }
    }

    pub fn get(&self, mti: &[u8]) -> &Counter {
        KNOWN_MTIS
            .iter()
            .position(|k| k.as_bytes() == mti)
            .and_then(|i| self.known.get(i))
            .unwrap_or(&self.other)
    }
}

impl Default for RequestCounters {
    fn default() -> Self {
        RequestCounters::new()
    }
}

/// `isoswitch_responses_total{issuer, rc}` handles for one issuer label, made on first use.
#[derive(Debug)]
pub struct ResponseCounters {
    issuer: String,
    /// "00".."99", then one slot for any other code.
    by_rc: [OnceLock<Counter>; 101],
}

impl ResponseCounters {
    pub fn new(issuer: &str) -> ResponseCounters {
        ResponseCounters { issuer: issuer.to_string(), by_rc: std::array::from_fn(|_| OnceLock::new()) }
    }

    pub fn get(&self, rc: &[u8]) -> &Counter {
        let label = rc_label(rc);
        // The index is at most 100, inside the array.
        let i = label.parse::<usize>().unwrap_or(100).min(100);
        self.by_rc[i]
            .get_or_init(|| counter!(RESPONSES_TOTAL, "issuer" => self.issuer.clone(), "rc" => label))
    }
}

/// A label value for a response code without allocating per call.
pub fn rc_label(rc: &[u8]) -> &'static str {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    let t = TABLE.get_or_init(|| (0..100).map(|i| format!("{i:02}")).collect());
    match rc {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            let i = usize::from(a - b'0') * 10 + usize::from(b - b'0');
            t.get(i).map_or("other", |s| s.as_str())
        }
        _ => "other",
    }
}

/// Whether the switch can take transactions (`/ready`).
pub type Ready = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// Serve `/metrics`, `/health` and `/ready` on `listener` until `shutdown`, with at most
/// `max_connections` open at once and the request head read within `read_timeout`.
pub async fn serve_http(
    listener: TcpListener,
    handle: Option<PrometheusHandle>,
    ready: Ready,
    max_connections: usize,
    read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let upkeep = handle.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        // Histograms are drained into their buckets on upkeep; without it they grow.
        let Some(h) = upkeep else { return };
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => h.run_upkeep(),
            }
        }
    });
    let limits = crate::opsport::Limits {
        max_connections,
        read_timeout,
        head_limit: 2048,
        answer_timeout: Duration::from_secs(5),
    };
    let handle = Arc::new(handle);
    crate::opsport::serve(listener, "metrics", limits, ops_counters("metrics"), shutdown, move |req| {
        std::future::ready(answer(req.uri().path(), &handle, &ready))
    })
    .await;
}

/// The counters of the operations port `port` (`admin`, `metrics`).
pub fn ops_counters(port: &'static str) -> crate::opsport::Counters {
    crate::opsport::Counters {
        refused: counter!(OPS_REFUSED_CONNECTIONS_TOTAL, "port" => port),
        accept_errors: counter!(ACCEPT_ERRORS_TOTAL, "listener" => port),
    }
}

fn answer(path: &str, handle: &Option<PrometheusHandle>, ready: &Ready) -> crate::opsport::Answer {
    let (status, ctype, body) = match path {
        "/metrics" => {
            collect_process();
            let body = handle.as_ref().map(|h| h.render()).unwrap_or_default();
            (StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        "/health" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/ready" if ready() => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        "/ready" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
    };
    crate::opsport::answer(status, ctype, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_static_and_bounded() {
        assert_eq!(mti_label("0200"), "0200");
        assert_eq!(mti_label("9999"), "other");
        assert_eq!(rc_label(b"00"), "00");
        assert_eq!(rc_label(b"91"), "91");
        assert_eq!(rc_label(b"A1"), "other");
        assert_eq!(rc_label(b"123"), "other");
    }
}
