//! Failed-signature accounting ("limit repeated login failures") that cannot be turned against
//! the people it protects.
//!
//! Rules:
//! - Only signatures s3s actually checked count: the access key is the one s3s looked up
//!   (`MetaAuth::get_secret_key` notes it through [`note_key_lookup`]), never a string read from
//!   the request by us. Unknown key ids (`InvalidAccessKeyId`) count against the source only.
//! - A request is never refused before its signature is checked. A correct signature is refused
//!   (SlowDown) only when the same source address failed for the same key `PAIR_LIMIT` times: that
//!   is the guesser itself. Failures elsewhere (other addresses, other keys) never block anyone.
//! - Once a source or a key is "hot" (too many failures in the window) its failing requests get
//!   `SlowDown` instead of `SignatureDoesNotMatch` / `InvalidAccessKeyId`: clients back off, and a
//!   hot source cannot tell existing key ids from unknown ones any more.
//! - Memory is a fixed table (`SETS` x `WAYS` slots of 24 bytes, 768 KiB) whatever an attacker sends: slots
//!   hold a keyed 64-bit hash (SipHash with a per-process random key), never the key string.
//!   Eviction takes an empty or expired slot, then the lowest count; locked slots go last, so a
//!   flood of fresh keys cannot wash out an existing lockout.
//! - Security log lines (target `strata::security`) carry the key truncated and sanitised.
//! - Cluster mode (`--meta etcd://`): the limits are cluster-wide. Slots are tagged with a hash
//!   keyed by a secret derived from the master key (the same on every gateway), each gateway
//!   publishes its changed slots through the metadata tier every second and reads the others'
//!   counts ([`super::lockout_sync`]); a decision adds the other gateways' counts to the local
//!   one, and a lockout one gateway sets is honoured by all. Times are Unix seconds.
//!
//! IPv6 sources are counted per /64 (one host usually owns a whole /64).

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

use hmac::Mac as _;
use strata_metadata::lockout::LockoutCount;

/// Failures counted per window, in seconds.
pub const WINDOW_SECS: u32 = 60;
/// Failures of one key from one source within the window that lock that pair out.
pub const PAIR_LIMIT: u32 = 20;
/// Failures from one source (any key, known or not) that make it hot.
pub const SOURCE_LIMIT: u32 = 100;
/// Failures of one key (from any source) that make it hot.
pub const KEY_LIMIT: u32 = 100;
/// How long a locked pair (or a hot source/key) stays so.
pub const LOCKOUT_SECS: u32 = 60;
/// Table geometry: 4096 sets of 8 slots = 32768 slots, 768 KiB.
const SETS: usize = 4096;
const WAYS: usize = 8;

/// What the front does with a failed signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer the error s3s produced.
    Plain,
    /// Answer `SlowDown` (503) instead.
    SlowDown,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Keyed hash of the principal; 0 = empty.
    tag: u64,
    window_start: u32,
    count: u32,
    locked_until: u32,
}

impl Slot {
    fn locked(&self, now: u32) -> bool {
        self.locked_until > now
    }
    fn live(&self, now: u32) -> bool {
        self.tag != 0 && (self.locked(now) || now.saturating_sub(self.window_start) < WINDOW_SECS)
    }
    /// Lower = evicted first.
    fn keep_score(&self, now: u32) -> u64 {
        if !self.live(now) {
            0
        } else if self.locked(now) {
            (1 << 40) + u64::from(self.locked_until)
        } else {
            u64::from(self.count)
        }
    }
}

/// A principal counted in the table.
#[derive(Hash)]
enum Who<'a> {
    Source(IpAddr),
    Key(&'a str),
    Pair(IpAddr, &'a str),
}

impl Who<'_> {
    /// A stable encoding, for the keyed hash every gateway of a cluster computes alike.
    fn encode(&self, out: &mut Vec<u8>) {
        let ip = |a: &IpAddr| match a {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        };
        match self {
            Who::Source(a) => {
                out.push(b's');
                out.extend(ip(a));
            }
            Who::Key(k) => {
                out.push(b'k');
                out.extend_from_slice(k.as_bytes());
            }
            Who::Pair(a, k) => {
                let a = ip(a);
                out.extend([b'p', a.len() as u8]);
                out.extend(a);
                out.extend_from_slice(k.as_bytes());
            }
        }
    }
}

