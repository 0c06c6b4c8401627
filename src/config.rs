//! The switch's configuration: a TOML file (listeners, issuers and their links, routes,
//! timeouts, TLS files, metrics address) and the embedded default that `isoswitch run`
//! uses without `--config`. A bad file is refused with the file, line and key named; the
//! file is checked whole (addresses, spec names, route targets) before anything starts.
//!
//! ```toml
//! metrics = "127.0.0.1:9583"              # /metrics and /health
//! journal = "./isoswitch-journal.db"
//! journal_budget_ms = 5                   # journal backlog past which requests are shed (91)
//! default_issuer = "bank-a"               # PANs no route matches
//!
//! [timeouts]                              # all optional (ms)
//! connect_ms = 2000
//! handshake_ms = 2000
//! write_ms = 2000                         # a stalled write closes the connection
//! drain_ms = 5000                         # graceful shutdown bound
//! reconnect_max_ms = 5000                 # cap of the issuer reconnect backoff
//! answer_margin_ms = 50                   # issuer wait ends this long before deadline_ms
//! down_reminder_ms = 60000                # WARN reminder while an issuer link stays down
//!
//! [ops]                                   # admin and metrics ports, all optional
//! max_connections = 16                    # each; more are closed at once
//! read_timeout_ms = 5000                  # the request head must arrive within this
//!
//! [[listener]]
//! addr = "0.0.0.0:8583"
//! spec = "cup-pos"                        # shipped name or a spec file
//! frame = { length = "binary2", tpdu = true, header_len = 6, max_frame = 8192 }
//! max_connections = 20000                # default: what fits under the descriptor limit
//! idle_timeout_ms = 300000
//! max_inflight_per_connection = 256
//! tls = { cert = "switch.pem", key = "switch-key.pem", client_ca = "terminals-ca.pem" }
//!
//! [[issuer]]
//! name = "bank-a"
//! match_key = ["11"]                      # fields matching a reply to its request
//! pin_zone = "bank-a"                     # zone PIN key name in the listener key store
//!
//! [[issuer.link]]
//! addr = "10.0.0.5:7001"
//! spec = "iso87ascii"
//! window = 4096                           # requests in flight on this link
//! deadline_ms = 5000                      # then the terminal gets 68
//! echo_interval_ms = 30000
//! sign_on = true
//! tls = { ca = "bank-ca.pem", server_name = "host.bank-a", cert = "c.pem", key = "k.pem" }
//!
//! [[route]]
//! prefix = "62"
//! issuer = "bank-a"
//!
//! [saf]                                   # reversal store-and-forward, all optional
//! key_file = "./isoswitch-saf.key"        # or key = "<64 hex digits>" (AES-256-GCM)
//! retry_min_ms = 1000                     # first repeat; doubled up to retry_max_ms
//! retry_max_ms = 60000
//! max_attempts = 0                        # 0: repeat until the issuer answers 0410
//! indoubt = true                          # log requests at the issuer (reversed after a crash)
//! indoubt_dir = "/var/lib/isoswitch/indoubt"  # default: "<journal file>.indoubt", or
//!                                         # "./isoswitch-indoubt/<switch_id>" with PostgreSQL
//! indoubt_rotate_ms = 5000                # a segment file is closed after this long
//! indoubt_fsync = false                   # true: survive a machine crash too (costly)
//!
//! [[standin]]                             # approve on an issuer's behalf (see README)
//! issuer = "bank-a"
//! max_amount = 50000                      # minor units; with `issuer` the only required key
//! when = ["down"]                         # and/or "timeout"
//! types = ["purchase"]                    # and/or "preauth"
//! card_daily_count = 3
//! ```
//! May import: crate::frame, crate::keys::mac.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::frame::FrameConfig;

/// The embedded default: one listener, one issuer taking every BIN.
pub const DEFAULT_TOML: &str = r#"
metrics = "127.0.0.1:9583"
journal = "./isoswitch-journal.db"
default_issuer = "default"

[[listener]]
addr = "127.0.0.1:8583"
spec = "iso87ascii"

[[issuer]]
name = "default"

