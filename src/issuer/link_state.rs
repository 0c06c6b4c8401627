//! A link's health as an operator reads it in the log: why a link is down, and when to say
//! so. The link task reconnects with backoff, possibly many times a second; the operator
//! wants one WARN when the link goes down (from up, or at start when it never came up),
//! with the reason, then a reminder while it stays down (every `down_reminder_ms`, never one
//! per retry), and one INFO when it is up again, saying how long it was down. The retries in
//! between are logged at DEBUG only.
//!
//! [`LinkHealth`] is the state machine: pure, it takes `now` as an argument, so its
//! throttling is tested on a virtual clock. [`LinkFault`] is the reason, as the log words
//! it.
//! May import: nothing.

use std::fmt;
use std::time::{Duration, Instant};

/// Why a link is not serving: the reason of a down WARN.
#[derive(Debug)]
pub enum LinkFault {
    /// The TCP connect failed (refused, unreachable, ...).
    Connect(std::io::Error),
    /// The TCP connect did not complete within `connect_ms`.
    ConnectTimeout { ms: u64 },
    /// The TLS handshake failed (certificate refused, protocol error, peer closed).
    Tls(std::io::Error),
    /// The TLS handshake did not complete within `handshake_ms`.
    TlsTimeout { ms: u64 },
    /// A sign-on (field 70 = 001) or echo (301) answered, but not with 0810 and 00.
    Declined { what: &'static str, mti: String, rc: Option<String> },
    /// A sign-on or echo unanswered within the link's `deadline_ms`.
    Unanswered { what: &'static str, ms: u64 },
    /// The connection ended while a sign-on or echo was waiting, or the message could not
    /// be queued.
    NotExchanged { what: &'static str },
    /// The issuer closed the connection.
    Closed,
    /// Reading from the issuer failed (a reset, a TLS alert).
    ReadFailed(String),
    /// A write failed or made no progress within `write_ms`.
    WriteFailed,
}

impl LinkFault {
    /// Whether `self` and `other` are the same kind of fault (a reminder says when the
    /// reason changed).
    fn same_kind(&self, other: &LinkFault) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl fmt::Display for LinkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkFault::Connect(e) => match e.kind() {
                std::io::ErrorKind::ConnectionRefused => f.write_str("connection refused"),
                _ => write!(f, "connect failed: {e}"),
            },
            LinkFault::ConnectTimeout { ms } => write!(f, "connect timed out after {ms} ms"),
            LinkFault::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            LinkFault::TlsTimeout { ms } => write!(f, "TLS handshake timed out after {ms} ms"),
            LinkFault::Declined { what, mti, rc: Some(rc) } => {
                write!(f, "{what} declined: {mti} with response code {rc}")
            }
            LinkFault::Declined { what, mti, rc: None } => {
                write!(f, "{what} declined: {mti} without a response code")
            }
            LinkFault::Unanswered { what, ms } => write!(f, "{what} unanswered after {ms} ms"),
            LinkFault::NotExchanged { what } => write!(f, "{what} not exchanged: connection lost"),
            LinkFault::Closed => f.write_str("connection closed by the issuer"),
            LinkFault::ReadFailed(e) => write!(f, "read failed: {e}"),
            LinkFault::WriteFailed => f.write_str("write failed or stalled"),
        }
    }
}

/// What to log about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReport {
    /// The link just went down (from up, or never up since start): WARN with the reason.
    WentDown,
    /// Still down; a reminder is due: WARN with how long and how many failed attempts.
    Reminder { down_for: Duration, attempts: u64, reason_changed: bool },
    /// Still down, reminded recently: DEBUG only.
    Quiet,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Since start, before the first attempt ended.
    Unknown,
    Up,
    Down {
        since: Instant,
        last_warn: Instant,
        attempts: u64,
    },
}

/// The health of one link, as the link task sees it (see the module doc).
#[derive(Debug)]
pub struct LinkHealth {
    state: State,
    reminder: Duration,
    /// The kind of the last fault warned about, to tell a reminder that the reason changed.
    warned: Option<LinkFault>,
}

impl LinkHealth {
    /// A link not yet tried; reminders every `reminder` while it is down.
    pub fn new(reminder: Duration) -> LinkHealth {
        LinkHealth { state: State::Unknown, reminder, warned: None }
    }

