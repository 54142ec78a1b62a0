//! `binauthz run` as a process of its own, out of cluster, as its ServiceAccount: what an
//! operator starts, with its own memory to measure and its own log to show.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::cluster::{self, kubectl_at, unique_name};
use super::operator::{admin_get, free_port, rbac_yaml};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Retry `check` until it returns `Ok`, for at most 60 s (watches are asynchronous).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out waiting for {what}: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Resident memory of process `pid`, in bytes (0 once it is gone).
pub fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A running `binauthz run`: it registers its webhook by URL, issues its serving certificate,
/// runs the controller (leader of its own Lease) and serves the webhook. Dropping it stops the
/// process and deletes the cluster-wide objects it made.
pub struct Binauthz {
    child: Child,
    /// Name of its ValidatingWebhookConfiguration (and of its cluster-wide RBAC).
    pub configuration: String,
    /// Its admin server.
    pub admin: SocketAddr,
    /// Its webhook.
    pub webhook: SocketAddr,
    /// Its namespace.
    pub namespace: String,
    kubeconfig: PathBuf,
    log: tempfile::NamedTempFile,
    _service_account_kubeconfig: tempfile::NamedTempFile,
}

/// The admin kubeconfig at `admin`, acting as binauthz's ServiceAccount in `namespace`.
fn service_account_kubeconfig(admin: &Path, namespace: &str) -> tempfile::NamedTempFile {
    let mut config: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    for user in config["users"].as_array_mut().unwrap() {
        user["user"]["as"] = json!(format!("system:serviceaccount:{namespace}:binauthz"));
        user["user"]["as-groups"] = json!([
            "system:serviceaccounts",
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated",
        ]);
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_yaml::to_string(&config).unwrap()).unwrap();
    file
}

impl Binauthz {
    /// Start `binauthz run` in `namespace` of the shared control plane, as its ServiceAccount
    /// with only the rights of config/rbac/, with `extra` flags.
    pub fn start(namespace: &str, extra: &[&str]) -> Self {
        Self::start_at(cluster::kubeconfig(), namespace, extra)
    }

    /// The same against the control plane of `kubeconfig` (its admin credentials).
    pub fn start_at(kubeconfig: &Path, namespace: &str, extra: &[&str]) -> Self {
        let suffix = unique_name("proc");
        let configuration = format!("binauthz-{suffix}");
        let out = kubectl_at(
            kubeconfig,
            ["apply", "-f", "-"],
            Some(&rbac_yaml(namespace, &suffix, &configuration)),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let service_account = format!("system:serviceaccount:{namespace}:binauthz");
        eventually("the RBAC to take effect", || {
            let out = kubectl_at(
                kubeconfig,
                [
                    "auth",
                    "can-i",
                    "watch",
                    "namespaces",
                    "--as",
                    &service_account,
                ],
                None,
            );
            out.status
                .success()
                .then_some(())
                .ok_or_else(|| text(&out.stdout))
        });
        let service_account_kubeconfig = service_account_kubeconfig(kubeconfig, namespace);
        let webhook: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let url = format!("https://{webhook}/validate");
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut args = vec![
            "run".to_owned(),
            "--kubeconfig".to_owned(),
            service_account_kubeconfig.path().display().to_string(),
            "--namespace".to_owned(),
            namespace.to_owned(),
            "--identity".to_owned(),
            suffix.clone(),
            "--webhook-url".to_owned(),
            url,
            "--webhook-port".to_owned(),
            webhook.port().to_string(),
            "--admin-port".to_owned(),
            admin.port().to_string(),
            "--webhook-configuration".to_owned(),
            configuration.clone(),
            // Other test binaries share the control plane: should this process die without
            // cleaning up, its configuration must not block their pods.
            "--failure-policy".to_owned(),
            "ignore".to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        println!("$ binauthz {}", args.join(" "));
        // BINAUTHZ_BIN runs another build against the same tests (e.g. an older one, to see an
        // attack succeed there).
        let binary = std::env::var_os("BINAUTHZ_BIN")
            .map_or_else(|| assert_cmd::cargo::cargo_bin("binauthz"), PathBuf::from);
        let child = Command::new(binary)
            .args(&args)
            .env("RUST_LOG", "binauthz=info")
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let binauthz = Self {
            child,
            configuration,
            admin,
            webhook,
            namespace: namespace.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            log,
            _service_account_kubeconfig: service_account_kubeconfig,
        };
        eventually("binauthz to be ready", || {
            match admin_get(binauthz.admin, "/readyz") {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}\n{}", binauthz.log())),
            }
        });
        binauthz
    }

    /// Its output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Resident memory of the process, in bytes.
    pub fn resident_bytes(&self) -> u64 {
        resident_bytes(self.pid())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PEM CA bundle of its serving certificate (from its TLS Secret).
    pub fn ca_pem(&self) -> Vec<u8> {
        let out = kubectl_at(
            &self.kubeconfig,
            [
                "get",
                "secret",
                "binauthz-webhook-tls",
                "-n",
                &self.namespace,
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            out.stdout.trim_ascii(),
        )
        .unwrap()
    }

    /// Wait until the generated configuration sends pods and workloads to the webhook.
    pub fn wait_for_configuration(&self) {
        eventually("the generated webhook configuration", || {
            let out = kubectl_at(
                &self.kubeconfig,
                [
                    "get",
                    "validatingwebhookconfiguration",
                    &self.configuration,
                    "-o",
                    "jsonpath={.webhooks[*].name}",
                ],
                None,
            );
            let names = text(&out.stdout);
            (names == "pods.binauthz.dev workloads.binauthz.dev")
                .then_some(())
                .ok_or(names)
        });
    }
}

impl Drop for Binauthz {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Never leave a webhook configuration pointing at a server that is gone.
        for kind in [
            "validatingwebhookconfiguration",
            "clusterrolebinding",
            "clusterrole",
        ] {
            let _ = kubectl_at(
                &self.kubeconfig,
                ["delete", kind, &self.configuration, "--ignore-not-found"],
                None,
            );
        }
        if std::thread::panicking() {
            eprintln!("--- binauthz log ---\n{}", self.log());
        }
    }
}