[[issuer.link]]
addr = "127.0.0.1:8584"
spec = "iso87ascii"
deadline_ms = 5000
"#;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `/metrics` and `/health` are served; absent: not served.
    pub metrics: Option<SocketAddr>,
    /// The SQLite journal file; absent (or `"off"`): no journal.
    pub journal: Option<PathBuf>,
    /// A PostgreSQL connection string: when set, the journal lives there instead (for
    /// several switch nodes sharing one estate).
    pub journal_url: Option<String>,
    /// `"full"` (default: a commit survives power loss) or `"normal"` (survives a crash of
    /// the process only) for the SQLite journal.
    #[serde(default = "default_sync")]
    pub journal_sync: String,
    /// How long a new financial request may expect to wait for the journal writer to get
    /// through the rows queued ahead of its own (beyond the commit it waits for anyway);
    /// past it, requests are shed with 91 before reaching an issuer, the lowest classes
    /// first (batch uploads at half of it, ordinary requests at three quarters), reversals
    /// and advices never.
    #[serde(default = "default_journal_budget_ms")]
    pub journal_budget_ms: u64,
    /// This node's name in the journal.
    #[serde(default = "default_switch_id")]
    pub switch_id: String,
    /// Key (hex, at least 16 bytes) of the keyed PAN hash in the journal; absent: a
    /// built-in development key, with a warning at start.
    pub pan_key: Option<String>,
    /// Where the admin HTTP API listens (keep it on loopback); absent: not served.
    pub admin: Option<SocketAddr>,
    /// Bearer token the admin API requires (needed when `admin` is set).
    pub admin_token: Option<String>,
    /// Directory of rule files (registry, routes, fees, priority, risk); absent: an open
    /// estate routed by `[[route]]` / `default_issuer`.
    pub rules: Option<PathBuf>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Bounds of the operations ports (admin API, metrics).
    #[serde(default)]
    pub ops: OpsConfig,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// PAN prefix routes; the longest matching prefix wins.
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// The issuer for PANs no route matches; absent: such requests are declined with 14
    /// (or, with exactly one issuer, that issuer takes them).
    pub default_issuer: Option<String>,
    /// Store-and-forward of reversals.
    #[serde(default)]
    pub saf: SafConfig,
    /// How retransmissions and repeats are recognised.
    #[serde(default)]
    pub repeats: RepeatsConfig,
    /// Journal retention: settled days exported and purged once a day; absent: none.
    pub retention: Option<RetentionConfig>,
    /// Stand-in policies, one per issuer (`[[standin]]`).
    #[serde(default, rename = "standin")]
    pub standin: Vec<StandInConfig>,
}

/// When the switch approves on an issuer's behalf (`[[standin]]`, one per issuer). Only
/// `issuer` and `max_amount` are required: the defaults stand in for purchases when all of
/// the issuer's links are down, at most 3 per card and day and 3 × `max_amount` per card
/// and day, with a total unacknowledged exposure of 1000 × `max_amount`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandInConfig {
    pub issuer: String,
    /// Largest amount stood in for, minor units (field 4).
    pub max_amount: u64,
    /// When: `"down"` (every link of the issuer, and of a route's backup, is down) and/or
    /// `"timeout"` (no answer by the deadline; the request is reversed first). The
    /// operator's "stand-in now" (admin API) applies whatever this says.
    #[serde(default = "default_standin_when")]
    pub when: Vec<String>,
    /// Transaction types: `"purchase"`, `"preauth"`; nothing else is ever stood in for.
    #[serde(default = "default_standin_types")]
    pub types: Vec<String>,
    /// Card types (`"debit"`, `"credit"`, `"qr"`); empty: any.
    #[serde(default)]
    pub card_types: Vec<String>,
    /// Merchant categories (field 18) allowed; empty: any.
    #[serde(default)]
    pub mcc: Vec<String>,
    /// Merchant categories never stood in for.
    #[serde(default)]
    pub exclude_mcc: Vec<String>,
    /// Stand-in approvals per card (keyed PAN hash) and business day; default 3.
    pub card_daily_count: Option<u32>,
    /// Amount stood in for per card and business day; default 3 × `max_amount`.
    pub card_daily_amount: Option<u64>,
    /// Amount stood in for per merchant and business day; absent: no such limit.
    pub merchant_daily_amount: Option<u64>,
    /// Amount approved in stand-in and not yet acknowledged by the issuer; default
    /// 1000 × `max_amount`.
    pub max_exposure: Option<u64>,
    /// BINs or card-number prefixes never stood in for.
    #[serde(default)]
    pub never: Vec<String>,
    /// Keyed PAN hashes (as in the journal's `pan_hash`) never stood in for: a card
    /// listed without writing its number in the file.
    #[serde(default)]
    pub never_hash: Vec<String>,
    /// The advice MTI the issuer takes: `"0120"` or `"0220"`; absent: 0120 for
    /// authorisations (01xx), 0220 for financial requests (02xx).
    pub advice_mti: Option<String>,
}

