//! Built-in backups. A backup is one gzip-compressed SQLite file,
//! `gatehouse-YYYYMMDDTHHMMSSZ.db.gz`: an online copy of the database (`VACUUM INTO`,
//! consistent while the writer writes) with the files under the state directory (the ACME
//! account and issued certificates) in its table `backup_files`. Each is checked
//! (`PRAGMA integrity_check`) before it is kept.
//!
//! Tiered retention keeps every backup of the last `hourly` span, then the newest of each
//! day for `daily`, then the newest of each week for `weekly`, and deletes the rest.
//!
//! A running Gatehouse holds an exclusive lock on `<database>.lock`; `restore` refuses to
//! replace a database whose lock is held unless forced.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::time::{civil, days_from_civil};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0} failed its integrity check: {1}")]
    Corrupt(PathBuf, String),
    #[error("no backup in {0} from {1} or before")]
    NoneBefore(PathBuf, String),
    #[error(
        "the database {0} is in use by a running Gatehouse; stop it first, or restore with --force (the running process keeps its open copy until restarted)"
    )]
    InUse(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(path.to_path_buf(), e)
}

/// One backup file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupInfo {
    pub path: PathBuf,
    /// Unix seconds, from the file name.
    pub time: i64,
    pub bytes: u64,
}

/// What a backup holds, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub requests: u64,
    pub audit_entries: u64,
    pub files: u64,
}

/// How long each tier keeps backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiers {
    pub hourly: Duration,
    pub daily: Duration,
    pub weekly: Duration,
}

impl Default for Tiers {
    fn default() -> Self {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        Tiers { hourly: days(7), daily: days(28), weekly: days(91) }
    }
}

/// `gatehouse-20261206T051927Z.db.gz` for Unix seconds.
fn file_name(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    format!("gatehouse-{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z.db.gz", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Unix seconds from a backup's file name.
fn time_of(name: &str) -> Option<i64> {
    let stamp = name.strip_prefix("gatehouse-")?.strip_suffix("Z.db.gz")?;
    let (date, time) = stamp.split_once('T')?;
    if date.len() != 8 || time.len() != 6 || !stamp.bytes().all(|b| b.is_ascii_digit() || b == b'T') {
        return None;
    }
    let n = |s: &str| s.parse::<i64>().ok();
    let days = days_from_civil(n(&date[..4])?, n(&date[4..6])?, n(&date[6..])?)?;
    Some(days * 86_400 + n(&time[..2])? * 3600 + n(&time[2..4])? * 60 + n(&time[4..])?)
}

/// Parses `2026-12-06T05:19:27Z`, `2026-12-06T05:19:27`, `2026-12-06 05:19` or
/// `2026-12-06` (UTC) into Unix seconds; a date alone means the end of that day.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim().trim_end_matches('Z');
    let (date, time) = t.split_once(['T', ' ']).map_or((t, None), |(d, tm)| (d, Some(tm)));
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    if parts.next().is_some() {
        return None;
    }
    let day = days_from_civil(y, m, d)? * 86_400;
    let Some(time) = time else { return Some(day + 86_399) };
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi) = (hms.next()??, hms.next()??);
    let s = hms.next().unwrap_or(Some(0))?;
    ((0..24).contains(&h) && (0..60).contains(&mi) && (0..61).contains(&s)).then_some(day + h * 3600 + mi * 60 + s)
}

/// The lock a running Gatehouse holds on its database.
pub struct DbLock(#[allow(dead_code)] File);

fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

impl DbLock {
    /// Takes the lock, or `None` when another process holds it.
    pub fn take(db: &Path) -> Result<Option<DbLock>, BackupError> {
        let path = lock_path(db);
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(DbLock(file))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(BackupError::Io(path, e.into())),
        }
    }
}

/// Files under `root`, as (path relative to it, content), in a stable order.
fn files_under(root: &Path) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BackupError::Io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path).map_err(io(&path))?));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn integrity(conn: &Connection, path: &Path) -> Result<(), BackupError> {
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check == "ok" { Ok(()) } else { Err(BackupError::Corrupt(path.to_path_buf(), check)) }
}

