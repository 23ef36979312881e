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
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
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
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
