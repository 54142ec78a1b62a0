//! How users get the CLI: `make install` puts `binauthz` and `kubectl-binauthz` on the PATH (so
//! kubectl finds the plugin), and the krew manifest, rendered by `make krew-manifest` from the
//! archives `make dist` packs, installs with the real krew (built from its Go module by `make
//! tools`), offline, and refuses an archive whose checksum differs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn make(args: &[&str]) -> Output {
    let out = Command::new("make")
        .arg("--no-print-directory")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn kubectl_plugin(path_dir: &Path) -> Output {
    Command::new("kubectl")
        .args(["binauthz", "version", "-o", "json"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                path_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap()
}

fn assert_plugin_runs(path_dir: &Path) {
    let out = kubectl_plugin(path_dir);
    assert!(
        out.status.success(),
        "kubectl binauthz: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn make_install_makes_a_kubectl_plugin() {
    let prefix = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_binauthz");
    make(&[
        "install-bin",
        &format!("BIN={bin}"),
        &format!("PREFIX={}", prefix.path().display()),
    ]);
    let installed = prefix.path().join("bin");
    assert!(installed.join("binauthz").is_file());
    assert_eq!(
        std::fs::read_link(installed.join("kubectl-binauthz")).unwrap(),
        PathBuf::from("binauthz")
    );
    assert_plugin_runs(&installed);
}

#[test]
fn the_krew_manifest_installs_with_krew() {
    make(&["tools"]);
    let krew = root().join("target/tools/krew-v0.4.3/krew");
    let dist = tempfile::tempdir().unwrap();
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let bin = env!("CARGO_BIN_EXE_binauthz");
    make(&[
        "dist-bin",
        &format!("BIN={bin}"),
        &format!("DIST={}", dist.path().display()),
        "OS=linux",
        "ARCH=amd64",
    ]);
    let archive = dist
        .path()
        .join(format!("binauthz-{version}-linux-amd64.tar.gz"));
    assert!(archive.is_file());
    // The other platforms' archives are built on those platforms; here they stand in.
    for platform in ["linux-arm64", "darwin-amd64", "darwin-arm64"] {
        std::fs::hard_link(
            &archive,
            dist.path()
                .join(format!("binauthz-{version}-{platform}.tar.gz")),
        )
        .unwrap();
    }
    make(&[
        "krew-manifest",
        &format!("DIST={}", dist.path().display()),
        &format!("RELEASE_URL=https://releases.invalid/download/{version}"),
    ]);
    let manifest = dist.path().join("binauthz.yaml");
    let rendered = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        !rendered.contains("${"),
        "every placeholder is filled:\n{rendered}"
    );

    let install = |archive: &Path| {
        let krew_root = tempfile::tempdir().unwrap();
        let out = Command::new(&krew)
            .args([
                "install",
                "--no-update-index",
                &format!("--manifest={}", manifest.display()),
                &format!("--archive={}", archive.display()),
            ])
            .env("KREW_ROOT", krew_root.path())
            .output()
            .unwrap();
        (krew_root, out)
    };
    let (krew_root, out) = install(&archive);
    assert!(
        out.status.success(),
        "krew install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_plugin_runs(&krew_root.path().join("bin"));

    // An archive that is not the one the manifest names is refused.
    let other = dist.path().join("other.tar.gz");
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(&other, bytes).unwrap();
    let (_root, out) = install(&other);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "krew installed a tampered archive");
    assert!(stderr.contains("checksum does not match"), "{stderr}");
}
