//! Registry signatures end to end, with the real tools: images pushed with crane to a real
//! registry, signed with `cosign sign --key` (v2 and v3, no transparency log), an Attestor that
//! names the repository, `binauthz run` on the test control plane, and pods the API server sends
//! to its webhook over TLS. Signed images are admitted, unsigned, wrongly signed and
//! signed-for-another-digest ones are denied; an image signed after the sync is admitted within
//! seconds through the lookup its denial starts; a deleted signature stops admitting after the
//! next sync; with the registry stopped, synced images keep being admitted and the Attestor says
//! why the sync fails; a registry with authentication is read with the pull Secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::{self, kubectl, kubectl_stdin};
use support::oci::{CosignKey, Registry, crane};
use support::operator::{install_crds, namespace_policy};
use support::process::{Binauthz, eventually};

const NOT_ATTESTED: &str =
    "No attestations found that were valid and signed by a key trusted by the attestor";

/// Deletes what a test created in the shared control plane, also when it fails.
struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let _ = kubectl(args.iter().map(String::as_str));
        }
    }
}

fn cleanup(attestor: &str, namespaces: &[&String]) -> Cleanup {
    let mut commands = vec![vec![
        "delete".to_owned(),
        "attestor".to_owned(),
        attestor.to_owned(),
        "--ignore-not-found".to_owned(),
    ]];
    for ns in namespaces {
        commands.push(vec![
            "delete".to_owned(),
            "namespace".to_owned(),
            (*ns).clone(),
            "--wait=false".to_owned(),
        ]);
    }
    Cleanup(commands)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn attestor(name: &str, key: &CosignKey, repositories: &[String], extra: Value) -> String {
    let mut registry = json!({"repositories": repositories});
    if let (Some(registry), Some(extra)) = (registry.as_object_mut(), extra.as_object()) {
        registry.extend(extra.clone());
    }
    json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "Attestor",
        "metadata": {"name": name},
        "spec": {
            "publicKeys": [{"pkixPublicKey": {"signatureAlgorithm": "ECDSA_P256_SHA256", "publicKeyPem": key.public_pem()}}],
            "registrySignatures": registry,
        },
    })
    .to_string()
}

fn apply(manifest: &str) {
    let out = kubectl_stdin(["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Create a pod running `image` in `namespace`; Ok, or the API server's refusal.
fn create_pod(namespace: &str, name: &str, image: &str) -> Result<(), String> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": image}]},
    });
    let out = kubectl_stdin(["create", "-f", "-"], &pod.to_string());
    if out.status.success() {
        let _ = kubectl(["delete", "pod", "-n", namespace, name, "--wait=false"]);
        Ok(())
    } else {
        Err(text(&out.stderr))
    }
}

