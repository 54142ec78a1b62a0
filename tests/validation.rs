//! Continuous validation against a real kube-apiserver (the test control plane): pods that
//! were admitted before a policy existed are judged again, reported in the policy's status
//! and by Events, and never touched; a new verified attestation and a deleted pod update
//! the report within seconds. Keys about to expire raise an Event and a metric.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;
mod support;

use std::time::Duration;

use binauthz::crd::{AttestationPolicy, Attestor, ImageAttestation};
use crypto_support::GpgHome;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{self, kubectl, kubectl_stdin};
use support::operator::{
    get_json, http_get, init_tracing, install_crds, ok, rbac_namespace, start_operator, wait_for,
};

const SIGNED: &str = "sha256:5d2b0b6a3c8e4f1a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a";
const UNSIGNED: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const NOT_ATTESTED: &str =
    "No attestations found that were valid and signed by a key trusted by the attestor";

fn pod(ns: &str, name: &str, image: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": image}]}
    }))
    .unwrap()
}

fn payload(artifact_url: &str) -> Vec<u8> {
    let out = assert_cmd::Command::cargo_bin("binauthz")
        .unwrap()
        .args(["create-signature-payload", "--artifact-url", artifact_url])
        .output()
        .unwrap();
    ok(&out, "binauthz create-signature-payload").into_bytes()
}

/// The policy's violation report: (count, "ns/name" listed, every listed message).
fn report(policy: &Value) -> (Option<i64>, Vec<String>, Vec<String>) {
    let listed = policy["status"]["violations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (
        policy["status"]["violationCount"].as_i64(),
        listed
            .iter()
            .map(|v| {
                format!(
                    "{}/{}",
                    v["namespace"].as_str().unwrap(),
                    v["name"].as_str().unwrap()
                )
            })
            .collect(),
        listed
            .iter()
            .flat_map(|v| v["messages"].as_array().cloned().unwrap_or_default())
            .map(|m| m.as_str().unwrap().to_owned())
            .collect(),
    )
}

async fn wait_report(
    policies: &Api<AttestationPolicy>,
    policy: &str,
    count: i64,
    listed: &[String],
) -> Value {
    wait_for(
        &format!("{policy} to report {count} violations"),
        || async {
            let p = get_json(policies, policy).await?;
            let (c, l, _) = report(&p);
            (c == Some(count) && l == listed)
                .then(|| p.clone())
                .ok_or_else(|| p["status"].to_string())
        },
    )
    .await
}

