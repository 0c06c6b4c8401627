//! Fuzz target: `FrameCodec` decoding arbitrary bytes with every `FrameConfig` variant
//! (picked by the first input byte) never panics, consumes exactly what the frames it hands
//! out add up to, and re-encoding each frame reproduces the bytes it came from.
#![no_main]

use bytes::BytesMut;
use isoswitch::frame::{FrameCodec, LengthHeader};
use tokio_util::codec::{Decoder, Encoder};

#[path = "../common/frame_config.rs"]
mod frame_config;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let cfg = frame_config::config(pick);
    let mut codec = FrameCodec::new(cfg);
    let mut src = BytesMut::from(rest);
    let mut consumed = 0usize;
    // Each frame consumes at least the length header, so this ends; bounded all the same.
    for _ in 0..=rest.len() {
        let before = src.len();
        match codec.decode(&mut src) {
            Ok(Some(frame)) => {
                let used = before - src.len();
                let hl = match cfg.length {
                    LengthHeader::Binary2 | LengthHeader::Bcd2 => 2,
                    LengthHeader::Ascii4 => 4,
                };
                let tpdu_len = if frame.tpdu.is_some() { 5 } else { 0 };
                assert_eq!(frame.tpdu.is_some(), cfg.tpdu);
                assert_eq!(frame.header.len(), cfg.header_len);
                assert_eq!(used, hl + tpdu_len + frame.header.len() + frame.body.len());
                assert!(used - hl <= cfg.max_frame);
                let mut again = BytesMut::new();
                codec.encode(frame, &mut again).expect("a decoded frame encodes");
                assert_eq!(&again[..], &rest[consumed..consumed + used]);
                consumed += used;
            }
            Ok(None) => {
                assert_eq!(src.len(), before, "a partial frame is left in place");
                break;
            }
            Err(_) => break,
        }
    }
});
