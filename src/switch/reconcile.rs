//! Reconciliation of the in-doubt log at start, before any issuer link sends: what a
//! previous run wrote to an issuer and did not see resolved (it died: kill -9, a panic,
//! the OOM killer) is reversed through store-and-forward, then the segments go. Also the
//! journal barrier the log's reaper uses (`JournalSettled`).
//!
//! A request read back is resolved when the journal holds the issuer's answer to it: a
//! row with the request's terminal, the terminal's STAN, field 7 and MTI (the journal's
//! unique key, so one index look-up each), a response code, and the STAN the switch
//! used toward the issuer (no STAN is recorded only for a row the switch answered itself;
//! then a code other than 68 also resolves it). Anything else — no row, a claim without
//! outcome, a 68 (the timeout path queued a reversal, unless the crash came first) — gets
//! a reversal queued with `ON CONFLICT DO NOTHING` on (issuer, field 90): a reversal
//! already queued is not queued twice, and a second crash during reconciliation repeats
//! nothing. Segments are deleted only after every one of their requests is handled; a
//! segment that does not open (another key) refuses the start, naming the file.
//! May import: crate::config, crate::iso, crate::issuer, crate::journal, crate::metrics, crate::rc,
//! crate::time.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ring::aead::LessSafeKey;

use crate::config::Config;
use crate::iso::{Message, Spec};
use crate::issuer::indoubt::{self, Settled};
use crate::issuer::{IssuerError, SafStore, reversal};
use crate::journal::{Journal, Query, TxnRecord};
use crate::metrics as m;

/// Look-ups sent to the journal at once.
const CHUNK: usize = 1024;

/// The journal's barrier, for the in-doubt log's reaper.
#[derive(Debug)]
pub struct JournalSettled(pub Journal);

impl Settled for JournalSettled {
    fn barrier(&self) -> Result<(), String> {
        self.0.barrier_blocking().map_err(|e| e.to_string())
    }
}

/// What reconciliation found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub segments: usize,
    pub requests: usize,
    /// The journal holds the issuer's answer: nothing to do.
    pub answered: usize,
    /// Reversals newly queued.
    pub reversed: usize,
    /// Reversals that were already queued (the timeout path, or an earlier attempt).
    pub already_queued: usize,
    /// Requests that could not be decoded or reversed (their segment is kept).
    pub unreadable: usize,
}

impl std::ops::AddAssign for Reconciled {
    fn add_assign(&mut self, o: Reconciled) {
        self.segments += o.segments;
        self.requests += o.requests;
        self.answered += o.answered;
        self.reversed += o.reversed;
        self.already_queued += o.already_queued;
        self.unreadable += o.unreadable;
    }
}

fn err(file: &Path, message: impl std::fmt::Display) -> IssuerError {
    IssuerError::InDoubt { file: file.display().to_string(), message: message.to_string() }
}

/// Whether `rows` (the journal's rows with the request's key) hold the issuer's answer to
/// `sent`, the request as written.
fn answered(rows: &[TxnRecord], sent: &Message) -> bool {
    let stan = sent.text(11);
    rows.iter().any(|r| {
        r.mti == sent.mti()
            && r.rc.is_some()
            && match r.switch_stan.as_deref() {
                Some(s) => Some(s) == stan.as_deref(),
                None => r.rc != Some(crate::rc::ResponseCode::LATE_RESPONSE),
            }
    })
}

