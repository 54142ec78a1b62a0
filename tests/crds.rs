//! The committed `crds/` must be exactly what the Rust types generate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use binauthz::crd;

/// Files of a folder, sorted, without `kustomization.yaml`.
fn yaml_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    names.sort();
    names
}

#[test]
fn committed_crds_match_the_rust_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // crds/ is the output of `binauthz crds`; config/crd/ is the same files as a kustomize base,
    // and the Helm chart's crds/ the same for Helm.
    for (folder, command) in [
        ("crds", "cargo run -- crds --out crds"),
        ("config/crd", "cargo run -- crds --out config/crd"),
        (
            "config/helm/binauthz/crds",
            "cargo run -- crds --out config/helm/binauthz/crds",
        ),
    ] {
        let dir = root.join(folder);
        let mut expected_files = Vec::new();
        for definition in crd::all() {
            let name = crd::file_name(&definition);
            let want = crd::to_yaml(&definition).unwrap();
            let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
            assert!(
                have == want,
                "{folder}/{name} is out of date with the Rust types; regenerate with: {command}"
            );
            expected_files.push(name);
        }
        expected_files.sort();
        assert_eq!(
            yaml_files(&dir),
            expected_files,
            "{folder}/ holds files the Rust types do not generate"
        );
    }
    let kustomization =
        std::fs::read_to_string(root.join("config/crd/kustomization.yaml")).unwrap();
    for name in yaml_files(&root.join("crds")) {
        assert!(
            kustomization.contains(&format!("- {name}")),
            "config/crd/kustomization.yaml must list {name}"
        );
    }
    assert!(
        !root.join("crds/kustomization.yaml").exists(),
        "crds/ holds only the generated CRDs"
    );
}

#[test]
fn crds_are_structural_and_named_as_documented() {
    let names: Vec<String> = crd::all()
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "attestors.binauthz.dev",
            "attestationpolicies.binauthz.dev",
            "imageattestations.binauthz.dev"
        ]
    );
    let attestation = crd::all().remove(2);
    let short = attestation.spec.names.short_names.clone().unwrap();
    assert!(
        short.contains(&"attestations".to_owned()),
        "kubectl get attestations must work"
    );
    assert_eq!(attestation.spec.scope, "Namespaced");
    let yaml = crd::all_yaml().unwrap();
    assert!(
        yaml.contains("x-kubernetes-list-type: map"),
        "conditions must be a list-map"
    );
    assert!(yaml.contains("has(self.asciiArmoredPgpPublicKey) != has(self.pkixPublicKey)"));
}