/// How slots are tagged: a per-process random SipHash key alone, or (cluster mode) HMAC-SHA256
/// keyed by a secret all gateways share, so a tag names the same principal everywhere.
enum Tagger {
    Local(RandomState),
    Shared(Box<hmac::Hmac<sha2::Sha256>>),
}

/// Other gateways' view of one principal, as last read from the metadata tier.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct Remote {
    /// Failures the other gateways counted in their live windows.
    pub others: u32,
    pub locked_until: u32,
}

struct Table {
    slots: Vec<Slot>,
    hasher: Tagger,
    /// One bit per slot changed since the last publish (cluster mode); bounded by construction.
    dirty: Vec<u64>,
    remote: HashMap<u64, Remote>,
}

impl Table {
    fn new(hasher: Tagger) -> Self {
        Table {
            slots: vec![Slot::default(); SETS * WAYS],
            hasher,
            dirty: vec![0; SETS * WAYS / 64],
            remote: HashMap::new(),
        }
    }

    fn locate(&self, who: &Who<'_>) -> (usize, u64) {
        let h = match &self.hasher {
            Tagger::Local(r) => r.hash_one(who),
            Tagger::Shared(mac) => {
                let mut m = (**mac).clone();
                let mut buf = Vec::with_capacity(64);
                who.encode(&mut buf);
                m.update(&buf);
                let d = m.finalize().into_bytes();
                u64::from_be_bytes(d[..8].try_into().expect("32-byte digest"))
            }
        };
        let set = ((h >> 32) as usize) % SETS;
        (set * WAYS, h | 1)
    }

    fn remote(&self, tag: u64) -> Remote {
        self.remote.get(&tag).copied().unwrap_or_default()
    }

    /// Locked here, by another gateway, or by the failures of all gateways together.
    fn locked(&self, who: &Who<'_>, limit: u32, now: u32) -> bool {
        let (base, tag) = self.locate(who);
        let local = self.slots[base..base + WAYS]
            .iter()
            .find(|s| s.tag == tag && s.live(now));
        let r = self.remote(tag);
        local.is_some_and(|s| s.locked(now))
            || r.locked_until > now
            || (r.others > 0
                && r.others.saturating_add(
                    local
                        .filter(|s| now.saturating_sub(s.window_start) < WINDOW_SECS)
                        .map_or(0, |s| s.count),
                ) >= limit)
    }

