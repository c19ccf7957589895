//! Prometheus metrics (`GET /metrics` on the admin listener).
//!
//! Requests are counted from the access records, per worker: each worker thread adds to
//! its own slot (a lock only it takes, except for a scrape), so the hot path never writes a
//! cache line another worker writes. A scrape sums the slots and reads the rest where it
//! lives: connections (the proxy's per-worker counters), backends (their shared counters),
//! certificates, the database writer and the process (`/proc/self`).
//!
//! Labels are bounded by the configuration: site, route id, method (unknown methods count
//! as `other`), status class, error side and kind. Never a client address or a raw path.
//! Counter names are given without `_total`: the encoder appends it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gatehouse_proxy::StateHandle;
use gatehouse_proxy::observe::AccessRecord;
use gatehouse_proxy::observe::connections::Connections;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Methods with their own label value; the rest are `other`.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
const OTHER_METHOD: usize = METHODS.len();
/// Status classes 1xx to 5xx, then anything else (a request refused before it had one).
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// One route's counts in one slot.
#[derive(Debug, Clone, Default)]
struct RouteTally {
    /// By method, then status class.
    requests: [[u64; CLASSES.len()]; METHODS.len() + 1],
    /// Requests per duration bucket (the last one past every bound).
    duration: [u64; BUCKETS.len() + 1],
    duration_sum: f64,
    bytes_in: u64,
    bytes_out: u64,
    /// Requests over the route's `slow_request` thresholds: warning, critical.
    slow: [u64; 2],
    /// Security filters' decisions, by kind (`waf_blocked`, `rate_limited`…) and rule.
    security: BTreeMap<(&'static str, Arc<str>), u64>,
}

impl RouteTally {
    fn add(&mut self, o: &RouteTally) {
        for (a, b) in self.requests.iter_mut().zip(&o.requests) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        for (x, y) in self.duration.iter_mut().zip(&o.duration) {
            *x += y;
        }
        self.duration_sum += o.duration_sum;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.slow[0] += o.slow[0];
        self.slow[1] += o.slow[1];
        for (k, n) in &o.security {
            *self.security.entry(k.clone()).or_default() += n;
        }
    }
}

/// One slot: site -> route -> counts, and failures by side and kind.
#[derive(Debug, Default)]
struct Tally {
    routes: HashMap<Box<str>, HashMap<Box<str>, RouteTally>>,
    errors: HashMap<(&'static str, &'static str), u64>,
}

/// What the request path feeds; shared by the sink, the reload loop and the exporter.
#[derive(Debug)]
pub struct Metrics {
    slots: Box<[Mutex<Tally>]>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    started: f64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// This thread's slot number (assigned on first use, round robin).
    static SLOT: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl Metrics {
    /// Slots for `workers` worker threads (and one for any other thread that ends a request).
    pub fn new(workers: usize) -> Arc<Metrics> {
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Arc::new(Metrics {
            slots: (0..workers + 1).map(|_| Mutex::default()).collect(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            started,
        })
    }

    /// Counts one request (on the thread that ended it).
    pub fn observe(&self, r: &AccessRecord) {
        let method =
            r.method.as_ref().and_then(|m| METHODS.iter().position(|k| *k == m.as_str())).unwrap_or(OTHER_METHOD);
        let class = match r.status {
            100..=599 => usize::from(r.status / 100 - 1),
            _ => CLASSES.len() - 1,
        };
        let secs = r.duration.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        let (site, route) = (r.site.as_deref().unwrap_or(""), r.route.as_deref().unwrap_or(""));
        let mut tally = lock(&self.slots[SLOT.with(|n| *n) % self.slots.len()]);
        let routes = match tally.routes.get_mut(site) {
            Some(routes) => routes,
            None => tally.routes.entry(site.into()).or_default(),
        };
        let t = match routes.get_mut(route) {
            Some(t) => t,
            None => routes.entry(route.into()).or_default(),
        };
        t.requests[method][class] += 1;
        t.duration[bucket] += 1;
        t.duration_sum += secs;
        t.bytes_in += r.bytes_in;
        t.bytes_out += r.bytes_out;
        if let Some(slow) = r.slow {
            t.slow[usize::from(slow == gatehouse_proxy::observe::Slow::Critical)] += 1;
        }
        if let Some(flag) = &r.flag {
            *t.security.entry((flag.kind, flag.rule.clone())).or_default() += 1;
        }
        if let Some(f) = &r.error {
            *tally.errors.entry((f.side.as_str(), f.kind)).or_default() += 1;
        }
    }

    /// Counts a configuration reload.
    pub fn reloaded(&self, ok: bool) {
        let c = if ok { &self.reloads_ok } else { &self.reloads_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Per site: requests answered and those answered 5xx, since start.
    pub fn by_site(&self) -> Vec<(String, (u64, u64))> {
        let mut sites: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((site, _), t) in self.sum().0 {
            let s = sites.entry(site).or_default();
            for by_class in &t.requests {
                s.0 += by_class.iter().sum::<u64>();
                s.1 += by_class[4];
            }
        }
        sites.into_iter().collect()
    }

    /// Failed logins (at `auth`, and the application's own on `failed_logins` paths) and
    /// WAF blocks since start, every route.
    pub fn security_totals(&self) -> (u64, u64) {
        let (mut logins, mut blocks) = (0, 0);
        for (_, t) in self.sum().0 {
            for ((kind, _), n) in &t.security {
                match *kind {
                    "auth_failed" | "failed_login" => logins += n,
                    "waf_blocked" => blocks += n,
                    _ => {}
                }
            }
        }
        (logins, blocks)
    }

    /// The slots summed, in a stable order.
    #[allow(clippy::type_complexity)]
    fn sum(&self) -> (BTreeMap<(String, String), RouteTally>, BTreeMap<(&'static str, &'static str), u64>) {
        let mut routes: BTreeMap<(String, String), RouteTally> = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for slot in self.slots.iter() {
            let t = lock(slot);
            for (site, rs) in &t.routes {
                for (route, counts) in rs {
                    routes.entry((site.to_string(), route.to_string())).or_default().add(counts);
                }
            }
            for (k, n) in &t.errors {
                *errors.entry(*k).or_default() += n;
            }
        }
        (routes, errors)
    }
}

/// The live figures `/api/stats` shows.
pub fn live(
    metrics: Arc<Metrics>,
    connections: Arc<Connections>,
    writer: gatehouse_store::Writer,
) -> Arc<dyn Fn() -> serde_json::Value + Send + Sync> {
    Arc::new(move || {
        let (mut requests, mut errors) = (0, 0);
        for (_, (n, bad)) in metrics.by_site() {
            requests += n;
            errors += bad;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let w = writer.stats();
        serde_json::json!({
            "uptime_seconds": (now - metrics.started).max(0.0).round() as u64,
            "connections": {"active": connections.active(), "accepted": connections.accepted()},
            "requests": {"total": requests, "server_errors": errors},
            "request_log": {
                "written": w.written.load(Ordering::Relaxed),
                "dropped": w.dropped.load(Ordering::Relaxed),
                "failed": w.failed.load(Ordering::Relaxed),
            },
            "reloads": {
                "ok": metrics.reloads_ok.load(Ordering::Relaxed),
                "error": metrics.reloads_failed.load(Ordering::Relaxed),
            },
        })
    })
}

/// Everything a scrape reads.
#[derive(Clone)]
pub struct Exporter {
    pub metrics: Arc<Metrics>,
    pub connections: Arc<Connections>,
    pub state: StateHandle,
    pub certs: Option<Arc<gatehouse_proxy::tls::Resolver>>,
    pub writer: gatehouse_store::Writer,
    /// The streams' counters.
    pub streams: Arc<gatehouse_proxy::l4::Engine>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter")
    }
}

impl Exporter {
    /// The text `/metrics` answers (Prometheus text format 0.0.4).
    pub fn render(registry: &Registry) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        out
    }

    /// A registry holding this exporter.
    pub fn registry(self) -> Registry {
        let mut r = Registry::default();
        r.register_collector(Box::new(self));
        r
    }
}

pub(crate) type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes one family: a descriptor, then a sample per label set.
pub(crate) fn family<'a, T: Copy>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, T)>,
    write: impl Fn(&mut prometheus_client::encoding::MetricEncoder, T) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let mut f = m.encode_family(&labels)?;
        write(&mut f, v)?;
    }
    Ok(())
}

pub(crate) fn counter(m: &mut prometheus_client::encoding::MetricEncoder, v: u64) -> std::fmt::Result {
    m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&v, None)
}

pub(crate) fn gauge(m: &mut prometheus_client::encoding::MetricEncoder, v: i64) -> std::fmt::Result {
    m.encode_gauge(&v)
}

fn gauge_f(m: &mut prometheus_client::encoding::MetricEncoder, v: f64) -> std::fmt::Result {
    m.encode_gauge(&v)
}

impl Collector for Exporter {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let (routes, errors) = self.metrics.sum();
        let mut requests = Vec::new();
        for ((site, route), t) in &routes {
            for (m, by_class) in t.requests.iter().enumerate() {
                for (c, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                    let method = METHODS.get(m).copied().unwrap_or("other");
                    let labels = vec![
                        ("site", site.as_str()),
                        ("route", route.as_str()),
                        ("method", method),
                        ("status_class", CLASSES[c]),
                    ];
                    requests.push((labels, *n));
                }
            }
        }
        family(
            &mut e,
            "gatehouse_requests",
            "Requests answered, by site, route, method and status class.",
            MetricType::Counter,
            requests,
            counter,
        )?;

