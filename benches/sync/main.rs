//! `make bench-sync`: 1,000 signed images in one repository of a real registry (`crane registry
//! serve`), synced by a `binauthz run` replica (the release binary, as its ServiceAccount) on the
//! test control plane. Prints figures, asserts none.
//!
//! The images and their cosign v2 signatures (`sha256-<hex>.sig` images with the simple-signing
//! payload as the layer and the ECDSA P-256 signature in the annotation, as `cosign sign`
//! writes them; the tests check this format against real cosign) are pushed with oci-client
//! here, so the setup takes seconds. Measured from the Attestor's creation:
//! - **all admitted**: the replica's trust index holds every signature (`/metrics`);
//! - **requests** the replica made to the registry, and its resident memory then;
//! - **admission while syncing**: AdmissionReviews sent to the webhook during the sync and
//!   while idle, and the p99 of its decision time (`binauthz_admission_duration_seconds`).
//!
//! `SYNC_IMAGES=N` changes the number of images.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use support::cluster::{self, kubectl, kubectl_stdin};
use support::oci::Registry;
use support::operator::{admin_get, namespace_policy};
use support::process::{Binauthz, eventually};
use support::signer::Signer;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Push `manifest` (with its blobs) as `tag`; returns the manifest's digest.
async fn push(
    client: &Client,
    repo: &Reference,
    blobs: &[&[u8]],
    manifest: serde_json::Value,
    tag: &str,
) -> String {
    for blob in blobs {
        match client.push_blob(repo, blob.to_vec(), &sha(blob)).await {
            // crane's registry stores the blob but answers without a Location.
            Ok(_) | Err(oci_client::errors::OciDistributionError::RegistryNoLocationError) => {}
            Err(e) => panic!("push blob: {e}"),
        }
    }
    let body = serde_json::to_vec(&manifest).unwrap();
    let parsed: OciImageManifest = serde_json::from_value(manifest).unwrap();
    let reference = Reference::with_tag(
        repo.registry().to_owned(),
        repo.repository().to_owned(),
        tag.to_owned(),
    );
    client
        .push_manifest(&reference, &OciManifest::Image(parsed))
        .await
        .unwrap();
    sha(&body)
}

