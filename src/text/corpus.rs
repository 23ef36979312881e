//! Readers for parallel text, labelled sentences and pretrained word vectors.

use super::read::{strip_eol, Lines};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// The lines of a non-empty file without their terminators, numbered from 1.
fn numbered(path: &Path) -> Result<impl Iterator<Item = Result<(usize, String)>>> {
    Ok(Lines::open_nonempty(path)?
        .enumerate()
        .map(|(i, l)| l.map(|l| (i + 1, strip_eol(&l).to_string()))))
}

/// Line-aligned source and target files, read in step; differing line counts are an error.
pub fn read_parallel(src: &Path, tgt: &Path) -> Result<Vec<(String, String)>> {
    let (mut a, mut b) = (numbered(src)?, numbered(tgt)?);
    let mut out = Vec::new();
    loop {
        match (a.next().transpose()?, b.next().transpose()?) {
            (Some((_, s)), Some((_, t))) => out.push((s, t)),
            (None, None) => return Ok(out),
            (rest_a, rest_b) => {
                let la = out.len() + rest_a.is_some() as usize + a.count();
                let lb = out.len() + rest_b.is_some() as usize + b.count();
                return Err(Error::input(
                    tgt,
                    out.len() + 1,
                    format!(
                        "{lb} lines, but {} has {la}; expected line-aligned files",
                        src.display()
                    ),
                ));
            }
        }
    }
}

/// One TSV file of `source<TAB>target` pairs.
pub fn read_parallel_tsv(path: &Path) -> Result<Vec<(String, String)>> {
    numbered(path)?
        .map(|l| {
            let (i, l) = l?;
            match l.split_once('\t') {
                Some((s, t)) if !t.contains('\t') => Ok((s.to_string(), t.to_string())),
                _ => Err(Error::input(
                    path,
                    i,
                    "expected exactly two tab-separated columns (source, target)",
                )),
            }
        })
        .collect()
}

/// A TSV with a header naming a `sentence` and a `label` column (GLUE's SST-2 layout).
pub fn read_labelled(path: &Path) -> Result<Vec<(String, String)>> {
    let rows = read_tsv(
        path,
        &Column::Name("sentence".into()),
        Some(&Column::Name("label".into())),
        None,
    )?;
    Ok(rows
        .into_iter()
        .map(|(s, l)| (s, l.unwrap_or_default()))
        .collect())
}

/// A TSV column: by its header name, or by its 0-based index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Column {
    Index(usize),
    Name(String),
}

impl std::str::FromStr for Column {
    type Err = Error;
    fn from_str(s: &str) -> Result<Column> {
        Ok(match s.parse::<usize>() {
            Ok(i) => Column::Index(i),
            Err(_) => Column::Name(s.to_string()),
        })
    }
}

/// Rows `(text, label)` of a TSV file. Columns are named (the first line is then a header)
/// or numbered; `header` says whether a first line is a header when every column is
/// numbered (default: no). Without a label column, or when the named label column is
/// absent (GLUE's unlabelled test.tsv), labels are `None`. Empty lines are skipped; a row
/// with another number of columns than the first is an error naming its line.
pub fn read_tsv(
    path: &Path,
    text: &Column,
    label: Option<&Column>,
    header: Option<bool>,
) -> Result<Vec<(String, Option<String>)>> {
    let mut lines = numbered(path)?.peekable();
    let named = matches!(text, Column::Name(_)) || matches!(label, Some(Column::Name(_)));
    let head: Vec<String> = if named || header == Some(true) {
        let h = lines.next().transpose()?.map(|l| l.1).unwrap_or_default();
        h.split('\t').map(|c| c.trim().to_string()).collect()
    } else {
        Vec::new()
    };
    let index = |c: &Column| -> Option<usize> {
        match c {
            Column::Index(i) => Some(*i),
            Column::Name(n) => head.iter().position(|h| h == n),
        }
    };
    let ti = index(text).ok_or_else(|| {
        Error::input(
            path,
            1,
            format!(
                "header {:?}; expected a column named {text:?}",
                head.join("\t")
            ),
        )
    })?;
    let li = label.and_then(index);
    let mut width = (!head.is_empty()).then_some(head.len());
    let mut out = Vec::new();
    for l in lines {
        let (i, l) = l?;
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split('\t').collect();
        let w = *width.get_or_insert(f.len());
        let need = ti.max(li.unwrap_or(0)) + 1;
        if f.len() != w || f.len() < need {
            return Err(Error::input(
                path,
                i,
                format!("{} columns; expected {}", f.len(), w.max(need)),
            ));
        }
        out.push((
            f[ti].trim_end().to_string(),
            li.map(|j| f[j].trim().to_string()),
        ));
    }
    if out.is_empty() {
        return Err(Error::input(
            path,
            1,
            "no rows; expected tab-separated text and label columns",
        ));
    }
    Ok(out)
}

