//! The in-doubt log: what the switch has written to an issuer and may not have seen
//! resolved, so that a restart after a crash can reverse it. Each link's writer, before a
//! batch of frames goes to the socket, appends the batch's reversible requests (0100,
//! 0200, 0220 from terminals; never network management, reversals or replies) as one
//! sealed record with one `write(2)` to the current segment file of its issuer:
//! `<dir>/<issuer>/<link>-<start ms>-<seq>.log` (format in `record`). The wire bytes are
//! stored as written (the issuer's spec decodes them back), sealed with AES-256-GCM under
//! the store-and-forward key: no PAN, track or PIN block is ever in clear on disk.
//!
//! **What it protects against.** No fsync is made (unless `fsync` is set): a record is
//! in the page cache when the frame goes out, which survives the death of the process
//! (kill -9, a panic, the OOM killer) but not of the machine — a power loss or kernel
//! crash can lose the last records written. A request logged but never written to the
//! socket (the process died between the two) is reversed all the same at the restart: the
//! issuer answers the reversal of an original it never saw, which is harmless.
//!
//! **Rotation.** A segment is closed after `rotate` (or 64 MiB) at its next write and
//! deleted once every request in it is certainly resolved: `hold` (the issuer's longest
//! deadline twice, plus a second) has passed since it closed, so each request has had its
//! reply or its timeout and the answer's journal row or the reversal has been submitted,
//! and then a barrier through the journal's writer (`Settled`) and the store-and-forward
//! store has made everything submitted before it durable. Disk use stays bounded by the
//! traffic of `rotate + hold`.
//!
//! **Reconciliation** (`switch::reconcile`, at start, before any link sends): every remaining
//! segment is read; each request whose answer the journal does not hold gets a reversal in
//! store-and-forward (idempotent by issuer and field 90), then the segments are deleted.
//! **One switch per directory.** A running switch holds an advisory lock (`flock`) on
//! `<dir>/.lock`; a second switch given the same directory is refused at start, naming
//! it, since it would reconcile (reverse) the first one's requests in flight. The kernel
//! drops the lock when the process dies, kill -9 included, so a restart is never stopped
//! by a stale lock. (A name that starts with a dot is never an issuer's directory.)
//! May import: crate::iso, crate::issuer::clock, crate::issuer::outcome,
//! crate::issuer::reversal, crate::issuer::saf, crate::time.

pub mod record;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::aead::{LessSafeKey, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;

use super::outcome::IssuerError;
use super::saf::{SafStore, blocking};

/// A segment is closed at its next write once this large.
const MAX_SEGMENT: u64 = 64 * 1024 * 1024;

/// Makes durable what was submitted to the journal before the call (blocking).
pub trait Settled: Send + Sync + 'static {
    fn barrier(&self) -> Result<(), String>;
}

/// The in-doubt log as configured: where, under which key, how often it rotates.
#[derive(Clone)]
pub struct InDoubt {
    pub dir: PathBuf,
    pub key: LessSafeKey,
    pub rotate: Duration,
    pub fsync: bool,
    pub settled: Arc<dyn Settled>,
    /// The lock on the directory (`lock_dir`), held while this log is in use.
    pub lock: Arc<File>,
}

/// Create `dir` and its missing parents, readable by the owner only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Take the directory for this process (creating it): an error when another running
/// switch holds it, or when it cannot be created or locked.
pub fn lock_dir(dir: &Path) -> Result<File, IssuerError> {
    let path = dir.join(".lock");
    let err = |message: String| IssuerError::InDoubt { file: path.display().to_string(), message };
    private_dir(dir).map_err(|e| err(format!("cannot create the in-doubt directory: {e}")))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| err(format!("cannot open the lock file: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(err("the in-doubt directory is in use by another running switch; give each node its own \
             [saf] indoubt_dir"
                .to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(err(format!("cannot lock the in-doubt directory: {e}"))),
    }
}

impl std::fmt::Debug for InDoubt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InDoubt").field("dir", &self.dir).field("rotate", &self.rotate).finish()
    }
}

/// The directory of `issuer`'s segments under `base` (or of any configured name): the
/// name when it is a plain file name, else `x` and the name in hex (a configured name may
/// hold any character).
pub fn issuer_dir(base: &Path, issuer: &str) -> PathBuf {
    let plain = !issuer.is_empty()
        && !issuer.starts_with('.')
        && issuer.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if plain { base.join(issuer) } else { base.join(format!("x{}", hex::encode(issuer))) }
}

