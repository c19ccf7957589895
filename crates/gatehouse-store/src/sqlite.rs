//! The SQLite store. One connection per `Sqlite`; the writer thread owns the one that
//! writes, and readers (the admin API) open their own (WAL lets them read while it writes).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use rusqlite::OptionalExtension;

use crate::mask::{self, MaskIp, Redaction, RotatingSalt, mask_ip};
use crate::read::{REQUEST_COLUMNS, request};
use crate::retention::{self, Pruned, Retention};
use crate::rollup::{AgentClass, Rollup};
use crate::row::Batch;
use crate::{AuditEntry, BackendEvent, BanRow, CertificateRow, Store, StoreError, StoredRequest, schema};

/// Ids remembered by the writer before its caches start over (bounds their memory when a
/// flood brings many distinct user agents, hosts or clients).
const CACHE: usize = 100_000;
/// Bytes of remembered strings before that cache starts over.
const CACHE_BYTES: usize = 8 << 20;

pub struct Sqlite {
    conn: rusqlite::Connection,
    /// Key of the keyed hash stored beside each masked address (created with the database).
    key: aws_lc_rs::hmac::Key,
    /// Ids of the strings rows refer to (sites, routes, user agents, …).
    strings: Strings,
    /// Ids of the clients rows refer to, by full address and how it is masked.
    clients: HashMap<(IpAddr, MaskIp), i64>,
    /// The class of each user agent seen, by its string id.
    agents: HashMap<i64, AgentClass>,
    /// What is taken out of stored paths.
    redaction: Redaction,
    /// The daily salt of `MaskIp::Hash`, and the day the remembered client ids are of.
    salt: std::sync::Arc<RotatingSalt>,
    salt_day: i64,
}

impl Sqlite {
    /// Opens (creating it and its directory if needed) the database at `path`, in WAL
    /// mode with foreign keys on, and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let open_err = |reason| StoreError::Open { path: path.to_path_buf(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|reason| StoreError::Dir { path: dir.to_path_buf(), reason })?;
        }
        let mut conn = rusqlite::Connection::open(path).map_err(open_err)?;
        // WAL: readers never block the writer; NORMAL: a commit is durable once the WAL is
        // checkpointed, and a crash (kill -9) never corrupts the database.
        // Larger pages than the 4 KiB default: fewer page headers, WAL frames and B-tree
        // splits per row (the writer inserts about 11% faster). Takes effect on a new
        // database only.
        conn.pragma_update(None, "page_size", 16_384).map_err(open_err)?;
        // Lets the retention job give freed pages back (`PRAGMA incremental_vacuum`).
        // Takes effect on a new database only; older ones are converted by that job.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        let key = schema::hash_key(&conn)?;
        Ok(Sqlite {
            conn,
            key,
            strings: Strings::default(),
            clients: HashMap::new(),
            agents: HashMap::new(),
            redaction: Redaction::default(),
            salt: std::sync::Arc::default(),
            salt_day: i64::MIN,
        })
    }

    /// Takes out what `redaction` names from stored paths, besides the built-in secret words.
    pub fn with_redaction(mut self, redaction: Redaction) -> Sqlite {
        self.redaction = redaction;
        self
    }

    /// Shares the daily salt of `MaskIp::Hash` (with the access line log, so both show the
    /// same token).
    pub fn with_salt(mut self, salt: std::sync::Arc<RotatingSalt>) -> Sqlite {
        self.salt = salt;
        self
    }

    /// The keyed hash of a full client address, as stored beside its masked form.
    pub fn client_key(&self, ip: IpAddr) -> Vec<u8> {
        mask::client_key(&self.key, ip)
    }

    /// The connection, for reads this type has no method for (tests, tools).
    pub fn connection(&self) -> &rusqlite::Connection {
        &self.conn
    }

    /// Forgets the remembered ids (after rows that used them may have been deleted).
    /// Runs `sql` (a delete by one key) for each of `keys`, in one transaction.
    fn delete_keys(&mut self, sql: &str, keys: &[String]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare_cached(sql)?;
            for key in keys {
                delete.execute([key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn forget_ids(&mut self) {
        self.strings.clear();
        self.clients.clear();
        self.agents.clear();
    }
}

/// The id of `text` in `strings`, adding it when new.
/// The ids of strings the writer has seen, bounded in count and bytes.
#[derive(Default)]
struct Strings {
    ids: HashMap<Box<str>, i64>,
    bytes: usize,
}

impl Strings {
    fn get(&self, text: &str) -> Option<i64> {
        self.ids.get(text).copied()
    }

    fn insert(&mut self, text: &str, id: i64) {
        if self.ids.len() >= CACHE || self.bytes + text.len() > CACHE_BYTES {
            self.clear();
        }
        self.bytes += text.len();
        self.ids.insert(text.into(), id);
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.bytes = 0;
    }
}

fn string_id(conn: &rusqlite::Connection, cache: &mut Strings, text: &str) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(text) {
        return Ok(id);
    }
    let found: Option<i64> =
        conn.prepare_cached("SELECT id FROM strings WHERE text = ?1")?.query_row([text], |r| r.get(0)).optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            conn.prepare_cached("INSERT INTO strings (text) VALUES (?1)")?.execute([text])?;
            conn.last_insert_rowid()
        }
    };
    cache.insert(text, id);
    Ok(id)
}

