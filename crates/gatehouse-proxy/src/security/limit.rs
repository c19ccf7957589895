//! Rate limits by GCRA (the generic cell rate algorithm): a limit of N per period lets N
//! requests arrive at once (plus `burst`), then one every period / N. Each key keeps one
//! number, its theoretical arrival time (TAT); a request is allowed while the TAT is at
//! most the tolerance ahead of now, and moves it one interval on.
//!
//! Keys (client addresses, header values) live in a sharded table shared by every worker:
//! a shard's lock is held for one lookup, never across an await. Memory is bounded: a full
//! shard first drops keys whose TAT has passed (they would start afresh anyway), and when
//! every key in it is still active, a new key is refused (the request is limited), so a
//! flood of distinct addresses cannot grow the table past `max_keys`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_config::Rate;

use crate::hash::FxHashMap;

/// How one rate is enforced: the interval between requests and how far ahead the TAT may
/// run (nanoseconds).
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    interval: u64,
    tolerance: u64,
    /// For the `RateLimit` fields: the quota and its window in seconds.
    pub quota: u32,
    pub window_s: u64,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; requests left at once, and seconds until the quota is whole again.
    Allow { remaining: u32, reset_s: u64 },
    /// Limited; seconds until a request would be allowed.
    Limit { retry_after_s: u64 },
}

impl Gcra {
    pub fn new(rate: Rate, burst: u32) -> Gcra {
        let period = u64::try_from(rate.period.as_nanos()).unwrap_or(u64::MAX);
        let interval = (period / u64::from(rate.count)).max(1);
        let tolerance = interval.saturating_mul(u64::from(rate.count - 1) + u64::from(burst));
        Gcra { interval, tolerance, quota: rate.count + burst, window_s: rate.period.as_secs().max(1) }
    }

    /// Applies one request to `tat` at `now`; returns the decision and the new TAT (the
    /// same when limited).
    fn apply(&self, tat: u64, now: u64) -> (Decision, u64) {
        let tat = tat.max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return (Decision::Limit { retry_after_s: wait.div_ceil(1_000_000_000).max(1) }, tat);
        }
        let next = tat.saturating_add(self.interval);
        let used = (next - now).div_ceil(self.interval);
        let remaining = u64::from(self.quota).saturating_sub(used) as u32;
        (Decision::Allow { remaining, reset_s: (next - now).div_ceil(1_000_000_000) }, next)
    }
}

/// Nanoseconds on the process clock (monotonic).
pub fn now_ns() -> u64 {
    crate::upstream::breaker::now_ms().saturating_mul(1_000_000)
}

/// One limit for a whole route: a lock-free TAT.
#[derive(Debug, Default)]
pub struct Global {
    tat: AtomicU64,
}

impl Global {
    pub fn check(&self, g: &Gcra, now: u64) -> Decision {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let (d, next) = g.apply(tat, now);
            if matches!(d, Decision::Limit { .. }) {
                return d;
            }
            match self.tat.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return d,
                Err(seen) => tat = seen,
            }
        }
    }
}

const SHARDS: usize = 64;

/// Per-key TATs (or any per-key number that expires), sharded.
pub struct Table {
    shards: Box<[Mutex<FxHashMap<u64, u64>>]>,
    per_shard: usize,
}

impl Table {
    /// A table of at most about `max_keys` keys: each shard stops at 7/8 of a power of two,
    /// where its hash table is full but has not doubled (16 bytes and a control byte a
    /// slot).
    pub fn new(max_keys: usize) -> Table {
        let shards = (0..SHARDS).map(|_| Mutex::new(FxHashMap::default())).collect();
        let slots = max_keys.div_ceil(SHARDS).max(8).next_power_of_two();
        Table { shards, per_shard: slots / 8 * 7 }
    }

