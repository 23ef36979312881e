//! Named datasets and where to find them: a folder NAME under RNNKIT_DATA_DIR, then the
//! user's cache (~/.cache/rnnkit/NAME).

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
