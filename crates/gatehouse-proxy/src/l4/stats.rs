//! Per-stream counters, read by the metrics endpoint: connections by how they ended,
//! connections open, bytes each way, TLS versions, and durations. Atomics only; kept
//! across reloads while the stream keeps its name.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// How a stream connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both sides finished.
    Closed,
    /// `allow`/`deny`, or a ban.
    Denied,
    /// `max_connections` or `max_connections_per_ip`.
    Limited,
    /// A PROXY header was required and missing or malformed.
    ProxyHeader,
    /// The client's opening (STARTTLS dialogue, SSLRequest…) was not what the protocol allows.
    Protocol,
    /// A client tried to go on without TLS where TLS is required.
    TlsRequired,
    /// The TLS handshake with the client failed or timed out.
    Handshake,
    /// No route for the client's SNI.
    NoRoute,
    /// No backend could be reached (or it refused TLS).
    Backend,
    Idle,
    MaxDuration,
    /// A read or write failed midway.
    Reset,
    /// The listener stopped (reload or shutdown) and the drain time ran out.
    Drained,
}

impl Outcome {
    pub const ALL: [Outcome; 13] = [
        Outcome::Closed,
        Outcome::Denied,
        Outcome::Limited,
        Outcome::ProxyHeader,
        Outcome::Protocol,
        Outcome::TlsRequired,
        Outcome::Handshake,
        Outcome::NoRoute,
        Outcome::Backend,
        Outcome::Idle,
        Outcome::MaxDuration,
        Outcome::Reset,
        Outcome::Drained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::Denied => "denied",
            Outcome::Limited => "limited",
            Outcome::ProxyHeader => "proxy_header",
            Outcome::Protocol => "protocol_error",
            Outcome::TlsRequired => "tls_required",
            Outcome::Handshake => "handshake_failed",
            Outcome::NoRoute => "no_route",
            Outcome::Backend => "backend_failed",
            Outcome::Idle => "idle_timeout",
            Outcome::MaxDuration => "max_duration",
            Outcome::Reset => "reset",
            Outcome::Drained => "drained",
        }
    }

    /// The status its access record carries (the HTTP one with the same meaning).
    pub fn status(self) -> u16 {
        match self {
            Outcome::Closed | Outcome::Idle | Outcome::MaxDuration | Outcome::Reset | Outcome::Drained => 200,
            Outcome::Denied => 403,
            Outcome::Limited => 429,
            Outcome::ProxyHeader | Outcome::Protocol | Outcome::Handshake => 400,
            Outcome::TlsRequired => 426,
            Outcome::NoRoute => 421,
            Outcome::Backend => 502,
        }
    }
}

/// Duration buckets (seconds) of the connection-duration histogram.
pub const BUCKETS: [f64; 8] = [0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0];

#[derive(Debug, Default)]
pub struct Stats {
    outcomes: [AtomicU64; 13],
    pub active: AtomicI64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub tls12: AtomicU64,
    pub tls13: AtomicU64,
    /// Counts per bucket (the last is above every edge), and the sum in microseconds.
    durations: [AtomicU64; 9],
    duration_us: AtomicU64,
}

impl Stats {
    pub fn ended(&self, outcome: Outcome, took: Duration) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let b = BUCKETS.iter().position(|edge| secs <= *edge).unwrap_or(BUCKETS.len());
        self.durations[b].fetch_add(1, Ordering::Relaxed);
        self.duration_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Connections that ended with each outcome.
    pub fn outcomes(&self) -> impl Iterator<Item = (Outcome, u64)> + '_ {
        Outcome::ALL.iter().zip(&self.outcomes).map(|(o, n)| (*o, n.load(Ordering::Relaxed)))
    }

    /// (count per bucket, not cumulative; the last is above every edge), sum in seconds.
    pub fn durations(&self) -> ([u64; 9], f64) {
        let counts = std::array::from_fn(|i| self.durations[i].load(Ordering::Relaxed));
        (counts, self.duration_us.load(Ordering::Relaxed) as f64 / 1e6)
    }
}
