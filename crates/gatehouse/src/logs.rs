//! The database and where access records go: the access line log (when `access` logging
//! is on) and the database's request log (`logging.requests`, on by default). Both take
//! records without blocking; their own threads format and write. Both mask the client
//! address as `logging.mask_ip_method` says (the database also keeps a keyed hash of the
//! whole one). The database is opened even with the request log off: the audit log and
//! the daily retention job use it.

use std::sync::Arc;

use crate::metrics::Metrics;
use gatehouse_config::{Config, MaskIpMethod};
use gatehouse_proxy::observe::{AccessRecord, LineSink, LogSink};
use gatehouse_store::{MaskIp, RequestRow, Retention, RotatingSalt, RowError, Sqlite, Writer, mask_addr};

/// Rows waiting for the database writer; beyond this they are dropped and counted.
const QUEUE: usize = 65_536;

struct Sinks {
    metrics: Arc<Metrics>,
    #[cfg(feature = "otlp")]
    otlp: Option<crate::otlp::Exporter>,
    line: Option<LineSink>,
    /// `log.access_file`: the access lines there instead of in the log stream.
    file: Option<crate::access_file::AccessFile>,
    store: Writer,
    /// `logging.requests` and `logging.mask_ip_method` of the main file; a site's own
    /// `logging` (carried by its records) overrides them.
    requests: bool,
    mask: MaskIp,
    /// The daily salt of `mask_ip_method: hash`, shared with the database writer.
    salt: Arc<RotatingSalt>,
}

impl LogSink for Sinks {
    fn record(&self, r: AccessRecord) {
        self.metrics.observe(&r);
        #[cfg(feature = "otlp")]
        if let Some(otlp) = &self.otlp {
            otlp.record(&r);
        }
        let (store, mask) = match r.site_log {
            Some(l) => (l.requests, mask_of(l.mask_ip)),
            None => (self.requests, self.mask),
        };
        if store {
            self.store.log(&row(&r, mask));
        }
        if self.line.is_some() || self.file.is_some() {
            let mut r = r;
            if mask == MaskIp::Hash {
                r.client_label = Some(self.salt.token(r.client));
            }
            r.client = mask_addr(r.client, mask);
            match (&self.file, &self.line) {
                (Some(file), _) => file.record(r),
                (None, Some(line)) => line.record(r),
                (None, None) => {}
            }
        }
    }
}

fn mask_of(m: MaskIpMethod) -> MaskIp {
    match m {
        MaskIpMethod::LastOctet => MaskIp::LastOctet,
        MaskIpMethod::None => MaskIp::Off,
        MaskIpMethod::Hash => MaskIp::Hash,
    }
}

/// Opens the database (starting its writer thread) and makes the sink the workers get:
/// metrics always, the line log, the request log and OTLP export when they are on. Needs
/// the control runtime's context (the OTLP export task runs there).
pub fn start(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<(Arc<dyn LogSink>, Writer)> {
    let file = config.log.access_file.as_ref().map(crate::access_file::AccessFile::start).transpose()?;
    let line = if file.is_none() && tracing::enabled!(target: "access", tracing::Level::INFO) {
        Some(LineSink::start()?)
    } else {
        None
    };
    let mask = mask_of(config.logging.mask_ip);
    let redaction = gatehouse_store::Redaction {
        secret_params: config.logging.secret_params.clone(),
        paths: config.logging.redact_paths.clone(),
    };
    let salt = Arc::new(RotatingSalt::default());
    let db = Sqlite::open(&config.storage_path)?.with_redaction(redaction).with_salt(salt.clone());
    let writer = Writer::start(db, QUEUE, config.workers)?;
    #[cfg(feature = "otlp")]
    let otlp = config.otlp.clone().map(crate::otlp::Exporter::start);
    #[cfg(not(feature = "otlp"))]
    if config.otlp.is_some() {
        anyhow::bail!("opentelemetry.endpoint is set, but this gatehouse was built without the `otlp` feature");
    }
    Ok((
        Arc::new(Sinks {
            metrics,
            #[cfg(feature = "otlp")]
            otlp,
            line,
            file,
            store: writer.clone(),
            requests: config.logging.requests,
            mask,
            salt,
        }),
        writer,
    ))
}

/// The retention job: once a minute after start, then daily, with the running
/// configuration's `data_retention`. Runs on the writer thread, between batches.
pub async fn retention(writer: Writer, state: gatehouse_proxy::StateHandle) {
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::time::sleep(wait).await;
        wait = std::time::Duration::from_secs(86_400);
        let config = state.load().config.clone();
        let r = config.retention;
        let sites = config
            .sites
            .iter()
            .filter_map(|s| s.retention.map(|own| (s.name.clone(), own.access, own.errors)))
            .collect();
        let routes = config
            .sites
            .iter()
            .flat_map(|s| &s.routes)
            .filter_map(|route| route.retention.map(|own| (route.id.clone(), own.access, own.errors)))
            .collect();
        let keep =
            Retention { access: r.access, errors: r.errors, security: r.security, audit: r.audit, sites, routes };
        writer.run(move |store| {
            let started = std::time::Instant::now();
            match store.apply_retention(gatehouse_store::now_us(), &keep) {
                Ok(p) => tracing::info!(
                    requests = p.requests,
                    audit = p.audit,
                    strings = p.strings,
                    clients = p.clients,
                    took_ms = started.elapsed().as_millis() as u64,
                    "retention: old records deleted"
                ),
                Err(e) => tracing::warn!(error = %e, "retention job failed; it runs again tomorrow"),
            }
        });
    }
}

/// The record as a row, borrowing its strings (this runs on a worker, per request).
fn row(r: &AccessRecord, mask: MaskIp) -> RequestRow<'_> {
    let time_us = r
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    RequestRow {
        time_us,
        site: r.site.as_deref(),
        route: r.route.as_deref(),
        backend: r.backend.as_deref(),
        method: r.method.as_ref().map(|m| m.as_str()),
        host: &r.host,
        path: &r.path,
        status: r.status,
        duration_us: u64::try_from(r.duration.as_micros()).unwrap_or(u64::MAX),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        client: r.client,
        mask,
        user_agent: r.user_agent.as_ref().and_then(|v| v.to_str().ok()),
        country: r.country.as_ref().and_then(|c| std::str::from_utf8(c).ok()),
        request_id: r.request_id.as_ref().and_then(|v| v.to_str().ok()),
        trace: r.trace.map(|t| (t.trace_id, t.span_id)),
        retries: r.retries,
        error: r.error.as_ref().map(|f| RowError { side: f.side.as_str(), kind: f.kind, reason: &f.reason }),
    }
}

/// Records the certificates now served in the database (on the writer thread).
pub fn record_certificates(writer: &Writer, store: &gatehouse_proxy::tls::Store) {
    let certs: Vec<gatehouse_store::CertificateRow> = store
        .certs()
        .iter()
        .map(|c| gatehouse_store::CertificateRow {
            subject: c.info.subject.clone(),
            names: c.info.names.clone(),
            issuer: c.info.issuer.clone(),
            not_after: c.info.not_after,
            source: c.info.source.clone(),
        })
        .collect();
    let now_ms = gatehouse_store::now_us() / 1000;
    writer.run(move |db| {
        if let Err(e) = db.record_certificates(now_ms, &certs) {
            tracing::warn!(error = %e, "certificates not recorded in the database");
        }
    });
}
