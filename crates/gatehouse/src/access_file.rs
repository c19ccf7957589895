//! `log.access_file`: access records as JSON lines in a file of their own, rotated by size
//! (`path` → `path.1` → … → `path.N`), or on stdout (`-`). One thread formats and writes;
//! workers hand records over a bounded queue and never wait (a full queue drops and
//! counts). The record arrives masked as the request log stores it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use gatehouse_proxy::http::trace::hex;
use gatehouse_proxy::observe::AccessRecord;
use serde_json::json;

const QUEUE: usize = 8192;

pub struct AccessFile {
    tx: SyncSender<AccessRecord>,
    dropped: Arc<AtomicU64>,
}

impl AccessFile {
    pub fn start(dest: &gatehouse_config::AccessFile) -> std::io::Result<AccessFile> {
        let mut out = Output::open(dest)?;
        let (tx, rx) = sync_channel::<AccessRecord>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new().name("gatehouse-access".into()).spawn(move || {
            let mut told = 0;
            while let Ok(r) = rx.recv() {
                let mut line = line(&r);
                line.push('\n');
                if let Err(e) = out.write(line.as_bytes()) {
                    tracing::warn!(error = %e, "access log line not written");
                }
                let now = counted.load(Ordering::Relaxed);
                if now != told {
                    tracing::warn!(dropped = now - told, "access records dropped: the access log could not keep up");
                    told = now;
                }
            }
        })?;
        Ok(AccessFile { tx, dropped })
    }

    pub fn record(&self, r: AccessRecord) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(r) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One record as a JSON line (the fields of the access log on the log stream).
pub fn line(r: &AccessRecord) -> String {
    let time = r.time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let (side, kind, reason) = match &r.error {
        Some(f) => (f.side.as_str(), f.kind, f.reason.as_str()),
        None => ("-", "-", ""),
    };
    json!({
        "time_ms": time as u64,
        "client": r.client_label.clone().unwrap_or_else(|| r.client.to_string()),
        "method": r.method.as_ref().map_or("-", |m| m.as_str()),
        "host": r.host,
        // The query stays out: it may carry secrets.
        "path": r.path.split('?').next().unwrap_or_default(),
        "version": r.version.map(|v| format!("{v:?}")),
        "status": r.status,
        "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "duration_us": r.duration.as_micros() as u64,
        "site": r.site.as_deref(),
        "route": r.route,
        "upstream": r.backend,
        "retries": r.retries,
        "error_side": side,
        "error": kind,
        "reason": reason,
        "request_id": r.request_id.as_ref().and_then(|v| v.to_str().ok()),
        "user_agent": r.user_agent.as_ref().and_then(|v| v.to_str().ok()),
        "country": r.country.as_ref().and_then(|c| std::str::from_utf8(c).ok()),
        "trace_id": r.trace.map(|t| hex(&t.trace_id)),
        "span_id": r.trace.map(|t| hex(&t.span_id)),
    })
    .to_string()
}

enum Output {
    Stdout,
    File { path: PathBuf, file: std::fs::File, size: u64, max: u64, keep: usize },
}

impl Output {
    fn open(dest: &gatehouse_config::AccessFile) -> std::io::Result<Output> {
        match dest {
            gatehouse_config::AccessFile::Stdout => Ok(Output::Stdout),
            gatehouse_config::AccessFile::File { path, max_bytes, keep } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let file = append(path)?;
                let size = file.metadata()?.len();
                Ok(Output::File { path: path.clone(), file, size, max: *max_bytes, keep: *keep })
            }
        }
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => std::io::stdout().lock().write_all(line),
            Output::File { path, file, size, max, keep } => {
                if *size > 0 && *size + line.len() as u64 > *max {
                    rotate(path, *keep)?;
                    *file = append(path)?;
                    *size = 0;
                }
                file.write_all(line)?;
                *size += line.len() as u64;
                Ok(())
            }
        }
    }
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// `path.N-1` → `path.N`, …, `path` → `path.1`; with `keep` 0 the file is just emptied.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::File::create(path).map(drop);
    }
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(path, n + 1))?;
        }
    }
    std::fs::rename(path, numbered(path, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_and_keep_as_many_as_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/access.log");
        let dest = gatehouse_config::AccessFile::File { path: path.clone(), max_bytes: 100, keep: 2 };
        let mut out = Output::open(&dest).expect("open");
        for i in 0..10 {
            out.write(format!("{i:039}\n").as_bytes()).expect("write");
        }
        // 40-byte lines, 100-byte files: two lines a file, the newest two rotated kept.
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()).lines().count(), 2);
        assert!(read(path.clone()).ends_with(&format!("{:039}\n", 9)));
        assert_eq!(read(numbered(&path, 1)).lines().count(), 2);
        assert!(read(numbered(&path, 2)).starts_with(&format!("{:039}", 4)));
        assert!(!numbered(&path, 3).exists());
    }
}
