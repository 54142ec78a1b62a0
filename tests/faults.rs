//! Faults on the real control plane (issue 6): the API server (and its etcd) restarted while
//! pods are admitted, an undecodable object in a watch, and the leader killed with SIGKILL.
//!
//! These tests stop and restart the API server, so they run a control plane of their own
//! (state in `target/faults-cluster`, ports 26443/22379/22380) and never disturb the shared one
//! other test binaries use. The tests of this file take turns (one lock), as the restart would
//! disturb the others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::cluster::{repo_root, unique_name};
use support::operator::{admin_get, free_port, namespace_policy};
use support::plane::Plane;
use support::signer::Signer;

/// This file's own control plane, with its own state dir and ports.
const PLANE: Plane = Plane {
    state_dir: "target/faults-cluster",
    apiserver_port: "26443",
    etcd_port: "22379",
    etcd_peer_port: "22380",
};
const NOT_ATTESTED: &str =
    "No attestations found that were valid and signed by a key trusted by the attestor";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One test at a time: the restart test stops the control plane the others use.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Retry `check` until it returns `Ok`, for at most `limit`.
fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {limit:?} waiting for {what}: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// A fresh image by digest (never signed unless a test signs it).
fn image() -> String {
    let digest = sha2_hex(unique_name("image").as_bytes());
    format!("registry.example/faults/app@sha256:{digest}")
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `binauthz run` out of cluster with the admin kubeconfig of this file's control plane.
struct Binauthz {
    child: Child,
    identity: String,
    configuration: String,
    webhook_port: u16,
    admin: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Binauthz {
    /// Start a replica in `namespace` (the Lease's), registering `configuration`; with
    /// `wait_ready`, return once `/readyz` answers 200.
    fn start(namespace: &str, identity: &str, configuration: &str, wait_ready: bool) -> Self {
        let webhook_port = free_port();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let url = format!("https://127.0.0.1:{webhook_port}/validate");
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(assert_cmd::cargo::cargo_bin("binauthz"))
            .args([
                "run",
                "--kubeconfig",
                PLANE.kubeconfig().to_str().unwrap(),
                "--namespace",
                namespace,
                "--identity",
                identity,
                "--webhook-url",
                &url,
                "--webhook-port",
                &webhook_port.to_string(),
                "--admin-port",
                &admin.port().to_string(),
                "--webhook-configuration",
                configuration,
                // This control plane is ours alone: fail closed, so that any admission error
                // shows up as a refused pod.
                "--failure-policy",
                "fail",
            ])
            .env("RUST_LOG", "binauthz=info")
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let binauthz = Self {
            child,
            identity: identity.to_owned(),
            configuration: configuration.to_owned(),
            webhook_port,
            admin,
            log,
        };
        if wait_ready {
            binauthz.wait_ready();
        }
        binauthz
    }

    fn wait_ready(&self) {
        eventually(
            &format!("{} to be ready", self.identity),
            MINUTE,
            || match admin_get(self.admin, "/readyz") {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}\n{}", self.log())),
            },
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The CA that signed the serving certificate, from the generated configuration.
    fn ca_pem(&self) -> Vec<u8> {
        let bundle = eventually("the generated webhook configuration", MINUTE, || {
            let out = PLANE.kubectl(&[
                "get",
                "validatingwebhookconfiguration",
                &self.configuration,
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ]);
            let bundle = text(&out.stdout);
            (out.status.success() && !bundle.is_empty())
                .then_some(bundle)
                .ok_or_else(|| text(&out.stderr))
        });
        STANDARD.decode(bundle.trim()).unwrap()
    }

    /// POST an AdmissionReview to this replica's `/validate` over TLS, trusting `ca_pem`:
    /// (HTTP status, body).
    fn post_review(&self, ca_pem: &[u8], review: &Value) -> (u16, Value) {
        post_review(self.webhook_port, ca_pem, review)
    }

    /// SIGKILL: no chance to release the Lease or clean up.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Binauthz {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- binauthz {} log ---\n{}", self.identity, self.log());
        }
    }
}

/// Removes a webhook configuration on drop, so that a failed test leaves no fail-closed
/// webhook pointing at a dead server (this control plane is reused by the next run).
struct Configuration(String);

impl Drop for Configuration {
    fn drop(&mut self) {
        let _ = PLANE.kubectl(&[
            "delete",
            "validatingwebhookconfiguration",
            &self.0,
            "--ignore-not-found",
        ]);
    }
}

fn post_review(port: u16, ca_pem: &[u8], review: &Value) -> (u16, Value) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let body = review.to_string();
    write!(
        tls,
        "POST /validate?timeout=5s HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify ends with UnexpectedEof; the bytes read count.
    let _ = tls.read_to_end(&mut response);
    let response = text(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// An AdmissionReview of a Pod CREATE in `namespace`, as the API server sends it.
fn pod_review(namespace: &str, image: &str) -> Value {
    let path = repo_root().join("tests/fixtures/pod_signed.json");
    let mut review: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    review["request"]["uid"] = json!(unique_name("uid"));
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    review["request"]["object"]["spec"]["containers"][0]["image"] = json!(image);
    review
}

/// `kubectl run --dry-run=server`: Ok on admission, Err(stderr) otherwise.
fn admit(namespace: &str, image: &str) -> Result<(), String> {
    let out = PLANE.kubectl(&[
        "run",
        &unique_name("pod"),
        "-n",
        namespace,
        "--image",
        image,
        "--dry-run=server",
    ]);
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| text(&out.stderr))
}

/// The status of the `Verified` condition of an attestation ("" while none).
fn verified(namespace: &str, name: &str) -> String {
    let out = PLANE.kubectl(&[
        "get",
        "imageattestation",
        name,
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Verified\")].status}",
    ]);
    text(&out.stdout)
}

/// Namespace, attestor and policy of one test, plus its signer.
struct Scene {
    namespace: String,
    system: String,
    attestor: String,
    policy: String,
    signer: Signer,
}

impl Scene {
    fn new(prefix: &str) -> Self {
        PLANE.up();
        PLANE.install_crds();
        let namespace = PLANE.namespace(prefix);
        let system = PLANE.namespace(&format!("{prefix}-system"));
        let attestor = unique_name("faults-ci");
        let policy = unique_name("faults-policy");
        let signer = Signer::new();
        PLANE.apply(&signer.attestor_json(&attestor));
        PLANE.apply(&namespace_policy(
            &policy,
            &namespace,
            &attestor,
            "ENFORCED_BLOCK_AND_AUDIT_LOG",
        ));
        Self {
            namespace,
            system,
            attestor,
            policy,
            signer,
        }
    }

    /// Publish a signed attestation for `image`; returns its name.
    fn attest(&self, image: &str) -> String {
        let name = unique_name("att");
        let attestation = self
            .signer
            .attestation(&self.namespace, &name, &self.attestor, image);
        PLANE.apply(&serde_json::to_string(&attestation).unwrap());
        name
    }

    fn denial(&self, image: &str) -> String {
        format!(
            "Image {image} denied by Binary Authorization default admission rule of policy {}. Image {image} denied by attestor {}: {NOT_ATTESTED}",
            self.policy, self.attestor
        )
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = PLANE.kubectl(&["delete", "attestationpolicy", &self.policy]);
        let _ = PLANE.kubectl(&["delete", "attestor", &self.attestor]);
    }
}

/// The API server and its etcd stop while `binauthz run` serves: the webhook keeps answering
/// from its index (signed allowed, unsigned denied); after the restart kubectl admissions
/// work again without an admission error, and the watches recovered (an attestation made
/// after the restart admits its image).
#[test]
fn the_webhook_rides_out_an_api_server_restart() {
    let _serial = serial();
    let scene = Scene::new("restart");
    let configuration = Configuration(unique_name("binauthz-restart"));
    let server = Binauthz::start(&scene.system, "restart-a", &configuration.0, true);
    let ca = server.ca_pem();

    let signed = image();
    let unsigned = image();
    scene.attest(&signed);
    eventually("the webhook to trust the attestation", MINUTE, || {
        admit(&scene.namespace, &signed)
    });
    let stderr = admit(&scene.namespace, &unsigned).unwrap_err();
    assert!(stderr.contains(&scene.denial(&unsigned)), "{stderr}");

    PLANE.down();
    let stopped = Instant::now();
    // Nothing answers on the API port any more.
    assert!(
        !PLANE
            .kubectl(&["get", "ns", "--request-timeout=2s"])
            .status
            .success()
    );
    // For a while (watches failing and retrying, the Lease not renewable), the webhook answers
    // from what it knows.
    let mut answered = 0;
    while stopped.elapsed() < Duration::from_secs(20) {
        let (code, body) = server.post_review(&ca, &pod_review(&scene.namespace, &signed));
        assert_eq!(code, 200, "signed pod while the API server is down: {body}");
        assert_eq!(body["response"]["allowed"], true, "{body}");
        let (code, body) = server.post_review(&ca, &pod_review(&scene.namespace, &unsigned));
        assert_eq!(
            code, 200,
            "unsigned pod while the API server is down: {body}"
        );
        assert_eq!(body["response"]["allowed"], false, "{body}");
        assert_eq!(
            body["response"]["status"]["message"],
            scene.denial(&unsigned),
            "{body}"
        );
        answered += 2;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        admin_get(server.admin, "/readyz").0,
        200,
        "readiness while the API server is down:\n{}",
        server.log()
    );
    println!("answered {answered} reviews from the index in 20 s without the API server");

    PLANE.up();
    let restarted = Instant::now();
    // Every admission after the restart is a decision, never a failed webhook call.
    let mut signed_ok = false;
    let mut unsigned_denied = false;
    while !(signed_ok && unsigned_denied) {
        assert!(
            restarted.elapsed() < MINUTE,
            "admissions did not recover within a minute"
        );
        match admit(&scene.namespace, &signed) {
            Ok(()) => signed_ok = true,
            Err(stderr) => assert!(
                !stderr.contains("webhook"),
                "signed pod after the restart: {stderr}"
            ),
        }
        match admit(&scene.namespace, &unsigned) {
            Ok(()) => panic!("unsigned image {unsigned} admitted after the restart"),
            Err(stderr) if stderr.contains(&scene.denial(&unsigned)) => unsigned_denied = true,
            Err(stderr) => assert!(
                !stderr.contains("webhook"),
                "unsigned pod after the restart: {stderr}"
            ),
        }
    }
    println!(
        "admissions correct {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );

    // The watches recovered: an attestation made now is seen, by the webhook and the controller.
    let fresh = image();
    let stderr = admit(&scene.namespace, &fresh).unwrap_err();
    assert!(stderr.contains(&scene.denial(&fresh)), "{stderr}");
    let name = scene.attest(&fresh);
    eventually(
        "the webhook to trust an attestation made after the restart",
        MINUTE,
        || admit(&scene.namespace, &fresh),
    );
    eventually("the new attestation to be Verified", MINUTE, || {
        let status = verified(&scene.namespace, &name);
        (status == "True").then_some(()).ok_or(status)
    });
    assert!(admit(&scene.namespace, &unsigned).is_err());
    drop(server);
}

/// The ImageAttestation schema, made permissive, lets in an object our type cannot decode;
/// with the real schema back, a valid attestation made afterwards is still Verified and
/// admits its image, and a replica started with the bad object present becomes ready.
#[test]
fn an_undecodable_object_does_not_stall_the_watches() {
    let _serial = serial();
    let scene = Scene::new("corrupt");
    let configuration = Configuration(unique_name("binauthz-corrupt"));
    let server = Binauthz::start(&scene.system, "corrupt-a", &configuration.0, true);

    // Swap in a schema that accepts anything.
    let mut crd: Value = serde_json::from_str(&PLANE.ok(&[
        "get",
        "crd",
        "imageattestations.binauthz.dev",
        "-o",
        "json",
    ]))
    .unwrap();
    for version in crd["spec"]["versions"].as_array_mut().unwrap() {
        version["schema"]["openAPIV3Schema"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    for field in ["resourceVersion", "uid", "generation", "managedFields"] {
        crd["metadata"].as_object_mut().unwrap().remove(field);
    }
    crd.as_object_mut().unwrap().remove("status");
    let out = PLANE.kubectl_stdin(&["replace", "-f", "-"], &crd.to_string());
    let restored = || PLANE.install_crds();
    if !out.status.success() {
        restored();
        panic!("replace the CRD: {}", text(&out.stderr));
    }
    let bad = unique_name("corrupt");
    let corrupt = json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "ImageAttestation",
        "metadata": {"name": bad, "namespace": scene.namespace},
        "spec": {"artifactUrl": image(), "attestor": scene.attestor, "signatures": "oops"},
    });
    eventually("the permissive schema to be served", MINUTE, || {
        let out = PLANE.kubectl_stdin(&["create", "-f", "-"], &corrupt.to_string());
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| text(&out.stderr))
    });
    restored();
    // The object is stored as it was written.
    let stored = PLANE.ok(&[
        "get",
        "imageattestation",
        &bad,
        "-n",
        &scene.namespace,
        "-o",
        "jsonpath={.spec.signatures}",
    ]);
    assert_eq!(stored, "oops");

    let signed = image();
    let name = scene.attest(&signed);
    eventually("the valid attestation to be Verified", MINUTE, || {
        let status = verified(&scene.namespace, &name);
        (status == "True").then_some(()).ok_or(status)
    });
    eventually("the webhook to trust the valid attestation", MINUTE, || {
        admit(&scene.namespace, &signed)
    });
    let unsigned = image();
    let stderr = admit(&scene.namespace, &unsigned).unwrap_err();
    assert!(stderr.contains(&scene.denial(&unsigned)), "{stderr}");
    assert!(
        admin_get(server.admin, "/readyz").0 == 200,
        "{}",
        server.log()
    );

    // A replica that starts with the bad object in its initial list becomes ready too.
    let standby = Binauthz::start(&scene.system, "corrupt-b", &configuration.0, true);
    let (code, body) =
        standby.post_review(&server.ca_pem(), &pod_review(&scene.namespace, &signed));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["response"]["allowed"], true, "{body}");

    let _ = PLANE.kubectl(&["delete", "imageattestation", &bad, "-n", &scene.namespace]);
    drop(standby);
    drop(server);
}

fn lease_holder(namespace: &str) -> String {
    text(
        &PLANE
            .kubectl(&[
                "get",
                "lease",
                "binauthz-leader",
                "-n",
                namespace,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])
            .stdout,
    )
}

/// Two replicas; the Lease holder is killed with SIGKILL (no release): the other takes over
/// the controller within the Lease time and writes the status of a new attestation.
#[test]
fn a_standby_takes_over_when_the_leader_is_killed() {
    let _serial = serial();
    let scene = Scene::new("kill");
    let configuration = Configuration(unique_name("binauthz-kill"));
    let mut leader = Binauthz::start(&scene.system, "kill-a", &configuration.0, true);
    eventually("kill-a to hold the Lease", MINUTE, || {
        let holder = lease_holder(&scene.system);
        (holder == "kill-a").then_some(()).ok_or(holder)
    });
    let standby = Binauthz::start(&scene.system, "kill-b", &configuration.0, true);
    // The leader works: an attestation is Verified.
    let first = scene.attest(&image());
    eventually("the first attestation to be Verified", MINUTE, || {
        let status = verified(&scene.namespace, &first);
        (status == "True").then_some(()).ok_or(status)
    });
    assert_eq!(lease_holder(&scene.system), "kill-a");

    leader.kill();
    let killed = Instant::now();
    let signed = image();
    let second = scene.attest(&signed);
    // Lease: 15 s without renewal; allow the standby's retry period on top.
    eventually(
        "the standby to verify an attestation made after the kill",
        Duration::from_secs(45),
        || {
            let status = verified(&scene.namespace, &second);
            (status == "True").then_some(()).ok_or(status)
        },
    );
    let takeover = killed.elapsed();
    assert_eq!(lease_holder(&scene.system), "kill-b");
    println!(
        "standby took over and verified a new attestation {:.1} s after SIGKILL of the leader",
        takeover.as_secs_f64()
    );
    assert!(
        takeover < Duration::from_secs(30),
        "took over after {takeover:?}"
    );
    // The standby served admissions all along, and still does.
    eventually("the standby to admit the new image", MINUTE, || {
        admit(&scene.namespace, &signed)
    });
    drop(standby);
}
