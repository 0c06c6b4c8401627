//! `isoswitch sim-issuer` and `isoswitch sim-terminal`: the load simulators on the
//! command line. Each runs on its own multi-thread tokio runtime (`--threads`).
//! `sim-issuer` runs until Ctrl-C or SIGTERM and then prints what it did;
//! `sim-terminal` prints a summary, and with `--json` its last line is the contract's
//! JSON object. Exit status of sim-terminal: 0, or 1 when a reply mismatched its request
//! or nothing was received at all; 2 for bad arguments. As part of the CLI it may import
//! every layer; it holds argument parsing and printing only, the work is in `crate::sim`.
//! May import: crate::cli::run, crate::frame, crate::iso, crate::keys, crate::sim.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::frame::{FrameConfig, LengthHeader};
use crate::iso::Spec;
use crate::sim::{SimIssuerConfig, SimStop, SimTerminalConfig, SimTls, run_issuer, run_terminals};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Framing {
    /// 2-byte big-endian binary length.
    Binary2,
    /// 2-byte BCD length.
    Bcd2,
    /// 4 ASCII decimal digits.
    Ascii4,
}

/// Framing flags shared by both simulators.
#[derive(Args, Debug, Clone)]
pub struct FramingArgs {
    /// Length header in front of each message.
    #[arg(long, value_enum, default_value = "binary2")]
    pub framing: Framing,
    /// The length counts its own bytes too.
    #[arg(long)]
    pub length_includes_header: bool,
    /// A 5-byte TPDU follows the length (implied by --spec cup-pos).
    #[arg(long)]
    pub tpdu: bool,
    /// Bytes of application header after the TPDU (cup-pos: 6).
    #[arg(long)]
    pub header_len: Option<usize>,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = 8192)]
    pub max_frame: usize,
}

impl FramingArgs {
    fn config(&self, spec: &str) -> FrameConfig {
        let cup = spec == "cup-pos";
        FrameConfig {
            length: match self.framing {
                Framing::Binary2 => LengthHeader::Binary2,
                Framing::Bcd2 => LengthHeader::Bcd2,
                Framing::Ascii4 => LengthHeader::Ascii4,
            },
            length_includes_header: self.length_includes_header,
            tpdu: self.tpdu || cup,
            header_len: self.header_len.unwrap_or(if cup { 6 } else { 0 }),
            max_frame: self.max_frame,
        }
    }
}

#[derive(Args, Debug)]
pub struct SimIssuerArgs {
    /// Address to listen on, e.g. 127.0.0.1:8584 (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Spec name or spec file.
    #[arg(long, default_value = "iso87ascii")]
    pub spec: String,
    /// Delay before each reply, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Further random delay up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Never answer every N-th request of each connection (0: answer all).
    #[arg(long, default_value_t = 0)]
    pub drop_every: u64,
    /// Answer requests that arrive together in shuffled order, in windows of N.
    #[arg(long, default_value_t = 0)]
    pub shuffle: usize,
    /// Never answer requests for this amount in minor units (reversals are answered): the
    /// unanswered purchase of `sim-terminal --scenario cup-day`.
    #[arg(long)]
    pub silent_amount: Option<u64>,
    /// Answer stand-in advices (0120/0220) of this amount in minor units with 05 instead of
    /// 00: the issuer refusing what the switch approved on its behalf.
    #[arg(long)]
    pub decline_advice_amount: Option<u64>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub framing: FramingArgs,
}

#[derive(Args, Debug)]
pub struct SimTerminalArgs {
    /// Address of the switch or simulated issuer.
    #[arg(long)]
    pub connect: SocketAddr,
    /// Spec name or spec file.
    #[arg(long, default_value = "iso87ascii")]
    pub spec: String,
    /// Terminal connections.
    #[arg(long, short = 'C', default_value_t = 1)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(long, short = 'K', default_value_t = 1)]
    pub pipeline: usize,
    /// Run for this many seconds.
    #[arg(long, conflicts_with = "count")]
    pub seconds: Option<f64>,
    /// Send this many requests in all (default 10000 when --seconds is not given).
    #[arg(long)]
    pub count: Option<u64>,
    /// Pace the run at this many requests per second in all (default: as fast as the
    /// pipeline allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// A request unanswered after this many milliseconds counts as an error.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// End with the one-line JSON report.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub framing: FramingArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// `load` (default): the load above. `cup-day`: one UnionPay-style terminal's scripted
    /// day against a switch's cup-pos listener (needs --tmk); exit status 1 unless every
    /// step is answered as expected and settlement balances.
    #[arg(long, value_enum, default_value = "load")]
    pub scenario: Scenario,
    #[command(flatten)]
    pub day: DayArgs,
}

