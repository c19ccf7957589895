//! `gatehouse backup now|list|verify|restore` and the scheduled backups of a running
//! process (`backups` in the main file). What a backup holds and how the tiers are kept is
//! in `gatehouse_store::backup`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use gatehouse_config::{Config, EnvOverrides};
use gatehouse_store::backup::{self, Tiers};

#[derive(Subcommand)]
pub enum Action {
    /// Take a backup now (while Gatehouse runs or not) and apply the retention tiers.
    Now,
    /// List the backups, oldest first.
    List,
    /// Decompress a backup and check it (the newest when no file is given).
    Verify { file: Option<PathBuf> },
    /// Restore the newest backup taken at TIME or before (UTC: 2026-12-06T05:19:27Z,
    /// 2026-12-06 05:19, or 2026-12-06 for the end of that day; `now` for the newest).
    Restore {
        #[arg(long)]
        at: String,
        /// Replace the database even while a running Gatehouse holds it.
        #[arg(long)]
        force: bool,
    },
}

/// The ACME account and issued certificates: the files a backup carries.
fn state_dir(config: &Config) -> PathBuf {
    config.storage_path.parent().unwrap_or(Path::new(".")).join("acme")
}

fn tiers(config: &Config) -> Tiers {
    let b = &config.backups;
    Tiers { hourly: b.hourly, daily: b.daily, weekly: b.weekly }
}

fn now() -> i64 {
    gatehouse_store::now_us() / 1_000_000
}

/// Takes a backup and prunes by the tiers; returns the new file.
fn take(config: &Config) -> Result<PathBuf, backup::BackupError> {
    let file = backup::create(&config.storage_path, &state_dir(config), &config.backups.dir, now())?;
    for old in backup::prune(&config.backups.dir, now(), &tiers(config))? {
        tracing::info!(file = %old.display(), "backup past its retention deleted");
    }
    Ok(file)
}

pub fn cli(path: &Path, action: Action) -> ExitCode {
    let config = match gatehouse_config::load(path, &EnvOverrides::from_env()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s) in the configuration", errors.len());
            return ExitCode::FAILURE;
        }
    };
    let dir = &config.backups.dir;
    let result = match action {
        Action::Now => take(&config).map(|file| {
            let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
            println!("backup written: {} ({bytes} bytes)", file.display());
        }),
        Action::List => backup::list(dir).map(|list| {
            if list.is_empty() {
                println!("no backups in {}", dir.display());
            }
            for b in list {
                println!("{}\t{} bytes", b.path.display(), b.bytes);
            }
        }),
        Action::Verify { file } => {
            let file = match file {
                Some(f) => Ok(f),
                None => backup::pick(dir, i64::MAX).map(|b| b.path),
            };
            file.and_then(|f| {
                let c = backup::verify(&f)?;
                println!(
                    "{}: OK ({} request rows, {} audit entries, {} files)",
                    f.display(),
                    c.requests,
                    c.audit_entries,
                    c.files
                );
                Ok(())
            })
        }
        Action::Restore { at, force } => {
            let time = if at.trim() == "now" { Some(i64::MAX) } else { backup::parse_time(&at) };
            let Some(time) = time else {
                eprintln!(
                    "gatehouse: --at {at:?} is not a time; use 2026-12-06T05:19:27Z, \"2026-12-06 05:19\", 2026-12-06 or now (UTC)"
                );
                return ExitCode::FAILURE;
            };
            backup::pick(dir, time).and_then(|b| {
                let c = backup::restore(&b.path, &config.storage_path, &state_dir(&config), force)?;
                println!(
                    "restored {} into {} ({} request rows, {} audit entries, {} files)",
                    b.path.display(),
                    config.storage_path.display(),
                    c.requests,
                    c.audit_entries,
                    c.files
                );
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Takes a backup every `backups.interval` (read from the running configuration each
/// time) while `backups.enabled`, on the blocking pool.
pub async fn scheduled(state: gatehouse_proxy::StateHandle) {
    loop {
        let interval = state.load().config.backups.interval;
        tokio::time::sleep(interval).await;
        let config = state.load().config.clone();
        if !config.backups.enabled {
            continue;
        }
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || take(&config)).await {
            Ok(Ok(file)) => tracing::info!(
                file = %file.display(),
                took_ms = started.elapsed().as_millis() as u64,
                "backup written"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "backup failed; the next one is tried at the next interval"),
            Err(e) => tracing::error!(error = %e, "backup task failed"),
        }
    }
}
