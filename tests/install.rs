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
        "clusterrole.rbac.authorization.k8s.io/binauthz",
    ] {
        assert!(out.contains(object), "{object} missing from: {out}");
    }
    assert!(out.contains("(server dry run)"), "{out}");
}
