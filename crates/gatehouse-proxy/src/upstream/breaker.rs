//! The circuit breaker of one backend (`circuit_breaker`): closed, it counts outcomes and
//! opens after `failures` failures in a row or a failure share of `ratio` over `window`;
//! open, the backend gets no requests for `open_for`; half-open, up to `probes` requests
//! go through, and `successes` of them succeeding close it while one failing opens it
//! again.
//!
//! Shared by every worker (atomics only). Transitions are compare-and-swap on the state,
//! so exactly one caller sees (and reports) each. Time is passed in (milliseconds on the
//! process clock, `now_ms`), so the state machine is tested without waiting.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use gatehouse_config::CircuitBreaker;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Milliseconds since the process's first call (a monotonic clock).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What `admit` decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: the request goes.
    Yes,
    /// Half-open: the request goes as one of the probes; only probes decide the state.
    Probe,
    No,
}

/// A state change, for logs, metrics, the store and webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    HalfOpen,
    Closed,
}

#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    failures_in_row: AtomicU32,
    window_start_ms: AtomicU64,
    window_requests: AtomicU32,
    window_failures: AtomicU32,
    /// Open until then; in half-open, when probing began.
    since_ms: AtomicU64,
    probes_out: AtomicU32,
    probe_successes: AtomicU32,
    /// Times opened, for `gatehouse_backend_breaker_opened_total`.
    pub opened: AtomicU64,
}

impl Breaker {
    /// `closed`, `open` or `half_open`.
    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            OPEN => "open",
            HALF_OPEN => "half_open",
            _ => "closed",
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// 0 closed, 1 open, 2 half-open (the gauge's values).
    pub fn state_code(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// Whether a request may go to the backend now. Open past its time, the breaker goes
    /// half-open (reported in the result) and this request is a probe; half-open, it
    /// admits probes while slots are free.
    pub fn admit(&self, cfg: &CircuitBreaker, now: u64) -> (Admit, Option<Transition>) {
        match self.state.load(Ordering::Acquire) {
            CLOSED => (Admit::Yes, None),
            OPEN => {
                if now < self.since_ms.load(Ordering::Acquire) {
                    return (Admit::No, None);
                }
                // The probe counters are ready before anyone can see the half-open state.
                self.probe_successes.store(0, Ordering::Relaxed);
                self.probes_out.store(1, Ordering::Relaxed);
                self.since_ms.store(now, Ordering::Release);
                if self.state.compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                    return (Admit::Probe, Some(Transition::HalfOpen));
                }
                (self.take_probe(cfg, now), None)
            }
            _ => (self.take_probe(cfg, now), None),
        }
    }

    fn take_probe(&self, cfg: &CircuitBreaker, now: u64) -> Admit {
        match self.state.load(Ordering::Acquire) {
            HALF_OPEN => {}
            CLOSED => return Admit::Yes,
            _ => return Admit::No,
        }
        if self.probes_out.fetch_add(1, Ordering::AcqRel) < cfg.probes {
            return Admit::Probe;
        }
        self.probes_out.fetch_sub(1, Ordering::AcqRel);
        // Probes whose outcome never came back (a client gave up on them) must not keep the
        // breaker half-open forever: after another `open_for`, new probes may go.
        let since = self.since_ms.load(Ordering::Acquire);
        if now.saturating_sub(since) >= cfg.open_for.as_millis() as u64
            && self.since_ms.compare_exchange(since, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.probes_out.store(1, Ordering::Relaxed);
            return Admit::Probe;
        }
        Admit::No
    }

