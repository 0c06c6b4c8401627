//! `isoswitch decode` and `isoswitch encode`: hex lines in, JSON lines out, and back.
//! Output line N always answers input line N (an empty line too), so a caller can zip
//! the two streams: a bad line yields `{"error": "...", "field": N, "part": "...",
//! "offset": K}` on its own output line and the tool carries on; the exit status is 1 if
//! any line failed.
//! May import: crate::iso.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use clap::Args;
use serde_json::{Value, json};

use crate::iso::{Message, Spec, json as mjson, tlv};

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// Spec name (iso87ascii, iso87binbitmap, iso87bcd, iso93ascii, cup-pos) or a spec file.
    #[arg(long, default_value = "iso87ascii")]
    pub spec: String,
    /// Mask sensitive fields (PAN, track data, PIN block) in the output.
    #[arg(long)]
    pub mask: bool,
    /// Also list the EMV tags of field 55 under "tlv".
    #[arg(long)]
    pub tlv: bool,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// Spec name or spec file.
    #[arg(long, default_value = "iso87ascii")]
    pub spec: String,
}

fn load_spec(name: &str) -> Result<Arc<Spec>, ExitCode> {
    Spec::load(name).map_err(|e| {
        eprintln!("isoswitch: spec: {e}");
        ExitCode::from(2)
    })
}

/// Why a line is not a message before any field is read: field 0, part `hex` (decode) or
/// `json` (encode), offset in characters of the line.
fn line_error(msg: &str, part: &str, offset: usize) -> String {
    error_line(msg, Some(0), Some(part.to_string()), Some(offset))
}

/// Why `line` is not hex: the first character that is not a hex digit (its offset in
/// characters), else an odd count of digits (offset: the line's length).
fn hex_problem(line: &str) -> (String, usize) {
    match line.char_indices().enumerate().find(|(_, (_, c))| !c.is_ascii_hexdigit()) {
        Some((at, (_, c))) if c.is_ascii_graphic() => {
            (format!("line is not hex: '{c}' is not a hex digit"), at)
        }
        Some((at, _)) => ("line is not hex: a character is not a hex digit".to_string(), at),
        None => ("line is not hex: odd number of hex digits".to_string(), line.chars().count()),
    }
}

fn error_line(msg: &str, field: Option<u16>, part: Option<String>, offset: Option<usize>) -> String {
    let mut v = json!({"error": msg, "field": field, "offset": offset});
    if let Some(p) = part {
        v["part"] = Value::String(p);
    }
    v.to_string()
}

/// Decode one hex line into its output line; `Err` holds the error line.
pub fn decode_line(spec: &Arc<Spec>, line: &str, mask: bool, with_tlv: bool) -> Result<String, String> {
    if line.is_empty() {
        return Err(line_error("empty line: no message", "hex", 0));
    }
    let bytes = hex_to_bytes(line).map_err(|_| {
        let (msg, at) = hex_problem(line);
        line_error(&msg, "hex", at)
    })?;
    let m = Message::decode(spec, Bytes::from(bytes)).map_err(|e| {
        error_line(&e.to_string(), Some(e.part.number()), Some(e.part.to_string()), Some(e.offset))
    })?;
    let mut out = mjson::to_json(&m, mask);
    if with_tlv && let Some(data) = emv_bytes(&m) {
        let items: Value = match tlv::parse(&data) {
            Ok(items) => items
                .iter()
                .map(|t| json!({"tag": format!("{:X}", t.tag), "value": hex::encode_upper(t.value)}))
                .collect(),
            Err(e) => json!({"error": e.to_string()}),
        };
        out.pop();
        out.push_str(",\"tlv\":{\"55\":");
        out.push_str(&items.to_string());
        out.push_str("}}");
    }
    Ok(out)
}

