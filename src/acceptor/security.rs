//! A listener's terminal security, for estates whose terminals sign on for working keys
//! and MAC their messages (UnionPay-style POS): sign-on answered with fresh keys in field
//! 62, MAC verification of requests (a bad or missing MAC is declined, A0 on those
//! terminals), MACs on replies, PIN blocks translated from the terminal's PIN key to the
//! chosen issuer's zone PIN key before forwarding, and the dialect's response-code table
//! applied to every reply. Keys and clear PINs never leave the key store; nothing here logs
//! key material or PIN blocks.
//! May import: crate::config, crate::iso, crate::keys, crate::metrics, crate::rc.

use std::sync::Arc;

use crate::config::{IssuerConfig, ListenerConfig};
use crate::iso::Message;
use crate::keys::{
    KeyError, KeyLayout, KeyStore, MacAlgorithm, PinBlock, SoftKeyStore, compute_mac, mac_input,
};
use crate::rc::{RcTable, ResponseCode, map};

/// What a listener checks and adds.
pub struct Security {
    keys: Option<Arc<dyn KeyStore>>,
    mac: Option<MacAlgorithm>,
    rc: Arc<RcTable>,
    /// Zone PIN key name of each issuer, in configuration order.
    zones: Vec<Option<String>>,
}

impl Security {
    /// From the listener's configuration: key file, MAC algorithm, response-code table.
    pub fn load(lc: &ListenerConfig) -> Result<Security, String> {
        let keys: Option<Arc<dyn KeyStore>> = match &lc.keys {
            Some(p) => {
                let store = SoftKeyStore::load(p).map_err(|e| e.to_string())?;
                let (held, skipped) = store.restored();
                if held > 0 || skipped > 0 {
                    tracing::info!(held, skipped, "working keys read back; terminals skipped sign on again");
                }
                Some(Arc::new(store))
            }
            None => None,
        };
        let rc = match &lc.rc_table {
            Some(t) if std::path::Path::new(t).is_file() => {
                Arc::new(RcTable::from_file(std::path::Path::new(t)).map_err(|e| e.to_string())?)
            }
            Some(t) => RcTable::shipped(t),
            None => RcTable::shipped(&lc.spec),
        };
        Ok(Security { keys, mac: lc.mac, rc, zones: Vec::new() })
    }

    /// The issuers' zone PIN key names (`pin_zone`), in configuration order.
    pub fn with_zones(mut self, issuers: &[IssuerConfig]) -> Security {
        self.zones = issuers.iter().map(|i| i.pin_zone.clone()).collect();
        self
    }

    /// Whether this listener holds terminal keys (its terminals sign on).
    pub fn has_keys(&self) -> bool {
        self.keys.is_some()
    }

    /// The zone PIN key name of the issuer at configuration index `issuer`.
    pub fn zone_of(&self, issuer: usize) -> Option<&str> {
        self.zones.get(issuer).and_then(|z| z.as_deref())
    }

    /// The request as it must reach the issuer at index `issuer` when it carries a PIN block:
    /// `Ok(None)` when nothing changes (no field 52, or a listener without a key store, whose
    /// terminals encrypt under keys agreed outside the switch); `Ok(Some(copy))` with field 52
    /// translated by the key store to the issuer's zone PIN key; `Err(generic rc)` when the
    /// block does not translate (81, the PIN refused: a wrong key gives an invalid format-0
    /// block) or the issuer has no zone key (96). The clear PIN exists only inside the key
    /// store's operation; nothing logged names the block. On a listener with a key store
    /// the terminal's MAC (64 or 128) is left out of the copy: it was made under the
    /// terminal's own MAC key, means nothing to the issuer and has been checked here.
    pub fn translate_pin(&self, req: &Message, issuer: usize) -> Result<Option<Message>, ResponseCode> {
        let Some(keys) = &self.keys else { return Ok(None) };
        let Some(raw) = req.raw(52) else {
            if !req.has(64) && !req.has(128) {
                return Ok(None);
            }
            let mut m = req.clone();
            m.remove(64).remove(128);
            return Ok(Some(m));
        };
        let Some(block) = PinBlock::from_slice(raw) else {
            return Err(ResponseCode::PIN_ERROR);
        };
        let Some(zone) = self.zone_of(issuer) else {
            tracing::error!(issuer, "a PIN block for an issuer without pin_zone: declined");
            return Err(ResponseCode::SYSTEM_MALFUNCTION);
        };
        let tid = req.terminal_key();
        let Some(pan) = req.pan() else { return Err(ResponseCode::PIN_ERROR) };
        match keys.translate_pin(&tid, zone, &block, &pan) {
            Ok(out) => {
                let mut m = req.clone();
                m.set_bytes(52, out.bytes()).map_err(|_| ResponseCode::SYSTEM_MALFUNCTION)?;
                m.remove(64).remove(128);
                Ok(Some(m))
            }
            Err(KeyError::UnknownZone { zone }) => {
                tracing::error!(%zone, "zone PIN key missing from the key store");
                Err(ResponseCode::SYSTEM_MALFUNCTION)
            }
            Err(e) => {
                metrics::counter!(crate::metrics::PIN_REFUSED_TOTAL).increment(1);
                tracing::info!(error = %e, "PIN block refused");
                Err(ResponseCode::PIN_ERROR)
            }
        }
    }