fn default_standin_when() -> Vec<String> {
    vec!["down".to_string()]
}
fn default_standin_types() -> Vec<String> {
    vec!["purchase".to_string()]
}

/// Retransmissions and repeats (`[repeats]`): a request with the terminal key of one the
/// switch has answered (terminal, STAN, MTI class, field 7 or 60.2) gets that answer
/// again instead of being forwarded a second time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatsConfig {
    /// How long a key is remembered, in seconds; absent: the business day.
    pub window_s: Option<u64>,
    /// How many keys memory keeps (about 100 bytes each); past it the journal is asked.
    pub capacity: usize,
}

impl Default for RepeatsConfig {
    fn default() -> Self {
        RepeatsConfig { window_s: None, capacity: 2_000_000 }
    }
}

/// Store-and-forward of reversals to issuers (`[saf]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafConfig {
    /// AES-256 key (64 hex digits) that encrypts the card number of stored reversals.
    pub key: Option<String>,
    /// A file holding that key (64 hex digits); created with a random key when missing.
    /// Used when `key` is absent.
    pub key_file: PathBuf,
    /// First repeat delay; doubled after each write, up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// Writes before a reversal is marked expired; 0 repeats until acknowledged.
    pub max_attempts: u32,
    /// How long a timed-out request's key is remembered to recognise its late reply.
    pub late_memory_ms: u64,
    /// Timed-out keys remembered at most.
    pub late_capacity: usize,
    /// Reversals written at once per issuer.
    pub batch: usize,
    /// Keep the in-doubt log: the reversible requests written to each issuer, so that
    /// those in flight when the process dies are reversed at the next start. Active only
    /// with a journal (and so a store-and-forward queue).
    pub indoubt: bool,
    /// Where the in-doubt log lives; absent: beside the SQLite journal
    /// (`<journal file>.indoubt`), or `./isoswitch-indoubt/<switch_id>` with a PostgreSQL
    /// journal. One switch process per directory: a second one would reconcile (reverse)
    /// the first one's requests in flight at its start.
    pub indoubt_dir: Option<PathBuf>,
    /// A segment file is closed after this long (and deleted once its requests are
    /// resolved).
    pub indoubt_rotate_ms: u64,
    /// Sync each record to disk: survives a machine crash too, at the cost of one fsync
    /// per batch written to an issuer.
    pub indoubt_fsync: bool,
}

impl Default for SafConfig {
    fn default() -> Self {
        SafConfig {
            key: None,
            key_file: PathBuf::from("./isoswitch-saf.key"),
            retry_min_ms: 1000,
            retry_max_ms: 60_000,
            max_attempts: 0,
            late_memory_ms: 120_000,
            late_capacity: 65_536,
            batch: 64,
            indoubt: true,
            indoubt_dir: None,
            indoubt_rotate_ms: 5000,
            indoubt_fsync: false,
        }
    }
}

/// The operations ports (`admin`, `metrics`): each holds at most `max_connections` open
/// at once (more are closed as soon as they are accepted) and closes a connection whose
/// request head has not arrived within `read_timeout_ms`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    pub max_connections: usize,
    pub read_timeout_ms: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig { max_connections: 16, read_timeout_ms: 5000 }
    }
}

