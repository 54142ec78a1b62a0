//! Build facts for `binauthz version`: the git commit, the compiler, the target and profile.
//! Outside a git checkout (a source tarball) the commit is `unknown`. Only a new commit
//! rebuilds: the working tree's state is not tracked (it changes with every edit).

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = output("git", &["rev-parse", "--short=12", "HEAD"]);
    println!(
        "cargo:rustc-env=BINAUTHZ_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    println!(
        "cargo:rustc-env=BINAUTHZ_RUSTC={}",
        output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into())
    );
    for (name, var) in [
        ("BINAUTHZ_TARGET", "TARGET"),
        ("BINAUTHZ_PROFILE", "PROFILE"),
    ] {
        println!(
            "cargo:rustc-env={name}={}",
            std::env::var(var).unwrap_or_else(|_| "unknown".into())
        );
    }
    // A new commit gives a new id: HEAD, the branch it points to, packed refs.
    let mut watched = vec![".git/HEAD".to_owned(), ".git/packed-refs".to_owned()];
    if let Some(branch) = std::fs::read_to_string(".git/HEAD")
        .ok()
        .and_then(|head| head.strip_prefix("ref: ").map(|r| r.trim().to_owned()))
    {
        watched.push(format!(".git/{branch}"));
    }
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=src/build.rs");
}
