//! The operator's suspensions (admin API `suspend` / `activate`) kept in a small state file,
//! so that a terminal suspended at 10:00 is still suspended after a restart at 11:00.
//! The file is the truth: a change is written first (temp file, fsync, rename, fsync of the
//! directory, so a crash leaves the old file or the new one, never half of one) and only
//! then applied in memory; at start and at every rule reload the file is read again and
//! applied. It lives beside the SQLite journal (`journal.db` → `journal.db.suspensions.json`),
//! else in the rule directory (`suspensions.json`), else nowhere (the suspensions last
//! until the process ends). Format: `{"suspended": ["10000001", ...]}`.
//! May import: crate::config, crate::route.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::Config;
use crate::route::Router;

/// Why the state file could not be read or written; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("suspensions file {file}: {message}")]
pub struct SuspensionError {
    pub file: String,
    pub message: String,
}

/// Where the operator's suspensions are kept, and the lock that orders their changes.
#[derive(Debug, Default)]
pub struct Suspensions {
    path: Option<PathBuf>,
    /// Held across read-modify-write of the file and the in-memory set, so that a reload
    /// and an admin call never interleave.
    lock: Mutex<()>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    suspended: BTreeSet<String>,
}

/// The state file of a configuration (see the module doc), if it has one.
pub fn state_path(cfg: &Config) -> Option<PathBuf> {
    match (&cfg.journal_url, &cfg.journal, &cfg.rules) {
        (None, Some(j), _) if j.as_os_str() != "off" => {
            let name = j.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            Some(j.with_file_name(format!("{name}.suspensions.json")))
        }
        (_, _, Some(dir)) => Some(dir.join("suspensions.json")),
        _ => None,
    }
}

impl Suspensions {
    pub fn new(path: Option<PathBuf>) -> Suspensions {
        Suspensions { path, lock: Mutex::new(()) }
    }

    /// The state file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Read the file and make its set the operator's suspensions in `router` (start, reload).
    /// A missing file is an empty set; a file that does not parse is refused and the set in
    /// force stays. Returns how many terminals are suspended. Blocking.
    pub fn apply(&self, router: &Router) -> Result<usize, SuspensionError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else { return Ok(router.suspended_terminals().len()) };
        let set = read(path)?;
        let n = set.len();
        router.replace_suspended(set);
        Ok(n)
    }

    /// Suspend or activate `terminal`: written to the file, then applied. Returns whether
    /// anything changed; on a write error nothing changed. Blocking (fsync).
    pub fn set(&self, router: &Router, terminal: &str, suspend: bool) -> Result<bool, SuspensionError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut set = router.suspended_terminals();
        let changed = if suspend { set.insert(terminal.to_string()) } else { set.remove(terminal) };
        if changed && let Some(path) = &self.path {
            write(path, &set)?;
        }
        router.set_suspended(terminal, suspend);
        Ok(changed)
    }
}

fn err(path: &Path, message: impl std::fmt::Display) -> SuspensionError {
    SuspensionError { file: path.display().to_string(), message: message.to_string() }
}

fn read(path: &Path) -> Result<BTreeSet<String>, SuspensionError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<StateFile>(&text).map(|s| s.suspended).map_err(|e| err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(err(path, format!("cannot read: {e}"))),
    }
}

/// Write `set` atomically: a temp file beside the target, fsync, rename over it, fsync the
/// directory (so the rename itself survives a power cut).
fn write(path: &Path, set: &BTreeSet<String>) -> Result<(), SuspensionError> {
    let text =
        serde_json::to_string_pretty(&StateFile { suspended: set.clone() }).map_err(|e| err(path, e))?;
    let tmp = path.with_extension("json.tmp");
    let io = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Not every platform can open a directory to sync it; the rename stands anyway.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    };
    io().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(path, format!("cannot write: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::RuleSet;

    fn router() -> Router {
        Router::new(
            RuleSet::open_with_routes("t", "[default]\nissuer = \"a\"\ncard_type = \"debit\"\n").unwrap(),
        )
    }

    #[test]
    fn changes_survive_a_new_router_and_a_bad_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("isoswitch-susp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.suspensions.json");
        let _ = std::fs::remove_file(&path);
        let s = Suspensions::new(Some(path.clone()));
        let r = router();
        assert_eq!(s.apply(&r).unwrap(), 0, "no file yet: nothing suspended");
        assert!(s.set(&r, "T1", true).unwrap());
        assert!(s.set(&r, "T2", true).unwrap());
        assert!(!s.set(&r, "T2", true).unwrap(), "suspending twice changes nothing");
        assert!(s.set(&r, "T1", false).unwrap());
        // A new process: a new router reads the file.
        let r2 = router();
        assert_eq!(s.apply(&r2).unwrap(), 1);
        assert_eq!(r2.suspended_terminals().into_iter().collect::<Vec<_>>(), ["T2"]);
        assert!(!dir.join("j.suspensions.json.tmp").exists(), "no temp file left behind");
        // A file edited by hand into nonsense is refused, naming it; the set stays.
        std::fs::write(&path, "{\"suspended\": 7}").unwrap();
        let e = s.apply(&r2).unwrap_err().to_string();
        assert!(e.contains("j.suspensions.json"), "{e}");
        assert_eq!(r2.suspended_terminals().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_sits_beside_the_journal_else_in_the_rules() {
        let cfg = Config::parse("t.toml", "journal = \"/var/lib/isoswitch/journal.db\"\n").unwrap();
        assert_eq!(state_path(&cfg), Some(PathBuf::from("/var/lib/isoswitch/journal.db.suspensions.json")));
        let rules = std::env::temp_dir();
        let cfg = Config::parse("t.toml", &format!("journal = \"off\"\nrules = {rules:?}\n")).unwrap();
        assert_eq!(state_path(&cfg), Some(rules.join("suspensions.json")));
        let cfg = Config::parse("t.toml", "journal = \"off\"\n").unwrap();
        assert_eq!(state_path(&cfg), None);
    }
}