        let mut m = e.encode_descriptor(
            "gatehouse_request_duration_seconds",
            "Time from a request's head to the end of its response.",
            None,
            MetricType::Histogram,
        )?;
        for ((site, route), t) in &routes {
            let labels: Labels = vec![("site", site.as_str()), ("route", route.as_str())];
            let mut f = m.encode_family(&labels)?;
            let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(t.duration.iter().copied()).collect();
            let count = t.duration.iter().sum();
            f.encode_histogram::<prometheus_client::encoding::NoLabelSet>(t.duration_sum, count, &buckets, None)?;
        }
        let bytes = |pick: fn(&RouteTally) -> u64| {
            routes
                .iter()
                .map(move |((site, route), t)| (vec![("site", site.as_str()), ("route", route.as_str())], pick(t)))
        };
        family(
            &mut e,
            "gatehouse_request_bytes",
            "Request body bytes received from clients.",
            MetricType::Counter,
            bytes(|t| t.bytes_in),
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_response_bytes",
            "Response body bytes sent to clients.",
            MetricType::Counter,
            bytes(|t| t.bytes_out),
            counter,
        )?;
        let slow =
            routes.iter().flat_map(|((site, route), t)| {
                ["warning", "critical"].into_iter().zip(t.slow).filter(|(_, n)| *n > 0).map(move |(level, n)| {
                    (vec![("site", site.as_str()), ("route", route.as_str()), ("level", level)], n)
                })
            });
        family(
            &mut e,
            "gatehouse_slow_requests",
            "Requests over their route's slow_request thresholds, by level (warning, critical).",
            MetricType::Counter,
            slow,
            counter,
        )?;
        let security = routes.iter().flat_map(|((site, route), t)| {
            t.security.iter().map(move |((kind, rule), n)| {
                (vec![("site", site.as_str()), ("route", route.as_str()), ("kind", *kind), ("rule", &**rule)], *n)
            })
        });
        family(
            &mut e,
            "gatehouse_security_events",
            "Requests a security filter refused or flagged, by route, kind (rate_limited, banned, waf_blocked, waf_logged, auth_required, auth_failed, cors_refused, ip_denied, user_agent_denied, referer_denied, csrf_refused) and rule.",
            MetricType::Counter,
            security,
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_request_errors",
            "Failed requests by the side at fault (client, backend, gatehouse) and kind.",
            MetricType::Counter,
            errors.iter().map(|((side, kind), n)| (vec![("side", *side), ("kind", *kind)], *n)),
            counter,
        )?;

