//! The operator against a real kube-apiserver (the test control plane, tests/support):
//! CRDs and their CEL rules, `binauthz run` with the RBAC of config/rbac/ (by impersonating
//! its ServiceAccount), attestors with real gpg keys, attestations signed by gpg, the
//! generated webhook configuration, allowlists, the serving certificate and the Lease.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;
mod support;

use std::time::Duration;

use base64::Engine as _;
use binauthz::controller::{FailurePolicy, WebhookSettings};
use binauthz::crd::{AttestationPolicy, Attestor, ImageAttestation};
use binauthz::run::RunConfig;
use crypto_support::GpgHome;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::cluster::{self, kubectl, kubectl_stdin};
use support::operator::{
    can_i, client_as, get_json, init_tracing, install_crds, ok, rbac_namespace, wait_for,
};

fn condition(object: &Value, type_: &str) -> Option<(String, String, String)> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// Wait until the named object's condition has this status and reason; returns the object.
async fn wait_condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Value
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    wait_for(&format!("{name} {type_}={status} ({reason})"), || async {
        let object = get_json(api, name).await?;
        match condition(&object, type_) {
            Some((s, r, _)) if s == status && r == reason => Ok(object),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

fn payload(artifact_url: &str) -> Vec<u8> {
    let out = assert_cmd::Command::cargo_bin("binauthz")
        .unwrap()
        .args(["create-signature-payload", "--artifact-url", artifact_url])
        .output()
        .unwrap();
    ok(&out, "binauthz create-signature-payload").into_bytes()
}

fn attestation_yaml(
    name: &str,
    ns: &str,
    url: &str,
    attestor: &str,
    key: &str,
    signature: &str,
    payload: Option<&[u8]>,
) -> String {
    let mut spec = json!({
        "artifactUrl": url,
        "attestor": attestor,
        "signatures": [{"publicKeyId": key, "signature": signature}],
    });
    if let Some(p) = payload {
        spec["serializedPayload"] = json!(base64::engine::general_purpose::STANDARD.encode(p));
    }
    serde_json::to_string(&json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "ImageAttestation",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

fn attestor_yaml(name: &str, armored: &[&str]) -> String {
    let keys: Vec<Value> = armored
        .iter()
        .map(|k| json!({"asciiArmoredPgpPublicKey": k}))
        .collect();
    serde_json::to_string(&json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "Attestor",
        "metadata": {"name": name},
        "spec": {"description": "test attestor", "publicKeys": keys},
    }))
    .unwrap()
}

fn policy_yaml(name: &str, attestors: &[&str]) -> String {
    serde_json::to_string(&json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "AttestationPolicy",
        "metadata": {"name": name},
        "spec": {
            "globalPolicyEvaluationMode": "ENABLE",
            "admissionWhitelistPatterns": [{"namePattern": "registry.example/tools/*"}],
            "defaultAdmissionRule": {
                "evaluationMode": "REQUIRE_ATTESTATION",
                "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
                "requireAttestationsBy": attestors,
            },
        },
    }))
    .unwrap()
}

#[test]
fn cel_rules_reject_invalid_objects() {
    install_crds();
    let name = cluster::unique_name("cel");
    let policy = serde_json::to_string(&json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "AttestationPolicy",
        "metadata": {"name": name},
        "spec": {"defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION"}},
    }))
    .unwrap();
    let out = kubectl_stdin(["apply", "-f", "-"], &policy);
    assert!(
        !out.status.success(),
        "a policy without attestors was accepted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("requireAttestationsBy must list attestors exactly when evaluationMode is REQUIRE_ATTESTATION"),
        "{err}"
    );
    let attestor = serde_json::to_string(&json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "Attestor",
        "metadata": {"name": name},
        "spec": {"publicKeys": [{
            "asciiArmoredPgpPublicKey": "x",
            "pkixPublicKey": {"publicKeyPem": "y", "signatureAlgorithm": "ED25519"},
        }]},
    }))
    .unwrap();
    let out = kubectl_stdin(["apply", "-f", "-"], &attestor);
    assert!(!out.status.success(), "a key with both kinds was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("set exactly one of asciiArmoredPgpPublicKey or pkixPublicKey"),
        "{err}"
    );
}

