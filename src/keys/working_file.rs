//! The working-keys file of the software key store, so that terminals' working keys survive a
//! restart of the switch. Each sign-on appends one line and syncs it before the terminal is
//! answered:
//!
//! ```text
//! <60.3 code> <field 62 as hex> <terminal id>
//! 003 8E1F...0000000000000000D4A5B1C2... 10000001
//! ```
//!
//! It holds exactly what travelled to the terminal in field 62 (keys under the TMK and their
//! check values), never a clear key, and like the key file it must be readable by its owner
//! only (created 0600, refused at start otherwise). At start it is read back: the last line
//! of each terminal wins, and a line that does not decode or whose check values do not match
//! the terminal's TMK (a torn last write, a changed TMK) is skipped, so that terminal signs on
//! again. The file is then rewritten with one line per terminal (written beside, synced,
//! renamed over), and again whenever appends outgrow twice the terminals held.
//! Uses the key types beside it and `std` only.
//! May import: crate::keys::des, crate::keys::error, crate::keys::field62.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::des::hex_upper;
use super::{ClearKeys, DesKey, KeyError, KeyLayout, WorkingKeys};

/// Refuse to read a file bigger than this (a line is about 140 bytes).
const MAX_FILE: u64 = 256 << 20;
/// Appends tolerated beyond twice the terminals held before the file is rewritten.
const SLACK_LINES: usize = 1024;

/// A terminal's keys as read back or as just issued.
pub(super) struct Entry {
    pub clear: ClearKeys,
    pub sent: WorkingKeys,
}

/// The open file; appends go through one writer at a time (the caller's lock).
pub(super) struct WorkingFile {
    path: PathBuf,
    file: File,
    lines: usize,
}

/// `<key file>.working`: beside the key file, which the operator already protects.
pub(super) fn path_for(key_file: &Path) -> PathBuf {
    let mut p = key_file.as_os_str().to_owned();
    p.push(".working");
    PathBuf::from(p)
}

/// Refuses a file that group or others may read (Unix).
pub(super) fn check_owner_only(file: &str, meta: &std::fs::Metadata) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { file: file.to_string(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = (file, meta);
    Ok(())
}

fn open_owner_only(path: &Path, append: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    if append {
        o.append(true).create(true);
    } else {
        o.write(true).create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn line(terminal: &str, keys: &WorkingKeys) -> Vec<u8> {
    let mut l = Vec::with_capacity(keys.layout.field_len() * 2 + terminal.len() + 6);
    l.extend_from_slice(keys.layout.code().as_bytes());
    l.push(b' ');
    l.extend_from_slice(&hex_upper(&keys.field62()));
    l.push(b' ');
    l.extend_from_slice(terminal.as_bytes());
    l.push(b'\n');
    l
}

/// One line read back, if it decodes and its check values match the terminal's TMK.
fn parse_line(text: &str, tmks: &HashMap<String, DesKey>) -> Option<(String, Entry)> {
    let mut parts = text.splitn(3, ' ');
    let layout = KeyLayout::from_code(parts.next()?)?;
    let hex = parts.next()?;
    let terminal = parts.next()?;
    let tmk = tmks.get(terminal)?;
    let mut f62 = vec![0u8; layout.field_len()];
    super::des::decode_hex(hex, &mut f62)?;
    let sent = WorkingKeys::from_field62(layout, &f62)?;
    let clear = sent.open(tmk)?;
    Some((terminal.to_string(), Entry { clear, sent }))
}

impl WorkingFile {
    /// Opens (or creates) the file at `path` and reads back the keys of terminals in `tmks`;
    /// the second value counts lines skipped.
    pub(super) fn open(
        path: PathBuf,
        tmks: &HashMap<String, DesKey>,
    ) -> Result<(WorkingFile, HashMap<String, Entry>, usize), KeyError> {
        let name = path.display().to_string();
        let read_err = |source| KeyError::Read { file: name.clone(), source };
        let mut held = HashMap::new();
        let mut skipped = 0;
        let mut lines = 0;
        match std::fs::metadata(&path) {
            Ok(meta) => {
                check_owner_only(&name, &meta)?;
                if meta.len() > MAX_FILE {
                    return Err(read_err(std::io::Error::other("working-keys file too large")));
                }
                let bytes = std::fs::read(&path).map_err(read_err)?;
                for raw in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    lines += 1;
                    match std::str::from_utf8(raw).ok().and_then(|t| parse_line(t, tmks)) {
                        Some((t, e)) => {
                            held.insert(t, e);
                        }
                        None => skipped += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_err(e)),
        }
        let persist = |source| KeyError::Persist { file: name.clone(), source };
        let file = open_owner_only(&path, true).map_err(persist)?;
        let mut wf = WorkingFile { path, file, lines };
        if lines > held.len() {
            wf.rewrite(held.iter().map(|(t, e)| (t.as_str(), &e.sent)))?;
        }
        Ok((wf, held, skipped))
    }

    /// Appends `terminal`'s new keys and syncs them to disk.
    pub(super) fn append(&mut self, terminal: &str, keys: &WorkingKeys) -> Result<(), KeyError> {
        let persist = |source| KeyError::Persist { file: self.path.display().to_string(), source };
        self.file.write_all(&line(terminal, keys)).map_err(persist)?;
        self.file.sync_data().map_err(persist)?;
        self.lines += 1;
        Ok(())
    }

    /// Whether appends have outgrown `held` terminals enough to rewrite the file.
    pub(super) fn wants_rewrite(&self, held: usize) -> bool {
        self.lines > held.saturating_mul(2).saturating_add(SLACK_LINES)
    }

    /// Replaces the file with one line per terminal: written beside, synced, renamed over, so
    /// a crash leaves either the old file or the new one.
    pub(super) fn rewrite<'a>(
        &mut self,
        held: impl Iterator<Item = (&'a str, &'a WorkingKeys)>,
    ) -> Result<(), KeyError> {
        let name = self.path.display().to_string();
        let persist = |source| KeyError::Persist { file: name.clone(), source };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut out = Vec::new();
        let mut lines = 0;
        for (t, k) in held {
            out.extend_from_slice(&line(t, k));
            lines += 1;
        }
        let mut f = open_owner_only(&tmp, false).map_err(persist)?;
        f.write_all(&out).and_then(|_| f.sync_all()).map_err(persist)?;
        std::fs::rename(&tmp, &self.path).map_err(persist)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Makes the rename durable; some platforms cannot open a directory, and the old
            // file stays valid meanwhile, so a failure here is not an error.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.file = open_owner_only(&self.path, true).map_err(persist)?;
        self.lines = lines;
        Ok(())
    }
}
