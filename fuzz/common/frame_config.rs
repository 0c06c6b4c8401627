//! The `FrameConfig` a frame fuzz input's first byte selects: every length header, with
//! and without a counted header, plain, TPDU + 6-byte header and TPDU alone, and a large
//! and a small maximum. Shared by the frame target and the corpus seeder.

use isoswitch::frame::{FrameConfig, LengthHeader};

/// Distinct configurations; `config(pick)` repeats with period `VARIANTS`.
#[allow(dead_code)]
pub const VARIANTS: u8 = 36;

pub fn config(pick: u8) -> FrameConfig {
    let length = match pick % 3 {
        0 => LengthHeader::Binary2,
        1 => LengthHeader::Bcd2,
        _ => LengthHeader::Ascii4,
    };
    let (tpdu, header_len) = match (pick / 3) % 3 {
        0 => (false, 0),
        1 => (true, 6),
        _ => (true, 0),
    };
    let max_frame = if (pick / 9).is_multiple_of(2) { 8192 } else { 64 };
    let length_includes_header = (pick / 18) % 2 == 1;
    FrameConfig { length, length_includes_header, tpdu, header_len, max_frame }
}
