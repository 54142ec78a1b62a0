//! Admission load benchmark (issue 6): the real webhook (`webhook::router` served by
//! `webhook::server::serve_tls`) over a trust index of 100k verified attestations, against a
//! floor server (bare hyper + rustls that only parses the body as JSON and answers a fixed
//! AdmissionReview), both on loopback TLS, driven by a keep-alive HTTP/1.1 load generator.
//!
//! Each server runs on its own one-thread tokio runtime; its CPU time is read per thread from
//! /proc/self/task/<tid>/schedstat, so CPU per request is server-side only. The load generator
//! has its own one-thread runtime (the machine this was written on has 2 cores).
//!
//! `make bench-admission` (release). Environment: `BENCH_SECS` (per phase, default 10),
//! `BENCH_CONNECTIONS` (default 16), `BENCH_RATE` (default 2000), `BENCH_ATTESTATIONS`
//! (default 100000). Prints figures only; nothing is asserted on time.

// A benchmark: a failed setup step should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use binauthz::crd::{
    AttestationPolicySpec, AttestorPublicKey, AttestorSpec, ImageAttestationSpec, PkixPublicKey,
    Signature,
};
use binauthz::crypto::SignatureAlgorithm;
use binauthz::events::EventSink;
use binauthz::metrics::Metrics;
use binauthz::trust::TrustState;
use binauthz::webhook::{self, Webhook};
use http_body_util::BodyExt as _;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[path = "../../tests/support/attack.rs"]
mod attack;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn digest(n: usize) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(format!("bench-image-{n}").as_bytes()))
}

fn image(n: usize) -> String {
    format!(
        "registry.example/bench/app-{}@sha256:{}",
        n % 100,
        digest(n)
    )
}

/// A warm index: one attestor, one policy requiring it, `count` verified attestations.
fn build_index(count: usize) -> Arc<binauthz::trust::Index> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public_pem = pair.public_key_pem();
    let private_pem = pair.serialize_pem();
    let id = binauthz::crypto::pkix::PkixPublicKey::from_pem(
        &public_pem,
        SignatureAlgorithm::EcdsaP256Sha256,
        None,
    )
    .unwrap()
    .id()
    .to_owned();
    let metrics = Arc::new(Metrics::default());
    let mut state = TrustState::new(metrics);
    let policy: AttestationPolicySpec = serde_json::from_value(json!({
        "defaultAdmissionRule": {
            "evaluationMode": "REQUIRE_ATTESTATION",
            "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
            "requireAttestationsBy": ["build"]
        }
    }))
    .unwrap();
    state.reset_policies(vec![("main".into(), Ok(policy))]);
    state.reset_namespaces(vec![(
        "default".into(),
        BTreeMap::from([("kubernetes.io/metadata.name".into(), "default".into())]),
    )]);
    let attestor = AttestorSpec {
        description: None,
        public_keys: vec![AttestorPublicKey {
            pkix_public_key: Some(PkixPublicKey {
                public_key_pem: public_pem,
                signature_algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            }),
            ..AttestorPublicKey::default()
        }],
        registry_signatures: None,
    };
    let start = Instant::now();
    let mut jobs = state.reset_attestors(vec![("build".into(), attestor)]);
    let attestations = (0..count)
        .map(|n| {
            let url = image(n);
            let payload = binauthz::payload::create(&url).unwrap();
            let signature = binauthz::crypto::pkix::sign(
                &private_pem,
                SignatureAlgorithm::EcdsaP256Sha256,
                &payload,
                false,
            )
            .unwrap();
            (
                format!("default/att-{n}"),
                ImageAttestationSpec {
                    artifact_url: url,
                    attestor: "build".into(),
                    serialized_payload: Some(STANDARD.encode(&payload)),
                    signatures: vec![Signature {
                        public_key_id: id.clone(),
                        signature: STANDARD.encode(signature),
                    }],
                },
            )
        })
        .collect();
    let signed = start.elapsed();
    jobs.extend(state.reset_attestations(attestations));
    let now = jiff::Timestamp::now();
    let start = Instant::now();
    for job in jobs {
        let outcome = job.run(now);
        state.complete(&job, outcome);
    }
    let index = state.index().clone();
    assert!(index.is_ready(), "the bench index is not ready");
    assert_eq!(
        index.trust_entries(),
        count,
        "not every attestation verified"
    );
    println!(
        "index: {count} attestations signed in {:.1} s, verified and indexed in {:.1} s",
        signed.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    index
}

