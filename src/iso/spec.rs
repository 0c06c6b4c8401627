//! Message specifications as data: how each field of a dialect is classed, encoded and
//! length-prefixed. Specs are TOML files (`specs/*.toml`); the shipped ones are embedded
//! in the binary. A spec that contradicts itself is refused at load with the file, line,
//! field and key named. Pure code: no I/O beyond reading the file the caller names.
//! May import: crate::iso::error, crate::iso::field_set, crate::iso::reply_fields.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

pub use super::error::SpecError;
use super::field_set::MAX_FIELD;

/// What characters a field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CharClass {
    /// Digits only.
    #[serde(rename = "n")]
    Numeric,
    /// Printable text (ISO classes a, an, ans, ns, as). The finer ISO distinction is not
    /// enforced: deployed terminals punctuate freely; control characters are refused.
    #[serde(rename = "a", alias = "an", alias = "ans", alias = "ns", alias = "as")]
    Text,
    /// Track data: digits, field separators `=` / `D`, sentinels `;` `?`.
    #[serde(rename = "z")]
    Track,
    /// A sign character `C` or `D` followed by digits (ISO x+n amounts).
    #[serde(rename = "x+n")]
    SignedAmount,
    /// Arbitrary bytes; shown as uppercase hex.
    #[serde(rename = "b")]
    Binary,
}

/// How a field's value travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One ASCII byte per character.
    Ascii,
    /// One EBCDIC (code page 037) byte per character.
    Ebcdic,
    /// Two digits per byte (packed BCD).
    Bcd,
    /// Raw bytes.
    Binary,
    /// Binary data written as hex characters, two per byte.
    Hex,
}

/// How a length prefix is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixEncoding {
    Ascii,
    Ebcdic,
    Bcd,
    /// Big-endian binary: one byte for LL, two for LLL and LLLL.
    Binary,
}

/// Where the filler nibble of an odd-length BCD value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pad {
    /// Value right-aligned, filler first (`0123` for `123`).
    #[default]
    Left,
    /// Value left-aligned, filler last (`1230` for `123`).
    Right,
}

/// How a value shorter than its fixed-length field is brought to the field's length
/// (`fill` in a spec; the default follows the class, see `Fill::default_for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Zeros before the value (`42` in a six-digit field is `000042`).
    LeftZero,
    /// Spaces after the value (`T1` in an eight-character field is `T1      `).
    RightSpace,
    /// Not filled: a value must have the field's length.
    None,
}

impl Fill {
    /// The spec file's name of each fill.
    pub const NAMES: [(&'static str, Fill); 3] =
        [("left-zero", Fill::LeftZero), ("right-space", Fill::RightSpace), ("none", Fill::None)];

    /// What a fixed field of `class` gets when its spec names no fill: zeros before
    /// digits, spaces after text, nothing for track data, signed amounts and binary.
    pub fn default_for(class: CharClass) -> Fill {
        match class {
            CharClass::Numeric => Fill::LeftZero,
            CharClass::Text => Fill::RightSpace,
            CharClass::Track | CharClass::SignedAmount | CharClass::Binary => Fill::None,
        }
    }

    /// Whether the filler characters belong to `class` (zeros to digits and text, spaces
    /// to text).
    pub fn suits(self, class: CharClass) -> bool {
        match self {
            Fill::None => true,
            Fill::LeftZero => matches!(class, CharClass::Numeric | CharClass::Text),
            Fill::RightSpace => class == CharClass::Text,
        }
    }
}

/// Fixed length, or the number of digits of the length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Fixed,
    Var(u8),
}

/// How a sensitive field is masked in `Debug`, logs and masked output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitive {
    /// First six and last four digits kept.
    Pan,
    /// The PAN part masked as a PAN, everything after the separator hidden.
    Track,
    /// Entirely hidden (PIN block, CVV, keys).
    Secret,
}

