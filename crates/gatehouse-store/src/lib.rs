//! Gatehouse's embedded database: SQLite in WAL mode, with versioned migrations, a writer
//! thread that batches request-log rows from a bounded queue (dropping and counting when
//! the queue is full, so a request never waits on the disk), and the masking that keeps
//! client addresses and secrets out of what is stored.
//!
//! `Store` is the capability the rest of Gatehouse uses; `Sqlite` implements it. A
//! PostgreSQL implementation for several nodes can follow behind the same trait.

pub mod backup;
mod mask;
mod read;
mod retention;
mod rollup;
mod row;
mod schema;
mod sqlite;
pub mod time;
mod writer;

use std::net::IpAddr;
use std::path::PathBuf;

pub use read::{AuditRow, LogQuery, Reader, Span, Totals};
pub use retention::{Pruned, Retention};
pub use rollup::{AgentClass, LATENCY_MS, hour_of};

pub use mask::{MaskIp, Redaction, RotatingSalt, mask_addr, mask_ip, redact_path};
pub use row::{Batch, RequestRow, RowError};
pub use sqlite::Sqlite;
pub use writer::{Writer, WriterStats};

/// A stored request, as read back (client masked).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredRequest {
    pub id: i64,
    pub time_us: i64,
    pub site: Option<String>,
    pub route: Option<String>,
    pub backend: Option<String>,
    pub method: Option<String>,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub duration_us: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub client: String,
    pub user_agent: Option<String>,
    pub country: Option<String>,
    pub request_id: Option<String>,
    pub retries: u32,
    pub error_side: Option<String>,
    pub error_kind: Option<String>,
    pub error_reason: Option<String>,
    /// The W3C trace id and Gatehouse's span id (lower-case hex).
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

/// One entry of the audit log: who changed what, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Where the change came from: `api`, `sighup`, `file`, `startup`, …
    pub source: String,
    /// What happened: `config_reload`, `config_reload_failed`, `gdpr_erase`, …
    pub action: String,
    /// Details as JSON text (a diff, the errors, counts); never a secret or a full address.
    pub detail: String,
}

impl AuditEntry {
    /// An entry made now.
    pub fn now(source: impl Into<String>, action: impl Into<String>, detail: impl Into<String>) -> Self {
        AuditEntry { time_ms: now_us() / 1000, source: source.into(), action: action.into(), detail: detail.into() }
    }
}

/// Something that happened to a backend (health, ejection, breaker), as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackendEvent {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub upstream: String,
    pub backend: String,
    /// `down`, `up`, `ejected`, `breaker_open`, `breaker_half_open`, `breaker_closed`.
    pub kind: String,
    pub detail: String,
}

/// A banned address, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRow {
    pub ip: String,
    /// Unix milliseconds.
    pub until_ms: i64,
    pub created_ms: i64,
    pub reason: String,
}

/// A certificate being served, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    pub subject: String,
    pub names: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_after: i64,
    pub source: String,
}

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {reason}")]
    Open { path: PathBuf, reason: rusqlite::Error },
    #[error(
        "database {path} has schema version {found}, newer than this Gatehouse knows ({known}); use the newer binary or restore a backup"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("cannot create the database directory {path}: {reason}")]
    Dir { path: PathBuf, reason: std::io::Error },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("no randomness available for the client hash key")]
    Random,
    #[error("cannot start the database writer: {0}")]
    Thread(std::io::Error),
}

/// What Gatehouse stores and reads back.
pub trait Store: Send {
    /// Writes a batch of request rows in one transaction.
    fn insert_requests(&mut self, rows: &Batch) -> Result<(), StoreError>;
    /// The most recent request rows, newest first.
    fn recent_requests(&self, limit: usize) -> Result<Vec<StoredRequest>, StoreError>;
    /// Appends an entry to the audit log.
    fn audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Appends a backend event.
    fn backend_event(&mut self, e: &BackendEvent) -> Result<(), StoreError>;
    /// Saves a registry instance (`record`: its JSON), replacing one with its id.
    fn save_service(&mut self, id: &str, record: &str, expires_ms: i64) -> Result<(), StoreError>;
    /// Forgets registry instances.
    fn delete_services(&mut self, ids: &[String]) -> Result<(), StoreError>;
    /// Saves a ban (replacing one of the same address).
    fn save_ban(&mut self, ban: &BanRow) -> Result<(), StoreError>;
    /// Forgets bans.
    fn delete_bans(&mut self, ips: &[String]) -> Result<(), StoreError>;
    /// Notes the certificates served at `now_ms` (new ones added, known ones seen again).
    fn record_certificates(&mut self, now_ms: i64, certs: &[CertificateRow]) -> Result<(), StoreError>;
    /// Deletes every request row of the client with full address `ip` (matched on its
    /// keyed hash, so the other addresses sharing its masked form keep theirs) and the
    /// client itself; returns the rows deleted.
    fn erase_client(&mut self, ip: IpAddr) -> Result<u64, StoreError>;
    /// Deletes what `retention` says is due at `now_us`, then what no row refers to any
    /// more, and gives the freed pages back to the file system.
    fn apply_retention(&mut self, now_us: i64, retention: &Retention) -> Result<Pruned, StoreError>;
}

#[cfg(test)]
mod tests;