fn opt_string_id(
    conn: &rusqlite::Connection,
    cache: &mut Strings,
    text: Option<&str>,
) -> rusqlite::Result<Option<i64>> {
    text.map(|t| string_id(conn, cache, t)).transpose()
}

/// The id of the client with full address `ip` stored as `mask` says, adding it (masked,
/// with its keyed hash) when new. One address masked two ways (two sites with their own
/// settings) is two clients with the same hash.
fn client_id(
    conn: &rusqlite::Connection,
    cache: &mut HashMap<(IpAddr, MaskIp), i64>,
    key: &aws_lc_rs::hmac::Key,
    salt: &RotatingSalt,
    mask: MaskIp,
    ip: IpAddr,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(&(ip, mask)) {
        return Ok(*id);
    }
    let hash = mask::client_key(key, ip);
    let masked = match mask {
        MaskIp::Hash => salt.token(ip),
        other => mask_ip(ip, other),
    };
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM clients WHERE key = ?1 AND masked = ?2")?
        .query_row(rusqlite::params![&hash, &masked], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            conn.prepare_cached("INSERT INTO clients (masked, key) VALUES (?1, ?2)")?
                .execute(rusqlite::params![masked, hash])?;
            conn.last_insert_rowid()
        }
    };
    if cache.len() >= CACHE {
        cache.clear();
    }
    cache.insert((ip, mask), id);
    Ok(id)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for Sqlite {
    fn insert_requests(&mut self, batch: &Batch) -> Result<(), StoreError> {
        // A new day's salt makes new tokens: the remembered ones are of yesterday.
        if self.salt.day() != self.salt_day {
            self.salt_day = self.salt.day();
            self.clients.clear();
        }
        let Sqlite { conn, key, strings, clients, agents, redaction, salt, .. } = self;
        let tx = conn.transaction()?;
        let mut rollup = Rollup::default();
        let result = (|| -> rusqlite::Result<()> {
            let mut insert = tx.prepare_cached(
                "INSERT INTO requests (time_us, site, route, backend, method, host, path, status, duration_us,
                   bytes_in, bytes_out, client, user_agent, country, request_id, retries, error_side, error_kind,
                   error_reason, trace_id, span_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
            )?;
            for r in batch.iter() {
                let mut s = |t| opt_string_id(&tx, strings, t);
                let (site, route, backend, method) = (s(r.site)?, s(r.route)?, s(r.backend)?, s(r.method)?);
                let (host, user_agent, country) = (s(Some(r.host))?, s(r.user_agent)?, s(r.country)?);
                let (side, kind) = (s(r.error.map(|e| e.side))?, s(r.error.map(|e| e.kind))?);
                let client = client_id(&tx, clients, key, salt, r.mask, r.client)?;
                let agent = match user_agent {
                    Some(id) => {
                        if agents.len() >= CACHE {
                            agents.clear();
                        }
                        *agents.entry(id).or_insert_with(|| AgentClass::of(r.user_agent))
                    }
                    None => AgentClass::Unknown,
                };
                rollup.add(&r, agent);
                insert.execute(rusqlite::params![
                    r.time_us,
                    site,
                    route,
                    backend,
                    method,
                    host,
                    redaction.apply(r.path),
                    r.status,
                    clamp(r.duration_us),
                    clamp(r.bytes_in),
                    clamp(r.bytes_out),
                    client,
                    user_agent,
                    country,
                    r.request_id,
                    r.retries,
                    side,
                    kind,
                    r.error.map(|e| e.reason),
                    r.trace.as_ref().map(|t| &t.0[..]),
                    r.trace.as_ref().map(|t| &t.1[..]),
                ])?;
            }
            rollup.store(&tx)
        })();
        match result {
            Ok(()) => Ok(tx.commit()?),
            Err(e) => {
                // Ids remembered during the failed transaction were rolled back with it.
                drop(tx);
                self.forget_ids();
                Err(e.into())
            }
        }
    }

    fn recent_requests(&self, limit: usize) -> Result<Vec<StoredRequest>, StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM request_log ORDER BY time_us DESC, id DESC LIMIT ?1"
        ))?;
        let rows = q.query_map([clamp(limit as u64)], request)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn audit(&mut self, e: &AuditEntry) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO audit_log (time_ms, source, action, detail) VALUES (?1, ?2, ?3, ?4)")?
            .execute(rusqlite::params![e.time_ms, e.source, e.action, e.detail])?;
        Ok(())
    }

    fn backend_event(&mut self, e: &BackendEvent) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO backend_events (time_ms, upstream, backend, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(rusqlite::params![e.time_ms, e.upstream, e.backend, e.kind, e.detail])?;
        Ok(())
    }

    fn save_service(&mut self, id: &str, record: &str, expires_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO services (id, record, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record, expires_ms = excluded.expires_ms",
            )?
            .execute(rusqlite::params![id, record, expires_ms])?;
        Ok(())
    }

    fn delete_services(&mut self, ids: &[String]) -> Result<(), StoreError> {
        self.delete_keys("DELETE FROM services WHERE id = ?1", ids)
    }

    fn save_ban(&mut self, b: &BanRow) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO bans (ip, until_ms, created_ms, reason) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ip) DO UPDATE SET until_ms = excluded.until_ms, created_ms = excluded.created_ms,
                   reason = excluded.reason",
            )?
            .execute(rusqlite::params![b.ip, b.until_ms, b.created_ms, b.reason])?;
        Ok(())
    }

    fn delete_bans(&mut self, ips: &[String]) -> Result<(), StoreError> {
        self.delete_keys("DELETE FROM bans WHERE ip = ?1", ips)
    }

    fn record_certificates(&mut self, now_ms: i64, certs: &[CertificateRow]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO certificates (subject, names, issuer, not_after, source, first_seen_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (subject, not_after, source) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
                   names = excluded.names, issuer = excluded.issuer",
            )?;
            for c in certs {
                upsert.execute(rusqlite::params![
                    c.subject,
                    c.names.join(", "),
                    c.issuer,
                    c.not_after,
                    c.source,
                    now_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn erase_client(&mut self, ip: IpAddr) -> Result<u64, StoreError> {
        let hash = self.client_key(ip);
        let tx = self.conn.transaction()?;
        let rows =
            tx.execute("DELETE FROM requests WHERE client IN (SELECT id FROM clients WHERE key = ?1)", [&hash])?;
        tx.execute("DELETE FROM clients WHERE key = ?1", [&hash])?;
        tx.commit()?;
        self.forget_ids();
        Ok(rows as u64)
    }

    fn apply_retention(&mut self, now_us: i64, r: &Retention) -> Result<Pruned, StoreError> {
        // Strings and clients may be deleted: the ids remembered must be looked up again.
        self.forget_ids();
        Ok(retention::apply(&self.conn, now_us, r)?)
    }
}
