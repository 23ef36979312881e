//! Corpus readers. Every error names the file and the line (or byte offset) and says what
//! was expected; invalid UTF-8 is an error, never a silent lossy conversion.
//!
//! [`Lines`] streams a file a line at a time, so corpora larger than memory can be counted,
//! tokenized and encoded; [`read_text`] is for the small files that are split by characters
//! (tinyshakespeare) or read whole anyway (JSON).

use crate::error::{Error, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};

fn utf8_error(path: &Path, line: usize, offset: u64) -> Error {
    Error::input(
        path,
        line,
        format!("invalid UTF-8 at byte offset {offset}; expected UTF-8 text"),
    )
}

/// Pipes and devices (`<(zcat corpus.gz)`, a FIFO) can be read only once, while training
/// reads its files more than once (vocabulary, then ids): their bytes are kept here at the
/// first read, by path, and served from memory after.
type Spool = std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<[u8]>>>;
static SPOOL: std::sync::OnceLock<Spool> = std::sync::OnceLock::new();

/// Opens a file for reading: a regular file directly, a pipe or device through [`SPOOL`].
/// A folder is refused; a stream is read with the [`MAX_LINE`] cap, so `/dev/zero` fails
/// at that size rather than filling the memory.
fn open_source(path: &Path) -> Result<Box<dyn std::io::Read + Send>> {
    use std::io::Read;
    // stat, not open: opening a FIFO a second time would wait for a writer that is gone.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is a folder; expected a text file",
            path.display()
        )));
    }
    let spool = SPOOL.get_or_init(Default::default);
    if !meta.is_file() {
        if let Some(b) = spool.lock().unwrap_or_else(|e| e.into_inner()).get(path) {
            return Ok(Box::new(std::io::Cursor::new(b.clone())));
        }
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(Box::new(f));
    }
    let (mut bytes, mut chunk) = (Vec::new(), vec![0u8; 1 << 20]);
    let (mut line, mut run) = (1usize, 0usize);
    let mut f = f;
    loop {
        let n = f.read(&mut chunk).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b == b'\n' {
                (line, run) = (line + 1, 0);
            } else {
                run += 1;
            }
        }
        if run > MAX_LINE {
            return Err(long_line(path, line));
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let b: std::sync::Arc<[u8]> = bytes.into();
    spool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_path_buf(), b.clone());
    Ok(Box::new(std::io::Cursor::new(b)))
}

/// The UTF-8 byte-order mark some editors write first; every reader skips it, as Python's
/// `utf-8-sig` does.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads a whole UTF-8 text file (without a leading byte-order mark).
pub fn read_text(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_source(path)?, &mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let skip = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    bytes.drain(..skip);
    String::from_utf8(bytes).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..off].iter().filter(|&&b| b == b'\n').count() + 1;
        utf8_error(path, line, (skip + off) as u64)
    })
}

/// Reads a text file and refuses an empty one, since nothing can be trained on it.
pub fn read_nonempty(path: &Path) -> Result<String> {
    let s = read_text(path)?;
    if s.trim().is_empty() {
        return Err(empty(path));
    }
    Ok(s)
}

fn long_line(path: &Path, line: usize) -> Error {
    Error::input(
        path,
        line,
        format!(
            "a line longer than {} MiB; expected lines of text",
            MAX_LINE >> 20
        ),
    )
}

fn empty(path: &Path) -> Error {
    Error::input(path, 1, "file is empty; expected text")
}

/// The longest line a reader accepts: a file without line breaks (`/dev/zero`, a binary
/// file) is refused at this size instead of filling the memory.
pub const MAX_LINE: usize = 64 << 20;

/// The lines of a UTF-8 file, each with its line terminator, read one at a time (a leading
/// byte-order mark skipped).
///
/// Memory stays at one line whatever the file size. Each line is checked on its own, and an
/// invalid byte is reported with its line and its offset from the start of the file. After
/// an error the iterator ends.
pub struct Lines {
    path: PathBuf,
    reader: std::io::BufReader<Box<dyn std::io::Read + Send>>,
    buf: Vec<u8>,
    /// Number of the line the next call returns (1-based).
    line: usize,
    /// Byte offset of that line in the file.
    offset: u64,
    done: bool,
}

impl Lines {
    pub fn open(path: &Path) -> Result<Lines> {
        Ok(Lines::from_reader(path.to_path_buf(), open_source(path)?))
    }

    /// Standard input, read as a file is (the same line cap and UTF-8 checks), named
    /// `<stdin>` in errors.
    pub fn stdin() -> Lines {
        Lines::from_reader(PathBuf::from("<stdin>"), Box::new(std::io::stdin()))
    }

    fn from_reader(path: PathBuf, r: Box<dyn std::io::Read + Send>) -> Lines {
        Lines {
            path,
            reader: std::io::BufReader::with_capacity(1 << 16, r),
            buf: Vec::new(),
            line: 1,
            offset: 0,
            done: false,
        }
    }

