//! Gatehouse's embedded database: SQLite in WAL mode, with versioned migrations, a writer
//! thread that batches request-log rows from a bounded queue (dropping and counting when
//! the queue is full, so a request never waits on the disk), and the masking that keeps
//! client addresses and secrets out of what is stored.
//!
//! `Store` is the capability the rest of Gatehouse uses; `Sqlite` implements it. A
//! PostgreSQL implementation for several nodes can follow behind the same trait.

mod mask;
mod row;
mod schema;
mod sqlite;
mod writer;

use std::path::PathBuf;

pub use mask::{MaskIp, mask_addr, mask_ip, redact_path};
pub use row::{Batch, RequestRow, RowError};
pub use sqlite::Sqlite;
pub use writer::{Writer, WriterStats};

/// A stored request, as read back (client masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub id: i64,
    pub time_us: i64,
    pub site: Option<String>,
    pub route: Option<String>,
    pub method: Option<String>,
    pub path: String,
    pub status: u16,
    pub client: String,
    pub request_id: Option<String>,
    pub error_side: Option<String>,
    pub user_agent: Option<String>,
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
}

#[cfg(test)]
mod tests;