/// TLS to the switch's listener (a listener with `tls = { cert, key, client_ca }`).
#[derive(Args, Debug)]
pub struct TlsArgs {
    /// Connect over TLS (needs --ca-file).
    #[arg(long, requires = "ca_file")]
    pub tls: bool,
    /// PEM file of the CA(s) that signed the switch's certificate.
    #[arg(long, value_name = "PATH", requires = "tls")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a listener that verifies terminals (`client_ca`).
    #[arg(long, value_name = "PATH", requires_all = ["tls", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, value_name = "PATH", requires_all = ["tls", "client_cert"])]
    pub client_key: Option<PathBuf>,
    /// The name the switch's certificate must carry (default: the IP address of --connect).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
}

impl TlsArgs {
    /// The TLS set-up, `None` without --tls; an error names the file or value at fault.
    fn config(&self, connect: SocketAddr) -> Result<Option<SimTls>, String> {
        let (true, Some(ca)) = (self.tls, self.ca_file.as_deref()) else { return Ok(None) };
        let cert_key = self.client_cert.as_deref().zip(self.client_key.as_deref());
        let name = self.server_name.clone().unwrap_or_else(|| connect.ip().to_string());
        SimTls::new(ca, cert_key, &name).map(Some)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Load,
    CupDay,
}

/// Who the terminals are, and the `cup-day` scenario's terminal.
#[derive(Args, Debug)]
pub struct DayArgs {
    /// Terminal master key, 32 hex digits (as in the switch's key file for --terminal).
    #[arg(long)]
    pub tmk: Option<String>,
    /// Terminal ids (field 41) of the estate's registry, comma-separated; the connections
    /// take them in turn. Default: the simulator's own (SIM00000, SIM00001, ...), which only
    /// an open estate accepts; 10000001 for --scenario cup-day (one id only).
    #[arg(long, value_delimiter = ',')]
    pub terminal: Vec<String>,
    /// Merchant ids (field 42) of those terminals: one for all, or one per terminal in the
    /// same order. Default: none with --terminal (the switch takes the registry's),
    /// SIMMERCHANT0001 without; 898340158120001 for --scenario cup-day.
    #[arg(long, value_delimiter = ',')]
    pub merchant: Vec<String>,
    /// The batch number (60.2) the cup-day terminal starts in; the day settles it and ends
    /// in the next one, so a second day over the same journal starts two higher (--batch 3).
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// MAC algorithm of the listener (cup-ecb-des, cup-ecb-3des, x9.9, x9.19).
    #[arg(long, default_value = "cup-ecb-des")]
    pub mac: String,
    /// Sign-on code (60.3) and so the field 62 layout: 001 (single-length keys), 003
    /// (double-length PIN key), 004 (003 plus a track key).
    #[arg(long, default_value = "001")]
    pub sign_on: String,
    /// Amount the issuer leaves unanswered (sim-issuer --silent-amount).
    #[arg(long, default_value_t = 6_800)]
    pub silent_amount: u64,
    /// Milliseconds the terminal waits for that purchase before reversing it (keep it
    /// below the issuer link's deadline_ms).
    #[arg(long, default_value_t = 500)]
    pub give_up_ms: u64,
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build().map_err(|e| {
        eprintln!("isoswitch: cannot start the runtime: {e}");
        ExitCode::from(2)
    })
}

fn load_spec(name: &str) -> Result<Arc<Spec>, ExitCode> {
    Spec::load(name).map_err(|e| {
        eprintln!("isoswitch: spec: {e}");
        ExitCode::from(2)
    })
}

pub fn sim_issuer(a: SimIssuerArgs) -> ExitCode {
    let spec = match load_spec(&a.spec) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let cfg = SimIssuerConfig {
        spec,
        frame: a.framing.config(&a.spec),
        delay: Duration::from_millis(a.delay_ms),
        jitter: Duration::from_millis(a.jitter_ms),
        drop_every: a.drop_every,
        shuffle: a.shuffle,
        silent_amount: a.silent_amount,
        decline_advice_amount: a.decline_advice_amount,
        advices: Default::default(),
    };
    let advices = cfg.advices.clone();
    let rt = match runtime(a.threads) {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(a.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("isoswitch: sim-issuer: cannot listen on {}: {e}", a.listen);
                return ExitCode::from(2);
            }
        };
        let local = listener.local_addr().map_or_else(|_| a.listen.to_string(), |x| x.to_string());
        eprintln!("sim-issuer listening on {local} (spec {})", a.spec);
        let token = CancellationToken::new();
        let stopper = token.clone();
        tokio::spawn(async move {
            super::run::wait_for_signal().await;
            stopper.cancel();
        });
        match run_issuer(listener, cfg, token).await {
            Ok(s) => {
                println!(
                    "sim-issuer: connections {}  received {}  answered {}  dropped {}  undecodable {}",
                    s.connections, s.received, s.answered, s.dropped, s.undecodable
                );
                let t = advices.totals();
                if t.distinct > 0 {
                    println!(
                        "sim-issuer: advices {}  repeats {}  duplicates {}  declined {}  amount {} (accepted {})",
                        t.distinct, t.repeats, t.duplicates, t.declined, t.amount, t.amount_accepted
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("isoswitch: sim-issuer: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

pub fn sim_terminal(a: SimTerminalArgs) -> ExitCode {
    if a.scenario == Scenario::CupDay {
        return cup_day(&a);
    }
    let spec = match load_spec(&a.spec) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let stop = match (a.seconds, a.count) {
        (Some(s), _) if s.is_finite() && s > 0.0 => SimStop::Duration(Duration::from_secs_f64(s)),
        (Some(_), _) => {
            eprintln!("isoswitch: sim-terminal: --seconds must be a positive number");
            return ExitCode::from(2);
        }
        (None, n) => SimStop::Count(n.unwrap_or(10_000)),
    };
    if a.rate.is_some_and(|r| !r.is_finite() || r <= 0.0) {
        eprintln!("isoswitch: sim-terminal: --rate must be a positive number");
        return ExitCode::from(2);
    }
    let tls = match a.tls.config(a.connect) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("isoswitch: sim-terminal: --tls: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = SimTerminalConfig {
        tls,
        connect: a.connect,
        spec,
        frame: a.framing.config(&a.spec),
        connections: a.connections.max(1),
        pipeline: a.pipeline.max(1),
        stop,
        timeout: Duration::from_millis(a.timeout_ms.max(1)),
        rate: a.rate,
        terminals: a.day.terminal.clone(),
        merchants: a.day.merchant.clone(),
    };
    let rt = match runtime(a.threads) {
        Ok(r) => r,
        Err(c) => return c,
    };
    match rt.block_on(run_terminals(cfg)) {
        Ok(report) => {
            println!("{report}");
            if a.json {
                println!("{}", report.to_json());
            }
            if report.received == 0
                && let Some(e) = &report.connect_error
            {
                eprintln!("isoswitch: sim-terminal: {e}");
            }
            if report.mismatches > 0 || report.received == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("isoswitch: sim-terminal: {e}");
            ExitCode::from(2)
        }
    }
}

fn cup_day(a: &SimTerminalArgs) -> ExitCode {
    if a.tls.tls {
        eprintln!("isoswitch: sim-terminal: --tls is for the load scenario; cup-day speaks plain TCP");
        return ExitCode::from(2);
    }
    let Some(tmk) = a.day.tmk.as_deref().filter(|k| k.len() == 32).and_then(crate::keys::DesKey::from_hex)
    else {
        eprintln!("isoswitch: sim-terminal: --scenario cup-day needs --tmk with 32 hex digits");
        return ExitCode::from(2);
    };
    let mac: crate::keys::MacAlgorithm = match toml::Value::String(a.day.mac.clone()).try_into() {
        Ok(m) => m,
        Err(_) => {
            eprintln!("isoswitch: sim-terminal: unknown --mac `{}`", a.day.mac);
            return ExitCode::from(2);
        }
    };
    let Some(layout) = crate::keys::KeyLayout::from_code(&a.day.sign_on) else {
        eprintln!("isoswitch: sim-terminal: --sign-on must be 001, 003 or 004, not `{}`", a.day.sign_on);
        return ExitCode::from(2);
    };
    let one = |list: &[String], what: &str| -> Result<Option<String>, ExitCode> {
        match list {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => {
                eprintln!("isoswitch: sim-terminal: --scenario cup-day is one terminal: give one --{what}");
                Err(ExitCode::from(2))
            }
        }
    };
    let (terminal, merchant) = match (one(&a.day.terminal, "terminal"), one(&a.day.merchant, "merchant")) {
        (Ok(t), Ok(m)) => (t, m),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    if !(1..=999_998).contains(&a.day.batch) {
        eprintln!("isoswitch: sim-terminal: --batch must be 1 to 999998, not {}", a.day.batch);
        return ExitCode::from(2);
    }
    let mut cfg = crate::sim::cup_day::CupDayConfig::new(a.connect, tmk);
    cfg.sign_on = layout;
    if let Some(t) = terminal {
        cfg.terminal = t;
    }
    if let Some(m) = merchant {
        cfg.merchant = m;
    }
    cfg.batch = a.day.batch;
    cfg.mac = mac;
    cfg.silent_amount = a.day.silent_amount;
    cfg.give_up = Duration::from_millis(a.day.give_up_ms.max(1));
    cfg.reply_timeout = Duration::from_millis(a.timeout_ms.max(1));
    let rt = match runtime(a.threads) {
        Ok(r) => r,
        Err(c) => return c,
    };
    match rt.block_on(crate::sim::cup_day::run_cup_day(cfg)) {
        Ok(report) => {
            println!("{report}");
            if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("isoswitch: sim-terminal: cup-day: {e}");
            ExitCode::FAILURE
        }
    }
}
