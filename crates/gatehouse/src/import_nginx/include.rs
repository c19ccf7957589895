//! `include` expansion: each `include` directive is replaced by the directives of the files
//! it names, read with `parse`, in place and in blocks too. Relative paths are looked for
//! beside the including file, then beside the file given on the command line, then in
//! nginx's configuration directory when that file sits in `sites-available`,
//! `sites-enabled` or `conf.d`. A `*` or `?` in the last path component is a glob (a small
//! matcher of our own). The standard files of an nginx installation (`mime.types`,
//! `fastcgi_params`, ...) are not read but reported as not needed.
//!
//! Reading is bounded (include depth, number and size of files, a file including itself)
//! so that an include loop or a huge file ends in an error naming the place, never in a
//! hang or a crash.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::Skipped;
use super::parse::{Directive, parse_text};

/// Includes within includes, at most.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Files read in one import, at most.
const MAX_FILES: usize = 1000;
/// Bytes of one file, at most.
const MAX_FILE_BYTES: u64 = 8 << 20;
/// Bytes of all files together, at most.
const MAX_TOTAL_BYTES: u64 = 32 << 20;

/// Reads each file with its includes. Returns one directive list per file given (their
/// http-level directives must not leak into one another); a standard nginx file that is
/// not included (`mime.types`, `fastcgi_params`, …) is recorded in `skipped`.
pub(super) fn load(files: &[PathBuf], skipped: &mut Vec<Skipped>) -> Result<Vec<Vec<Directive>>, String> {
    let mut loader = Loader { files_read: 0, bytes_read: 0, skipped, included: Vec::new() };
    // Each file given, its tree, and the files its includes read.
    let mut loaded: Vec<(&PathBuf, PathBuf, Vec<Directive>, Vec<PathBuf>)> = Vec::new();
    for path in files {
        let key = canonical(path);
        if loaded.iter().any(|(_, k, _, _)| *k == key) {
            continue;
        }
        let top_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let text = loader.read(path)?;
        let tree = parse_text(&text, &Rc::new(path.clone()))?;
        let mut stack = vec![key.clone()];
        let tree = loader.expand(tree, &top_dir, &mut stack, 0)?;
        loaded.push((path, key, tree, std::mem::take(&mut loader.included)));
    }
    // A file given that another one given includes is read once, through the include.
    let mut dropped = vec![false; loaded.len()];
    for i in 0..loaded.len() {
        let Some((path, key, ..)) = loaded.get(i) else { continue };
        let by = loaded
            .iter()
            .enumerate()
            .find(|(j, l)| *j != i && !dropped.get(*j).copied().unwrap_or(true) && l.3.contains(key));
        if let Some((_, (by, ..))) = by {
            loader.skipped.push(Skipped {
                file: (*path).clone(),
                line: 1,
                directive: format!("(the file {})", path.display()),
                reason: format!("not needed: {} includes it; read once, there", by.display()),
            });
            if let Some(d) = dropped.get_mut(i) {
                *d = true;
            }
        }
    }
    Ok(loaded.into_iter().zip(dropped).filter(|(_, d)| !d).map(|((_, _, tree, _), _)| tree).collect())
}

struct Loader<'a> {
    files_read: usize,
    bytes_read: u64,
    skipped: &'a mut Vec<Skipped>,
    /// The files read through includes since the last file given.
    included: Vec<PathBuf>,
}

