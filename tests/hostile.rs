//! Attacks on the running webhook, on the real control plane: clients that hold huge bodies
//! half sent, and callers that are not the API server.
//!
//! `binauthz run` runs as a process of its own (its memory is measured from /proc), the API
//! server calls its webhook over TLS, and an attacker on the same network opens connections
//! to the webhook port directly, as any pod could.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use support::attack::hold_huge_bodies;
use support::cluster::{self, kubectl, kubectl_at, kubectl_stdin};
use support::operator::{admin_get, install_crds, namespace_policy};
use support::plane::Plane;
use support::process::{Binauthz, eventually, resident_bytes};
use support::signer::Signer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TAG: &str = "Expected digest with sha256 scheme, but got tag or malformed digest";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A TLS client of the webhook trusting `ca_pem`, presenting `identity` (cert, key) if given.
fn connector(ca_pem: &[u8], identity: Option<(&str, &str)>) -> tokio_rustls::TlsConnector {
    cluster::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// 300 clients each holding a 3 MiB body one byte short, for as long as the attack runs,
/// against one replica: its memory stays bounded, and the API server's reviews keep being
/// answered (a denial proves the webhook answered: its failure policy is Ignore).
#[test]
fn held_huge_bodies_neither_exhaust_memory_nor_stop_reviews() {
    install_crds();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let apps = runtime.block_on(cluster::temp_namespace("hostile-apps"));
    let system = runtime.block_on(cluster::temp_namespace("hostile-system"));
    let server = Binauthz::start(&system, &[]);

    let signer = Signer::new();
    let attestor = cluster::unique_name("hostile-build");
    let out = kubectl_stdin(["apply", "-f", "-"], &signer.attestor_json(&attestor));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let policy = cluster::unique_name("hostile-policy");
    let out = kubectl_stdin(
        ["apply", "-f", "-"],
        &namespace_policy(&policy, &apps, &attestor, "ENFORCED_BLOCK_AND_AUDIT_LOG"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let signed = format!("registry.example/hostile/app@sha256:{}", "5".repeat(64));
    let attestation = signer.attestation(&apps, "signed", &attestor, &signed);
    let out = kubectl_stdin(
        ["apply", "-f", "-"],
        &serde_json::to_string(&attestation).unwrap(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_for_configuration();
    let run = |name: &str, image: &str| {
        kubectl([
            "run",
            name,
            "-n",
            &apps,
            "--image",
            image,
            "--dry-run=server",
        ])
    };
    eventually("the signed image to be admitted", || {
        let out = run("signed", &signed);
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| text(&out.stderr))
    });
    let baseline = server.resident_bytes();

    // The attack.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let tls = connector(&server.ca_pem(), None);
    let attackers: Vec<_> = (0..300)
        .map(|_| {
            runtime.spawn(hold_huge_bodies(
                server.webhook,
                tls.clone(),
                stop.clone(),
                sent.clone(),
            ))
        })
        .collect();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        let pid = server.pid();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Reviews through the API server while it runs: every one answered, correctly.
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(20) {
        let out = run("unsigned", "nginx");
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.contains(&format!("Image nginx denied by attestor {attestor}: {TAG}")),
            "a review was not answered during the attack: {stderr}"
        );
        let out = run("signed", &signed);
        assert!(
            out.status.success(),
            "a signed image was refused during the attack: {}",
            text(&out.stderr)
        );
        answered += 2;
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    for attacker in attackers {
        attacker.abort();
    }
    let peak = peak.load(Ordering::Relaxed);
    let (_, metrics) = admin_get(server.admin, "/metrics");
    let busy: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("binauthz_webhook_requests_refused_total{reason=\"busy\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    println!(
        "attack: {} MiB sent by 300 clients; {answered} reviews answered; resident {} MiB before, peak {} MiB; {busy} requests refused as busy",
        sent.load(Ordering::Relaxed) >> 20,
        baseline >> 20,
        peak >> 20
    );
    assert!(
        sent.load(Ordering::Relaxed) > 64 << 20,
        "the attack sent too little to mean anything"
    );
    assert!(
        peak < baseline + (160 << 20),
        "resident memory grew from {} MiB to {} MiB under the attack",
        baseline >> 20,
        peak >> 20
    );
    assert!(busy > 0, "no request was turned away:\n{metrics}");

    for (kind, name) in [("attestationpolicy", &policy), ("attestor", &attestor)] {
        let _ = kubectl(["delete", kind, name.as_str()]);
    }
    drop(server);
}

/// The API server presents a client certificate to webhooks (its AdmissionConfiguration);
/// `binauthz run --client-ca-file` then refuses every other caller during the TLS handshake, so
/// nobody else can make it publish Events, or use up its capacity.
#[test]
fn with_a_client_ca_only_the_api_server_gets_through() {
    let plane = Plane {
        state_dir: "target/client-auth-cluster",
        apiserver_port: "46443",
        etcd_port: "42379",
        etcd_peer_port: "42380",
    };
    // The certificate the API server presents, issued by a CA of its own.
    let state = plane.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    let (ca_pem, client_cert, client_key) = client_identity("kube-apiserver-webhook-client");
    let (_, stranger_cert, stranger_key) = client_identity("stranger");
    let write = |name: &str, content: &str| {
        let path = state.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let ca_file = write("webhook-client-ca.crt", &ca_pem);
    let cert_file = write("webhook-client.crt", &client_cert);
    let key_file = write("webhook-client.key", &client_key);
    let webhook_kubeconfig = write(
        "webhook-kubeconfig.yaml",
        &format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    client-certificate: {cert_file}\n    client-key: {key_file}\n"
        ),
    );
    let admission = write(
        "admission.yaml",
        &format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: ValidatingAdmissionWebhook\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {webhook_kubeconfig}\n"
        ),
    );
    plane.down();
    plane.up_with(&format!("--admission-control-config-file={admission}"));
    plane.install_crds();
    let kubeconfig = plane.kubeconfig();
    let apps = plane.namespace("apps");
    let system = plane.namespace("system");
    let server = Binauthz::start_at(&kubeconfig, &system, &["--client-ca-file", &ca_file]);
    let attestor = cluster::unique_name("build");
    plane.apply(&Signer::new().attestor_json(&attestor));
    plane.apply(&namespace_policy(
        "require-build",
        &apps,
        &attestor,
        "ENFORCED_BLOCK_AND_AUDIT_LOG",
    ));
    server.wait_for_configuration();

    // The API server gets through: an unsigned image is denied by the webhook.
    let stderr = eventually("the webhook to judge through the API server", || {
        let out = kubectl_at(
            &kubeconfig,
            ["run", "p", "-n", &apps, "--image=nginx", "--dry-run=server"],
            None,
        );
        let stderr = text(&out.stderr);
        stderr
            .contains("denied the request")
            .then(|| stderr.clone())
            .ok_or(stderr)
    });
    assert!(
        stderr.contains(&format!("Image nginx denied by attestor {attestor}: {TAG}")),
        "{stderr}"
    );

    // Anyone else is refused before a byte of HTTP is read: no review, no Event.
    let review = breakglass_review(&apps);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = server.ca_pem();
    let post = |identity: Option<(&str, &str)>| {
        runtime.block_on(post_review(
            server.webhook,
            connector(&ca, identity),
            &review,
        ))
    };
    let anonymous = post(None);
    assert!(anonymous.is_err(), "{anonymous:?}");
    let stranger = post(Some((&stranger_cert, &stranger_key)));
    assert!(stranger.is_err(), "{stranger:?}");
    // Holding the API server's certificate, the same review is answered.
    let apiserver = post(Some((&client_cert, &client_key))).unwrap();
    assert!(apiserver.starts_with("HTTP/1.1 200"), "{apiserver}");
    let breakglass_events = || {
        text(&kubectl_at(&kubeconfig, ["get", "events", "-n", &apps], None).stdout)
            .matches("BreakGlass")
            .count()
    };
    eventually("the BreakGlass Event of the authenticated review", || {
        (breakglass_events() > 0)
            .then_some(())
            .ok_or_else(|| "none yet".to_owned())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        breakglass_events(),
        1,
        "only the authenticated review made an Event"
    );
    drop(server);
    plane.down();
}

/// A CA and a client certificate it issued for `name`: (CA PEM, certificate PEM, key PEM).
fn client_identity(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.pem(), ca_key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// An AdmissionReview of a pod that breaks glass in `namespace` (it would make an Event).
fn breakglass_review(namespace: &str) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d9f0e6a-0000-4000-8000-00000000beef",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "forged",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "mallory"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "forged", "namespace": namespace,
                             "labels": {"image-policy.k8s.io/break-glass": "true"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            }
        }
    })
    .to_string()
}

/// POST `body` to the webhook over TLS; the raw response, or why there is none.
async fn post_review(
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    body: &str,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST /validate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    if response.is_empty() {
        return Err("no response".to_owned());
    }
    Ok(text(&response))
}
