//! Real OCI registries and cosign for the tests, built by `make tools` from their Go modules
//! (target/tools): `crane registry serve` (anonymous), the distribution registry (htpasswd
//! authentication), crane to push images, cosign v2 and v3 to sign them. Registries listen on
//! free loopback ports and stop when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cluster::repo_root;
use super::operator::free_port;

/// A tool built by `make tools`, built now if it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = repo_root().join("target/tools").join(name);
    if !path.is_file() {
        let out = Command::new("make")
            .args(["--no-print-directory", "tools"])
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make tools: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    path
}

/// crane.
pub fn crane() -> PathBuf {
    tool("crane-v0.21.9/crane")
}

fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A registry process on a loopback port.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    dir: tempfile::TempDir,
    /// Docker config with credentials for it (authenticated registries), else empty.
    pub docker_config: tempfile::TempDir,
}

impl Registry {
    /// `crane registry serve`: anonymous, no referrers API (cosign v3 uses the tag fallback).
    pub fn crane() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(crane())
            .args([
                "registry",
                "serve",
                "--address",
                &format!("127.0.0.1:{port}"),
                "--disk",
                dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            dir,
            docker_config: tempfile::tempdir().unwrap(),
        };
        registry.wait_up(None);
        registry
    }

    /// The distribution registry with htpasswd authentication for `user`:`password`.
    pub fn with_password(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let hash = bcrypt::hash(password, 4).unwrap();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\nauth: {{htpasswd: {{realm: binauthz-test, path: {}}}}}\n",
                storage.display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let child = Command::new(tool("registry-v3.1.1/registry"))
            .args(["serve", config.to_str().unwrap()])
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let docker_config = tempfile::tempdir().unwrap();
        let registry = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            dir,
            docker_config,
        };
        registry.wait_up(Some((user, password)));
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}"),
        );
        std::fs::write(
            registry.docker_config.path().join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host),
        )
        .unwrap();
        registry
    }

    fn wait_up(&self, credentials: Option<(&str, &str)>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut curl = Command::new("curl");
            curl.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
            if let Some((user, password)) = credentials {
                curl.args(["-u", &format!("{user}:{password}")]);
            }
            let out = curl
                .arg(format!("http://{}/v2/", self.host))
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout) == "200" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry {} did not start",
                self.host
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run a tool with this registry's credentials.
    pub fn run(&self, program: &Path, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env("COSIGN_PASSWORD", "")
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Push a one-layer image holding `content` as `repository:tag`; returns its digest.
    pub fn push(&self, repository: &str, tag: &str, content: &str) -> String {
        let layer = self.dir.path().join(format!("{tag}.tar"));
        let file = self.dir.path().join("content.txt");
        std::fs::write(&file, content).unwrap();
        check(
            "tar",
            Command::new("tar")
                .args([
                    "cf",
                    layer.to_str().unwrap(),
                    "-C",
                    self.dir.path().to_str().unwrap(),
                    "content.txt",
                ])
                .output()
                .unwrap(),
        );
        let reference = format!("{}/{repository}:{tag}", self.host);
        check(
            "crane append",
            self.run(
                &crane(),
                &[
                    "append",
                    "--oci-empty-base",
                    "-f",
                    layer.to_str().unwrap(),
                    "-t",
                    &reference,
                ],
            ),
        );
        check("crane digest", self.run(&crane(), &["digest", &reference]))
    }

    /// Stop it (what it stored stays on disk).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cosign key pair (ECDSA P-256, as `cosign generate-key-pair` makes), no password.
pub struct CosignKey {
    dir: tempfile::TempDir,
}

impl CosignKey {
    /// A new key pair.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(tool("cosign-v3.1.3/cosign"))
            .args(["generate-key-pair"])
            .env("COSIGN_PASSWORD", "")
            .current_dir(dir.path())
            .output()
            .unwrap();
        check("cosign generate-key-pair", out);
        Self { dir }
    }

    /// The public key, PEM (`cosign.pub`).
    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(self.public_path()).unwrap()
    }

    /// Where `cosign.pub` is.
    pub fn public_path(&self) -> PathBuf {
        self.dir.path().join("cosign.pub")
    }

    /// Sign `image` (REPO@DIGEST) with cosign v2: the `sha256-<hex>.sig` tag, no log.
    pub fn sign_v2(&self, registry: &Registry, image: &str) {
        let key = self.dir.path().join("cosign.key");
        check(
            "cosign v2 sign",
            registry.run(
                &tool("cosign-v2.6.5/cosign"),
                &[
                    "sign",
                    "--key",
                    key.to_str().unwrap(),
                    "--tlog-upload=false",
                    "--yes",
                    image,
                ],
            ),
        );
    }

    /// Sign `image` with cosign v3: a Sigstore bundle as a referrer, no log.
    pub fn sign_v3(&self, registry: &Registry, image: &str) {
        let key = self.dir.path().join("cosign.key");
        let config = self.dir.path().join("signing-config.json");
        if !config.exists() {
            check(
                "cosign signing-config create",
                registry.run(
                    &tool("cosign-v3.1.3/cosign"),
                    &[
                        "signing-config",
                        "create",
                        "--out",
                        config.to_str().unwrap(),
                    ],
                ),
            );
        }
        check(
            "cosign v3 sign",
            registry.run(
                &tool("cosign-v3.1.3/cosign"),
                &[
                    "sign",
                    "--key",
                    key.to_str().unwrap(),
                    "--signing-config",
                    config.to_str().unwrap(),
                    "--yes",
                    image,
                ],
            ),
        );
    }
}
