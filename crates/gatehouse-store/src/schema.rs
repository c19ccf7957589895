//! Versioned migrations. The schema version is SQLite's `user_version`; each migration
//! runs once, in its own transaction, in order. Later issues append migrations (health
//! history, breaker events, bans, …); a migration is never edited once released.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::StoreError;

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: request logs, the audit log, and the database's own settings.
    "CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE request_logs (
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        site TEXT,
        route TEXT,
        backend TEXT,
        method TEXT,
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        client TEXT NOT NULL,
        client_key BLOB NOT NULL,
        request_id TEXT,
        retries INTEGER NOT NULL,
        error_side TEXT,
        error_kind TEXT,
        error_reason TEXT
    );
    CREATE INDEX request_logs_time ON request_logs (time_ms);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX audit_log_time ON audit_log (time_ms);",
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations the database lacks; refuses a database from a newer Gatehouse.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found, known: VERSION });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database schema migrated");
    }
    Ok(())
}

/// The key of the keyed hash of client addresses: made at random when the database is
/// created and kept in it, so hashes stay comparable across restarts (GDPR lookups) and
/// mean nothing without the database.
pub(crate) fn hash_key(conn: &Connection) -> Result<aws_lc_rs::hmac::Key, StoreError> {
    let stored: Option<Vec<u8>> =
        conn.query_row("SELECT value FROM meta WHERE key = 'client_hash_key'", [], |r| r.get(0)).optional()?;
    let bytes = match stored {
        Some(b) if b.len() == 32 => b,
        _ => {
            let mut b = vec![0u8; 32];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| StoreError::Random)?;
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('client_hash_key', ?1)",
                rusqlite::params![b],
            )?;
            b
        }
    };
    Ok(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes))
}