/// Objects without bounds would let a namespace user exhaust every replica's memory (each
/// keeps every attestation): the API server refuses oversized ones, saying the limit.
#[test]
fn oversized_objects_are_refused_naming_the_limit() {
    install_crds();
    let ns = cluster::unique_name("limits");
    ok(&kubectl(["create", "namespace", &ns]), "create namespace");
    let digest = "a".repeat(64);
    let attestation = |payload: &str, signatures: usize, signature: &str| {
        serde_json::to_string(&json!({
            "apiVersion": "binauthz.dev/v1alpha1",
            "kind": "ImageAttestation",
            "metadata": {"name": cluster::unique_name("big"), "namespace": ns},
            "spec": {
                "artifactUrl": format!("registry.example/app@sha256:{digest}"),
                "attestor": "build",
                "serializedPayload": payload,
                "signatures": vec![json!({"publicKeyId": "K", "signature": signature}); signatures],
            },
        }))
        .unwrap()
    };
    let refused = |yaml: String| {
        let out = kubectl_stdin(["create", "-f", "-"], &yaml);
        assert!(!out.status.success(), "an oversized object was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(attestation(&"A".repeat(21_849), 1, "s"));
    assert!(
        err.contains("spec.serializedPayload: Too long: may not be more than 21848"),
        "{err}"
    );
    let err = refused(attestation("e30=", 9, "s"));
    assert!(
        err.contains("spec.signatures: Too many: 9: must have at most 8 items"),
        "{err}"
    );
    let err = refused(attestation("e30=", 1, &"s".repeat(24_577)));
    assert!(
        err.contains("spec.signatures[0].signature: Too long: may not be more than 24576"),
        "{err}"
    );
    // At the limits, it is accepted.
    let out = kubectl_stdin(
        ["create", "--dry-run=server", "-f", "-"],
        &attestation(&"A".repeat(21_848), 8, "s"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<Value> = (0..33)
        .map(|_| json!({"pkixPublicKey": {"publicKeyPem": "x", "signatureAlgorithm": "ED25519"}}))
        .collect();
    let err = refused(
        serde_json::to_string(&json!({
            "apiVersion": "binauthz.dev/v1alpha1",
            "kind": "Attestor",
            "metadata": {"name": cluster::unique_name("many-keys")},
            "spec": {"publicKeys": keys},
        }))
        .unwrap(),
    );
    assert!(
        err.contains("spec.publicKeys: Too many: 33: must have at most 32 items"),
        "{err}"
    );
}

#[tokio::test]
async fn service_account_rights_are_least_privilege() {
    install_crds();
    let suffix = cluster::unique_name("rbac");
    let ns = rbac_namespace("rbac", &suffix, "binauthz").await;
    let sa = format!("system:serviceaccount:{ns}:binauthz");
    // What the controller does.
    assert!(can_i(
        &sa,
        &["watch", "imageattestations.binauthz.dev", "-A"]
    ));
    assert!(can_i(
        &sa,
        &["patch", "attestors.binauthz.dev", "--subresource", "status"]
    ));
    assert!(can_i(
        &sa,
        &["patch", "validatingwebhookconfigurations/binauthz"]
    ));
    assert!(can_i(
        &sa,
        &["get", "secrets/binauthz-webhook-tls", "-n", &ns]
    ));
    assert!(can_i(&sa, &["patch", "leases/binauthz-leader", "-n", &ns]));
    assert!(can_i(&sa, &["patch", "configmaps", "-n", &ns]));
    // Continuous validation: watch pods and namespaces, Events on pods anywhere.
    assert!(can_i(&sa, &["list", "pods", "-A"]));
    assert!(can_i(&sa, &["watch", "pods", "-n", "default"]));
    assert!(can_i(&sa, &["watch", "namespaces"]));
    assert!(can_i(
        &sa,
        &["create", "events.events.k8s.io", "-n", "default"]
    ));
    // And nothing more.
    assert!(!can_i(&sa, &["create", "pods", "-n", &ns]));
    assert!(!can_i(&sa, &["create", "pods", "-n", "default"]));
    assert!(
        !can_i(&sa, &["delete", "pods", "-n", "default"]),
        "continuous validation never kills a pod"
    );
    assert!(!can_i(&sa, &["patch", "pods", "-A"]));
    assert!(!can_i(&sa, &["get", "pods/log", "-n", "default"]));
    assert!(!can_i(&sa, &["create", "pods/exec", "-n", "default"]));
    assert!(!can_i(&sa, &["patch", "namespaces"]));
    // Nothing reads single objects of ours: list and watch only.
    assert!(!can_i(&sa, &["get", "attestors.binauthz.dev"]));
    // Secrets: only in its own namespace (the pull Secrets Attestors name), never listed,
    // never elsewhere.
    assert!(!can_i(&sa, &["get", "secrets", "-A"]));
    assert!(!can_i(&sa, &["get", "secrets", "-n", "default"]));
    assert!(can_i(&sa, &["get", "secrets/regcred", "-n", &ns]));
    assert!(!can_i(&sa, &["list", "secrets", "-n", &ns]));
    assert!(!can_i(&sa, &["watch", "secrets/other", "-n", &ns]));
    // Registry ImageAttestations: written in its own namespace only.
    assert!(can_i(
        &sa,
        &["create", "imageattestations.binauthz.dev", "-n", &ns]
    ));
    assert!(!can_i(
        &sa,
        &["create", "imageattestations.binauthz.dev", "-n", "default"]
    ));
    assert!(!can_i(&sa, &["get", "configmaps", "-n", "default"]));
    assert!(
        !can_i(&sa, &["patch", "attestors.binauthz.dev"]),
        "spec is not the controller's to change"
    );
    assert!(!can_i(
        &sa,
        &["delete", "imageattestations.binauthz.dev", "-A"]
    ));
    assert!(!can_i(
        &sa,
        &["patch", "validatingwebhookconfigurations/other"]
    ));
    assert!(!can_i(&sa, &["patch", "mutatingwebhookconfigurations"]));
    assert!(!can_i(&sa, &["create", "clusterrolebindings"]));
}

/// The task of a running `binauthz run`.
type Operator = tokio::task::JoinHandle<Result<(), binauthz::run::RunError>>;

/// Start `binauthz run` in-process as the ServiceAccount `binauthz` of `ns`, registering the
/// webhook by URL; returns the URL, the stop switch and the task.
async fn start_operator(
    ns: &str,
    webhook_name: &str,
    identity: &str,
) -> (String, tokio::sync::oneshot::Sender<()>, Operator) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}/validate");
    let config = RunConfig {
        webhook: WebhookSettings {
            namespace: ns.to_owned(),
            configuration_name: webhook_name.to_owned(),
            service_name: "binauthz".into(),
            service_port: 443,
            url: Some(url.clone()),
            // Nothing serves the URL in these tests: never block other tests' requests.
            failure_policy: FailurePolicy::Ignore,
            timeout_seconds: 3,
            exempt_namespaces: ["kube-system".to_owned()].into(),
        },
        serving_names: binauthz::tls::serving_names("binauthz", ns, Some("127.0.0.1")),
        identity: identity.to_owned(),
        webhook_port: port,
        admin_port: 0,
        kubeconfig: None,
        validation_interval: Duration::from_secs(3600),
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
    (url, stop, operator)
}

async fn lease_holder(leases: &Api<Lease>) -> Result<String, String> {
    let lease = get_json(leases, "binauthz-leader").await?;
    Ok(lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_leader_stops() {
    install_crds();
    let admin = cluster::client().await;
    let suffix = cluster::unique_name("ha");
    let webhook_name = format!("binauthz-{suffix}");
    let ns = rbac_namespace("ha", &suffix, &webhook_name).await;
    let leases = Api::<Lease>::namespaced(admin.clone(), &ns);
    let (_, stop_a, a) = start_operator(&ns, &webhook_name, "replica-a").await;
    wait_for("replica-a to lead", || async {
        let holder = lease_holder(&leases).await?;
        (holder == "replica-a").then_some(()).ok_or(holder)
    })
    .await;
    let (_, stop_b, b) = start_operator(&ns, &webhook_name, "replica-b").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        lease_holder(&leases).await.unwrap(),
        "replica-a",
        "one leader at a time"
    );

    stop_a.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), a)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    wait_for("replica-b to take over", || async {
        let holder = lease_holder(&leases).await?;
        (holder == "replica-b").then_some(()).ok_or(holder)
    })
    .await;
    // The new leader does the leader's work: it issues a deleted TLS Secret again.
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    wait_for("the TLS Secret", || async {
        get_json(&secrets, "binauthz-webhook-tls").await
    })
    .await;
    secrets
        .delete("binauthz-webhook-tls", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("replica-b to issue the TLS Secret", || async {
        get_json(&secrets, "binauthz-webhook-tls").await
    })
    .await;

    stop_b.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), b)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let configs = Api::<ValidatingWebhookConfiguration>::all(admin.clone());
    let _ = configs
        .delete(&webhook_name, &DeleteParams::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_end_to_end() {
    init_tracing();
    install_crds();
    let admin = cluster::client().await;
    let suffix = cluster::unique_name("op");
    let webhook_name = format!("binauthz-{suffix}");
    let ns = rbac_namespace("op", &suffix, &webhook_name).await;

    // The controller, in-process, as its ServiceAccount: it only gets what config/rbac grants.
    let identity = format!("test-{suffix}");
    let (url, stop, operator) = start_operator(&ns, &webhook_name, &identity).await;

    // Leadership and the serving certificate.
    let leases = Api::<Lease>::namespaced(admin.clone(), &ns);
    wait_for("the Lease held by this controller", || async {
        let lease = get_json(&leases, "binauthz-leader").await?;
        (lease["spec"]["holderIdentity"] == identity.as_str())
            .then_some(())
            .ok_or_else(|| lease["spec"].to_string())
    })
    .await;
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    let secret = wait_for("the TLS Secret", || async {
        get_json(&secrets, "binauthz-webhook-tls").await
    })
    .await;
    let ca = secret["data"]["ca.crt"].as_str().unwrap().to_owned();
    assert!(secret["data"]["tls.crt"].is_string() && secret["data"]["tls.key"].is_string());

    // A real gpg key.
    let gpg = GpgHome::new();
    let fpr = gpg.gen_key(
        "Build Attestor <build@example.com>",
        "ed25519",
        "sign",
        "2y",
    );
    let armored = gpg.export(&fpr);
    let attestor = cluster::unique_name("build");
    ok(
        &kubectl_stdin(["apply", "-f", "-"], &attestor_yaml(&attestor, &[&armored])),
        "apply attestor",
    );
    let attestors = Api::<Attestor>::all(admin.clone());
    let a = wait_condition(&attestors, &attestor, "Ready", "True", "KeysReady").await;
    assert_eq!(a["status"]["usableKeys"], 1);
    assert_eq!(a["status"]["keys"][0]["fingerprint"], fpr.as_str());
    assert_eq!(a["status"]["keys"][0]["id"], fpr.as_str());
    assert_eq!(a["status"]["keys"][0]["canSign"], true);
    let (status, _, _) = condition(&a, "KeyExpiringSoon").unwrap();
    assert_eq!(status, "False");

    // A key that expires within 30 days: Ready, with a KeyExpiringSoon warning.
    let soon_fpr = gpg.gen_key("Soon <soon@example.com>", "ed25519", "sign", "10d");
    let soon = cluster::unique_name("soon");
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &attestor_yaml(&soon, &[&gpg.export(&soon_fpr)]),
        ),
        "apply expiring attestor",
    );
    let e = wait_condition(
        &attestors,
        &soon,
        "KeyExpiringSoon",
        "True",
        "KeyExpiringSoon",
    )
    .await;
    assert_eq!(condition(&e, "Ready").unwrap().0, "True");
    assert!(
        condition(&e, "KeyExpiringSoon")
            .unwrap()
            .2
            .contains(&soon_fpr),
        "{e}"
    );
    assert!(e["status"]["keys"][0]["expires"].is_string(), "{e}");

    // A broken key makes another attestor unready, with an Event.
    let broken = cluster::unique_name("broken");
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &attestor_yaml(&broken, &["not a key"]),
        ),
        "apply broken attestor",
    );
    let b = wait_condition(&attestors, &broken, "Ready", "False", "InvalidKey").await;
    assert!(
        condition(&b, "Ready")
            .unwrap()
            .2
            .contains("spec.publicKeys[0]"),
        "{b}"
    );
    wait_for("an InvalidKey Event", || async {
        let out = kubectl(["get", "events.events.k8s.io", "-n", "default", "-o", "json"]);
        let events: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["reason"] == "InvalidKey" && e["regarding"]["name"] == broken.as_str())
            .then_some(())
            .ok_or_else(|| "no Event yet".to_owned())
    })
    .await;

    // An attestation signed with gpg over `binauthz create-signature-payload`.
    let digest = "sha256:1fb1a1e1b9a47c8fa3c9bd8b1cbd3a0a72e35a5fb0f40bb21edd17a5b4c4a0e1";
    let url_a = format!("registry.example/team/app@{digest}");
    let signed = gpg.write("payload.json", &payload(&url_a));
    let signature = String::from_utf8(gpg.armored_sign(&fpr, &signed)).unwrap();
    let good = cluster::unique_name("good");
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &attestation_yaml(&good, &ns, &url_a, &attestor, &fpr, &signature, None),
        ),
        "apply attestation",
    );
    let attestations = Api::<ImageAttestation>::namespaced(admin.clone(), &ns);
    let g = wait_condition(&attestations, &good, "Verified", "True", "Verified").await;
    assert_eq!(g["status"]["verifiedKeyId"], fpr.as_str());
    assert_eq!(g["status"]["digest"], digest);
    assert_eq!(
        g["status"]["observedGeneration"],
        g["metadata"]["generation"]
    );
    assert!(condition(&g, "Verified").unwrap().2.contains(&fpr));

    // A signature over the payload of another digest.
    let other_digest = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let other = gpg.write(
        "other.json",
        &payload(&format!("registry.example/team/app@{other_digest}")),
    );
    let other_sig = String::from_utf8(gpg.armored_sign(&fpr, &other)).unwrap();
    let swapped = cluster::unique_name("swapped");
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &attestation_yaml(&swapped, &ns, &url_a, &attestor, &fpr, &other_sig, None),
        ),
        "apply swapped attestation",
    );
    let s = wait_condition(
        &attestations,
        &swapped,
        "Verified",
        "False",
        "DigestMismatch",
    )
    .await;
    assert!(s["status"].get("verifiedKeyId").is_none(), "{s}");

    // A detached signature that does not match the payload.
    let detached = String::from_utf8(gpg.gpg(&[
        "--armor",
        "--local-user",
        &fpr,
        "--output",
        "-",
        "--detach-sign",
        &other,
    ]))
    .unwrap();
    let forged = cluster::unique_name("forged");
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &attestation_yaml(
                &forged,
                &ns,
                &url_a,
                &attestor,
                &fpr,
                &detached,
                Some(&payload(&url_a)),
            ),
        ),
        "apply forged attestation",
    );
    wait_condition(&attestations, &forged, "Verified", "False", "BadSignature").await;

    // The policy requiring the attestor: Ready, allowlist ConfigMap with the verified digest.
    let missing = cluster::unique_name("missing");
    let policy = cluster::unique_name("policy");
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &policy_yaml(
                &policy,
                &[&format!("projects/p/attestors/{attestor}"), &missing],
            ),
        ),
        "apply policy",
    );
    let policies = Api::<AttestationPolicy>::all(admin.clone());
    let p = wait_condition(&policies, &policy, "Ready", "False", "AttestorNotFound").await;
    let message = condition(&p, "Ready").unwrap().2;
    assert!(
        message.contains(&missing) && !message.contains(&format!("{attestor},")),
        "{message}"
    );
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &policy_yaml(&policy, &[&format!("projects/p/attestors/{attestor}")]),
        ),
        "update policy",
    );
    let p = wait_condition(&policies, &policy, "Ready", "True", "AttestorsReady").await;
    let allowlist = p["status"]["allowlist"].as_array().unwrap();
    assert!(allowlist.iter().any(|x| x == "registry.example/tools/*"));
    assert!(
        allowlist.len() > 1,
        "system images are listed: {allowlist:?}"
    );
    let config_maps = Api::<ConfigMap>::namespaced(admin.clone(), &ns);
    let cm_name = format!("binauthz-allowlist-{policy}");
    let cm = wait_for("the allowlist to list the verified digest", || async {
        let cm = get_json(&config_maps, &cm_name).await?;
        let digests = cm["data"][attestor.as_str()].as_str().unwrap_or_default();
        (digests == format!("{digest}\n"))
            .then_some(cm.clone())
            .ok_or_else(|| cm["data"].to_string())
    })
    .await;
    assert!(
        cm["data"]["patterns"]
            .as_str()
            .unwrap()
            .contains("registry.example/tools/*\n")
    );
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "binauthz"
    );
    assert_eq!(
        cm["metadata"]["labels"]["binauthz.dev/policy"],
        policy.as_str()
    );

    // The webhook configuration: caBundle, URL, exempt namespaces, two webhooks.
    let configs = Api::<ValidatingWebhookConfiguration>::all(admin.clone());
    let vwc = wait_for("the webhook configuration with webhooks", || async {
        let vwc = get_json(&configs, &webhook_name).await?;
        (vwc["webhooks"].as_array().map_or(0, Vec::len) == 2)
            .then_some(vwc.clone())
            .ok_or_else(|| vwc.to_string())
    })
    .await;
    assert_eq!(
        vwc["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "binauthz"
    );
    for webhook in vwc["webhooks"].as_array().unwrap() {
        assert_eq!(webhook["clientConfig"]["url"], url.as_str());
        assert_eq!(webhook["clientConfig"]["caBundle"], ca.as_str());
        assert_eq!(webhook["failurePolicy"], "Ignore");
        assert_eq!(webhook["sideEffects"], "None");
        assert_eq!(webhook["matchPolicy"], "Equivalent");
        assert_eq!(webhook["timeoutSeconds"], 3);
        let values = &webhook["namespaceSelector"]["matchExpressions"][0]["values"];
        let mut expected = vec![ns.clone(), "kube-system".to_owned()];
        expected.sort();
        assert_eq!(values, &json!(expected));
    }
    assert_eq!(vwc["webhooks"][0]["name"], "pods.binauthz.dev");
    assert_eq!(vwc["webhooks"][1]["name"], "workloads.binauthz.dev");

    // A deleted TLS Secret is issued again at once, with a new CA that the webhook
    // configuration follows.
    secrets
        .delete("binauthz-webhook-tls", &DeleteParams::default())
        .await
        .unwrap();
    let new_ca = wait_for("a new TLS Secret", || async {
        let secret = get_json(&secrets, "binauthz-webhook-tls").await?;
        let new_ca = secret["data"]["ca.crt"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (new_ca != ca)
            .then_some(new_ca)
            .ok_or_else(|| "the old CA".to_owned())
    })
    .await;
    wait_for("the caBundle to follow the new CA", || async {
        let vwc = get_json(&configs, &webhook_name).await?;
        (vwc["webhooks"][0]["clientConfig"]["caBundle"] == new_ca.as_str())
            .then_some(())
            .ok_or_else(|| "the old caBundle".to_owned())
    })
    .await;

    // Printer columns.
    let out = ok(
        &kubectl(["get", "attestors,attestationpolicies,attestations", "-A"]),
        "kubectl get",
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not in\n{out}"))
            .to_owned()
    };
    let header = out.lines().next().unwrap();
    assert!(header.contains("READY") && header.contains("KEYS"), "{out}");
    let a_row = row(&format!("attestor.binauthz.dev/{attestor}"));
    assert!(
        a_row.split_whitespace().collect::<Vec<_>>()[1..3] == ["True", "1"],
        "{a_row}"
    );
    let p_row = row(&format!("attestationpolicy.binauthz.dev/{policy}"));
    assert!(
        p_row.contains("REQUIRE_ATTESTATION")
            && p_row.contains("ENFORCED_BLOCK_AND_AUDIT_LOG")
            && p_row.contains("True"),
        "{p_row}"
    );
    let g_row = row(&format!("imageattestation.binauthz.dev/{good}"));
    let cols: Vec<&str> = g_row.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        &[
            ns.as_str(),
            &format!("imageattestation.binauthz.dev/{good}"),
            &url_a,
            &attestor,
            "True"
        ],
        "{g_row}"
    );
    let wide = ok(
        &kubectl(["get", "attestations", "-n", &ns, "-o", "wide"]),
        "kubectl get -o wide",
    );
    assert!(
        wide.lines()
            .any(|l| l.contains(&swapped) && l.contains("DigestMismatch")),
        "{wide}"
    );

    // Removing the key flips the attestation to KeyNotFound; adding it back flips it back.
    let second = gpg.gen_key("Other <other@example.com>", "ed25519", "sign", "2y");
    let second_armored = gpg.export(&second);
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &attestor_yaml(&attestor, &[&second_armored]),
        ),
        "replace the key",
    );
    wait_condition(&attestations, &good, "Verified", "False", "KeyNotFound").await;
    wait_for("the digest to leave the allowlist", || async {
        let cm = get_json(&config_maps, &cm_name).await?;
        (cm["data"][attestor.as_str()] == "")
            .then_some(())
            .ok_or_else(|| cm["data"].to_string())
    })
    .await;
    ok(
        &kubectl_stdin(
            ["apply", "-f", "-"],
            &attestor_yaml(&attestor, &[&second_armored, &armored]),
        ),
        "add the key back",
    );
    wait_condition(&attestations, &good, "Verified", "True", "Verified").await;
    // Status written by hand is put back: status is a report, not an input.
    let forged_status = json!({"status": {"conditions": [{
        "type": "Verified", "status": "True", "reason": "Verified", "message": "trust me",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    attestations
        .patch_status(
            &swapped,
            &PatchParams::default(),
            &Patch::Merge(&forged_status),
        )
        .await
        .unwrap();
    wait_condition(
        &attestations,
        &swapped,
        "Verified",
        "False",
        "DigestMismatch",
    )
    .await;

    // Deleting the attestor: AttestorNotFound, and the policy is no longer Ready.
    attestors
        .delete(&attestor, &DeleteParams::default())
        .await
        .unwrap();
    wait_condition(
        &attestations,
        &good,
        "Verified",
        "False",
        "AttestorNotFound",
    )
    .await;
    wait_condition(&policies, &policy, "Ready", "False", "AttestorNotFound").await;

    // Deleting the policy: the allowlist goes and, without policies, so do the webhooks.
    policies
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the allowlist of the deleted policy to go", || async {
        match config_maps.get_opt(&cm_name).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let others = policies
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len();
    if others == 0 {
        wait_for("the webhook configuration without webhooks", || async {
            let vwc = get_json(&configs, &webhook_name).await?;
            (vwc["webhooks"].as_array().is_none_or(Vec::is_empty))
                .then_some(())
                .ok_or_else(|| vwc.to_string())
        })
        .await;
    }

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), operator)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The Lease was released for a standby to take over at once.
    let lease = get_json(&leases, "binauthz-leader").await.unwrap();
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_none_or(str::is_empty),
        "{lease}"
    );
    configs
        .delete(&webhook_name, &DeleteParams::default())
        .await
        .unwrap();
    for name in [&broken, &soon] {
        let _ = attestors.delete(name, &DeleteParams::default()).await;
    }
}
