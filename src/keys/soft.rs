//! `SoftKeyStore`: the software key store for development and tests. Terminal master keys and
//! zone PIN keys come from a TOML file that only its owner may read; working keys generated at
//! sign-on are kept in memory and, for a store loaded from a file, in the working-keys file
//! beside it (`<key file>.working`, see `working_file`), so they survive a restart. Uses the
//! key types beside it, `toml` and `ring`'s random source.
//!
//! ```toml
//! [terminals]            # terminal id = terminal master key (32 hex digits, double-length 3DES)
//! "10000001" = "0123456789ABCDEFFEDCBA9876543210"
//! [zones]                # issuer zone name = zone PIN key
//! bank-a = "89ABCDEF0123456776543210FEDCBA98"
//! ```
//! May import: crate::keys, crate::keys::des, crate::keys::error, crate::keys::field62,
//! crate::keys::mac, crate::keys::pin, crate::keys::working_file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroize;

use super::des::{DesKey, set_odd_parity};
use super::mac::{MacAlgorithm, compute};
use super::pin::{PinBlock, translate};
use super::working_file::{self, Entry, WorkingFile};
use super::{ClearKeys, HeldKeys, KeyError, KeyLayout, KeyStore, Mac, WorkingKeys};

/// Keys in process memory. See the module documentation for the file format.
pub struct SoftKeyStore {
    tmks: HashMap<String, DesKey>,
    zpks: HashMap<String, DesKey>,
    working: Mutex<HashMap<String, Entry>>,
    /// The working-keys file; its lock also orders sign-ons, so the file's order is memory's.
    file: Option<Mutex<WorkingFile>>,
    /// Terminals whose keys were read back at load, and lines skipped.
    restored: (usize, usize),
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftKeyStore")
            .field("terminals", &self.tmks.len())
            .field("zones", &self.zpks.len())
            .finish_non_exhaustive()
    }
}

impl SoftKeyStore {
    /// Loads a key file, refusing one that group or others can read (Unix), and the working
    /// keys recorded beside it (`<path>.working`, created when absent, same protection).
    pub fn load(path: &Path) -> Result<SoftKeyStore, KeyError> {
        let file = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Read { file: file.clone(), source })?;
        working_file::check_owner_only(&file, &meta)?;
        let mut text =
            std::fs::read_to_string(path).map_err(|source| KeyError::Read { file: file.clone(), source })?;
        let store = SoftKeyStore::parse(&file, &text);
        text.zeroize();
        let mut store = store?;
        let (wf, held, skipped) = WorkingFile::open(working_file::path_for(path), &store.tmks)?;
        store.restored = (held.len(), skipped);
        *store.working() = held;
        store.file = Some(Mutex::new(wf));
        Ok(store)
    }

    /// Terminals whose working keys were read back at load, and lines of the working-keys
    /// file skipped (undecodable, or check values that do not match the terminal's TMK).
    pub fn restored(&self) -> (usize, usize) {
        self.restored
    }

    /// Parses key-file text; `file` names it in errors. No permission check: for tests.
    pub fn parse(file: &str, text: &str) -> Result<SoftKeyStore, KeyError> {
        let invalid = |line: usize, key: &str, message: &str| KeyError::Invalid {
            file: file.to_string(),
            line,
            key: key.to_string(),
            message: message.to_string(),
        };
        // Only the message and position of a TOML error: its Display quotes the source line.
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            invalid(line, "(document)", e.message())
        })?;
        let mut tmks = HashMap::new();
        let mut zpks = HashMap::new();
        for (section, value) in &table {
            let target = match section.as_str() {
                "terminals" => &mut tmks,
                "zones" => &mut zpks,
                other => {
                    return Err(invalid(
                        locate(text, other),
                        other,
                        "unknown section (expected terminals, zones)",
                    ));
                }
            };
            let toml::Value::Table(entries) = value else {
                return Err(invalid(locate(text, section), section, "expected a table"));
            };
            for (name, v) in entries {
                let at = || locate(text, name);
                let Some(hex) = v.as_str() else {
                    return Err(invalid(at(), name, "expected a string of 32 hex digits"));
                };
                if hex.len() != 32 {
                    return Err(invalid(at(), name, &format!("expected 32 hex digits, found {}", hex.len())));
                }
                let key = DesKey::from_hex(hex).ok_or_else(|| invalid(at(), name, "not hex digits"))?;
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(invalid(at(), name, "name must be 1 to 64 printable characters"));
                }
                target.insert(name.clone(), key);
            }
        }
        Ok(SoftKeyStore {
            tmks,
            zpks,
            working: Mutex::new(HashMap::new()),
            file: None,
            restored: (0, 0),
            rng: SystemRandom::new(),
        })
    }

    /// Number of terminals with a master key.
    pub fn terminals(&self) -> usize {
        self.tmks.len()
    }

    fn working(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves the map consistent (single inserts).
        self.working.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A random key with odd parity, double-length or single (held with equal halves).
    fn random_key(&self, double: bool) -> Result<DesKey, KeyError> {
        let mut b = [0u8; 16];
        self.rng.fill(&mut b).map_err(|_| KeyError::Random)?;
        set_odd_parity(&mut b);
        if !double {
            let (l, r) = b.split_at_mut(8);
            r.copy_from_slice(l);
        }
        let k = DesKey::double(b);
        b.zeroize();
        Ok(k)
    }

    fn with_working<T>(&self, terminal: &str, f: impl FnOnce(&ClearKeys) -> T) -> Result<T, KeyError> {
        let map = self.working();
        match map.get(terminal) {
            Some(w) => Ok(f(&w.clear)),
            None if self.tmks.contains_key(terminal) => {
                Err(KeyError::NotSignedOn { terminal: terminal.to_string() })
            }
            None => Err(KeyError::UnknownTerminal { terminal: terminal.to_string() }),
        }
    }
}

