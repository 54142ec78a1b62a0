//! The walkthrough of issue 4 on the real test control plane: `binauthz run` out of cluster, a
//! gpg key, an Attestor, an AttestationPolicy, an attestation made with
//! `binauthz create-signature-payload`, gpg and `binauthz attestation create`, and then kubectl
//! against the API server, which calls the webhook over TLS at `https://127.0.0.1:<port>/validate`
//! through the configuration binauthz generates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;
mod support;

use std::process::{Command, Output, Stdio};

use crypto_support::GpgHome;
use serde_json::json;
use support::cluster::{self, kubectl, kubectl_stdin};
use support::operator::{admin_get, namespace_policy};
use support::process::{Binauthz, eventually};

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

fn install_crds() {
    let crds = format!("{}/crds", env!("CARGO_MANIFEST_DIR"));
    let out = kubectl(["apply", "--server-side", "--force-conflicts", "-f", &crds]);
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
    cluster::require_image_volumes();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = runtime.block_on(cluster::temp_namespace("walkthrough"));
    let system_ns = runtime.block_on(cluster::temp_namespace("binauthz-system"));
    let attestor = cluster::unique_name("built-by-ci");
    let policy_name = cluster::unique_name("require-ci");
    let server = Binauthz::start(&system_ns, &[]);

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
            &namespace_policy(&policy_name, &ns, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG"),
        ),
    );

    server.wait_for_configuration();

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

    // A signed container that runs a file from an unsigned image mounted as a volume
    // (KEP-4639) is refused: every image a pod can pull is judged.
    let image_volume_pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "iv", "namespace": ns},
        "spec": {
            "containers": [{"name": "app", "image": image, "command": ["/payload/evil"],
                            "volumeMounts": [{"name": "payload", "mountPath": "/payload"}]}],
            "volumes": [{"name": "payload",
                         "image": {"reference": "docker.io/attacker/evil:latest", "pullPolicy": "Always"}}],
        },
    })
    .to_string();
    let stderr = fails(
        "kubectl apply -f image-volume-pod.yaml",
        kubectl_stdin(["apply", "-f", "-"], &image_volume_pod),
    );
    assert!(
        stderr.contains(&format!(
            "admission webhook \"pods.binauthz.dev\" denied the request: volume payload: Image docker.io/attacker/evil:latest denied by Binary Authorization default admission rule of policy {policy_name}. Image docker.io/attacker/evil:latest denied by attestor {attestor}: {TAG}"
        )),
        "{stderr}"
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
            &namespace_policy(&policy_name, &ns, &attestor, "DRYRUN_AUDIT_LOG_ONLY"),
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
            &namespace_policy(&policy_name, &ns, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG"),
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

    // The controller verified the attestation too; its status is a report for people (the
    // webhook verified it by itself).
    let listing = eventually("the attestation to be Verified", || {
        let out = kubectl(["get", "attestations", "-A"]);
        let table = text(&out.stdout);
        table
            .lines()
            .any(|l| {
                let columns: Vec<&str> = l.split_whitespace().collect();
                columns.first() == Some(&ns.as_str())
                    && columns.get(2) == Some(&image.as_str())
                    && columns.get(3) == Some(&attestor.as_str())
                    && columns.get(4) == Some(&"True")
            })
            .then(|| table.clone())
            .ok_or(table)
    });
    println!("$ kubectl get attestations -A");
    for line in listing.lines() {
        println!("  {line}");
    }

    // The webhook's metrics saw all of it.
    let (code, metrics) = admin_get(server.admin, "/metrics");
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
        "kubectl delete imageattestations --all",
        kubectl(["delete", "imageattestations", "--all", "-n", &ns]),
    );
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

/// A webhook whose trust index never synced answers 503; with `failurePolicy: Fail` the API
/// server refuses the pod and shows the webhook's reason.
#[test]
fn a_cold_index_fails_closed_through_the_api_server() {
    use binauthz::events::EventSink;
    use binauthz::metrics::Metrics;
    use binauthz::trust::TrustState;
    use std::sync::Arc;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ns = runtime.block_on(cluster::temp_namespace("cold-index"));
    let (material, tls) = support::tls::loopback_tls();
    let ca_pem = material.ca_bundle_pem;
    let metrics = Arc::new(Metrics::default());
    // Policies listed, everything else still waiting.
    let mut state = TrustState::new(metrics.clone());
    state.reset_policies(Vec::new());
    let router = binauthz::webhook::router(Arc::new(binauthz::webhook::Webhook::new(
        state.index().clone(),
        metrics.clone(),
        EventSink::disabled(metrics),
    )));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(binauthz::webhook::server::serve_tls(
        listener,
        Arc::new(tls),
        router,
        async {
            let _ = stopped.await;
        },
    ));

    // A configuration of our own, for this namespace only.
    let configuration = cluster::unique_name("binauthz-cold");
    let manifest = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": configuration},
        "webhooks": [{
            "name": "pods.binauthz.dev",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}/validate"),
                "caBundle": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca_pem),
            },
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}],
        }],
    });
    let out = kubectl_stdin(["apply", "-f", "-"], &manifest.to_string());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = eventually("the API server to call the webhook", || {
        let out = kubectl([
            "run",
            "cold",
            "-n",
            &ns,
            "--image=nginx",
            "--dry-run=server",
        ]);
        let stderr = text(&out.stderr);
        (!out.status.success() && stderr.contains("pods.binauthz.dev"))
            .then(|| stderr.clone())
            .ok_or(stderr)
    });
    let _ = kubectl([
        "delete",
        "validatingwebhookconfiguration",
        &configuration,
        "--ignore-not-found",
    ]);
    let _ = stop.send(());
    runtime.block_on(server).unwrap();
    println!("$ kubectl run cold --image=nginx\n  {}", stderr.trim());
    assert!(
        stderr.contains(
            "failed calling webhook \"pods.binauthz.dev\": failed to call webhook: binauthz trust index not ready: waiting for the initial list of attestors, imageattestations, namespaces"
        ),
        "{stderr}"
    );
}
