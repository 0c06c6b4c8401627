//! The issuer protocol of one link, without its socket: what a request becomes on the
//! wire and what a frame from the issuer means. A `Session` allocates the switch STAN
//! (shared by all links of an issuer: field 90 of a reversal names its original by STAN,
//! so two links never send the same one) and RRN (per link), encodes the request with
//! them in place of the terminal's, and enters it in the session table under its match
//! key (`prepare`); a frame read from the issuer is decoded and classified (`on_frame`):
//! the reply of a waiting request (taken from the table), the issuer's own network
//! management (answered 0810 here, written by the caller), the late reply of a request
//! that timed out (told by the late memory), a request the switch does not take, or
//! nothing known. It reads no clock (the caller passes `now`; the STAN and RRN sequences'
//! starting points are read from the wall clock once, by `stan_allocator` and
//! `rrn_start`, when the issuer is built), touches no socket and logs nothing: the link task (`link`) writes what it prepares, logs the in-doubt
//! record, waits, and counts. No allocation or lock on the default key's path beyond the
//! encoded body and the reply's channel.
//! May import: crate::iso, crate::issuer::clock, crate::issuer::late, crate::issuer::session,
//! crate::issuer::verify, crate::issuer::wire, crate::rc, crate::time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::clock::write_digits;
use super::late::{Late, LateMemory};
use super::session::{Key, MatchKey, Pending, SessionTable, Ticket};
use super::verify::answer_mti;
use super::wire::{convert, response_mti};
use crate::iso::{DecodeError, Message, Spec};
use crate::rc::ResponseCode;

/// STANs tried before a request is refused as busy (each one's slot was in flight).
const STAN_TRIES: usize = 64;

/// An issuer's STAN allocator: it starts where the clock puts it, so that a restart does
/// not reuse the STANs of the last minutes. (Read once, when the issuer is built.)
pub fn stan_allocator() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new((crate::time::now().secs() % 999_999) as u32))
}

/// Where a link's RRN sequence starts: from the clock too, for the same reason.
pub fn rrn_start() -> u64 {
    (crate::time::now().secs() % 100_000) * 100_000
}

/// What the links of one issuer share: the match key, the session table, the STAN
/// allocator and (with store-and-forward) the late memory.
#[derive(Debug, Clone)]
pub struct Shared {
    pub key: MatchKey,
    pub table: Arc<SessionTable>,
    pub stans: Arc<AtomicU32>,
    pub late: Option<Arc<LateMemory>>,
}

/// One link's side of the issuer protocol (see the module doc).
#[derive(Debug)]
pub struct Session {
    link: u32,
    spec: Arc<Spec>,
    key: MatchKey,
    table: Arc<SessionTable>,
    stans: Arc<AtomicU32>,
    rrn: AtomicU64,
    late: Option<Arc<LateMemory>>,
}

/// A request ready to be written: its place in the table, the channel its reply comes
/// by, the bytes to write (unframed) and the switch STAN in them.
#[derive(Debug)]
pub struct Prepared {
    pub ticket: Ticket,
    pub reply: oneshot::Receiver<Box<Message>>,
    pub body: Bytes,
    pub stan: u32,
}

/// Why a request was not prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotPrepared {
    /// Every STAN tried was in flight: the table is full (the terminal gets 91).
    Busy,
    /// It cannot be written: no answer MTI, not convertible to the issuer's spec, not
    /// encodable, or a match key field missing (96).
    Failed,
}

/// What a frame from the issuer is.
#[derive(Debug)]
pub enum Inbound {
    /// The reply of a waiting request, taken from the table; `expected` is false when its
    /// MTI (or, after a hash match, its other key fields) is not the one awaited: handed
    /// over all the same, for the waiting side to refuse.
    Reply { pending: Pending, msg: Box<Message>, expected: bool },
    /// The issuer's own network management (echo, key exchange): the 0810 to write back
    /// (`None` when it could not be built).
    Network(Option<Bytes>),
    /// The reply of a request that timed out, and what that request stood for.
    Late { msg: Box<Message>, late: Late },
    /// A reply that matches nothing waiting and nothing remembered.
    Unknown(Box<Message>),
    /// A request (0200, 0400, ...) from the issuer: the switch takes none.
    Request(Box<Message>),
    /// Not a message of the issuer's spec.
    Undecodable(DecodeError),
}

impl Session {
    /// Link `link`'s session, writing in `spec`, with its issuer's `shared` state; its
    /// RRN sequence starts at `rrn_start` (see `rrn_start()`).
    pub fn new(link: u32, spec: Arc<Spec>, shared: &Shared, rrn_start: u64) -> Session {
        Session {
            link,
            spec,
            key: shared.key.clone(),
            table: shared.table.clone(),
            stans: shared.stans.clone(),
            rrn: AtomicU64::new(rrn_start),
            late: shared.late.clone(),
        }
    }

