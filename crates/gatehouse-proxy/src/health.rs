//! Active health checks. One task per checked backend, on the control runtime, probes it
//! every `interval` (a TCP connect, or an HTTP request whose status must fall in the
//! expected range) and takes it out of rotation after `unhealthy_after` failed checks in a
//! row, back in after `healthy_after` passed ones. The state lives on the backend's
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
}

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

    /// `up`, `down`, `ejected` (passive checks), or `unchecked` (no active check configured
    /// or none finished yet, and not ejected).
    pub fn state(&self) -> &'static str {
        if self.down.load(Ordering::Relaxed) {
            return "down";
        }
        if self.is_ejected() {
            return "ejected";
        }
        if self.checked_ms.load(Ordering::Relaxed) == 0 { "unchecked" } else { "up" }
    }

    /// Counts a request's outcome for passive checks (on the worker that sent it).
    pub fn observe(&self, failed: bool, passive: &PassiveCheck, url: &dyn Fn() -> String) {
        if !failed {
            // Loads first: a healthy backend's counters stay untouched (no shared writes).
            if self.failed_requests.load(Ordering::Relaxed) != 0 {
                self.failed_requests.store(0, Ordering::Relaxed);
            }
            if self.ejections.load(Ordering::Relaxed) != 0 && !self.is_ejected() {
                self.ejections.store(0, Ordering::Relaxed);
            }
            return;
        }
        let failed = self.failed_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if failed < passive.failures || self.is_ejected() {
            return;
        }
        self.failed_requests.store(0, Ordering::Relaxed);
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(20);
        let time = passive.ejection.saturating_mul(1 << n).min(passive.max_ejection);
        self.ejected_until_ms.store(now_ms() + time.as_millis() as u64, Ordering::Relaxed);
        tracing::warn!(backend = %url(), failed_requests = failed, ejected_for = ?time, "backend ejected after failed requests");
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
        let down = self.is_down();
        if down && streak >= i64::from(check.healthy_after) {
            self.down.store(false, Ordering::Relaxed);
            return Some(false);
        }
        if !down && -streak >= i64::from(check.unhealthy_after) {
            self.down.store(true, Ordering::Relaxed);
            return Some(true);
        }
        None
    }
}

/// Told when an active check changes a backend's state: its URL, and whether it is now
/// down (webhooks).
pub type OnChange = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// The checks running, by backend.
#[derive(Default)]
pub struct Checks {
    running: HashMap<usize, (Arc<BackendState>, HealthCheck, tokio::task::JoinHandle<()>)>,
    on_change: Option<OnChange>,
}

impl Checks {
    /// Checks that call `on_change` when a backend goes down or comes back.
    pub fn new(on_change: Option<OnChange>) -> Checks {
        Checks { running: HashMap::new(), on_change }
    }

    /// Starts and stops checks to match `state`: a backend keeps its running check while
    /// it and its check settings stay. Needs a Tokio runtime's context.
    pub fn follow(&mut self, state: &RuntimeState) {
        let mut wanted: HashMap<usize, (Arc<BackendState>, HealthCheck)> = HashMap::new();
        for route in state.router.routes() {
            let Some(group) = &route.group else { continue };
            let Some(check) = &group.config.health else { continue };
            for b in &group.backends {
                wanted.insert(Arc::as_ptr(b) as usize, (b.clone(), check.clone()));
            }
        }
        self.running.retain(|key, (_, check, task)| {
            let keep = wanted.get(key).is_some_and(|(_, c)| c == check);
            if !keep {
                task.abort();
            }
            keep
        });
        for (key, (backend, check)) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(run(backend.clone(), check.clone(), self.on_change.clone()));
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

async fn run(backend: Arc<BackendState>, check: HealthCheck, on_change: Option<OnChange>) {
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
        match changed {
            Some(true) => tracing::warn!(
                backend = %url,
                reason = outcome.as_ref().err().map_or("", String::as_str),
                failed_checks = check.unhealthy_after,
                "backend down: taken out of rotation"
            ),
            Some(false) => {
                tracing::info!(backend = %url, passed_checks = check.healthy_after, "backend up: back in rotation")
            }
            None => {}
        }
        if let (Some(down), Some(tell)) = (changed, &on_change) {
            tell(&url, down);
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
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
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
    if (http.expect.0..=http.expect.1).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}, expected {}-{}", http.expect.0, http.expect.1))
    }
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
        assert_eq!(h.state(), "up");
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
        let url = || "http://x".to_string();
        h.observe(true, &p, &url);
        h.observe(false, &p, &url);
        h.observe(true, &p, &url);
        assert!(!h.is_down(), "a success between failures breaks the run");
        h.observe(true, &p, &url);
        assert!(h.is_down());
        assert_eq!(h.state(), "ejected");
        let first = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((9_000..=10_000).contains(&first), "{first}");
        // Ejected again right after: twice as long, capped at max_ejection.
        h.ejected_until_ms.store(0, Ordering::Relaxed);
        h.observe(true, &p, &url);
        h.observe(true, &p, &url);
        let second = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((19_000..=20_000).contains(&second), "{second}");
        h.ejected_until_ms.store(0, Ordering::Relaxed);
        h.observe(true, &p, &url);
        h.observe(true, &p, &url);
        let third = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((24_000..=25_000).contains(&third), "capped: {third}");
        // Back and serving well: the next ejection starts from the base time again.
        h.ejected_until_ms.store(0, Ordering::Relaxed);
        h.observe(false, &p, &url);
        h.observe(true, &p, &url);
        h.observe(true, &p, &url);
        let fresh = h.ejected_until_ms.load(Ordering::Relaxed) - now_ms();
        assert!((9_000..=10_000).contains(&fresh), "{fresh}");
    }
}
