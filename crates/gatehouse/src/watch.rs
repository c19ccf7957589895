//! The file watchers that ask for reloads: one on the configuration's files (the main file,
//! the site files, the certificate, key and CA files they name) and one on the certificate
//! directory. Both follow the running configuration.
//!
//! Watches directories, not files: editors replace a file by writing another and renaming
//! it over the first, and a watch on the file would follow the old one. Only asks the queue
//! for a reload; must not read configuration or certificates itself.

use std::collections::{BTreeSet, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use gatehouse_config::Config;
use gatehouse_proxy::tls;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::reload::Queue;

type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Quiet time after the last change before a reload is asked for: an editor's save, or
/// `cp` of several site files, lands as one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What the configuration watcher looks at; rebuilt when a reload changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Targets {
    /// Directories watched (not recursively).
    dirs: BTreeSet<PathBuf>,
    main: PathBuf,
    sites_dir: PathBuf,
    /// Certificate, key and CA files the configuration names.
    referenced: HashSet<PathBuf>,
    /// Device and inode of each watched directory: a directory replaced by another of the
    /// same name (`mv sites.new sites`) must be watched anew, or later edits go unseen.
    identity: Vec<Option<(u64, u64)>>,
}

impl Targets {
    fn of(config: &Config) -> Self {
        let main = absolute(&config.source);
        let sites_dir = absolute(&config.sites_dir);
        let mut referenced = HashSet::new();
        let mut dirs = BTreeSet::new();
        dirs.extend(main.parent().map(Path::to_path_buf));
        dirs.insert(sites_dir.clone());
        let named =
            config.files().into_iter().filter(|f| *f != config.source && !config.sites.iter().any(|s| s.file == *f));
        for f in named {
            let f = absolute(&f);
            dirs.extend(f.parent().map(Path::to_path_buf));
            referenced.insert(f);
        }
        let identity = dirs
            .iter()
            .map(|d| {
                std::fs::metadata(d)
                    .ok()
                    .map(|m| (std::os::unix::fs::MetadataExt::dev(&m), std::os::unix::fs::MetadataExt::ino(&m)))
            })
            .collect();
        Targets { dirs, main, sites_dir, referenced, identity }
    }

    /// Whether a change to `path` can change the configuration: the main file, a site file
    /// (`*.yaml`, `*.yml`, also a new or removed one), or a named file. Editors' temporary
    /// and backup files are not.
    fn relevant(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
        // Kubernetes updates a mounted ConfigMap or Secret by pointing `..data` at a new
        // directory; the files themselves are symlinks through it and see no event.
        if name == "..data" {
            return path.parent().is_some_and(|d| self.dirs.contains(d));
        }
        if is_temporary(name) {
            return false;
        }
        // The sites directory itself replaced or removed: a reload watches the new one.
        path == self.main
            || path == self.sites_dir
            || (path.parent() == Some(self.sites_dir.as_path()) && (name.ends_with(".yaml") || name.ends_with(".yml")))
            || self.referenced.contains(path)
    }
}

/// Dot files (vim's `.x.swp`, emacs's `.#x`), backups (`x~`) and temporaries (`x.tmp`).
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
}

/// An absolute path without `.` components, as the watcher reports paths.
fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs.components().filter(|c| !matches!(c, Component::CurDir)).collect()
}

/// Both watchers, each kept while what it watches stays the same.
#[derive(Default)]
pub struct Watch {
    files: Option<(Targets, Watcher)>,
    certs: Option<(PathBuf, Watcher)>,
}

impl Watch {
    /// Points the watchers at `config`. A watcher whose targets did not change is kept (a
    /// change in flight is not lost); a new one is made before the old one is dropped. A
    /// directory that cannot be watched is logged, and the others are watched still.
    pub fn follow(&mut self, config: &Config, https: bool, queue: &Queue) {
        let targets = Targets::of(config);
        if self.files.as_ref().is_none_or(|(t, _)| *t != targets) {
            match files_watcher(&targets, queue.clone()) {
                Ok(w) => self.files = Some((targets, w)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch the configuration files; reload with SIGHUP or the admin API")
                }
            }
        }
        let cert_dir = config.tls.cert_dir.as_deref().filter(|_| https).map(absolute);
        if self.certs.as_ref().map(|(d, _)| d) != cert_dir.as_ref() {
            self.certs = None;
            if let Some(dir) = cert_dir {
                let queue = queue.clone();
                match tls::watch(&dir, move || queue.certs()) {
                    Ok(w) => self.certs = Some((dir, w)),
                    Err(e) => tracing::error!(error = %e, "cannot watch the certificate directory"),
                }
            }
        }
    }
}

