//! CoNLL-style column files and tag schemes (IOB1, IOB2 = BIO, BIOES).
//!
//! Columns are tab-separated when a line holds a tab, else whitespace-separated; blank
//! lines end sentences; `-DOCSTART-` lines are skipped, and so are comment lines of the
//! formats that have them (CoNLL-U's `# text = …`, `# sent_id = …`): a line that starts with
//! `#` before a sentence's first token and holds a `=`, another number of columns than the
//! file's rows, or no tag in its tag column. Any other line that starts with `#` is a row
//! (the token `#`, as in CoNLL-2003's `# # I-NP O`).

use crate::error::{Error, Result};
use std::path::Path;

/// One sentence: tokens and their tags, the same length, and the line it started on.
#[derive(Clone, Debug, PartialEq)]
pub struct Sentence {
    pub tokens: Vec<String>,
    pub tags: Vec<String>,
    pub line: usize,
}

/// Which columns hold the token and the tag; negative counts from the end (−1: last).
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    pub token: isize,
    pub tag: isize,
}

impl Default for Columns {
    fn default() -> Self {
        Columns { token: 0, tag: -1 }
    }
}

/// Columns of a row kept without allocating (CoNLL-2003 has 4, CoNLL-U 10).
const ON_STACK: usize = 16;

/// A row's columns: tab-separated when the line holds a tab, else split at whitespace
/// (at ASCII whitespace for an ASCII line, the same split but faster). The first [`ON_STACK`] are
/// kept on the stack, as a file has a row a line and a vector would allocate for each.
struct Fields<'a> {
    first: [&'a str; ON_STACK],
    rest: Vec<&'a str>,
    len: usize,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str) -> Self {
        let mut f = Fields {
            first: [""; ON_STACK],
            rest: Vec::new(),
            len: 0,
        };
        if line.contains('\t') {
            line.split('\t').for_each(|c| f.push(c));
        } else if line.is_ascii() && !line.contains('\u{b}') {
            // The same split: of ASCII, only the vertical tab is whitespace to Unicode
            // and not to `split_ascii_whitespace`.
            line.split_ascii_whitespace().for_each(|c| f.push(c));
        } else {
            line.split_whitespace().for_each(|c| f.push(c));
        }
        f
    }

    fn push(&mut self, c: &'a str) {
        match self.first.get_mut(self.len) {
            Some(slot) => *slot = c,
            None => self.rest.push(c),
        }
        self.len += 1;
    }

    /// Column `c`, counted from the end when negative (−1: last).
    fn pick(&self, c: isize) -> Option<&'a str> {
        let i = if c < 0 { self.len as isize + c } else { c };
        let i = usize::try_from(i).ok().filter(|&i| i < self.len)?;
        Some(if i < ON_STACK {
            self.first[i]
        } else {
            self.rest[i - ON_STACK]
        })
    }
}

/// Reads every sentence of a column file.
pub fn read(path: &Path, cols: Columns) -> Result<Vec<Sentence>> {
    at_least_one(sentences(path, cols)?.collect::<Result<Vec<_>>>()?, path)
}

/// Parses column text already in memory (`path` names it in errors).
pub fn parse(text: &str, path: &Path, cols: Columns) -> Result<Vec<Sentence>> {
    let mut p = Parser::new(cols);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        out.extend(p.line(line, n + 1, path)?);
    }
    out.extend(p.finish());
    at_least_one(out, path)
}

/// Streams the sentences of a column file, holding one sentence in memory at a time.
pub fn sentences(path: &Path, cols: Columns) -> Result<Sentences> {
    Ok(Sentences {
        lines: super::read::Lines::open(path)?,
        path: path.to_path_buf(),
        parser: Parser::new(cols),
        lineno: 0,
        done: false,
    })
}

fn at_least_one(out: Vec<Sentence>, path: &Path) -> Result<Vec<Sentence>> {
    if out.is_empty() {
        return Err(no_sentences(path));
    }
    Ok(out)
}

/// The error for a column file without a single sentence.
pub fn no_sentences(path: &Path) -> Error {
    Error::input(
        path,
        1,
        "no sentences; expected token and tag columns separated by blank lines",
    )
}

/// Iterator returned by [`sentences`]; ends after the first error.
pub struct Sentences {
    lines: super::read::Lines,
    /// The file's name for errors (the lines are lent out while one is parsed).
    path: std::path::PathBuf,
    parser: Parser,
    lineno: usize,
    done: bool,
}

impl Iterator for Sentences {
    type Item = Result<Sentence>;