    #[cfg(test)]
    fn is_down(&self) -> bool {
        matches!(self.state, State::Down { .. })
    }

    /// The link is up (connected, signed on where configured) at `now`: `Some(down_for,
    /// failed attempts)` when it was down (an INFO "up again"), `None` when it was not.
    pub fn up(&mut self, now: Instant) -> Option<(Duration, u64)> {
        let was = std::mem::replace(&mut self.state, State::Up);
        self.warned = None;
        match was {
            State::Down { since, attempts, .. } => Some((now.saturating_duration_since(since), attempts)),
            State::Unknown | State::Up => None,
        }
    }

    /// An attempt failed, or the serving connection ended, at `now` for `fault`.
    pub fn down(&mut self, now: Instant, fault: LinkFault) -> DownReport {
        match &mut self.state {
            State::Unknown | State::Up => {
                self.state = State::Down { since: now, last_warn: now, attempts: 1 };
                self.warned = Some(fault);
                DownReport::WentDown
            }
            State::Down { since, last_warn, attempts } => {
                *attempts += 1;
                if now.saturating_duration_since(*last_warn) < self.reminder {
                    return DownReport::Quiet;
                }
                *last_warn = now;
                let reason_changed = self.warned.as_ref().is_none_or(|w| !w.same_kind(&fault));
                let report = DownReport::Reminder {
                    down_for: now.saturating_duration_since(*since),
                    attempts: *attempts,
                    reason_changed,
                };
                self.warned = Some(fault);
                report
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> LinkFault {
        LinkFault::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn one_warning_per_change_then_reminders_on_a_virtual_clock() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut h = LinkHealth::new(Duration::from_secs(60));
        assert!(!h.is_down());
        // Retries every 5 s for three minutes: one WentDown, then one reminder a minute.
        let mut reports = Vec::new();
        for i in 0..=36u64 {
            let r = h.down(at(i * 5_000), refused());
            if r != DownReport::Quiet {
                reports.push((i * 5_000, r));
            }
        }
        let minute = Duration::from_secs(60);
        assert_eq!(
            reports,
            vec![
                (0, DownReport::WentDown),
                (60_000, DownReport::Reminder { down_for: minute, attempts: 13, reason_changed: false }),
                (120_000, DownReport::Reminder { down_for: 2 * minute, attempts: 25, reason_changed: false }),
                (180_000, DownReport::Reminder { down_for: 3 * minute, attempts: 37, reason_changed: false }),
            ]
        );
        assert!(h.is_down());
        assert_eq!(h.up(at(181_000)), Some((Duration::from_secs(181), 37)));
        assert!(!h.is_down());
        // Up from the start: no "up again"; a later loss is a fresh WentDown.
        let mut h = LinkHealth::new(Duration::from_secs(60));
        assert_eq!(h.up(at(0)), None);
        assert_eq!(h.down(at(10), LinkFault::Closed), DownReport::WentDown);
        assert_eq!(h.down(at(20), refused()), DownReport::Quiet);
        // The reminder says when the reason is no longer the one warned about.
        assert_eq!(
            h.down(at(60_010), refused()),
            DownReport::Reminder { down_for: minute, attempts: 3, reason_changed: true }
        );
        assert_eq!(h.up(at(60_020)), Some((Duration::from_millis(60_010), 3)));
    }

    #[test]
    fn reasons_read_as_an_operator_expects() {
        let cases: Vec<(LinkFault, &str)> = vec![
            (refused(), "connection refused"),
            (LinkFault::ConnectTimeout { ms: 2000 }, "connect timed out after 2000 ms"),
            (LinkFault::TlsTimeout { ms: 2000 }, "TLS handshake timed out after 2000 ms"),
            (
                LinkFault::Tls(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "invalid peer certificate",
                )),
                "TLS handshake failed: invalid peer certificate",
            ),
            (
                LinkFault::Declined { what: "sign-on", mti: "0810".into(), rc: Some("91".into()) },
                "sign-on declined: 0810 with response code 91",
            ),
            (LinkFault::Unanswered { what: "echo", ms: 5000 }, "echo unanswered after 5000 ms"),
            (LinkFault::Closed, "connection closed by the issuer"),
            (LinkFault::WriteFailed, "write failed or stalled"),
        ];
        for (fault, want) in cases {
            assert_eq!(fault.to_string(), want);
        }
    }
}