impl Loader<'_> {
    /// A file's text, within the limits. Not-UTF-8 bytes (a Latin-1 comment) are replaced
    /// rather than refused.
    fn read(&mut self, path: &Path) -> Result<String, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("cannot read {}: not a regular file", path.display()));
        }
        self.files_read += 1;
        if self.files_read > MAX_FILES {
            return Err(format!(
                "more than {MAX_FILES} files to read (an include loop?); stopped at {}",
                path.display()
            ));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let len = bytes.len() as u64;
        if len > MAX_FILE_BYTES {
            return Err(format!("{} is larger than {} MiB", path.display(), MAX_FILE_BYTES >> 20));
        }
        self.bytes_read += len;
        if self.bytes_read > MAX_TOTAL_BYTES {
            return Err(format!(
                "more than {} MiB of configuration to read (an include loop?); stopped at {}",
                MAX_TOTAL_BYTES >> 20,
                path.display()
            ));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `list` with every `include` replaced by the directives of the files it names, in
    /// blocks too. `stack` holds the files being expanded, to refuse a file that includes
    /// itself.
    fn expand(
        &mut self,
        list: Vec<Directive>,
        top_dir: &Path,
        stack: &mut Vec<PathBuf>,
        depth: usize,
    ) -> Result<Vec<Directive>, String> {
        let mut out = Vec::with_capacity(list.len());
        for mut d in list {
            if d.name == "include" && d.block.is_none() {
                out.extend(self.include(&d, top_dir, stack, depth)?);
                continue;
            }
            if let Some(block) = d.block.take() {
                d.block = Some(self.expand(block, top_dir, stack, depth)?);
            }
            out.push(d);
        }
        Ok(out)
    }

    fn include(
        &mut self,
        d: &Directive,
        top_dir: &Path,
        stack: &mut Vec<PathBuf>,
        depth: usize,
    ) -> Result<Vec<Directive>, String> {
        let at = d.at();
        let [pattern] = d.args.as_slice() else {
            return Err(format!("{at}: include takes one file name"));
        };
        if let Some((reason, read_if_there)) = standard_file(pattern) {
            // proxy_params and TLS snippets are read when they are there: what they set
            // matters (Host; an HSTS add_header).
            let found = if read_if_there { find(pattern, &bases(&d.file, top_dir)) } else { None };
            let synthesized = pattern.ends_with("proxy_params");
            if found.is_none() {
                let directive = format!("include {pattern}");
                self.skipped.push(Skipped { file: (*d.file).clone(), line: d.line, directive, reason: reason.into() });
                return Ok(if synthesized { debian_proxy_params(d) } else { Vec::new() });
            }
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{at}: include {pattern}: includes nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)"
            ));
        }
        let bases = bases(&d.file, top_dir);
        let paths = if has_glob(pattern) {
            glob(pattern, &bases).map_err(|e| format!("{at}: include {pattern}: {e}"))?
        } else {
            match find(pattern, &bases) {
                Some(p) => vec![p],
                None => {
                    let looked: Vec<String> =
                        candidates(pattern, &bases).iter().map(|p| p.display().to_string()).collect();
                    return Err(format!(
                        "{at}: include {pattern}: not found (looked for {}); copy it there, or remove the include",
                        looked.join(", ")
                    ));
                }
            }
        };
        let mut out = Vec::new();
        for path in paths {
            let key = canonical(&path);
            if stack.contains(&key) {
                return Err(format!("{at}: include {pattern}: {} includes itself (an include loop)", path.display()));
            }
            let text = self.read(&path).map_err(|e| format!("{at}: include {pattern}: {e}"))?;
            let tree = parse_text(&text, &Rc::new(path.clone()))?;
            self.included.push(key.clone());
            stack.push(key);
            let expanded = self.expand(tree, top_dir, stack, depth + 1);
            stack.pop();
            out.extend(expanded?);
        }
        Ok(out)
    }
}

/// For the standard files of an nginx installation: why they are not needed, and whether
/// the file is read when present (`proxy_params`, whose headers matter, and TLS snippets,
/// which often hold an HSTS `add_header`).
fn standard_file(pattern: &str) -> Option<(&'static str, bool)> {
    let name = Path::new(pattern).file_name().and_then(|n| n.to_str()).unwrap_or("");
    let reason = match name {
        "mime.types" => "not needed: Gatehouse picks Content-Type from the file extension",
        "fastcgi_params" | "fastcgi.conf" | "fastcgi-php.conf" | "uwsgi_params" | "scgi_params" => {
            "not needed: FastCGI/uWSGI/SCGI parameters (Gatehouse speaks HTTP to backends)"
        }
        "options-ssl-nginx.conf" | "ssl-params.conf" => {
            "not found here, so not read: TLS settings (Gatehouse picks TLS 1.2 and 1.3 and its ciphers itself); \
             if it holds add_header lines (HSTS), copy it beside this file and import again"
        }
        "proxy_params" => {
            "not found here; read as Debian's proxy_params (Host $http_host, X-Real-IP, X-Forwarded-For, \
             X-Forwarded-Proto), which Gatehouse sets itself"
        }
        _ => return None,
    };
    let read_if_there = matches!(name, "proxy_params" | "options-ssl-nginx.conf" | "ssl-params.conf");
    Some((reason, read_if_there))
}

/// What Debian's `proxy_params` holds, as directives at the place of its `include`.
fn debian_proxy_params(at: &Directive) -> Vec<Directive> {
    [
        ["Host", "$http_host"],
        ["X-Real-IP", "$remote_addr"],
        ["X-Forwarded-For", "$proxy_add_x_forwarded_for"],
        ["X-Forwarded-Proto", "$scheme"],
    ]
    .into_iter()
    .map(|[name, value]| Directive {
        name: "proxy_set_header".into(),
        args: vec![name.into(), value.into()],
        block: None,
        file: at.file.clone(),
        line: at.line,
    })
    .collect()
}

/// Where a relative include is looked for, in order: the including file's directory, the
/// directory of the file given on the command line, and nginx's configuration directory
/// when that file sits in `sites-available`, `sites-enabled` or `conf.d` (Debian's layout,
/// where `include snippets/x.conf` means `/etc/nginx/snippets/x.conf`).
fn bases(file: &Path, top_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut add = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    add(file.parent().map(Path::to_path_buf).unwrap_or_default());
    add(top_dir.to_path_buf());
    if let Some(name) = top_dir.file_name().and_then(|n| n.to_str())
        && matches!(name, "sites-available" | "sites-enabled" | "conf.d")
        && let Some(parent) = top_dir.parent()
    {
        add(parent.to_path_buf());
    }
    out
}

