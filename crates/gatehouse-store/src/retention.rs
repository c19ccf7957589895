//! What the daily job deletes: request rows past their age (errors kept longer than the
//! rest), audit entries past theirs, then the strings and clients no row refers to any
//! more; the freed pages go back to the file system (incremental vacuum), so the database
//! stays bounded by the retention times and the traffic.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

/// How long each kind of record is kept (`data_retention`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Request rows that did not fail (`access_logs`).
    pub access: Duration,
    /// Request rows with status 400 or more, or a recorded error (`error_logs`).
    pub errors: Duration,
    /// Security records (bans, violations, WAF blocks; `security_logs`).
    pub security: Duration,
    /// The audit log (`audit_logs`).
    pub audit: Duration,
    /// Sites with their own `data_retention`: (site, access, errors) for their rows.
    pub sites: Vec<(String, Duration, Duration)>,
    /// Routes with their own: (route id, access, errors); before their site's.
    pub routes: Vec<(String, Duration, Duration)>,
}

impl Default for Retention {
    fn default() -> Self {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        Retention {
            access: days(7),
            errors: days(30),
            security: days(90),
            audit: days(365),
            sites: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub requests: u64,
    pub audit: u64,
    pub events: u64,
    pub strings: u64,
    pub clients: u64,
    pub hours: u64,
}

/// How long hourly rollups are kept.
pub const ROLLUPS: Duration = Duration::from_secs(400 * 86_400);

/// Rows deleted per statement: each delete is its own short transaction, so a large
/// backlog never holds the write lock for long.
const CHUNK: usize = 10_000;

fn cutoff(now_us: i64, keep: Duration) -> i64 {
    now_us.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX))
}

/// Deletes, `CHUNK` rows at a time, the rows of `table` that `condition` (with `?1` the
/// cut-off) selects.
fn delete_chunked(conn: &Connection, table: &str, condition: &str, cut: i64) -> rusqlite::Result<u64> {
    let sql = format!("DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {condition} LIMIT {CHUNK})");
    let mut total = 0;
    loop {
        let n = conn.execute(&sql, [cut])?;
        total += n as u64;
        if n < CHUNK {
            return Ok(total);
        }
    }
}

pub(crate) fn apply(conn: &Connection, now_us: i64, r: &Retention) -> rusqlite::Result<Pruned> {
    const ERROR: &str = "(status >= 400 OR error_side IS NOT NULL)";
    let mut pruned = Pruned::default();
    // Routes, then sites, with their own retention: their rows by their times; the rest by
    // the default.
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS retention_routes (route INTEGER PRIMARY KEY); DELETE FROM retention_routes;
         CREATE TEMP TABLE IF NOT EXISTS retention_sites (site INTEGER PRIMARY KEY); DELETE FROM retention_sites;",
    )?;
    const NOT_ROUTE: &str = "(route IS NULL OR route NOT IN (SELECT route FROM retention_routes))";
    const NOT_SITE: &str = "(site IS NULL OR site NOT IN (SELECT site FROM retention_sites))";
    let own = |column: &str, list: &[(String, Duration, Duration)], scope: &str| -> rusqlite::Result<u64> {
        let mut n = 0;
        for (name, access, errors) in list {
            let found: Option<i64> =
                conn.query_row("SELECT id FROM strings WHERE text = ?1", [name], |row| row.get(0)).optional()?;
            let Some(id) = found else { continue };
            conn.execute(&format!("INSERT OR IGNORE INTO retention_{column}s ({column}) VALUES (?1)"), [id])?;
            let mine = format!("{column} = {id} AND {scope}");
            let (a, e) = (cutoff(now_us, *access), cutoff(now_us, *errors));
            n += delete_chunked(conn, "requests", &format!("time_us < ?1 AND {mine} AND NOT {ERROR}"), a)?;
            n += delete_chunked(conn, "requests", &format!("time_us < ?1 AND {mine} AND {ERROR}"), e)?;
        }
        Ok(n)
    };
    pruned.requests += own("route", &r.routes, "1")?;
    pruned.requests += own("site", &r.sites, NOT_ROUTE)?;
    let rest = format!("{NOT_SITE} AND {NOT_ROUTE}");
    let (a, e) = (cutoff(now_us, r.access), cutoff(now_us, r.errors));
    pruned.requests += delete_chunked(conn, "requests", &format!("time_us < ?1 AND {rest} AND NOT {ERROR}"), a)?;
    pruned.requests += delete_chunked(conn, "requests", &format!("time_us < ?1 AND {rest} AND {ERROR}"), e)?;
    pruned.audit += delete_chunked(conn, "audit_log", "time_ms < ?1 / 1000", cutoff(now_us, r.audit))?;
    // Backend events explain errors: kept as long as error rows.
    pruned.events = delete_chunked(conn, "backend_events", "time_ms < ?1 / 1000", cutoff(now_us, r.errors))?;
    pruned.strings = conn.execute(
        "DELETE FROM strings WHERE id NOT IN (
            SELECT site FROM requests WHERE site IS NOT NULL
            UNION SELECT route FROM requests WHERE route IS NOT NULL
            UNION SELECT backend FROM requests WHERE backend IS NOT NULL
            UNION SELECT method FROM requests WHERE method IS NOT NULL
            UNION SELECT host FROM requests
            UNION SELECT user_agent FROM requests WHERE user_agent IS NOT NULL
            UNION SELECT country FROM requests WHERE country IS NOT NULL
            UNION SELECT error_side FROM requests WHERE error_side IS NOT NULL
            UNION SELECT error_kind FROM requests WHERE error_kind IS NOT NULL)",
        [],
    )? as u64;
    pruned.clients = conn.execute("DELETE FROM clients WHERE id NOT IN (SELECT client FROM requests)", [])? as u64;
    let hour = cutoff(now_us, ROLLUPS) / 1_000_000;
    pruned.hours = conn.execute("DELETE FROM hourly WHERE hour < ?1", [hour])? as u64;
    conn.execute("DELETE FROM hourly_counts WHERE hour < ?1", [hour])?;
    vacuum(conn)?;
    Ok(pruned)
}

/// Gives free pages back: incrementally when the database allows it, else (a database made
/// before incremental vacuum was turned on) once in full, which turns it on.
fn vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mode: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    if mode == 2 {
        conn.execute_batch("PRAGMA incremental_vacuum;")?;
    } else {
        tracing::info!("turning on incremental vacuum (one full VACUUM of the database)");
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    }
    // The WAL holds copies of the pages just written; truncate it too.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}