/// Takes a backup of `db` (with the files under `files`) into `dir`, as of `now` (Unix
/// seconds); returns its path.
pub fn create(db: &Path, files: &Path, dir: &Path, now: i64) -> Result<PathBuf, BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let target = dir.join(file_name(now));
    let raw = dir.join(format!(".{}.tmp", file_name(now)));
    let _ = std::fs::remove_file(&raw);
    {
        let source = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        source.busy_timeout(Duration::from_secs(10))?;
        source.execute("VACUUM INTO ?1", [raw.to_string_lossy()])?;
    }
    let result = (|| {
        let copy = Connection::open(&raw)?;
        copy.execute_batch(
            "PRAGMA journal_mode = DELETE;
             CREATE TABLE backup_files (path TEXT PRIMARY KEY, content BLOB NOT NULL);",
        )?;
        {
            let mut insert = copy.prepare("INSERT INTO backup_files (path, content) VALUES (?1, ?2)")?;
            for (path, content) in files_under(files)? {
                insert.execute(rusqlite::params![path, content])?;
            }
        }
        integrity(&copy, &raw)?;
        drop(copy);
        let partial = dir.join(format!(".{}.partial", file_name(now)));
        compress(&raw, &partial)?;
        std::fs::rename(&partial, &target).map_err(io(&target))
    })();
    let _ = std::fs::remove_file(&raw);
    result.map(|()| target)
}

fn compress(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut input = File::open(from).map_err(io(from))?;
    let out = File::create(to).map_err(io(to))?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut gz).map_err(io(to))?;
    let out = gz.finish().map_err(io(to))?;
    out.sync_all().map_err(io(to))
}

/// Decompresses a backup into a temporary SQLite file beside `near` (removed on drop).
fn unpack(backup: &Path, near: &Path) -> Result<tempfile::TempPath, BackupError> {
    let dir = near.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    let mut gz = flate2::read::GzDecoder::new(File::open(backup).map_err(io(backup))?);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = gz.read(&mut buf).map_err(io(backup))?;
        if n == 0 {
            break;
        }
        tmp.write_all(&buf[..n]).map_err(io(backup))?;
    }
    tmp.as_file().sync_all().map_err(io(backup))?;
    Ok(tmp.into_temp_path())
}

fn check_unpacked(path: &Path, backup: &Path) -> Result<Checked, BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| BackupError::Corrupt(backup.to_path_buf(), e.to_string()))?;
    integrity(&conn, backup).map_err(|e| match e {
        BackupError::Sql(s) => BackupError::Corrupt(backup.to_path_buf(), s.to_string()),
        other => other,
    })?;
    let count = |sql: &str| -> Result<u64, BackupError> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(|e| BackupError::Corrupt(backup.to_path_buf(), format!("not a Gatehouse backup: {e}")))
    };
    Ok(Checked {
        requests: count("SELECT count(*) FROM requests")?,
        audit_entries: count("SELECT count(*) FROM audit_log")?,
        files: count("SELECT count(*) FROM backup_files")?,
    })
}

/// Decompresses and checks a backup.
pub fn verify(backup: &Path) -> Result<Checked, BackupError> {
    let tmp = unpack(backup, &std::env::temp_dir().join("x"))?;
    check_unpacked(&tmp, backup)
}

/// Backups in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<BackupInfo>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::Io(dir.to_path_buf(), e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(time) = time_of(&name) {
            let bytes = entry.metadata().map_err(io(&entry.path()))?.len();
            out.push(BackupInfo { path: entry.path(), time, bytes });
        }
    }
    out.sort_by_key(|b| b.time);
    Ok(out)
}

/// The newest backup taken at `at` (Unix seconds) or before.
pub fn pick(dir: &Path, at: i64) -> Result<BackupInfo, BackupError> {
    list(dir)?.into_iter().rev().find(|b| b.time <= at).ok_or_else(|| {
        BackupError::NoneBefore(dir.to_path_buf(), file_name(at).trim_start_matches("gatehouse-").replace(".db.gz", ""))
    })
}

