//! Interned names: the one copy of an issuer, fee-plan or series name for the life of
//! the process. A leaf of the routing core: the rule loaders (`routes`, `fees`) make the
//! names and the `Decision` carries them.
//! May import: nothing.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// The one copy of a name (issuer, fee plan) for the life of the process, so that a
/// decision carries names without reference counting on the hot path. Names are interned
/// at load; a reload adds only names never seen before, so the set grows with the distinct
/// names an operator ever configures, not with reloads.
pub fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&s) = set.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.to_owned().into_boxed_str());
    set.insert(s);
    s
}
