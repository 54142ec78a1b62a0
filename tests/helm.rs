//! The Helm chart (`config/helm/binauthz`) with the real Helm v4 (built by `make tools` from its
//! Go module): `helm lint`, `helm template` with several value sets (the defaults render the
//! same objects as `config/default`, so the two cannot drift; a misspelt value fails), and
//! `helm install`, `upgrade` and `uninstall` on the test control plane, whose API server
//! validates every object.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use support::cluster::{self, kubectl};
use support::oci::tool;

fn chart() -> PathBuf {
    support::cluster::repo_root().join("config/helm/binauthz")
}

fn helm(args: &[&str]) -> Output {
    Command::new(tool("helm-v4.3.2/helm"))
        .args(args)
        .env("KUBECONFIG", cluster::kubeconfig())
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("binauthz-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("binauthz-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("binauthz-helm-data"),
        )
        .output()
        .unwrap()
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The objects of a multi-document YAML, by `Kind/name`.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| {
            let value: Value = serde::Deserialize::deserialize(d).ok()?;
            value.is_object().then_some(value)
        })
        .map(|v| {
            let key = format!(
                "{}/{}",
                v["kind"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            );
            (key, v)
        })
        .collect()
}

/// An object without what only tells who installed it (Helm's and kustomize's labels).
fn normalized(mut object: Value) -> Value {
    if let Some(labels) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        for key in [
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
            "helm.sh/chart",
        ] {
            labels.remove(key);
        }
        if labels.is_empty() {
            object["metadata"].as_object_mut().unwrap().remove("labels");
        }
    }
    object
}

fn template(set: &[&str]) -> Output {
    let chart = chart();
    let mut args = vec![
        "template",
        "binauthz",
        chart.to_str().unwrap(),
        "--namespace",
        "binauthz-system",
        "--include-crds",
    ];
    for s in set {
        args.extend(["--set", s]);
    }
    helm(&args)
}

