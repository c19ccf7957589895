//! Reading the database (admin API, tools): request logs with filters and pagination, a
//! client's rows for a subject-access export, the audit log. A `Reader` has its own
//! read-only connection; WAL lets it read while the writer writes.

use std::net::IpAddr;
use std::path::Path;

use rusqlite::{OpenFlags, ToSql};

use crate::{BackendEvent, BanRow, StoreError, StoredRequest, mask};

/// The columns `request` reads, in its order (from the `request_log` view).
pub(crate) const REQUEST_COLUMNS: &str = "id, time_us, site, route, backend, method, host, path, status, duration_us,
    bytes_in, bytes_out, client, user_agent, country, request_id, retries, error_side, error_kind, error_reason,
    trace_id, span_id";

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
        trace_id: r.get::<_, Option<String>>(20)?.filter(|t| !t.is_empty()),
        span_id: r.get::<_, Option<String>>(21)?.filter(|t| !t.is_empty()),
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
    /// A W3C trace id (32 lower-case hex digits).
    pub trace_id: Option<String>,
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
        eq(&mut sql, "trace_id", &q.trace_id);
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

    /// Backend events, newest first; of one backend (its URL) when given.
    pub fn backend_events(&self, backend: Option<&str>, limit: usize) -> Result<Vec<BackendEvent>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT time_ms, upstream, backend, kind, detail FROM backend_events
             WHERE ?1 IS NULL OR backend = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![backend, limit.min(1000) as i64], |r| {
            Ok(BackendEvent {
                time_ms: r.get(0)?,
                upstream: r.get(1)?,
                backend: r.get(2)?,
                kind: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The saved bans.
    pub fn bans(&self) -> Result<Vec<BanRow>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT ip, until_ms, created_ms, reason FROM bans ORDER BY until_ms")?;
        let rows = stmt.query_map([], |r| {
            Ok(BanRow { ip: r.get(0)?, until_ms: r.get(1)?, created_ms: r.get(2)?, reason: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The registry's saved instances: (record JSON, expiry in Unix milliseconds).
    pub fn services(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT record, expires_ms FROM services ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
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

/// Totals of the hourly rollups over a span, for one route or many.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    pub site: Option<String>,
    pub route: Option<String>,
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Mean time per request, in milliseconds.
    pub mean_ms: f64,
    /// Latency percentiles: the upper bound (ms) of the bucket where each falls; `None`
    /// when the share falls in the last, unbounded bucket or there were no requests.
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

/// Which rollups to read: hours from `since` (Unix seconds, inclusive) to `until`
/// (exclusive), optionally of one site.
#[derive(Debug, Clone, Default)]
pub struct Span {
    pub since: i64,
    pub until: i64,
    pub site: Option<String>,
}

impl Span {
    /// The WHERE clause over `hour` and `site` (parameters ?1, ?2, ?3).
    const WHERE: &str = "hour >= ?1 AND hour < ?2 AND (?3 IS NULL OR site = ?3)";

    fn args(&self) -> (i64, i64, Option<&str>) {
        (self.since, self.until, self.site.as_deref())
    }
}

/// The upper bound of the bucket where share `q` of `buckets` (bound, count) falls.
fn percentile(buckets: &[(Option<u64>, u64)], q: f64) -> Option<u64> {
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).ceil() as u64;
    let mut seen = 0;
    for (bound, n) in buckets {
        seen += n;
        if seen >= want.max(1) {
            return *bound;
        }
    }
    None
}

impl Reader {
    /// Totals per route over `span` (grouped by site and route when `by_route`, else one
    /// total), most requests first, at most `limit`.
    pub fn totals(&self, span: &Span, by_route: bool, limit: usize) -> Result<Vec<Totals>, StoreError> {
        let group = if by_route { "GROUP BY site, route ORDER BY sum(requests) DESC" } else { "" };
        let mut q = self.conn.prepare(&format!(
            "SELECT site, route, sum(requests), sum(client_errors), sum(server_errors), sum(bytes_in), sum(bytes_out),
                    sum(duration_us)
             FROM hourly WHERE {} {group} LIMIT {}",
            Span::WHERE,
            limit.min(1000)
        ))?;
        let (a, b, c) = span.args();
        let mut out: Vec<Totals> = q
            .query_map(rusqlite::params![a, b, c], |r| {
                let n = |i| r.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(0).max(0) as u64);
                let requests = n(2)?;
                Ok(Totals {
                    site: if by_route { r.get(0)? } else { None },
                    route: if by_route { r.get(1)? } else { None },
                    requests,
                    client_errors: n(3)?,
                    server_errors: n(4)?,
                    bytes_in: n(5)?,
                    bytes_out: n(6)?,
                    mean_ms: if requests == 0 { 0.0 } else { n(7)? as f64 / requests as f64 / 1000.0 },
                    ..Totals::default()
                })
            })?
            .collect::<Result<_, _>>()?;
        for t in &mut out {
            let mut q = self.conn.prepare_cached(&format!(
                "SELECT value, sum(count) FROM hourly_counts
                 WHERE {} AND dimension = 'latency_ms' AND (?4 IS NULL OR (site = ?4 AND route = ?5))
                 GROUP BY value",
                Span::WHERE
            ))?;
            let mut buckets: Vec<(Option<u64>, u64)> = q
                .query_map(rusqlite::params![a, b, c, t.site, t.route], |r| {
                    Ok((r.get::<_, String>(0)?.parse::<u64>().ok(), r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<Result<_, _>>()?;
            // Numeric order, `+Inf` (None) last.
            buckets.sort_by_key(|b| b.0.unwrap_or(u64::MAX));
            (t.p50_ms, t.p90_ms, t.p99_ms) =
                (percentile(&buckets, 0.5), percentile(&buckets, 0.9), percentile(&buckets, 0.99));
        }
        Ok(out)
    }

    /// Counts by one dimension (`status`, `agent`, `country`, `latency_ms`) over `span`,
    /// largest first.
    pub fn counts(&self, span: &Span, dimension: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT value, sum(count) AS n FROM hourly_counts WHERE {} AND dimension = ?4
             GROUP BY value ORDER BY n DESC, value",
            Span::WHERE
        ))?;
        let (a, b, c) = span.args();
        let rows = q.query_map(rusqlite::params![a, b, c, dimension], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests by weekday (0 = Sunday) and hour of day (UTC) over `span`.
    pub fn heatmap(&self, span: &Span) -> Result<[[u64; 24]; 7], StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT CAST(strftime('%w', hour, 'unixepoch') AS INTEGER), CAST(strftime('%H', hour, 'unixepoch') AS INTEGER),
                    sum(requests)
             FROM hourly WHERE {} GROUP BY 1, 2",
            Span::WHERE
        ))?;
        let (a, b, c) = span.args();
        let mut map = [[0u64; 24]; 7];
        let rows = q.query_map(rusqlite::params![a, b, c], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })?;
        for row in rows {
            let (day, hour, n) = row?;
            if let (Ok(d), Ok(h)) = (usize::try_from(day), usize::try_from(hour))
                && d < 7
                && h < 24
            {
                map[d][h] += n.max(0) as u64;
            }
        }
        Ok(map)
    }
}