        let one = |v| std::iter::once((Labels::new(), v));
        family(
            &mut e,
            "gatehouse_connections_active",
            "Client connections open now (HTTP/1.1 and HTTP/2).",
            MetricType::Gauge,
            one(clamp(self.connections.active())),
            gauge,
        )?;
        family(
            &mut e,
            "gatehouse_connections",
            "Client connections accepted (HTTP/1.1 and HTTP/2).",
            MetricType::Counter,
            one_u(self.connections.accepted()),
            counter,
        )?;

        let state = self.state.load();
        let mut backends = Vec::new();
        for c in state.router.routes() {
            for b in c.groups().into_iter().flat_map(|g| g.backends.iter()) {
                backends.push((c.site.to_string(), c.route.id.clone(), b.backend.url(), b.clone()));
            }
        }
        for st in &state.config.streams {
            for g in st.upstreams().filter_map(|up| state.groups.get(&up.key)) {
                for b in &g.backends {
                    backends.push((format!("stream:{}", st.name), st.name.clone(), b.backend.url(), b.clone()));
                }
            }
        }
        crate::stream_metrics::encode(&mut e, &self.streams)?;
        let per_backend = |pick: fn(&gatehouse_proxy::upstream::BackendState) -> u64| {
            backends.iter().map(move |(site, route, url, b)| {
                (vec![("site", site.as_str()), ("route", route.as_str()), ("backend", url.as_str())], pick(b))
            })
        };
        family(
            &mut e,
            "gatehouse_backend_requests",
            "Attempts sent to each backend (since its route was loaded).",
            MetricType::Counter,
            per_backend(|b| b.requests.load(Ordering::Relaxed)),
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_backend_failures",
            "Attempts to each backend that failed (since its route was loaded).",
            MetricType::Counter,
            per_backend(|b| b.failures.load(Ordering::Relaxed)),
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_backend_active_requests",
            "Requests in flight to each backend.",
            MetricType::Gauge,
            per_backend(|b| b.active.load(Ordering::Relaxed) as u64).map(|(l, v)| (l, clamp(v))),
            gauge,
        )?;

