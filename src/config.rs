//! The switch's configuration: a TOML file (listeners, issuers and their links, routes,
//! timeouts, TLS files, metrics address) and the embedded default that `isoswitch run`
//! uses without `--config`. A bad file is refused with the file, line and key named; the
//! file is checked whole (addresses, spec names, route targets) before anything starts.
//! May import: the codec and framing (for spec names and `FrameConfig`).
//!
//! ```toml
//! metrics = "127.0.0.1:9583"              # /metrics and /health
//! journal = "./isoswitch-journal.db"
//! journal_budget_ms = 100                 # journal backlog past which requests are shed (91)
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::frame::FrameConfig;
use crate::iso::spec;

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
    100
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

impl Config {
    /// The embedded default configuration.
    pub fn embedded() -> Config {
        // The embedded text is part of the program and covered by a test.
        match Config::parse("<embedded>", DEFAULT_TOML) {
            Ok(c) => c,
            Err(e) => unreachable!("embedded configuration: {e}"),
        }
    }

    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Config::parse(&file, &text)
    }

    /// Parse and check configuration text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        cfg.check(file, text)?;
        Ok(cfg)
    }

    fn check(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        sanity::check_empty(file, text)?;
        let bad = |key: &str, value: &str, message: String| {
            let (line, column) = locate(text, key, value);
            ConfigError::Invalid { file: file.to_string(), line, column, key: key.to_string(), message }
        };
        for l in &self.listeners {
            if spec::shipped(&l.spec).is_none() && !Path::new(&l.spec).exists() {
                return Err(bad("spec", &l.spec, format!("unknown spec `{}`", l.spec)));
            }
            if l.mac.is_some() && l.keys.is_none() {
                return Err(bad("mac", "", "MAC verification needs a key file (keys = ...)".into()));
            }
            if l.max_connections == Some(0) {
                return Err(bad("max_connections", "", "must be at least 1".into()));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for i in &self.issuers {
            if names.contains(&i.name.as_str()) {
                return Err(bad("name", &i.name, format!("issuer `{}` defined twice", i.name)));
            }
            names.push(&i.name);
            if i.links.is_empty() {
                return Err(bad("name", &i.name, format!("issuer `{}` has no [[issuer.link]]", i.name)));
            }
            if i.match_key.is_empty() {
                return Err(bad("match_key", "", "needs at least one field".into()));
            }
            for k in &i.match_key {
                match k.parse::<usize>() {
                    Ok(n) if (2..=128).contains(&n) => {}
                    _ => return Err(bad("match_key", k, format!("`{k}` is not a field number 2-128"))),
                }
            }
            for link in &i.links {
                if spec::shipped(&link.spec).is_none() && !Path::new(&link.spec).exists() {
                    return Err(bad("spec", &link.spec, format!("unknown spec `{}`", link.spec)));
                }
                if link.window == 0 {
                    return Err(bad("window", "", "must be at least 1".into()));
                }
                if link.deadline_ms == 0 {
                    return Err(bad("deadline_ms", "", "must be at least 1".into()));
                }
            }
        }
        for r in &self.routes {
            if r.prefix.is_empty() || !r.prefix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("prefix", &r.prefix, format!("`{}` is not a digit prefix", r.prefix)));
            }
            if !names.contains(&r.issuer.as_str()) {
                return Err(bad("issuer", &r.issuer, format!("no issuer named `{}`", r.issuer)));
            }
        }
        if let Some(d) = &self.default_issuer
            && !names.contains(&d.as_str())
        {
            return Err(bad("default_issuer", d, format!("no issuer named `{d}`")));
        }
        if let Some(addr) = self.admin
            && self.admin_token.as_deref().is_none_or(|t| t.len() < 16)
        {
            let (line, column) = sanity::at(text, &[("admin_token", ""), ("admin", "")]);
            let mut message = "the admin API needs a bearer token of at least 16 characters".to_string();
            if !addr.ip().is_loopback() {
                message.push_str(&format!(" (and {addr} is reachable from other hosts)"));
            }
            let (file, key) = (file.to_string(), "admin_token".to_string());
            return Err(ConfigError::Invalid { file, line, column, key, message });
        }
        if self.journal_sync != "full" && self.journal_sync != "normal" {
            return Err(bad("journal_sync", &self.journal_sync, "must be \"full\" or \"normal\"".into()));
        }
        if !(1..=60_000).contains(&self.journal_budget_ms) {
            let v = self.journal_budget_ms.to_string();
            return Err(bad("journal_budget_ms", &v, "must be between 1 and 60000 (milliseconds)".into()));
        }
        if let Some(k) = &self.pan_key
            && (k.len() < 32 || k.len() % 2 != 0 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("pan_key", "", "must be at least 32 hex characters (16 bytes)".into()));
        }
        if let Some(dir) = &self.rules
            && !dir.is_dir()
        {
            return Err(bad("rules", "", format!("{} is not a directory", dir.display())));
        }
        if let Some(k) = &self.saf.key
            && (k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            // The value itself is a secret: the message does not repeat it.
            return Err(bad("key", "", "must be 64 hex digits (an AES-256 key)".into()));
        }
        if self.saf.retry_min_ms == 0 || self.saf.retry_max_ms < self.saf.retry_min_ms {
            let (line, column) = sanity::at(text, &[("retry_max_ms", ""), ("retry_min_ms", "")]);
            let (file, key) = (file.to_string(), "retry_max_ms".to_string());
            let message = "needs 0 < retry_min_ms <= retry_max_ms".to_string();
            return Err(ConfigError::Invalid { file, line, column, key, message });
        }
        check_standin(&self.standin, &names, &bad)?;
        if !(10..=3_600_000).contains(&self.saf.indoubt_rotate_ms) {
            let v = self.saf.indoubt_rotate_ms.to_string();
            return Err(bad("indoubt_rotate_ms", &v, "must be between 10 and 3600000".into()));
        }
        retention::check(self, file, text)?;
        sanity::check(self, file, text)
    }

    /// Settings that work but deserve a word at start (one line each).
    pub fn warnings(&self) -> Vec<String> {
        sanity::warnings(self)
    }
}

