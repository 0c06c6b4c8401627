//! The in-doubt log's file format: a segment is a run of records, each the sealed list of
//! the reversible requests of one batch written to an issuer. Pure (no clock, no I/O
//! beyond reading one file in `read_segment`).
//!
//! ```text
//! record  = len: u32 BE | nonce: 12 | AES-256-GCM(entries) ‖ tag: 16     (len = sealed bytes)
//! entries = { stan_len: u8 | terminal STAN (text) | body_len: u32 BE | body (wire bytes) }*
//! ```
//!
//! The associated data is the issuer's name, so a segment moved to another issuer's
//! directory does not open. The nonce is a per-segment random 8-byte prefix and a 4-byte
//! record counter: unique under one key without a random draw per record. The body is the
//! request exactly as written to the issuer (no PAN, track or PIN block is ever in clear:
//! everything after the length and nonce is ciphertext).
//! May import: nothing.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};

/// Bytes before the ciphertext of a record.
pub const HEAD: usize = 4 + NONCE_LEN;
/// The authentication tag.
pub const TAG: usize = 16;
/// A sealed record larger than this is refused on read (a batch is at most 64 KiB of
/// frames plus one frame; this leaves ample room).
pub const MAX_SEALED: usize = 16 * 1024 * 1024;

/// One request read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The terminal's STAN (field 11 as the terminal sent it), as text.
    pub terminal_stan: String,
    /// The request as written to the issuer.
    pub body: Vec<u8>,
}

/// Why a segment could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Not readable at all.
    Io(String),
    /// A complete record did not authenticate: the key is not the one it was sealed with,
    /// or the file was altered. `offset` is the record's position.
    Unsealed { offset: usize },
    /// A record opened but its entries do not parse.
    Malformed { offset: usize },
}

/// Append one entry (a request and its terminal's STAN) to the record being built in
/// `rec` (which starts with room for the head; see `seal`).
pub fn push_entry(rec: &mut Vec<u8>, terminal_stan: &[u8], body: &[u8]) {
    if rec.len() < HEAD {
        rec.resize(HEAD, 0);
    }
    let stan = terminal_stan.get(..terminal_stan.len().min(usize::from(u8::MAX))).unwrap_or(&[]);
    rec.push(stan.len() as u8);
    rec.extend_from_slice(stan);
    rec.extend_from_slice(&(body.len() as u32).to_be_bytes());
    rec.extend_from_slice(body);
}

/// Seal the record built in `rec` in place: the head gets the length and nonce, the
/// entries become ciphertext and the tag is appended (one AES-GCM pass, no copy). False
/// when there is nothing to seal or sealing failed.
pub fn seal(key: &LessSafeKey, issuer: &str, nonce: [u8; NONCE_LEN], rec: &mut Vec<u8>) -> bool {
    if rec.len() <= HEAD {
        return false;
    }
    let sealed_len = (rec.len() - HEAD + TAG) as u32;
    let Some(body) = rec.get_mut(HEAD..) else { return false };
    let Ok(tag) = key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(issuer.as_bytes()),
        body,
    ) else {
        return false;
    };
    rec[..4].copy_from_slice(&sealed_len.to_be_bytes());
    rec[4..HEAD].copy_from_slice(&nonce);
    rec.extend_from_slice(tag.as_ref());
    true
}

/// Every entry of the records in `bytes` (a whole segment). A last record cut short (the
/// process died in the middle of its write) is ignored; so is a last record that does not
/// authenticate after others did (a machine crash can leave zeros at the end of a file).
pub fn open_all(key: &LessSafeKey, issuer: &str, bytes: &[u8]) -> Result<Vec<Entry>, ReadError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut opened = 0usize;
    while at < bytes.len() {
        let Some(head) = bytes.get(at..at + HEAD) else { break };
        let mut len = [0u8; 4];
        len.copy_from_slice(&head[..4]);
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG..=MAX_SEALED).contains(&len) {
            // A length no writer produces: a torn tail (too short for a record, or the zeros a
            // machine crash can leave), else damage.
            let rest = bytes.get(at..).unwrap_or(&[]);
            if rest.len() < HEAD + TAG || opened > 0 && rest.iter().all(|&b| b == 0) {
                break;
            }
            return Err(ReadError::Unsealed { offset: at });
        }
        let Some(sealed) = bytes.get(at + HEAD..at + HEAD + len) else { break };
        let last = at + HEAD + len == bytes.len();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&head[4..]);
        let mut buf = sealed.to_vec();
        let plain = match key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(issuer.as_bytes()),
            &mut buf,
        ) {
            Ok(p) => p,
            Err(_) if last && opened > 0 => break,
            Err(_) => return Err(ReadError::Unsealed { offset: at }),
        };
        parse_entries(plain, &mut out).ok_or(ReadError::Malformed { offset: at })?;
        opened += 1;
        at += HEAD + len;
    }
    Ok(out)
}

