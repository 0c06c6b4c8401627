//! The README runs as written. Its fenced blocks are read from the file itself:
//!
//! - every `toml` block that opens with `# <path>` is a verbatim excerpt of that file (the
//!   example estates' configuration and rules); every other one that has listeners or
//!   issuers parses as a switch configuration; the rest parse as TOML;
//! - the shell sequences of the quick start and of both example estates run line by line
//!   through `bash`, in a scratch copy of `config/`, with `isoswitch` on the `PATH` as this
//!   build's binary and the README's ports (8583, 8584, 9583) swapped for free ones. A line
//!   ending in `&` starts in the background and is waited for until it serves; `kill`
//!   stops the background processes. Then what they printed is checked: every simulator
//!   request answered by the issuer and none 03, settlement at the rates the README states,
//!   the UnionPay-style day exiting 0;
//! - `$ ` transcripts run and must print what the README shows;
//! - every other shell block is named below with the reason it is not run, so that a new
//!   block cannot slip in untested.
//!
//! Every wait is bounded; each test takes a few seconds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use isoswitch::config::Config;

const README: &str = include_str!("../README.md");

/// The README's addresses, swapped for free ports in commands and configuration files.
const ADDRS: [&str; 3] = ["127.0.0.1:8583", "127.0.0.1:8584", "127.0.0.1:9583"];

/// Shell blocks not run here, each found by a line it contains, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "isoswitch run --config switch.toml",
        "examples of `run` invocations that serve until stopped; tests/cli_run.rs runs the embedded default",
    ),
    (
        "sqlite3 isoswitch-journal.db",
        "needs the sqlite3 tool and a day of traffic; the example estate below runs `settle`",
    ),
    ("B=target/release/isoswitch", "the load recipe: a release build and 10-second load runs"),
    ("bash benches/load.sh full 16 16 5", "load runs of a release build and a criterion bench"),
    ("export ISOSWITCH_TEST_PG", "runs the test suite itself"),
    (
        "--tls --ca-file estate-ca.pem",
        "needs an estate's certificates; tests/sim_tls.rs runs sim-terminal --tls with test certificates",
    ),
    (
        "isoswitch journal export --journal isoswitch-journal.db",
        "needs a journal with a finished day; tests/cli_journal.rs runs export and purge",
    ),
    (
        "cargo install --path .",
        "installs into ~/.cargo/bin and /usr/local/bin; tests/cli_docs.rs runs `completions` and `man`",
    ),
];

struct Block {
    lang: String,
    text: String,
    /// Line of the opening fence, for messages.
    line: usize,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in README.lines().enumerate() {
        match (line.trim_start().strip_prefix("```"), open.as_mut()) {
            (Some(lang), None) => {
                open = Some(Block { lang: lang.trim().into(), text: String::new(), line: i + 1 })
            }
            (Some(_), Some(_)) => out.extend(open.take()),
            (None, Some(b)) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md: a fenced block is not closed");
    out
}

/// The one shell block that contains every one of `needles`.
fn sh_block(needles: &[&str]) -> Block {
    let mut found: Vec<Block> = blocks()
        .into_iter()
        .filter(|b| b.lang == "sh" && needles.iter().all(|n| b.text.contains(n)))
        .collect();
    assert_eq!(found.len(), 1, "README.md: one sh block with {needles:?}");
    found.remove(0)
}

/// Lines of a shell block with `\` continuations joined; blank lines dropped.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        if !cur.trim().is_empty() {
            out.push(cur.trim().to_string());
        }
        cur.clear();
    }
    out
}