fn files_watcher(targets: &Targets, queue: Queue) -> Result<Watcher, notify::Error> {
    let t = targets.clone();
    let mut w = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
        let Ok(events) = res else { return };
        let changed =
            events.iter().filter(|e| tls::is_change(&e.kind)).flat_map(|e| e.paths.iter()).find(|p| t.relevant(p));
        if let Some(path) = changed {
            tracing::info!(file = %path.display(), "configuration file changed; reloading");
            queue.config("file");
        }
    })?;
    for dir in &targets.dirs {
        if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch this directory; changes in it need SIGHUP or POST /api/reload");
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configuration_files_count() {
        let t = Targets {
            dirs: [PathBuf::from("/etc/gh"), PathBuf::from("/etc/gh/sites"), PathBuf::from("/etc/ssl")]
                .into_iter()
                .collect(),
            main: PathBuf::from("/etc/gh/gatehouse.yaml"),
            sites_dir: PathBuf::from("/etc/gh/sites"),
            referenced: [PathBuf::from("/etc/ssl/app.pem")].into_iter().collect(),
            identity: Vec::new(),
        };
        for p in [
            "/etc/gh/gatehouse.yaml",
            "/etc/gh/sites/app.yaml",
            "/etc/gh/sites/new.yml",
            "/etc/ssl/app.pem",
            "/etc/gh/sites/..data",
            "/etc/gh/sites",
        ] {
            assert!(t.relevant(Path::new(p)), "{p}");
        }
        for p in [
            "/etc/gh/other.yaml",
            "/etc/gh/sites/.app.yaml.swp",
            "/etc/gh/sites/app.yaml~",
            "/etc/gh/sites/app.yaml.tmp",
            "/etc/gh/sites/4913",
            "/etc/gh/sites/notes.txt",
            "/etc/gh/sites/sub/app.yaml",
            "/etc/ssl/other.pem",
            "/etc/gh/sites/..data_tmp",
            "/var/..data",
        ] {
            assert!(!t.relevant(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn openings_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, RemoveKind};
        assert!(!tls::is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(tls::is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(tls::is_change(&EventKind::Create(CreateKind::File)));
        assert!(tls::is_change(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn a_replaced_directory_is_watched_anew() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("sites")).expect("mkdir");
        std::fs::write(d.join("gatehouse.yaml"), "listen: {http: 127.0.0.1:0}\nsites_dir: sites\n").expect("write");
        let config = gatehouse_config::load(&d.join("gatehouse.yaml"), &Default::default()).expect("config");
        let before = Targets::of(&config);
        assert_eq!(before, Targets::of(&config), "same directories, same targets");
        std::fs::create_dir_all(d.join("sites.new")).expect("mkdir");
        std::fs::remove_dir(d.join("sites")).expect("rmdir");
        std::fs::rename(d.join("sites.new"), d.join("sites")).expect("rename");
        assert_ne!(before, Targets::of(&config), "the replaced sites directory must be watched again");
    }

    #[test]
    fn targets_cover_the_main_directory_sites_and_referenced_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("sites")).expect("mkdir");
        std::fs::create_dir_all(d.join("ca")).expect("mkdir");
        std::fs::write(d.join("ca/root.pem"), "x").expect("write");
        std::fs::write(d.join("gatehouse.yaml"), "listen: {http: 127.0.0.1:0}\nsites_dir: ./sites\n").expect("write");
        std::fs::write(
            d.join("sites/app.yaml"),
            "host: a.test\nbackend: https://127.0.0.1:1\noptions: {upstream_tls: {ca: ca/root.pem}}\n",
        )
        .expect("write");
        let c = gatehouse_config::load(&d.join("gatehouse.yaml"), &Default::default()).expect("valid");
        let t = Targets::of(&c);
        let d = absolute(d);
        assert_eq!(t.dirs, [d.clone(), d.join("ca"), d.join("sites")].into_iter().collect());
        assert!(t.relevant(&d.join("sites/app.yaml")));
        assert!(t.relevant(&d.join("ca/root.pem")));
    }
}