        family(
            &mut e,
            "gatehouse_backend_up",
            "1 while a backend is in rotation, 0 while health checks took it out or it is ejected.",
            MetricType::Gauge,
            per_backend(|b| u64::from(!b.health.is_down())).map(|(l, v)| (l, clamp(v))),
            gauge,
        )?;
        family(
            &mut e,
            "gatehouse_backend_breaker_state",
            "Each backend's circuit breaker: 0 closed, 1 open, 2 half-open (0 without a breaker).",
            MetricType::Gauge,
            per_backend(|b| u64::from(b.breaker.state_code())).map(|(l, v)| (l, clamp(v))),
            gauge,
        )?;
        family(
            &mut e,
            "gatehouse_backend_breaker_opened",
            "Times each backend's circuit breaker opened.",
            MetricType::Counter,
            per_backend(|b| b.breaker.opened.load(Ordering::Relaxed)),
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_backend_ejections",
            "Times passive checks ejected each backend.",
            MetricType::Counter,
            per_backend(|b| b.ejections.load(Ordering::Relaxed)),
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_backend_retries",
            "Retries sent to each backend (attempts after a failed one).",
            MetricType::Counter,
            per_backend(|b| b.retries.load(Ordering::Relaxed)),
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_bans",
            "Addresses banned now (every site; rate-limit violations and the admin API).",
            MetricType::Gauge,
            std::iter::once((Labels::new(), clamp(state.shared.bans.len() as u64))),
            gauge,
        )?;
        let certs: Vec<(String, i64)> = match &self.certs {
            Some(r) => r.store().certs().iter().map(|c| (c.info.subject.clone(), c.info.days_remaining())).collect(),
            None => Vec::new(),
        };
        family(
            &mut e,
            "gatehouse_certificate_days_left",
            "Days until each certificate expires (negative once expired).",
            MetricType::Gauge,
            certs.iter().map(|(s, d)| (vec![("subject", s.as_str())], *d)),
            gauge,
        )?;

