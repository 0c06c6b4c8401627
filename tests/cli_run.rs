//! `isoswitch run` as a process: a bad configuration file is refused at start with the
//! file, line and key named and a non-zero exit status; a second switch on the in-doubt
//! directory of a running one is refused the same way. A running switch has turned
//! transparent huge pages off for itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_bad_config_file_is_refused_with_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("isoswitch-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "metrics = \"127.0.0.1:0\"\n\n[[listener]]\naddr = \"127.0.0.1:0\"\nmax_conections = 5\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_isoswitch")).args(["run", "--config"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5:", file.display())), "{err}");
    assert!(err.contains("max_conections"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two switches on one SQLite journal share its in-doubt directory: the second would
/// reconcile, and so reverse, the first one's requests in flight. It is refused at start
/// with the directory named; the first keeps running.
#[test]
fn a_second_switch_on_the_same_indoubt_directory_is_refused() {
    let dir = std::env::temp_dir().join(format!("isoswitch-cli-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("journal.db");
    let run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_isoswitch"));
        c.args(["run", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--journal"])
            .arg(&journal)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let mut first = run().stderr(Stdio::null()).spawn().unwrap();
    let lock = dir.join("journal.db.indoubt").join(".lock");
    let start = Instant::now();
    while !lock.exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lock.exists(), "the first switch never took its in-doubt directory");
    // The lock file exists a moment before it is locked: give the first switch time to
    // finish starting.
    std::thread::sleep(Duration::from_millis(500));
    let mut second = run().spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let still_running = first.try_wait().unwrap().is_none();
    // The switch turns transparent huge pages off for itself (see main.rs): a running
    // switch's status says so.
    let status_file = std::fs::read_to_string(format!("/proc/{}/status", first.id())).unwrap_or_default();
    let _ = first.kill();
    let _ = first.wait();
    let Some(status) = status else {
        let _ = second.kill();
        let _ = second.wait();
        panic!("the second switch started on the first one's in-doubt directory");
    };
    let out = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success());
    assert!(err.contains(&lock.display().to_string()), "{err}");
    assert!(err.contains("in use by another running switch"), "{err}");
    assert!(still_running, "the first switch stopped");
    // (Kernels before 5.0 do not show the flag.)
    if let Some(thp) = status_file.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(
            thp.split_whitespace().nth(1),
            Some("0"),
            "the switch runs with transparent huge pages on"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
