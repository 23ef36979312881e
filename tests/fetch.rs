//! `rnnkit data fetch` against an HTTP server on 127.0.0.1 that the test starts itself:
//! a good download lands in the cache, a corrupted or truncated one leaves nothing there.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Serves `root/<folder>/<file>`; mode 0 = as is, 1 = one byte flipped, 2 = cut short.
fn serve(root: PathBuf, mode: Arc<AtomicU8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(mut s) = s else { continue };
            let mut first = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            r.read_line(&mut first).unwrap();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let path = first
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            match std::fs::read(root.join(&path)) {
                Ok(mut body) => {
                    let n = body.len();
                    match mode.load(Ordering::SeqCst) {
                        1 => body[n / 2] ^= 1,
                        2 => body.truncate(n / 3),
                        _ => {}
                    }
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(&body);
                }
                Err(_) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    port
}

#[test]
fn fetch_checks_sha256_and_never_leaves_a_bad_file() {
    let Some(data) = std::env::var_os("RNNKIT_DATA_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("tinyshakespeare/input.txt").is_file())
    else {
        eprintln!("SKIPPED: needs the shared corpora; run with RNNKIT_DATA_DIR=../shared/data");
        return;
    };
    let tmp = std::env::temp_dir().join(format!("rnnkit-fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("empty")).unwrap();
    let mode = Arc::new(AtomicU8::new(1));
    let port = serve(data, mode.clone());
    let fetch = || {
        Command::new(env!("CARGO_BIN_EXE_rnnkit"))
            .args(["data", "fetch", "tinyshakespeare", "--json"])
            .env("RNNKIT_DATA_DIR", tmp.join("empty"))
            .env("XDG_CACHE_HOME", tmp.join("cache"))
            .env("RNNKIT_DATA_URL", format!("http://127.0.0.1:{port}"))
            .output()
            .unwrap()
    };
    let target = tmp.join("cache/rnnkit/tinyshakespeare/input.txt");
    let o = fetch();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("SHA-256"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !target.exists(),
        "a corrupted download must not land in the cache"
    );
    mode.store(2, Ordering::SeqCst);
    let o = fetch();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !target.exists(),
        "a truncated download must not land in the cache"
    );
    let left: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .collect();
    assert!(left.is_empty(), "no temporary files left behind");
    mode.store(0, Ordering::SeqCst);
    let o = fetch();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(
            std::env::var_os("RNNKIT_DATA_DIR")
                .map(PathBuf::from)
                .unwrap()
                .join("tinyshakespeare/input.txt")
        )
        .unwrap()
    );
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert!(v["path"].as_str().unwrap().ends_with("tinyshakespeare"));
}

/// SST-2 comes as GLUE's zip archive: the members are extracted and checked.
#[test]
fn fetch_extracts_sst2_from_its_zip() {
    use std::io::Write as _;
    let Some(data) = std::env::var_os("RNNKIT_DATA_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("sst2/train.tsv").is_file())
    else {
        eprintln!("SKIPPED: needs the shared corpora; run with RNNKIT_DATA_DIR=../shared/data");
        return;
    };
    let tmp = std::env::temp_dir().join(format!("rnnkit-fetch-zip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("empty")).unwrap();
    std::fs::create_dir_all(tmp.join("srv/sst2")).unwrap();
    let mut z = zip::ZipWriter::new(std::fs::File::create(tmp.join("srv/sst2/SST-2.zip")).unwrap());
    for f in ["train.tsv", "dev.tsv", "test.tsv"] {
        z.start_file(
            format!("SST-2/{f}"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(&std::fs::read(data.join("sst2").join(f)).unwrap())
            .unwrap();
    }
    z.finish().unwrap();
    let port = serve(tmp.join("srv"), Arc::new(AtomicU8::new(0)));
    let o = Command::new(env!("CARGO_BIN_EXE_rnnkit"))
        .args(["data", "fetch", "sst2"])
        .env("RNNKIT_DATA_DIR", tmp.join("empty"))
        .env("XDG_CACHE_HOME", tmp.join("cache"))
        .env("RNNKIT_DATA_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["train.tsv", "dev.tsv", "test.tsv"] {
        assert_eq!(
            std::fs::read(tmp.join("cache/rnnkit/sst2").join(f)).unwrap(),
            std::fs::read(data.join("sst2").join(f)).unwrap()
        );
    }
}