/// One field of a spec, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub number: u16,
    pub name: String,
    pub class: CharClass,
    pub encoding: Encoding,
    pub length: Length,
    pub prefix: PrefixEncoding,
    /// Maximum (or, when fixed, exact) length in units: digits for BCD, characters for
    /// ASCII/EBCDIC/hex, bytes for binary.
    pub max: u16,
    pub pad: Pad,
    /// Filler nibble for odd-length BCD: 0x0 or 0xF.
    pub pad_nibble: u8,
    /// How a short value is brought to a fixed field's length (`Fill::None` for a
    /// variable-length field).
    pub fill: Fill,
    pub sensitive: Option<Sensitive>,
}

/// MTI and bitmap layout of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitmapEncoding {
    /// 16 hex characters per bitmap.
    Hex,
    /// 8 bytes per bitmap.
    Binary,
}

/// A complete dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    /// Where the field table comes from.
    pub source: String,
    pub mti: Encoding,
    pub bitmap: BitmapEncoding,
    /// Bit 65 announces a third bitmap (fields 129-192) instead of a data field.
    pub tertiary: bool,
    /// What an issuer's reply must echo and which of its fields reach a terminal (`[reply]`).
    pub reply: super::reply_fields::ReplyFields,
    fields: Vec<Option<FieldSpec>>,
}

impl Spec {
    /// The definition of field `n`, if the spec has one.
    #[inline]
    pub fn field(&self, n: usize) -> Option<&FieldSpec> {
        self.fields.get(n).and_then(Option::as_ref)
    }

