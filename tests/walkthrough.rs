//! The walkthrough of issue 4 on the real test control plane: a gpg key, an Attestor, an
//! AttestationPolicy, an attestation made with `binauthz create-signature-payload`, gpg and
//! `binauthz attestation create`, and then kubectl against the API server, which calls the
//! webhook over TLS at `https://127.0.0.1:<port>/validate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;
mod support;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use binauthz::index::watch::WatchOptions;
use binauthz::webhook::{self, Bound, ServeOptions};
use crypto_support::GpgHome;
use serde_json::json;
use support::cluster::{self, kubectl, kubectl_stdin};

const DIGEST: &str = "sha256:845f77fab71033404f4cfceaa1ddb27b70c3551ceb22a5e7f4498cdda6c9daea";
const TAG: &str = "Expected digest with sha256 scheme, but got tag or malformed digest";
const NOT_ATTESTED: &str =
    "No attestations found that were valid and signed by a key trusted by the attestor";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Print a command as a user types it, and what they see.
fn show(typed: &str, out: &Output) {
    println!("$ {typed}");
    for line in text(&out.stdout).lines().chain(text(&out.stderr).lines()) {
        println!("  {line}");
    }
}

fn ok(typed: &str, out: Output) -> Output {
    show(typed, &out);
    assert!(
        out.status.success(),
        "`{typed}` failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn fails(typed: &str, out: Output) -> String {
    show(typed, &out);
    assert!(
        !out.status.success(),
        "`{typed}` should have failed:\n{}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn binauthz(args: &[&str]) -> Output {
    Command::new(assert_cmd::cargo::cargo_bin("binauthz"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Retry `check` until it returns `Some`, for at most 60 s (watches are asynchronous).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
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

/// A plain-HTTP GET on the admin port.
fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
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

/// The webhook served in-process with a certificate from a CA made for the test, and a
/// ValidatingWebhookConfiguration that sends it the reviews of one namespace.
struct Webhook {
    configuration: String,
    bound: Bound,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    fn start(namespace: &str) -> Self {
        cluster::install_crypto_provider();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let certified = Arc::new(
            rustls::sign::CertifiedKey::from_der(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
                &rustls::crypto::aws_lc_rs::default_provider(),
            )
            .unwrap(),
        );
        #[derive(Debug)]
        struct Fixed(Arc<rustls::sign::CertifiedKey>);
        impl rustls::server::ResolvesServerCert for Fixed {
            fn resolve(
                &self,
                _: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                Some(self.0.clone())
            }
        }
        let tls = webhook::server::server_config(Arc::new(Fixed(certified))).unwrap();

        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let client = cluster::client().await;
                let options = ServeOptions {
                    webhook_addr: "127.0.0.1:0".parse().unwrap(),
                    admin_addr: "127.0.0.1:0".parse().unwrap(),
                    tls: Arc::new(tls),
                    tls_loaded: Arc::new(|| true),
                    instance: Some("walkthrough".into()),
                    watch: WatchOptions::default(),
                };
                webhook::serve(
                    client,
                    options,
                    move |bound| bound_tx.send(bound).unwrap(),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
            });
        });
        let bound = bound_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        eventually("the webhook to be ready", || {
            match admin_get(bound.admin, "/readyz") {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}")),
            }
        });

        let configuration = cluster::unique_name("binauthz-walkthrough");
        let url = format!("https://127.0.0.1:{}/validate", bound.webhook.port());
        let ca_bundle = STANDARD.encode(ca.pem());
        let selector = json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}});
        let webhook = |name: &str, rules: serde_json::Value| {
            json!({
                "name": name,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": url, "caBundle": ca_bundle},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "namespaceSelector": selector,
                "rules": rules,
            })
        };
        let manifest = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": configuration},
            "webhooks": [
                webhook("pods.binauthz.dev", json!([
                    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE", "UPDATE"]},
                    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/ephemeralcontainers"], "operations": ["UPDATE"]},
                ])),
                webhook("workloads.binauthz.dev", json!([
                    {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"], "operations": ["CREATE", "UPDATE"]},
                    {"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs", "cronjobs"], "operations": ["CREATE", "UPDATE"]},
                    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["replicationcontrollers"], "operations": ["CREATE", "UPDATE"]},
                ])),
            ],
        });
        let out = kubectl_stdin(["apply", "-f", "-"], &manifest.to_string());
        assert!(out.status.success(), "{}", text(&out.stderr));
        Self {
            configuration,
            bound,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        // Never leave a webhook configuration pointing at a server that is gone.
        let _ = kubectl([
            "delete",
            "validatingwebhookconfiguration",
            &self.configuration,
            "--ignore-not-found",
        ]);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn install_crds() {
    let crds = format!("{}/crds", env!("CARGO_MANIFEST_DIR"));
    // crds/ is also a kustomize base.
    let out = kubectl(["apply", "--server-side", "--force-conflicts", "-k", &crds]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for crd in [
        "attestors.binauthz.dev",
        "attestationpolicies.binauthz.dev",
        "imageattestations.binauthz.dev",
    ] {
        let out = kubectl([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{crd}"),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

fn policy(name: &str, namespace: &str, attestor: &str, enforcement: &str) -> String {
    json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "AttestationPolicy",
        "metadata": {"name": name},
        "spec": {
            // Only the walkthrough's namespace: the control plane is shared by other tests.
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

fn deployment(namespace: &str, image: &str) -> String {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "unsigned-web", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "unsigned-web"}},
            "template": {
                "metadata": {"labels": {"app": "unsigned-web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    })
    .to_string()
}

#[test]
fn walkthrough() {
    install_crds();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = runtime.block_on(cluster::temp_namespace("walkthrough"));
    let attestor = cluster::unique_name("built-by-ci");
    let policy_name = cluster::unique_name("require-ci");
    let server = Webhook::start(&ns);

    // A PGP key, as a CI pipeline would hold it.
    let gpg = GpgHome::new();
    let fingerprint = gpg.gen_key("CI <ci@example.com>", "rsa3072", "sign", "1y");
    let public_key = gpg.export(&fingerprint);

    // The attestor and the policy.
    let attestor_yaml = json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "Attestor",
        "metadata": {"name": attestor},
        "spec": {"publicKeys": [{"asciiArmoredPgpPublicKey": public_key}]},
    })
    .to_string();
    ok(
        "kubectl apply -f attestor.yaml",
        kubectl_stdin(["apply", "-f", "-"], &attestor_yaml),
    );
    ok(
        "kubectl apply -f policy.yaml",
        kubectl_stdin(
            ["apply", "-f", "-"],
            &policy(&policy_name, &ns, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG"),
        ),
    );

    // Sign the image and publish the attestation.
    let image = format!("gcr.io/google-samples/hello-app@{DIGEST}");
    let payload = ok(
        &format!("binauthz create-signature-payload --artifact-url {image} > payload.json"),
        binauthz(&["create-signature-payload", "--artifact-url", &image]),
    )
    .stdout;
    let payload_path = gpg.write("payload.json", &payload);
    let signature = gpg.gpg(&[
        "--armor",
        "--local-user",
        &fingerprint,
        "--output",
        "-",
        "--sign",
        &payload_path,
    ]);
    println!("$ gpg --local-user {fingerprint} --armor --sign --output signature.pgp payload.json");
    let signature_path = gpg.write("signature.pgp", &signature);
    let attestation = ok(
        &format!(
            "binauthz attestation create --artifact-url {image} --attestor {attestor} --signature-file signature.pgp --public-key-id {fingerprint} --namespace {ns}"
        ),
        binauthz(&[
            "attestation",
            "create",
            "--artifact-url",
            &image,
            "--attestor",
            &attestor,
            "--signature-file",
            &signature_path,
            "--public-key-id",
            &fingerprint,
            "--namespace",
            &ns,
        ]),
    );
    ok(
        "... | kubectl apply -f -",
        kubectl_stdin(["apply", "-f", "-"], &text(&attestation.stdout)),
    );

    // The signed image runs (the webhook learns of the attestation through its watch).
    eventually("the webhook to trust the attestation", || {
        let out = kubectl([
            "run",
            "hello-server",
            "-n",
            &ns,
            "--image",
            &image,
            "--dry-run=server",
        ]);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| text(&out.stderr))
    });
    let out = ok(
        &format!("kubectl run hello-server --image {image}"),
        kubectl(["run", "hello-server", "-n", &ns, "--image", &image]),
    );
    assert_eq!(text(&out.stdout).trim(), "pod/hello-server created");

    // An unsigned image by tag is refused with Google's message.
    let stderr = fails(
        "kubectl run hello-world --image=nginx",
        kubectl(["run", "hello-world", "-n", &ns, "--image=nginx"]),
    );
    assert_eq!(
        stderr.trim(),
        format!(
            "Error from server (VIOLATES_POLICY): admission webhook \"pods.binauthz.dev\" denied the request: Image nginx denied by Binary Authorization default admission rule of policy {policy_name}. Image nginx denied by attestor {attestor}: {TAG}"
        )
    );

    // A Deployment of an unsigned digest is refused at apply time, not later by its pods.
    let unsigned = format!("gcr.io/google-samples/hello-app@sha256:{}", "0".repeat(64));
    let stderr = fails(
        "kubectl apply -f unsigned-deployment.yaml",
        kubectl_stdin(["apply", "-f", "-"], &deployment(&ns, &unsigned)),
    );
    assert!(
        stderr.contains(&format!(
            "admission webhook \"workloads.binauthz.dev\" denied the request: Image {unsigned} denied by Binary Authorization default admission rule of policy {policy_name}. Image {unsigned} denied by attestor {attestor}: {NOT_ATTESTED}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.starts_with("Error from server (VIOLATES_POLICY)"),
        "{stderr}"
    );

    // Dry run: admitted, with a warning.
    ok(
        "kubectl apply -f policy.yaml   # enforcementMode: DRYRUN_AUDIT_LOG_ONLY",
        kubectl_stdin(
            ["apply", "-f", "-"],
            &policy(&policy_name, &ns, &attestor, "DRYRUN_AUDIT_LOG_ONLY"),
        ),
    );
    let manifest = deployment(&ns, &unsigned);
    eventually("the webhook to see the dry-run rule", || {
        let out = kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &manifest);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| text(&out.stderr))
    });
    let out = ok(
        "kubectl apply -f unsigned-deployment.yaml",
        kubectl_stdin(["apply", "-f", "-"], &manifest),
    );
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "Warning: dry run: Image {unsigned} would be denied: Image {unsigned} denied by Binary Authorization default admission rule of policy {policy_name}. Image {unsigned} denied by attestor {attestor}: {NOT_ATTESTED}"
        )
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "deployment.apps/unsigned-web created"
    );

    // Enforced again; breakglass admits, and says so in an Event.
    ok(
        "kubectl apply -f policy.yaml   # enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG",
        kubectl_stdin(
            ["apply", "-f", "-"],
            &policy(&policy_name, &ns, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG"),
        ),
    );
    eventually("the webhook to enforce again", || {
        let out = kubectl([
            "run",
            "probe",
            "-n",
            &ns,
            "--image=nginx",
            "--dry-run=server",
        ]);
        (!out.status.success())
            .then_some(())
            .ok_or_else(|| "still admitted".to_owned())
    });
    let out = ok(
        "kubectl run emergency --image=nginx --labels=image-policy.k8s.io/break-glass=true",
        kubectl([
            "run",
            "emergency",
            "-n",
            &ns,
            "--image=nginx",
            "--labels=image-policy.k8s.io/break-glass=true",
        ]),
    );
    assert!(
        text(&out.stderr).starts_with("Warning: break glass: Image nginx would be denied:"),
        "{}",
        text(&out.stderr)
    );
    let events = eventually("the BreakGlass Event", || {
        let out = kubectl(["get", "events", "-n", &ns]);
        let table = text(&out.stdout);
        table
            .lines()
            .any(|l| l.contains("BreakGlass") && l.contains("pod/emergency"))
            .then_some(table.clone())
            .ok_or(table)
    });
    println!("$ kubectl get events");
    for line in events.lines() {
        println!("  {line}");
    }
    assert!(
        events
            .lines()
            .any(|l| l.contains("Denied") && l.contains("pod/hello-world")),
        "{events}"
    );

    // The webhook's metrics saw all of it.
    let (code, metrics) = admin_get(server.bound.admin, "/metrics");
    assert_eq!(code, 200);
    for counter in ["allowed", "denied", "dry_run", "breakglass"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "binauthz_admission_decisions_total{{result=\"{counter}\"}}"
                ))
            })
            .unwrap();
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1, "{line}");
    }
    let trusted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("binauthz_trust_index_entries "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(trusted >= 1, "{metrics}");

    ok(
        "kubectl delete attestationpolicy",
        kubectl(["delete", "attestationpolicy", &policy_name]),
    );
    ok(
        "kubectl delete attestor",
        kubectl(["delete", "attestor", &attestor]),
    );
    drop(server);
    println!("walkthrough: OK");
}