    /// Counts one failure; returns (count in window, locked now, just crossed the limit). The
    /// count is the cluster's (this gateway's plus the others').
    fn record(&mut self, who: &Who<'_>, limit: u32, now: u32) -> (u32, bool, bool) {
        let was_locked = self.locked(who, limit, now);
        let (base, tag) = self.locate(who);
        let remote = self.remote(tag);
        let set = &mut self.slots[base..base + WAYS];
        let i = match set.iter().position(|s| s.tag == tag) {
            Some(i) => i,
            None => {
                let (i, _) = set
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.keep_score(now))
                    .unwrap_or((0, &set[0]));
                set[i] = Slot {
                    tag,
                    window_start: now,
                    count: 0,
                    locked_until: 0,
                };
                i
            }
        };
        let s = &mut set[i];
        if now.saturating_sub(s.window_start) >= WINDOW_SECS {
            s.window_start = now;
            s.count = 0;
        }
        s.count = s.count.saturating_add(1);
        let total = s.count.saturating_add(remote.others);
        if total >= limit {
            s.locked_until = now + LOCKOUT_SECS;
        }
        let locked = s.locked(now) || remote.locked_until > now;
        let idx = base + i;
        self.dirty[idx / 64] |= 1 << (idx % 64);
        (total, locked, locked && !was_locked)
    }

    /// Takes the changed live slots, the most important first (locked, then by count), at most
    /// `max`; the rest stay marked for the next call.
    fn take_dirty(&mut self, now: u32, max: usize) -> Vec<(usize, LockoutCount)> {
        let mut out = Vec::new();
        for w in 0..self.dirty.len() {
            let mut bits = std::mem::take(&mut self.dirty[w]);
            while bits != 0 {
                let idx = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let s = self.slots[idx];
                if s.live(now) {
                    out.push((
                        idx,
                        LockoutCount {
                            tag: s.tag,
                            window_start: s.window_start,
                            count: s.count,
                            locked_until: s.locked_until,
                        },
                    ));
                }
            }
        }
        out.sort_by_key(|(_, c)| std::cmp::Reverse((c.locked_until > now, c.count)));
        if out.len() > max {
            for (idx, _) in out.split_off(max) {
                self.dirty[idx / 64] |= 1 << (idx % 64);
            }
        }
        out
    }

    /// Marks slots changed again (a publish failed), if they still hold the same principal.
    fn remark(&mut self, taken: &[(usize, LockoutCount)]) {
        for (idx, c) in taken {
            if self.slots[*idx].tag == c.tag {
                self.dirty[idx / 64] |= 1 << (idx % 64);
            }
        }
    }

    #[cfg(test)]
    fn occupied(&self, now: u32) -> usize {
        self.slots.iter().filter(|s| s.live(now)).count()
    }
}

/// The source an address is counted as: IPv4 as is, IPv6 per /64.
fn source(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Truncates and sanitises an untrusted string for a log line: at most `max` characters, only
/// printable ASCII (others become `?`), `...` marks a cut.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

/// Access keys in log lines are cut to this many characters.
pub const LOGGED_KEY_CHARS: usize = 32;

pub struct AuthLimiter {
    table: Mutex<Table>,
}

impl Default for AuthLimiter {
    fn default() -> Self {
        AuthLimiter {
            table: Mutex::new(Table::new(Tagger::Local(RandomState::new()))),
        }
    }
}

/// Unix seconds (u32 until 2106).
pub(crate) fn unix_now() -> u32 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(s).unwrap_or(u32::MAX - LOCKOUT_SECS)
}

impl AuthLimiter {
    /// A limiter whose slots are tagged with a hash keyed by `secret`, shared by every gateway
    /// of a cluster (cluster mode: [`super::lockout_sync::LockoutSync`] merges the counts).
    pub fn shared(secret: &[u8; 32]) -> Self {
        let mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(secret)
            .expect("HMAC takes any key length");
        AuthLimiter {
            table: Mutex::new(Table::new(Tagger::Shared(Box::new(mac)))),
        }
    }

    fn now(&self) -> u32 {
        unix_now()
    }

    /// The changed slots to publish (at most `max`, most important first).
    pub(crate) fn take_dirty(&self, now: u32, max: usize) -> Vec<(usize, LockoutCount)> {
        self.table().take_dirty(now, max)
    }

    pub(crate) fn remark(&self, taken: &[(usize, LockoutCount)]) {
        self.table().remark(taken)
    }