    /// Like [`Lines::open`], but refuses a file with nothing but whitespace. It reads only
    /// up to the first visible character to decide.
    pub fn open_nonempty(path: &Path) -> Result<Lines> {
        let mut probe = Lines::open(path)?;
        loop {
            match probe.next() {
                None => return Err(empty(path)),
                Some(Err(e)) => return Err(e),
                Some(Ok(l)) if !l.trim().is_empty() => break,
                Some(Ok(_)) => {}
            }
        }
        Lines::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for Lines {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Result<String>> {
        self.next_str().map(|l| l.map(str::to_string))
    }
}

impl Lines {
    /// The next line (terminator included), lent until the next call: a reader that
    /// keeps only parts of each line (a column file's token and tag) copies those alone.
    pub fn next_str(&mut self) -> Option<Result<&str>> {
        if self.done {
            return None;
        }
        self.buf.clear();
        use std::io::Read;
        let limit = (MAX_LINE + 1) as u64;
        let n = match (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
        {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(n) => n,
            Err(e) => {
                self.done = true;
                return Some(Err(Error::io(&self.path, e)));
            }
        };
        let line = self.line;
        let mut at = self.offset;
        if line == 1 && self.buf.starts_with(BOM) {
            self.buf.drain(..BOM.len());
            at += BOM.len() as u64;
        }
        if n > MAX_LINE && self.buf.last() != Some(&b'\n') {
            self.done = true;
            return Some(Err(long_line(&self.path, line)));
        }
        self.line += 1;
        self.offset += n as u64;
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Some(Ok(s)),
            Err(e) => {
                self.done = true;
                Some(Err(utf8_error(
                    &self.path,
                    line,
                    at + e.valid_up_to() as u64,
                )))
            }
        }
    }
}

/// The lines of a file, or of standard input when `path` is `None`, without their
/// terminators: what `predict` commands read, under the [`MAX_LINE`] cap.
pub fn read_lines(path: Option<&Path>) -> Result<Vec<String>> {
    let lines = match path {
        Some(p) => Lines::open(p)?,
        None => Lines::stdin(),
    };
    lines
        .map(|l| l.map(|s| strip_eol(&s).to_string()))
        .collect()
}

/// A line without its `\n` or `\r\n`.
pub fn strip_eol(line: &str) -> &str {
    line.strip_suffix('\n')
        .map_or(line, |l| l.strip_suffix('\r').unwrap_or(l))
}

/// One part of a corpus: a file, streamed, or text already in memory (a character split
/// of a file, as tinyshakespeare's 90/10).
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    Memory(String),
}

impl Source {
    /// The lines with their terminators. A file must not be empty.
    pub fn lines(&self) -> Result<Box<dyn Iterator<Item = Result<String>> + Send + '_>> {
        Ok(match self {
            Source::File(p) => Box::new(Lines::open_nonempty(p)?),
            Source::Memory(s) => Box::new(s.split_inclusive('\n').map(|l| Ok(l.to_string()))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("rnnkit-read-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn lines_keep_terminators_and_match_the_whole_file() {
        let text = "первая строка\r\nsecond\n\nlast without newline";
        let p = tmp("ok", text.as_bytes());
        let lines: Vec<String> = Lines::open(&p).unwrap().map(|l| l.unwrap()).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines.concat(), read_text(&p).unwrap());
    }

    #[test]
    fn invalid_utf8_names_line_and_file_offset() {
        let p = tmp("bad", b"ok line\nsecond \xff line\n");
        let mut it = Lines::open(&p).unwrap();
        assert!(it.next().unwrap().is_ok());
        let e = it.next().unwrap().unwrap_err().to_string();
        assert!(e.contains(":2: invalid UTF-8 at byte offset 15"), "{e}");
        assert!(it.next().is_none());
        // The whole-file reader reports the same place.
        assert_eq!(read_text(&p).unwrap_err().to_string(), e);
    }

    #[test]
    fn open_nonempty_refuses_blank_files() {
        let p = tmp("blank", b"  \n\n\t\n");
        let e = Lines::open_nonempty(&p).err().unwrap().to_string();
        assert!(e.contains("file is empty"), "{e}");
        assert!(Lines::open_nonempty(&tmp("one", b"\nx")).is_ok());
    }

    /// A FIFO is read once and served again from memory: a second open sees the same lines.
    #[test]
    fn a_fifo_can_be_read_twice() {
        let p = std::env::temp_dir().join(format!("rnnkit-read-{}-fifo", std::process::id()));
        let _ = std::fs::remove_file(&p);
        assert!(std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap()
            .success());
        let w = p.clone();
        let writer = std::thread::spawn(move || std::fs::write(w, "one\ntwo\n").unwrap());
        let first: Vec<String> = Lines::open_nonempty(&p)
            .unwrap()
            .map(|l| l.unwrap())
            .collect();
        writer.join().unwrap();
        let again: Vec<String> = Lines::open(&p).unwrap().map(|l| l.unwrap()).collect();
        assert_eq!(first, ["one\n", "two\n"]);
        assert_eq!(again, first);
        assert_eq!(read_text(&p).unwrap(), "one\ntwo\n");
        std::fs::remove_file(&p).unwrap();
    }
}
