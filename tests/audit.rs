//! The audit log of admission decisions, on the real control plane: `binauthz run --audit-log`
//! writes one JSON line per review the API server sends, and the log of a run matches the
//! decisions made (verdict, user, object, images with digests, the rule that refused, the
//! attestors that vouch).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::cluster::{self, kubectl, kubectl_stdin};
use support::operator::{install_crds, namespace_policy};
use support::process::{Binauthz, eventually};
use support::signer::Signer;

fn pod(namespace: &str, name: &str, image: &str, breakglass: bool) -> String {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": image}]},
    });
    if breakglass {
        pod["metadata"]["labels"] = json!({"image-policy.k8s.io/break-glass": "true"});
    }
    pod.to_string()
}

#[test]
fn every_decision_is_one_audit_line() {
    install_crds();
    let signer = Signer::new();
    let system = cluster::unique_name("binauthz");
    let apps = cluster::unique_name("apps");
    for ns in [&system, &apps] {
        assert!(kubectl(["create", "namespace", ns]).status.success());
    }
    let attestor = cluster::unique_name("audited");
    let policy = cluster::unique_name("audited");
    assert!(
        kubectl_stdin(["apply", "-f", "-"], &signer.attestor_json(&attestor))
            .status
            .success()
    );
    assert!(
        kubectl_stdin(
            ["apply", "-f", "-"],
            &namespace_policy(&policy, &apps, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG")
        )
        .status
        .success()
    );
    let digest = format!("sha256:{}", "5".repeat(64));
    let signed = format!("registry.example/app@{digest}");
    let attestation =
        serde_json::to_string(&signer.attestation(&apps, "signed", &attestor, &signed)).unwrap();
    assert!(
        kubectl_stdin(["apply", "-f", "-"], &attestation)
            .status
            .success()
    );

    let log = tempfile::NamedTempFile::new().unwrap();
    let binauthz = Binauthz::start(&system, &["--audit-log", log.path().to_str().unwrap()]);
    binauthz.wait_for_configuration();

    eventually("the signed image to be admitted", || {
        let out = kubectl_stdin(["create", "-f", "-"], &pod(&apps, "signed", &signed, false));
        out.status
            .success()
            .then_some(())
            .ok_or(String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let out = kubectl_stdin(
        ["create", "-f", "-"],
        &pod(&apps, "unsigned", "registry.example/app:latest", false),
    );
    assert!(!out.status.success());
    let out = kubectl_stdin(
        ["create", "-f", "-"],
        &pod(&apps, "glass", "registry.example/app:latest", true),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl_stdin(
        ["create", "--dry-run=server", "-f", "-"],
        &pod(&apps, "tried", "registry.example/app:latest", false),
    );
    assert!(!out.status.success());

    let records: Vec<Value> = eventually("the audit records of the namespace", || {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &Value| r["namespace"] == apps.as_str())
            .collect();
        // The retries before the attestation was trusted are in the log too.
        let names: Vec<&str> = records.iter().filter_map(|r| r["name"].as_str()).collect();
        ["unsigned", "glass", "tried"]
            .iter()
            .all(|n| names.contains(n))
            .then_some(records.clone())
            .ok_or(format!("{records:?}"))
    });
    let find = |name: &str, operation: &str| {
        records
            .iter()
            .rev()
            .find(|r| r["name"] == name && r["operation"] == operation)
            .unwrap_or_else(|| panic!("no {operation} record of {name}: {records:?}"))
            .clone()
    };
    let admitted = find("signed", "CREATE");
    assert_eq!(admitted["apiVersion"], "binauthz.dev/v1alpha1");
    assert_eq!(admitted["kind"], "AdmissionAudit");
    assert_eq!(admitted["result"], "allowed", "{admitted}");
    assert_eq!(admitted["objectKind"], "Pod");
    assert_eq!(admitted["policies"], json!([policy]));
    assert_eq!(admitted["images"][0]["image"], signed.as_str());
    assert_eq!(admitted["images"][0]["digest"], digest.as_str());
    assert!(
        admitted["images"][0]["attestedBy"]
            .as_array()
            .unwrap()
            .contains(&json!(attestor)),
        "{admitted}"
    );
    assert_eq!(admitted["images"][0]["refused"], false);
    assert!(
        !admitted["user"]["username"].as_str().unwrap().is_empty(),
        "{admitted}"
    );
    assert!(admitted["uid"].as_str().unwrap().len() >= 32);
    assert!(admitted["time"].as_str().unwrap().ends_with('Z'));

    let denied = find("unsigned", "CREATE");
    assert_eq!(denied["result"], "denied");
    assert_eq!(denied["images"][0]["refused"], true);
    assert_eq!(denied["images"][0]["policy"], policy.as_str());
    assert_eq!(denied["images"][0]["rule"], "default admission rule");
    assert_eq!(
        denied["images"][0]["enforcementMode"],
        "ENFORCED_BLOCK_AND_AUDIT_LOG"
    );
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("denied by Binary Authorization"),
        "{denied}"
    );

    let glass = find("glass", "CREATE");
    assert_eq!(glass["result"], "breakglass");
    let tried = find("tried", "CREATE");
    assert_eq!(tried["result"], "denied");
    assert_eq!(tried["dryRun"], true);
    // Every create of the namespace the API server sent is in the log, each once.
    let uids: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r["uid"].as_str()).collect();
    assert_eq!(uids.len(), records.len(), "one line per review");

    let (_, metrics) = support::operator::admin_get(binauthz.admin, "/metrics");
    assert!(
        metrics.contains("binauthz_audit_records_dropped_total 0"),
        "{metrics}"
    );

    let _ = kubectl(["delete", "attestationpolicy", &policy]);
    let _ = kubectl(["delete", "attestor", &attestor]);
    for ns in [&apps, &system] {
        let _ = kubectl(["delete", "namespace", ns, "--wait=false"]);
    }
}