    fn next(&mut self) -> Option<Result<Sentence>> {
        while !self.done {
            let Some(line) = self.lines.next_str() else {
                self.done = true;
                return self.parser.finish().map(Ok);
            };
            self.lineno += 1;
            let sent = match line {
                Ok(l) => self.parser.line(l, self.lineno, &self.path),
                Err(e) => Err(e),
            };
            match sent {
                Ok(Some(s)) => return Some(Ok(s)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Line-at-a-time state shared by the in-memory and the streaming reader.
struct Parser {
    cols: Columns,
    width: Option<usize>,
    cur: Sentence,
}

impl Parser {
    fn new(cols: Columns) -> Parser {
        Parser {
            cols,
            width: None,
            cur: Sentence {
                tokens: Vec::new(),
                tags: Vec::new(),
                line: 1,
            },
        }
    }

    /// Takes one line (terminator optional); returns a sentence when a blank line ends one.
    fn line(&mut self, raw: &str, lineno: usize, path: &Path) -> Result<Option<Sentence>> {
        let line = super::read::strip_eol(raw);
        if line.trim().is_empty() {
            let next = Sentence {
                tokens: Vec::new(),
                tags: Vec::new(),
                line: lineno + 1,
            };
            let done = std::mem::replace(&mut self.cur, next);
            return Ok((!done.tokens.is_empty()).then_some(done));
        }
        if line.starts_with("-DOCSTART-") {
            return Ok(None);
        }
        let fields = Fields::new(line);
        let width = fields.len;
        if line.starts_with('#') && self.cur.tokens.is_empty() {
            let tag_like = fields
                .pick(self.cols.tag)
                .is_some_and(|t| split_tag(t).is_some());
            let odd_width = self.width.is_some_and(|w| w != width);
            if line.contains('=') || odd_width || !tag_like {
                return Ok(None);
            }
        }
        match self.width {
            None => self.width = Some(width),
            Some(w) if w != width => {
                return Err(Error::input(
                    path,
                    lineno,
                    format!("{width} columns; expected {w} like the lines before"),
                ));
            }
            _ => {}
        }
        let cols = self.cols;
        let (Some(tok), Some(tag)) = (fields.pick(cols.token), fields.pick(cols.tag)) else {
            let need = cols.token.max(cols.tag).max(-1 - cols.token.min(cols.tag)) as usize + 1;
            return Err(Error::input(
                path,
                lineno,
                format!(
                    "{width} columns; expected at least {need} (token column {}, tag column {})",
                    cols.token, cols.tag
                ),
            ));
        };
        self.cur.tokens.push(tok.to_string());
        self.cur.tags.push(tag.to_string());
        Ok(None)
    }

    fn finish(&mut self) -> Option<Sentence> {
        let done = std::mem::replace(&mut self.cur, Parser::new(self.cols).cur);
        (!done.tokens.is_empty()).then_some(done)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// I- everywhere except B- to separate two adjacent entities of one type.
    Iob1,
    /// BIO: every entity starts with B-.
    Iob2,
    /// B-, I-, E- (end), S- (single token).
    Bioes,
}

impl std::str::FromStr for Scheme {
    type Err = Error;
    fn from_str(s: &str) -> Result<Scheme> {
        Scheme::parse(s)
    }
}

impl Scheme {
    pub fn parse(s: &str) -> Result<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "iob1" => Ok(Scheme::Iob1),
            "iob2" | "bio" => Ok(Scheme::Iob2),
            "bioes" | "iobes" => Ok(Scheme::Bioes),
            _ => Err(Error::Usage(format!(
                "unknown tag scheme {s:?}; expected iob1, iob2 (bio) or bioes"
            ))),
        }
    }
}

/// Splits a tag into (prefix, type): `B-PER` → (`B`, `PER`), `O` → (`O`, ``).
pub fn split_tag(tag: &str) -> Option<(char, &str)> {
    if tag == "O" {
        return Some(('O', ""));
    }
    let (p, t) = tag.split_once(['-', '_'])?;
    let c = p.chars().next()?;
    (p.len() == 1 && "BIESU".contains(c) && !t.is_empty())
        .then_some((if c == 'U' { 'S' } else { c }, t))
}

/// Entity spans (type, start, end exclusive) of a tag sequence in `scheme`.
pub fn spans(tags: &[String], scheme: Scheme) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (i, t) in tags.iter().enumerate() {
        let (p, ty) = split_tag(t).unwrap_or(('O', ""));
        let starts = match (scheme, p) {
            (_, 'O') => false,
            (_, 'B') | (_, 'S') => true,
            (_, 'I') | (_, 'E') => open.as_ref().is_none_or(|(oty, _)| oty != ty),
            _ => true,
        };
        if p == 'O' || starts {
            if let Some((oty, s)) = open.take() {
                out.push((oty, s, i));
            }
        }
        if p != 'O' && starts {
            open = Some((ty.to_string(), i));
        }
        if matches!(p, 'E' | 'S') {
            if let Some((oty, s)) = open.take() {
                out.push((oty, s, i + 1));
            }
        }
    }
    if let Some((oty, s)) = open {
        out.push((oty, s, tags.len()));
    }
    out
}

/// Re-tags a sequence into `to`, going through its entity spans.
pub fn convert(tags: &[String], from: Scheme, to: Scheme) -> Vec<String> {
    let mut out = vec!["O".to_string(); tags.len()];
    let sp = spans(tags, from);
    for (k, (ty, s, e)) in sp.iter().enumerate() {
        let prev_adjacent = k > 0 && sp[k - 1].2 == *s && sp[k - 1].0 == *ty;
        for (i, slot) in out.iter_mut().enumerate().take(*e).skip(*s) {
            let p = match to {
                Scheme::Iob2 => {
                    if i == *s {
                        'B'
                    } else {
                        'I'
                    }
                }
                Scheme::Iob1 => {
                    if i == *s && prev_adjacent {
                        'B'
                    } else {
                        'I'
                    }
                }
                Scheme::Bioes => match (i == *s, i + 1 == *e) {
                    (true, true) => 'S',
                    (true, false) => 'B',
                    (false, true) => 'E',
                    _ => 'I',
                },
            };
            *slot = format!("{p}-{ty}");
        }
    }
    out
}

/// The first invalid tag or transition in `scheme`, as (index, reason).
pub fn validate(tags: &[String], scheme: Scheme) -> Option<(usize, String)> {
    let mut prev = ('O', "");
    for (i, t) in tags.iter().enumerate() {
        let Some((p, ty)) = split_tag(t) else {
            return Some((i, format!("tag {t:?} is not O or PREFIX-TYPE")));
        };
        let bad = match scheme {
            Scheme::Iob1 => {
                matches!(p, 'E' | 'S') || (p == 'B' && !(prev.0 != 'O' && prev.1 == ty))
            }
            Scheme::Iob2 => matches!(p, 'E' | 'S') || (p == 'I' && (prev.0 == 'O' || prev.1 != ty)),
            Scheme::Bioes => {
                let inside = matches!(prev.0, 'B' | 'I');
                match p {
                    'I' | 'E' => !inside || prev.1 != ty,
                    _ => inside,
                }
            }
        };
        if bad {
            let before = if prev.0 == 'O' {
                "O".to_string()
            } else {
                format!("{}-{}", prev.0, prev.1)
            };
            return Some((i, format!("{t} cannot follow {before} in {scheme:?}")));
        }
        prev = (p, ty);
    }
    if scheme == Scheme::Bioes && matches!(prev.0, 'B' | 'I') {
        return Some((
            tags.len(),
            format!("entity {} is not closed by E- at the end", prev.1),
        ));
    }
    None
}

/// Checks every sentence; the error names the file and the line of the bad tag.
pub fn validate_file(path: &Path, sents: &[Sentence], scheme: Scheme) -> Result<()> {
    sents
        .iter()
        .try_for_each(|s| validate_sentence(path, s, scheme))
}

/// Checks one sentence read from `path`; the error names the line of the bad tag.
pub fn validate_sentence(path: &Path, s: &Sentence, scheme: Scheme) -> Result<()> {
    match validate(&s.tags, scheme) {
        Some((i, why)) => Err(Error::input(
            path,
            s.line + i.min(s.tags.len().saturating_sub(1)),
            why,
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn reads_space_and_tab_columns_skipping_docstart_and_comments() {
        let t = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n# c\nPeter NNP B-NP B-PER\n";
        let s = parse(t, Path::new("a"), Columns::default()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tokens, vec!["EU", "rejects"]);
        assert_eq!(s[1].tags, vec!["B-PER"]);
        let ru = "0\tПетр\tB-PER\n1\tI\tO\n\n0\tМосква\tB-LOC\n";
        let s = parse(ru, Path::new("b"), Columns { token: 1, tag: 2 }).unwrap();
        assert_eq!(s[0].tokens[0], "Петр");
        assert_eq!(s[1].tags, vec!["B-LOC"]);
    }

    /// Columns split as before they were kept on the stack: past the 16th, counted from
    /// the end, with empty tab fields, and at Unicode whitespace in a non-ASCII line.
    #[test]
    fn columns_past_sixteen_from_the_end_and_unicode_whitespace() {
        let wide: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let line = wide.join(" ");
        let f = Fields::new(&line);
        assert_eq!(f.len, 20);
        assert_eq!(
            (f.pick(0), f.pick(17), f.pick(-1), f.pick(-20)),
            (Some("c0"), Some("c17"), Some("c19"), Some("c0"))
        );
        assert_eq!((f.pick(20), f.pick(-21)), (None, None));
        let f = Fields::new("a\t\tB-X");
        assert_eq!((f.len, f.pick(1), f.pick(-1)), (3, Some(""), Some("B-X")));
        let f = Fields::new("Zürich\u{a0}B-LOC");
        assert_eq!(
            (f.len, f.pick(0), f.pick(1)),
            (2, Some("Zürich"), Some("B-LOC"))
        );
        let line = "x\u{b}y \u{c}z";
        let f = Fields::new(line);
        let std: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (f.len, f.pick(0), f.pick(-1)),
            (std.len(), Some(std[0]), std.last().copied())
        );
    }

    /// `#` is a token like any other; only comment lines of formats that have them go.
    #[test]
    fn hash_tokens_stay_and_conllu_comments_go() {
        let t = "# # I-NP O\nwins VBZ B-VP O\n\n# NN B-NP O\n\n";
        let s = parse(t, Path::new("a"), Columns::default()).unwrap();
        assert_eq!(s[0].tokens, vec!["#", "wins"]);
        assert_eq!(s[1].tokens, vec!["#"]);
        let u = "# sent_id = 1\n# text = # 1\n0\t#\tO\n1\t1\tB-X\n\n# newpar\n0\tx\tO\n";
        let s = parse(u, Path::new("b"), Columns { token: 1, tag: 2 }).unwrap();
        assert_eq!(s[0].tokens, vec!["#", "1"]);
        assert_eq!(s[1].tokens, vec!["x"]);
    }

    #[test]
    fn streaming_reader_matches_in_memory_parse() {
        let t = "# c\nEU B-ORG\r\nrejects O\n\n\n-DOCSTART- O\nPeter B-PER\nx O\ny I\n";
        let p = std::env::temp_dir().join(format!("rnnkit-conll-{}", std::process::id()));
        std::fs::write(&p, t).unwrap();
        let streamed: Vec<Sentence> = sentences(&p, Columns::default())
            .unwrap()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(streamed, parse(t, &p, Columns::default()).unwrap());
        assert_eq!(streamed.len(), 2);
        assert_eq!(streamed[1].line, 6);
        std::fs::write(&p, "a O\nb O x\n").unwrap();
        let e = sentences(&p, Columns::default())
            .unwrap()
            .find_map(|s| s.err())
            .unwrap()
            .to_string();
        assert!(
            e.ends_with(":2: 3 columns; expected 2 like the lines before"),
            "{e}"
        );
    }

    #[test]
    fn ragged_columns_name_the_line() {
        let e = parse("a B c O\nb O\n", Path::new("f.txt"), Columns::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.txt:2:"), "{e}");
        let e = parse("", Path::new("f.txt"), Columns::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no sentences"));
        let e = parse("a O\n", Path::new("f.txt"), Columns { token: 0, tag: 5 })
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected at least 6"), "{e}");
    }

    #[test]
    fn scheme_conversion_round_trips() {
        let bio = tags("B-PER I-PER O B-LOC B-LOC I-LOC O B-ORG");
        let bioes = convert(&bio, Scheme::Iob2, Scheme::Bioes);
        assert_eq!(bioes, tags("B-PER E-PER O S-LOC B-LOC E-LOC O S-ORG"));
        let iob1 = convert(&bio, Scheme::Iob2, Scheme::Iob1);
        assert_eq!(iob1, tags("I-PER I-PER O I-LOC B-LOC I-LOC O I-ORG"));
        assert_eq!(convert(&iob1, Scheme::Iob1, Scheme::Iob2), bio);
        assert_eq!(convert(&bioes, Scheme::Bioes, Scheme::Iob2), bio);
        for s in [Scheme::Iob1, Scheme::Iob2, Scheme::Bioes] {
            assert_eq!(validate(&convert(&bio, Scheme::Iob2, s), s), None, "{s:?}");
        }
    }

    #[test]
    fn validator_reports_invalid_transitions() {
        assert!(validate(&tags("O I-PER"), Scheme::Iob2)
            .unwrap()
            .1
            .contains("cannot follow O"));
        assert!(validate(&tags("B-PER I-LOC"), Scheme::Iob2).is_some());
        assert!(validate(&tags("B-PER I-PER"), Scheme::Bioes)
            .unwrap()
            .1
            .contains("not closed"));
        assert!(validate(&tags("B-PER X"), Scheme::Iob2)
            .unwrap()
            .1
            .contains("not O or PREFIX-TYPE"));
        assert!(Scheme::parse("bilou2").is_err());
    }
}
