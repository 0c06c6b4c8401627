//! The daily stand-in limits: per card (keyed PAN hash) a count and an amount, per merchant
//! an amount, each per issuer and business day; and the day's stand-in authorisation
//! codes. A check and its reservation are one step under one lock, so that terminals
//! racing the same card's limit never pass it together; a reservation whose approval is
//! not made is given back. The counters start each day empty, or from the journal's
//! stand-in approvals of that day after a restart (`seed`). Pure: the caller passes the
//! business date.
//! May import: crate::acceptor::standin::policy.

use std::collections::HashMap;
use std::sync::Mutex;

use super::policy::{Policy, Refusal};

/// What one stand-in approval holds of the limits, to give back if it is not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    date: String,
    card: (String, String),
    merchant: (String, String),
    amount: i64,
}

#[derive(Debug, Default)]
struct Day {
    date: String,
    /// (issuer, PAN hash) -> (count, amount).
    cards: HashMap<(String, String), (u32, i64)>,
    /// (issuer, merchant id) -> amount.
    merchants: HashMap<(String, String), i64>,
    /// Authorisation codes handed out today.
    codes: u64,
}

impl Day {
    fn on(&mut self, date: &str) {
        if self.date != date {
            *self = Day { date: date.to_string(), ..Day::default() };
        }
    }
}

/// Largest code sequence: five base-36 digits.
const CODES: u64 = 36u64.pow(5);

/// The counters of the current business day.
#[derive(Debug, Default)]
pub struct DailyLimits {
    day: Mutex<Day>,
}

impl DailyLimits {
    /// Reserve `amount` for a card and a merchant under `policy` on `date`, when every
    /// daily limit allows it.
    pub fn reserve(
        &self,
        policy: &Policy,
        date: &str,
        pan_hash: &str,
        merchant: &str,
        amount: i64,
    ) -> Result<Reservation, Refusal> {
        let mut d = self.day.lock().unwrap_or_else(|p| p.into_inner());
        d.on(date);
        let card = (policy.issuer.clone(), pan_hash.to_string());
        let shop = (policy.issuer.clone(), merchant.to_string());
        let (count, spent) = d.cards.get(&card).copied().unwrap_or((0, 0));
        if count >= policy.card_daily_count {
            return Err(Refusal::CardCount);
        }
        if spent.checked_add(amount).is_none_or(|s| s > policy.card_daily_amount) {
            return Err(Refusal::CardAmount);
        }
        let sold = d.merchants.get(&shop).copied().unwrap_or(0);
        if let Some(cap) = policy.merchant_daily_amount
            && sold.checked_add(amount).is_none_or(|s| s > cap)
        {
            return Err(Refusal::MerchantAmount);
        }
        d.cards.insert(card.clone(), (count + 1, spent + amount));
        d.merchants.insert(shop.clone(), sold + amount);
        Ok(Reservation { date: date.to_string(), card, merchant: shop, amount })
    }

    /// Give a reservation back (its approval was not made). A ticket of a past day is
    /// dropped: that day's counters are gone.
    pub fn release(&self, t: &Reservation) {
        let mut d = self.day.lock().unwrap_or_else(|p| p.into_inner());
        if d.date != t.date {
            return;
        }
        if let Some((count, spent)) = d.cards.get_mut(&t.card) {
            *count = count.saturating_sub(1);
            *spent -= t.amount;
        }
        if let Some(sold) = d.merchants.get_mut(&t.merchant) {
            *sold -= t.amount;
        }
    }

    /// The next stand-in authorisation code of `date`: `S` and five base-36 digits,
    /// unique within the day (60 million of them), recognisable by its letter: issuers'
    /// codes are digits.
    pub fn next_code(&self, date: &str) -> String {
        let mut d = self.day.lock().unwrap_or_else(|p| p.into_inner());
        d.on(date);
        d.codes = (d.codes + 1) % CODES;
        code_of(d.codes)
    }