/// Restores `backup`: its files back under `files`, then its database in place of `db`
/// (the old WAL and shared-memory files removed). Refuses while a running Gatehouse holds
/// the database, unless `force`.
pub fn restore(backup: &Path, db: &Path, files: &Path, force: bool) -> Result<Checked, BackupError> {
    let lock = DbLock::take(db)?;
    if lock.is_none() && !force {
        return Err(BackupError::InUse(db.to_path_buf()));
    }
    let tmp = unpack(backup, db)?;
    let checked = check_unpacked(&tmp, backup)?;
    {
        let conn = Connection::open(&tmp)?;
        let mut q = conn.prepare("SELECT path, content FROM backup_files")?;
        let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        for row in rows {
            let (rel, content) = row?;
            // Only relative paths without `..` were written; anything else is not ours.
            let rel = Path::new(&rel);
            if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                continue;
            }
            let path = files.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&path, content).map_err(io(&path))?;
        }
        conn.execute_batch("DROP TABLE backup_files; PRAGMA journal_mode = WAL;")?;
    }
    for suffix in ["-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    tmp.persist(db).map_err(|e| BackupError::Io(db.to_path_buf(), e.error))?;
    drop(lock);
    Ok(checked)
}

/// Deletes the backups `tiers` no longer keeps at `now` (Unix seconds); returns them.
pub fn prune(dir: &Path, now: i64, tiers: &Tiers) -> Result<Vec<PathBuf>, BackupError> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let mut kept_days = std::collections::HashSet::new();
    let mut kept_weeks = std::collections::HashSet::new();
    let mut deleted = Vec::new();
    // Newest first: the first backup seen of a day (or week) is the one kept.
    for b in list(dir)?.into_iter().rev() {
        let age = now - b.time;
        let day = b.time.div_euclid(86_400);
        // Weeks from Monday (1970-01-01 was a Thursday).
        let week = (day + 3).div_euclid(7);
        let keep = if age <= secs(tiers.hourly) {
            true
        } else if age <= secs(tiers.daily) {
            kept_days.insert(day)
        } else if age <= secs(tiers.weekly) {
            kept_weeks.insert(week)
        } else {
            false
        };
        // A day's kept backup also stands for its week.
        if keep {
            kept_days.insert(day);
            kept_weeks.insert(week);
        } else {
            std::fs::remove_file(&b.path).map_err(io(&b.path))?;
            deleted.push(b.path);
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times_round_trip() {
        for t in [0, 951_782_400, 1_796_533_167, 4_102_444_799] {
            assert_eq!(time_of(&file_name(t)), Some(t), "{}", file_name(t));
        }
        assert_eq!(file_name(1_796_533_167), "gatehouse-20261206T045927Z.db.gz");
        assert_eq!(parse_time("2026-12-06T04:59:27Z"), Some(1_796_533_167));
        assert_eq!(parse_time("2026-12-06 04:59"), Some(1_796_533_140));
        assert_eq!(parse_time("2026-12-06"), Some(1_796_601_599), "a date alone is its last second");
        for bad in ["yesterday", "2026-02-31", "2026-12-06T25:00", "2026-12", "gatehouse-x"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(time_of("gatehouse-20260231T000000Z.db.gz"), None);
    }

    #[test]
    fn tiers_keep_hourly_then_daily_then_weekly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = 1_796_533_167 - 1_796_533_167 % 3600;
        // One backup an hour for 120 days.
        for h in 0..120 * 24 {
            std::fs::write(dir.path().join(file_name(now - h * 3600)), b"x").expect("write");
        }
        prune(dir.path(), now, &Tiers::default()).expect("prune");
        let left: Vec<i64> = list(dir.path()).expect("list").iter().map(|b| (now - b.time) / 3600).collect();
        let (hourly, rest): (Vec<i64>, Vec<i64>) = left.iter().partition(|h| **h <= 7 * 24);
        assert_eq!(hourly.len(), 7 * 24 + 1, "every backup of the last 7 days");
        let daily = rest.iter().filter(|h| **h <= 28 * 24).count();
        assert!((20..=21).contains(&daily), "one a day up to 28 days: {daily}");
        let weekly = rest.iter().filter(|h| **h > 28 * 24).count();
        assert!((9..=10).contains(&weekly), "one a week up to 91 days: {weekly}");
        assert!(left.iter().all(|h| *h <= 91 * 24), "nothing older than 91 days");
        // Pruning again deletes nothing more.
        assert!(prune(dir.path(), now, &Tiers::default()).expect("again").is_empty());
    }
}
