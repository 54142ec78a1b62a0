//! The committed `crds/` must be exactly what the Rust types generate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use binauthz::crd;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected_files = Vec::new();
    for definition in crd::all() {
        let name = crd::file_name(&definition);
        let want = crd::to_yaml(&definition).unwrap();
        let have = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            have == want,
            "crds/{name} is out of date with the Rust types; regenerate with: cargo run -- crds --out crds"
        );
        expected_files.push(name);
    }
    // kustomization.yaml makes crds/ a kustomize base (config/default uses it); it must list
    // exactly the generated files.
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    for name in &expected_files {
        assert!(
            kustomization.contains(&format!("- {name}")),
            "crds/kustomization.yaml must list {name}"
        );
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds files the Rust types do not generate"
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
