//! EBCDIC, code page 037, for its printable range: the one table behind EBCDIC length
//! prefixes, MTIs and field values. A byte without a printable ASCII counterpart reads
//! as 0 (which no character class allows); an ASCII byte without an EBCDIC one writes as
//! the EBCDIC space.
//! May import: nothing.

/// EBCDIC (code page 037) to ASCII for the printable range; 0 where there is none.
static TO_ASCII: [u8; 256] = {
    let mut t = [0u8; 256];
    let pairs: &[(u8, u8)] = &[
        (0x40, b' '),
        (0x4B, b'.'),
        (0x4C, b'<'),
        (0x4D, b'('),
        (0x4E, b'+'),
        (0x4F, b'|'),
        (0x50, b'&'),
        (0x5A, b'!'),
        (0x5B, b'$'),
        (0x5C, b'*'),
        (0x5D, b')'),
        (0x5E, b';'),
        (0x5F, b'^'),
        (0x60, b'-'),
        (0x61, b'/'),
        (0x6B, b','),
        (0x6C, b'%'),
        (0x6D, b'_'),
        (0x6E, b'>'),
        (0x6F, b'?'),
        (0x79, b'`'),
        (0x7A, b':'),
        (0x7B, b'#'),
        (0x7C, b'@'),
        (0x7D, b'\''),
        (0x7E, b'='),
        (0x7F, b'"'),
        (0xA1, b'~'),
        (0xBA, b'['),
        (0xBB, b']'),
        (0xC0, b'{'),
        (0xD0, b'}'),
        (0xE0, b'\\'),
    ];
    let mut i = 0;
    while i < pairs.len() {
        t[pairs[i].0 as usize] = pairs[i].1;
        i += 1;
    }
    let mut k = 0;
    while k < 9 {
        t[0x81 + k] = b'a' + k as u8;
        t[0x91 + k] = b'j' + k as u8;
        t[0xC1 + k] = b'A' + k as u8;
        t[0xD1 + k] = b'J' + k as u8;
        k += 1;
    }
    k = 0;
    while k < 8 {
        t[0xA2 + k] = b's' + k as u8;
        t[0xE2 + k] = b'S' + k as u8;
        k += 1;
    }
    k = 0;
    while k < 10 {
        t[0xF0 + k] = b'0' + k as u8;
        k += 1;
    }
    t
};

static FROM_ASCII: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut e = 0;
    while e < 256 {
        let a = TO_ASCII[e];
        if a != 0 {
            t[a as usize] = e as u8;
        }
        e += 1;
    }
    t
};

/// The ASCII character of an EBCDIC byte, 0 when it has no printable one.
#[inline]
pub fn to_ascii(b: u8) -> u8 {
    TO_ASCII[b as usize]
}

/// The EBCDIC byte of an ASCII character (the EBCDIC space for one outside the table).
#[inline]
pub fn from_ascii(b: u8) -> u8 {
    FROM_ASCII.get(b as usize).copied().unwrap_or(0x40)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for c in b"0123456789 ABCXYZ abcxyz.,=" {
            assert_eq!(to_ascii(from_ascii(*c)), *c);
        }
        assert_eq!(from_ascii(b'0'), 0xF0);
        assert_eq!(from_ascii(b'A'), 0xC1);
        assert_eq!(to_ascii(0x00), 0);
    }
}