/// A Pod CREATE review shaped like one from a Deployment (labels, owner, managed fields,
/// probes, env, volumes), with `images` as containers, padded with env vars to `size` bytes.
fn review(images: &[String], size: usize) -> Vec<u8> {
    let container = |i: usize, image: &str| {
        json!({
            "name": format!("app-{i}"),
            "image": image,
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "volumeMounts": [{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
        })
    };
    let mut review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5c2f7c2e-8a57-4a8e-9d55-0d2b7e0e1f00",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "2a9e8f2c-1f0e-4d0a-9a43-55c6c3a7e0b1", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": "web-7d9f8b6c5d-",
                    "namespace": "default",
                    "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d", "app.kubernetes.io/part-of": "shop"},
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d", "uid": "0b0f4a1e-3c7d-4e59-8f0a-9d1c2b3a4e5f", "controller": true, "blockOwnerDeletion": true}],
                    "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {".": {}}}}}]
                },
                "spec": {
                    "containers": images.iter().enumerate().map(|(i, image)| container(i, image)).collect::<Vec<_>>(),
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "serviceAccountName": "default",
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "schedulerName": "default-scheduler",
                    "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}, {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                    "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}, {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}], "defaultMode": 420}}],
                    "enableServiceLinks": true,
                    "preemptionPolicy": "PreemptLowerPriority",
                    "priority": 0
                },
                "status": {}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    let mut n = 0;
    while serde_json::to_vec(&review).unwrap().len() < size {
        review["request"]["object"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": format!("FEATURE_FLAG_{n}"), "value": "enabled"}));
        n += 1;
    }
    serde_json::to_vec(&review).unwrap()
}

/// A CA and a serving certificate for 127.0.0.1, issued by binauthz's own `tls` module:
/// (CA DER, server configuration).
fn tls() -> (
    rustls::pki_types::CertificateDer<'static>,
    Vec<u8>,
    rustls::ServerConfig,
) {
    use rustls::pki_types::pem::PemObject as _;
    let names = std::collections::BTreeSet::from(["127.0.0.1".to_owned()]);
    let material = binauthz::tls::execute(
        &binauthz::tls::Plan::NewAll,
        None,
        &names,
        jiff::Timestamp::now(),
    )
    .unwrap()
    .unwrap();
    let store = binauthz::tls::CertStore::new();
    store.load(&material).unwrap();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(material.ca_bundle_pem.as_bytes())
        .unwrap();
    (
        ca,
        material.ca_bundle_pem.as_bytes().to_vec(),
        binauthz::webhook::server::server_config(store.resolver(), None).unwrap(),
    )
}

/// A server on a runtime of its own, whose threads are named `name`.
struct Server {
    name: &'static str,
    port: u16,
    /// binauthz's metrics (the floor has none).
    metrics: Option<Arc<Metrics>>,
    _runtime: tokio::runtime::Runtime,
}

fn runtime(name: &'static str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn start_ours(index: Arc<binauthz::trust::Index>, tls: Arc<rustls::ServerConfig>) -> Server {
    let name = "srv-binauthz";
    let runtime = runtime(name);
    let metrics = Arc::new(Metrics::default());
    let router = webhook::router(Arc::new(Webhook::new(
        index,
        metrics.clone(),
        EventSink::disabled(metrics.clone()),
    )));
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(webhook::server::serve_tls(
        listener,
        tls,
        router,
        std::future::pending(),
    ));
    Server {
        name,
        port,
        metrics: Some(metrics),
        _runtime: runtime,
    }
}