    /// All defined data fields in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().flatten()
    }

    /// Bytes taken by the MTI.
    #[inline]
    pub fn mti_len(&self) -> usize {
        if self.mti == Encoding::Bcd { 2 } else { 4 }
    }

    /// Bytes taken by one bitmap.
    #[inline]
    pub fn bitmap_len(&self) -> usize {
        match self.bitmap {
            BitmapEncoding::Hex => 16,
            BitmapEncoding::Binary => 8,
        }
    }

    /// Parse a spec from TOML text; `origin` names the file in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Spec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            SpecError {
                file: origin.to_string(),
                line,
                field: None,
                key: None,
                message: e.message().to_string(),
            }
        })?;
        raw.validate(origin, text)
    }

    /// Load a spec from a file.
    pub fn from_file(path: &Path) -> Result<Spec, SpecError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: origin.clone(),
            line: None,
            field: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Spec::from_toml(&origin, &text)
    }

    /// A shipped spec by name, or a spec file by path.
    pub fn load(name_or_path: &str) -> Result<Arc<Spec>, SpecError> {
        if let Some(s) = shipped(name_or_path) {
            return Ok(s);
        }
        let p = Path::new(name_or_path);
        if p.exists() {
            return Spec::from_file(p).map(Arc::new);
        }
        Err(SpecError {
            file: name_or_path.to_string(),
            line: None,
            field: None,
            key: None,
            message: format!(
                "no shipped spec of that name and no such file (shipped: {})",
                SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// The specs embedded in the binary, by name.
pub const SHIPPED: &[(&str, &str)] = &[
    ("iso87ascii", include_str!("../../specs/iso87ascii.toml")),
    ("iso87binbitmap", include_str!("../../specs/iso87binbitmap.toml")),
    ("iso87bcd", include_str!("../../specs/iso87bcd.toml")),
    ("iso93ascii", include_str!("../../specs/iso93ascii.toml")),
    ("cup-pos", include_str!("../../specs/cup-pos.toml")),
];

/// A shipped spec, parsed once per process.
pub fn shipped(name: &str) -> Option<Arc<Spec>> {
    use std::sync::OnceLock;
    static CACHE: OnceLock<Vec<(&'static str, Arc<Spec>)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        SHIPPED
            .iter()
            .filter_map(|(n, text)| {
                // A shipped spec that fails to parse is caught by the tests; at run
                // time it is simply absent rather than a panic.
                Spec::from_toml(&format!("specs/{n}.toml"), text).ok().map(|s| (*n, Arc::new(s)))
            })
            .collect()
    });
    all.iter().find(|(n, _)| *n == name).map(|(_, s)| s.clone())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    source: String,
    mti: RawMti,
    bitmap: RawBitmap,
    #[serde(default)]
    defaults: RawDefaults,
    fields: BTreeMap<String, toml::Spanned<RawField>>,
    #[serde(default)]
    reply: super::reply_fields::RawReply,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMti {
    encoding: Encoding,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBitmap {
    encoding: BitmapEncoding,
    #[serde(default)]
    tertiary: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    numeric: Option<Encoding>,
    text: Option<Encoding>,
    binary: Option<Encoding>,
    prefix: Option<PrefixEncoding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    class: CharClass,
    /// "fixed", "ll", "lll" or "llll".
    length: String,
    max: u16,
    encoding: Option<Encoding>,
    prefix: Option<PrefixEncoding>,
    pad: Option<Pad>,
    pad_char: Option<String>,
    /// "left-zero", "right-space" or "none"; checked by hand to name the field.
    fill: Option<String>,
    sensitive: Option<Sensitive>,
}

impl RawSpec {
    fn validate(self, origin: &str, text: &str) -> Result<Spec, SpecError> {
        let err = |line: Option<usize>, field: Option<u16>, key, message: String| SpecError {
            file: origin.to_string(),
            line,
            field,
            key,
            message,
        };
        if self.mti.encoding == Encoding::Binary || self.mti.encoding == Encoding::Hex {
            return Err(err(
                None,
                None,
                Some("mti.encoding"),
                "the MTI is four digits: ascii, ebcdic or bcd".into(),
            ));
        }
        let limit = if self.bitmap.tertiary { 192 } else { 128 };
        let reply = self.reply.validate(origin, limit, |at| line_of(text, at))?;
        let mut fields: Vec<Option<FieldSpec>> = vec![None; MAX_FIELD + 1];
        for (key, spanned) in self.fields {
            let line = Some(line_of(text, spanned.span().start));
            let raw = spanned.into_inner();
            let number: u16 = key
                .parse()
                .map_err(|_| err(line, None, None, format!("field key `{key}` is not a field number")))?;
            let e = |key: &'static str, msg: String| err(line, Some(number), Some(key), msg);
            if !(2..=limit).contains(&usize::from(number)) {
                return Err(e("fields", format!("field numbers run from 2 to {limit}")));
            }
            if number == 65 && self.bitmap.tertiary {
                return Err(e(
                    "fields",
                    "field 65 is the tertiary bitmap in this spec (bitmap.tertiary = true)".into(),
                ));
            }
            let length = match raw.length.as_str() {
                "fixed" => Length::Fixed,
                "ll" => Length::Var(2),
                "lll" => Length::Var(3),
                "llll" => Length::Var(4),
                other => {
                    return Err(e("length", format!("`{other}` is not one of fixed, ll, lll, llll")));
                }
            };
            let encoding = match raw.encoding {
                Some(enc) => enc,
                None => match raw.class {
                    CharClass::Binary => self.defaults.binary.unwrap_or(Encoding::Binary),
                    CharClass::Numeric | CharClass::Track | CharClass::SignedAmount => {
                        self.defaults.numeric.unwrap_or(Encoding::Ascii)
                    }
                    CharClass::Text => self.defaults.text.unwrap_or(Encoding::Ascii),
                },
            };
            match (raw.class, encoding) {
                (CharClass::Binary, Encoding::Binary | Encoding::Hex) => {}
                (CharClass::Binary, other) => {
                    return Err(e("encoding", format!("class b travels as binary or hex, not {other:?}")));
                }
                (_, Encoding::Binary | Encoding::Hex) => {
                    return Err(e("encoding", "binary and hex encodings are for class b fields".into()));
                }
                (CharClass::Text, Encoding::Bcd) => {
                    return Err(e("encoding", "text cannot be packed as BCD".into()));
                }
                _ => {}
            }
            if raw.max == 0 {
                return Err(e("max", "must be at least 1".into()));
            }
            if let Length::Var(d) = length {
                let cap = 10u32.pow(d as u32) - 1;
                if u32::from(raw.max) > cap {
                    return Err(e("max", format!("{} does not fit a {d}-digit length prefix", raw.max)));
                }
            }
            if encoding == Encoding::Hex && length == Length::Fixed && raw.max % 2 != 0 {
                return Err(e("max", "a fixed hex field needs an even number of characters".into()));
            }
            let pad_nibble = match raw.pad_char.as_deref() {
                None | Some("0") => 0,
                Some("F") | Some("f") => 0xF,
                Some(other) => {
                    return Err(e("pad_char", format!("`{other}` is not \"0\" or \"F\"")));
                }
            };
            if encoding != Encoding::Bcd && (raw.pad.is_some() || raw.pad_char.is_some()) {
                return Err(e("pad", "padding applies to BCD fields only".into()));
            }
            let fill = match (raw.fill.as_deref(), length) {
                (None, Length::Fixed) => Fill::default_for(raw.class),
                (None, Length::Var(_)) => Fill::None,
                (Some(_), Length::Var(_)) => {
                    return Err(e("fill", "fill applies to fixed-length fields only".into()));
                }
                (Some(name), Length::Fixed) => {
                    let Some(&(_, fill)) = Fill::NAMES.iter().find(|(n, _)| *n == name) else {
                        return Err(e(
                            "fill",
                            format!("`{name}` is not one of left-zero, right-space, none"),
                        ));
                    };
                    if !fill.suits(raw.class) {
                        return Err(e(
                            "fill",
                            format!(
                                "`{name}` does not suit the field's class: right-space is for text \
                                 fields, left-zero for numeric and text fields"
                            ),
                        ));
                    }
                    fill
                }
            };
            if raw.prefix.is_some() && length == Length::Fixed {
                return Err(e("prefix", "a fixed-length field has no prefix".into()));
            }
            if raw.sensitive.is_some()
                && raw.class == CharClass::Binary
                && raw.sensitive != Some(Sensitive::Secret)
            {
                return Err(e("sensitive", "a binary field can only be masked as secret".into()));
            }
            fields[number as usize] = Some(FieldSpec {
                number,
                name: raw.name,
                class: raw.class,
                encoding,
                length,
                prefix: raw.prefix.or(self.defaults.prefix).unwrap_or(PrefixEncoding::Ascii),
                max: raw.max,
                pad: raw.pad.unwrap_or_default(),
                pad_nibble,
                fill,
                sensitive: raw.sensitive,
            });
        }
        Ok(Spec {
            name: self.name,
            source: self.source,
            mti: self.mti.encoding,
            bitmap: self.bitmap.encoding,
            tertiary: self.bitmap.tertiary,
            reply,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_spec_loads() {
        for (name, text) in SHIPPED {
            let s = Spec::from_toml(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&s.name, name);
            assert!(!s.source.is_empty());
            assert!(shipped(name).is_some());
        }
    }

    const HEAD: &str = "name = \"t\"\nsource = \"test\"\n[mti]\nencoding = \"ascii\"\n[bitmap]\nencoding = \"hex\"\n[fields]\n";

    #[test]
    fn contradictions_are_refused_with_line_field_and_key() {
        let cases: &[(&str, u16, &str)] = &[
            ("2 = { name = \"PAN\", class = \"n\", length = \"ll\", max = 100 }", 2, "max"),
            (
                "3 = { name = \"x\", class = \"ans\", length = \"fixed\", max = 6, encoding = \"bcd\" }",
                3,
                "encoding",
            ),
            (
                "52 = { name = \"PIN\", class = \"b\", length = \"fixed\", max = 8, encoding = \"ascii\" }",
                52,
                "encoding",
            ),
            (
                "4 = { name = \"amt\", class = \"n\", length = \"fixed\", max = 12, prefix = \"ascii\" }",
                4,
                "prefix",
            ),
            ("4 = { name = \"amt\", class = \"n\", length = \"lx\", max = 12 }", 4, "length"),
            ("4 = { name = \"amt\", class = \"n\", length = \"fixed\", max = 12, pad = \"left\" }", 4, "pad"),
            ("200 = { name = \"x\", class = \"n\", length = \"fixed\", max = 1 }", 200, "fields"),
            (
                "4 = { name = \"amt\", class = \"n\", length = \"fixed\", max = 12, fill = \"zeros\" }",
                4,
                "fill",
            ),
            ("2 = { name = \"PAN\", class = \"n\", length = \"ll\", max = 19, fill = \"none\" }", 2, "fill"),
            (
                "4 = { name = \"amt\", class = \"n\", length = \"fixed\", max = 12, fill = \"right-space\" }",
                4,
                "fill",
            ),
            (
                "28 = { name = \"fee\", class = \"x+n\", length = \"fixed\", max = 9, fill = \"left-zero\" }",
                28,
                "fill",
            ),
        ];
        for (line, field, key) in cases {
            let text = format!("{HEAD}{line}\n");
            let e = Spec::from_toml("bad.toml", &text).unwrap_err();
            assert_eq!(e.field, Some(*field), "{e}");
            assert_eq!(e.key, Some(*key), "{e}");
            assert_eq!(e.line, Some(8), "{e}");
            let shown = e.to_string();
            assert!(shown.starts_with("bad.toml:8: field"), "{shown}");
        }
    }

    #[test]
    fn fill_follows_the_class_unless_the_spec_names_one() {
        let text = format!(
            "{HEAD}4 = {{ name = \"amt\", class = \"n\", length = \"fixed\", max = 12 }}
11 = {{ name = \"stan\", class = \"n\", length = \"fixed\", max = 6, fill = \"none\" }}
32 = {{ name = \"acq\", class = \"n\", length = \"ll\", max = 11 }}
35 = {{ name = \"track\", class = \"z\", length = \"fixed\", max = 37 }}
38 = {{ name = \"auth\", class = \"an\", length = \"fixed\", max = 6, fill = \"left-zero\" }}
41 = {{ name = \"tid\", class = \"ans\", length = \"fixed\", max = 8 }}
52 = {{ name = \"pin\", class = \"b\", length = \"fixed\", max = 8 }}
"
        );
        let s = Spec::from_toml("fill.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        let fill = |n| s.field(n).map(|f| f.fill);
        assert_eq!(fill(4), Some(Fill::LeftZero));
        assert_eq!(fill(11), Some(Fill::None));
        assert_eq!(fill(32), Some(Fill::None));
        assert_eq!(fill(35), Some(Fill::None));
        assert_eq!(fill(38), Some(Fill::LeftZero));
        assert_eq!(fill(41), Some(Fill::RightSpace));
        assert_eq!(fill(52), Some(Fill::None));
    }

    #[test]
    fn a_bad_fill_is_named_with_its_field_and_value() {
        let text = format!(
            "{HEAD}41 = {{ name = \"tid\", class = \"ans\", length = \"fixed\", max = 8, fill = \"right\" }}\n"
        );
        let e = Spec::from_toml("bad.toml", &text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad.toml:8: field 41: key `fill`: `right` is not one of left-zero, right-space, none"
        );
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let text = format!("{HEAD}2 = {{ name = \"PAN\", class = \"q\", length = \"ll\", max = 19 }}\n");
        let e = Spec::from_toml("bad.toml", &text).unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
    }
}