/// Reconcile every configured issuer's segments under `dir`. Blocking (files, the
/// journal, the store): call it from the blocking pool, before the issuers start.
pub fn reconcile(
    cfg: &Config,
    dir: &Path,
    key: &LessSafeKey,
    journal: &Journal,
    saf: &Arc<dyn SafStore>,
) -> Result<Reconciled, IssuerError> {
    let mut total = Reconciled::default();
    for ic in &cfg.issuers {
        let idir = indoubt::issuer_dir(dir, &ic.name);
        let segs = indoubt::segments(&idir).map_err(|e| err(&idir, e))?;
        if segs.is_empty() {
            continue;
        }
        let specs: Vec<Option<Arc<Spec>>> = ic.links.iter().map(|l| Spec::load(&l.spec).ok()).collect();
        let mut got = Reconciled::default();
        for (link, path) in &segs {
            let Some(spec) = specs.get(*link).or(specs.first()).cloned().flatten() else {
                return Err(err(path, "no spec to read it with"));
            };
            let n = one_segment(&ic.name, path, &spec, key, journal, saf, &mut got)?;
            if n == 0 {
                if let Err(e) = std::fs::remove_file(path) {
                    return Err(err(path, e));
                }
            } else {
                tracing::error!(issuer = %ic.name, file = %path.display(), unreadable = n,
                    "in-doubt segment kept: some of its requests could not be reversed");
            }
        }
        got.segments = segs.len();
        if got.reversed > 0 {
            metrics::counter!(m::INDOUBT_REVERSED_TOTAL, "issuer" => ic.name.clone())
                .increment(got.reversed as u64);
        }
        // A clean stop leaves segments whose requests were all answered: that is no news.
        if got.reversed > 0 || got.unreadable > 0 {
            tracing::warn!(issuer = %ic.name, segments = got.segments, requests = got.requests, answered = got.answered,
                reversed = got.reversed, already_queued = got.already_queued, unreadable = got.unreadable,
                "in-doubt requests of the previous run reconciled");
        } else {
            tracing::info!(issuer = %ic.name, segments = got.segments, requests = got.requests, answered = got.answered,
                reversed = got.reversed, already_queued = got.already_queued, unreadable = got.unreadable,
                "in-doubt requests of the previous run reconciled");
        }
        total += got;
    }
    Ok(total)
}

/// Reconcile one segment; how many of its requests could not be handled.
fn one_segment(
    issuer: &str,
    path: &Path,
    spec: &Arc<Spec>,
    key: &LessSafeKey,
    journal: &Journal,
    saf: &Arc<dyn SafStore>,
    got: &mut Reconciled,
) -> Result<usize, IssuerError> {
    let entries = indoubt::read(key, issuer, path)?;
    let mut unreadable = 0;
    let mut sent = Vec::with_capacity(entries.len());
    for e in entries {
        got.requests += 1;
        match Message::decode(spec, Bytes::from(e.body)) {
            Ok(m) if reversal::is_reversible(m.mti()) => sent.push((e.terminal_stan, m)),
            Ok(_) => {}
            Err(de) => {
                unreadable += 1;
                tracing::error!(issuer, file = %path.display(), error = %de, "in-doubt request does not decode");
            }
        }
    }
    for chunk in sent.chunks(CHUNK) {
        let queries = chunk
            .iter()
            .map(|(stan, m)| Query::ByKey {
                terminal: m.text(41).unwrap_or_default().into_owned(),
                stan: stan.clone(),
                txn_key: crate::journal::txn_key(m).unwrap_or_default().into_string(),
            })
            .collect();
        let rows = journal.query_many_blocking(queries).map_err(|e| err(path, e))?;
        for ((_, m), rows) in chunk.iter().zip(rows) {
            if answered(&rows, m) {
                got.answered += 1;
                continue;
            }
            let (f90, rev) = match indoubt::reversal_of(m) {
                Ok(r) => r,
                Err(e) => {
                    unreadable += 1;
                    tracing::error!(issuer, file = %path.display(), error = %e, "in-doubt request not reversible");
                    continue;
                }
            };
            if saf.enqueue(issuer, &f90, &rev, crate::time::now().as_i64())? {
                got.reversed += 1;
                tracing::info!(issuer, field90 = %f90, "in-doubt request reversed");
            } else {
                got.already_queued += 1;
            }
        }
    }
    got.unreadable += unreadable;
    Ok(unreadable)
}
