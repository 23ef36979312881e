//! Records the git commit rnnkit is built from (RNNKIT_GIT), for the config.json every run
//! writes. Outside a git checkout nothing is recorded.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for f in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            let rev = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-env=RNNKIT_GIT={rev}");
        }
    }
}
