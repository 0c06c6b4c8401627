//! `isoswitch decode` / `isoswitch encode` as a user runs them: hex lines in, JSON lines
//! out and back; a bad line gets an error object naming field and offset, the tool
//! carries on, and the exit status says a line failed.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn run(args: &[&str], input: &str) -> (i32, Vec<String>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start isoswitch");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    (out.status.code().unwrap_or(-1), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn vectors(name: &str, n: usize) -> Vec<Value> {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap().lines().take(n).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn decode_then_encode_gives_the_bytes_back() {
    let vs = vectors("valid_spec87ascii.jsonl", 40);
    let input: String = vs.iter().map(|v| format!("{}\n", v["hex"].as_str().unwrap())).collect();
    let (code, lines, _) = run(&["decode", "--spec", "iso87ascii"], &input);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), vs.len());
    for (line, v) in lines.iter().zip(&vs) {
        let j: Value = serde_json::from_str(line).unwrap();
        assert_eq!(j["mti"], v["fields"]["t"]);
        for (k, val) in v["fields"].as_object().unwrap() {
            if k != "t" && k != "p" && k != "1" {
                assert_eq!(&j["fields"][k], val, "{} field {k}", v["id"]);
            }
        }
    }
    let (code, hex, _) = run(&["encode", "--spec", "iso87ascii"], &(lines.join("\n") + "\n"));
    assert_eq!(code, 0);
    for (h, v) in hex.iter().zip(&vs) {
        assert_eq!(h, v["hex"].as_str().unwrap());
    }
}

#[test]
fn a_bad_line_is_reported_and_the_rest_still_decode() {
    let good = vectors("valid_spec87ascii.jsonl", 1)[0]["hex"].as_str().unwrap().to_string();
    // 0200, then a bitmap announcing field 2 with a non-numeric length prefix "X9".
    let bad = "30323030".to_string() + &hex::encode("4000000000000000") + "5839";
    let input = format!("{good}\n{bad}\nzz\n{good}\n");
    let (code, lines, _) = run(&["decode", "--spec", "iso87ascii"], &input);
    assert_eq!(code, 1, "exit status must say a line failed");
    assert_eq!(lines.len(), 4);
    let e: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(e["field"], 2);
    assert_eq!(e["offset"], 20);
    assert!(e["error"].as_str().unwrap().contains("field 2"));
    let e: Value = serde_json::from_str(&lines[2]).unwrap();
    assert!(e["error"].as_str().unwrap().contains("not hex"));
    assert_eq!(
        (e["field"].clone(), e["part"].clone(), e["offset"].clone()),
        (0.into(), "hex".into(), 0.into())
    );
    assert!(serde_json::from_str::<Value>(&lines[3]).unwrap()["mti"].is_string());
}

/// Output line N answers input line N: an empty line, a line that is not hex, an odd
/// count of digits and a line that is not UTF-8 each get their error object in place.
#[test]
fn every_input_line_gets_exactly_one_output_line() {
    let good = vectors("valid_spec87ascii.jsonl", 1)[0]["hex"].as_str().unwrap().to_string();
    let mut input = format!("{good}\n\n3032zz30\n303\n   \n").into_bytes();
    input.extend_from_slice(b"30\xff31\n");
    input.extend_from_slice(format!("{good}\n").as_bytes());
    let mut child = Command::new(env!("CARGO_BIN_EXE_isoswitch"))
        .args(["decode", "--spec", "iso87ascii"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start isoswitch");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(lines[0]["mti"].is_string() && lines[6]["mti"].is_string());
    // (line, offset of the first bad character, words in the error)
    for (i, offset, words) in
        [(1, 0, "empty"), (2, 4, "'z'"), (3, 3, "odd"), (4, 0, "empty"), (5, 2, "UTF-8")]
    {
        let e = &lines[i];
        assert_eq!(e["field"], 0, "line {i}: {e}");
        assert_eq!(e["part"], "hex", "line {i}: {e}");
        assert_eq!(e["offset"], offset, "line {i}: {e}");
        assert!(e["error"].as_str().unwrap().contains(words), "line {i}: {e}");
    }
}

#[test]
fn encode_answers_an_empty_line_in_place() {
    let input = "{\"mti\":\"0800\",\"fields\":{\"11\":\"000001\"}}\n\n{\"mti\":\"0800\",\"fields\":{\"11\":\"000002\"}}\n";
    let (code, lines, _) = run(&["encode", "--spec", "iso87ascii"], input);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let e: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        (e["field"].clone(), e["part"].clone(), e["offset"].clone()),
        (0.into(), "json".into(), 0.into())
    );
    assert!(lines[0].starts_with("30383030") && lines[2].starts_with("30383030"), "{lines:?}");
}

#[test]
fn mask_hides_the_pan_and_tlv_lists_emv_tags() {
    let input = r#"{"mti":"0200","fields":{"2":"4761739001010010","3":"000000","4":"000000001000","11":"000001","55":"9F2608AABBCCDDEEFF00119F270180"}}"#;
    let (code, hex, err) = run(&["encode", "--spec", "iso87binbitmap"], &format!("{input}\n"));
    assert_eq!(code, 0, "{err}");
    let (code, lines, _) =
        run(&["decode", "--spec", "iso87binbitmap", "--mask", "--tlv"], &format!("{}\n", hex[0]));
    assert_eq!(code, 0);
    assert!(!lines[0].contains("4761739001010010"), "{}", lines[0]);
    let j: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(j["fields"]["2"], "476173******0010");
    assert_eq!(j["tlv"]["55"][0]["tag"], "9F26");
    assert_eq!(j["tlv"]["55"][1]["value"], "80");
    // The ASCII layout carries field 55 as hex text; the tags come out the same.
    let (_, hex, _) = run(&["encode", "--spec", "iso87ascii"], &format!("{input}\n"));
    let (_, lines, _) = run(&["decode", "--spec", "iso87ascii", "--tlv"], &format!("{}\n", hex[0]));
    let j: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(j["tlv"]["55"][0]["tag"], "9F26");
}

#[test]
fn encode_refuses_bad_values_naming_the_field() {
    let input = "{\"mti\":\"0200\",\"fields\":{\"4\":\"12A\"}}\nnot json\n";
    let (code, lines, _) = run(&["encode", "--spec", "iso87ascii"], input);
    assert_eq!(code, 1);
    let e: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(e["field"], 4);
    let e: Value = serde_json::from_str(&lines[1]).unwrap();
    assert!(e["error"].as_str().unwrap().contains("not JSON"));
    assert_eq!(e["part"], "json");
}

#[test]
fn unknown_spec_is_a_clear_error() {
    let (code, _, err) = run(&["decode", "--spec", "nosuchspec"], "");
    assert_eq!(code, 2);
    assert!(err.contains("nosuchspec") && err.contains("iso87ascii"), "{err}");
}