/// One image and its cosign v2 signature.
async fn signed_image(client: &Client, repo: &Reference, name: &str, signer: &Signer, i: usize) {
    let config = b"{}".as_slice();
    let layer = format!("image {i}").into_bytes();
    let image = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}],
    });
    // The digest of the manifest as pushed: oci-client serialises the typed manifest.
    let parsed: OciImageManifest = serde_json::from_value(image.clone()).unwrap();
    let digest = sha(&serde_json::to_vec(&parsed).unwrap());
    push(client, repo, &[config, &layer], image, &format!("v{i}")).await;
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{name}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes();
    let signature = binauthz::crypto::pkix::sign(
        &signer.private_pem,
        binauthz::crypto::SignatureAlgorithm::EcdsaP256Sha256,
        &payload,
        false,
    )
    .unwrap();
    let sig_manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": sha(&payload), "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": STANDARD.encode(&signature)},
        }],
    });
    push(
        client,
        repo,
        &[config, &payload],
        sig_manifest,
        &format!("sha256-{}.sig", &digest[7..]),
    )
    .await;
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Cumulative counts of the admission duration histogram, by bucket bound.
fn buckets(metrics: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("binauthz_admission_duration_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (bound, rest) = l.split_once("\"}")?;
            Some((bound.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

/// p99 (a bucket's upper bound) of the requests between two histogram readings.
fn p99(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> (String, f64) {
    let mut bounds: Vec<(f64, f64)> = after
        .iter()
        .map(|(b, n)| {
            (
                b.parse().unwrap_or(f64::INFINITY),
                n - before.get(b).copied().unwrap_or(0.0),
            )
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last().map_or(0.0, |b| b.1);
    let bound = bounds
        .iter()
        .find(|(_, n)| *n >= total * 0.99)
        .map_or(f64::INFINITY, |b| b.0);
    (
        if bound.is_finite() {
            format!("≤ {:.0} µs", bound * 1e6)
        } else {
            "> 100 ms".into()
        },
        total,
    )
}

/// Send AdmissionReviews for `image` to the webhook until `stop`.
fn reviews(
    webhook: std::net::SocketAddr,
    ca: std::path::PathBuf,
    namespace: String,
    image: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let review = json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": format!("bench-{sent}"), "operation": "CREATE", "namespace": namespace,
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
                        "spec": {"containers": [{"name": "a", "image": image}]}},
                    "dryRun": true},
            });
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "--cacert",
                    ca.to_str().unwrap(),
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &review.to_string(),
                    &format!("https://{webhook}/validate"),
                ])
                .output()
                .unwrap();
            assert!(out.status.success());
            sent += 1;
        }
        sent
    })
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("a benchmark: run it with `make bench-sync` (cargo bench --bench sync)");
        return;
    }
    let count: usize = std::env::var("SYNC_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    support::cluster::install_crypto_provider();
    let registry = Registry::crane();
    let name = format!("{}/bench/app", registry.host);
    let repo = Reference::with_tag(registry.host.clone(), "bench/app".into(), "latest".into());
    let signer = Signer::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![registry.host.clone()]),
            // crane's registry answers a monolithic upload (POST, then PUT).
            use_monolithic_push: true,
            ..ClientConfig::default()
        });
        client
            .store_auth_if_needed(&registry.host, &RegistryAuth::Anonymous)
            .await;
        futures::stream::iter(0..count)
            .for_each_concurrent(16, |i| {
                let (client, repo, name, signer) = (&client, &repo, &name, &signer);
                async move { signed_image(client, repo, name, signer, i).await }
            })
            .await;
    });
    eprintln!(
        "sync: {count} signed images pushed to {name} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    support::operator::install_crds();
    let system = cluster::unique_name("bench-sync");
    let apps = cluster::unique_name("bench-apps");
    for ns in [&system, &apps] {
        assert!(kubectl(["create", "namespace", ns]).status.success());
    }
    let attestor = cluster::unique_name("bench-cosign");
    let policy = cluster::unique_name("bench-cosign");
    let out = kubectl_stdin(
        ["apply", "-f", "-"],
        &namespace_policy(&policy, &apps, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG"),
    );
    assert!(out.status.success());
    let binauthz = Binauthz::start(&system, &[]);
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), binauthz.ca_pem()).unwrap();
    let admin = binauthz.admin;
    let entries = |metrics: &str| metric(metrics, "binauthz_trust_index_entries") as usize;
    let base_entries = entries(&admin_get(admin, "/metrics").1);
    let unsigned = format!("{name}@sha256:{}", "ab".repeat(32));

    // Idle: reviews with nothing syncing.
    let before = buckets(&admin_get(admin, "/metrics").1);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = reviews(
        binauthz.webhook,
        ca.path().to_owned(),
        apps.clone(),
        unsigned.clone(),
        stop.clone(),
    );
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let idle_sent = sender.join().unwrap();
    let idle = p99(&before, &buckets(&admin_get(admin, "/metrics").1));

    // The Attestor: the sync starts.
    let spec = json!({
        "apiVersion": "binauthz.dev/v1alpha1", "kind": "Attestor", "metadata": {"name": attestor},
        "spec": {"publicKeys": [{"pkixPublicKey": {"signatureAlgorithm": "ECDSA_P256_SHA256", "publicKeyPem": signer.public_pem}}],
                 "registrySignatures": {"repositories": [name], "interval": "1h"}},
    });
    let before = buckets(&admin_get(admin, "/metrics").1);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = reviews(
        binauthz.webhook,
        ca.path().to_owned(),
        apps.clone(),
        unsigned,
        stop.clone(),
    );
    let started = Instant::now();
    assert!(
        kubectl_stdin(["apply", "-f", "-"], &spec.to_string())
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    let synced_at = loop {
        let metrics = admin_get(admin, "/metrics").1;
        if entries(&metrics) >= base_entries + count {
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "not synced within 600 s: {}",
            binauthz.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    let sync_sent = sender.join().unwrap();
    let metrics = admin_get(admin, "/metrics").1;
    let during = p99(&before, &buckets(&metrics));
    let requests = metric(
        &metrics,
        &format!(
            "binauthz_registry_requests_total{{registry=\"{}\"",
            registry.host
        ),
    );
    let rss = binauthz.resident_bytes();
    eventually("the Attestor status", || {
        let out = kubectl([
            "get",
            "attestor",
            &attestor,
            "-o",
            "jsonpath={.status.registry.signatures}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == count.to_string())
            .then_some(())
            .ok_or(String::from_utf8_lossy(&out.stdout).into_owned())
    });

    let _ = kubectl(["delete", "attestor", &attestor]);
    let _ = kubectl(["delete", "attestationpolicy", &policy]);
    for ns in [&apps, &system] {
        let _ = kubectl(["delete", "namespace", ns, "--wait=false"]);
    }
    println!(
        "Registry signatures: {count} cosign-signed images in one repository of crane registry serve, one binauthz replica (release build)"
    );
    println!(
        "  all admitted (trust index holds every signature): {:.1} s after the Attestor was created",
        synced_at.as_secs_f64()
    );
    println!(
        "  registry requests: {requests:.0} ({:.2} per image); resident memory then: {:.1} MiB",
        requests / count as f64,
        rss as f64 / 1048576.0
    );
    println!(
        "  admission p99 while idle: {} ({} reviews); while syncing: {} ({} reviews)",
        idle.0, idle_sent, during.0, sync_sent
    );
    println!(
        "sync_1k_s={:.1} sync_requests_per_image={:.2}",
        synced_at.as_secs_f64(),
        requests / count as f64
    );
}
