//! The typical 0200 purchase used by the codec benchmark and the no-allocation test:
//! fields 2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 25, 35, 37, 41, 42 and 49, built with the
//! builder. `benches/pyiso8583_compare.py` rebuilds the same message with pyiso8583.
//! May import: the codec.

use std::sync::Arc;

use bytes::Bytes;
use isoswitch::iso::{Message, Spec};

/// The purchase's fields in their text form (test card numbers only).
pub const FIELDS: [(usize, &str); 16] = [
    (2, "4761739001010010"),
    (3, "000000"),
    (4, "000000001000"),
    (7, "1124003400"),
    (11, "123456"),
    (12, "003400"),
    (13, "1124"),
    (14, "2812"),
    (18, "5411"),
    (22, "051"),
    (25, "00"),
    (35, "4761739001010010=28122011143804489"),
    (37, "432812345678"),
    (41, "TERM0001"),
    (42, "MERCHANT0000001"),
    (49, "840"),
];

/// The purchase in `iso87ascii` as hex; `benches/pyiso8583_compare.py` checks that
/// pyiso8583 builds the same bytes.
pub const ISO87ASCII_HEX: &str = "30323030373233433434383032384330383030303136343736313733393030313031303031303030303030303030303030303030313030303131323430303334303031323334353630303334303031313234323831323534313130353130303334343736313733393030313031303031303d32383132323031313134333830343438393433323831323334353637385445524d303030314d45524348414e5430303030303031383430";

/// The purchase built for `spec`, and its encoded bytes.
pub fn purchase(spec: &Arc<Spec>) -> (Message, Bytes) {
    let mut m = Message::new(spec.clone(), "0200").expect("MTI");
    for (n, v) in FIELDS {
        m.set(n, v).unwrap_or_else(|e| panic!("field {n}: {e}"));
    }
    let wire = m.to_bytes().expect("encode");
    (m, wire)
}
