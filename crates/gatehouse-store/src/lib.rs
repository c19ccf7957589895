//! Gatehouse's embedded database: SQLite in WAL mode, with versioned migrations, a writer
//! thread that batches request-log rows from a bounded queue (dropping and counting when
//! the queue is full, so a request never waits on the disk), and the masking that keeps
//! client addresses and secrets out of what is stored.
//!
//! `Store` is the capability the rest of Gatehouse uses; `Sqlite` implements it. A
//! PostgreSQL implementation for several nodes can follow behind the same trait.

mod mask;
mod schema;
mod writer;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use mask::{MaskIp, mask_addr, mask_ip, redact_path};
pub use writer::{Writer, WriterStats};

/// One proxied request as it is stored. The client address arrives whole and is masked
/// (and hashed with the database's key) by the store, off the request path.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// Milliseconds since the Unix epoch, when the request head was complete.
    pub time_ms: i64,
    pub site: Option<String>,
    pub route: Option<String>,
    pub backend: Option<String>,
    pub method: Option<String>,
    pub host: String,
    /// Path and query as the client sent them; secrets are redacted before storing.
    pub path: String,
    pub status: u16,
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client: IpAddr,
    pub request_id: Option<String>,
    pub retries: u32,
    /// `client`, `backend` or `gatehouse`, with a short kind and the reason.
    pub error: Option<(String, String, String)>,
}

/// A stored request, as read back (client masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    pub id: i64,
    pub time_ms: i64,
    pub site: Option<String>,
    pub route: Option<String>,
    pub method: Option<String>,
    pub path: String,
    pub status: u16,
    pub client: String,
    pub request_id: Option<String>,
    pub error_side: Option<String>,
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
    fn insert_requests(&mut self, rows: &[RequestRow]) -> Result<(), StoreError>;
    /// The most recent request rows, newest first.
    fn recent_requests(&self, limit: usize) -> Result<Vec<StoredRequest>, StoreError>;
}

/// The SQLite store: one connection, owned by whoever writes (the writer thread).
pub struct Sqlite {
    conn: rusqlite::Connection,
    /// Key of the keyed hash stored beside each masked address (created with the database).
    key: aws_lc_rs::hmac::Key,
    mask: MaskIp,
    /// The last client's masked form and hash: consecutive rows mostly share a client.
    last: Option<(IpAddr, String, Vec<u8>)>,
}

impl Sqlite {
    /// Opens (creating it and its directory if needed) the database at `path`, in WAL
    /// mode with foreign keys on, and brings its schema up to date.
    pub fn open(path: &Path, mask: MaskIp) -> Result<Sqlite, StoreError> {
        let open_err = |reason| StoreError::Open { path: path.to_path_buf(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|reason| StoreError::Dir { path: dir.to_path_buf(), reason })?;
        }
        let mut conn = rusqlite::Connection::open(path).map_err(open_err)?;
        // WAL: readers never block the writer; NORMAL: a commit is durable once the WAL is
        // checkpointed, and a crash (kill -9) never corrupts the database.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        let key = schema::hash_key(&conn)?;
        Ok(Sqlite { conn, key, mask, last: None })
    }

    /// The keyed hash of a full client address, as stored beside its masked form.
    pub fn client_key(&self, ip: IpAddr) -> Vec<u8> {
        mask::client_key(&self.key, ip)
    }

    /// The stored forms of `ip` (masked, keyed hash), reusing the previous row's.
    fn client(&mut self, ip: IpAddr) -> (String, Vec<u8>) {
        match &self.last {
            Some((last, masked, key)) if *last == ip => (masked.clone(), key.clone()),
            _ => {
                let forms = (mask_ip(ip, self.mask), mask::client_key(&self.key, ip));
                self.last = Some((ip, forms.0.clone(), forms.1.clone()));
                forms
            }
        }
    }
}

impl Store for Sqlite {
    fn insert_requests(&mut self, rows: &[RequestRow]) -> Result<(), StoreError> {
        let clients: Vec<(String, Vec<u8>)> = rows.iter().map(|r| self.client(r.client)).collect();
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO request_logs (time_ms, site, route, backend, method, host, path, status, duration_us,
                   bytes_in, bytes_out, client, client_key, request_id, retries, error_side, error_kind, error_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?;
            for (r, (masked, key)) in rows.iter().zip(&clients) {
                let (side, kind, reason) = match &r.error {
                    Some((s, k, why)) => (Some(s.as_str()), Some(k.as_str()), Some(why.as_str())),
                    None => (None, None, None),
                };
                insert.execute(rusqlite::params![
                    r.time_ms,
                    r.site,
                    r.route,
                    r.backend,
                    r.method,
                    r.host,
                    redact_path(&r.path),
                    r.status,
                    i64::try_from(r.duration_us).unwrap_or(i64::MAX),
                    i64::try_from(r.bytes_in).unwrap_or(i64::MAX),
                    i64::try_from(r.bytes_out).unwrap_or(i64::MAX),
                    masked,
                    key,
                    r.request_id,
                    r.retries,
                    side,
                    kind,
                    reason,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn recent_requests(&self, limit: usize) -> Result<Vec<StoredRequest>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT id, time_ms, site, route, method, path, status, client, request_id, error_side
             FROM request_logs ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = q.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(StoredRequest {
                id: r.get(0)?,
                time_ms: r.get(1)?,
                site: r.get(2)?,
                route: r.get(3)?,
                method: r.get(4)?,
                path: r.get(5)?,
                status: r.get(6)?,
                client: r.get(7)?,
                request_id: r.get(8)?,
                error_side: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;