fn parse_entries(mut p: &[u8], out: &mut Vec<Entry>) -> Option<()> {
    while let Some((&n, rest)) = p.split_first() {
        let stan = rest.get(..usize::from(n))?;
        let rest = rest.get(usize::from(n)..)?;
        let mut len = [0u8; 4];
        len.copy_from_slice(rest.get(..4)?);
        let len = u32::from_be_bytes(len) as usize;
        let body = rest.get(4..4 + len)?;
        out.push(Entry { terminal_stan: String::from_utf8_lossy(stan).into_owned(), body: body.to_vec() });
        p = rest.get(4 + len..)?;
    }
    Some(())
}

/// Read and open one segment file.
pub fn read_segment(key: &LessSafeKey, issuer: &str, path: &Path) -> Result<Vec<Entry>, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::Io(e.to_string()))?;
    open_all(key, issuer, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::aead::{AES_256_GCM, UnboundKey};

    fn key(b: u8) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[b; 32]).unwrap())
    }

    fn record(k: &LessSafeKey, n: u8, entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut rec = Vec::new();
        for (s, b) in entries {
            push_entry(&mut rec, s.as_bytes(), b);
        }
        assert!(seal(k, "bank", [n; NONCE_LEN], &mut rec));
        rec
    }

    const PAN: &str = "4761739001010119";

    #[test]
    fn records_round_trip_and_hide_the_pan() {
        let k = key(1);
        let body = format!("0200...{PAN}...");
        let mut file = record(&k, 1, &[("000001", body.as_bytes()), ("000002", b"second")]);
        file.extend(record(&k, 2, &[("", b"")]));
        let got = open_all(&k, "bank", &file).unwrap();
        let want = vec![
            Entry { terminal_stan: "000001".into(), body: body.clone().into_bytes() },
            Entry { terminal_stan: "000002".into(), body: b"second".to_vec() },
            Entry { terminal_stan: String::new(), body: Vec::new() },
        ];
        assert_eq!(got, want);
        assert!(!file.windows(PAN.len()).any(|w| w == PAN.as_bytes()), "clear PAN in the segment");
        assert_eq!(open_all(&k, "bank", &[]).unwrap(), vec![]);
    }

    #[test]
    fn a_torn_last_record_is_ignored() {
        let k = key(1);
        let first = record(&k, 1, &[("000001", b"one")]);
        let second = record(&k, 2, &[("000002", b"two")]);
        for cut in 1..second.len() {
            let mut file = first.clone();
            file.extend_from_slice(&second[..cut]);
            let got = open_all(&k, "bank", &file).unwrap();
            assert_eq!(got.len(), 1, "cut at {cut}");
        }
        // Zeros after a record (a machine crash extended the file) are ignored too.
        let mut file = first.clone();
        file.extend_from_slice(&[0u8; 40]);
        assert_eq!(open_all(&k, "bank", &file).unwrap().len(), 1);
    }

    #[test]
    fn a_wrong_key_or_issuer_is_refused_and_damage_is_found() {
        let k = key(1);
        let mut file = record(&k, 1, &[("000001", b"one")]);
        file.extend(record(&k, 2, &[("000002", b"two")]));
        assert_eq!(open_all(&key(2), "bank", &file), Err(ReadError::Unsealed { offset: 0 }));
        assert_eq!(open_all(&k, "other", &file), Err(ReadError::Unsealed { offset: 0 }));
        // A flipped byte in the first of two records is damage, not a torn tail.
        let mut bad = file.clone();
        bad[HEAD + 2] ^= 1;
        assert_eq!(open_all(&k, "bank", &bad), Err(ReadError::Unsealed { offset: 0 }));
    }
}
