//! The README's walkthroughs run as written: each ```sh block after a `<!-- readme-test: NAME -->`
//! line is run by `bash -euo pipefail` in an empty folder with a fresh HOME (its own gpg
//! keyring), no terminal and `binauthz` on the PATH, as a user would paste it into CI. Every
//! output the block shows in a comment (`# VERIFIED ...`, `# ADMITTED ...`, `# Summary: ...`)
//! must appear, up to its first `…`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

fn blocks() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- readme-test: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next(),
            Some("```sh"),
            "{name}: a ```sh block must follow"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push((name.to_owned(), body.join("\n") + "\n"));
    }
    blocks
}

/// What the block shows as output: `# VERIFIED ...` comments, up to the first `…`.
fn shown_outputs(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            ["VERIFIED ", "ADMITTED ", "DENIED ", "Summary: "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.split('…').next().unwrap_or(l).to_owned())
        .collect()
}

#[test]
fn the_readme_walkthroughs_run_as_written() {
    let blocks = blocks();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["pgp", "pkix"], "the README's tested blocks");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_binauthz")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (name, block) in blocks {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .current_dir(work.path())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", home.path())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // The gpg agent the block started lives in HOME: stop it.
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("HOME", home.path())
            .output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README block {name} failed:\n{block}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        let shown = shown_outputs(&block);
        assert!(!shown.is_empty(), "{name} shows no output to check");
        for expected in shown {
            assert!(
                stdout.contains(&expected),
                "README block {name} shows {expected:?}, but it printed:\n{stdout}"
            );
        }
        println!("README block {name}: ran as written\n{stdout}");
    }
}
