//! `gatehouse import nginx FILE... [--out DIR]`: nginx configurations as Gatehouse site
//! files, one per server block, with every directive that is not translated listed (on
//! stderr and at the top of the site file it concerns) with its file, line and reason.
//!
//! The work is split in steps, one module each:
//! - `parse` and `include`: nginx's syntax and `include` expansion (no meaning given to
//!   anything else);
//! - `translate`: server blocks, hosts, listeners, certificates; `upstream`: upstream blocks;
//! - `location`: locations as routes, with `redirect` (`return`, `rewrite`), `statics`
//!   (`root`, `alias`, `index`, `autoindex`, `try_files`), `options` (headers, limits,
//!   timeouts, access rules) and `values` (times, sizes, regexes, variables); `reasons`
//!   says why a directive is not translated;
//! - `site`: the site as YAML, with only documented keys and every string quoted.
//!
//! The importer never guesses silently: what it cannot express is reported, and content
//! it cannot serve the same way (FastCGI, a backend chosen by variables, a location's
//! `return 444`) becomes a route that refuses everyone (`respond: {status: 403}`) rather
//! than one that serves something else. (A server-level `return 444` writes no site, so
//! Gatehouse answers its hosts 404: it cannot close a connection unanswered either.) It
//! never overwrites a file, and it writes nothing when any target exists.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod include;
mod location;
mod options;
mod parse;
mod reasons;
mod redirect;
mod scope;
mod site;
mod statics;
mod translate;
mod upstream;
mod values;

/// The result of an import: site files (file name, YAML text) and what was not
/// translated.
#[derive(Debug)]
pub struct Import {
    /// One per translated server block: `example.com.yaml` and its text.
    pub sites: Vec<(String, String)>,
    pub skipped: Vec<Skipped>,
}

/// A directive that was not translated (or not needed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: usize,
    /// The directive as written, shortened (`listen 8080 default_server`).
    pub directive: String,
    pub reason: String,
}

impl Skipped {
    /// Gatehouse does the same without it.
    pub fn not_needed(&self) -> bool {
        self.reason.starts_with("not needed")
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file.display(), self.line, self.directive, self.reason)
    }
}

/// Reads and translates the files. An error (a file that cannot be read, a syntax error
/// with its file and line, no server block at all) means nothing can be imported.
pub fn import(files: &[PathBuf]) -> Result<Import, String> {
    if files.is_empty() {
        return Err("no nginx configuration file given".into());
    }
    let mut early = Vec::new();
    let trees = include::load(files, &mut early)?;
    if !trees.iter().flatten().any(|d| d.name == "http")
        && let Some(first) = files.first()
    {
        early.push(Skipped {
            file: first.clone(),
            line: 1,
            directive: "(no http block)".into(),
            reason: "none of the files given has an http block, so the http-level settings of nginx.conf \
                     (body size, timeouts, headers, certificates...) were not read: pass \
                     nginx.conf too to include them"
                .into(),
        });
    }
    let out = translate::translate(&trees, early)?;
    let sites = out.sites.iter().map(|s| (format!("{}.yaml", s.stem), s.to_yaml())).collect();
    Ok(Import { sites, skipped: out.skipped })
}

/// The command: imports `files`, writes one site file per server block into `out`
/// (created if missing; nothing is written when any target exists), prints `wrote PATH`
/// for each on stdout and what was not translated on stderr.
pub fn run(files: &[PathBuf], out: &Path) -> ExitCode {
    let import = match import(files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::FAILURE;
        }
    };
    if import.sites.is_empty() {
        report(&import.skipped);
        eprintln!("gatehouse: no server block could be translated (see above); nothing was written");
        return ExitCode::FAILURE;
    }
    let targets: Vec<(PathBuf, &str)> =
        import.sites.iter().map(|(name, text)| (out.join(name), text.as_str())).collect();
    if let Err(e) = crate::init::write_new(&targets, "import") {
        eprintln!("gatehouse: {e}");
        return ExitCode::FAILURE;
    }
    for (path, _) in &targets {
        println!("wrote {}", path.display());
    }
    report(&import.skipped);
    println!("next: gatehouse check -c <main file whose sites_dir is {}>", out.display());
    if import.sites.iter().any(|(_, text)| text.contains("\ntls:\n")) {
        println!("      (sites with tls need listen.https in the main file)");
    }
    ExitCode::SUCCESS
}

/// Every skipped directive on stderr, then a summary line.
fn report(skipped: &[Skipped]) {
    for s in skipped {
        eprintln!("{s}");
    }
    if skipped.is_empty() {
        return;
    }
    let not_needed = skipped.iter().filter(|s| s.not_needed()).count();
    eprintln!(
        "{} directive(s) not translated (listed above; {not_needed} of them not needed in Gatehouse); review them before use",
        skipped.len()
    );
}