/// Word vectors in word2vec/GloVe text format, with or without the `count dim` header.
#[derive(Debug)]
pub struct Vectors {
    pub dim: usize,
    pub index: HashMap<String, usize>,
    /// `[words, dim]`.
    pub data: Vec<f32>,
    /// The `count dim` header's count, when the file has one.
    pub header_rows: Option<usize>,
    /// Vector lines read (a repeated word counts each time; the first vector is kept).
    pub rows: usize,
}

impl Vectors {
    /// Refuses a file whose header's count is not its number of vector lines (`data
    /// check`; training takes a file cut short of its header's count, as `head -n` makes).
    pub fn check_header(&self, path: &Path) -> Result<()> {
        match self.header_rows {
            Some(n) if n != self.rows => Err(Error::input(
                path,
                1,
                format!(
                    "the header says {n} vectors; the file has {} vector lines",
                    self.rows
                ),
            )),
            _ => Ok(()),
        }
    }
}

pub fn read_vectors(path: &Path) -> Result<Vectors> {
    let mut dim = None;
    let mut v = Vectors {
        dim: 0,
        index: HashMap::new(),
        data: Vec::new(),
        header_rows: None,
        rows: 0,
    };
    for l in numbered(path)? {
        let (i, l) = l?;
        if i == 1 {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 2 && f.iter().all(|x| x.parse::<usize>().is_ok()) {
                v.header_rows = f[0].parse().ok();
                dim = f[1].parse().ok();
                continue;
            }
        }
        let mut f = l.split_whitespace();
        let Some(word) = f.next() else { continue };
        let vals: std::result::Result<Vec<f32>, _> = f.map(str::parse::<f32>).collect();
        let vals =
            vals.map_err(|_| Error::input(path, i, "expected a word followed by numbers"))?;
        let d = *dim.get_or_insert(vals.len());
        if vals.len() != d || d == 0 {
            return Err(Error::input(
                path,
                i,
                format!("{} numbers; expected {d}", vals.len()),
            ));
        }
        if let Some(j) = vals.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                path,
                i,
                format!(
                    "value {} of {word:?} is {}; expected finite numbers",
                    j + 1,
                    vals[j]
                ),
            ));
        }
        v.rows += 1;
        v.index.entry(word.to_string()).or_insert(v.data.len() / d);
        if v.index[word] == v.data.len() / d {
            v.data.extend(vals);
        }
    }
    v.dim = dim.unwrap_or(0);
    if v.index.is_empty() {
        return Err(Error::input(
            path,
            1,
            "no vectors; expected lines of a word followed by numbers",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, body: &[u8]) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rnnkit-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn parallel_files_must_align() {
        let (a, b, c) = (
            file("a.en", b"one\ntwo\n"),
            file("a.de", b"eins\nzwei\n"),
            file("c.de", b"eins\n"),
        );
        assert_eq!(read_parallel(&a, &b).unwrap().len(), 2);
        let e = read_parallel(&a, &c).unwrap_err().to_string();
        assert!(e.contains("c.de:2:") && e.contains("line-aligned"), "{e}");
        let t = file("p.tsv", b"a\tb\nc\n");
        assert!(read_parallel_tsv(&t)
            .unwrap_err()
            .to_string()
            .contains("p.tsv:2:"));
    }

    #[test]
    fn labelled_tsv_needs_its_header() {
        let ok = file("l.tsv", b"sentence\tlabel\nit 's good \t1\nbad \t0\n");
        assert_eq!(
            read_labelled(&ok).unwrap()[0],
            ("it 's good".to_string(), "1".to_string())
        );
        let bad = file("h.tsv", b"text\tcls\nx\t1\n");
        assert!(read_labelled(&bad)
            .unwrap_err()
            .to_string()
            .contains("h.tsv:1:"));
        let ragged = file("r.tsv", b"sentence\tlabel\nx\n");
        assert!(read_labelled(&ragged)
            .unwrap_err()
            .to_string()
            .contains("r.tsv:2:"));
    }

    #[test]
    fn vectors_with_and_without_header() {
        let a = read_vectors(&file("v1.txt", b"2 3\nthe 0.1 0.2 0.3\ncat 1 2 3\n")).unwrap();
        assert_eq!((a.dim, a.index["cat"]), (3, 1));
        assert_eq!(&a.data[3..], &[1.0, 2.0, 3.0]);
        let b = read_vectors(&file("v2.txt", b"the 0.1 0.2\ncat 1 2\n")).unwrap();
        assert_eq!(b.dim, 2);
        let e = read_vectors(&file("v3.txt", b"the 0.1 0.2\ncat 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("v3.txt:2:"), "{e}");
        assert!(read_vectors(&file("v4.txt", b"")).is_err());
        // Every value must be finite: NaN and infinities are refused, naming the line.
        for (i, bad) in ["nan", "inf", "-inf", "NaN", "1e39"].iter().enumerate() {
            let body = format!("the 0.1 0.2\ncat 1 {bad}\n");
            let e = read_vectors(&file(&format!("v5-{i}.txt"), body.as_bytes()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(":2:") && e.contains("finite"), "{bad}: {e}");
        }
        // The header's count is what `data check` compares with the rows.
        let h = read_vectors(&file("v6.txt", b"3 2\nthe 0.1 0.2\ncat 1 2\n")).unwrap();
        assert_eq!((h.header_rows, h.rows), (Some(3), 2));
        let e = h.check_header(Path::new("v6.txt")).unwrap_err().to_string();
        assert!(e.contains("v6.txt:1:") && e.contains("3 vectors"), "{e}");
        assert!(a.check_header(Path::new("v1.txt")).is_ok());
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let p = file("bom.txt", b"\xef\xbb\xbfthe 0.1\ncat 1\n");
        assert!(read_vectors(&p).unwrap().index.contains_key("the"));
        assert_eq!(
            super::super::read::read_text(&p).unwrap(),
            "the 0.1\ncat 1\n"
        );
        let l = file("bom.tsv", b"\xef\xbb\xbfsentence\tlabel\ngood\t1\n");
        assert_eq!(read_labelled(&l).unwrap().len(), 1);
        // An invalid byte after the mark is still reported at its offset in the file.
        let bad = file("bom-bad.txt", b"\xef\xbb\xbfok \xff\n");
        let e = super::super::read::read_text(&bad).unwrap_err().to_string();
        assert!(e.contains("byte offset 6"), "{e}");
        let e = super::super::read::Lines::open(&bad)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("byte offset 6"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_the_byte_offset() {
        let p = file("bad.txt", b"ok\n\xc3\x28\n");
        let e = super::super::read::read_text(&p).unwrap_err().to_string();
        assert!(
            e.contains("bad.txt:2:") && e.contains("byte offset 3"),
            "{e}"
        );
    }
}