fn candidates(pattern: &str, bases: &[PathBuf]) -> Vec<PathBuf> {
    if Path::new(pattern).is_absolute() {
        vec![PathBuf::from(pattern)]
    } else {
        bases.iter().map(|b| b.join(pattern)).collect()
    }
}

/// The first candidate that is a file.
fn find(pattern: &str, bases: &[PathBuf]) -> Option<PathBuf> {
    candidates(pattern, bases).into_iter().find(|p| p.is_file())
}

fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The files a pattern with `*` or `?` in its last component names, sorted by name, from
/// the first base directory that exists. As with the shell, `*` does not match a leading
/// dot. No match is no error (nginx accepts an empty glob).
fn glob(pattern: &str, bases: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).ok_or("a wildcard needs a file name to match")?;
    let dir = path.parent().unwrap_or(Path::new(""));
    if has_glob(&dir.to_string_lossy()) {
        return Err("a wildcard is supported only in the last part of the path".into());
    }
    for base in candidates(&dir.to_string_lossy(), bases) {
        let Ok(entries) = std::fs::read_dir(&base) else { continue };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                (!n.starts_with('.') || name.starts_with('.')) && wildcard(name, &n)
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        return Ok(found);
    }
    Ok(Vec::new())
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one.
pub(super) fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    // The last `*` seen and the name position it was tried at, to backtrack to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == n.get(ni) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "a.conf") && wildcard("*", "x") && wildcard("a?c", "abc"));
        assert!(wildcard("*a*b", "xxaxxb") && wildcard("**", ""));
        assert!(!wildcard("*.conf", "a.conf.bak") && !wildcard("a?c", "ac") && !wildcard("x*", "ax"));
    }

    #[test]
    fn includes_expand_in_place_with_globs_and_their_own_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("snippets")).expect("mkdir");
        std::fs::write(d.join("snippets/b.conf"), "add_header X-B b;\n").expect("write");
        std::fs::write(d.join("snippets/a.conf"), "\nadd_header X-A a;\n").expect("write");
        std::fs::write(d.join("snippets/.hidden.conf"), "bad syntax {").expect("write");
        std::fs::write(d.join("snippets/c.txt"), "bad syntax {").expect("write");
        std::fs::write(
            d.join("site.conf"),
            "server {\n  include snippets/*.conf;\n  include mime.types;\n  listen 80;\n}\n",
        )
        .expect("write");
        let mut skipped = Vec::new();
        let trees = load(&[d.join("site.conf")], &mut skipped).expect("loads");
        let server = &trees[0][0];
        let names: Vec<(&str, usize, bool)> =
            server.children().iter().map(|c| (c.name.as_str(), c.line, c.file.ends_with("site.conf"))).collect();
        assert_eq!(names, [("add_header", 2, false), ("add_header", 1, false), ("listen", 4, true)]);
        assert_eq!(server.children()[0].arg(0), Some("X-A"));
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].to_string().ends_with(
            "site.conf:3: include mime.types: not needed: Gatehouse picks Content-Type from the file extension"
        ));

        // A missing file that is not a standard one is an error naming the include.
        std::fs::write(d.join("missing.conf"), "server {\n  include nothere.conf;\n}\n").expect("write");
        let err = load(&[d.join("missing.conf")], &mut skipped).expect_err("missing");
        assert!(err.contains("missing.conf:2: include nothere.conf: not found"), "{err}");

        // A loop is an error, not a hang.
        std::fs::write(d.join("loop.conf"), "include loop.conf;\n").expect("write");
        let err = load(&[d.join("loop.conf")], &mut skipped).expect_err("loop");
        assert!(err.contains("includes itself"), "{err}");

        // A syntax error in an included file names that file.
        std::fs::write(d.join("snippets/z.conf"), "add_header X-Z z\n").expect("write");
        let err = load(&[d.join("site.conf")], &mut skipped).expect_err("syntax");
        assert!(err.contains("z.conf:1: unexpected end of file: `add_header X-Z z` is not ended by ';'"), "{err}");
    }

    #[test]
    fn proxy_params_is_read_as_debians_when_missing() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("s.conf"), "location / {\n  include proxy_params;\n}\n").expect("write");
        let mut skipped = Vec::new();
        let trees = load(&[dir.path().join("s.conf")], &mut skipped).expect("loads");
        let inside = trees[0][0].children();
        assert_eq!(inside.len(), 4);
        assert!(inside.iter().all(|d| d.name == "proxy_set_header" && d.line == 2));
        assert_eq!(inside[0].args, ["Host", "$http_host"]);
    }
}