    /// Start `date` from the stand-in approvals the journal holds for it: (issuer, PAN
    /// hash, merchant, amount, authorisation code) each. Replaces that day's counters.
    pub fn seed<'a>(
        &self,
        date: &str,
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str, i64, &'a str)>,
    ) {
        let mut fresh = Day { date: date.to_string(), ..Day::default() };
        for (issuer, hash, merchant, amount, code) in rows {
            let c = fresh.cards.entry((issuer.to_string(), hash.to_string())).or_default();
            c.0 += 1;
            c.1 += amount;
            *fresh.merchants.entry((issuer.to_string(), merchant.to_string())).or_default() += amount;
            if let Some(n) = sequence_of(code) {
                fresh.codes = fresh.codes.max(n);
            }
        }
        *self.day.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
    }
}

fn code_of(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = [b'0'; 5];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    format!("S{}", String::from_utf8_lossy(&out))
}

/// The sequence number of a stand-in code (`S` + five base-36 digits).
fn sequence_of(code: &str) -> Option<u64> {
    let digits = code.strip_prefix('S').filter(|d| d.len() == 5)?;
    u64::from_str_radix(digits, 36).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "[[issuer]]\nname = \"b\"\n[[issuer.link]]\naddr = \"127.0.0.1:1\"\n\
             [[standin]]\nissuer = \"b\"\nmax_amount = 10000\n{extra}"
        );
        Policy::from_config(&crate::config::Config::parse("t.toml", &text).unwrap().standin[0])
    }

    #[test]
    fn card_count_card_amount_and_merchant_amount_each_stop_a_stand_in() {
        let l = DailyLimits::default();
        let p = policy("card_daily_count = 2\ncard_daily_amount = 15000\nmerchant_daily_amount = 20000\n");
        assert!(l.reserve(&p, "20261207", "card-a", "m1", 5000).is_ok());
        assert_eq!(l.reserve(&p, "20261207", "card-a", "m1", 10_001), Err(Refusal::CardAmount));
        let t = l.reserve(&p, "20261207", "card-a", "m1", 10_000).unwrap();
        assert_eq!(l.reserve(&p, "20261207", "card-a", "m2", 1), Err(Refusal::CardCount));
        assert_eq!(l.reserve(&p, "20261207", "card-b", "m1", 5001), Err(Refusal::MerchantAmount));
        assert!(l.reserve(&p, "20261207", "card-b", "m2", 5001).is_ok(), "another merchant");
        l.release(&t);
        assert!(l.reserve(&p, "20261207", "card-a", "m1", 10_000).is_ok(), "given back");
        assert!(l.reserve(&p, "20261208", "card-a", "m1", 10_000).is_ok(), "a new day starts empty");
    }

    #[test]
    fn many_terminals_racing_one_card_never_pass_its_limits() {
        let l = DailyLimits::default();
        let p = policy("card_daily_count = 1000\ncard_daily_amount = 99999\n");
        let approved: i64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let (l, p) = (&l, &p);
                    s.spawn(move || {
                        (0..200)
                            .filter(|i| l.reserve(p, "20261207", "card", &format!("m{t}-{i}"), 700).is_ok())
                            .count() as i64
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(approved, 99_999 / 700, "exactly as many as the amount allows");
        let count_bound = policy("card_daily_count = 5\n");
        let n: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let (l, p) = (&l, &count_bound);
                    s.spawn(move || {
                        (0..50).filter(|_| l.reserve(p, "20261207", "card-2", "m", 1).is_ok()).count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(n, 5);
    }

    #[test]
    fn codes_are_unique_in_a_day_and_continue_after_a_restart() {
        let l = DailyLimits::default();
        let codes: std::collections::HashSet<String> = (0..5000).map(|_| l.next_code("20261207")).collect();
        assert_eq!(codes.len(), 5000);
        assert!(codes.iter().all(|c| c.len() == 6 && c.starts_with('S')));
        assert_eq!(code_of(37), "S00011");
        assert_eq!(sequence_of("S00011"), Some(37));
        let again = DailyLimits::default();
        let p = policy("card_daily_count = 2\n");
        again.seed("20261207", [("b", "card-a", "m1", 100, "S0003W"), ("b", "card-a", "m1", 200, "S00011")]);
        assert_eq!(again.next_code("20261207"), code_of(sequence_of("S0003W").unwrap() + 1));
        assert_eq!(again.reserve(&p, "20261207", "card-a", "m1", 1), Err(Refusal::CardCount), "seeded");
    }
}
