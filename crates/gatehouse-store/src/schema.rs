//! Versioned migrations. The schema version is SQLite's `user_version`; each migration
//! runs once, in its own transaction, in order. Later issues append migrations (health
//! history, breaker events, bans, …); a migration is never edited once released.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::StoreError;

/// The `request_log` view (since migration 4): request rows with their strings and
/// masked client spelled out, as tools and the admin API read them.
macro_rules! request_log_view {
    () => {
        "
        CREATE VIEW request_log AS
        SELECT r.id, r.time_us, site.text AS site, route.text AS route, backend.text AS backend,
            method.text AS method, host.text AS host, r.path, r.status, r.duration_us, r.bytes_in,
            r.bytes_out, c.masked AS client, ua.text AS user_agent, country.text AS country,
            r.request_id, r.retries, side.text AS error_side, kind.text AS error_kind, r.error_reason,
            lower(hex(r.trace_id)) AS trace_id, lower(hex(r.span_id)) AS span_id
        FROM requests r
        LEFT JOIN strings site ON site.id = r.site
        LEFT JOIN strings route ON route.id = r.route
        LEFT JOIN strings backend ON backend.id = r.backend
        LEFT JOIN strings method ON method.id = r.method
        LEFT JOIN strings host ON host.id = r.host
        LEFT JOIN clients c ON c.id = r.client
        LEFT JOIN strings ua ON ua.id = r.user_agent
        LEFT JOIN strings country ON country.id = r.country
        LEFT JOIN strings side ON side.id = r.error_side
        LEFT JOIN strings kind ON kind.id = r.error_kind;"
    };
}

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
    // 2: request rows name their repeated strings (site, route, backend, method, host,
    // user agent, error side and kind) and their client by id, and their time in
    // microseconds (rows from several workers interleave; the time orders them). A row
    // shrinks from about 190 to about 100 bytes and costs the writer less; the
    // `request_log` view (migration 4) spells the ids out. No foreign keys on `requests`: checking eight of them per row would cost more
    // than the row, and only the writer thread inserts, resolving every id it writes.
    "CREATE TABLE strings (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL UNIQUE
    );
    CREATE TABLE clients (
        id INTEGER PRIMARY KEY,
        masked TEXT NOT NULL,
        key BLOB NOT NULL UNIQUE
    );
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        time_us INTEGER NOT NULL,
        site INTEGER,
        route INTEGER,
        backend INTEGER,
        method INTEGER,
        host INTEGER NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        client INTEGER NOT NULL,
        user_agent INTEGER,
        country INTEGER,
        request_id TEXT,
        retries INTEGER NOT NULL,
        error_side INTEGER,
        error_kind INTEGER,
        error_reason TEXT
    );
    CREATE INDEX requests_time ON requests (time_us);
    INSERT OR IGNORE INTO strings (text)
        SELECT site FROM request_logs WHERE site IS NOT NULL
        UNION SELECT route FROM request_logs WHERE route IS NOT NULL
        UNION SELECT backend FROM request_logs WHERE backend IS NOT NULL
        UNION SELECT method FROM request_logs WHERE method IS NOT NULL
        UNION SELECT host FROM request_logs
        UNION SELECT error_side FROM request_logs WHERE error_side IS NOT NULL
        UNION SELECT error_kind FROM request_logs WHERE error_kind IS NOT NULL;
    INSERT OR IGNORE INTO clients (masked, key) SELECT client, client_key FROM request_logs ORDER BY id;
    INSERT INTO requests (time_us, site, route, backend, method, host, path, status, duration_us, bytes_in,
            bytes_out, client, request_id, retries, error_side, error_kind, error_reason)
        SELECT l.time_ms * 1000,
            (SELECT id FROM strings WHERE text = l.site), (SELECT id FROM strings WHERE text = l.route),
            (SELECT id FROM strings WHERE text = l.backend), (SELECT id FROM strings WHERE text = l.method),
            (SELECT id FROM strings WHERE text = l.host), l.path, l.status, l.duration_us, l.bytes_in,
            l.bytes_out, (SELECT id FROM clients WHERE key = l.client_key), l.request_id, l.retries,
            (SELECT id FROM strings WHERE text = l.error_side), (SELECT id FROM strings WHERE text = l.error_kind),
            l.error_reason
        FROM request_logs l ORDER BY l.id;
    DROP TABLE request_logs;",
    // 3: hourly rollups per site and route (`rollup.rs`); kept longer than the rows.
    "CREATE TABLE hourly (
        hour INTEGER NOT NULL,
        site TEXT NOT NULL,
        route TEXT NOT NULL,
        requests INTEGER NOT NULL,
        client_errors INTEGER NOT NULL,
        server_errors INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        PRIMARY KEY (hour, site, route)
    ) WITHOUT ROWID;
    CREATE TABLE hourly_counts (
        hour INTEGER NOT NULL,
        site TEXT NOT NULL,
        route TEXT NOT NULL,
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (hour, site, route, dimension, value)
    ) WITHOUT ROWID;",
    // 4: the W3C trace id and Gatehouse's span id of each request.
    concat!(
        "ALTER TABLE requests ADD COLUMN trace_id BLOB;
        ALTER TABLE requests ADD COLUMN span_id BLOB;
        DROP VIEW IF EXISTS request_log;",
        request_log_view!()
    ),
    // 5: a client is an address and how it is masked (sites may mask differently), so the
    // hash alone is no longer unique.
    // The view reads `clients`, so it goes while the table is rebuilt.
    concat!(
        "DROP VIEW request_log;
        CREATE TABLE clients_v5 (
            id INTEGER PRIMARY KEY,
            masked TEXT NOT NULL,
            key BLOB NOT NULL,
            UNIQUE (key, masked)
        );
        INSERT INTO clients_v5 (id, masked, key) SELECT id, masked, key FROM clients;
        DROP TABLE clients;
        ALTER TABLE clients_v5 RENAME TO clients;",
        request_log_view!()
    ),
    // 6: the certificates served, with when each was first and last seen (renewals and
    // replacements stay visible).
    "CREATE TABLE certificates (
        subject TEXT NOT NULL,
        names TEXT NOT NULL,
        issuer TEXT NOT NULL,
        not_after INTEGER NOT NULL,
        source TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        PRIMARY KEY (subject, not_after, source)
    ) WITHOUT ROWID;",
    // 7: what happened to backends: health checks taking them out and back, passive
    // ejections, circuit breakers opening and closing. Rare rows, kept as text.
    "CREATE TABLE backend_events (
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        upstream TEXT NOT NULL,
        backend TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX backend_events_time ON backend_events (time_ms);
    CREATE INDEX backend_events_backend ON backend_events (backend, id);",
    // 8: the service registry's instances, so registrations survive a restart. The record
    // is the instance as JSON (the admin API's form).
    "CREATE TABLE services (
        id TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 9: banned addresses (rate-limit violations, the admin API), so bans survive a
    // restart. The address is stored whole: a ban must match it exactly.
    "CREATE TABLE bans (
        ip TEXT PRIMARY KEY,
        until_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        reason TEXT NOT NULL
    ) WITHOUT ROWID;",
];

/// The SQL of migration `n` (1-based), for tests that build an older database.
#[cfg(test)]
pub(crate) fn migration(n: usize) -> &'static str {
    MIGRATIONS[n - 1]
}

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

/// The stored key, for a read-only connection (the writer made it when it created the
/// database).
pub(crate) fn read_hash_key(conn: &Connection) -> Result<aws_lc_rs::hmac::Key, StoreError> {
    let bytes: Vec<u8> = conn.query_row("SELECT value FROM meta WHERE key = 'client_hash_key'", [], |r| r.get(0))?;
    Ok(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &bytes))
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