    /// Replaces the other gateways' counts with a fresh read.
    pub(crate) fn set_remote(&self, remote: HashMap<u64, Remote>) {
        self.table().remote = remote;
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when a request whose signature for `key` verified must still be refused, because
    /// this same source failed too often for this same key (it is the guesser).
    pub fn pair_locked(&self, key: &str, addr: IpAddr) -> bool {
        self.pair_locked_at(key, addr, self.now())
    }

    fn pair_locked_at(&self, key: &str, addr: IpAddr, now: u32) -> bool {
        self.table()
            .locked(&Who::Pair(source(addr), key), PAIR_LIMIT, now)
    }

    /// Records a failed signature from `addr`; `key` is the access key s3s verified against
    /// (None for an unknown key id). Returns how to answer it.
    pub fn record_failure(&self, key: Option<&str>, addr: IpAddr) -> Verdict {
        self.record_failure_at(key, addr, self.now())
    }

    fn record_failure_at(&self, key: Option<&str>, addr: IpAddr, now: u32) -> Verdict {
        let src = source(addr);
        let mut t = self.table();
        let (_, src_hot, src_crossed) = t.record(&Who::Source(src), SOURCE_LIMIT, now);
        let (mut key_hot, mut key_crossed, mut pair_locked, mut pair_crossed) =
            (false, false, false, false);
        if let Some(k) = key {
            (_, key_hot, key_crossed) = t.record(&Who::Key(k), KEY_LIMIT, now);
            (_, pair_locked, pair_crossed) = t.record(&Who::Pair(src, k), PAIR_LIMIT, now);
        }
        drop(t);
        let shown = key.map(|k| sanitize(k, LOGGED_KEY_CHARS));
        let shown = shown.as_deref().unwrap_or("-");
        if src_crossed {
            tracing::warn!(target: "strata::security", source = %src, limit = SOURCE_LIMIT, window_secs = WINDOW_SECS,
                "many failed signatures from this source: its failures are answered SlowDown");
        }
        if key_crossed {
            tracing::warn!(target: "strata::security", access_key = %shown, limit = KEY_LIMIT, window_secs = WINDOW_SECS,
                "many failed signatures for this access key (from any source): failures are answered SlowDown");
        }
        if pair_crossed {
            tracing::warn!(target: "strata::security", source = %src, access_key = %shown, limit = PAIR_LIMIT,
                lockout_secs = LOCKOUT_SECS, "too many failed signatures for this access key from this source: pair locked out");
        }
        if src_hot || key_hot || pair_locked {
            Verdict::SlowDown
        } else {
            Verdict::Plain
        }
    }
}

// ---- which key s3s verified against ---------------------------------------------------------

tokio::task_local! {
    static LOOKED_UP: RefCell<Option<String>>;
}

/// Called by the `S3Auth` provider when s3s asks for the secret of an existing access key: that
/// is the key the signature is checked against. Outside [`track_key_lookup`] it does nothing.
pub fn note_key_lookup(access_key: &str) {
    let _ = LOOKED_UP.try_with(|k| *k.borrow_mut() = Some(access_key.to_string()));
}

/// Runs `f` and returns, with its output, the access key s3s looked up while running it.
pub async fn track_key_lookup<F: Future>(f: F) -> (F::Output, Option<String>) {
    LOOKED_UP
        .scope(RefCell::new(None), async move {
            let out = f.await;
            let key = LOOKED_UP.with(|k| k.borrow_mut().take());
            (out, key)
        })
        .await
}

// ---- refusing verified requests of a locked pair ---------------------------------------------

/// Put in every request's extensions by the front, read after s3s verified the signature.
#[derive(Clone)]
pub struct EdgeInfo {
    pub peer: std::net::SocketAddr,
    pub limiter: std::sync::Arc<AuthLimiter>,
}

/// The check run once the signature is verified (S3 operations and the admin route): an
/// unsigned request is refused (the admin route never accepts one), a locked pair gets
/// `SlowDown`.
pub fn check_verified(ext: &http::Extensions, access_key: Option<&str>) -> s3s::S3Result<()> {
    let Some(key) = access_key else {
        return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
    };
    if let Some(info) = ext.get::<EdgeInfo>()
        && info.limiter.pair_locked(key, info.peer.ip())
    {
        tracing::warn!(target: "strata::security", source = %source(info.peer.ip()),
            access_key = %sanitize(key, LOGGED_KEY_CHARS),
            "correct signature refused: this source is locked out for this key");
        return Err(s3s::s3_error!(SlowDown, "Please reduce your request rate."));
    }
    Ok(())
}

/// `S3Access` for the S3 operations: [`check_verified`] for signed requests; an unsigned one
/// goes on to the handlers (which allow it exactly where a grant to AllUsers does) only without a
/// body, or with the body of a write a grant allows (checked here, before s3s reads the body).
pub struct LockoutAccess {
    pub engine: strata_engine::Engine,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for LockoutAccess {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let key = cx.credentials().map(|c| c.access_key.clone());
        if key.is_none() {
            if !crate::http::limits::may_have_body(cx.headers()) {
                return Ok(());
            }
            let op = cx.s3_op().name().to_string();
            let (bucket, key) = crate::s3::access::path_parts(cx.s3_path());
            let uri = cx.uri().clone();
            return crate::s3::access::check_anonymous_body(
                &self.engine,
                &op,
                (bucket.as_deref(), key.as_deref()),
                &uri,
                cx.extensions_mut(),
            )
            .await;
        }
        check_verified(cx.extensions_mut(), key.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn attacker_locks_only_itself() {
        let l = AuthLimiter::default();
        let (attacker, victim) = (ip("203.0.113.7"), ip("198.51.100.2"));
        for i in 1..PAIR_LIMIT {
            assert_eq!(
                l.record_failure_at(Some("VICTIMKEY"), attacker, 5),
                Verdict::Plain,
                "{i}"
            );
        }
        assert!(!l.pair_locked_at("VICTIMKEY", attacker, 5));
        assert_eq!(
            l.record_failure_at(Some("VICTIMKEY"), attacker, 5),
            Verdict::SlowDown
        );
        // the guesser itself is locked out, even with a correct signature
        assert!(l.pair_locked_at("VICTIMKEY", attacker, 6));
        // the victim (another source) is not, nor are other keys from the attacker's address
        assert!(!l.pair_locked_at("VICTIMKEY", victim, 6));
        assert!(!l.pair_locked_at("OTHERKEY", attacker, 6));
        // the lockout ends
        assert!(!l.pair_locked_at("VICTIMKEY", attacker, 5 + LOCKOUT_SECS));
    }

    #[test]
    fn window_forgets_old_failures() {
        let l = AuthLimiter::default();
        let a = ip("203.0.113.7");
        // one failure every 4 s is 15 per window: below the limit, forever
        for i in 0..PAIR_LIMIT * 3 {
            l.record_failure_at(Some("K"), a, i * 4);
            assert!(!l.pair_locked_at("K", a, i * 4), "{i}");
        }
    }

    #[test]
    fn hot_key_and_hot_source_answer_slowdown_but_lock_nobody() {
        let l = AuthLimiter::default();
        // a botnet: KEY_LIMIT sources, one failure each, all for the same key
        let mut last = Verdict::Plain;
        for i in 0..KEY_LIMIT {
            let a = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            last = l.record_failure_at(Some("K"), a, 1);
        }
        assert_eq!(last, Verdict::SlowDown, "a hot key's failures get SlowDown");
        assert!(
            !l.pair_locked_at("K", ip("192.0.2.1"), 2),
            "correct signatures still pass"
        );
        // one source spraying unknown keys
        let s = ip("192.0.2.99");
        for _ in 0..SOURCE_LIMIT - 1 {
            assert_eq!(l.record_failure_at(None, s, 1), Verdict::Plain);
        }
        assert_eq!(l.record_failure_at(None, s, 1), Verdict::SlowDown);
        assert!(
            !l.pair_locked_at("K", s, 2),
            "a hot source is not refused when correct"
        );
    }

    #[test]
    fn ipv6_counted_per_64() {
        let l = AuthLimiter::default();
        for i in 0..PAIR_LIMIT {
            let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, i as u16 + 1));
            l.record_failure_at(Some("K"), a, 1);
        }
        assert!(l.pair_locked_at("K", ip("2001:db8:1:2::ffff"), 2));
        assert!(!l.pair_locked_at("K", ip("2001:db8:1:3::1"), 2));
        assert_eq!(source(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn memory_is_bounded_and_floods_do_not_wash_out_a_lockout() {
        let l = AuthLimiter::default();
        let attacker = ip("203.0.113.7");
        for _ in 0..PAIR_LIMIT {
            l.record_failure_at(Some("VICTIMKEY"), attacker, 1);
        }
        assert!(l.pair_locked_at("VICTIMKEY", attacker, 1));
        let slots = l.table().slots.len();
        let cap = l.table().slots.capacity();
        // 1M distinct fake keys from 1M addresses
        for i in 0u32..1_000_000 {
            let key = format!("FAKE{i:016}");
            l.record_failure_at(Some(&key), IpAddr::from(i.to_be_bytes()), 2);
        }
        let t = l.table();
        assert_eq!(t.slots.len(), slots);
        assert_eq!(t.slots.capacity(), cap);
        assert!(t.occupied(2) <= SETS * WAYS);
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        drop(t);
        assert!(
            l.pair_locked_at("VICTIMKEY", attacker, 3),
            "the flood evicted a live lockout"
        );
    }

    #[test]
    fn shared_tags_add_the_other_gateways_counts() {
        let (a, b) = (AuthLimiter::shared(&[7; 32]), AuthLimiter::shared(&[7; 32]));
        let attacker = ip("203.0.113.7");
        for _ in 0..10 {
            assert_eq!(a.record_failure_at(Some("K"), attacker, 5), Verdict::Plain);
        }
        // what the sync worker publishes from a and hands to b
        let taken = a.take_dirty(5, 512);
        assert_eq!(taken.len(), 3, "source, key and pair");
        assert!(a.take_dirty(5, 512).is_empty(), "taken once");
        let remote = taken
            .iter()
            .map(|(_, c)| {
                let r = Remote {
                    others: c.count,
                    locked_until: c.locked_until,
                };
                (c.tag, r)
            })
            .collect();
        b.set_remote(remote);
        for i in 0..PAIR_LIMIT - 11 {
            assert_eq!(
                b.record_failure_at(Some("K"), attacker, 6),
                Verdict::Plain,
                "{i}"
            );
        }
        assert!(!b.pair_locked_at("K", attacker, 6));
        assert_eq!(
            b.record_failure_at(Some("K"), attacker, 6),
            Verdict::SlowDown
        );
        assert!(b.pair_locked_at("K", attacker, 6));
        // b's lockout, published, is honoured by a at once
        let locked: Vec<_> = b.take_dirty(6, 512);
        assert!(locked[0].1.locked_until > 6, "locked slots go first");
        a.set_remote(
            locked
                .iter()
                .map(|(_, c)| {
                    let r = Remote {
                        others: c.count,
                        locked_until: c.locked_until,
                    };
                    (c.tag, r)
                })
                .collect(),
        );
        assert!(a.pair_locked_at("K", attacker, 7));
        assert!(!a.pair_locked_at("K", ip("198.51.100.2"), 7));
        // another secret names other principals: nothing matches
        let c = AuthLimiter::shared(&[8; 32]);
        c.set_remote(
            locked
                .iter()
                .map(|(_, x)| {
                    (
                        x.tag,
                        Remote {
                            others: 99,
                            locked_until: 99,
                        },
                    )
                })
                .collect(),
        );
        assert!(!c.pair_locked_at("K", attacker, 7));
    }

    #[test]
    fn sanitize_cuts_and_cleans() {
        assert_eq!(sanitize("AKID", 32), "AKID");
        assert_eq!(sanitize("a\nb\u{1b}[31mc\u{e9}", 32), "a?b?[31mc?");
        assert_eq!(sanitize(&"x".repeat(100), 8), "xxxxxxxx...");
    }

    #[tokio::test]
    async fn key_lookup_is_tracked_per_task() {
        note_key_lookup("OUTSIDE"); // no scope: ignored
        let ((), k) = track_key_lookup(async { note_key_lookup("AK1") }).await;
        assert_eq!(k.as_deref(), Some("AK1"));
        let ((), k) = track_key_lookup(async {}).await;
        assert_eq!(k, None);
    }
}
