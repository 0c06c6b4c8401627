//! The admin HTTP API, for operations and customer service: look a transaction up by RRN
//! or by terminal + STAN + date, list a terminal's recent transactions (masked PAN only),
//! suspend or re-activate a terminal, reload the rules, health and readiness. Loopback by
//! default; every call but `/health` and `/ready` needs `Authorization: Bearer <token>`.
//! Served by [`crate::opsport`] (hyper): one request per connection, the head bounded in
//! size and time, no body read.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/health` | 200 while the process runs |
//! | GET | `/ready` | 200 when every issuer has a link up and the journal writes, else 503 |
//! | GET | `/transactions?rrn=R` | JSON array of journal rows |
//! | GET | `/transactions?terminal=T&stan=S&date=YYYYMMDD` | JSON array |
//! | GET | `/terminals/T/transactions?limit=N` | the terminal's latest rows (N ≤ 500) |
//! | POST | `/terminals/T/suspend`, `/terminals/T/activate` | 200; 404 for a terminal not in the registry |
//! | POST | `/rules/reload` | 200 with the rule summary (counts), 422 with file, line and key |
//! | GET | `/issuers/I/standin` | the issuer's stand-in: policy, forced, active, exposure, advices pending |
//! | POST | `/issuers/I/standin/start`, `/issuers/I/standin/stop` | the operator's "stand in now" on or off; 404 for an issuer without a `[[standin]]` policy |
//!
//! Every answer is JSON. A bad parameter (a `date` that is not YYYYMMDD) answers 400, a
//! known path with the wrong method 405 with `Allow`. Suspensions are kept in a state file
//! ([`crate::acceptor::suspensions`]) and survive a restart. Every call made with the token
//! is written to the audit log: target [`AUDIT_TARGET`], INFO, with who, what and when;
//! the log names a terminal only when the registry knows it (an id typed by mistake may
//! be a card number).
//! May import: crate::civil, crate::journal, crate::metrics, crate::opsport, crate::route,
//! crate::time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{ALLOW, AUTHORIZATION, HeaderValue};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::journal::{Journal, Query};
use crate::opsport::Answer;
use crate::route::{Router, RuleSummary};

/// The `tracing` target of the audit log: one line per admin call made with the token.
pub const AUDIT_TARGET: &str = "isoswitch::audit";

/// Who made an admin call: the API has one token, so one name.
const WHO: &str = "admin";

/// What the admin API asks of the running switch, and no more: the composition root
/// implements it (`switch::control`), so that this edge reaches into none of the
/// acceptor's or the issuer connector's types.
pub trait SwitchControl: Send + Sync + 'static {
    /// The router: its rules (registry look-ups) and the terminals suspended by hand.
    fn router(&self) -> &Router;
    /// The journal, when the switch keeps one.
    fn journal(&self) -> Option<&Journal>;
    /// Whether the journal writes (true without a journal).
    fn journal_up(&self) -> bool;
    /// The issuers without a link up, in configuration order.
    fn issuers_down(&self) -> Vec<String>;
    /// Whether an issuer of that name is configured.
    fn issuer_known(&self, issuer: &str) -> bool;
    /// Reload the rule files in `dir`; the error names the file, line and key.
    fn reload_rules(&self, dir: &Path) -> Result<RuleSummary, String>;
    /// Suspend or activate a terminal (persisted when a state file is set): whether
    /// anything changed.
    fn set_suspended(&self, terminal: &str, suspend: bool) -> Result<bool, String>;
    /// Whether suspensions are kept in a state file.
    fn suspensions_persisted(&self) -> bool;
    /// Start or stop the operator's "stand in now" for an issuer: whether it changed, or
    /// `None` for an issuer without a stand-in policy.
    fn set_standin_forced(&self, issuer: &str, on: bool) -> Option<bool>;
    /// An issuer's stand-in as JSON, or `None` for an unknown issuer.
    fn standin_status(&self, issuer: &str) -> Option<serde_json::Value>;
}