    /// The next switch STAN of the issuer (1..=999999, wrapping).
    pub fn next_stan(&self) -> u32 {
        self.stans.fetch_add(1, Ordering::Relaxed) % 999_999 + 1
    }

    /// The next switch RRN of this link: its id (two digits), then a sequence.
    fn next_rrn(&self) -> [u8; 12] {
        let seq = self.rrn.fetch_add(1, Ordering::Relaxed) % 10_000_000_000;
        let mut out = [b'0'; 12];
        write_digits(&mut out[..2], u64::from(self.link % 100));
        write_digits(&mut out[2..], seq);
        out
    }

    /// Enter `req` in the session table and encode it with a fresh switch STAN (and, with
    /// `switch_rrn` where the spec has field 37, a switch RRN) in place of the terminal's:
    /// sent `now`, its reply awaited until `deadline`. A STAN whose slot is still in
    /// flight is skipped before anything is encoded for it.
    pub fn prepare(
        &self,
        req: &Message,
        switch_rrn: bool,
        now: Instant,
        deadline: Instant,
    ) -> Result<Prepared, NotPrepared> {
        // A repeat (0401, 0221) is answered by the plain response MTI (0410, 0230).
        let reply_mti = answer_mti(req.mti().as_bytes()).ok_or(NotPrepared::Failed)?;
        // Encoded straight from the request: no copy of the message when the specs agree.
        let converted;
        let msg = if Arc::ptr_eq(req.spec(), &self.spec) || **req.spec() == *self.spec {
            req
        } else {
            converted = convert(req, &self.spec).map_err(|_| NotPrepared::Failed)?;
            &converted
        };
        let (tx, rx) = oneshot::channel();
        let terminal_rrn = req.raw(37).and_then(|r| <[u8; 12]>::try_from(r).ok());
        let mut pending =
            Pending { reply: tx, sent: now, deadline, reply_mti, terminal_stan: req.stan(), terminal_rrn };
        let with_rrn = switch_rrn && self.spec.field(37).is_some();
        let mut body = BytesMut::new();
        for _ in 0..STAN_TRIES {
            let stan = self.next_stan();
            if self.table.busy(stan) {
                continue;
            }
            let mut digits = [b'0'; 6];
            write_digits(&mut digits, u64::from(stan));
            let rrn = if with_rrn { self.next_rrn() } else { [b'0'; 12] };
            let stan_text = std::str::from_utf8(&digits).unwrap_or("000000");
            let rrn_text = std::str::from_utf8(&rrn).unwrap_or("000000000000");
            let overrides: &[(usize, &str)] =
                if with_rrn { &[(11, stan_text), (37, rrn_text)] } else { &[(11, stan_text)] };
            body.clear();
            msg.encode_with(overrides, &mut body).map_err(|_| NotPrepared::Failed)?;
            let key = if self.key.reads(37) {
                // The key reads the RRN as written: take it from the encoded request.
                Message::decode(&self.spec, Bytes::copy_from_slice(&body))
                    .ok()
                    .and_then(|sent| self.key.of(self.link, &sent))
            } else {
                self.key.of_written(self.link, msg, stan)
            };
            let key = key.ok_or(NotPrepared::Failed)?;
            match self.table.insert(key, pending) {
                Ok(ticket) => return Ok(Prepared { ticket, reply: rx, body: body.freeze(), stan }),
                Err(p) => pending = p,
            }
        }
        Err(NotPrepared::Busy)
    }

    /// Take a request's entry back (its deadline passed, or its write failed); `None`
    /// when it already left (its reply won, or its link was lost).
    pub fn take(&self, ticket: &Ticket) -> Option<Pending> {
        self.table.take(ticket)
    }

    /// Remember the key of a request that gave up `now`, for its late reply (only with a
    /// late memory: without store-and-forward nothing needs telling apart).
    pub fn remember(&self, key: Key, late: Late, now: Instant) {
        if let Some(mem) = &self.late {
            mem.remember(key, late, now);
        }
    }

    /// Whether this session remembers timed-out keys.
    pub fn remembers(&self) -> bool {
        self.late.is_some()
    }

    /// Drop every entry of this link (it was lost); their waiters see their channel
    /// closed. Returns how many.
    pub fn purge(&self) -> usize {
        self.table.purge_link(self.link)
    }

