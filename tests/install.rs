//! The install manifests under `config/` render with kustomize and are accepted by a real
//! apiserver (server-side dry run), so `kubectl apply -k config/default` works on a cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::cluster::{kubectl, kubectl_stdin};

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn config_default_applies_on_a_real_apiserver() {
    let root = support::cluster::repo_root();
    let rendered = kubectl(["kustomize", root.join("config/default").to_str().unwrap()]);
    assert!(
        rendered.status.success(),
        "kustomize failed: {}",
        text(&rendered)
    );
    let yaml = String::from_utf8(rendered.stdout).unwrap();
    for kind in [
        "kind: CustomResourceDefinition",
        "kind: Namespace",
        "kind: ServiceAccount",
        "kind: ClusterRole",
        "kind: ClusterRoleBinding",
        "kind: Role",
        "kind: RoleBinding",
        "kind: Deployment",
        "kind: Service",
        "kind: PodDisruptionBudget",
        "kind: NetworkPolicy",
    ] {
        assert!(
            yaml.contains(&format!("\n{kind}\n")) || yaml.starts_with(kind),
            "config/default lacks {kind}"
        );
    }
    assert!(yaml.contains("readOnlyRootFilesystem: true") && yaml.contains("runAsNonRoot: true"));
    assert!(yaml.contains("replicas: 2") && yaml.contains("podAntiAffinity"));

    // Namespaced objects need their namespace to exist for a server-side dry run.
    let ns = kubectl([
        "apply",
        "-f",
        root.join("config/manager/namespace.yaml").to_str().unwrap(),
    ]);
    assert!(ns.status.success(), "{}", text(&ns));
    let applied = kubectl_stdin(["apply", "--dry-run=server", "-f", "-"], &yaml);
    assert!(
        applied.status.success(),
        "the apiserver refused config/default: {}",
        text(&applied)
    );
    let out = text(&applied);
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/attestors.binauthz.dev",
        "deployment.apps/binauthz",
        "service/binauthz",
        "poddisruptionbudget.policy/binauthz",
        "networkpolicy.networking.k8s.io/binauthz",
        "clusterrole.rbac.authorization.k8s.io/binauthz",
    ] {
        assert!(out.contains(object), "{object} missing from: {out}");
    }
    assert!(out.contains("(server dry run)"), "{out}");
}

#[test]
fn examples_apply_to_a_real_apiserver() {
    let root = support::cluster::repo_root();
    let path = |p: &str| root.join(p).to_str().unwrap().to_owned();
    let crds = kubectl([
        "apply",
        "-f",
        &path("crds/attestors.yaml"),
        "-f",
        &path("crds/attestationpolicies.yaml"),
        "-f",
        &path("crds/imageattestations.yaml"),
    ]);
    assert!(crds.status.success(), "{}", text(&crds));
    let established = kubectl([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/attestors.binauthz.dev",
        "crd/attestationpolicies.binauthz.dev",
        "crd/imageattestations.binauthz.dev",
    ]);
    assert!(established.status.success(), "{}", text(&established));
    // Namespaces for real (namespaced objects need them), everything else by server-side dry run,
    // so the example policies never govern other tests' namespaces.
    let namespaces = kubectl(["apply", "-f", &path("examples/workloads/namespaces.yaml")]);
    assert!(namespaces.status.success(), "{}", text(&namespaces));
    // `policies/` without `policies/gke/`, which holds a gcloud export, not a Kubernetes object.
    let applied = kubectl([
        "apply",
        "--dry-run=server",
        "-f",
        &path("examples/attestors"),
        "-f",
        &path("examples/policies"),
        "-f",
        &path("examples/attestations"),
        "-f",
        &path("examples/workloads"),
    ]);
    let out = text(&applied);
    assert!(
        applied.status.success(),
        "the apiserver refused an example: {out}"
    );
    for object in [
        "attestor.binauthz.dev/build",
        "attestor.binauthz.dev/qa",
        "attestationpolicy.binauthz.dev/",
        "imageattestation.binauthz.dev/",
        "deployment.apps/",
        "cronjob.batch/",
    ] {
        assert!(out.contains(object), "{object} missing from: {out}");
    }
}