/// The PolicyViolation Events on pod `name` of `ns`.
fn violation_events(ns: &str, name: &str) -> Vec<Value> {
    let out = kubectl(["get", "events.events.k8s.io", "-n", ns, "-o", "json"]);
    let events: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "PolicyViolation" && e["regarding"]["name"] == name)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pods_are_judged_again_and_reported() {
    init_tracing();
    install_crds();
    cluster::require_image_volumes();
    let admin = cluster::client().await;
    let suffix = cluster::unique_name("cv");
    let webhook_name = format!("binauthz-{suffix}");
    let ns = rbac_namespace("cv", &suffix, &webhook_name).await;

    // Pods admitted before any policy exists (no webhook is registered then). No node runs
    // them: they stay Pending, which is running as far as validation is concerned.
    let apps = cluster::temp_namespace("bz-cv-apps").await;
    let pods = Api::<Pod>::namespaced(admin.clone(), &apps);
    let unsigned_image = format!("registry.example/cv/app@{UNSIGNED}");
    let signed_image = format!("registry.example/cv/app@{SIGNED}");
    for (name, image, labels) in [
        ("unsigned", &unsigned_image, json!({})),
        ("signed", &signed_image, json!({})),
        (
            "breakglass",
            &unsigned_image,
            json!({"image-policy.k8s.io/break-glass": "true"}),
        ),
    ] {
        pods.create(&PostParams::default(), &pod(&apps, name, image, labels))
            .await
            .unwrap();
    }
    // A signed container that mounts an unsigned image as a volume (KEP-4639).
    let mut volume_pod = pod(&apps, "volume", &signed_image, json!({}));
    volume_pod.spec.as_mut().unwrap().volumes = Some(vec![
        serde_json::from_value(json!({"name": "payload", "image": {"reference": unsigned_image}}))
            .unwrap(),
    ]);
    pods.create(&PostParams::default(), &volume_pod)
        .await
        .unwrap();

    // The controller, as its ServiceAccount, judging every pod every 3 seconds.
    let operator = start_operator(
        &ns,
        &webhook_name,
        &format!("test-{suffix}"),
        Duration::from_secs(3),
    )
    .await;

    // An attestor with a real gpg key, and a dry-run policy requiring it in `apps`.
    let gpg = GpgHome::new();
    let fpr = gpg.gen_key("CV Build <cv@example.com>", "ed25519", "sign", "2y");
    let attestor = cluster::unique_name("cv-build");
    let attestor_yaml = json!({
        "apiVersion": "binauthz.dev/v1alpha1", "kind": "Attestor",
        "metadata": {"name": attestor},
        "spec": {"publicKeys": [{"asciiArmoredPgpPublicKey": gpg.export(&fpr)}]},
    });
    ok(
        &kubectl_stdin(["apply", "-f", "-"], &attestor_yaml.to_string()),
        "apply attestor",
    );
    let policy = cluster::unique_name("cv-policy");
    let required = format!("projects/p/attestors/{attestor}");
    let policy_yaml = json!({
        "apiVersion": "binauthz.dev/v1alpha1", "kind": "AttestationPolicy",
        "metadata": {"name": policy},
        "spec": {
            // Only this test's namespace, so concurrent tests see nothing of it.
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": apps}},
            "defaultAdmissionRule": {"evaluationMode": "ALWAYS_ALLOW"},
            "kubernetesNamespaceAdmissionRules": {apps.as_str(): {
                "evaluationMode": "REQUIRE_ATTESTATION",
                "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY",
                "requireAttestationsBy": [required],
            }},
        },
    });
    ok(
        &kubectl_stdin(["apply", "-f", "-"], &policy_yaml.to_string()),
        "apply policy",
    );

    // Every pod violates: nothing is attested yet; breakglass admits but still violates.
    let policies = Api::<AttestationPolicy>::all(admin.clone());
    let all = [
        format!("{apps}/breakglass"),
        format!("{apps}/signed"),
        format!("{apps}/unsigned"),
        format!("{apps}/volume"),
    ];
    let p = wait_report(&policies, &policy, 4, &all).await;
    let message = |image: &str| {
        format!(
            "Image {image} denied by Binary Authorization namespace admission rule for {apps} of policy {policy}. Image {image} denied by attestor {required}: {NOT_ATTESTED}"
        )
    };
    let (_, _, messages) = report(&p);
    assert_eq!(
        messages,
        [
            message(&unsigned_image),
            message(&signed_image),
            message(&unsigned_image),
            message(&signed_image),
            format!("volume payload: {}", message(&unsigned_image)),
        ]
    );

    // An Event on the pod, with the same message, published once however many passes run.
    let events = wait_for("a PolicyViolation Event on the unsigned pod", || async {
        let events = violation_events(&apps, "unsigned");
        (!events.is_empty())
            .then_some(events)
            .ok_or_else(|| "none yet".to_owned())
    })
    .await;
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["note"], message(&unsigned_image).as_str());
    assert_eq!(events[0]["regarding"]["kind"], "Pod");
    assert_eq!(events[0]["reportingController"], "binauthz");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let events = violation_events(&apps, "unsigned");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["series"].is_null(),
        "published again on a later pass: {}",
        events[0]
    );
    assert_eq!(violation_events(&apps, "breakglass").len(), 1);

    // `kubectl get` shows the count.
    let out = ok(
        &kubectl(["get", "attestationpolicies", &policy]),
        "kubectl get attestationpolicies",
    );
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    let column = header.iter().position(|h| *h == "VIOLATIONS").unwrap();
    assert_eq!(row[column], "4", "{out}");
    let three = format!("binauthz_policy_violations{{policy=\"{policy}\"}} 4");
    let metrics = wait_for("the metric to count 4 violations", || async {
        let text = http_get(operator.admin_port, "/metrics").await?;
        text.lines()
            .any(|l| l == three)
            .then_some(text.clone())
            .ok_or(text)
    })
    .await;
    // One watch per resource kind, plus the leader's pods and the replica's Secret.
    for resource in [
        "attestors",
        "imageattestations",
        "attestationpolicies",
        "namespaces",
        "secrets",
        "pods",
    ] {
        let line = format!("binauthz_watches{{resource=\"{resource}\"}} 1");
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }

    // A verified attestation for the signed digest: that pod no longer violates.
    let url = format!("registry.example/cv/app@{SIGNED}");
    let payload_file = gpg.write("payload.json", &payload(&url));
    let signature = String::from_utf8(gpg.armored_sign(&fpr, &payload_file)).unwrap();
    let attestation = cluster::unique_name("cv-att");
    let attestation_yaml = json!({
        "apiVersion": "binauthz.dev/v1alpha1", "kind": "ImageAttestation",
        "metadata": {"name": attestation, "namespace": apps},
        "spec": {
            "artifactUrl": url,
            "attestor": attestor,
            "signatures": [{"publicKeyId": fpr, "signature": signature}],
        },
    });
    ok(
        &kubectl_stdin(["apply", "-f", "-"], &attestation_yaml.to_string()),
        "apply attestation",
    );
    // The pod whose container is now signed still runs an unsigned image volume.
    let still = [
        format!("{apps}/breakglass"),
        format!("{apps}/unsigned"),
        format!("{apps}/volume"),
    ];
    let p = wait_report(&policies, &policy, 3, &still).await;
    assert_eq!(
        report(&p).2.last().unwrap(),
        &format!("volume payload: {}", message(&unsigned_image))
    );

    // The policy reconciler and continuous validation own their own status fields, so
    // neither's apply removes the other's.
    let p = wait_for(
        "the policy reconciler to count the verified digest",
        || async {
            let p = get_json(&policies, &policy).await?;
            (p["status"]["requiredAttestors"][0]["verifiedDigests"] == 1)
                .then(|| p.clone())
                .ok_or_else(|| p["status"].to_string())
        },
    )
    .await;
    assert_eq!(report(&p).0, Some(3), "{}", p["status"]);
    let managers: Vec<(String, Value)> = p["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["subresource"] == "status")
        .map(|m| {
            (
                m["manager"].as_str().unwrap().to_owned(),
                m["fieldsV1"]["f:status"].clone(),
            )
        })
        .collect();
    let fields = |manager: &str| {
        managers
            .iter()
            .find(|(m, _)| m == manager)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no status fields of {manager}: {managers:?}"))
    };
    let validation = fields("binauthz-validation");
    assert!(validation.get("f:violationCount").is_some(), "{validation}");
    assert!(validation.get("f:conditions").is_none(), "{validation}");
    let reconciler = fields("binauthz");
    assert!(reconciler.get("f:conditions").is_some(), "{reconciler}");
    assert!(reconciler.get("f:violationCount").is_none(), "{reconciler}");
    assert!(reconciler.get("f:violations").is_none(), "{reconciler}");

    // Pods were never touched: still there, labels as created.
    let unsigned = pods.get("unsigned").await.unwrap();
    assert!(unsigned.metadata.deletion_timestamp.is_none());
    assert!(unsigned.metadata.annotations.is_none());

    // Deleted pods leave the report.
    for name in ["unsigned", "breakglass", "volume"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_report(&policies, &policy, 0, &[]).await;

    // The metrics: violations per policy, and when the attestor's key expires.
    let key_expiry =
        format!("binauthz_key_expiry_seconds{{attestor=\"{attestor}\",key=\"{fpr}\"}} ");
    let metrics = wait_for("the metrics to show 0 violations", || async {
        let text = http_get(operator.admin_port, "/metrics").await?;
        let zero = format!("binauthz_policy_violations{{policy=\"{policy}\"}} 0");
        (text.lines().any(|l| l == zero) && text.contains(&key_expiry))
            .then(|| text.clone())
            .ok_or(text)
    })
    .await;
    let expires: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key_expiry))
        .unwrap()
        .parse()
        .unwrap();
    let in_two_years = jiff::Timestamp::now().as_second() + 2 * 365 * 86400;
    assert!((expires - in_two_years).abs() < 3 * 86400, "{expires}");

    // A key about to expire: a Warning Event naming the key and the date, and the metric.
    let soon_fpr = gpg.gen_key("Soon <soon@example.com>", "ed25519", "sign", "10d");
    let soon = cluster::unique_name("cv-soon");
    let soon_yaml = json!({
        "apiVersion": "binauthz.dev/v1alpha1", "kind": "Attestor",
        "metadata": {"name": soon},
        "spec": {"publicKeys": [{"asciiArmoredPgpPublicKey": gpg.export(&soon_fpr)}]},
    });
    ok(
        &kubectl_stdin(["apply", "-f", "-"], &soon_yaml.to_string()),
        "apply an attestor whose key expires soon",
    );
    let note = wait_for("a KeyExpiringSoon Event", || async {
        let out = kubectl(["get", "events.events.k8s.io", "-n", "default", "-o", "json"]);
        let events: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["reason"] == "KeyExpiringSoon" && e["regarding"]["name"] == soon.as_str())
            .map(|e| {
                (
                    e["type"].clone(),
                    e["note"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .ok_or_else(|| "no Event yet".to_owned())
    })
    .await;
    assert_eq!(note.0, "Warning");
    assert!(note.1.contains(&soon_fpr), "{}", note.1);
    let at: jiff::Timestamp = note
        .1
        .split_once("expires at ")
        .and_then(|(_, rest)| rest.split(';').next())
        .unwrap_or_else(|| panic!("no date in {}", note.1))
        .parse()
        .unwrap();
    let in_ten_days = jiff::Timestamp::now().as_second() + 10 * 86400;
    assert!((at.as_second() - in_ten_days).abs() < 600, "{}", note.1);
    let soon_metric =
        format!("binauthz_key_expiry_seconds{{attestor=\"{soon}\",key=\"{soon_fpr}\"}} ");
    wait_for("the expiring key's metric", || async {
        let text = http_get(operator.admin_port, "/metrics").await?;
        text.contains(&soon_metric).then_some(()).ok_or(text)
    })
    .await;

    let _ = pods.delete("signed", &DeleteParams::default()).await;
    operator.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), operator.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let _ = policies.delete(&policy, &DeleteParams::default()).await;
    for name in [&attestor, &soon] {
        let _ = Api::<Attestor>::all(admin.clone())
            .delete(name, &DeleteParams::default())
            .await;
    }
    let _ = Api::<ImageAttestation>::namespaced(admin.clone(), &apps)
        .delete(&attestation, &DeleteParams::default())
        .await;
    let _ = Api::<ValidatingWebhookConfiguration>::all(admin)
        .delete(&webhook_name, &DeleteParams::default())
        .await;
}
