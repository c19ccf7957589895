//! `GATEHOUSE_*` environment overrides of main-file keys, and systemd's `STATE_DIRECTORY`.

use super::*;

/// `GATEHOUSE_*` variables that override main-file keys. Taken as a value (not read
/// inside the loader) so tests can pass their own.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides(HashMap<String, String>);

/// Set by systemd for a unit with `StateDirectory=`; not an override, a default.
const STATE_DIRECTORY: &str = "STATE_DIRECTORY";

/// Environment variable -> the main-file key it overrides.
const ENV_KEYS: &[(&str, &str)] = &[
    ("GATEHOUSE_WORKERS", "workers"),
    ("GATEHOUSE_LISTEN_HTTP", "listen.http"),
    ("GATEHOUSE_LISTEN_HTTPS", "listen.https"),
    ("GATEHOUSE_ADMIN_LISTEN", "admin.listen"),
    ("GATEHOUSE_ADMIN_TOKEN", "admin.token"),
    ("GATEHOUSE_SITES_DIR", "sites_dir"),
    ("GATEHOUSE_STORAGE_PATH", "storage.path"),
    ("GATEHOUSE_LOG_LEVEL", "log.level"),
    ("GATEHOUSE_LOG_FORMAT", "log.format"),
    ("GATEHOUSE_SHUTDOWN_TIMEOUT", "shutdown_timeout"),
];

impl EnvOverrides {
    /// The overrides present in this process's environment.
    pub fn from_env() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let wanted = |k: &str| k == STATE_DIRECTORY || ENV_KEYS.iter().any(|(name, _)| *name == k);
        EnvOverrides(pairs.into_iter().filter(|(k, _)| wanted(k)).collect())
    }

    /// Where systemd's `StateDirectory=` put this service's state (its first directory),
    /// when it runs as such a unit: the storage path's default there.
    pub(super) fn state_directory(&self) -> Option<&str> {
        self.0.get(STATE_DIRECTORY).and_then(|v| v.split(':').next()).filter(|d| !d.is_empty())
    }

    /// The documented variable names, for `--help` and docs.
    pub fn names() -> impl Iterator<Item = (&'static str, &'static str)> {
        ENV_KEYS.iter().copied()
    }
}

/// The value of main-file key `key`: its environment override, else what the file says.
pub(super) fn pick(raw: Option<&S<String>>, env: &EnvOverrides, key: &str) -> Option<Value> {
    let var = ENV_KEYS.iter().find(|(_, k)| *k == key).map(|(v, _)| *v);
    if let Some(var) = var
        && let Some(text) = env.0.get(var)
    {
        return Some(Value { text: text.clone(), line: None, env: Some(var) });
    }
    raw.map(|s| Value { text: s.value.clone(), line: Some(s.referenced.line()), env: None })
}