    fn shard(&self, key: u64) -> &Mutex<FxHashMap<u64, u64>> {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(h >> 58) as usize % SHARDS]
    }

    /// Applies `g` to `key`'s TAT.
    pub fn check(&self, key: u64, g: &Gcra, now: u64) -> Decision {
        let mut map = self.shard(key).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tat) = map.get_mut(&key) {
            let (d, next) = g.apply(*tat, now);
            *tat = next;
            return d;
        }
        if map.len() >= self.per_shard {
            // Keys whose TAT has passed hold nothing a new request would not start with.
            map.retain(|_, tat| *tat > now);
            if map.len() >= self.per_shard {
                return Decision::Limit { retry_after_s: 1 };
            }
        }
        let (d, next) = g.apply(0, now);
        map.insert(key, next);
        d
    }

    /// Adds one to `key`'s count within a window of `window` from its first event; returns
    /// the count (violations before a ban). Stored as (window end << 20 | count).
    pub fn count(&self, key: u64, window: Duration, now: u64) -> u32 {
        let mut map = self.shard(key).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let entry = map.get(&key).copied().filter(|v| (v >> 20).saturating_mul(1 << 20) > now);
        let (end, n) = match entry {
            Some(v) => (v >> 20, (v & 0xF_FFFF) + 1),
            None => {
                if map.len() >= self.per_shard {
                    map.retain(|_, v| (*v >> 20).saturating_mul(1 << 20) > now);
                }
                (now.saturating_add(window) >> 20, 1)
            }
        };
        map.insert(key, (end << 20) | n.min(0xF_FFFF));
        n as u32
    }

    pub fn forget(&self, key: u64) {
        self.shard(key).lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
    }

    /// Keys held now (for tests and the memory bench).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client address as a table key: an IPv4 address as it is, an IPv6 one by its hash
/// (the top two bits tell the kinds apart).
pub fn ip_key(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => crate::upstream::hash_key(&v6.octets()) >> 2 | (1 << 62),
    }
}

/// Any other key (a header's value): its hash, kept apart from addresses.
pub fn text_key(bytes: &[u8]) -> u64 {
    crate::upstream::hash_key(bytes) >> 2 | (2 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn n_per_period_arrive_at_once_then_one_per_interval() {
        let g = Gcra::new(Rate { count: 5, period: Duration::from_secs(60) }, 0);
        let t = Table::new(1000);
        let now = 1_000 * S;
        for i in 0..5 {
            assert!(matches!(t.check(1, &g, now), Decision::Allow { remaining, .. } if remaining == 4 - i), "{i}");
        }
        assert_eq!(t.check(1, &g, now), Decision::Limit { retry_after_s: 12 });
        // Another key has its own quota.
        assert!(matches!(t.check(2, &g, now), Decision::Allow { .. }));
        // One interval (12 s) later, one more.
        assert!(matches!(t.check(1, &g, now + 12 * S), Decision::Allow { remaining: 0, .. }));
        assert!(matches!(t.check(1, &g, now + 12 * S), Decision::Limit { .. }));
        // A minute of quiet makes the quota whole.
        for _ in 0..5 {
            assert!(matches!(t.check(1, &g, now + 80 * S), Decision::Allow { .. }));
        }
        // Burst adds headroom.
        let b = Gcra::new(Rate { count: 5, period: Duration::from_secs(60) }, 2);
        let allowed = (0..10).filter(|_| matches!(t.check(3, &b, now), Decision::Allow { .. })).count();
        assert_eq!(allowed, 7);
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_keys() {
        let g = Gcra::new(Rate { count: 1, period: Duration::from_secs(1) }, 0);
        let t = Table::new(6400);
        let now = 1_000 * S;
        let limited = (0..20_000u64).filter(|k| matches!(t.check(*k, &g, now), Decision::Limit { .. })).count();
        // 6400 keys / 64 shards = 100 -> 128 slots a shard, 112 keys.
        assert!(t.len() <= 64 * 112, "{}", t.len());
        assert!(limited >= 20_000 - 64 * 112, "new keys past the bound are limited: {limited}");
        // Once their TATs pass, the keys make room again.
        assert!(matches!(t.check(99_999, &g, now + 2 * S), Decision::Allow { .. }));
    }

    #[test]
    fn global_and_counts() {
        let g = Gcra::new(Rate { count: 2, period: Duration::from_secs(1) }, 0);
        let global = Global::default();
        let now = 10 * S;
        assert!(matches!(global.check(&g, now), Decision::Allow { .. }));
        assert!(matches!(global.check(&g, now), Decision::Allow { .. }));
        assert!(matches!(global.check(&g, now), Decision::Limit { .. }));
        let t = Table::new(100);
        let w = Duration::from_secs(60);
        assert_eq!((t.count(7, w, now), t.count(7, w, now), t.count(7, w, now + S)), (1, 2, 3));
        assert_eq!(t.count(7, w, now + 61 * S), 1, "a new window");
    }
}
