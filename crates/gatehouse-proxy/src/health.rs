//! Active health checks. One task per checked backend, on the control runtime, probes it
//! every `interval` (a TCP connect, or an HTTP request whose status must fall in the
//! expected range and whose body must hold `expect_body`) and takes it out of rotation
//! after `unhealthy_after` failed checks in a row (or when the success rate over the last
//! `window` checks drops under `down_below`), back in after `healthy_after` passed ones.
//! A backend in rotation whose success rate is under `degraded_below` is `degraded`. The state lives on the backend's
//! shared `BackendState` (all workers read it; only its checker writes it), so it is the
//! same for every worker and is carried across reloads with the backend. `Checks::follow`
//! starts the checks of backends a reload added and stops those of backends it removed.
//!
//! Passive checks (`passive_check`) listen to real requests instead: `failures` backend
//! failures in a row (connect errors, timeouts, broken responses; 5xx answers when
//! `count_5xx`; never a client's fault) eject the backend for `ejection`, doubled for each
//! ejection in a row up to `max_ejection`. A request it serves well resets both.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use gatehouse_config::{BackendAddr, HealthCheck, PassiveCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::state::RuntimeState;
use crate::upstream::{BackendState, Target};

/// A backend's health, as its checker last saw it.
#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
    /// Checks passed in a row (positive) or failed in a row (negative).
    streak: AtomicI64,
    /// When the last check ended (Unix milliseconds; 0: never checked).
    checked_ms: AtomicU64,
    /// Requests failed in a row (passive checks).
    failed_requests: AtomicU32,
    /// Ejections in a row, for the growing ejection time.
    ejections: AtomicU32,
    /// Ejected until then (Unix milliseconds; 0: not ejected).
    ejected_until_ms: AtomicU64,
    /// The last checks, newest in bit 0 (1 = passed), and how many of them count.
    history: AtomicU64,
    checks: AtomicU32,
    /// The window's success rate stayed under `degraded_below` at the last check.
    degraded: AtomicBool,
    /// Samples of the request and failure counters (the last minute's error rate).
    pub recent: Recent,
}

/// A backend's request and failure counters as sampled every 10 seconds (by
/// `Checks::sample`, on the control runtime), so the admin API can tell the error rate of
/// the last minute while the request path only counts.
#[derive(Debug, Default)]
pub struct Recent {
    /// (milliseconds on the process clock, requests, failures), oldest first, at most 7.
    samples: std::sync::Mutex<std::collections::VecDeque<(u64, u64, u64)>>,
}

impl Recent {
    /// Notes the counters now.
    pub fn sample(&self, now_ms: u64, requests: u64, failures: u64) {
        let mut s = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.len() == 7 {
            s.pop_front();
        }
        s.push_back((now_ms, requests, failures));
    }

    /// (requests, failures) since the oldest sample of the last minute, given the counters
    /// now; all of them before the first sample.
    pub fn counts(&self, requests: u64, failures: u64) -> (u64, u64) {
        let s = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (r0, f0) = s.front().map_or((0, 0), |(_, r, f)| (*r, *f));
        (requests.saturating_sub(r0), failures.saturating_sub(f0))
    }
}

/// Something that happened to a backend, for logs, the store and webhooks.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// The upstream (`SITE/NAME`, or the route id for inline backends).
    pub upstream: String,
    pub backend: String,
    /// Why, in words (the failed check's reason, the ejection time).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Active checks took it out of rotation.
    Down,
    /// Active checks brought it back.
    Up,
    /// Passive checks ejected it.
    Ejected,
    BreakerOpen,
    BreakerHalfOpen,
    BreakerClosed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Down => "down",
            EventKind::Up => "up",
            EventKind::Ejected => "ejected",
            EventKind::BreakerOpen => "breaker_open",
            EventKind::BreakerHalfOpen => "breaker_half_open",
            EventKind::BreakerClosed => "breaker_closed",
        }
    }
}

