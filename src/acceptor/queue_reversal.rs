//! Queueing the reversal of a request the switch forwarded, through its issuer's
//! store-and-forward: a terminal's own reversal, an issuer approval that was not
//! believed, an approval that could not be journalled, a stand-in advice reversed. Field
//! 90 names the original as the issuer saw it (the switch's STAN in place of the
//! terminal's).
//! May import: crate::iso, crate::issuer.

use crate::iso::Message;
use crate::issuer::Issuers;

/// Queue, through the issuer's store-and-forward, the reversal of a financial request
/// the switch forwarded to `issuer_name` with switch STAN `switch_stan` (the terminal's
/// own reversal, a rejected issuer approval, an approval that could not be journalled).
/// `req` is the terminal's message (its request or its reversal): field 90 names the
/// original as the issuer saw it (`orig_mti`, the switch STAN, `orig_f7`, fields 32 and
/// 33). `Ok(false)` when a reversal of that original is already queued.
pub async fn reverse_with_issuer(
    issuers: &Issuers,
    req: &Message,
    issuer_name: &str,
    switch_stan: Option<&str>,
    orig_mti: &str,
    orig_f7: &str,
) -> Result<bool, String> {
    let (Some(issuer), Some(sw_stan)) = (issuers.by_name(issuer_name), switch_stan) else {
        return Err("the original's issuer or switch STAN is missing".to_string());
    };
    if req.spec().field(90).is_none() && issuer.saf_spec().is_none_or(|s| s.field(90).is_none()) {
        return Err("neither the terminal's nor the issuer's spec has a field 90".to_string());
    }
    let acq = |n: usize| format!("{:0>11}", req.text(n).unwrap_or_default());
    // A terminal's own reversal carries field 90 as it saw the original: the STAN in it
    // becomes the switch's.
    let f90 = match req.text(90).and_then(|t| crate::issuer::reversal::rebase_field90(&t, sw_stan)) {
        Some(f) => f,
        None => format!("{orig_mti}{sw_stan}{orig_f7:0>10}{}{}", acq(32), acq(33)),
    };
    // A dialect without field 90 (cup-pos) is carried in the issuer's spec.
    let base = match (req.spec().field(90), issuer.saf_spec()) {
        (None, Some(spec)) => crate::issuer::convert(req, spec),
        _ => Ok(req.clone()),
    };
    match base.and_then(|mut rev| rev.set(90, &f90).map(|_| ()).map(|()| rev)) {
        Ok(rev) => issuer.queue_reversal(&rev).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
