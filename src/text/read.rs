//! Corpus readers. Every error names the file and the line (or byte offset) and says what
//! was expected; invalid UTF-8 is an error, never a silent lossy conversion.

use crate::error::{Error, Result};
use std::path::Path;

/// Reads a whole UTF-8 text file.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..off].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::input(
            path,
            line,
            format!("invalid UTF-8 at byte offset {off}; expected UTF-8 text"),
        )
    })
}

/// Reads a text file and refuses an empty one, since nothing can be trained on it.
pub fn read_nonempty(path: &Path) -> Result<String> {
    let s = read_text(path)?;
    if s.trim().is_empty() {
        return Err(Error::input(path, 1, "file is empty; expected text"));
    }
    Ok(s)
}
