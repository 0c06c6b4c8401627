//! The export file of one business day, and its check.
//!
//! `isoswitch-journal-YYYYMMDD.jsonl`, JSON Lines, UTF-8, one object per line:
//!
//! ```text
//! {"format":"isoswitch-journal-export","version":1,"business_date":"20261124","columns":["id","switch_id",...]}
//! {"id":1,"switch_id":"node-1","received_at":1795479740000,...,"txn_key":"0200 1124002220"}
//! ...                                                      one line per row, in id order
//! {"end":"isoswitch-journal-export","business_date":"20261124","rows":2,"first_id":1,"last_id":2}
//! ```
//!
//! Rows carry the `transactions` columns under their names (`null` for SQL NULL, integers
//! as JSON numbers: times in Unix milliseconds, money in minor units); like the journal,
//! a row holds the masked PAN and the keyed hash, never a card number. The file is written
//! under a temporary name in the same directory, synced, then linked to its name (which
//! fails if the name exists: an existing file is never replaced) and the directory synced.
//! An existing file with the same bytes is the same export; one with other bytes is refused.
//!
//! The check (`verify`) reads the header and the trailer and counts the lines between
//! them: a file cut short, of another day, or whose row lines do not add up to its trailer
//! does not pass, and a purge relies on nothing else.
//! May import: crate::journal::record, crate::journal::retention::db,
//! crate::journal::retention::error, crate::journal::store.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use serde::Serialize;

use super::super::record::TxnRecord;
use super::super::store;
use super::db::Db;
use super::error::RetentionError;

/// The `format` of the header and the `end` of the trailer.
pub const FORMAT: &str = "isoswitch-journal-export";
pub const VERSION: u32 = 1;

/// The file name of a day's export.
pub fn file_name(day: &str) -> String {
    format!("isoswitch-journal-{day}.jsonl")
}

/// What an export file says of itself (its trailer), once checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct Summary {
    pub business_date: String,
    pub rows: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
}

/// How an export ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exported {
    /// Written to `path`.
    Written { path: PathBuf, summary: Summary },
    /// `path` already held exactly this export.
    Identical { path: PathBuf, summary: Summary },
    /// The day has no rows: no file.
    Empty,
}

#[derive(Serialize)]
struct Header<'a> {
    format: &'static str,
    version: u32,
    business_date: &'a str,
    columns: Vec<&'static str>,
}

#[derive(Serialize)]
struct Trailer<'a> {
    end: &'static str,
    #[serde(flatten)]
    summary: &'a Summary,
}

#[derive(Serialize)]
struct Row<'a> {
    id: i64,
    #[serde(flatten)]
    rec: &'a TxnRecord,
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Context,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> RetentionError + '_ {
    move |source| RetentionError::Io { path: path.to_path_buf(), source }
}