/// A TOML parse or type error of `text`, located: file, line, column and key.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column, key) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            // A type error's span is the value: name the key written before it.
            let key = key_before(text, span.start)
                .unwrap_or_else(|| text.get(span.clone()).unwrap_or("").trim().trim_matches('"').to_string());
            (l, c, key)
        }
        None => (1, 1, String::new()),
    };
    let key = if key.is_empty() || key.len() > 60 { "(document)".to_string() } else { key };
    ConfigError::Invalid { file: file.to_string(), line, column, key, message: e.message().to_string() }
}

/// The `[[standin]]` tables of a rule directory's `standin.toml`: each replaces the
/// switch configuration's policy for its issuer, and they reload with the rules. Checked
/// as in the configuration (`issuers`: the configured issuer names).
pub fn parse_standin_file(
    file: &str,
    text: &str,
    issuers: &[&str],
) -> Result<Vec<StandInConfig>, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct StandInFile {
        #[serde(default)]
        standin: Vec<StandInConfig>,
    }
    let parsed: StandInFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let bad = |key: &str, value: &str, message: String| {
        let (line, column) = locate(text, key, value);
        ConfigError::Invalid { file: file.to_string(), line, column, key: key.to_string(), message }
    };
    check_standin(&parsed.standin, issuers, &bad)?;
    Ok(parsed.standin)
}