/// Where events go. Called on the thread where the event happened (a worker, for passive
/// checks and breakers): it must not block.
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64)
}

impl Health {
    /// Out of rotation: its last `unhealthy_after` checks failed, or passive checks
    /// ejected it.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed) || self.is_ejected()
    }

    fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// `up`, `degraded` (in rotation, but recent checks failed), `down`, `ejected` (passive
    /// checks), or `unchecked` (no active check configured or none finished yet, and not
    /// ejected).
    pub fn state(&self) -> &'static str {
        if self.down.load(Ordering::Relaxed) {
            return "down";
        }
        if self.is_ejected() {
            return "ejected";
        }
        if self.checked_ms.load(Ordering::Relaxed) == 0 {
            "unchecked"
        } else if self.degraded.load(Ordering::Relaxed) {
            "degraded"
        } else {
            "up"
        }
    }

    /// The share of the last checks that passed, and how many checks that is.
    pub fn success_rate(&self, window: u32) -> (f64, u32) {
        let n = self.checks.load(Ordering::Relaxed).min(window).min(64);
        if n == 0 {
            return (1.0, 0);
        }
        let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let passed = (self.history.load(Ordering::Relaxed) & mask).count_ones();
        (f64::from(passed) / f64::from(n), n)
    }

    /// Counts a request's outcome for passive checks (on the worker that sent it); returns
    /// the ejection time when this outcome ejected the backend.
    pub fn observe(&self, failed: bool, passive: &PassiveCheck) -> Option<std::time::Duration> {
        if !failed {
            // Loads first: a healthy backend's counters stay untouched (no shared writes).
            if self.failed_requests.load(Ordering::Relaxed) != 0 {
                self.failed_requests.store(0, Ordering::Relaxed);
            }
            if self.ejections.load(Ordering::Relaxed) != 0 && !self.is_ejected() {
                self.ejections.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let failed = self.failed_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if failed < passive.failures || self.is_ejected() {
            return None;
        }
        self.failed_requests.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(20);
        let time = passive.ejection.saturating_mul(1 << n).min(passive.max_ejection);
        self.ejected_until_ms.store(now_ms() + time.as_millis() as u64, Ordering::Relaxed);
        Some(time)
    }

    /// When the last check ended (Unix milliseconds), if any did.
    pub fn last_check_ms(&self) -> Option<u64> {
        Some(self.checked_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// Counts one check; returns the new state when it changed (`true` = down).
    fn record(&self, passed: bool, check: &HealthCheck) -> Option<bool> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64);
        self.checked_ms.store(now.max(1), Ordering::Relaxed);
        let streak = self.streak.load(Ordering::Relaxed);
        let streak = match (passed, streak) {
            (true, s) if s > 0 => s + 1,
            (true, _) => 1,
            (false, s) if s < 0 => s - 1,
            (false, _) => -1,
        };
        self.streak.store(streak, Ordering::Relaxed);
        self.history.store((self.history.load(Ordering::Relaxed) << 1) | u64::from(passed), Ordering::Relaxed);
        let _ = self.checks.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some((n + 1).min(64)));
        let (rate, seen) = self.success_rate(check.window);
        let window_full = seen >= check.window;
        self.degraded.store(rate < check.degraded_below, Ordering::Relaxed);
        let rate_down = window_full && rate < check.down_below;
        let down = self.down.load(Ordering::Relaxed);
        if down && streak >= i64::from(check.healthy_after) && !rate_down {
            self.down.store(false, Ordering::Relaxed);
            return Some(false);
        }
        if !down && (-streak >= i64::from(check.unhealthy_after) || rate_down) {
            self.down.store(true, Ordering::Relaxed);
            return Some(true);
        }
        None
    }
}

/// The checks running, by backend.
#[derive(Default)]
pub struct Checks {
    running: HashMap<usize, (Arc<BackendState>, HealthCheck, tokio::task::JoinHandle<()>)>,
}