        let w = self.writer.stats();
        let log = [
            ("written", w.written.load(Ordering::Relaxed)),
            ("dropped", w.dropped.load(Ordering::Relaxed)),
            ("failed", w.failed.load(Ordering::Relaxed)),
        ];
        family(
            &mut e,
            "gatehouse_request_log_rows",
            "Request-log rows written to the database, dropped (its queue was full) or lost (a failed write).",
            MetricType::Counter,
            log.iter().map(|(k, n)| (vec![("outcome", *k)], *n)),
            counter,
        )?;
        let reloads = [
            ("ok", self.metrics.reloads_ok.load(Ordering::Relaxed)),
            ("error", self.metrics.reloads_failed.load(Ordering::Relaxed)),
        ];
        family(
            &mut e,
            "gatehouse_config_reloads",
            "Configuration reloads, applied (ok) or refused (error).",
            MetricType::Counter,
            reloads.iter().map(|(k, n)| (vec![("result", *k)], *n)),
            counter,
        )?;
        family(
            &mut e,
            "gatehouse_config_version",
            "Version of the running configuration.",
            MetricType::Gauge,
            one(clamp(state.version)),
            gauge,
        )?;

        let p = process();
        family(
            &mut e,
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds.",
            MetricType::Counter,
            one_f(p.cpu_seconds),
            |m, v| m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(&v, None),
        )?;
        family(
            &mut e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
            one(clamp(p.resident)),
            gauge,
        )?;
        family(
            &mut e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricType::Gauge,
            one(clamp(p.virtual_bytes)),
            gauge,
        )?;
        family(&mut e, "process_open_fds", "Open file descriptors.", MetricType::Gauge, one(clamp(p.open_fds)), gauge)?;
        family(&mut e, "process_max_fds", "The open-file limit.", MetricType::Gauge, one(clamp(p.max_fds)), gauge)?;
        family(&mut e, "process_threads", "Threads in the process.", MetricType::Gauge, one(clamp(p.threads)), gauge)?;
        family(
            &mut e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            MetricType::Gauge,
            one_f(self.metrics.started),
            gauge_f,
        )?;
        Ok(())
    }
}

fn one_u(v: u64) -> std::iter::Once<(Labels<'static>, u64)> {
    std::iter::once((Labels::new(), v))
}

fn one_f(v: f64) -> std::iter::Once<(Labels<'static>, f64)> {
    std::iter::once((Labels::new(), v))
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What `/proc/self` says about the process.
#[derive(Debug, Default)]
struct Process {
    cpu_seconds: f64,
    resident: u64,
    virtual_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    threads: u64,
}

fn process() -> Process {
    let mut p = Process::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) close with ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // USER_HZ is 100 on every Linux this runs on.
        p.cpu_seconds = (ticks(11) + ticks(12)) as f64 / 100.0;
        p.threads = ticks(17);
        p.virtual_bytes = ticks(20);
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
        p.resident = kb.unwrap_or(0) * 1024;
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    p.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(site: &str, route: &str, method: &str, status: u16, ms: u64) -> AccessRecord {
        let mut r = AccessRecord::early("192.0.2.1".parse().expect("ip"), status, "x");
        r.error = None;
        r.site = Some(site.into());
        r.route = Some(route.into());
        r.method = Some(method.parse().expect("method"));
        r.duration = std::time::Duration::from_millis(ms);
        r.bytes_out = 10;
        r
    }

    #[test]
    fn requests_from_several_threads_are_summed_by_their_labels() {
        let m = Metrics::new(2);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    m.observe(&record("shop", "shop#0", "GET", 200, 3));
                    m.observe(&record("shop", "shop#0", "BREW", 503, 3000));
                });
            }
        });
        let (routes, _) = m.sum();
        let t = &routes[&("shop".to_string(), "shop#0".to_string())];
        assert_eq!(t.requests[0][1], 3, "GET 2xx");
        assert_eq!(t.requests[OTHER_METHOD][4], 3, "an unknown method counts as other");
        assert_eq!(t.duration[2], 3, "3 ms falls in the 5 ms bucket");
        assert_eq!(t.duration[11], 3, "3 s falls in the 5 s bucket");
        assert_eq!(t.bytes_out, 60);
    }
}
