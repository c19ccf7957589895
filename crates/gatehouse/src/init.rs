//! `gatehouse init [DIR]`: a main file with the keys a new installation sets, commented,
//! and one example site file, both accepted by `gatehouse check`. Never overwrites: when
//! either file exists, nothing is written.

use std::path::{Path, PathBuf};

const MAIN: &str = include_str!("init/gatehouse.yaml");
const SITE: &str = include_str!("init/example.yaml");

/// Writes `DIR/gatehouse.yaml` and `DIR/sites/example.yaml`; returns what it wrote, or
/// why it wrote nothing.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let main = dir.join("gatehouse.yaml");
    let site = dir.join("sites").join("example.yaml");
    write_new(&[(main.clone(), MAIN), (site.clone(), SITE)], "init")?;
    Ok(vec![main, site])
}

/// `s` as a YAML scalar that reads back as exactly `s`, whatever it holds (`#`, `: `, `on`,
/// quotes): a JSON string literal is a YAML double-quoted scalar. For the configuration
/// files Gatehouse writes itself (`proxy`, `serve`, `import`).
pub fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Writes each file, creating directories as needed, only when none of them exists: a
/// command that generates files (`init`, `import`) never overwrites one. `what` names the
/// command in the message.
pub fn write_new(files: &[(PathBuf, &str)], what: &str) -> Result<(), String> {
    let existing: Vec<String> = files
        .iter()
        .filter(|(p, _)| std::fs::symlink_metadata(p).is_ok())
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(format!("{} exists; nothing was written ({what} never overwrites)", existing.join(", ")));
    }
    for (path, text) in files {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        // `create_new`: a file that appeared since the check above is not overwritten either.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