const FIXED: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"5c2f7c2e-8a57-4a8e-9d55-0d2b7e0e1f00","allowed":true}}"#;

/// The floor: hyper HTTP/1.1 over rustls; parse the body as JSON, answer a fixed review.
fn start_floor(tls: Arc<rustls::ServerConfig>) -> Server {
    let name = "srv-floor";
    let runtime = runtime(name);
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |request: hyper::Request<hyper::body::Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        let status = if serde_json::from_slice::<Value>(&body).is_ok() {
                            200
                        } else {
                            400
                        };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(Bytes::from_static(FIXED)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        name,
        port,
        metrics: None,
        _runtime: runtime,
    }
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Attackers in a process of their own (so that their buffers do not count as the server's
/// memory): `ATTACKERS` clients holding 3 MiB bodies against 127.0.0.1:`port`, until killed.
fn attack_process(port: u16, ca_pem: &std::path::Path) {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let runtime = runtime("attack");
    runtime.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|_| {
                tokio::spawn(attack::hold_huge_bodies(
                    addr,
                    tls.clone(),
                    stop.clone(),
                    sent.clone(),
                ))
            })
            .collect();
        for attacker in attackers {
            let _ = attacker.await;
        }
    });
}

/// Slow clients in the attack row.
const ATTACKERS: usize = 300;

struct UnderAttack {
    latency: Latency,
    before: u64,
    peak: u64,
    refused: u64,
}

/// The legitimate load of a phase: `rate` reviews/s of `body` over `connections`, `secs` long.
struct Load<'a> {
    body: &'a [u8],
    connections: usize,
    rate: f64,
    secs: f64,
}

/// Legitimate reviews at a fixed rate against binauthz while [`ATTACKERS`] clients hold 3 MiB
/// bodies.
fn under_attack(
    client: &tokio::runtime::Runtime,
    server: &Server,
    connector: &tokio_rustls::TlsConnector,
    ca_pem: &[u8],
    load: &Load<'_>,
) -> UnderAttack {
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca_pem).unwrap();
    let before = resident_bytes();
    let mut attackers = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--bench", "--attack", &server.port.to_string()])
        .arg(ca_file.path())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let the attack reach its strength before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let latency = client.block_on(fixed_rate(
        server,
        connector,
        load.body,
        load.connections,
        load.rate,
        load.secs,
    ));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let _ = attackers.kill();
    let _ = attackers.wait();
    let refused = server
        .metrics
        .as_ref()
        .map_or(0, |m| m.requests_refused("busy"));
    UnderAttack {
        latency,
        before,
        peak: peak.load(Ordering::Relaxed),
        refused,
    }
}

/// CPU time of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> Duration {
    let mut total = Duration::ZERO;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        // schedstat: nanoseconds on CPU first; stat (clock ticks) when schedstat is absent.
        if let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            total += Duration::from_nanos(ns);
        } else if let Ok(stat) = std::fs::read_to_string(path.join("stat")) {
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            let ticks: u64 = fields
                .get(11..13)
                .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
            total += Duration::from_millis(ticks * 10);
        }
    }
    total
}

