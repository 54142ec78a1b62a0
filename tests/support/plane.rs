//! A control plane of a caller's own, driven by `tests/controlplane/cluster.sh` with its own
//! state dir and ports, for tests and benchmarks that restart it or fill it with many objects
//! and must never disturb the shared one.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::cluster::{install_crypto_provider, kubectl_at, repo_root};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where a private control plane keeps its state and which loopback ports it takes.
pub struct Plane {
    /// State dir, relative to the repository root.
    pub state_dir: &'static str,
    pub apiserver_port: &'static str,
    pub etcd_port: &'static str,
    pub etcd_peer_port: &'static str,
}

impl Plane {
    pub fn state_dir(&self) -> PathBuf {
        repo_root().join(self.state_dir)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.state_dir().join("kubeconfig")
    }

    fn script(&self, target: &str) -> Output {
        self.script_with(target, "")
    }

    fn script_with(&self, target: &str, apiserver_args: &str) -> Output {
        Command::new("make")
            .args(["--no-print-directory", target])
            .current_dir(repo_root())
            .env("CLUSTER_DIR", self.state_dir())
            .env("CONTROLPLANE_APISERVER_PORT", self.apiserver_port)
            .env("CONTROLPLANE_ETCD_PORT", self.etcd_port)
            .env("CONTROLPLANE_ETCD_PEER_PORT", self.etcd_peer_port)
            .env("CONTROLPLANE_APISERVER_ARGS", apiserver_args)
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .stdin(Stdio::null())
            .output()
            .expect("run make (is it installed?)")
    }

    /// Start (or reuse) the control plane.
    pub fn up(&self) {
        install_crypto_provider();
        let out = self.script("cluster-up");
        assert!(
            out.status.success(),
            "make cluster-up ({}): {}{}",
            self.state_dir,
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// Start it with extra kube-apiserver flags (stop it first: a running one is reused as it
    /// is).
    pub fn up_with(&self, apiserver_args: &str) {
        install_crypto_provider();
        let out = self.script_with("cluster-up", apiserver_args);
        assert!(
            out.status.success(),
            "make cluster-up ({}, {apiserver_args}): {}{}",
            self.state_dir,
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// Stop it (its state stays).
    pub fn down(&self) {
        let out = self.script("cluster-down");
        assert!(
            out.status.success(),
            "make cluster-down ({}): {}{}",
            self.state_dir,
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// Kill it with SIGKILL, as a crash would, and wait until its ports are free; `up` starts it
    /// again on the same state. Unlike a graceful stop, watchers get no last bookmark, so they
    /// must list again.
    pub fn crash(&self) {
        let pid = std::fs::read_to_string(self.state_dir().join("controlplane.pid"))
            .expect("read the control plane's pid file");
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {}", pid.trim());
        for port in [self.apiserver_port, self.etcd_port, self.etcd_peer_port] {
            let addr = format!("127.0.0.1:{port}");
            for _ in 0..100 {
                if std::net::TcpStream::connect(&addr).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_at(&self.kubeconfig(), args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        kubectl_at(&self.kubeconfig(), args, Some(input))
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    pub fn apply(&self, manifest: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(out.status.success(), "kubectl apply: {}", text(&out.stderr));
    }

    /// Install (or update) the CRDs of `crds/` and wait until they are served.
    pub fn install_crds(&self) {
        let crds = repo_root().join("crds");
        let out = self.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().expect("UTF-8 path"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        for crd in [
            "attestors.binauthz.dev",
            "attestationpolicies.binauthz.dev",
            "imageattestations.binauthz.dev",
        ] {
            self.ok(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{crd}"),
            ]);
        }
    }

    /// A new namespace named after `prefix`.
    pub fn namespace(&self, prefix: &str) -> String {
        let name = super::cluster::unique_name(prefix);
        self.ok(&["create", "namespace", &name]);
        name
    }
}