/// Switch-wide time bounds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect to an issuer.
    pub connect_ms: u64,
    /// TLS handshake, either side.
    pub handshake_ms: u64,
    /// A write that makes no progress this long closes the connection (hung peer).
    pub write_ms: u64,
    /// Graceful shutdown: how long in-flight requests may take to finish.
    pub drain_ms: u64,
    /// Cap of the reconnect backoff.
    pub reconnect_max_ms: u64,
    /// The wait for an issuer's reply ends this long before the link's `deadline_ms`
    /// (counted from the request's arrival, admission wait included), so that storing the
    /// reversal of an unanswered request, the journal row and the write of the 68 fit
    /// inside the deadline the terminal was promised. At most half the deadline is used.
    pub answer_margin_ms: u64,
    /// While an issuer link stays down, a WARN reminder this often (the first WARN comes
    /// when it goes down, with the reason; retries in between are logged at DEBUG).
    pub down_reminder_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 2000,
            handshake_ms: 2000,
            write_ms: 2000,
            drain_ms: 5000,
            reconnect_max_ms: 5000,
            answer_margin_ms: 50,
            down_reminder_ms: 60_000,
        }
    }
}

/// One terminal listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    #[serde(default = "default_spec")]
    pub spec: String,
    #[serde(default)]
    pub frame: FrameConfig,
    pub tls: Option<ServerTls>,
    /// Terminal connections open at once; absent: what fits under the process's
    /// descriptor limit (see `crate::fdlimit`). A value that does not fit is lowered.
    pub max_connections: Option<usize>,
    /// A connection with nothing received and nothing in flight this long is closed.
    #[serde(default = "default_idle_ms")]
    pub idle_timeout_ms: u64,
    /// Requests in flight on one connection before reading pauses.
    #[serde(default = "default_pipeline")]
    pub max_inflight_per_connection: usize,
    /// Terminal key file (software key store: terminal master keys, zone keys; mode 0600):
    /// sign-on (0800, field 70 = 001 or 60.3 = 001/003/004) then returns fresh working keys in
    /// field 62, recorded in `<keys>.working` so that they survive a restart.
    pub keys: Option<PathBuf>,
    /// MAC algorithm the terminals use (`cup-ecb-des`, `cup-ecb-3des`, `x9.9`, `x9.19`):
    /// every request other than network management must carry a valid field 64, and replies
    /// carry one. Needs `keys`.
    pub mac: Option<crate::keys::MacAlgorithm>,
    /// Response-code table of the terminals' dialect (a shipped name such as `cup-pos`, or a
    /// file); default: the table named like the listener's spec (identity when none).
    pub rc_table: Option<String>,
}

/// TLS toward terminals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, terminals must present a certificate issued by this CA.
    pub client_ca: Option<PathBuf>,
}

/// One issuer (bank host) and its links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub name: String,
    /// Fields that match a reply to its request; "11" is the switch's own STAN.
    #[serde(default = "default_match_key")]
    pub match_key: Vec<String>,
    /// The issuer's zone PIN key, by its name in the listeners' key store (`[zones]`): a
    /// request with a PIN block (field 52) from a listener with a key store reaches this
    /// issuer only translated under it. Absent: such requests are declined (96).
    pub pin_zone: Option<String>,
    #[serde(rename = "link")]
    pub links: Vec<LinkConfig>,
}

/// One persistent connection to an issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub addr: SocketAddr,
    #[serde(default = "default_spec")]
    pub spec: String,
    #[serde(default)]
    pub frame: FrameConfig,
    pub tls: Option<ClientTls>,
    /// Requests in flight on this link at most.
    #[serde(default = "default_window")]
    pub window: usize,
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// An idle link sends an 0800 echo this often.
    #[serde(default = "default_echo")]
    pub echo_interval_ms: u64,
    /// Send an 0800 sign-on after each connect.
    #[serde(default = "default_true")]
    pub sign_on: bool,
}

/// TLS toward an issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// CA certificates that sign the issuer's certificate.
    pub ca: PathBuf,
    /// Name expected in the issuer's certificate.
    pub server_name: String,
    /// Client certificate and key for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A PAN prefix route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub issuer: String,
}

fn default_sync() -> String {
    "full".to_string()
}
fn default_journal_budget_ms() -> u64 {
    5
}
fn default_switch_id() -> String {
    "isoswitch-1".to_string()
}
fn default_spec() -> String {
    "iso87ascii".to_string()
}
fn default_idle_ms() -> u64 {
    300_000
}
fn default_pipeline() -> usize {
    256
}
fn default_match_key() -> Vec<String> {
    vec!["11".to_string()]
}
fn default_window() -> usize {
    4096
}
fn default_deadline() -> u64 {
    5000
}
fn default_echo() -> u64 {
    30_000
}
fn default_true() -> bool {
    true
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid { file: String, line: usize, column: usize, key: String, message: String },
}