#[test]
fn every_toml_block_quotes_its_file_or_is_a_valid_configuration() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (mut quoted, mut configs) = (Vec::new(), 0);
    for b in blocks().iter().filter(|b| b.lang == "toml") {
        let first = b.text.lines().next().unwrap_or_default();
        match first.strip_prefix("# ").filter(|p| !p.contains(' ') && p.ends_with(".toml")) {
            Some(path) => {
                let file = std::fs::read_to_string(root.join(path))
                    .unwrap_or_else(|e| panic!("README.md:{}: quotes {path}: {e}", b.line));
                let want: Vec<&str> = b.text.lines().skip(1).collect();
                let have: Vec<&str> = file.lines().collect();
                assert!(
                    !want.is_empty() && have.windows(want.len()).any(|w| w == want.as_slice()),
                    "README.md:{}: the block is not a verbatim excerpt of {path}",
                    b.line
                );
                quoted.push(path.to_string());
            }
            None if b.text.contains("[[listener]]") || b.text.contains("[[issuer]]") => {
                Config::parse("README.md", &b.text)
                    .unwrap_or_else(|e| panic!("README.md:{}: not a valid configuration: {e}", b.line));
                configs += 1;
            }
            None => {
                toml::from_str::<toml::Table>(&b.text)
                    .unwrap_or_else(|e| panic!("README.md:{}: not TOML: {e}", b.line));
            }
        }
    }
    // The rules section quotes every rule file, and the UnionPay-style section its estate.
    for f in ["registry", "routes", "fees", "priority", "risk"] {
        let path = format!("config/examples/rules/{f}.toml");
        assert!(quoted.contains(&path), "the README quotes {path}");
    }
    for path in ["config/examples/cup/switch.toml", "config/examples/cup/terminal-keys.toml"] {
        assert!(quoted.iter().any(|q| q == path), "the README quotes {path}");
    }
    assert!(configs >= 1, "the configuration example of `Running the switch` is checked");
    // The example estates' own files are valid configurations too.
    for path in ["config/examples/switch.toml", "config/examples/cup/switch.toml"] {
        let text = std::fs::read_to_string(root.join(path)).unwrap();
        Config::parse(path, &text).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_shell_block_is_run_here_or_says_why_not() {
    let run_here: [&[&str]; 3] = [
        &["cargo run --release -- demo"],
        &["config/examples/switch.toml", "sim-terminal"],
        &["--scenario cup-day"],
    ];
    for b in blocks().iter().filter(|b| b.lang == "sh") {
        let ran = run_here.iter().filter(|n| n.iter().all(|x| b.text.contains(x))).count();
        let transcript = b.text.starts_with("$ ");
        let skipped: Vec<&str> =
            NOT_RUN.iter().filter(|(needle, _)| b.text.contains(needle)).map(|(_, why)| *why).collect();
        assert_eq!(
            usize::from(transcript) + ran + skipped.len(),
            1,
            "README.md:{}: a shell block must be run by tests/readme.rs or listed in NOT_RUN with its reason",
            b.line
        );
    }
    for needle in NOT_RUN {
        assert!(README.contains(needle.0), "NOT_RUN names a block the README no longer has: {}", needle.0);
    }
}

/// A scratch copy of `config/` with free ports, a `PATH` holding `isoswitch`, and the
/// processes the commands started in the background. Dropping it kills what is left.
struct Estate {
    dir: PathBuf,
    ports: Vec<(&'static str, String)>,
    path: String,
    background: Vec<(String, Child)>,
    stopped: Vec<(String, Output)>,
}

impl Estate {
    fn new(name: &str) -> Estate {
        let dir = std::env::temp_dir().join(format!("isoswitch-readme-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_isoswitch"), dir.join("bin/isoswitch")).unwrap();
        // Held until all are chosen, so that the three differ.
        let held: Vec<TcpListener> =
            ADDRS.iter().map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports = ADDRS
            .iter()
            .zip(&held)
            .map(|(a, l)| (*a, l.local_addr().unwrap().to_string()))
            .collect::<Vec<_>>();
        drop(held);
        let e = Estate {
            path: format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default()),
            dir,
            ports,
            background: Vec::new(),
            stopped: Vec::new(),
        };
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
        e.copy_config(&src, &e.dir.join("config"));
        e
    }

    /// Copy with the ports swapped, each file mode 0644 as a fresh clone has it.
    fn copy_config(&self, from: &Path, to: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                self.copy_config(&entry.path(), &target);
            } else if entry.file_name().to_string_lossy().ends_with(".toml") {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                std::fs::write(&target, self.ports(&text)).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }

    fn ports(&self, text: &str) -> String {
        self.ports.iter().fold(text.to_string(), |t, (from, to)| t.replace(from, to))
    }

    fn port_of(&self, readme_addr: &str) -> &str {
        &self.ports.iter().find(|(a, _)| *a == readme_addr).unwrap().1
    }

    fn bash(&self, cmd: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c").arg(cmd).current_dir(&self.dir).env("PATH", &self.path).env("RUST_LOG", "info");
        c
    }

    /// Run one README line; foreground lines give their output.
    fn run(&mut self, line: &str) -> Option<Output> {
        let line = self.ports(line);
        if line.starts_with("kill ") {
            self.stop_all();
            return None;
        }
        if let Some(cmd) = line.strip_suffix('&') {
            let n = self.background.len();
            let out = std::fs::File::create(self.dir.join(format!("bg{n}.out"))).unwrap();
            let err = std::fs::File::create(self.dir.join(format!("bg{n}.err"))).unwrap();
            let child = self
                .bash(&format!("exec {}", cmd.trim()))
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("`{cmd}`: {e}"));
            self.background.push((cmd.trim().to_string(), child));
            self.wait_ready(n);
            return None;
        }
        let mut child = self
            .bash(&line)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("`{line}`: {e}"));
        let out = wait_bounded(&mut child, Duration::from_secs(90), &line);
        Some(out)
    }

    /// Until background process `n` serves: the simulated issuer accepts, the switch's
    /// `/ready` answers 200 (its listener is up and every issuer has a link).
    fn wait_ready(&mut self, n: usize) {
        let cmd = self.background[n].0.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = if cmd.contains("sim-issuer") {
                let addr = cmd.split_whitespace().skip_while(|w| *w != "--listen").nth(1).unwrap();
                TcpStream::connect(addr).is_ok()
            } else if cmd.contains(" run ") {
                http_status(self.port_of("127.0.0.1:9583"), "/ready") == Some(200)
            } else {
                panic!("README: a background command this test does not know how to wait for: {cmd}");
            };
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.background[n].1.try_wait() {
                let err = std::fs::read_to_string(self.dir.join(format!("bg{n}.err"))).unwrap_or_default();
                panic!("`{cmd}` exited ({status}) before it served:\n{err}");
            }
            assert!(Instant::now() < deadline, "`{cmd}` did not serve within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM every background process, newest first, and keep what each printed.
    fn stop_all(&mut self) {
        while let Some((cmd, mut child)) = self.background.pop() {
            let n = self.background.len();
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let status = wait_bounded_status(&mut child, Duration::from_secs(15), &cmd);
            let read = |ext: &str| std::fs::read(self.dir.join(format!("bg{n}.{ext}"))).unwrap_or_default();
            self.stopped.push((cmd, Output { status, stdout: read("out"), stderr: read("err") }));
        }
    }

    fn stopped(&self, needle: &str) -> &Output {
        &self.stopped.iter().find(|(c, _)| c.contains(needle)).unwrap_or_else(|| panic!("no {needle}")).1
    }
}

impl Drop for Estate {
    fn drop(&mut self) {
        for (_, child) in &mut self.background {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_bounded_status(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("`{what}` did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for a foreground command, reading its pipes on threads so it never blocks on them.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> Output {
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = pipe(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = pipe(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = wait_bounded_status(child, limit, what);
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run a block's lines in order; the output of the line containing `keep`, and every line
/// that ran in the foreground must exit 0 (the caller checks `keep`'s own status).
fn run_block(e: &mut Estate, block: &Block, keep: &[&str]) -> Vec<(String, Output)> {
    let mut kept = Vec::new();
    for line in commands(&block.text) {
        let Some(out) = e.run(&line) else { continue };
        if let Some(k) = keep.iter().find(|k| line.contains(**k)) {
            kept.push((k.to_string(), out));
        } else {
            assert!(out.status.success(), "`{line}` failed: {}{}", text(&out.stdout), text(&out.stderr));
        }
    }
    assert!(e.background.is_empty(), "README.md:{}: the block stops what it started", block.line);
    kept
}

#[test]
fn the_example_estate_runs_as_written() {
    let block = sh_block(&["config/examples/switch.toml", "sim-terminal"]);
    let mut e = Estate::new("estate");
    let kept = run_block(&mut e, &block, &["sim-terminal", "isoswitch settle"]);
    let (_, sim) = kept.iter().find(|(k, _)| k == "sim-terminal").expect("the block runs sim-terminal");
    let out = text(&sim.stdout);
    assert!(sim.status.success(), "sim-terminal failed:\n{out}{}", text(&sim.stderr));
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!((report["sent"].as_u64(), report["received"].as_u64()), (Some(500), Some(500)), "{out}");
    assert_eq!((report["mismatches"].as_u64(), report["errors"].as_u64()), (Some(0), Some(0)), "{out}");
    let rc = report["rc"].as_object().unwrap();
    for code in rc.keys() {
        // 00 and the simulated issuer's own declines (by amount: 51, 05; by card: 14).
        assert!(["00", "51", "05", "14"].contains(&code.as_str()), "rc {code} came from the switch: {out}");
    }
    assert!(rc["00"].as_u64().unwrap() > 400, "{out}");

    // The simulated issuer answered everything it got: every request but the echo tests.
    let issuer = text(&e.stopped("sim-issuer").stdout);
    let count = |word: &str| -> u64 {
        let w: Vec<&str> = issuer.split_whitespace().collect();
        w.iter().position(|x| *x == word).and_then(|i| w.get(i + 1)).and_then(|n| n.parse().ok()).unwrap()
    };
    let (received, answered) = (count("received"), count("answered"));
    assert_eq!(received, answered, "{issuer}");
    assert!(
        (450..500).contains(&received),
        "financial requests reach the issuer, echo tests do not: {issuer}"
    );
    let switch = e.stopped(" run ");
    assert!(!text(&switch.stderr).contains("panicked"), "{}", text(&switch.stderr));

    // Settlement: the header the README shows; the restaurant T+1 at 60 bp, the supermarket
    // T+0 per window at 38 bp on these credit cards (category before card type).
    let (_, settle) = kept.iter().find(|(k, _)| k == "isoswitch settle").expect("the block runs settle");
    let csv = text(&settle.stdout);
    assert!(settle.status.success(), "settle failed: {csv}{}", text(&settle.stderr));
    let readme_csv =
        blocks().into_iter().find(|b| b.lang.is_empty() && b.text.starts_with("merchant_id,")).unwrap();
    assert_eq!(csv.lines().next(), readme_csv.text.lines().next(), "the CSV header the README shows");
    let mut merchants = std::collections::BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let n = |i: usize| f[i].parse::<i64>().unwrap();
        let (count, gross, refunds, fees, net) = (n(3), n(4), n(5), n(6), n(7));
        assert_eq!(net, gross - refunds - fees, "{line}");
        let bp = match (f[0], f[1], f[2]) {
            ("898340158120001", "T1", "day") => 60,
            ("898340154110001", "T0", "00:00-12:00" | "12:00-18:00" | "18:00-24:00") => 38,
            _ => panic!("unexpected settlement line {line}"),
        };
        // Each fee is rounded half-up to the fen: at most half a fen off per transaction.
        assert!((fees * 10_000 - gross * bp).abs() <= count * 5_000, "{line}: not {bp} bp");
        *merchants.entry(f[0].to_string()).or_insert(0) += count;
    }
    assert_eq!(merchants.len(), 2, "both merchants settled: {csv}");
}

#[test]
fn the_unionpay_style_day_runs_as_written() {
    let block = sh_block(&["--scenario cup-day"]);
    let mut e = Estate::new("cup");
    let kept = run_block(&mut e, &block, &["sim-terminal"]);
    let (_, day) = &kept[0];
    let out = text(&day.stdout);
    assert!(day.status.success(), "the day failed:\n{out}{}", text(&day.stderr));
    assert!(out.contains("settlement: balanced"), "{out}");
    let steps: Vec<&str> = out.lines().filter(|l| l.contains(" trace ")).collect();
    assert!(steps.len() >= 15 && steps.iter().all(|l| l.ends_with(" ok")), "{out}");
    assert!(e.stopped(" run ").status.success(), "the switch stops cleanly on SIGTERM");
}

#[test]
fn a_key_file_as_a_checkout_leaves_it_is_refused_with_the_command_that_fixes_it() {
    let mut e = Estate::new("cup-mode");
    let out = e.run("isoswitch run --config config/examples/cup/switch.toml").unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("run `chmod 600 config/examples/cup/terminal-keys.toml`"), "{err}");
    // The README says the same, and its block runs that command before the switch.
    assert!(README.contains("run `chmod 600 config/examples/cup/terminal-keys.toml`"));
    let block = sh_block(&["--scenario cup-day"]);
    let lines = commands(&block.text);
    let chmod = lines.iter().position(|l| l == "chmod 600 config/examples/cup/terminal-keys.toml");
    let run = lines.iter().position(|l| l.contains("isoswitch run --config config/examples/cup/switch.toml"));
    assert!(chmod.is_some() && chmod < run, "{lines:?}");
}

#[test]
fn the_quick_start_runs_as_written() {
    let block = sh_block(&["cargo run --release -- demo"]);
    let mut e = Estate::new("quick");
    let mut ran = 0;
    for line in commands(&block.text) {
        if line.starts_with("cargo test") {
            continue; // the suite this test is part of
        }
        let line = line.replace("cargo run --release -- ", "isoswitch ");
        assert!(line.starts_with("isoswitch "), "a quick-start line this test does not know: {line}");
        let out = e.run(&line).unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "`{line}`: {stdout}{}", text(&out.stderr));
        assert!(stdout.contains("merchant settlement for") && stdout.contains("SIMMERCHANT0001"), "{stdout}");
        ran += 1;
    }
    assert_eq!(ran, 1);
}

#[test]
fn the_transcripts_print_what_the_readme_shows() {
    let mut e = Estate::new("transcripts");
    let mut checked = 0;
    for b in blocks().iter().filter(|b| b.lang == "sh" && b.text.starts_with("$ ")) {
        // `$ command` (with `\` continuations), then the lines it prints.
        let mut steps: Vec<(String, Vec<String>)> = Vec::new();
        let mut continued = false;
        for line in b.text.lines() {
            if let Some(cmd) = line.strip_prefix("$ ") {
                steps.push((cmd.trim_end_matches('\\').to_string(), Vec::new()));
            } else if continued {
                steps.last_mut().unwrap().0.push_str(line.trim_end_matches('\\'));
            } else {
                steps.last_mut().unwrap().1.push(line.to_string());
            }
            continued = line.ends_with('\\');
        }
        for (cmd, want) in steps {
            let out = e.run(&cmd).unwrap();
            assert!(out.status.success(), "README.md:{}: `{cmd}`: {}", b.line, text(&out.stderr));
            let got: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
            assert_eq!(got, want, "README.md:{}: `{cmd}`", b.line);
            checked += 1;
        }
    }
    assert!(checked >= 2, "the encode and decode transcript");
}