/// Established TCP connections owned by this process (its sockets, by inode, from
/// /proc/self/fd) that involve none of `ports`: an outbound connection would show up here.
fn other_connections(ports: &[u16]) -> usize {
    let ours: std::collections::BTreeSet<String> = std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut count = 0;
    for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = |f: Option<&&str>| {
                f.and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let (Some(local), Some(remote)) = (port(fields.get(1)), port(fields.get(2))) else {
                continue;
            };
            let mine = fields.get(9).is_some_and(|inode| ours.contains(*inode));
            if mine
                && fields.get(3) == Some(&"01")
                && !ports.contains(&local)
                && !ports.contains(&remote)
            {
                count += 1;
            }
        }
    }
    count
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn connect(port: u16, connector: &tokio_rustls::TlsConnector) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// One request on a keep-alive connection: (status, body).
async fn exchange(stream: &mut Tls, request: &[u8], buf: &mut Vec<u8>) -> (u16, Vec<u8>) {
    stream.write_all(request).await.unwrap();
    buf.clear();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])
                .unwrap()
                .to_ascii_lowercase();
            let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("the servers answer with a Content-Length");
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-response");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (status, buf[end + 4..end + 4 + length].to_vec());
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn request(port: u16, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /validate?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, */*\r\nUser-Agent: kube-apiserver-admission\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

struct Throughput {
    requests: u64,
    per_second: f64,
    cpu_per_request_us: f64,
}

/// As many requests as `connections` keep-alive connections carry in `secs`.
async fn max_throughput(
    server: &Server,
    connector: &tokio_rustls::TlsConnector,
    body: &[u8],
    connections: usize,
    secs: f64,
) -> Throughput {
    let request = Arc::new(request(server.port, body));
    let mut streams = Vec::new();
    for _ in 0..connections {
        let mut stream = connect(server.port, connector).await;
        let (status, answer) = exchange(&mut stream, &request, &mut Vec::new()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        streams.push(stream);
    }
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = thread_cpu(server.name);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let request = request.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let (status, _) = exchange(&mut stream, &request, &mut buf).await;
                    assert_eq!(status, 200);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = thread_cpu(server.name) - cpu_before;
    let requests = done.load(Ordering::Relaxed);
    Throughput {
        requests,
        per_second: requests as f64 / elapsed,
        cpu_per_request_us: cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
    }
}

struct Latency {
    sent: usize,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

/// `rate` requests/s spread over `connections`, for `secs`; latency from each request's
/// scheduled time (a late send counts as latency, no coordinated omission).
async fn fixed_rate(
    server: &Server,
    connector: &tokio_rustls::TlsConnector,
    body: &[u8],
    connections: usize,
    rate: f64,
    secs: f64,
) -> Latency {
    let request = Arc::new(request(server.port, body));
    let period = Duration::from_secs_f64(connections as f64 / rate);
    let per_connection = (secs * rate / connections as f64) as usize;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut stream = connect(server.port, connector).await;
        let request = request.clone();
        let first = start + period.mul_f64(c as f64 / connections as f64);
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            let mut latencies = Vec::with_capacity(per_connection);
            for i in 0..per_connection {
                let scheduled = first + period * i as u32;
                tokio::time::sleep_until(scheduled).await;
                let (status, _) = exchange(&mut stream, &request, &mut buf).await;
                assert_eq!(status, 200);
                latencies.push(scheduled.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Latency {
        sent: all.len(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: *all.last().unwrap(),
    }
}

fn main() {
    // `cargo test --all-targets` builds and runs bench targets without `--bench`: build only.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        eprintln!(
            "a benchmark: run it with `make bench-admission` (cargo bench --bench admission)"
        );
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--attack") {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        attack_process(
            args[at + 1].parse().unwrap(),
            std::path::Path::new(&args[at + 2]),
        );
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // BENCH_QUICK=1 checks the bench itself: 1 s phases.
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let secs: f64 = env_or("BENCH_SECS", if quick { 1.0 } else { 10.0 });
    let connections: usize = env_or("BENCH_CONNECTIONS", 16);
    let rate: f64 = env_or("BENCH_RATE", 2000.0);
    let count: usize = env_or("BENCH_ATTESTATIONS", 100_000);

    let index = build_index(count);
    let (ca, ca_pem, server_tls) = tls();
    let server_tls = Arc::new(server_tls);
    let ours = start_ours(index, server_tls.clone());
    let floor = start_floor(server_tls);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut client_tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls));
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("loadgen")
        .enable_all()
        .build()
        .unwrap();

    let small = review(&[image(4242 % count)], 3 * 1024);
    let large = review(
        &[
            image(1 % count),
            image(50_000 % count),
            image(99_999 % count),
        ],
        16 * 1024,
    );
    let bodies = [("3 KiB", &small), ("16 KiB", &large)];
    let servers = [&ours, &floor];
    // BENCH_ONLY=serve keeps both servers up for any load generator (the 3 KiB review in
    // target/bench/review-3k.json); BENCH_ONLY=external runs only the external generator.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only == "serve" {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("review-3k.json"), &small).unwrap();
        std::fs::write(dir.join("review-16k.json"), &large).unwrap();
        println!(
            "serving: https://127.0.0.1:{}/validate ({}), https://127.0.0.1:{}/validate ({}); reviews in {}",
            ours.port,
            ours.name,
            floor.port,
            floor.name,
            dir.display()
        );
        loop {
            std::thread::park();
        }
    }
    if only == "external" {
        let external = external_latency(&ours, &floor, &small, &ca_pem, connections);
        println!("{external:?}");
        return;
    }
    let before = other_connections(&[ours.port, floor.port]);

    println!(
        "\nmax throughput: {connections} keep-alive TLS connections, {secs} s; fixed rate: {rate} reviews/s, {secs} s"
    );
    println!(
        "{:<13} {:>6} {:>9} {:>10} {:>12} | {:>7} {:>8} {:>8} {:>9} {:>8}",
        "server",
        "body",
        "requests",
        "req/s",
        "cpu_us/req",
        "sent",
        "p50_us",
        "p99_us",
        "p99.9_us",
        "max_us"
    );
    let mut cpu = BTreeMap::new();
    let mut p99_small_ours = 0;
    for (label, body) in bodies {
        for server in servers {
            let throughput =
                client.block_on(max_throughput(server, &connector, body, connections, secs));
            let latency = client.block_on(fixed_rate(
                server,
                &connector,
                body,
                connections,
                rate,
                secs,
            ));
            println!(
                "{:<13} {:>6} {:>9} {:>10.0} {:>12.1} | {:>7} {:>8} {:>8} {:>9} {:>8}",
                server.name,
                label,
                throughput.requests,
                throughput.per_second,
                throughput.cpu_per_request_us,
                latency.sent,
                latency.p50,
                latency.p99,
                latency.p999,
                latency.max
            );
            cpu.insert((label, server.name), throughput.cpu_per_request_us);
            if label == "3 KiB" && server.name == ours.name {
                p99_small_ours = latency.p99;
            }
        }
    }
    let after = other_connections(&[ours.port, floor.port]);
    let ratio = |label| cpu[&(label, ours.name)] / cpu[&(label, floor.name)];
    println!(
        "\nCPU per request, binauthz / floor: {:.2} (3 KiB), {:.2} (16 KiB)",
        ratio("3 KiB"),
        ratio("16 KiB")
    );
    println!(
        "connections not to or from the two servers: {before} before, {after} after (the admission path opens none)"
    );
    println!("request bodies: {} and {} bytes", small.len(), large.len());
    // Latency as the field measures it: an external open-loop generator with latency
    // correction, on a core of its own.
    let external = external_latency(&ours, &floor, &small, &ca_pem, connections);
    let attacked = under_attack(
        &client,
        &ours,
        &connector,
        &ca_pem,
        &Load {
            body: &small,
            connections,
            rate,
            secs,
        },
    );
    println!(
        "\nunder attack: {ATTACKERS} clients each holding a 3 MiB body one byte short, while {rate} legitimate 3 KiB reviews/s run"
    );
    println!(
        "{:<13} {:>7} {:>8} {:>8} {:>9} {:>8} | {:>14} {:>12} {:>13}",
        "server",
        "sent",
        "p50_us",
        "p99_us",
        "p99.9_us",
        "max_us",
        "resident_MiB",
        "peak_MiB",
        "refused_busy"
    );
    println!(
        "{:<13} {:>7} {:>8} {:>8} {:>9} {:>8} | {:>14} {:>12} {:>13}",
        ours.name,
        attacked.latency.sent,
        attacked.latency.p50,
        attacked.latency.p99,
        attacked.latency.p999,
        attacked.latency.max,
        attacked.before >> 20,
        attacked.peak >> 20,
        attacked.refused
    );
    println!(
        "attack_p99_us={} attack_growth_mib={}",
        attacked.latency.p99,
        attacked.peak.saturating_sub(attacked.before) >> 20
    );
    let (p99_us, floor_p99_us) = match &external {
        Some((ours_p99, floor_p99)) => (*ours_p99, Some(*floor_p99)),
        None => (p99_small_ours, None),
    };
    println!(
        "admission_cpu_ratio={:.2} p99_us={p99_us} floor_p99_us={} cpu_ratio_16k={:.2}",
        ratio("3 KiB"),
        floor_p99_us.map_or_else(|| "n/a".to_owned(), |f| f.to_string()),
        ratio("16 KiB")
    );
}

/// oha, built by `make bench-admission` at a pinned version.
fn oha() -> Option<std::path::PathBuf> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/oha-1.16.0/bin/oha");
    path.is_file().then_some(path)
}

/// oha's first second is left out: it opens its connections lazily (TLS set-up included),
/// and requests paced meanwhile wait for them, which says nothing about the server (wrk2
/// leaves out a calibration period the same way).
const WARM_UP_S: f64 = 1.0;

/// What oha measured at one rate, after the warm-up.
struct Measured {
    achieved: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    /// Requests answered with another status than 200.
    failed: usize,
}

/// One oha run on CPU 1: `secs` seconds measured after the warm-up, open loop at `rate`,
/// latency from the time each request was due (`--latency-correction`), the server's
/// certificate verified against `ca`.
fn oha_run(
    oha: &std::path::Path,
    port: u16,
    files: &(tempfile::NamedTempFile, tempfile::NamedTempFile),
    rate: u32,
    connections: usize,
    secs: f64,
) -> Measured {
    let (body, ca) = files;
    let out = std::process::Command::new("taskset")
        .args(["-c", "1"])
        .arg(oha)
        .args(["--no-tui", "--output-format", "csv", "--latency-correction"])
        .args(["--worker-threads", "1", "-c", &connections.to_string()])
        .args([
            "-z",
            &format!("{}s", secs + WARM_UP_S),
            "-q",
            &rate.to_string(),
        ])
        .args(["-m", "POST", "-H", "Content-Type: application/json"])
        .arg("-D")
        .arg(body.path())
        .arg("--cacert")
        .arg(ca.path())
        .arg(format!("https://127.0.0.1:{port}/validate"))
        .output()
        .expect("run oha");
    assert!(
        out.status.success(),
        "oha: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // request-start,DNS,DNS+dialup,Response-delay,request-duration,bytes,status; one line per
    // successful request, `request-duration` measured from when the request was due.
    let csv = String::from_utf8(out.stdout).expect("oha CSV is UTF-8");
    let mut latencies = Vec::new();
    let mut not_ok = 0;
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(start), Some(duration), Some(status)) = (
            fields.first().and_then(|f| f.parse::<f64>().ok()),
            fields.get(4).and_then(|f| f.parse::<f64>().ok()),
            fields.get(6),
        ) else {
            panic!("unexpected oha CSV line: {line}");
        };
        if start < WARM_UP_S {
            continue;
        }
        if *status != "200" {
            not_ok += 1;
        }
        latencies.push((duration * 1e6) as u64);
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(u64::MAX)
    };
    Measured {
        achieved: latencies.len() as f64 / secs,
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        failed: not_ok,
    }
}

/// Both servers driven by oha, taking turns at each rate: 500, 1,000 and 2,000 reviews/s,
/// then higher until a server's p99 passes 1 ms. Returns each server's p99 at 2,000/s.
fn external_latency(
    ours: &Server,
    floor: &Server,
    body: &[u8],
    ca_pem: &[u8],
    connections: usize,
) -> Option<(u64, u64)> {
    // BENCH_EXTERNAL_SECS and BENCH_EXTERNAL_RUNS: each run's length, runs per rate
    // (BENCH_QUICK: one run of 1 s).
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let secs: f64 = env_or("BENCH_EXTERNAL_SECS", if quick { 1.0 } else { 5.0 });
    let repeats: usize = env_or("BENCH_EXTERNAL_RUNS", if quick { 1 } else { 3 }).max(1);
    let Some(oha) = oha() else {
        println!("\n(oha not built: `make bench-admission` builds it; external latency skipped)");
        return None;
    };
    let files = (
        tempfile::NamedTempFile::new().unwrap(),
        tempfile::NamedTempFile::new().unwrap(),
    );
    std::fs::write(files.0.path(), body).unwrap();
    std::fs::write(files.1.path(), ca_pem).unwrap();
    // The servers (every thread of this process) on CPU 0, oha on CPU 1; every CPU again
    // afterwards.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = |list: &str| {
        std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", list, &std::process::id().to_string()])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let pinned = cpus >= 2 && pin("0");
    println!(
        "\nexternal load: oha 1.16.0, open loop, latency from when each request was due (--latency-correction), {connections} keep-alive TLS connections, 3 KiB reviews, {repeats} runs of {secs} s per server and rate, each after a {WARM_UP_S} s warm-up; {}",
        if pinned {
            "servers pinned to CPU 0, oha (one worker thread) to CPU 1"
        } else {
            "NOT pinned (taskset failed)"
        }
    );
    println!(
        "{:<13} {:>7} {:>9} {:>8} {:>8} {:>9} {:>7}   p99_us of each run",
        "server", "rate/s", "achieved", "p50_us", "p99_us", "p99.9_us", "failed"
    );
    let servers = [ours, floor];
    let mut at_2k = [u64::MAX; 2];
    // The highest rate with p99 under 1 ms at it and at every lower rate.
    let mut highest = [0u32; 2];
    let mut all_good = [true; 2];
    let mut done = [false; 2];
    for &rate in RATES {
        // Runs alternate between the servers, so both see the same machine; each figure is
        // the median of the runs.
        let mut runs: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..repeats {
            for (i, server) in servers.into_iter().enumerate() {
                if !done[i] {
                    runs[i].push(oha_run(&oha, server.port, &files, rate, connections, secs));
                }
            }
        }
        for (i, server) in servers.into_iter().enumerate() {
            if done[i] {
                continue;
            }
            let median = |f: fn(&Measured) -> u64| {
                let mut v: Vec<u64> = runs[i].iter().map(f).collect();
                v.sort_unstable();
                v[v.len() / 2]
            };
            let (p50, p99, p999) = (median(|m| m.p50), median(|m| m.p99), median(|m| m.p999));
            let achieved = runs[i].iter().map(|m| m.achieved).sum::<f64>() / runs[i].len() as f64;
            let failed: usize = runs[i].iter().map(|m| m.failed).sum();
            let spread = runs[i]
                .iter()
                .map(|m| m.p99.to_string())
                .collect::<Vec<_>>();
            println!(
                "{:<13} {:>7} {:>9.0} {:>8} {:>8} {:>9} {:>7}   {}",
                server.name,
                rate,
                achieved,
                p50,
                p99,
                p999,
                failed,
                spread.join(" ")
            );
            if rate == 2000 {
                at_2k[i] = p99;
            }
            let good = p99 < 1000 && failed == 0 && achieved >= 0.95 * f64::from(rate);
            all_good[i] &= good;
            if all_good[i] {
                highest[i] = rate;
            }
            done[i] = rate >= 2000 && !good;
        }
        if done.iter().all(|d| *d) {
            break;
        }
    }
    if pinned {
        pin(&format!("0-{}", cpus - 1));
    }
    println!(
        "highest rate with p99 under 1 ms (every lower rate too): {} {}/s, {} {}/s",
        ours.name, highest[0], floor.name, highest[1]
    );
    Some((at_2k[0], at_2k[1]))
}

/// The rates the external generator tries, in order.
const RATES: &[u32] = &[
    500, 1000, 2000, 3000, 4000, 6000, 8000, 12_000, 16_000, 24_000,
];
