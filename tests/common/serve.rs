//! A running `rnnkit serve` for the tests (the real binary on 127.0.0.1, port 0) with tiny
//! models of every task trained once per test binary on generated text, and a JSON client.

use super::{bin, s};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::OnceLock;

/// Trains a tiny model of each task once (on generated text) and returns their paths.
pub fn models() -> &'static [(String, PathBuf); 4] {
    static M: OnceLock<[(String, PathBuf); 4]> = OnceLock::new();
    M.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("rnnkit-serve-models-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let w = |name: &str, body: String| {
            let p = d.join(name);
            std::fs::write(&p, body).unwrap();
            s(&p)
        };
        let text: String = (0..300)
            .map(|i| {
                format!(
                    "the cat {} the dog and the bird.\n",
                    ["sat", "ran", "saw"][i % 3]
                )
            })
            .collect();
        let lm = w("lm.txt", text);
        let names = ["Anna", "Boris", "Clara", "David"];
        let places = ["Berlin", "Paris", "Oslo", "Rome"];
        let conll: String = (0..120)
            .map(|i| {
                format!(
                    "{} B-PER\nlives O\nin O\n{} B-LOC\n. O\n\n",
                    names[i % 4],
                    places[(i / 4) % 4]
                )
            })
            .collect();
        let conll = w("ner.txt", conll);
        let mut tsv = String::from("sentence\tlabel\n");
        for i in 0..200 {
            let (word, y) = if i % 2 == 0 {
                ("great", 1)
            } else {
                ("awful", 0)
            };
            tsv += &format!("a {word} film\t{y}\n");
        }
        let tsv = w("cls.tsv", tsv);
        let pairs = [("Hund", "dog"), ("Mann", "man"), ("Frau", "woman")];
        let de: String = (0..150)
            .map(|i| format!("Ein {} läuft.\n", pairs[i % 3].0))
            .collect();
        let en: String = (0..150)
            .map(|i| format!("A {} runs.\n", pairs[i % 3].1))
            .collect();
        let (de, en) = (w("tr.de", de), w("tr.en", en));
        let train = |task: &str, out: &str, data: &[&str], extra: &[&str]| {
            let out = d.join(out);
            let mut args = vec![task, "train"];
            args.extend(data);
            args.extend(extra);
            args.extend([
                "--epochs",
                "1",
                "--threads",
                "1",
                "--quiet",
                "--overwrite",
                "--out",
            ]);
            let o = bin().args(&args).arg(&out).output().unwrap();
            assert!(
                o.status.success(),
                "{task}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            out.join("model.safetensors")
        };
        [
            (
                "lm".into(),
                train(
                    "lm",
                    "lm",
                    &["--train", &lm],
                    &[
                        "--tokenizer",
                        "char",
                        "--embed",
                        "16",
                        "--layers",
                        "1",
                        "--batch-size",
                        "4",
                        "--bptt",
                        "16",
                    ],
                ),
            ),
            (
                "ner".into(),
                train(
                    "tag",
                    "ner",
                    &["--train", &conll],
                    &[
                        "--embed",
                        "8",
                        "--hidden",
                        "8",
                        "--char-dim",
                        "4",
                        "--char-hidden",
                        "4",
                    ],
                ),
            ),
            (
                "sst".into(),
                train(
                    "classify",
                    "sst",
                    &["--train", &tsv],
                    &[
                        "--embed",
                        "8",
                        "--hidden",
                        "8",
                        "--min-freq",
                        "1",
                        "--pooling",
                        "attention",
                    ],
                ),
            ),
            (
                "de-en".into(),
                train(
                    "translate",
                    "de-en",
                    &["--train", &de, &en],
                    &[
                        "--embed",
                        "8",
                        "--hidden",
                        "8",
                        "--decoder-hidden",
                        "8",
                        "--min-freq",
                        "1",
                    ],
                ),
            ),
        ]
    })
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = bin();
        cmd.args(["serve", "--port", "0", "--threads", "1"]);
        for (name, path) in models() {
            cmd.arg("--model").arg(format!("{name}={}", path.display()));
        }
        cmd.args(extra).envs(env.iter().copied());
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("http://")
            .next()
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server {
            child,
            url: format!("http://{addr}"),
        }
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        respond(ureq::post(&format!("{}{path}", self.url)).send_string(body))
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        match ureq::get(&format!("{}{path}", self.url)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn respond(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let (code, resp) = match r {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(c, r)) => (c, r),
        Err(e) => panic!("{e}"),
    };
    let text = resp.into_string().unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
