//! The admin HTTP API, for operations and customer service: look a transaction up by RRN
//! or by terminal + STAN + date, list a terminal's recent transactions (masked PAN only),
//! suspend or re-activate a terminal, reload the rules, health and readiness. Loopback by
//! default; every call but `/health` and `/ready` needs `Authorization: Bearer <token>`.
//! A deliberately small HTTP/1.1 server: one request per connection, the head read with a
//! size bound, no body. May import: every layer (it is an edge).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/health` | 200 while the process runs |
//! | GET | `/ready` | 200 when every issuer has a link up and the journal writes, else 503 |
//! | GET | `/transactions?rrn=R` | JSON array of journal rows |
//! | GET | `/transactions?terminal=T&stan=S&date=YYYYMMDD` | JSON array |
//! | GET | `/terminals/T/transactions?limit=N` | the terminal's latest rows (N ≤ 500) |
//! | POST | `/terminals/T/suspend`, `/terminals/T/activate` | 200 |
//! | POST | `/rules/reload` | 200 with the rule summary, 422 with file, line and key |

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::acceptor::Services;
use crate::issuer::Issuers;
use crate::journal::Query;

/// What the admin API works on.
pub struct Admin {
    pub token: String,
    pub services: Arc<Services>,
    pub issuers: Arc<Issuers>,
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
    let limits = crate::http::Limits {
        max_connections,
        read_timeout,
        head_limit: 4096,
        answer_timeout: Duration::from_secs(10),
    };
    let counters = crate::metrics::ops_counters("admin");
    crate::http::serve(listener, "admin", limits, counters, shutdown, move |s, head| {
        answer(s, head, admin.clone())
    })
    .await;
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub bearer: Option<String>,
}

/// Parse a request head; `None` when it is not HTTP.
pub fn parse(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, target) = (first.next()?.to_string(), first.next()?);
    let (path, qs) = target.split_once('?').unwrap_or((target, ""));
    let query = qs
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bearer = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.trim().strip_prefix("Bearer ").map(|t| t.trim().to_string()));
    Some(Request { method, path: path.to_string(), query, bearer })
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn ok_ident(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn answer(mut stream: TcpStream, head: String, admin: Arc<Admin>) -> std::io::Result<()> {
    let (status, body) = match parse(&head) {
        Some(req) => handle(&admin, req).await,
        None => (400, json!({"error": "not an HTTP request"})),
    };
    let reason = match status {
        200 => "200 OK",
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        404 => "404 Not Found",
        409 => "409 Conflict",
        422 => "422 Unprocessable Entity",
        503 => "503 Service Unavailable",
        _ => "500 Internal Server Error",
    };
    crate::http::respond(&mut stream, reason, "application/json", &body.to_string()).await
}

async fn handle(admin: &Admin, req: Request) -> (u16, serde_json::Value) {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => return (200, json!({"status": "ok"})),
        ("GET", ["ready"]) => {
            let down: Vec<&str> =
                admin.issuers.iter().filter(|i| i.links_up() == 0).map(|i| i.name()).collect();
            let journal = if admin.services.journal_up() { "up" } else { "down" };
            return if down.is_empty() && journal == "up" {
                (200, json!({"status": "ready"}))
            } else {
                (503, json!({"status": "not ready", "issuers_down": down, "journal": journal}))
            };
        }
        _ => {}
    }
    if !req.bearer.as_deref().is_some_and(|t| same(t, &admin.token)) {
        return (401, json!({"error": "a valid bearer token is required"}));
    }
    let journal = admin.services.journal.as_ref();
    let rows = |q: Query| async move {
        match journal {
            None => (404, json!({"error": "this switch runs without a journal"})),
            Some(j) => match j.query(q).await {
                Ok(r) => (200, json!(r)),
                Err(e) => (500, json!({"error": e.to_string()})),
            },
        }
    };
    let q = |k: &str| req.query.get(k).map(String::as_str).filter(|v| ok_ident(v));
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["transactions"]) => match (q("rrn"), q("terminal"), q("stan"), q("date")) {
            (Some(rrn), ..) => rows(Query::ByRrn(rrn.to_string())).await,
            (None, Some(t), Some(s), Some(d)) => {
                rows(Query::ByTerminalStan { terminal: t.into(), stan: s.into(), date: d.into() }).await
            }
            _ => (400, json!({"error": "give rrn, or terminal, stan and date"})),
        },
        ("GET", ["terminals", t, "transactions"]) if ok_ident(t) => {
            let limit = q("limit").and_then(|l| l.parse::<u32>().ok()).unwrap_or(20).min(500);
            rows(Query::Recent { terminal: t.to_string(), limit }).await
        }
        ("POST", ["terminals", t, action @ ("suspend" | "activate")]) if ok_ident(t) => {
            let suspend = *action == "suspend";
            let changed = admin.services.router.set_suspended(t, suspend);
            tracing::info!(terminal = %t, suspend, changed, "terminal status changed by an operator");
            (200, json!({"terminal": t, "suspended": suspend, "changed": changed}))
        }
        ("POST", ["rules", "reload"]) => match &admin.rules_dir {
            None => (409, json!({"error": "no rule directory is configured (rules = ...)"})),
            Some(dir) => {
                let (s, d) = (admin.services.clone(), dir.clone());
                match tokio::task::spawn_blocking(move || s.reload_rules(&d)).await {
                    Ok(Ok(summary)) => (200, json!({"reloaded": format!("{summary:?}")})),
                    Ok(Err(e)) => (422, json!({"error": e.to_string()})),
                    Err(e) => (500, json!({"error": e.to_string()})),
                }
            }
        },
        _ => (404, json!({"error": "no such call"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        let r = parse(
            "GET /transactions?rrn=ABC123&x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/transactions"));
        assert_eq!(r.query.get("rrn").map(String::as_str), Some("ABC123"));
        assert_eq!(r.bearer.as_deref(), Some("s3cret"));
        assert!(parse("").is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert!(ok_ident("10000001") && !ok_ident("a' OR 1=1") && !ok_ident(""));
    }
}