    /// Counts a request's outcome at the backend; `probe` when `admit` let it through as
    /// a probe. Half-open, only probes count: a request sent before the breaker opened
    /// says nothing about the backend now.
    pub fn record(&self, failed: bool, probe: bool, cfg: &CircuitBreaker, now: u64) -> Option<Transition> {
        match self.state.load(Ordering::Acquire) {
            HALF_OPEN if !probe => None,
            HALF_OPEN => {
                if failed {
                    return self.open(HALF_OPEN, cfg, now);
                }
                let ok = self.probe_successes.fetch_add(1, Ordering::AcqRel) + 1;
                if ok >= cfg.successes
                    && self.state.compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    self.failures_in_row.store(0, Ordering::Relaxed);
                    self.window_start_ms.store(now, Ordering::Relaxed);
                    self.window_requests.store(0, Ordering::Relaxed);
                    self.window_failures.store(0, Ordering::Relaxed);
                    return Some(Transition::Closed);
                }
                // A probe slot frees up for the next one.
                let _ = self.probes_out.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
                None
            }
            CLOSED => {
                let start = self.window_start_ms.load(Ordering::Relaxed);
                if now.saturating_sub(start) >= cfg.window.as_millis() as u64
                    && self.window_start_ms.compare_exchange(start, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    self.window_requests.store(0, Ordering::Relaxed);
                    self.window_failures.store(0, Ordering::Relaxed);
                }
                let requests = self.window_requests.fetch_add(1, Ordering::Relaxed) + 1;
                if !failed {
                    // Loads first: a healthy backend's counters stay untouched.
                    if self.failures_in_row.load(Ordering::Relaxed) != 0 {
                        self.failures_in_row.store(0, Ordering::Relaxed);
                    }
                    return None;
                }
                let in_row = self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
                let failures = self.window_failures.fetch_add(1, Ordering::Relaxed) + 1;
                let by_ratio = cfg
                    .ratio
                    .is_some_and(|r| requests >= cfg.min_requests && f64::from(failures) >= r * f64::from(requests));
                if in_row >= cfg.failures || by_ratio { self.open(CLOSED, cfg, now) } else { None }
            }
            // Late outcomes of requests admitted before it opened.
            _ => None,
        }
    }

    fn open(&self, from: u8, cfg: &CircuitBreaker, now: u64) -> Option<Transition> {
        // The deadline is in place before anyone can see the open state (a stale one would
        // let a probe through at once).
        let until = now + cfg.open_for.as_millis() as u64;
        let before = self.since_ms.swap(until, Ordering::AcqRel);
        if self.state.compare_exchange(from, OPEN, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            // Another thread changed the state first; its deadline stands.
            let _ = self.since_ms.compare_exchange(until, before, Ordering::AcqRel, Ordering::Relaxed);
            return None;
        }
        self.failures_in_row.store(0, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        Some(Transition::Opened)
    }

    /// Milliseconds until an open breaker lets a probe through (0 unless open).
    pub fn open_for_ms(&self, now: u64) -> u64 {
        if self.state.load(Ordering::Relaxed) != OPEN {
            return 0;
        }
        self.since_ms.load(Ordering::Relaxed).saturating_sub(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> CircuitBreaker {
        CircuitBreaker {
            failures: 3,
            ratio: None,
            window: Duration::from_secs(10),
            min_requests: 10,
            open_for: Duration::from_secs(30),
            probes: 2,
            successes: 2,
            count_5xx: true,
        }
    }

    #[test]
    fn failures_in_a_row_open_it_and_probes_close_it() {
        let (b, c) = (Breaker::default(), cfg());
        assert_eq!(b.record(true, false, &c, 0), None);
        assert_eq!(b.record(true, false, &c, 1), None);
        assert_eq!(b.record(false, false, &c, 2), None, "a success breaks the run");
        assert_eq!((b.record(true, false, &c, 3), b.record(true, false, &c, 4)), (None, None));
        assert_eq!(b.record(true, false, &c, 5), Some(Transition::Opened));
        assert_eq!(b.state(), "open");
        // Open: fails fast until open_for has passed.
        assert_eq!(b.admit(&c, 6), (Admit::No, None));
        assert_eq!(b.open_for_ms(6), 29_999);
        assert_eq!(b.admit(&c, 30_004), (Admit::No, None));
        // Then half-open: two probes, no third.
        assert_eq!(b.admit(&c, 30_005), (Admit::Probe, Some(Transition::HalfOpen)));
        assert_eq!(b.admit(&c, 30_006), (Admit::Probe, None));
        assert_eq!(b.admit(&c, 30_007), (Admit::No, None));
        assert_eq!(b.record(false, false, &c, 30_009), None, "a request from before the opening does not count");
        assert_eq!(b.record(true, false, &c, 30_009), None, "nor does its failure");
        assert_eq!(b.record(false, true, &c, 30_010), None, "one success of two");
        assert_eq!(b.admit(&c, 30_011), (Admit::Probe, None), "its slot is free again");
        assert_eq!(b.record(false, true, &c, 30_012), Some(Transition::Closed));
        assert_eq!((b.state(), b.admit(&c, 30_013)), ("closed", (Admit::Yes, None)));
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_lost_probes_expire() {
        let (b, c) = (Breaker::default(), cfg());
        for t in 0..3 {
            b.record(true, false, &c, t);
        }
        assert_eq!(b.admit(&c, 30_002), (Admit::Probe, Some(Transition::HalfOpen)));
        assert_eq!(b.record(true, true, &c, 30_003), Some(Transition::Opened));
        assert_eq!(b.admit(&c, 30_004), (Admit::No, None));
        assert_eq!(b.opened.load(Ordering::Relaxed), 2);
        // Half-open again; both probes go out and never report back.
        assert_eq!(b.admit(&c, 60_003).1, Some(Transition::HalfOpen));
        assert_eq!(b.admit(&c, 60_004).0, Admit::Probe);
        assert_eq!(b.admit(&c, 60_005).0, Admit::No);
        assert_eq!(b.admit(&c, 90_003).0, Admit::Probe, "after open_for, a new probe may go");
    }

    #[test]
    fn a_failure_share_over_the_window_opens_it() {
        let c = CircuitBreaker { failures: 1000, ratio: Some(0.5), ..cfg() };
        let b = Breaker::default();
        // Alternating failures: never 3 in a row, but half of the requests.
        let mut opened = None;
        for i in 0..10u64 {
            if let Some(t) = b.record(i % 2 == 0, false, &c, i) {
                opened = Some((i, t));
            }
        }
        assert_eq!(opened, None, "the share was met at 9 requests, under min_requests");
        assert_eq!(b.record(true, false, &c, 10), Some(Transition::Opened));
        // A new window forgets old failures.
        let b = Breaker::default();
        for i in 0..9u64 {
            b.record(i % 2 == 0, false, &c, i);
        }
        assert_eq!(b.record(true, false, &c, 20_000), None, "the window rolled over");
    }
}
