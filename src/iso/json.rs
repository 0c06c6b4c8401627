//! The message JSON of the CLI contract: `{"mti": "0200", "fields": {"2": "...", ...}}`.
//! Keys are field numbers as strings in ascending order; bitmaps are not listed; text
//! and numeric fields are their characters, binary fields uppercase hex.
//! May import: crate::iso::error, crate::iso::message, crate::iso::spec.

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;

use super::error::{EncodeError, Part};
use super::message::Message;
use super::spec::Spec;

/// Write `m` as one line of JSON; `mask` masks the spec's sensitive fields.
pub fn to_json(m: &Message, mask: bool) -> String {
    let mut s = String::with_capacity(64 + m.field_count() * 24);
    s.push_str("{\"mti\":\"");
    s.push_str(m.mti());
    s.push_str("\",\"fields\":{");
    for (i, n) in m.fields().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = if mask {
            m.masked_text(n).unwrap_or_default()
        } else {
            m.text(n).unwrap_or_default().into_owned()
        };
        let _ = write!(s, "\"{n}\":{}", Value::String(v));
    }
    s.push_str("}}");
    s
}

/// Build a message from its JSON form.
pub fn from_json(spec: &Arc<Spec>, v: &Value) -> Result<Message, EncodeError> {
    let obj = v.as_object().ok_or_else(|| EncodeError::new(Part::Mti, "expected a JSON object"))?;
    let mti = obj
        .get("mti")
        .and_then(Value::as_str)
        .ok_or_else(|| EncodeError::new(Part::Mti, "missing \"mti\" string"))?;
    let mut m = Message::new(spec.clone(), mti)?;
    if let Some(extra) = obj.keys().find(|k| *k != "mti" && *k != "fields") {
        return Err(EncodeError::new(Part::Mti, format!("unknown key \"{extra}\"")));
    }
    let Some(fields) = obj.get("fields") else { return Ok(m) };
    let fields =
        fields.as_object().ok_or_else(|| EncodeError::new(Part::Mti, "\"fields\" must be an object"))?;
    for (k, val) in fields {
        let n: u16 = k
            .parse()
            .map_err(|_| EncodeError::new(Part::Mti, format!("field key \"{k}\" is not a field number")))?;
        let text =
            val.as_str().ok_or_else(|| EncodeError::new(Part::Field(n), "field values are strings"))?;
        m.set(n as usize, text)?;
    }
    Ok(m)
}