impl Checks {
    pub fn new() -> Checks {
        Checks::default()
    }

    /// Samples every backend's counters every 10 seconds, for `Recent`.
    pub async fn sample(state: crate::StateHandle) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            let now = crate::upstream::breaker::now_ms();
            for g in state.load().groups.values() {
                for b in &g.backends {
                    let failed = b.failures.load(Ordering::Relaxed) + b.server_errors.load(Ordering::Relaxed);
                    let attempts = b.requests.load(Ordering::Relaxed) + b.refused.load(Ordering::Relaxed);
                    b.health.recent.sample(now, attempts, failed);
                }
            }
        }
    }

    /// Starts and stops checks to match `state`: a backend keeps its running check while
    /// it and its check settings stay. Needs a Tokio runtime's context.
    /// Events go to `state.shared.events`.
    pub fn follow(&mut self, state: &RuntimeState) {
        let mut wanted: HashMap<usize, (Arc<BackendState>, HealthCheck, String)> = HashMap::new();
        for group in state.groups.values() {
            let Some(check) = &group.config.health else { continue };
            for b in &group.backends {
                wanted.insert(Arc::as_ptr(b) as usize, (b.clone(), check.clone(), group.config.id.clone()));
            }
        }
        self.running.retain(|key, (_, check, task)| {
            let keep = wanted.get(key).is_some_and(|(_, c, _)| c == check);
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, (backend, check, upstream)) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(run(backend.clone(), check.clone(), upstream, state.shared.clone()));
            self.running.insert(key, (backend, check, task));
        }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for (_, _, task) in self.running.values() {
            task.abort();
        }
    }
}

async fn run(backend: Arc<BackendState>, check: HealthCheck, upstream: String, shared: Arc<crate::state::Shared>) {
    let url = backend.backend.url();
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let outcome = match tokio::time::timeout(check.timeout, probe(&backend, &check)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
        };
        let changed = backend.health.record(outcome.is_ok(), &check);
        if let Some(down) = changed {
            let (kind, detail) = match (down, &outcome) {
                (true, Err(why)) => (EventKind::Down, why.clone()),
                (true, Ok(())) => (EventKind::Down, "success rate under health_check.down_below".to_string()),
                (false, _) => (EventKind::Up, format!("{} checks passed", check.healthy_after)),
            };
            shared.event(Event { kind, upstream: upstream.clone(), backend: url.clone(), detail });
        }
    }
}

/// One check of `backend`: `Ok` when it passed, else why not.
async fn probe(backend: &BackendState, check: &HealthCheck) -> Result<(), String> {
    let targets = backend.targets.load();
    let Some(target) = targets.first() else { return Err("host name does not resolve".into()) };
    match target {
        Target::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            http_check(stream, backend, check).await
        }
        Target::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path.as_ref()).await.map_err(|e| format!("connect: {e}"))?;
            http_check(stream, backend, check).await
        }
    }
}