fn attestor_status(name: &str) -> Value {
    let out = kubectl(["get", "attestor", name, "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"].clone()
}

/// The registry ImageAttestations binauthz wrote for `attestor`, by digest, with their reason.
fn synced(namespace: &str, attestor: &str) -> Vec<(String, String)> {
    let out = kubectl([
        "get",
        "imageattestations",
        "-n",
        namespace,
        "-l",
        &format!("binauthz.dev/source=registry,binauthz.dev/attestor={attestor}"),
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let url = a["spec"]["artifactUrl"].as_str().unwrap_or_default();
            let digest = url.rsplit('@').next().unwrap_or_default().to_owned();
            let reason = a["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Verified"))
                .map(|c| c["reason"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (digest, reason)
        })
        .collect()
}

#[test]
fn cosign_signatures_in_the_registry_are_enforced_from_memory() {
    let mut registry = Registry::crane();
    let repository = format!("{}/team/app", registry.host);
    let key = CosignKey::new();
    let stranger = CosignKey::new();
    let image = |digest: &str| format!("{repository}@{digest}");
    let v2 = registry.push("team/app", "v2", "signed by cosign v2");
    let v3 = registry.push("team/app", "v3", "signed by cosign v3");
    let unsigned = registry.push("team/app", "unsigned", "never signed");
    let forged = registry.push("team/app", "forged", "signed by another key");
    let copied = registry.push("team/app", "copied", "carries another image's signature");
    let later = registry.push("team/app", "later", "signed after the sync");
    key.sign_v2(&registry, &image(&v2));
    key.sign_v3(&registry, &image(&v3));
    stranger.sign_v2(&registry, &image(&forged));
    // The signature image of v2, tagged as if it were `copied`'s: it signs v2's digest.
    let signature_manifest = text(
        &registry
            .run(
                &crane(),
                &["digest", &format!("{repository}:sha256-{}.sig", &v2[7..])],
            )
            .stdout,
    );
    let out = registry.run(
        &crane(),
        &[
            "tag",
            &format!("{repository}@{}", signature_manifest.trim()),
            &format!("sha256-{}.sig", &copied[7..]),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The CLI reads the same signatures, as GitOps CI would.
    let work = tempfile::tempdir().unwrap();
    let attestor_name = cluster::unique_name("cosign");
    let attestor_yaml = attestor(
        &attestor_name,
        &key,
        std::slice::from_ref(&repository),
        json!({"interval": "1h"}),
    );
    let attestor_file = work.path().join("attestor.json");
    std::fs::write(&attestor_file, &attestor_yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args([
            "verify",
            "--fetch-signatures",
            "-f",
            attestor_file.to_str().unwrap(),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    let verdict = |digest: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["artifactUrl"].as_str().unwrap().ends_with(digest))
            .map(|r| {
                (
                    r["verdict"].as_str().unwrap().to_owned(),
                    r["reason"].as_str().unwrap_or("").to_owned(),
                )
            })
    };
    assert_eq!(
        verdict(&v2),
        Some(("VERIFIED".into(), String::new())),
        "{report}"
    );
    assert_eq!(
        verdict(&v3),
        Some(("VERIFIED".into(), String::new())),
        "{report}"
    );
    assert_eq!(
        verdict(&forged),
        Some(("FAILED".into(), "BadSignature".into())),
        "{report}"
    );
    assert_eq!(
        verdict(&copied),
        Some(("FAILED".into(), "DigestMismatch".into())),
        "{report}"
    );
    assert_eq!(verdict(&unsigned), None);
    assert_eq!(out.status.code(), Some(1), "some signatures fail");

    // The cluster: a namespace whose policy requires the attestor.
    install_crds();
    let system = cluster::unique_name("binauthz");
    let apps = cluster::unique_name("apps");
    let _cleanup = cleanup(&attestor_name, &[&apps, &system]);
    for ns in [&system, &apps] {
        let out = kubectl(["create", "namespace", ns]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    apply(&attestor_yaml);
    apply(&namespace_policy(
        &cluster::unique_name("cosign-policy"),
        &apps,
        &attestor_name,
        "ENFORCED_BLOCK_AND_AUDIT_LOG",
    ));
    let binauthz = Binauthz::start(&system, &[]);
    binauthz.wait_for_configuration();

    let started = Instant::now();
    eventually("the signed images to be admitted", || {
        create_pod(&apps, &cluster::unique_name("v2"), &image(&v2))?;
        create_pod(&apps, &cluster::unique_name("v3"), &image(&v3))
    });
    println!(
        "signed images admitted {:?} after binauthz was ready",
        started.elapsed()
    );
    for (what, digest) in [
        ("unsigned", &unsigned),
        ("forged", &forged),
        ("copied", &copied),
    ] {
        let err = create_pod(&apps, &cluster::unique_name(what), &image(digest)).unwrap_err();
        assert!(err.contains(NOT_ATTESTED), "{what}: {err}");
    }
    // What the sync wrote, and why the others do not verify.
    let written = eventually("the synced ImageAttestations to have a status", || {
        let written = synced(&system, &attestor_name);
        (written.len() == 4 && written.iter().all(|(_, r)| !r.is_empty()))
            .then_some(written.clone())
            .ok_or(format!("{written:?}"))
    });
    let reason = |digest: &str| {
        written
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, r)| r.as_str())
    };
    assert_eq!(reason(&v2), Some("Verified"), "{written:?}");
    assert_eq!(reason(&v3), Some("Verified"), "{written:?}");
    assert_eq!(reason(&forged), Some("BadSignature"), "{written:?}");
    assert_eq!(reason(&copied), Some("DigestMismatch"), "{written:?}");
    let status = attestor_status(&attestor_name);
    assert_eq!(status["registry"]["signatures"], 4, "{status}");
    let condition = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RegistrySynced")
        .cloned()
        .unwrap_or_default();
    assert_eq!(condition["status"], "True", "{status}");

    // Signed after the sync (the next is an hour away): the denial starts a lookup, and the
    // ReplicaSet's next try (here: ours) is admitted within seconds.
    key.sign_v2(&registry, &image(&later));
    let signed_at = Instant::now();
    let err = create_pod(&apps, &cluster::unique_name("later"), &image(&later)).unwrap_err();
    assert!(
        err.contains("binauthz is fetching this image's signatures from"),
        "{err}"
    );
    eventually("the freshly signed image to be admitted", || {
        create_pod(&apps, &cluster::unique_name("later"), &image(&later))
    });
    let took = signed_at.elapsed();
    println!("an image signed after the sync was admitted {took:?} after its signing");
    assert!(took < Duration::from_secs(30), "{took:?}");

    // A signature deleted from the registry stops admitting after the next sync (a changed
    // interval syncs at once).
    let out = registry.run(
        &crane(),
        &["delete", &format!("{repository}:sha256-{}.sig", &v2[7..])],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    apply(&attestor(
        &attestor_name,
        &key,
        std::slice::from_ref(&repository),
        json!({"interval": "10s"}),
    ));
    eventually(
        "the deleted signature to stop admitting",
        || match create_pod(&apps, &cluster::unique_name("v2"), &image(&v2)) {
            Err(e) if e.contains(NOT_ATTESTED) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(
        synced(&system, &attestor_name)
            .iter()
            .all(|(d, _)| d != &v2)
    );

    // The registry stops: what was synced keeps admitting, and the Attestor says why.
    registry.stop();
    eventually("the Attestor to report the failing registry", || {
        let status = attestor_status(&attestor_name);
        let failing = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "RegistrySynced"
                    && c["status"] == "False"
                    && c["reason"] == "SyncFailed"
            });
        failing.then_some(()).ok_or(status.to_string())
    });
    let status = attestor_status(&attestor_name);
    let error = status["registry"]["repositories"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains(&registry.host), "{status}");
    create_pod(&apps, &cluster::unique_name("v3"), &image(&v3)).unwrap();
    create_pod(&apps, &cluster::unique_name("later"), &image(&later)).unwrap();

    // Metrics say what was read.
    let (_, metrics) = support::operator::admin_get(binauthz.admin, "/metrics");
    assert!(
        metrics.contains(&format!(
            "binauthz_registry_requests_total{{registry=\"{}\",outcome=\"ok\"}}",
            registry.host
        )),
        "{metrics}"
    );
    let found: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("binauthz_registry_lookups_total{outcome=\"found\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        found >= 1,
        "the lookup of the freshly signed image: {metrics}"
    );
}

#[test]
fn a_private_registry_is_read_with_the_pull_secret() {
    let registry = Registry::with_password("ci", "s3cret");
    let repository = format!("{}/private/app", registry.host);
    let key = CosignKey::new();
    let digest = registry.push("private/app", "v1", "private");
    let image = format!("{repository}@{digest}");
    key.sign_v3(&registry, &image);

    install_crds();
    let system = cluster::unique_name("binauthz");
    let apps = cluster::unique_name("apps");
    for ns in [&system, &apps] {
        let out = kubectl(["create", "namespace", ns]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let name = cluster::unique_name("private");
    let _cleanup = cleanup(&name, &[&apps, &system]);
    apply(&attestor(
        &name,
        &key,
        std::slice::from_ref(&repository),
        json!({"interval": "10s", "pullSecret": {"name": "regcred"}}),
    ));
    apply(&namespace_policy(
        &cluster::unique_name("private-policy"),
        &apps,
        &name,
        "ENFORCED_BLOCK_AND_AUDIT_LOG",
    ));
    let binauthz = Binauthz::start(&system, &[]);
    binauthz.wait_for_configuration();

    // No Secret yet: the sync says so, and the image is denied.
    eventually("the Attestor to say the pull Secret is missing", || {
        let status = attestor_status(&name);
        status
            .to_string()
            .contains("pull Secret")
            .then_some(())
            .ok_or(status.to_string())
    });
    let err = create_pod(&apps, &cluster::unique_name("p"), &image).unwrap_err();
    assert!(err.contains(NOT_ATTESTED), "{err}");

    // A wrong password: the registry's refusal is named.
    let secret = |password: &str| {
        let out = kubectl([
            "create",
            "secret",
            "docker-registry",
            "regcred",
            "-n",
            &system,
            &format!("--docker-server={}", registry.host),
            "--docker-username=ci",
            &format!("--docker-password={password}"),
            "--dry-run=client",
            "-o",
            "json",
        ]);
        text(&out.stdout)
    };
    apply(&secret("wrong"));
    eventually("the Attestor to report the refused credentials", || {
        let status = attestor_status(&name);
        let error = status["registry"]["repositories"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (error.contains("HTTP 401") && error.contains("pull secret does not grant pull access"))
            .then_some(())
            .ok_or(status.to_string())
    });
    apply(&secret("s3cret"));
    eventually("the privately stored signature to admit the image", || {
        create_pod(&apps, &cluster::unique_name("p"), &image)
    });

    // The CLI reads it with a Docker config.
    let work = tempfile::tempdir().unwrap();
    let attestor_file = work.path().join("attestor.json");
    std::fs::write(
        &attestor_file,
        attestor(&name, &key, std::slice::from_ref(&repository), json!({})),
    )
    .unwrap();
    let config = registry.docker_config.path().join("config.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args([
            "verify",
            "--fetch-signatures",
            "--registry-config",
            config.to_str().unwrap(),
            "-f",
            attestor_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("VERIFIED default/"),
        "{}",
        text(&out.stdout)
    );
}
