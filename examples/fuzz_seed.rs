//! Writes the fuzz corpora (`fuzz/corpus/<target>/`) from the conformance vectors in
//! `tests/vectors/*.jsonl`, so that seeding is one reproducible command:
//! `cargo run --example fuzz_seed` (what `fuzz/seed.sh` runs). File names are the vector
//! ids, so running it twice writes the same files. Messages for the specs the vectors do
//! not cover (`iso93ascii`, `cup-pos`) are rebuilt field by field from the others.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use isoswitch::frame::FrameCodec;
use isoswitch::iso::{Message, Spec, spec::shipped, tlv};
use tokio_util::codec::Encoder;

#[path = "../fuzz/common/frame_config.rs"]
mod frame_config;

const SPECS: [&str; 5] = ["iso87ascii", "iso87binbitmap", "iso87bcd", "iso93ascii", "cup-pos"];

fn target_of(spec: &str) -> String {
    format!("decode_{}", spec.replace('-', "_"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("fuzz/corpus");
    let specs: BTreeMap<&str, Arc<Spec>> =
        SPECS.iter().map(|n| (*n, shipped(n).expect("shipped spec"))).collect();

    // (spec name, id, bytes) of every vector, valid or not.
    let mut vectors: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(root.join("tests/vectors"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for file in files {
        for line in fs::read_to_string(&file)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let spec = match v["spec"].as_str().unwrap_or_default() {
                "spec87ascii" | "jpos87a" => "iso87ascii",
                "spec87binary" => "iso87binbitmap",
                "jpos87b" => "iso87bcd",
                _ => continue,
            };
            let Ok(bytes) = isoswitch::cli::hex_to_bytes(v["hex"].as_str().unwrap_or_default()) else {
                continue;
            };
            vectors.push((spec, v["id"].as_str().unwrap_or("vector").to_string(), bytes));
        }
    }

    // Valid messages carried over to the specs without vectors of their own.
    let mut derived = Vec::new();
    for (spec, id, bytes) in &vectors {
        let Ok(m) = Message::decode(&specs[spec], Bytes::from(bytes.clone())) else { continue };
        for (to, from) in [("iso93ascii", "iso87ascii"), ("cup-pos", "iso87bcd")] {
            if *spec != from {
                continue;
            }
            let Ok(mut out) = Message::new(specs[to].clone(), m.mti()) else { continue };
            for n in m.fields() {
                // A field the target spec defines differently is left out.
                let _ = out.copy_from(&m, n);
            }
            if let Ok(b) = out.to_bytes() {
                derived.push((to, format!("{id}-as-{to}"), b.to_vec()));
            }
        }
    }
    vectors.extend(derived);

    let mut written = BTreeMap::<String, usize>::new();
    let mut put = |target: &str, name: &str, data: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), data)?;
        *written.entry(target.to_string()).or_default() += 1;
        Ok(())
    };

    for (spec, id, bytes) in &vectors {
        put(&target_of(spec), id, bytes)?;
        let pick = SPECS.iter().position(|s| s == spec).unwrap_or(0) as u8;
        let mut rt = vec![pick];
        rt.extend_from_slice(bytes);
        put("roundtrip", id, &rt)?;

        if let Ok(m) = Message::decode(&specs[spec], Bytes::from(bytes.clone()))
            && let Some(v) = m.bytes(55)
        {
            put("tlv", id, &v)?;
        }
    }

    // Frames: a few messages of each spec in every framing variant.
    for pick in 0..frame_config::VARIANTS {
        let mut codec = FrameCodec::new(frame_config::config(pick));
        for (spec, id, bytes) in vectors.iter().filter(|v| v.1.ends_with("0000") || v.1.ends_with("0001")) {
            let mut wire = BytesMut::from(&[pick][..]);
            let header = if codec.config().header_len > 0 {
                Bytes::from_static(&[0x60, 0x31, 0x00, 0x31, 0x00, 0x00])
            } else {
                Bytes::new()
            };
            let frame = isoswitch::frame::Frame { tpdu: None, header, body: Bytes::from(bytes.clone()) };
            // Twice, so that the target sees a frame boundary.
            if codec.encode(frame.clone(), &mut wire).is_ok() && codec.encode(frame, &mut wire).is_ok() {
                put("frame", &format!("{pick:02}-{spec}-{id}"), &wire)?;
            }
        }
    }

    // A hand-built EMV field 55 with a multi-byte tag and a long length.
    let mut emv = BytesMut::new();
    tlv::put(&mut emv, 0x9F26, &[1, 2, 3, 4, 5, 6, 7, 8]);
    tlv::put(&mut emv, 0x82, &[0x19, 0x80]);
    tlv::put(&mut emv, 0xDF8101, &[0xAB; 200]);
    put("tlv", "emv-sample", &emv)?;

    for (target, n) in &written {
        println!("{target}: {n} files");
    }
    Ok(())
}