/// The segment files in `dir`, oldest first, with the index of the link that wrote them
/// (within its issuer). A missing directory has none.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(usize, PathBuf)>> {
    let mut out: Vec<((u64, u64, usize), PathBuf)> = Vec::new();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in read {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_suffix(".log") else { continue };
        let parts: Vec<&str> = stem.split('-').collect();
        if let [link, start, seq] = parts.as_slice()
            && let (Ok(link), Ok(start), Ok(seq)) =
                (link.parse::<usize>(), start.parse::<u64>(), seq.parse::<u64>())
        {
            out.push(((start, seq, link), path));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|((_, _, link), p)| (link, p)).collect())
}

/// The requests of one segment file; an error names the file and never a request's
/// content.
pub fn read(key: &LessSafeKey, issuer: &str, path: &Path) -> Result<Vec<record::Entry>, IssuerError> {
    record::read_segment(key, issuer, path).map_err(|e| IssuerError::InDoubt {
        file: path.display().to_string(),
        message: match e {
            record::ReadError::Io(m) => m,
            record::ReadError::Unsealed { offset } => format!(
                "record at byte {offset} does not open: not sealed with the store-and-forward key in force, or altered"
            ),
            record::ReadError::Malformed { offset } => format!("record at byte {offset} is malformed"),
        },
    })
}

/// One issuer's log: shared by the writers of its links and its reaper.
pub struct IssuerLog {
    issuer: Arc<str>,
    dir: PathBuf,
    key: LessSafeKey,
    rotate: Duration,
    fsync: bool,
    started_ms: u64,
    /// Closed segments waiting to be deleted, with the time they closed.
    closed: Mutex<Vec<(PathBuf, Instant)>>,
    rng: SystemRandom,
    /// The directory's lock, held as long as a writer or the reaper uses this log.
    _lock: Arc<File>,
}

impl std::fmt::Debug for IssuerLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerLog").field("issuer", &self.issuer).field("dir", &self.dir).finish()
    }
}

impl IssuerLog {
    /// The log of `issuer` under `cfg.dir` (its directory is created, mode 0700).
    pub fn new(issuer: Arc<str>, cfg: &InDoubt) -> Result<Arc<IssuerLog>, IssuerError> {
        let dir = issuer_dir(&cfg.dir, &issuer);
        private_dir(&dir)
            .map_err(|e| IssuerError::InDoubt { file: dir.display().to_string(), message: e.to_string() })?;
        Ok(Arc::new(IssuerLog {
            issuer,
            dir,
            key: cfg.key.clone(),
            rotate: cfg.rotate.max(Duration::from_millis(10)),
            fsync: cfg.fsync,
            started_ms: crate::time::now().0,
            closed: Mutex::new(Vec::new()),
            rng: SystemRandom::new(),
            _lock: cfg.lock.clone(),
        }))
    }

    /// A writer for the link at `link` (its index within the issuer).
    pub fn writer(self: &Arc<Self>, link: usize) -> SegmentWriter {
        SegmentWriter { log: self.clone(), link, seq: 0, open: None, rec: Vec::new(), warned: false }
    }

    /// Closed segments not deleted yet.
    pub fn closed_len(&self) -> usize {
        self.closed.lock().map_or(0, |c| c.len())
    }

    /// Delete the closed segments older than `hold` at `now`, after `barrier` succeeded;
    /// how many were deleted.
    pub fn reap(&self, now: Instant, hold: Duration, barrier: impl FnOnce() -> Result<(), String>) -> usize {
        let due: Vec<PathBuf> = match self.closed.lock() {
            Ok(c) => c
                .iter()
                .filter(|(_, t)| now.saturating_duration_since(*t) >= hold)
                .map(|(p, _)| p.clone())
                .collect(),
            Err(_) => return 0,
        };
        if due.is_empty() {
            return 0;
        }
        if let Err(e) = barrier() {
            tracing::warn!(issuer = %self.issuer, error = %e, "in-doubt log: journal barrier failed; segments kept");
            return 0;
        }
        for p in &due {
            if let Err(e) = std::fs::remove_file(p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(issuer = %self.issuer, file = %p.display(), error = %e, "in-doubt segment not deleted");
            }
        }
        if let Ok(mut c) = self.closed.lock() {
            c.retain(|(p, _)| !due.contains(p));
        }
        due.len()
    }
}

struct Open {
    file: File,
    path: PathBuf,
    opened: Instant,
    bytes: u64,
    prefix: [u8; 8],
    counter: u32,
}

/// A link writer's side of the log: it collects the batch's requests, then seals and
/// appends them with one write. Owned by the link task (across its reconnections).
pub struct SegmentWriter {
    log: Arc<IssuerLog>,
    link: usize,
    seq: u64,
    open: Option<Open>,
    /// The record being built (head room, then entries).
    rec: Vec<u8>,
    /// A write failure is logged once per segment.
    warned: bool,
}