/// The HTTP part of a check (nothing more for a TCP check). HTTP/1.1 in clear text; for
/// `https://` backends the check is the TCP connect.
async fn http_check<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    backend: &BackendState,
    check: &HealthCheck,
) -> Result<(), String> {
    let Some(http) = &check.http else { return Ok(()) };
    if backend.backend.tls {
        return Ok(());
    }
    let host = match (&http.host, &backend.backend.addr) {
        (Some(h), _) => h.clone(),
        (None, BackendAddr::Tcp { host, port }) => format!("{host}:{port}"),
        (None, BackendAddr::Unix(_)) => "localhost".to_string(),
    };
    let req = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Gatehouse-HealthCheck\r\nConnection: close\r\n\r\n",
        http.method, http.path
    );
    stream.write_all(req.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    // The status line, or with `expect_body` the whole answer (the request asked the
    // backend to close, so it ends) up to a cap.
    let cap = if http.body.is_some() { 64 * 1024 } else { 4096 };
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while (http.body.is_some() || !head.windows(2).any(|w| w == b"\r\n")) && head.len() < cap {
        let n = stream.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| "no HTTP status line in the answer".to_string())?;
    if !(http.expect.0..=http.expect.1).contains(&status) {
        return Err(format!("status {status}, expected {}-{}", http.expect.0, http.expect.1));
    }
    if let Some(want) = &http.body {
        let body = head.windows(4).position(|w| w == b"\r\n\r\n").map_or(&[][..], |i| &head[i + 4..]);
        if !body.windows(want.len().max(1)).any(|w| w == want.as_bytes()) {
            return Err(format!("the body does not contain {want:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn thresholds_take_a_backend_out_and_bring_it_back() {
        let check = HealthCheck {
            http: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 2,
            healthy_after: 3,
            window: 4,
            degraded_below: 0.9,
            down_below: 0.0,
        };
        let h = Health::default();
        assert_eq!(h.state(), "unchecked");
        assert_eq!(h.record(false, &check), None);
        assert_eq!(h.record(true, &check), None, "a pass breaks the failing streak");
        assert_eq!(h.record(false, &check), None);
        assert_eq!(h.record(false, &check), Some(true));
        assert!(h.is_down());
        assert_eq!(h.state(), "down");
        assert_eq!((h.record(true, &check), h.record(true, &check)), (None, None));
        assert_eq!(h.record(true, &check), Some(false));
        // Back in rotation, but one of the last 4 checks failed.
        assert_eq!((h.state(), h.success_rate(4)), ("degraded", (0.75, 4)));
        assert_eq!((h.record(true, &check), h.record(true, &check)), (None, None));
        assert_eq!((h.state(), h.success_rate(4)), ("up", (1.0, 4)));
    }

    #[test]
    fn a_low_success_rate_takes_a_flapping_backend_out() {
        let check = HealthCheck {
            http: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 3,
            healthy_after: 1,
            window: 4,
            degraded_below: 0.9,
            down_below: 0.5,
        };
        let h = Health::default();
        // Never two failures in a row, but only one check in three passes.
        assert_eq!(h.record(false, &check), None);
        assert_eq!(h.record(true, &check), None);
        assert_eq!(h.record(false, &check), None, "the window is not full yet");
        assert_eq!(h.record(false, &check), Some(true), "1 of 4 passed: under down_below");
        assert_eq!(h.record(true, &check), Some(false), "2 of 4 passed: not under down_below, one pass is enough");
    }

    #[test]
    fn failed_requests_eject_for_a_growing_time_and_a_good_one_resets() {
        let p = PassiveCheck {
            failures: 2,
            ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            count_5xx: false,
        };
        let h = Health::default();
        h.observe(true, &p);
        h.observe(false, &p);
        h.observe(true, &p);
        assert!(!h.is_down(), "a success between failures breaks the run");
        h.observe(true, &p);
        assert!(h.is_down());
        assert_eq!(h.state(), "ejected");
        let first = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((9_000..=10_000).contains(&first), "{first}");
        // Ejected again right after: twice as long, capped at max_ejection.
        h.ejected_until_ms.store(0, Ordering::Relaxed);
        h.observe(true, &p);
        h.observe(true, &p);
        let second = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((19_000..=20_000).contains(&second), "{second}");
        h.ejected_until_ms.store(0, Ordering::Relaxed);
        h.observe(true, &p);
        h.observe(true, &p);
        let third = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((24_000..=25_000).contains(&third), "capped: {third}");
        // Back and serving well: the next ejection starts from the base time again.
        h.ejected_until_ms.store(0, Ordering::Relaxed);
        h.observe(false, &p);
        h.observe(true, &p);
        h.observe(true, &p);
        let fresh = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((9_000..=10_000).contains(&fresh), "{fresh}");
    }
}
