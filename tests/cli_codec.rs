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
    let bad = "30323030".to_string()
        + &"4000000000000000".bytes().map(|b| format!("{b:02x}")).collect::<String>()
        + "5839";
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
    assert!(serde_json::from_str::<Value>(&lines[3]).unwrap()["mti"].is_string());
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
}

#[test]
fn unknown_spec_is_a_clear_error() {
    let (code, _, err) = run(&["decode", "--spec", "nosuchspec"], "");
    assert_eq!(code, 2);
    assert!(err.contains("nosuchspec") && err.contains("iso87ascii"), "{err}");
}
