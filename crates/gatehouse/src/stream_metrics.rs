//! The streams' families on `/metrics`: connections by how they ended, connections open,
//! bytes each way, TLS handshakes by version, and connection durations. Labelled by stream
//! name only (never by client).

use std::sync::atomic::Ordering;

use gatehouse_proxy::l4::{Engine, stats::BUCKETS};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::metrics::{Labels, counter, family, gauge};

pub fn encode(e: &mut DescriptorEncoder, engine: &Engine) -> std::fmt::Result {
    let streams = engine.stats();
    family(
        e,
        "gatehouse_stream_connections",
        "Stream connections that ended, by stream and how they ended.",
        MetricType::Counter,
        streams.iter().flat_map(|(name, s)| {
            s.outcomes().map(move |(o, n)| (vec![("stream", name.as_str()), ("outcome", o.as_str())], n))
        }),
        counter,
    )?;
    family(
        e,
        "gatehouse_stream_connections_active",
        "Stream connections open now.",
        MetricType::Gauge,
        streams.iter().map(|(name, s)| (vec![("stream", name.as_str())], s.active.load(Ordering::Relaxed).max(0))),
        gauge,
    )?;
    family(
        e,
        "gatehouse_stream_bytes",
        "Bytes moved by streams: in = from clients to backends, out = from backends to clients.",
        MetricType::Counter,
        streams.iter().flat_map(|(name, s)| {
            [("in", s.bytes_in.load(Ordering::Relaxed)), ("out", s.bytes_out.load(Ordering::Relaxed))]
                .map(|(dir, n)| (vec![("stream", name.as_str()), ("direction", dir)], n))
        }),
        counter,
    )?;
    family(
        e,
        "gatehouse_stream_tls_handshakes",
        "TLS handshakes completed with stream clients, by version.",
        MetricType::Counter,
        streams.iter().flat_map(|(name, s)| {
            [("TLSv1.2", s.tls12.load(Ordering::Relaxed)), ("TLSv1.3", s.tls13.load(Ordering::Relaxed))]
                .map(|(v, n)| (vec![("stream", name.as_str()), ("version", v)], n))
        }),
        counter,
    )?;
    let mut m = e.encode_descriptor(
        "gatehouse_stream_duration_seconds",
        "How long stream connections lasted.",
        None,
        MetricType::Histogram,
    )?;
    for (name, s) in &streams {
        let labels: Labels = vec![("stream", name.as_str())];
        let mut f = m.encode_family(&labels)?;
        let (counts, sum) = s.durations();
        // Per-bucket counts: the encoder makes them cumulative.
        let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(counts).collect();
        let count = counts.iter().sum();
        f.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}