/// Removes the temporary file unless it was disarmed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Export `day` into `dir` (see the module doc).
pub fn export_day(db: &mut Db, day: &str, dir: &Path) -> Result<Exported, RetentionError> {
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let path = dir.join(file_name(day));
    let tmp = dir.join(format!(".{}.{}.tmp", file_name(day), std::process::id()));
    let file = File::create(&tmp).map_err(io_at(&tmp))?;
    let guard = TempFile(Some(tmp.clone()));
    let mut out = Hashing { inner: BufWriter::with_capacity(1 << 20, file), hash: Context::new(&SHA256) };
    let mut columns = vec!["id"];
    columns.extend_from_slice(store::COLUMNS);
    let header = Header { format: FORMAT, version: VERSION, business_date: day, columns };
    let line = |out: &mut Hashing<BufWriter<File>>, v: &dyn erased::Line| -> Result<(), RetentionError> {
        v.write_to(out).map_err(io_at(&tmp))?;
        out.write_all(b"\n").map_err(io_at(&tmp))
    };
    line(&mut out, &header)?;
    let mut summary = Summary { business_date: day.to_string(), rows: 0, first_id: None, last_id: None };
    db.each_row(day, |id, rec| {
        summary.rows += 1;
        summary.first_id.get_or_insert(id);
        summary.last_id = Some(id);
        line(&mut out, &Row { id, rec })
    })?;
    if summary.rows == 0 {
        return Ok(Exported::Empty);
    }
    line(&mut out, &Trailer { end: FORMAT, summary: &summary })?;
    out.flush().map_err(io_at(&tmp))?;
    let digest = out.hash.finish();
    let file = out.inner.into_inner().map_err(|e| io_at(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io_at(&tmp))?;
    drop(file);
    match fs::hard_link(&tmp, &path) {
        Ok(()) => {
            drop(guard);
            sync_dir(dir)?;
            Ok(Exported::Written { path, summary })
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            drop(guard);
            if sha256_of(&path)? == digest.as_ref() {
                Ok(Exported::Identical { path, summary })
            } else {
                let detail = match verify(&path, day) {
                    Ok(s) => format!("it holds {} rows, the journal {}", s.rows, summary.rows),
                    Err(e) => e.to_string(),
                };
                Err(RetentionError::Differs { path, day: day.to_string(), detail })
            }
        }
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// Serialising the three kinds of line through one closure.
mod erased {
    use std::io::{self, Write};

    pub trait Line {
        fn write_to(&self, out: &mut dyn Write) -> io::Result<()>;
    }

    impl<T: serde::Serialize> Line for T {
        fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
            serde_json::to_writer(out, self).map_err(io::Error::other)
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), RetentionError> {
    // Makes the new name durable; directories cannot be opened for syncing everywhere.
    if let Ok(d) = File::open(dir) {
        d.sync_all().map_err(io_at(dir))?;
    }
    Ok(())
}

fn sha256_of(path: &Path) -> Result<Vec<u8>, RetentionError> {
    let mut f = File::open(path).map_err(io_at(path))?;
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finish().as_ref().to_vec())
}

/// Check the export file at `path` is a complete export of `day` and return its summary.
pub fn verify(path: &Path, day: &str) -> Result<Summary, RetentionError> {
    let bad = |why: String| RetentionError::BadFile { path: path.to_path_buf(), day: day.to_string(), why };
    let mut f = File::open(path).map_err(io_at(path))?;
    let len = f.metadata().map_err(io_at(path))?.len();
    // Header: the first line, read in pieces until its newline (it is short).
    let mut head = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut lines: u64 = 0;
    let mut last_byte = None;
    loop {
        let n = f.read(&mut buf).map_err(io_at(path))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if lines == 0 && head.len() < 64 * 1024 {
            let upto = chunk.iter().position(|&b| b == b'\n').map_or(n, |i| i);
            head.extend_from_slice(&chunk[..upto]);
        }
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        last_byte = chunk.last().copied();
    }
    if last_byte != Some(b'\n') {
        return Err(bad("it does not end with a complete line (cut short?)".into()));
    }
    let header: serde_json::Value =
        serde_json::from_slice(&head).map_err(|e| bad(format!("line 1 is not the export header: {e}")))?;
    if header.get("format").and_then(|v| v.as_str()) != Some(FORMAT) {
        return Err(bad(format!("line 1 does not say \"format\": \"{FORMAT}\"")));
    }
    if header.get("version").and_then(|v| v.as_u64()) != Some(u64::from(VERSION)) {
        return Err(bad(format!("line 1: version is not {VERSION}")));
    }
    if header.get("business_date").and_then(|v| v.as_str()) != Some(day) {
        return Err(bad("line 1: it is the export of another business day".into()));
    }
    // Trailer: the last line, read from the end.
    let tail_len = len.min(4096);
    f.seek(SeekFrom::Start(len - tail_len)).map_err(io_at(path))?;
    let mut tail = Vec::new();
    f.take(tail_len).read_to_end(&mut tail).map_err(io_at(path))?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let trailer: serde_json::Value = serde_json::from_slice(&body[start..])
        .map_err(|e| bad(format!("line {lines} is not the export trailer: {e}")))?;
    if trailer.get("end").and_then(|v| v.as_str()) != Some(FORMAT) {
        return Err(bad(format!("line {lines} is not the export trailer (no \"end\"): cut short?")));
    }
    let summary: Summary =
        serde_json::from_value(trailer).map_err(|e| bad(format!("line {lines}: the trailer: {e}")))?;
    if summary.business_date != day {
        return Err(bad("the trailer names another business day".into()));
    }
    let row_lines = lines.saturating_sub(2);
    if lines < 2 || summary.rows != row_lines {
        return Err(bad(format!("the trailer counts {} rows, the file holds {row_lines}", summary.rows)));
    }
    Ok(summary)
}
