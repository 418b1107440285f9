//! Build script: puts the git commit into `shoplake --version`, so a binary
//! says what it was built from. A build outside a git checkout (the
//! container image's, a source tarball's) takes `SHOPLAKE_GIT_COMMIT`, else
//! says "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SHOPLAKE_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("SHOPLAKE_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!("cargo:rustc-env=SHOPLAKE_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
