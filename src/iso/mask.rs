//! Masking of sensitive values for people and logs: a PAN keeps its first six and last
//! four digits (the PCI DSS display rule), track data keeps only its masked PAN, secrets
//! (PIN blocks, CVV, keys) are hidden entirely.
//! May import: crate::iso::spec.

use super::spec::Sensitive;

/// Mask `value` as the spec's sensitivity kind asks.
pub fn mask(kind: Sensitive, value: &str) -> String {
    match kind {
        Sensitive::Pan => mask_pan(value),
        Sensitive::Track => {
            // The PAN runs up to the first separator (`=`, `D` or `^`); hide the rest.
            let cut = value
                .char_indices()
                .find(|&(i, c)| i > 0 && (c == '=' || c == 'D' || c == '^'))
                .map(|(i, _)| i);
            match cut {
                Some(i) => {
                    let (pan, rest) = value.split_at(i);
                    let pan = pan.trim_start_matches(|c: char| !c.is_ascii_digit());
                    format!("{}{}", mask_pan(pan), "*".repeat(rest.chars().count()))
                }
                None => "*".repeat(value.chars().count()),
            }
        }
        Sensitive::Secret => "*".repeat(value.chars().count()),
    }
}

/// First six and last four kept; shorter values are hidden entirely.
pub fn mask_pan(pan: &str) -> String {
    masked_pan_chars(pan).collect()
}

/// The characters of `mask_pan(pan)`, to collect into whichever string type the caller keeps.
pub fn masked_pan_chars(pan: &str) -> impl Iterator<Item = char> + '_ {
    let n = pan.chars().count();
    // Shorter than 13: all masked; else the first 6 and the last 4 shown.
    let keep = move |i: usize| n >= 13 && (i < 6 || i >= n - 4);
    pan.chars().enumerate().map(move |(i, c)| if keep(i) { c } else { '*' })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let cases = [
            (Sensitive::Pan, "4111111111111111", "411111******1111"),
            (Sensitive::Pan, "6212345678901234567", "621234*********4567"),
            (Sensitive::Pan, "123456", "******"),
            (Sensitive::Track, "4111111111111111=25121010000", "411111******1111************"),
            (Sensitive::Track, "B4111111111111111^DOE/J^2512", "411111******1111***********"),
            (Sensitive::Secret, "1234ABCD", "********"),
        ];
        for (kind, input, want) in cases {
            assert_eq!(mask(kind, input), want, "{input}");
        }
    }
}