impl SegmentWriter {
    /// Add a request (as written) of the batch being built.
    pub fn add(&mut self, terminal_stan: &[u8], body: &[u8]) {
        record::push_entry(&mut self.rec, terminal_stan, body);
    }

    /// Append the batch's requests, if any, as one record: called before the batch is
    /// written to the socket. A failure is logged (once a segment) and the batch still
    /// goes out: the log must not stop the traffic it protects.
    pub fn flush(&mut self) {
        if self.rec.len() <= record::HEAD {
            return;
        }
        let now = Instant::now();
        if let Some(o) = &self.open
            && (now.saturating_duration_since(o.opened) >= self.log.rotate
                || o.bytes >= MAX_SEGMENT
                || o.counter == u32::MAX)
        {
            self.close_at(now);
        }
        if self.open.is_none()
            && let Err(e) = self.start(now)
        {
            self.fail(&e);
            self.rec.clear();
            return;
        }
        let Some(o) = &mut self.open else { return };
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&o.prefix);
        nonce[8..].copy_from_slice(&o.counter.to_be_bytes());
        o.counter = o.counter.wrapping_add(1);
        if !record::seal(&self.log.key, &self.log.issuer, nonce, &mut self.rec) {
            self.rec.clear();
            self.fail("record could not be sealed");
            return;
        }
        let written = o
            .file
            .write_all(&self.rec)
            .and_then(|()| if self.log.fsync { o.file.sync_data() } else { Ok(()) });
        o.bytes += self.rec.len() as u64;
        self.rec.clear();
        if let Err(e) = written {
            self.fail(&e.to_string());
        }
    }

    fn fail(&mut self, why: &str) {
        if !self.warned {
            self.warned = true;
            tracing::error!(issuer = %self.log.issuer, link = self.link, error = why,
                "in-doubt log not written: requests in flight at a crash will not be reversed");
        }
    }

    fn start(&mut self, now: Instant) -> Result<(), String> {
        let mut prefix = [0u8; 8];
        self.log.rng.fill(&mut prefix).map_err(|_| "no randomness".to_string())?;
        let mut opts = std::fs::OpenOptions::new();
        opts.append(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        // A name already taken (a clock that went back) moves on to the next sequence.
        for _ in 0..1000 {
            self.seq += 1;
            let path =
                self.log.dir.join(format!("{}-{}-{:06}.log", self.link, self.log.started_ms, self.seq));
            match opts.open(&path) {
                Ok(file) => {
                    self.open = Some(Open { file, path, opened: now, bytes: 0, prefix, counter: 0 });
                    self.warned = false;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Err("no free segment name".into())
    }

    /// Close the current segment: from now on it only waits for its requests to resolve.
    pub fn close_at(&mut self, now: Instant) {
        if let Some(o) = self.open.take()
            && let Ok(mut c) = self.log.closed.lock()
        {
            c.push((o.path, now));
        }
    }
}

/// The reversal (0400, reason 68: the terminal never had its answer) of a request read
/// back from the log, with its field 90: the same field 90 the timeout path gives it, so
/// the store-and-forward queue keeps one reversal per original whichever path came first.
pub fn reversal_of(
    sent: &crate::iso::Message,
) -> Result<(String, crate::iso::Message), super::reversal::ReversalError> {
    let rev =
        super::reversal::build(sent, &super::clock::transmission_time(), super::reversal::REASON_TIMEOUT)?;
    Ok((super::reversal::field90(sent), rev))
}

/// How long a closed segment of an issuer whose longest deadline is `deadline` is kept.
pub fn hold_for(deadline: Duration) -> Duration {
    deadline.saturating_mul(2) + Duration::from_secs(1)
}

/// One issuer's reaper: deletes its resolved segments until `shutdown`.
pub async fn reaper(
    log: Arc<IssuerLog>,
    hold: Duration,
    settled: Arc<dyn Settled>,
    saf: Arc<dyn SafStore>,
    shutdown: CancellationToken,
) {
    let every = (hold / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if log.closed_len() == 0 {
            continue;
        }
        let (l, s, f) = (log.clone(), settled.clone(), saf.clone());
        let reaped = blocking(move || {
            Ok(l.reap(Instant::now(), hold, || {
                s.barrier()?;
                f.barrier().map_err(|e| e.to_string())
            }))
        })
        .await;
        if let Ok(n) = reaped
            && n > 0
        {
            tracing::debug!(issuer = %log.issuer, segments = n, "in-doubt segments resolved and deleted");
        }
    }
}

#[cfg(test)]
mod tests;
