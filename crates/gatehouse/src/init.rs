//! `gatehouse init [DIR]`: a main file with the keys a new installation sets, commented,
//! and one example site file, both accepted by `gatehouse check`. Never overwrites: when
//! either file exists, nothing is written.

use std::path::Path;

const MAIN: &str = include_str!("init/gatehouse.yaml");
const SITE: &str = include_str!("init/example.yaml");

/// Writes `DIR/gatehouse.yaml` and `DIR/sites/example.yaml`; returns what it wrote, or
/// why it wrote nothing.
pub fn init(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let main = dir.join("gatehouse.yaml");
    let site = dir.join("sites").join("example.yaml");
    for p in [&main, &site] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(format!("{} exists; nothing was written (init never overwrites)", p.display()));
        }
    }
    std::fs::create_dir_all(dir.join("sites"))
        .map_err(|e| format!("cannot create {}: {e}", dir.join("sites").display()))?;
    for (path, text) in [(&main, MAIN), (&site, SITE)] {
        // `create_new`: a file that appeared since the check above is not overwritten either.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(vec![main, site])
}