#[test]
fn the_chart_lints_and_renders_what_kustomize_renders() {
    let chart = chart();
    ok(
        "helm lint",
        helm(&["lint", "--strict", chart.to_str().unwrap()]),
    );

    let rendered = objects(&ok("helm template", template(&[])));
    let out = kubectl([
        "kustomize",
        support::cluster::repo_root()
            .join("config/default")
            .to_str()
            .unwrap(),
    ]);
    let kustomized = objects(&ok("kubectl kustomize", out));
    // Helm creates the release namespace (--create-namespace); the rest is the same.
    let mut expected: Vec<&String> = kustomized
        .keys()
        .filter(|k| !k.starts_with("Namespace/"))
        .collect();
    expected.sort();
    let mut have: Vec<&String> = rendered.keys().collect();
    have.sort();
    assert_eq!(
        have, expected,
        "the chart and config/default render different objects"
    );
    for (key, object) in &rendered {
        let (chart, kustomize) = (
            normalized(object.clone()),
            normalized(kustomized[key].clone()),
        );
        assert!(
            chart == kustomize,
            "{key} differs between the chart and config/default:\n--- chart\n{}\n--- config/default\n{}",
            serde_yaml::to_string(&chart).unwrap(),
            serde_yaml::to_string(&kustomize).unwrap()
        );
    }

    // Settings reach the flags and objects they name.
    let set = [
        "replicaCount=3",
        "failurePolicy=Ignore",
        "timeoutSeconds=10",
        "exemptNamespaces={tools,monitoring}",
        "validationInterval=10m",
        "insecureRegistries={registry.internal:5000}",
        "logFormat=json",
        "auditLog.enabled=true",
        "extraArgs={--client-ca-file=/etc/binauthz/ca.crt}",
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.prometheusRule.enabled=true",
        "podDisruptionBudget.enabled=false",
        "networkPolicy.enabled=false",
    ];
    let rendered = objects(&ok("helm template (settings)", template(&set)));
    let deployment = &rendered["Deployment/binauthz"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "run",
            "--failure-policy=ignore",
            "--timeout-seconds=10",
            "--exempt-namespaces=tools,monitoring",
            "--validation-interval=10m",
            "--insecure-registry=registry.internal:5000",
            "--log-format=json",
            "--audit-log=/var/log/binauthz/audit.jsonl",
            "--client-ca-file=/etc/binauthz/ca.crt",
        ]
    );
    // Every flag the chart passes is one `binauthz run` takes.
    let out = Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(flag), "binauthz run has no {flag}");
    }
    assert!(rendered.contains_key("ServiceMonitor/binauthz"));
    assert!(!rendered.contains_key("PodDisruptionBudget/binauthz"));
    assert!(!rendered.contains_key("NetworkPolicy/binauthz"));
    // The PrometheusRule is config/monitoring's.
    let rule: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            support::cluster::repo_root().join("config/monitoring/prometheus-rule.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rendered["PrometheusRule/binauthz"]["spec"], rule["spec"]);

    // A misspelt or out-of-range value fails at install, naming it.
    for (set, needle) in [
        ("replicaCount=0", "replicaCount"),
        ("failurPolicy=Fail", "failurPolicy"),
        ("logFormat=xml", "logFormat"),
    ] {
        let out = template(&[set]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{set} was accepted");
        assert!(err.contains(needle), "{set}: {err}");
    }
}

#[test]
fn the_chart_installs_upgrades_and_uninstalls_on_a_real_api_server() {
    support::operator::install_crds();
    let namespace = cluster::unique_name("helm");
    let release = cluster::unique_name("binauthz");
    let cluster_names = cluster::unique_name("binauthz-helm");
    let chart = chart();
    let names = [
        format!("clusterRoleName={cluster_names}"),
        format!("webhookConfigurationName={cluster_names}"),
    ];
    let install = |verb: &str, extra: &[&str]| {
        let mut args = vec![
            verb,
            release.as_str(),
            chart.to_str().unwrap(),
            "--namespace",
            namespace.as_str(),
            "--wait=false",
        ];
        if verb == "install" {
            args.push("--create-namespace");
        }
        for n in &names {
            args.extend(["--set", n]);
        }
        for e in extra {
            args.extend(["--set", e]);
        }
        helm(&args)
    };
    let out = ok("helm install", install("install", &[]));
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("rollout status deployment/binauthz"),
        "NOTES.txt: {out}"
    );
    let deployment = |jsonpath: &str| {
        String::from_utf8_lossy(
            &kubectl([
                "get",
                "deployment",
                "binauthz",
                "-n",
                &namespace,
                "-o",
                &format!("jsonpath={jsonpath}"),
            ])
            .stdout,
        )
        .into_owned()
    };
    assert_eq!(deployment("{.spec.replicas}"), "2");
    let role = kubectl(["get", "clusterrole", &cluster_names, "-o", "json"]);
    let role: Value = serde_json::from_slice(&role.stdout).unwrap();
    assert!(
        role["rules"].to_string().contains(&cluster_names),
        "the webhook configuration rule names it: {role}"
    );

    ok(
        "helm upgrade",
        install("upgrade", &["replicaCount=3", "auditLog.enabled=true"]),
    );
    assert_eq!(deployment("{.spec.replicas}"), "3");
    let args = deployment("{.spec.template.spec.containers[0].args}");
    assert!(args.contains("--audit-log="), "{args}");

    ok(
        "helm uninstall",
        helm(&[
            "uninstall",
            &release,
            "--namespace",
            &namespace,
            "--wait=false",
        ]),
    );
    for kind in [
        "deployment",
        "service",
        "serviceaccount",
        "role",
        "rolebinding",
    ] {
        let out = kubectl([
            "get",
            kind,
            "-n",
            &namespace,
            "-l",
            "app.kubernetes.io/name=binauthz",
            "-o",
            "name",
        ]);
        assert!(
            out.stdout.trim_ascii().is_empty(),
            "{kind} left after uninstall: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = kubectl([
        "get",
        "clusterrole",
        &cluster_names,
        "--ignore-not-found",
        "-o",
        "name",
    ]);
    assert!(
        out.stdout.trim_ascii().is_empty(),
        "the ClusterRole is left"
    );
    let _ = kubectl(["delete", "namespace", &namespace, "--wait=false"]);
}
