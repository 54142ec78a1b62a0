//! The test control plane: a real kube-apiserver + etcd on 127.0.0.1, built and started by
//! `make cluster-up` (tests/controlplane/README.md). It is started at most once, shared by all
//! test binaries (the script holds a file lock while starting) and left running for the next run.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// Label put on every namespace made by [`temp_namespace`], for bulk clean-up.
pub const TEST_LABEL: &str = "binauthz.dev/test";

/// The repository root, where the Makefile lives.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane's state dir: `$CLUSTER_DIR` (relative to the repo root) or `target/cluster`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("CLUSTER_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target/cluster"),
    }
}

/// Installs rustls' aws-lc-rs provider for this process; a second call is a no-op.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Path of the admin kubeconfig; runs `make cluster-up` once per test process (blocking: the
/// first build of the control plane takes minutes, a running one is reused in about a second).
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        install_crypto_provider();
        let out = Command::new("make")
            .args(["--no-print-directory", "cluster-up"])
            .current_dir(repo_root())
            // Under `make test` these point at the parent's jobserver, which we do not inherit.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .stdin(Stdio::null())
            .output()
            .expect("run `make cluster-up` (is make installed?)");
        assert!(
            out.status.success(),
            "`make cluster-up` failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        state_dir().join("kubeconfig")
    })
}

/// Fail with the fix when the control plane runs without image volumes (one started before
/// `tests/controlplane` enabled the `ImageVolume` gate is reused as it is).
pub fn require_image_volumes() {
    let out = kubectl(["get", "--raw", "/metrics"]);
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.lines().any(
            |l| l.starts_with("kubernetes_feature_enabled{name=\"ImageVolume\"")
                && l.ends_with(" 1")
        ),
        "the test control plane runs without --feature-gates=ImageVolume=true (an older one is \
         still running): restart it with `make cluster-down cluster-up`"
    );
}

/// A kube client with admin (`system:masters`) rights. Make one per test: a client is bound to
/// the tokio runtime it first runs on, and every `#[tokio::test]` has its own.
pub async fn client() -> kube::Client {
    install_crypto_provider();
    let path = kubeconfig();
    let kubeconfig = Kubeconfig::read_from(path).expect("read the test kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("load the test kubeconfig");
    kube::Client::try_from(config).expect("build a kube client from the test kubeconfig")
}

/// Runs `kubectl --kubeconfig <test kubeconfig> ARGS` and returns its output.
pub fn kubectl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    kubectl_at(kubeconfig(), args, None)
}

/// Runs `kubectl ... ARGS` with `input` on stdin, e.g. `kubectl_stdin(["apply", "-f", "-"], yaml)`.
pub fn kubectl_stdin<I, S>(args: I, input: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    kubectl_at(kubeconfig(), args, Some(input))
}

/// Runs `kubectl --kubeconfig KUBECONFIG ARGS`, with `input` on stdin if given.
pub fn kubectl_at<I, S>(kubeconfig: &Path, args: I, input: Option<&str>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    let Some(input) = input else {
        return cmd
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl (is it on PATH?)");
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl (is it on PATH?)");
    child
        .stdin
        .take()
        .expect("kubectl stdin is piped")
        .write_all(input.as_bytes())
        .expect("write kubectl stdin");
    child.wait_with_output().expect("wait for kubectl")
}

/// A fresh name, unique across processes and runs: `<prefix>-<time>-<pid>-<n>` (at most 63 chars).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix: String = prefix.chars().take(24).collect();
    format!(
        "{prefix}-{:x}-{}-{}",
        nanos % (1 << 40),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a uniquely named namespace (labelled [`TEST_LABEL`]) and returns its name. Nothing
/// deletes it: without a namespace controller a deleted namespace would stay `Terminating` anyway.
pub async fn temp_namespace(prefix: &str) -> String {
    let name = unique_name(prefix);
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(TEST_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client().await)
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    name
}