/// What the admin API works on.
pub struct Admin {
    pub token: String,
    pub switch: Arc<dyn SwitchControl>,
    pub rules_dir: Option<PathBuf>,
}

/// Serve the admin API on `listener` until `shutdown`, with at most `max_connections`
/// open at once and the request head read within `read_timeout`.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    max_connections: usize,
    read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let limits = crate::opsport::Limits {
        max_connections,
        read_timeout,
        head_limit: 4096,
        answer_timeout: Duration::from_secs(10),
    };
    let counters = crate::metrics::ops_counters("admin");
    crate::opsport::serve(listener, "admin", limits, counters, shutdown, move |req| {
        answer(AdminRequest::of(&req), admin.clone())
    })
    .await;
}

/// What the API reads of an HTTP request: no body, no other header.
#[derive(Debug, PartialEq, Eq)]
pub struct AdminRequest {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub bearer: Option<String>,
}

impl AdminRequest {
    /// The parts of an HTTP request the API uses.
    pub fn of<B>(req: &hyper::Request<B>) -> AdminRequest {
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        AdminRequest {
            method: req.method().as_str().to_string(),
            path: req.uri().path().to_string(),
            query: query_pairs(req.uri().query().unwrap_or("")),
            bearer,
        }
    }
}

/// `k=v&k2=v2` as a map (pairs without `=` are left out; the API's values need no decoding).
fn query_pairs(qs: &str) -> HashMap<String, String> {
    qs.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings
/// (only its length can: `subtle` answers a length mismatch at once).
fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn ok_ident(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn answer(req: AdminRequest, admin: Arc<Admin>) -> Answer {
    let (status, body, allow) = handle(&admin, req).await;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = crate::opsport::answer(status, "application/json", body.to_string());
    if let Some(m) = allow {
        r.headers_mut().insert(ALLOW, HeaderValue::from_static(m));
    }
    r
}

/// The calls the API knows: (path pattern for the audit log, the one method it takes).
fn route_of(segs: &[&str]) -> Option<(&'static str, &'static str)> {
    Some(match segs {
        ["health"] => ("/health", "GET"),
        ["ready"] => ("/ready", "GET"),
        ["transactions"] => ("/transactions", "GET"),
        ["terminals", _, "transactions"] => ("/terminals/{terminal}/transactions", "GET"),
        ["terminals", _, "suspend"] => ("/terminals/{terminal}/suspend", "POST"),
        ["terminals", _, "activate"] => ("/terminals/{terminal}/activate", "POST"),
        ["rules", "reload"] => ("/rules/reload", "POST"),
        ["issuers", _, "standin"] => ("/issuers/{issuer}/standin", "GET"),
        ["issuers", _, "standin", "start"] => ("/issuers/{issuer}/standin/start", "POST"),
        ["issuers", _, "standin", "stop"] => ("/issuers/{issuer}/standin/stop", "POST"),
        _ => return None,
    })
}

/// A business date as the journal keeps it: YYYYMMDD, a real calendar day.
fn ok_date(d: &str) -> bool {
    crate::civil::Date::parse_compact(d).is_some()
}

/// Now as RFC 3339 UTC with milliseconds, for the audit log's "when".
fn utc_now() -> String {
    let ms = crate::time::now().as_i64();
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::civil::from_days(days);
    let (h, mi, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// One audit line: who, what (the call's pattern), the terminal when known, the outcome.
fn audit(what: &str, terminal: Option<&str>, status: u16, detail: &str) {
    let at = utc_now();
    let terminal = terminal.unwrap_or("-");
    if status == 401 {
        tracing::warn!(target: AUDIT_TARGET, who = "(no valid token)", what, terminal, status, at = %at, "admin call refused");
    } else {
        tracing::info!(target: AUDIT_TARGET, who = WHO, what, terminal, status, at = %at, detail, "admin call");
    }
}

async fn handle(admin: &Admin, req: AdminRequest) -> (u16, serde_json::Value, Option<&'static str>) {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let Some((what, method)) = route_of(&segs) else {
        return (404, json!({"error": "no such call"}), None);
    };
    if req.method != method {
        let error = format!("{} takes {method} only", req.path);
        return (405, json!({"error": error}), Some(method));
    }
    match segs.as_slice() {
        ["health"] => return (200, json!({"status": "ok"}), None),
        ["ready"] => {
            let down = admin.switch.issuers_down();
            let journal = if admin.switch.journal_up() { "up" } else { "down" };
            return if down.is_empty() && journal == "up" {
                (200, json!({"status": "ready"}), None)
            } else {
                (503, json!({"status": "not ready", "issuers_down": down, "journal": journal}), None)
            };
        }
        _ => {}
    }
    // The terminal the call names, for the audit log only when the registry knows it.
    let rules = admin.switch.router().rules();
    let listed = |t: &str| rules.registry.terminal(t.as_bytes()).is_some();
    let named = match segs.as_slice() {
        ["terminals", t, _] if ok_ident(t) && listed(t) => Some(*t),
        _ => None,
    };
    if !req.bearer.as_deref().is_some_and(|t| same(t, &admin.token)) {
        audit(what, named, 401, "");
        return (401, json!({"error": "a valid bearer token is required"}), None);
    }
    let (status, body, detail) = call(admin, &req, &segs).await;
    audit(what, named, status, &detail);
    (status, body, None)
}

/// An authorised call: (status, JSON body, a word for the audit log).
async fn call(admin: &Admin, req: &AdminRequest, segs: &[&str]) -> (u16, serde_json::Value, String) {
    let journal = admin.switch.journal();
    let rows = |q: Query| async move {
        match journal {
            None => (404, json!({"error": "this switch runs without a journal"}), String::new()),
            Some(j) => match j.query(q).await {
                Ok(r) => {
                    let n = r.len();
                    (200, json!(r), format!("{n} rows"))
                }
                Err(e) => (500, json!({"error": e.to_string()}), "journal error".into()),
            },
        }
    };
    let q = |k: &str| req.query.get(k).map(String::as_str).filter(|v| ok_ident(v));
    match segs {
        ["transactions"] => match (q("rrn"), q("terminal"), q("stan"), req.query.get("date")) {
            (Some(rrn), ..) => rows(Query::ByRrn(rrn.to_string())).await,
            (None, _, _, Some(d)) if !ok_date(d) => {
                (400, json!({"error": "date must be a day as YYYYMMDD, e.g. 20261207"}), "bad date".into())
            }
            (None, Some(t), Some(s), Some(d)) => {
                rows(Query::ByTerminalStan { terminal: t.into(), stan: s.into(), date: d.clone() }).await
            }
            _ => (400, json!({"error": "give rrn, or terminal, stan and date"}), "bad query".into()),
        },
        ["terminals", t, "transactions"] if ok_ident(t) => {
            let limit = q("limit").and_then(|l| l.parse::<u32>().ok()).unwrap_or(20).min(500);
            rows(Query::Recent { terminal: t.to_string(), limit }).await
        }
        ["terminals", t, action @ ("suspend" | "activate")] if ok_ident(t) => {
            set_suspended(admin, t, *action == "suspend").await
        }
        ["issuers", i, "standin", rest @ ..] if ok_ident(i) => standin(admin, i, rest),
        ["rules", "reload"] => match &admin.rules_dir {
            None => {
                (409, json!({"error": "no rule directory is configured (rules = ...)"}), "no rules".into())
            }
            Some(dir) => {
                let (s, d) = (admin.switch.clone(), dir.clone());
                match tokio::task::spawn_blocking(move || s.reload_rules(&d)).await {
                    Ok(Ok(summary)) => {
                        let suspended = admin.switch.router().suspended_terminals().len();
                        let detail = format!(
                            "{} terminals, {} merchants, {} routes, {suspended} suspended",
                            summary.terminals, summary.merchants, summary.routes
                        );
                        (200, json!({"reloaded": summary, "suspended_by_operator": suspended}), detail)
                    }
                    Ok(Err(e)) => (422, json!({"error": e}), "refused".into()),
                    Err(e) => (500, json!({"error": e.to_string()}), "failed".into()),
                }
            }
        },
        _ => {
            (400, json!({"error": "a terminal id is letters, digits, - and _, at most 40"}), "bad id".into())
        }
    }
}

/// An issuer's stand-in: read it, or start or stop the operator's "stand in now".
fn standin(admin: &Admin, issuer: &str, action: &[&str]) -> (u16, serde_json::Value, String) {
    if !admin.switch.issuer_known(issuer) {
        return (404, json!({"error": "no such issuer"}), "unknown issuer".into());
    }
    let detail = match action {
        [on @ ("start" | "stop")] => match admin.switch.set_standin_forced(issuer, *on == "start") {
            None => {
                return (
                    404,
                    json!({"error": "this issuer has no [[standin]] policy"}),
                    format!("{issuer}: no policy"),
                );
            }
            Some(changed) => format!("{issuer}: stand-in {on}{}", if changed { "" } else { " (unchanged)" }),
        },
        _ => format!("{issuer}: read"),
    };
    match admin.switch.standin_status(issuer) {
        Some(s) => (200, s, detail),
        None => (404, json!({"error": "no such issuer"}), "unknown issuer".into()),
    }
}

/// Suspend or activate a terminal the registry knows (an open estate knows every one; an
/// activation also finds a terminal suspended before it left the registry).
async fn set_suspended(admin: &Admin, t: &str, suspend: bool) -> (u16, serde_json::Value, String) {
    let router = admin.switch.router();
    let rules = router.rules();
    let known = rules.registry.terminal(t.as_bytes()).is_some()
        || rules.registry.unknown.is_some()
        || (!suspend && router.suspended_terminals().contains(t));
    if !known {
        return (404, json!({"error": "no such terminal in the registry"}), "unknown terminal".into());
    }
    let (s, id) = (admin.switch.clone(), t.to_string());
    match tokio::task::spawn_blocking(move || s.set_suspended(&id, suspend)).await {
        Ok(Ok(changed)) => {
            let persisted = admin.switch.suspensions_persisted();
            let word = if suspend { "suspended" } else { "activated" };
            let detail = if changed { word.to_string() } else { format!("already {word}") };
            (
                200,
                json!({"terminal": t, "suspended": suspend, "changed": changed, "persisted": persisted}),
                detail,
            )
        }
        Ok(Err(e)) => (500, json!({"error": e}), "state file error".into()),
        Err(e) => (500, json!({"error": e.to_string()}), "failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let http = hyper::Request::builder()
            .method("GET")
            .uri("/transactions?rrn=ABC123&x=1&flag")
            .header("Host", "a")
            .header("authorization", "Bearer s3cret ")
            .body(())
            .unwrap();
        let r = AdminRequest::of(&http);
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/transactions"));
        assert_eq!(r.query.get("rrn").map(String::as_str), Some("ABC123"));
        assert_eq!((r.query.len(), r.bearer.as_deref()), (2, Some("s3cret")));
        let basic = hyper::Request::builder().uri("/health").header("Authorization", "Basic eDp5").body(());
        let r = AdminRequest::of(&basic.unwrap());
        assert_eq!((r.path.as_str(), r.query.len(), r.bearer), ("/health", 0, None));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert!(ok_ident("10000001") && !ok_ident("a' OR 1=1") && !ok_ident(""));
    }

    #[test]
    fn dates_and_routes() {
        for (d, ok) in [
            ("20261207", true),
            ("20240229", true),
            ("20230229", false),
            ("2026-12-07", false),
            ("20261307", false),
            ("20261200", false),
            ("2026120", false),
            ("２０２６１２０", false),
        ] {
            assert_eq!(ok_date(d), ok, "{d}");
        }
        assert_eq!(
            route_of(&["terminals", "T1", "suspend"]),
            Some(("/terminals/{terminal}/suspend", "POST"))
        );
        assert_eq!(route_of(&["terminals", "T1"]), None);
        let at = utc_now();
        assert_eq!((at.len(), &at[10..11], &at[23..]), (24, "T", "Z"), "{at}");
    }
}
