//! Errors that reach the user. Input errors name the file, the line and what was
//! expected; the CLI prints them on one line and exits with status 2.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad content in a user's file.
    #[error("{}:{line}: {msg}", file.display())]
    Input {
        file: PathBuf,
        line: usize,
        msg: String,
    },
    /// A file that cannot be opened, read or written.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A bad option or combination of options.
    #[error("{0}")]
    Usage(String),
    /// A bad value of one named option (as a Python keyword or a JSON field names it:
    /// `temperature`, `n_best`), so a front end can point at it.
    #[error("{name}: {msg}")]
    Invalid { name: &'static str, msg: String },
    /// A model or training configuration that cannot work (sizes that disagree, values
    /// out of range), with the reason.
    #[error("{0}")]
    Config(String),
    /// Training was interrupted (Ctrl-C, SIGTERM); its state was saved first.
    #[error("interrupted; the state is saved: continue with --resume {}", .0.display())]
    Interrupted(PathBuf),
    /// Training met a non-finite loss or gradient and its policy is to stop.
    #[error("{0}")]
    Diverged(String),
    /// The tokenizers library failed while training a BPE model.
    #[error("BPE training failed: {0}")]
    Tokenizer(String),
    /// A checkpoint could not be written (disk full, permission denied, a size limit); the
    /// message says which file still holds the last good state.
    #[error("could not save {}: {source}; {kept}", file.display())]
    SaveFailed {
        file: PathBuf,
        #[source]
        source: std::io::Error,
        kept: String,
    },
    /// A checkpoint or tokenizer file that does not match what rnnkit expects.
    #[error("{}: {msg}", file.display())]
    Format { file: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn input(file: &Path, line: usize, msg: impl Into<String>) -> Error {
        Error::Input {
            file: file.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }

    pub fn io(file: &Path, source: std::io::Error) -> Error {
        Error::Io {
            file: file.to_path_buf(),
            source,
        }
    }

    pub fn invalid(name: &'static str, msg: impl Into<String>) -> Error {
        Error::Invalid {
            name,
            msg: msg.into(),
        }
    }

    pub fn config(msg: impl Into<String>) -> Error {
        Error::Config(msg.into())
    }

    pub fn format(file: &Path, msg: impl Into<String>) -> Error {
        Error::Format {
            file: file.to_path_buf(),
            msg: msg.into(),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, then
/// rename, so a crash never leaves a half-written checkpoint that looks valid.
///
/// A symbolic link is written through (its target is replaced, the link stays); a device
/// or a pipe (`/dev/stdout`, a FIFO) is written directly, since it cannot be renamed over;
/// a folder is refused.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut path = path.to_path_buf();
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if m.file_type().is_symlink() {
            path = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
        }
        let m = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if m.is_dir() {
            return Err(Error::Usage(format!(
                "{} is a folder; give a file name",
                path.display()
            )));
        }
        if !m.is_file() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            return f.write_all(bytes).map_err(|e| Error::io(&path, e));
        }
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&path, e)
    })
}

#[cfg(test)]
mod write_tests {
    use super::*;

    /// A link is written through and stays a link; a device is written, not replaced;
    /// a folder is refused.
    #[test]
    fn write_atomic_through_links_and_devices() {
        let d = std::env::temp_dir().join(format!("rnnkit-wa-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let (target, link) = (d.join("target.bin"), d.join("link.bin"));
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        write_atomic(Path::new("/dev/null"), b"x").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        let e = write_atomic(&d, b"x").unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