impl KeyStore for SoftKeyStore {
    fn sign_on(&self, terminal: &str, layout: KeyLayout) -> Result<WorkingKeys, KeyError> {
        let tmk = self
            .tmks
            .get(terminal)
            .ok_or_else(|| KeyError::UnknownTerminal { terminal: terminal.to_string() })?;
        let clear = ClearKeys {
            pin: self.random_key(layout.double_pin())?,
            mac: self.random_key(false)?,
            track: if layout.has_track() { Some(self.random_key(true)?) } else { None },
        };
        let sent = WorkingKeys::wrap(layout, tmk, &clear);
        let entry = Entry { clear, sent: sent.clone() };
        let Some(file) = &self.file else {
            self.working().insert(terminal.to_string(), entry);
            return Ok(sent);
        };
        // Durable before the terminal hears of the keys; a failed write leaves the old set in
        // force everywhere. One insert swaps the whole set, so no request sees a mix.
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        f.append(terminal, &sent)?;
        let snapshot = {
            let mut map = self.working();
            map.insert(terminal.to_string(), entry);
            f.wants_rewrite(map.len())
                .then(|| map.iter().map(|(t, e)| (t.clone(), e.sent.clone())).collect::<Vec<_>>())
        };
        if let Some(all) = snapshot {
            // The keys are already durable by the append; a failed compaction only leaves the
            // file longer.
            let _ = f.rewrite(all.iter().map(|(t, k)| (t.as_str(), k)));
        }
        Ok(sent)
    }

    fn check_values(&self, terminal: &str) -> Result<HeldKeys, KeyError> {
        let map = self.working();
        match map.get(terminal) {
            Some(e) => Ok(HeldKeys {
                layout: e.sent.layout,
                pin: e.clear.pin.check_value(),
                mac: e.clear.mac.check_value(),
                track: e.clear.track.as_ref().map(DesKey::check_value),
            }),
            None if self.tmks.contains_key(terminal) => {
                Err(KeyError::NotSignedOn { terminal: terminal.to_string() })
            }
            None => Err(KeyError::UnknownTerminal { terminal: terminal.to_string() }),
        }
    }

    fn generate_mac(&self, terminal: &str, alg: MacAlgorithm, data: &[u8]) -> Result<Mac, KeyError> {
        self.with_working(terminal, |w| compute(alg, &w.mac, data))
    }

    fn verify_mac(
        &self,
        terminal: &str,
        alg: MacAlgorithm,
        data: &[u8],
        received: &[u8],
    ) -> Result<(), KeyError> {
        let ok = self.with_working(terminal, |w| compute(alg, &w.mac, data).matches(received))?;
        if ok { Ok(()) } else { Err(KeyError::MacMismatch { terminal: terminal.to_string() }) }
    }

    fn translate_pin(
        &self,
        terminal: &str,
        zone: &str,
        pin_block: &PinBlock,
        pan: &str,
    ) -> Result<PinBlock, KeyError> {
        let zpk = self.zpks.get(zone).ok_or_else(|| KeyError::UnknownZone { zone: zone.to_string() })?;
        self.with_working(terminal, |w| translate(&w.pin, zpk, pin_block, pan))?
            .map_err(|fault| KeyError::PinRefused { terminal: terminal.to_string(), fault })
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |b| b.matches('\n').count() + 1)
}

/// The line where `key` is assigned or opens a section (bare or quoted), else 0.
fn locate(text: &str, key: &str) -> usize {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let t = t.strip_prefix('[').unwrap_or(t);
        let rest = t.strip_prefix(key).or_else(|| {
            t.strip_prefix('"').and_then(|s| s.strip_prefix(key)).and_then(|s| s.strip_prefix('"'))
        });
        if let Some(r) = rest {
            let r = r.trim_start();
            if r.starts_with('=') || r.starts_with(']') {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
#[path = "soft_tests.rs"]
mod tests;
