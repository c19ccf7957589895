//! Reading the database (admin API, tools): request logs with filters and pagination, a
//! client's rows for a subject-access export, the audit log. A `Reader` has its own
//! read-only connection; WAL lets it read while the writer writes.

use std::net::IpAddr;
use std::path::Path;

use rusqlite::{OpenFlags, ToSql};

use crate::{StoreError, StoredRequest, mask};

/// The columns `request` reads, in its order (from the `request_log` view).
pub(crate) const REQUEST_COLUMNS: &str = "id, time_us, site, route, backend, method, host, path, status, duration_us,
    bytes_in, bytes_out, client, user_agent, country, request_id, retries, error_side, error_kind, error_reason";

pub(crate) fn request(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRequest> {
    Ok(StoredRequest {
        id: r.get(0)?,
        time_us: r.get(1)?,
        site: r.get(2)?,
        route: r.get(3)?,
        backend: r.get(4)?,
        method: r.get(5)?,
        host: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        path: r.get(7)?,
        status: r.get(8)?,
        duration_us: r.get(9)?,
        bytes_in: r.get(10)?,
        bytes_out: r.get(11)?,
        client: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
        user_agent: r.get(13)?,
        country: r.get(14)?,
        request_id: r.get(15)?,
        retries: r.get(16)?,
        error_side: r.get(17)?,
        error_kind: r.get(18)?,
        error_reason: r.get(19)?,
    })
}

/// Which request rows to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub site: Option<String>,
    pub route: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    /// An exact status (`404`).
    pub status: Option<u16>,
    /// A status class: 1 to 5 (`5` for 5xx).
    pub status_class: Option<u8>,
    /// Rows whose path starts with this.
    pub path_prefix: Option<String>,
    /// `client`, `backend` or `gatehouse`.
    pub error_side: Option<String>,
    pub request_id: Option<String>,
    /// Microseconds since the epoch, inclusive.
    pub since_us: Option<i64>,
    /// Microseconds since the epoch, exclusive.
    pub until_us: Option<i64>,
    /// Continue after this row (`time_us`, `id`) of an earlier page.
    pub after: Option<(i64, i64)>,
    pub limit: usize,
}

/// An audit-log entry as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub time_ms: i64,
    pub source: String,
    pub action: String,
    pub detail: Option<String>,
}

pub struct Reader {
    conn: rusqlite::Connection,
    key: aws_lc_rs::hmac::Key,
}

impl Reader {
    /// A read-only connection to the database at `path`, which must exist and be up to
    /// date (the writer creates and migrates it).
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|reason| StoreError::Open { path: path.to_path_buf(), reason })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let key = crate::schema::read_hash_key(&conn)?;
        Ok(Reader { conn, key })
    }

    /// Request rows matching `q`, newest first, at most `q.limit` (and at most 1000).
    pub fn logs(&self, q: &LogQuery) -> Result<Vec<StoredRequest>, StoreError> {
        let mut sql = format!("SELECT {REQUEST_COLUMNS} FROM request_log WHERE 1");
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        let mut eq = |sql: &mut String, column: &str, v: &Option<String>| {
            if let Some(v) = v {
                args.push(Box::new(v.clone()));
                sql.push_str(&format!(" AND {column} = ?{}", args.len()));
            }
        };
        eq(&mut sql, "site", &q.site);
        eq(&mut sql, "route", &q.route);
        eq(&mut sql, "host", &q.host);
        eq(&mut sql, "method", &q.method);
        eq(&mut sql, "error_side", &q.error_side);
        eq(&mut sql, "request_id", &q.request_id);
        if let Some(s) = q.status {
            args.push(Box::new(s));
            sql.push_str(&format!(" AND status = ?{}", args.len()));
        }
        if let Some(c) = q.status_class {
            args.push(Box::new(u16::from(c) * 100));
            sql.push_str(&format!(" AND status >= ?{n} AND status < ?{n} + 100", n = args.len()));
        }
        if let Some(p) = &q.path_prefix {
            args.push(Box::new(p.clone()));
            sql.push_str(&format!(" AND substr(path, 1, length(?{n})) = ?{n}", n = args.len()));
        }
        if let Some(t) = q.since_us {
            args.push(Box::new(t));
            sql.push_str(&format!(" AND time_us >= ?{}", args.len()));
        }
        if let Some(t) = q.until_us {
            args.push(Box::new(t));
            sql.push_str(&format!(" AND time_us < ?{}", args.len()));
        }
        if let Some((t, id)) = q.after {
            args.push(Box::new(t));
            args.push(Box::new(id));
            sql.push_str(&format!(" AND (time_us, id) < (?{}, ?{})", args.len() - 1, args.len()));
        }
        sql.push_str(&format!(" ORDER BY time_us DESC, id DESC LIMIT {}", q.limit.min(1000)));
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter().map(|a| &**a)), request)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every request row of the client with full address `ip` (not of the other addresses
    /// sharing its masked form), oldest first.
    pub fn client_rows(&self, ip: IpAddr) -> Result<Vec<StoredRequest>, StoreError> {
        let hash = mask::client_key(&self.key, ip);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {REQUEST_COLUMNS} FROM request_log
             WHERE id IN (SELECT r.id FROM requests r JOIN clients c ON c.id = r.client WHERE c.key = ?1)
             ORDER BY time_us, id"
        ))?;
        let rows = stmt.query_map([hash], request)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Audit entries, newest first, before entry `before` when given.
    pub fn audit(&self, limit: usize, before: Option<i64>) -> Result<Vec<AuditRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, time_ms, source, action, detail FROM audit_log WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![before.unwrap_or(i64::MAX), limit.min(1000) as i64], |r| {
            Ok(AuditRow { id: r.get(0)?, time_ms: r.get(1)?, source: r.get(2)?, action: r.get(3)?, detail: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
