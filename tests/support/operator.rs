//! Running `binauthz run` in-process against the test control plane, as its ServiceAccount
//! with the RBAC of config/rbac/: CRDs, RBAC, impersonation, polling.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use binauthz::controller::{FailurePolicy, WebhookSettings};
use binauthz::run::{RunConfig, RunError};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::cluster::{self, kubectl, kubectl_stdin};

/// How long a wait for the controller lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The stdout of a command that must succeed.
pub fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Install the CRDs from crds/ and wait until they are Established.
pub fn install_crds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for crd in ["attestors", "attestationpolicies", "imageattestations"] {
        let file = dir.join(format!("{crd}.yaml"));
        ok(
            &kubectl([
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                file.to_str().unwrap(),
            ]),
            "kubectl apply crds/",
        );
        ok(
            &kubectl([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{crd}.binauthz.dev"),
            ]),
            "kubectl wait Established",
        );
    }
}

/// Poll `check` until it returns Ok, or fail after [`WAIT`] with the last observation.
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out waiting for {what}; last seen: {last}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The object as JSON, or why not.
pub async fn get_json<K>(api: &Api<K>, name: &str) -> Result<Value, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(Some(object)) => Ok(serde_json::to_value(object).unwrap()),
        Ok(None) => Err(format!("{name} does not exist")),
        Err(e) => Err(e.to_string()),
    }
}

/// A client acting as `user` (impersonated by the admin of the test control plane).
pub async fn client_as(user: &str) -> Client {
    cluster::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(cluster::kubeconfig()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap()
}

/// The RBAC of config/rbac/, for namespace `ns`, with cluster-wide names made unique and the
/// webhook configuration name `webhook_config`.
pub fn rbac_yaml(ns: &str, suffix: &str, webhook_config: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rbac");
    let mut out = String::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    for file in files {
        let mut doc: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let kind = doc["kind"].as_str().unwrap().to_owned();
        if doc["metadata"].get("namespace").is_some() {
            doc["metadata"]["namespace"] = json!(ns);
        }
        if kind.starts_with("Cluster") {
            doc["metadata"]["name"] = json!(format!("binauthz-{suffix}"));
        }
        if kind == "ClusterRoleBinding" {
            doc["roleRef"]["name"] = json!(format!("binauthz-{suffix}"));
        }
        if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                s["namespace"] = json!(ns);
            }
        }
        if kind == "ClusterRole" {
            for rule in doc["rules"].as_array_mut().unwrap() {
                if rule["resources"][0] == "validatingwebhookconfigurations" {
                    rule["resourceNames"] = json!([webhook_config]);
                }
            }
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&doc).unwrap());
    }
    out
}

/// Whether `user` may do `args` (`kubectl auth can-i`).
pub fn can_i(user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", user];
    all.extend_from_slice(args);
    let out = kubectl(all);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Wait until the ServiceAccount's RBAC is in effect (the authorizer caches bindings).
pub async fn wait_rbac(ns: &str) {
    let sa = format!("system:serviceaccount:{ns}:binauthz");
    wait_for("the RBAC to take effect", || async {
        let ready = can_i(&sa, &["list", "attestors.binauthz.dev"])
            && can_i(&sa, &["patch", "leases/binauthz-leader", "-n", ns])
            && can_i(&sa, &["create", "configmaps", "-n", ns])
            && can_i(&sa, &["watch", "pods", "-A"]);
        ready.then_some(()).ok_or_else(|| "not yet".to_owned())
    })
    .await;
}

/// The task of a running `binauthz run`.
pub type Operator = tokio::task::JoinHandle<Result<(), RunError>>;

/// An AttestationPolicy `name` for one namespace only (the control plane is shared), requiring
/// `attestor` with the given enforcement mode, as JSON for `kubectl apply`.
pub fn namespace_policy(name: &str, namespace: &str, attestor: &str, enforcement: &str) -> String {
    json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "AttestationPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "defaultAdmissionRule": {
                "evaluationMode": "REQUIRE_ATTESTATION",
                "enforcementMode": enforcement,
                "requireAttestationsBy": [attestor],
            },
        },
    })
    .to_string()
}

/// Send the operator's logs (`binauthz=info`, or `RUST_LOG`) to the test output.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("binauthz=info")),
        )
        .with_test_writer()
        .try_init();
}

/// A fresh namespace `bz-<prefix>-...` holding the ServiceAccount `binauthz` with config/rbac's
/// rights (the cluster-wide ones bound under a name made from `suffix`), ready to impersonate.
pub async fn rbac_namespace(prefix: &str, suffix: &str, webhook_name: &str) -> String {
    let ns = cluster::temp_namespace(&format!("bz-{prefix}")).await;
    ok(
        &kubectl_stdin(["apply", "-f", "-"], &rbac_yaml(&ns, suffix, webhook_name)),
        "apply RBAC",
    );
    wait_rbac(&ns).await;
    ns
}

/// A free port on 127.0.0.1 (free when asked; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `binauthz run`.
pub struct Started {
    /// Send to stop it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Its task.
    pub task: Operator,
    /// Port of its admin server (`/metrics`).
    pub admin_port: u16,
}

/// Start `binauthz run` in-process as the ServiceAccount `binauthz` of `ns`, registering the
/// webhook by a loopback URL with `failurePolicy: Ignore`.
pub async fn start_operator(
    ns: &str,
    webhook_name: &str,
    identity: &str,
    validation_interval: Duration,
) -> Started {
    let port = free_port();
    let admin_port = free_port();
    let config = RunConfig {
        webhook: WebhookSettings {
            namespace: ns.to_owned(),
            configuration_name: webhook_name.to_owned(),
            service_name: "binauthz".into(),
            service_port: 443,
            url: Some(format!("https://127.0.0.1:{port}/validate")),
            // Never block other tests' requests.
            failure_policy: FailurePolicy::Ignore,
            timeout_seconds: 3,
            exempt_namespaces: ["kube-system".to_owned()].into(),
        },
        serving_names: binauthz::tls::serving_names("binauthz", ns, Some("127.0.0.1")),
        identity: identity.to_owned(),
        webhook_port: port,
        admin_port,
        kubeconfig: None,
        validation_interval,
        client_ca_file: None,
        insecure_registries: Vec::new(),
        audit_log: None,
        policy_reports: Default::default(),
    };
    let sa_client = client_as(&format!("system:serviceaccount:{ns}:binauthz")).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(binauthz::run::run(config, sa_client, async {
        let _ = stopped.await;
    }));
    Started {
        stop,
        task: operator,
        admin_port,
    }
}

/// A blocking plain-HTTP GET on an admin port: (status, body); (0, "") when nothing answers.
pub fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (code, body)
}

/// `GET http://127.0.0.1:{port}{path}`: the body of a 200 answer, or why not.
pub async fn http_get(port: u16, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if head.starts_with("HTTP/1.1 200") {
        Ok(body.to_owned())
    } else {
        Err(head.lines().next().unwrap_or_default().to_owned())
    }
}
