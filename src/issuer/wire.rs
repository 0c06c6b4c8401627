//! The issuer side's wire vocabulary: the response MTI of a request, and a message
//! carried over into an issuer's spec.
//! May import: crate::iso.

use std::sync::Arc;

use crate::iso::{EncodeError, Message, Spec};

/// `msg` in `spec`: the same message when the specs agree, else rebuilt field by field.
pub fn convert(msg: &Message, spec: &Arc<Spec>) -> Result<Message, EncodeError> {
    if Arc::ptr_eq(msg.spec(), spec) || **msg.spec() == **spec {
        return Ok(msg.clone());
    }
    let mut out = Message::new(spec.clone(), msg.mti())?;
    for n in msg.fields() {
        out.copy_from(msg, n)?;
    }
    Ok(out)
}

/// `msg` in `spec`, taking it over when the specs agree (no copy).
pub fn convert_owned(msg: Box<Message>, spec: &Arc<Spec>) -> Result<Box<Message>, EncodeError> {
    if Arc::ptr_eq(msg.spec(), spec) || **msg.spec() == **spec {
        return Ok(msg);
    }
    convert(&msg, spec).map(Box::new)
}

/// The response MTI of a request MTI (third digit + 1), if it is a request.
pub fn response_mti(mti: &[u8]) -> Option<[u8; 4]> {
    let m: [u8; 4] = mti.try_into().ok()?;
    if !m.iter().all(u8::is_ascii_digit) || (m[2] - b'0') % 2 == 1 {
        return None;
    }
    Some([m[0], m[1], m[2] + 1, m[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_mtis() {
        assert_eq!(response_mti(b"0200"), Some(*b"0210"));
        assert_eq!(response_mti(b"0800"), Some(*b"0810"));
        assert_eq!(response_mti(b"0420"), Some(*b"0430"));
        assert_eq!(response_mti(b"0210"), None);
        assert_eq!(response_mti(b"02x0"), None);
        assert_eq!(response_mti(b"020"), None);
    }
}