    /// What the frame `body`, read from the issuer `now`, is (see `Inbound`).
    pub fn on_frame(&self, body: Bytes, now: Instant) -> Inbound {
        let msg = match Message::decode(&self.spec, body) {
            Ok(msg) => Box::new(msg),
            Err(e) => return Inbound::Undecodable(e),
        };
        let mti = msg.mti().as_bytes();
        if let Some(resp) = response_mti(mti) {
            if !mti.starts_with(b"08") {
                return Inbound::Request(msg);
            }
            // The issuer's own network management: answered 0810 with 00.
            let mut r = *msg;
            let ok = r.set_mti(std::str::from_utf8(&resp).unwrap_or("0810")).is_ok()
                && r.set(39, ResponseCode::APPROVED.as_str()).is_ok();
            return Inbound::Network(if ok { r.to_bytes().ok() } else { None });
        }
        let key = self.key.of(self.link, &msg);
        if let Some((pending, expected)) = key.as_ref().and_then(|k| self.table.take_reply(k, mti)) {
            return Inbound::Reply { pending, msg, expected };
        }
        match (key, &self.late) {
            (Some(k), Some(mem)) => match mem.take(&k, now) {
                Some(late) => Inbound::Late { msg, late },
                None => Inbound::Unknown(msg),
            },
            _ => Inbound::Unknown(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::iso::spec::shipped;

    const TTL: Duration = Duration::from_secs(10);

    fn shared(first_stan: u32) -> Shared {
        let key = MatchKey::new(&[11]);
        Shared {
            table: Arc::new(SessionTable::for_key(&key, 16)),
            key,
            stans: Arc::new(AtomicU32::new(first_stan)),
            late: Some(Arc::new(LateMemory::new(TTL, 16))),
        }
    }

    fn session(first_stan: u32) -> Session {
        Session::new(3, shipped("iso87ascii").unwrap(), &shared(first_stan), 500)
    }

    fn request() -> Message {
        let mut m = Message::new(shipped("iso87ascii").unwrap(), "0200").unwrap();
        m.set(3, "000000").unwrap().set(4, "000000001000").unwrap();
        m.set(11, "000042").unwrap().set(37, "TERMRRN00001").unwrap().set(41, "TERM0001").unwrap();
        m
    }

    /// The issuer's answer to what was written as `body`, with `rc`.
    fn answer(body: &Bytes, mti: &str, rc: &str) -> Bytes {
        let mut m = Message::decode(&shipped("iso87ascii").unwrap(), body.clone()).unwrap();
        m.set_mti(mti).unwrap();
        m.set(39, rc).unwrap();
        m.to_bytes().unwrap()
    }

    #[test]
    fn a_reply_is_matched_to_its_request_once() {
        let s = session(99);
        let t0 = Instant::now();
        let p = s.prepare(&request(), true, t0, t0 + TTL).unwrap();
        assert_eq!(p.stan, 100);
        let written = Message::decode(&shipped("iso87ascii").unwrap(), p.body.clone()).unwrap();
        assert_eq!(written.text(11).as_deref(), Some("000100"), "the switch STAN replaces the terminal's");
        assert_eq!(written.text(37).as_deref(), Some("030000000500"), "link 3's RRN sequence");
        let reply = answer(&p.body, "0210", "00");
        match s.on_frame(reply.clone(), t0 + Duration::from_millis(5)) {
            Inbound::Reply { pending, msg, expected } => {
                assert!(expected);
                assert_eq!((pending.terminal_stan, pending.sent), (Some(42), t0));
                assert_eq!(pending.terminal_rrn.as_ref(), Some(b"TERMRRN00001"));
                assert_eq!(msg.text(39).as_deref(), Some("00"));
            }
            other => panic!("not a reply: {other:?}"),
        }
        assert!(s.take(&p.ticket).is_none(), "the entry left with its reply");
        assert!(matches!(s.on_frame(reply, t0), Inbound::Unknown(_)), "a second copy matches nothing");
        // A reply of another MTI is handed over, flagged.
        let p = s.prepare(&request(), true, t0, t0 + TTL).unwrap();
        let Inbound::Reply { expected, .. } = s.on_frame(answer(&p.body, "0230", "00"), t0) else {
            panic!("handed over")
        };
        assert!(!expected);
    }

    #[test]
    fn a_late_reply_after_its_deadline_is_told_apart_from_an_unknown_one() {
        let s = session(0);
        let t0 = Instant::now();
        let p = s.prepare(&request(), true, t0, t0 + Duration::from_secs(1)).unwrap();
        // The deadline: the request takes its entry back and is remembered.
        let at = t0 + Duration::from_secs(1);
        assert!(s.take(&p.ticket).is_some());
        s.remember(p.ticket.into_key(), Late::Original { field90: "x".repeat(42) }, at);
        let reply = answer(&p.body, "0210", "00");
        match s.on_frame(reply.clone(), at + Duration::from_secs(2)) {
            Inbound::Late { late: Late::Original { field90 }, msg } => {
                assert_eq!(field90.len(), 42);
                assert_eq!(msg.stan(), Some(p.stan));
            }
            other => panic!("not late: {other:?}"),
        }
        assert!(matches!(s.on_frame(reply, at), Inbound::Unknown(_)), "told once");
        // Past the late memory's time, a late reply is unknown.
        let p = s.prepare(&request(), true, t0, at).unwrap();
        s.take(&p.ticket).unwrap();
        s.remember(p.ticket.into_key(), Late::Reversal { id: 7 }, at);
        assert!(matches!(s.on_frame(answer(&p.body, "0210", "00"), at + TTL), Inbound::Unknown(_)));
        // A STAN never written is unknown.
        let mut stray = request();
        stray.set_mti("0210").unwrap();
        stray.set(11, "777777").unwrap();
        assert!(matches!(s.on_frame(stray.to_bytes().unwrap(), at), Inbound::Unknown(_)));
    }

    #[test]
    fn a_reply_on_another_link_of_the_issuer_matches_nothing() {
        let sh = shared(0);
        let spec = shipped("iso87ascii").unwrap();
        let (one, two) = (Session::new(1, spec.clone(), &sh, 0), Session::new(2, spec, &sh, 0));
        let t0 = Instant::now();
        let p = one.prepare(&request(), true, t0, t0 + TTL).unwrap();
        let q = two.prepare(&request(), true, t0, t0 + TTL).unwrap();
        assert_ne!(p.stan, q.stan, "links of one issuer share its STANs");
        let reply = answer(&p.body, "0210", "00");
        assert!(matches!(two.on_frame(reply.clone(), t0), Inbound::Unknown(_)));
        assert!(matches!(one.on_frame(reply, t0), Inbound::Reply { expected: true, .. }));
        assert_eq!((one.purge(), two.purge()), (0, 1), "a lost link takes only its own");
    }

    #[test]
    fn network_management_is_answered_and_requests_and_garbage_are_named() {
        let s = session(0);
        let t0 = Instant::now();
        let mut echo = Message::new(shipped("iso87ascii").unwrap(), "0800").unwrap();
        echo.set(11, "000001").unwrap().set(70, "301").unwrap();
        let Inbound::Network(Some(back)) = s.on_frame(echo.to_bytes().unwrap(), t0) else {
            panic!("not answered")
        };
        let back = Message::decode(&shipped("iso87ascii").unwrap(), back).unwrap();
        assert_eq!(
            (back.mti(), back.text(39).as_deref(), back.text(70).as_deref()),
            ("0810", Some("00"), Some("301"))
        );
        assert!(matches!(s.on_frame(request().to_bytes().unwrap(), t0), Inbound::Request(_)));
        assert!(matches!(s.on_frame(Bytes::from_static(b"02"), t0), Inbound::Undecodable(_)));
        assert!(s.table.is_empty());
    }

    #[test]
    fn stans_wrap_after_999999_and_skip_a_busy_slot() {
        let s = session(999_997);
        let t0 = Instant::now();
        let stans: Vec<u32> =
            (0..3).map(|_| s.prepare(&request(), false, t0, t0 + TTL).unwrap().stan).collect();
        assert_eq!(stans, [999_998, 999_999, 1]);
        // STAN 2 is in flight; the allocator is brought back so it would hand 2 out again.
        let held = s.prepare(&request(), false, t0, t0 + TTL).unwrap();
        assert_eq!(held.stan, 2);
        s.stans.store(1, Ordering::Relaxed);
        let next = s.prepare(&request(), false, t0, t0 + TTL).unwrap();
        assert_eq!(next.stan, 3, "the busy STAN is skipped");
        let written = Message::decode(&shipped("iso87ascii").unwrap(), next.body).unwrap();
        assert_eq!(written.text(37).as_deref(), Some("TERMRRN00001"), "no switch RRN asked");
        assert_eq!(s.purge(), 5);
    }

    #[test]
    fn a_full_table_is_busy_and_an_unanswerable_request_fails() {
        let sh = shared(0);
        let s = Session::new(0, shipped("iso87ascii").unwrap(), &sh, 0);
        let t0 = Instant::now();
        // Every STAN's slot in flight: fill the table, then the next request finds none free.
        let mut held = Vec::new();
        while let Ok(p) = s.prepare(&request(), false, t0, t0 + TTL) {
            held.push(p);
            assert!(held.len() <= 1_000_000, "the table never filled");
        }
        assert_eq!(s.prepare(&request(), false, t0, t0 + TTL).unwrap_err(), NotPrepared::Busy);
        let mut reply = request();
        reply.set_mti("0210").unwrap();
        assert_eq!(s.prepare(&reply, false, t0, t0 + TTL).unwrap_err(), NotPrepared::Failed);
        assert_eq!(s.purge(), held.len());
    }
}
