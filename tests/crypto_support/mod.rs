//! Real gpg and openssl, run in temporary directories, for the crypto tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A gcloud-style signature payload (with its final newline).
pub const PAYLOAD: &[u8] = b"{\n  \"critical\": {\n    \"identity\": {\n      \"docker-reference\": \"us-docker.pkg.dev/example-project/repo/app\"\n    },\n    \"image\": {\n      \"docker-manifest-digest\": \"sha256:0000000000000000000000000000000000000000000000000000000000000001\"\n    },\n    \"type\": \"Google cloud binauthz container signature\"\n  }\n}\n";

/// Run a program; panics with its stderr unless it succeeds.
pub fn run(program: &str, args: &[&str], envs: &[(&str, &Path)], stdin: Option<&[u8]>) -> Vec<u8> {
    let output = try_run(program, args, envs, stdin);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Run a program and return its output whatever the exit status.
pub fn try_run(
    program: &str,
    args: &[&str],
    envs: &[(&str, &Path)],
    stdin: Option<&[u8]>,
) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A temporary GNUPGHOME; its gpg-agent is stopped on drop.
pub struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file in the home and return its path as a string.
    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--batch", "--yes", "--quiet", "--pinentry-mode", "loopback"];
        if !extra.contains(&"--passphrase") {
            args.extend(["--passphrase", ""]);
        }
        args.extend_from_slice(extra);
        args
    }

    /// `gpg --armor --sign FILE` by `user`, as gcloud documents: the armored signed message.
    pub fn armored_sign(&self, user: &str, file: &str) -> Vec<u8> {
        self.gpg(&[
            "--local-user",
            user,
            "--output",
            "-",
            "--armor",
            "--sign",
            file,
        ])
    }

    /// Run gpg; panics unless it succeeds; returns stdout.
    pub fn gpg(&self, args: &[&str]) -> Vec<u8> {
        run("gpg", &self.args(args), &[("GNUPGHOME", self.path())], None)
    }

    /// Run gpg with stdin, returning the whole output.
    pub fn try_gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        try_run(
            "gpg",
            &self.args(args),
            &[("GNUPGHOME", self.path())],
            stdin,
        )
    }

    /// Generate a key and return its fingerprint (from `gpg --with-colons`).
    pub fn gen_key(&self, uid: &str, algo: &str, usage: &str, expire: &str) -> String {
        self.gpg(&["--quick-gen-key", uid, algo, usage, expire]);
        self.fingerprint(uid)
    }

    /// The `fpr` field of the primary key, as `gpg --with-colons --fingerprint` prints it.
    pub fn fingerprint(&self, user: &str) -> String {
        let out = self.gpg(&["--with-colons", "--fingerprint", user]);
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string()
    }

    /// `gpg --armor --export`.
    pub fn export(&self, user: &str) -> String {
        String::from_utf8(self.gpg(&["--armor", "--export", user])).unwrap()
    }

    /// `gpg --export-secret-keys`, armored or binary.
    pub fn export_secret(&self, user: &str, armor: bool) -> Vec<u8> {
        if armor {
            self.gpg(&["--armor", "--export-secret-keys", user])
        } else {
            self.gpg(&["--export-secret-keys", user])
        }
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = try_run(
            "gpgconf",
            &["--kill", "gpg-agent"],
            &[("GNUPGHOME", self.path())],
            None,
        );
    }
}

/// A temporary directory for openssl keys and files.
pub struct OpensslDir {
    dir: tempfile::TempDir,
}

impl OpensslDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new().prefix("ossl").tempdir().unwrap(),
        }
    }

    /// Path of a file in the directory.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.file(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.file(name)).unwrap()
    }

    pub fn read_string(&self, name: &str) -> String {
        String::from_utf8(self.read(name)).unwrap()
    }

    /// Run openssl; panics unless it succeeds; returns stdout.
    pub fn openssl(&self, args: &[&str]) -> Vec<u8> {
        run("openssl", args, &[], None)
    }

    /// Run openssl and report success.
    pub fn openssl_ok(&self, args: &[&str]) -> bool {
        try_run("openssl", args, &[], None).status.success()
    }

    /// Generate a private key `NAME.key` (PKCS#8) and its public key `NAME.pub` (SPKI PEM).
    pub fn genpkey(&self, name: &str, genpkey_args: &[&str]) {
        let key = self.file(&format!("{name}.key"));
        let mut args = vec!["genpkey", "-out", key.as_str()];
        args.extend_from_slice(genpkey_args);
        self.openssl(&args);
        let public = self.file(&format!("{name}.pub"));
        self.openssl(&["pkey", "-in", &key, "-pubout", "-out", &public]);
    }

    /// The id formula with openssl: SHA-256 over the DER SPKI, unpadded base64url.
    pub fn ni_id(&self, name: &str) -> String {
        let der = self.file(&format!("{name}.der"));
        self.openssl(&[
            "pkey",
            "-pubin",
            "-in",
            &self.file(&format!("{name}.pub")),
            "-outform",
            "DER",
            "-out",
            &der,
        ]);
        let digest = self.openssl(&["dgst", "-sha256", "-binary", &der]);
        let b64 = run("basenc", &["--base64url", "-w0"], &[], Some(&digest));
        format!(
            "ni:///sha-256;{}",
            String::from_utf8(b64).unwrap().trim().trim_end_matches('=')
        )
    }
}
