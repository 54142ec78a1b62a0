//! Continuous validation's results as OpenReports, on the real control plane with the real
//! CRDs (from the `github.com/openreports/reports-api` v0.2.1 module, fetched by `make tools`):
//! one `Report` per namespace, one result per running pod and policy (pass, or fail with the
//! webhook's message), updated when a pod goes, deleted with the last pod.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::cluster::{self, kubectl, kubectl_stdin};
use support::oci::tool;
use support::operator::{install_crds, namespace_policy};
use support::process::{Binauthz, eventually};
use support::signer::Signer;

fn report(namespace: &str) -> Option<Value> {
    let out = kubectl([
        "get",
        "reports.openreports.io",
        "binauthz",
        "-n",
        namespace,
        "-o",
        "json",
    ]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn running_pods_are_reported_per_namespace_and_policy() {
    install_crds();
    let crd = tool("openreports-v0.2.1/openreports.io_reports.yaml");
    let out = kubectl([
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl([
        "wait",
        "--for=condition=Established",
        "crd/reports.openreports.io",
        "--timeout=60s",
    ]);
    assert!(out.status.success());

    let signer = Signer::new();
    let system = cluster::unique_name("binauthz");
    let apps = cluster::unique_name("apps");
    for ns in [&system, &apps] {
        assert!(kubectl(["create", "namespace", ns]).status.success());
    }
    let attestor = cluster::unique_name("reported");
    assert!(
        kubectl_stdin(["apply", "-f", "-"], &signer.attestor_json(&attestor))
            .status
            .success()
    );
    let signed = format!("registry.example/reported@sha256:{}", "7".repeat(64));
    let attestation =
        serde_json::to_string(&signer.attestation(&apps, "signed", &attestor, &signed)).unwrap();
    assert!(
        kubectl_stdin(["apply", "-f", "-"], &attestation)
            .status
            .success()
    );
    // Pods that run before the policy exists: continuous validation judges them.
    for (name, image) in [
        ("good", signed.as_str()),
        ("bad", "registry.example/reported:latest"),
    ] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": apps},
                         "spec": {"containers": [{"name": "app", "image": image}]}});
        assert!(
            kubectl_stdin(["create", "-f", "-"], &pod.to_string())
                .status
                .success()
        );
    }
    let policy = cluster::unique_name("reported");
    assert!(
        kubectl_stdin(
            ["apply", "-f", "-"],
            &namespace_policy(&policy, &apps, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG")
        )
        .status
        .success()
    );
    let _binauthz = Binauthz::start(&system, &["--validation-interval", "5s"]);

    let report_now = eventually("the namespace's report", || {
        let report = report(&apps).ok_or("no report yet")?;
        (report["results"].as_array().map_or(0, Vec::len) == 2)
            .then_some(report.clone())
            .ok_or(report.to_string())
    });
    assert_eq!(report_now["source"], "binauthz");
    assert_eq!(report_now["summary"]["pass"], 1, "{report_now}");
    assert_eq!(report_now["summary"]["fail"], 1, "{report_now}");
    let result = |report: &Value, pod: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"][0]["name"] == pod)
            .cloned()
    };
    let good = result(&report_now, "good").unwrap();
    assert_eq!(good["result"], "pass");
    assert_eq!(good["policy"], policy.as_str());
    assert_eq!(good["resources"][0]["kind"], "Pod");
    assert!(good["resources"][0]["uid"].is_string());
    let bad = result(&report_now, "bad").unwrap();
    assert_eq!(bad["result"], "fail");
    assert_eq!(bad["rule"], "default admission rule");
    assert_eq!(
        bad["properties"]["enforcementMode"],
        "ENFORCED_BLOCK_AND_AUDIT_LOG"
    );
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("Expected digest with sha256 scheme"),
        "{bad}"
    );

    // A pod that goes leaves the report; the last one takes the report with it.
    let delete_pod = |name: &str| {
        assert!(
            kubectl([
                "delete",
                "pod",
                name,
                "-n",
                &apps,
                "--grace-period=0",
                "--force"
            ])
            .status
            .success(),
            "delete pod {name}"
        );
    };
    delete_pod("bad");
    eventually("the report without the deleted pod", || {
        let report = report(&apps).ok_or("no report")?;
        (report["results"].as_array().map_or(0, Vec::len) == 1 && result(&report, "bad").is_none())
            .then_some(())
            .ok_or(report.to_string())
    });
    delete_pod("good");
    eventually("the report to be deleted", || {
        report(&apps).map_or(Ok(()), |r| Err(r.to_string()))
    });

    let _ = kubectl(["delete", "attestationpolicy", &policy]);
    let _ = kubectl(["delete", "attestor", &attestor]);
    for ns in [&apps, &system] {
        let _ = kubectl(["delete", "namespace", ns, "--wait=false"]);
    }
}
