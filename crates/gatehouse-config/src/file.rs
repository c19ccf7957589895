//! Reading the files a configuration names (main file, site files, certificates, keys, CA
//! bundles) safely: only regular files, and only up to a size cap.
//!
//! A FIFO would block the reader forever (and with it `check`, or a reload and every signal
//! after it); `/dev/zero` behind a `*.yaml` symlink would grow the reader without end. Both
//! are refused before a byte is read.

use std::io::{self, Read};
use std::path::Path;

/// The largest configuration, certificate or key file read (1 MiB); real ones are a few KB.
pub const MAX_FILE: u64 = 1 << 20;

/// The largest CA bundle read (16 MiB): a system bundle is a few hundred KB.
pub const MAX_BUNDLE: u64 = 16 << 20;

/// Fails unless `path` (after symlinks) is a regular file no larger than `MAX_FILE`.
pub fn check_regular(path: &Path) -> io::Result<()> {
    regular(&std::fs::metadata(path)?, MAX_FILE)
}

/// Whether `meta` is a regular file of at most `cap` bytes, as an error saying what it is
/// otherwise.
fn regular(meta: &std::fs::Metadata, cap: u64) -> io::Result<()> {
    if !meta.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let kind = match () {
            _ if meta.is_dir() => "a directory",
            _ if meta.file_type().is_fifo() => "a FIFO",
            _ => "a device or socket",
        };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{kind}, not a regular file")));
    }
    if meta.len() > cap {
        return Err(too_large(cap));
    }
    Ok(())
}

/// Reads a regular file of at most `MAX_FILE` bytes.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    read_regular_up_to(path, MAX_FILE)
}

/// Reads a regular file of at most `cap` bytes.
pub fn read_regular_up_to(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    // Opened without blocking, then checked on the open file (not the path, which may
    // change in between): opening a FIFO must not block (and with it a reload).
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    regular(&file.metadata()?, cap)?;
    // The file may grow while it is read: read one byte past the cap and refuse if it is
    // there, rather than trust the size seen a moment ago.
    let mut out = Vec::new();
    file.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(too_large(cap));
    }
    Ok(out)
}

/// `read_regular` for text files.
pub fn read_regular_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path)?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn too_large(cap: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("larger than {} KiB", cap / 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = dir.path().join("a.yaml");
        std::fs::write(&ok, "x: 1\n").expect("write");
        assert_eq!(read_regular_text(&ok).expect("read"), "x: 1\n");

        let fifo = dir.path().join("fifo.yaml");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success());
        let e = read_regular(&fifo).expect_err("a FIFO is refused");
        assert!(e.to_string().contains("a FIFO, not a regular file"), "{e}");

        let zero = dir.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let e = read_regular(&zero).expect_err("a device is refused");
        assert!(e.to_string().contains("a device or socket"), "{e}");

        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_FILE as usize + 1]).expect("write");
        assert!(read_regular(&big).expect_err("too large").to_string().contains("larger than 1024 KiB"));
        assert!(read_regular(dir.path()).expect_err("a directory").to_string().contains("a directory, not"));
    }
}
