//! The process's descriptor budget. Every terminal connection holds a descriptor; so do
//! the issuer links, the journal, the in-doubt log, the listeners and the operations
//! ports. At start the soft `RLIMIT_NOFILE` is raised to the hard limit, a reserve is
//! kept for everything that is not a terminal, and the terminal listeners' connection
//! caps are fitted into what is left: an absent `max_connections` becomes the share that
//! fits (at most [`DEFAULT_MAX_CONNECTIONS`]), a configured one that does not fit is
//! lowered with a warning naming both numbers. A full listener then refuses a terminal
//! at once instead of the whole process running out of descriptors.
//! May import: crate::config.

use crate::config::Config;

/// The terminal connection cap when the descriptor limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// Descriptors kept for what is not a connection: standard streams, the runtime (epoll,
/// eventfd, signal pipe), the journal (database, WAL, shared memory, or PostgreSQL
/// connections), store-and-forward, in-doubt segments, and files read at a reload (rules,
/// specs, TLS).
pub const RESERVE_BASE: u64 = 48;

/// Raise the soft descriptor limit to the hard one; the soft limit in force after.
/// `u64::MAX` when the platform reports no limit.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft)
        }
    }
}

/// Descriptors the configuration needs besides terminal connections.
pub fn reserve(cfg: &Config) -> u64 {
    let links: usize = cfg.issuers.iter().map(|i| i.links.len()).sum();
    // Each served operations port: its listener and its open connections.
    let ops = (cfg.ops.max_connections as u64).saturating_add(1);
    let ports = u64::from(cfg.admin.is_some()) + u64::from(cfg.metrics.is_some());
    RESERVE_BASE
        .saturating_add(links as u64)
        .saturating_add(cfg.listeners.len() as u64)
        .saturating_add(ops.saturating_mul(ports))
}

/// The connection cap of each listener (in configuration order) under `nofile`
/// descriptors, and one warning per configured cap that had to be lowered.
pub fn terminal_caps(cfg: &Config, nofile: u64) -> (Vec<usize>, Vec<String>) {
    let reserve = reserve(cfg);
    let listeners = cfg.listeners.len().max(1) as u64;
    let share = nofile.saturating_sub(reserve) / listeners;
    let fit = usize::try_from(share).unwrap_or(usize::MAX).max(1);
    let mut warnings = Vec::new();
    let caps = cfg
        .listeners
        .iter()
        .map(|l| match l.max_connections {
            None => fit.min(DEFAULT_MAX_CONNECTIONS),
            Some(c) if c <= fit => c,
            Some(c) => {
                warnings.push(format!(
                    "listener {}: max_connections {c} does not fit under the descriptor limit {nofile} \
                     ({reserve} kept for links, journal and operations ports); using {fit}",
                    l.addr
                ));
                fit
            }
        })
        .collect();
    (caps, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(caps: &[Option<usize>]) -> Config {
        let mut text = String::from(
            "metrics = \"127.0.0.1:0\"\n[[issuer]]\nname = \"a\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n",
        );
        for c in caps {
            text.push_str("[[listener]]\naddr = \"127.0.0.1:0\"\n");
            if let Some(c) = c {
                text.push_str(&format!("max_connections = {c}\n"));
            }
        }
        Config::parse("t.toml", &text).unwrap()
    }

    #[test]
    fn caps_fit_under_the_limit() {
        // reserve: 48 + 1 link + listeners + 17 for the metrics port.
        // (configured caps, descriptor limit, caps in force, warnings)
        type Case<'a> = (&'a [Option<usize>], u64, &'a [usize], usize);
        let cases: &[Case] = &[
            (&[None], 1_048_576, &[20_000], 0),
            (&[None], 1024, &[1024 - 67], 0),
            (&[None, None], 1024, &[(1024 - 68) / 2, (1024 - 68) / 2], 0),
            (&[Some(100)], 1024, &[100], 0),
            (&[Some(5000)], 1024, &[957], 1),
            (&[None], 50, &[1], 0),
        ];
        for (caps, nofile, want, warned) in cases {
            let (got, w) = terminal_caps(&cfg(caps), *nofile);
            assert_eq!((got.as_slice(), w.len()), (*want, *warned), "{caps:?} under {nofile}");
        }
        let (_, w) = terminal_caps(&cfg(&[Some(5000)]), 1024);
        assert!(w[0].contains("5000") && w[0].contains("1024") && w[0].contains("957"), "{w:?}");
    }
}