    /// A sign-on request (0800 with network management code 001 in field 70, or 001, 003 or
    /// 004 in 60.3 as UnionPay-style terminals send it).
    pub fn is_sign_on(msg: &Message) -> bool {
        msg.mti() == "0800"
            && (msg.text(70).as_deref() == Some("001")
                || msg.text(60).is_some_and(|f| matches!(f.get(8..11), Some("001" | "003" | "004"))))
    }

    /// The field 62 layout a sign-on asks for: the one its 60.3 names (001, 003, 004); a
    /// sign-on by field 70 (no 60.3) gets the double-length layout 003.
    pub fn key_layout(req: &Message) -> KeyLayout {
        req.text(60).and_then(|f| f.get(8..11).and_then(KeyLayout::from_code)).unwrap_or(KeyLayout::Double)
    }

    /// The sign-on reply with working keys in field 62, in the layout the terminal asked for,
    /// when this listener holds keys. `None` when it does not (the sign-on is answered as any
    /// network message).
    pub fn sign_on(&self, req: &Message, reply: &mut Message) -> Option<Result<(), ResponseCode>> {
        let keys = self.keys.as_ref()?;
        if !Self::is_sign_on(req) {
            return None;
        }
        let tid = req.terminal_key();
        Some(match keys.sign_on(&tid, Self::key_layout(req)) {
            Ok(w) => {
                if let Some(f60) = req.text(60) {
                    let _ = reply.set(60, &f60);
                }
                reply.set_bytes(62, &w.field62()).map(|_| ()).map_err(|_| ResponseCode::SYSTEM_MALFUNCTION)
            }
            Err(KeyError::UnknownTerminal { .. }) => Err(ResponseCode::INVALID_MERCHANT),
            Err(e) => {
                tracing::warn!(error = %e, "sign-on failed");
                Err(ResponseCode::SYSTEM_MALFUNCTION)
            }
        })
    }

    /// Check a request's MAC when this listener verifies MACs. `Ok(true)` when a MAC was
    /// verified (the reply gets one), `Ok(false)` when none is required, `Err(generic rc)`
    /// when the request must be declined.
    pub fn verify(&self, msg: &Message) -> Result<bool, ResponseCode> {
        let (Some(keys), Some(alg)) = (&self.keys, self.mac) else { return Ok(false) };
        if msg.mti().starts_with("08") {
            return Ok(false);
        }
        let Some(received) = msg.raw(64) else {
            metrics::counter!(crate::metrics::MAC_FAILURES_TOTAL).increment(1);
            return Err(ResponseCode::SECURITY_VIOLATION);
        };
        let tid = msg.terminal_key();
        let input = mac_input(msg).map_err(|_| ResponseCode::SECURITY_VIOLATION)?;
        match keys.verify_mac(&tid, alg, &input, received) {
            Ok(()) => Ok(true),
            Err(KeyError::UnknownTerminal { .. }) => Err(ResponseCode::INVALID_MERCHANT),
            Err(_) => {
                metrics::counter!(crate::metrics::MAC_FAILURES_TOTAL).increment(1);
                Err(ResponseCode::SECURITY_VIOLATION)
            }
        }
    }

