//! What a simulated-terminal run saw: counts, latency percentiles and response codes,
//! rendered for people (`Display`) and as the one-line JSON object of the CLI contract:
//!
//! ```text
//! {"sent": N, "received": N, "mismatches": N, "errors": N, "throughput_per_s": X,
//!  "latency_us": {"p50": X, "p99": X, "p999": X, "max": X}, "rc": {"00": N, "51": N, ...}}
//! ```
//!
//! Imports std, serde and the histogram.
//! May import: crate::sim::histogram.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::histogram::LatencyHistogram;

/// The outcome of `run_terminals`.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Requests written.
    pub sent: u64,
    /// Replies that matched a request in flight by STAN (whether or not their fields agreed).
    pub received: u64,
    /// Replies whose MTI, RRN, terminal id or amount differed from their request, that did
    /// not decode, had no response code, or answered no request in flight.
    pub mismatches: u64,
    /// Requests left unanswered past the per-request timeout.
    pub timeouts: u64,
    /// Requests in flight on a connection that closed under them.
    pub lost: u64,
    /// Replies that arrived after their request had timed out (not mismatches).
    pub late: u64,
    /// Connections that could not be opened.
    pub connect_failures: u64,
    /// Why the first failed connection could not be opened (TCP or TLS).
    pub connect_error: Option<String>,
    /// Connections closed by the peer or by an I/O error before the run ended.
    pub closed: u64,
    /// Replies that overtook an older request in flight on the same connection.
    pub reordered: u64,
    /// Connections used.
    pub connections: u64,
    /// From the start of the run to the last reply.
    pub elapsed: Duration,
    /// Write-to-reply latency of every matched reply.
    pub latency: LatencyHistogram,
    /// Matched replies by response code (field 39).
    pub rc: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct JsonLatency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    sent: u64,
    received: u64,
    mismatches: u64,
    errors: u64,
    throughput_per_s: f64,
    latency_us: JsonLatency,
    rc: &'a BTreeMap<String, u64>,
}

/// One line, with a space after each colon and comma, as the contract writes it:
/// `{"sent": 1, "latency_us": {"p50": 2.5}}`.
struct ContractStyle;

impl serde_json::ser::Formatter for ContractStyle {
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

fn micros(nanos: u64) -> f64 {
    (nanos as f64 / 100.0).round() / 10.0
}

impl SimReport {
    /// Connect failures, connections closed under the run, and requests never answered.
    pub fn errors(&self) -> u64 {
        self.connect_failures + self.closed + self.timeouts + self.lost
    }

    /// Matched replies per second of the run.
    pub fn throughput_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 { 0.0 } else { self.received as f64 / secs }
    }

    /// Latency at quantile `q`, in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        micros(self.latency.quantile(q))
    }

    /// The contract's one-line JSON object.
    pub fn to_json(&self) -> String {
        let j = JsonReport {
            sent: self.sent,
            received: self.received,
            mismatches: self.mismatches,
            errors: self.errors(),
            throughput_per_s: (self.throughput_per_s() * 10.0).round() / 10.0,
            latency_us: JsonLatency {
                p50: self.latency_us(0.5),
                p99: self.latency_us(0.99),
                p999: self.latency_us(0.999),
                max: micros(self.latency.max()),
            },
            rc: &self.rc,
        };
        let mut out = Vec::with_capacity(256);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, ContractStyle);
        // Serialising plain numbers and strings into a Vec cannot fail.
        if j.serialize(&mut ser).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sim-terminal: connections {}, {:.2} s, {:.0} replies/s",
            self.connections,
            self.elapsed.as_secs_f64(),
            self.throughput_per_s()
        )?;
        writeln!(
            f,
            "  sent {}  received {}  mismatches {}  errors {}",
            self.sent,
            self.received,
            self.mismatches,
            self.errors()
        )?;
        writeln!(
            f,
            "  errors: timeouts {}  lost on close {}  connections closed {}  connect failures {}  (late replies {}, reordered {})",
            self.timeouts, self.lost, self.closed, self.connect_failures, self.late, self.reordered
        )?;
        writeln!(
            f,
            "  latency us: p50 {}  p99 {}  p99.9 {}  max {}",
            self.latency_us(0.5),
            self.latency_us(0.99),
            self.latency_us(0.999),
            micros(self.latency.max())
        )?;
        if let Some(e) = &self.connect_error {
            writeln!(f, "  first connect failure: {e}")?;
        }
        let codes: Vec<String> = self.rc.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        write!(f, "  response codes: {}", codes.join("  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_keys_in_order() {
        let mut r = SimReport {
            sent: 10,
            received: 9,
            timeouts: 1,
            elapsed: Duration::from_secs(3),
            ..Default::default()
        };
        r.latency.record(1_500);
        r.rc.insert("00".into(), 8);
        r.rc.insert("51".into(), 1);
        let j = r.to_json();
        assert_eq!(
            j,
            r#"{"sent": 10, "received": 9, "mismatches": 0, "errors": 1, "throughput_per_s": 3.0, "latency_us": {"p50": 1.5, "p99": 1.5, "p999": 1.5, "max": 1.5}, "rc": {"00": 8, "51": 1}}"#
        );
        assert!(r.to_string().contains("p99"));
    }
}
