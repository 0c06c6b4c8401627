//! Inputs kept from fuzzing (`tests/regressions/*.txt`), replayed through the same checks
//! the fuzz targets run (`fuzz/common/checks.rs`). Each file names its fuzz target, gives
//! the input as hex, and says in a `# why:` line what was wrong and where it was fixed,
//! or which boundary of the codec it holds when it is kept without a crash:
//!
//! ```text
//! # why: <one line>
//! target: decode_iso87bcd | roundtrip | frame | tlv
//! hex: 0200...
//! ```

use std::path::PathBuf;

#[path = "../fuzz/common/checks.rs"]
mod checks;

fn unhex(s: &str) -> Vec<u8> {
    isoswitch::cli::hex_to_bytes(s).unwrap_or_else(|i| panic!("bad hex at {i}"))
}

/// Replays one input as the named fuzz target would.
fn replay(target: &str, data: &[u8]) {
    match target {
        "roundtrip" => {
            if let Some((&pick, rest)) = data.split_first() {
                checks::round_trip(checks::SPECS[usize::from(pick) % checks::SPECS.len()], rest);
            }
        }
        "frame" => checks::frame(data),
        "tlv" => checks::tlv(data),
        other => {
            let spec = other
                .strip_prefix("decode_")
                .unwrap_or_else(|| panic!("unknown target {other}"))
                .replace('_', "-");
            assert!(checks::SPECS.contains(&spec.as_str()), "unknown spec {spec}");
            checks::decode_and_read(&spec, data);
            // A decode input is held to the round-trip property as well.
            checks::round_trip(&spec, data);
        }
    }
}

#[test]
fn kept_fuzz_inputs_replay_cleanly() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no regression inputs in {}", dir.display());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{}: no `{key}` line", file.display()))
                .to_string()
        };
        assert!(!field("# why:").is_empty(), "{}: empty why", file.display());
        let target = field("target:");
        let data = unhex(&field("hex:"));
        replay(&target, &data);
    }
}

/// An unknown target name is refused rather than skipped.
#[test]
#[should_panic(expected = "unknown target")]
fn an_unknown_target_is_an_error() {
    replay("nonsense", b"");
}
