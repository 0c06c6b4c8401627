//! `isoswitch run` as a process: a bad configuration file is refused at start with the
//! file, line and key named and a non-zero exit status.

use std::process::Command;

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
