//! Loading: read the main file and every site file, apply `GATEHOUSE_*` environment
//! overrides, and validate into the model. Collects every error instead of stopping at the
//! first, so `gatehouse check` can list them all.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use regex::Regex;

use crate::error::{Error, Errors};
use crate::model::*;
use crate::raw::{self, S};
use crate::suggest::nearest;
use crate::units::{parse_duration, parse_size};
use crate::yamlpath::path_at_line;

/// Parses YAML into `T`, turning parser errors into located errors with a field path and a
/// "did you mean" for unknown keys.
fn parse_yaml<T: for<'de> serde::Deserialize<'de>>(file: &Path, src: &str, errors: &mut Errors) -> Option<T> {
    match serde_saphyr::from_str::<T>(src) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
            let path = line.map(|l| path_at_line(src, l)).unwrap_or_default();
            errors.push(Error::new(file, line, path, describe_yaml_error(&e.to_string())));
            None
        }
    }
}

/// The parser's message without its location prefix and source snippet, with a suggestion
/// for unknown keys.
fn describe_yaml_error(full: &str) -> String {
    let first = full.lines().next().unwrap_or(full);
    let msg = first.trim_start_matches("error: ");
    // Drop "line N column M: ": the caller prints the line itself.
    let msg = match msg.find(": ") {
        Some(i) if msg.starts_with("line ") => &msg[i + 2..],
        _ => msg,
    };
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((name, tail)) = rest.split_once('`')
    {
        let expected: Vec<&str> = tail
            .trim_start_matches(", ")
            .trim_start_matches("expected one of ")
            .trim_start_matches("expected ")
            .split(", ")
            .map(|s| s.trim_matches('`'))
            .filter(|s| !s.is_empty())
            .collect();
        let mut out = format!("unknown key `{name}`");
        if let Some(best) = nearest(name, expected.iter().copied()) {
            out.push_str(&format!(" (did you mean `{best}`?)"));
        }
        if !expected.is_empty() {
            out.push_str(&format!("; valid keys: {}", expected.join(", ")));
        }
        return out;
    }
    msg.to_string()
}

/// Loads and validates the main file at `path` and all site files it points to.
pub fn load(path: &Path, env: &EnvOverrides) -> Result<Config, Errors> {
    let mut errors = Errors::default();
    let src = match crate::file::read_regular_text(path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(Error::new(path, None, "", format!("cannot read configuration file: {e}")));
            return Err(errors);
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let main: raw::Main = parse_yaml(path, &src, &mut errors).ok_or_else(|| errors.clone())?;
    if main.is_empty() {
        // An empty file would start a server on 0.0.0.0:80 with no sites: almost certainly
        // the wrong file, or one an editor left empty.
        let hint = "the main file has no settings; it needs at least `listen` (see examples/quickstart/gatehouse.yaml)";
        errors.push(Error::new(path, None, "", hint));
        return Err(errors);
    }
    let config = build(path, &base, main, env, &mut errors, None);
    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

/// Loads a main file given as text with site files given as `(name, text)`; for tests of
/// error messages without touching the file system. Paths in messages are `gatehouse.yaml`
/// and `sites/<name>.yaml`; static directories are resolved against `base`.
pub fn load_from_str_for_tests(main_src: &str, sites: &[(&str, &str)], base: &Path) -> Result<Config, Errors> {
    let mut errors = Errors::default();
    let path = Path::new("gatehouse.yaml");
    let main: raw::Main = parse_yaml(path, main_src, &mut errors).ok_or_else(|| errors.clone())?;
    let config = build(path, base, main, &EnvOverrides::default(), &mut errors, Some(sites));
    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

mod access;
mod auth;
mod ctx;
mod data;
mod env;
mod main_file;
mod options;
mod resilience;
mod route;
mod security;
mod site;
mod stream;
mod tls;

use ctx::*;
pub use env::EnvOverrides;
use env::*;
use main_file::*;
use options::*;
use route::*;
use site::{build_site, check_host_conflicts, one_line, parse_host, read_sites_dir};
use tls::*;

#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