/// Every `[[standin]]` names a configured issuer once, with values it can work with.
fn check_standin(
    list: &[StandInConfig],
    issuers: &[&str],
    bad: &dyn Fn(&str, &str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    for s in list {
        if !issuers.contains(&s.issuer.as_str()) {
            return Err(bad("issuer", &s.issuer, format!("[[standin]]: no issuer named `{}`", s.issuer)));
        }
        if seen.contains(&s.issuer.as_str()) {
            return Err(bad("issuer", &s.issuer, format!("[[standin]] for `{}` given twice", s.issuer)));
        }
        seen.push(&s.issuer);
        if s.max_amount == 0 || i64::try_from(s.max_amount).is_err() {
            return Err(bad("max_amount", "", "must be a positive amount in minor units".into()));
        }
        for w in &s.when {
            if !matches!(w.as_str(), "down" | "timeout") {
                return Err(bad("when", w, format!("`{w}`: stand in when \"down\" or \"timeout\"")));
            }
        }
        for t in &s.types {
            if !matches!(t.as_str(), "purchase" | "preauth") {
                return Err(bad(
                    "types",
                    t,
                    format!("`{t}`: only \"purchase\" and \"preauth\" can be stood in for"),
                ));
            }
        }
        for c in &s.card_types {
            if !matches!(c.as_str(), "debit" | "credit" | "qr") {
                return Err(bad("card_types", c, format!("`{c}`: card types are debit, credit, qr")));
            }
        }
        for m in s.mcc.iter().chain(&s.exclude_mcc) {
            if !digits(m, 4, 4) {
                return Err(bad("mcc", m, format!("`{m}` is not a 4-digit merchant category")));
            }
        }
        for n in &s.never {
            if !digits(n, 1, 19) {
                // May be a card number: not repeated in the message.
                return Err(bad("never", "", "entries are BINs or card numbers: 1 to 19 digits".into()));
            }
        }
        for h in &s.never_hash {
            if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("never_hash", h, "a PAN hash is 32 hex digits (journal pan_hash)".into()));
            }
        }
        if let Some(m) = &s.advice_mti
            && m != "0120"
            && m != "0220"
        {
            return Err(bad("advice_mti", m, "must be \"0120\" or \"0220\"".into()));
        }
        let amounts = [s.card_daily_amount, s.merchant_daily_amount, s.max_exposure];
        if amounts.iter().flatten().any(|&a| a == 0 || i64::try_from(a).is_err())
            || s.card_daily_count == Some(0)
        {
            return Err(bad("issuer", &s.issuer, "[[standin]] limits must be positive".into()));
        }
    }
    Ok(())
}

/// The dotted key whose value starts at `offset` (`issuer.link.window` for `window = "big"`
/// under `[[issuer.link]]`, `listener.frame.length` for an inline table), when the line
/// reads `key = ` up to there; `None` when `offset` is at a key, not a value.
fn key_before(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let prefix = before.get(line_start..)?;
    let ident = |s: &str| {
        let s = s.trim().trim_matches('"');
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
            .then(|| s.to_string())
    };
    // Every `name =` on the line before the value: an inline table nests its keys.
    let mut keys = Vec::new();
    let mut rest = prefix;
    while let Some(eq) = rest.find('=') {
        let name = rest.get(..eq)?.rsplit(['{', ',']).next()?;
        keys.push(ident(name)?);
        rest = rest.get(eq + 1..)?;
    }
    if keys.is_empty()
        || !rest.trim().trim_start_matches('{').trim().is_empty() && !rest.trim().ends_with('[')
    {
        return None;
    }
    // The table the line is in: the last `[name]` or `[[name]]` header above it.
    let table = before.get(..line_start)?.lines().rev().map(str::trim).find(|l| l.starts_with('['));
    let table = table.map(|h| h.trim_matches(['[', ']']).trim().to_string()).filter(|h| !h.is_empty());
    Some(table.into_iter().chain(keys).collect::<Vec<_>>().join("."))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |p| before.len() - p - 1) + 1;
    (line, column)
}

/// The line and column where `key` is given `value` (or just `key` when value is empty);
/// the start of the file when the key is not written in it.
fn locate(text: &str, key: &str, value: &str) -> (usize, usize) {
    sanity::at(text, &[(key, value)])
}

#[path = "config_sanity.rs"]
mod sanity;

#[path = "config_retention.rs"]
mod retention;
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
