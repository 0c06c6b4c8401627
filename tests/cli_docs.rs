//! `isoswitch completions SHELL` and `isoswitch man`: what a packager installs. The bash
//! script is run by bash and completes the real subcommands and flags; the manual pages
//! are roff naming every command, and a page per command is written on request.

use std::process::{Command, Output};

const COMMANDS: [&str; 10] = [
    "decode",
    "encode",
    "settle",
    "run",
    "demo",
    "sim-issuer",
    "sim-terminal",
    "completions",
    "man",
    "journal",
];

fn isoswitch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isoswitch")).args(args).output().expect("run isoswitch")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).expect("UTF-8")
}

/// What bash completes for `words` (the cursor at the end of the last one).
fn complete(script: &str, words: &[&str]) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("isoswitch-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("isoswitch.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         _isoswitch isoswitch '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash").args(["--norc", "--noprofile", "-c", &program]).output().expect("bash");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_completes_the_subcommands_and_their_flags() {
    let script = stdout(&isoswitch(&["completions", "bash"]));
    assert!(script.contains("complete -F _isoswitch"), "a bash completion script");
    for c in COMMANDS {
        assert!(script.contains(c), "the script knows `{c}`");
    }
    let first = complete(&script, &["isoswitch", ""]);
    for c in COMMANDS {
        assert!(first.iter().any(|w| w == c), "`isoswitch <TAB>` offers {c}: {first:?}");
    }
    let s = complete(&script, &["isoswitch", "si"]);
    assert_eq!(s, ["sim-issuer", "sim-terminal"], "`isoswitch si<TAB>`");
    let run = complete(&script, &["isoswitch", "run", "--"]);
    for flag in ["--config", "--listen", "--metrics", "--journal", "--log-format"] {
        assert!(run.iter().any(|w| w == flag), "`isoswitch run --<TAB>` offers {flag}: {run:?}");
    }
    assert!(!run.iter().any(|w| w == "--connections"), "sim-terminal's flags are not run's: {run:?}");
}

#[test]
fn other_shells_get_their_scripts_and_an_unknown_shell_is_named() {
    assert!(stdout(&isoswitch(&["completions", "zsh"])).starts_with("#compdef isoswitch"));
    assert!(stdout(&isoswitch(&["completions", "fish"])).contains("complete -c isoswitch"));
    let bad = isoswitch(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "names the value and the choices: {err}");
}

#[test]
fn the_man_page_is_roff_naming_every_command() {
    let page = stdout(&isoswitch(&["man"]));
    assert!(page.contains(".TH isoswitch 1"), "a section 1 page: {page}");
    assert!(page.contains(&format!("isoswitch {}", env!("CARGO_PKG_VERSION"))), "names the version");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "{section}");
    }
    for c in COMMANDS {
        // roff escapes the hyphens of the page names.
        let reference = format!("isoswitch\\-{}(1)", c.replace('-', "\\-"));
        assert!(page.contains(&reference), "SUBCOMMANDS refers to {reference}");
    }

    let run = stdout(&isoswitch(&["man", "run"]));
    assert!(run.contains(".TH isoswitch-run 1"), "{run}");
    for text in ["\\-\\-config", "\\-\\-log\\-format", "SIGHUP", "NOTIFY_SOCKET", "/ready"] {
        assert!(run.contains(text), "isoswitch-run(1) mentions {text}");
    }

    let bad = isoswitch(&["man", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("`nope`") && err.contains("sim-terminal"),
        "names the command and the choices: {err}"
    );
}

#[test]
fn every_page_is_written_into_a_directory() {
    let dir = std::env::temp_dir().join(format!("isoswitch-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = stdout(&isoswitch(&["man", "--out-dir", dir.to_str().unwrap()]));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = COMMANDS.iter().map(|c| format!("isoswitch-{c}.1")).collect();
    expected.push("isoswitch.1".into());
    expected.sort();
    assert_eq!(files, expected);
    for f in &files {
        assert!(out.contains(f.as_str()), "the written paths are listed: {out}");
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(text.contains(&format!(".TH {} 1", f.trim_end_matches(".1"))), "{f} is a page");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