/// Field 55 as bytes: raw when the spec carries it as binary, hex-decoded when the spec
/// carries it as text (pyiso8583's ASCII layout).
fn emv_bytes(m: &Message) -> Option<Vec<u8>> {
    let binary = m.spec().field(55).is_some_and(|f| f.class == crate::iso::spec::CharClass::Binary);
    if binary { m.bytes(55).map(|b| b.into_owned()) } else { hex_to_bytes(&m.text(55)?).ok() }
}

pub fn decode(a: DecodeArgs) -> ExitCode {
    let spec = match load_spec(&a.spec) {
        Ok(s) => s,
        Err(c) => return c,
    };
    run_lines("hex", |line| decode_line(&spec, line, a.mask, a.tlv))
}

/// Encode one JSON line into a hex line; `Err` holds the error line.
pub fn encode_line(spec: &Arc<Spec>, line: &str) -> Result<String, String> {
    if line.is_empty() {
        return Err(line_error("empty line: no message", "json", 0));
    }
    let v: Value = serde_json::from_str(line)
        .map_err(|e| line_error(&format!("line is not JSON: {e}"), "json", e.column().saturating_sub(1)))?;
    let m = mjson::from_json(spec, &v)
        .map_err(|e| error_line(&e.to_string(), Some(e.part.number()), Some(e.part.to_string()), None))?;
    let mut out = BytesMut::new();
    m.encode(&mut out)
        .map_err(|e| error_line(&e.to_string(), Some(e.part.number()), Some(e.part.to_string()), None))?;
    Ok(hex_lower(&out))
}

pub fn encode(a: EncodeArgs) -> ExitCode {
    let spec = match load_spec(&a.spec) {
        Ok(s) => s,
        Err(c) => return c,
    };
    run_lines("json", |line| encode_line(&spec, line))
}

fn run_lines(part: &str, mut f: impl FnMut(&str) -> Result<String, String>) -> ExitCode {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut input = stdin.lock();
    let mut out = BufWriter::new(stdout.lock());
    let mut failed = false;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match input.read_until(b'\n', &mut raw) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("isoswitch: reading stdin: {e}");
                failed = true;
                break;
            }
        }
        // Every input line is answered, an empty or non-UTF-8 one too (by an error
        // object): skipping one would shift every later answer off its question.
        let answer = match std::str::from_utf8(&raw) {
            Ok(line) => f(line.trim()),
            Err(e) => {
                let at =
                    String::from_utf8_lossy(raw.get(..e.valid_up_to()).unwrap_or_default()).chars().count();
                Err(line_error("line is not UTF-8 text", part, at))
            }
        };
        let text = answer.unwrap_or_else(|err| {
            failed = true;
            err
        });
        if writeln!(out, "{text}").is_err() {
            return ExitCode::from(1);
        }
    }
    if out.flush().is_err() || failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// Hex text to bytes; `Err` holds the offset (in characters) of the first bad character.
/// An odd count of digits is bad at the end (offset: the length).
pub fn hex_to_bytes(s: &str) -> Result<Vec<u8>, usize> {
    hex::decode(s).map_err(|e| match e {
        // The index is in bytes; before it every byte is an ASCII hex digit, one character each.
        hex::FromHexError::InvalidHexCharacter { index, .. } => index,
        hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => s.len(),
    })
}

/// Lower-case hex, as `encode` writes its lines.
pub fn hex_lower(b: &[u8]) -> String {
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lines_and_the_offset_of_what_is_wrong() {
        assert_eq!(hex_to_bytes("00aBff"), Ok(vec![0x00, 0xAB, 0xFF]));
        assert_eq!(hex_to_bytes(""), Ok(vec![]));
        assert_eq!(hex_to_bytes("3032zz30"), Err(4));
        assert_eq!(hex_to_bytes("303x"), Err(3));
        assert_eq!(hex_to_bytes("303"), Err(3));
        assert_eq!(hex_to_bytes("+f"), Err(0));
        assert_eq!(hex_lower(&[0xAB, 0x01]), "ab01");
        assert_eq!(hex_problem("30g1"), ("line is not hex: 'g' is not a hex digit".to_string(), 2));
    }
}