#[path = "config_load.rs"]
mod load;
#[path = "config_sanity.rs"]
mod sanity;

#[path = "config_retention.rs"]
mod retention;
pub use load::parse_standin_file;
pub use retention::RetentionConfig;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_the_cli_contract() {
        let c = Config::embedded();
        assert_eq!(c.metrics, Some("127.0.0.1:9583".parse().unwrap()));
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].addr, "127.0.0.1:8583".parse().unwrap());
        assert_eq!(c.listeners[0].spec, "iso87ascii");
        assert_eq!(c.listeners[0].frame, FrameConfig::default());
        assert_eq!(c.issuers[0].links[0].addr, "127.0.0.1:8584".parse().unwrap());
        assert_eq!(c.issuers[0].links[0].deadline_ms, 5000);
        assert_eq!(c.issuers[0].match_key, vec!["11"]);
        assert_eq!(c.journal, Some(PathBuf::from("./isoswitch-journal.db")));
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
metrics = "127.0.0.1:0"
default_issuer = "a"
[timeouts]
drain_ms = 100
[[listener]]
addr = "127.0.0.1:0"
spec = "cup-pos"
frame = { length = "bcd2", tpdu = true, header_len = 6, max_frame = 4096 }
max_connections = 10
[listener.tls]
cert = "c.pem"
key = "k.pem"
client_ca = "ca.pem"
[[issuer]]
name = "a"
match_key = ["11", "41"]
[[issuer.link]]
addr = "127.0.0.1:1"
window = 8
sign_on = false
[[issuer.link]]
addr = "127.0.0.1:2"
tls = { ca = "ca.pem", server_name = "bank", cert = "c.pem", key = "k.pem" }
[[route]]
prefix = "62"
issuer = "a"
"#;
        let c = Config::parse("t.toml", text).unwrap();
        assert_eq!(c.listeners[0].frame.header_len, 6);
        assert_eq!(c.issuers[0].links.len(), 2);
        assert!(!c.issuers[0].links[0].sign_on);
        assert_eq!(c.routes[0].prefix, "62");
        assert_eq!(c.timeouts.drain_ms, 100);
    }

    #[test]
    fn bad_files_name_file_line_and_key() {
        let cases: &[(&str, usize, &str)] = &[
            ("metrics = \"127.0.0.1:1\"\nbogus = 1\n", 2, "bogus"),
            ("[[listener]]\naddr = \"127.0.0.1:1\"\nmax_conections = 3\n", 3, "max_conections"),
            ("[[listener]]\naddr = \"not an address\"\n", 2, "listener.addr"),
            ("[[listener]]\naddr = \"127.0.0.1:1\"\nspec = \"nope\"\n", 3, "spec"),
            (
                "[[issuer]]\nname = \"a\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n[[route]]\nprefix = \"4\"\nissuer = \"b\"\n",
                7,
                "issuer",
            ),
            (
                "[[issuer]]\nname = \"a\"\nmatch_key = [\"x\"]\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n",
                3,
                "match_key",
            ),
            ("[[listener]]\naddr = \"127.0.0.1:1\"\nframe = { length = \"bcd3\" }\n", 3, "bcd3"),
            // A type error names the key, with its table, not only the value.
            (
                "[[issuer]]\nname = \"a\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\nwindow = \"big\"\n",
                5,
                ": issuer.link.window: invalid type",
            ),
            (
                "[[listener]]\naddr = \"127.0.0.1:1\"\nframe = { length = 7 }\n",
                3,
                ": listener.frame.length: ",
            ),
            ("[ops]\nmax_connections = -3\n", 2, ": ops.max_connections: "),
            ("switch_id = 7\n", 1, ": switch_id: invalid type"),
            ("metrics = \"127.0.0.1:1\"\njournal_budget_ms = 0\n", 2, "journal_budget_ms"),
        ];
        for (text, line, key) in cases {
            let e = Config::parse("bad.toml", text).unwrap_err();
            let s = e.to_string();
            assert!(s.starts_with(&format!("bad.toml:{line}:")), "{text:?} -> {s}");
            assert!(s.contains(key), "{text:?} -> {s}");
        }
    }
}