    /// Finish a reply: the dialect's response code, and a MAC when the request had one.
    pub fn finish(&self, req: &Message, reply: &mut Message, mac: bool) {
        if let Some(rc) = reply.text(39).as_deref().and_then(ResponseCode::parse) {
            let mapped = map(&self.rc, rc);
            if mapped != rc {
                let _ = reply.set(39, mapped.as_str());
            }
        }
        if !mac {
            return;
        }
        let (Some(keys), Some(alg)) = (&self.keys, self.mac) else { return };
        let tid = req.terminal_key();
        // The MAC covers the message as sent with field 64 present, less its last 8 bytes.
        if reply.set_bytes(64, &[0u8; 8]).is_err() {
            return;
        }
        match mac_input(reply).and_then(|input| keys.generate_mac(&tid, alg, &input)) {
            Ok(m) => {
                let _ = reply.set_bytes(64, &m.0);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not MAC the reply");
                reply.remove(64);
            }
        }
    }

    /// The code a bad MAC gets in this listener's dialect (for tests and logs).
    pub fn bad_mac_code(&self) -> ResponseCode {
        map(&self.rc, ResponseCode::SECURITY_VIOLATION)
    }
}

/// Compute a MAC terminal-side (simulators and tests).
pub fn terminal_mac(
    alg: MacAlgorithm,
    key: &crate::keys::DesKey,
    msg: &Message,
) -> Result<[u8; 8], KeyError> {
    Ok(compute_mac(alg, key, &mac_input(msg)?).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iso::spec::shipped;
    use crate::keys::pin::{decrypt, encrypt};
    use crate::keys::{DesKey, pin_block_format0};

    const TMK: &str = "0123456789ABCDEFFEDCBA9876543210";
    const ZPK: &str = "89ABCDEF0123456776543210FEDCBA98";
    const PAN: &str = "6222021234567890128";

    /// PIN translation at the listener: translated for a zone-keyed issuer, refused (81) under
    /// a wrong key, 96 for an issuer without a zone, untouched without field 52.
    #[test]
    fn pin_blocks_are_translated_to_the_issuers_zone_or_refused() {
        let store = SoftKeyStore::parse(
            "k.toml",
            &format!("[terminals]\nT0000001 = \"{TMK}\"\n[zones]\nz = \"{ZPK}\"\n"),
        )
        .unwrap();
        let wk = store.sign_on("T0000001", KeyLayout::Double).unwrap();
        let tpk = wk.open(&DesKey::from_hex(TMK).unwrap()).unwrap().pin;
        let sec = Security {
            keys: Some(Arc::new(store)),
            mac: None,
            rc: RcTable::shipped("cup-pos"),
            zones: vec![Some("z".into()), None],
        };
        let clear = pin_block_format0("1234", PAN).unwrap();
        let req = |key: &DesKey| {
            let mut m = Message::new(shipped("cup-pos").unwrap(), "0200").unwrap();
            m.set(2, PAN).unwrap().set(41, "T0000001").unwrap();
            m.set_bytes(52, encrypt(key, &clear).bytes()).unwrap();
            m
        };
        let out = sec.translate_pin(&req(&tpk), 0).unwrap().expect("a translated copy");
        // The terminal's MAC stays at the switch.
        let mut maced = req(&tpk);
        maced.set_bytes(64, &[0x5A; 8]).unwrap();
        assert!(!sec.translate_pin(&maced, 0).unwrap().unwrap().has(64));
        maced.remove(52);
        let plain = sec.translate_pin(&maced, 0).unwrap().expect("a copy without the MAC");
        assert!(!plain.has(64) && plain.has(2));
        let zpk = DesKey::from_hex(ZPK).unwrap();
        let block = PinBlock::from_slice(out.raw(52).unwrap()).unwrap();
        assert_eq!(decrypt(&zpk, &block), clear);
        let wrong = DesKey::from_hex("1111111111111111FEDCBA9876543210").unwrap();
        assert_eq!(sec.translate_pin(&req(&wrong), 0).unwrap_err(), ResponseCode::PIN_ERROR);
        assert_eq!(map(&sec.rc, ResponseCode::PIN_ERROR), "99");
        assert_eq!(sec.translate_pin(&req(&tpk), 1).unwrap_err(), ResponseCode::SYSTEM_MALFUNCTION);
        let mut bare = req(&tpk);
        bare.remove(52);
        assert!(sec.translate_pin(&bare, 0).unwrap().is_none());
    }
}
