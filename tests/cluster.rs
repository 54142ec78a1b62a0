//! Smoke tests of the test control plane itself: kube client, kubectl, RBAC via impersonation,
//! CRD validation with CEL, and an admission webhook called over TLS on 127.0.0.1.

// Helpers outside #[test] fns panic on failed setup too: that is a test failure.
#![allow(clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use support::cluster::{self, kubectl, kubectl_stdin};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[tokio::test]
async fn kube_client_lists_namespaces() {
    let namespaces = Api::<Namespace>::all(cluster::client().await)
        .list(&ListParams::default())
        .await
        .expect("list namespaces");
    let names: Vec<_> = namespaces
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for expected in ["default", "kube-system", "kube-public"] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
}

#[tokio::test]
async fn server_reports_the_pinned_kubernetes_version() {
    let info = cluster::client()
        .await
        .apiserver_version()
        .await
        .expect("GET /version");
    assert_eq!(
        (info.major.as_str(), info.minor.as_str()),
        ("1", "34"),
        "{info:?}"
    );
    assert!(info.git_version.starts_with("v1.34."), "{info:?}");
}

#[test]
fn kubectl_creates_a_namespace() {
    let name = cluster::unique_name("smoke-kubectl");
    assert_ok(
        "kubectl create namespace",
        &kubectl(["create", "namespace", &name]),
    );
    let out = kubectl(["get", "namespace", &name, "-o", "jsonpath={.status.phase}"]);
    assert_ok("kubectl get namespace", &out);
    assert_eq!(text(&out.stdout), "Active");
}

#[tokio::test]
async fn rbac_denies_a_service_account_until_it_is_bound() {
    let ns = cluster::temp_namespace("smoke-rbac").await;
    assert_ok(
        "create sa",
        &kubectl(["-n", &ns, "create", "serviceaccount", "bob"]),
    );
    let bob = format!("--as=system:serviceaccount:{ns}:bob");

    let admin = kubectl(["auth", "can-i", "*", "*", "--all-namespaces"]);
    assert_eq!(
        text(&admin.stdout).trim(),
        "yes",
        "admin must be system:masters"
    );

    let can_i = kubectl(["-n", &ns, "auth", "can-i", "list", "pods", &bob]);
    assert_eq!(text(&can_i.stdout).trim(), "no", "{}", text(&can_i.stderr));
    let get = kubectl(["-n", &ns, "get", "pods", &bob]);
    assert!(!get.status.success(), "unbound service account listed pods");
    assert!(
        text(&get.stderr).contains("is forbidden"),
        "{}",
        text(&get.stderr)
    );

    // RBAC, not a blanket deny: a binding grants exactly what it says.
    assert_ok(
        "create role",
        &kubectl([
            "-n",
            &ns,
            "create",
            "role",
            "pod-reader",
            "--verb=list",
            "--resource=pods",
        ]),
    );
    let sa = format!("--serviceaccount={ns}:bob");
    assert_ok(
        "create rolebinding",
        &kubectl([
            "-n",
            &ns,
            "create",
            "rolebinding",
            "bob-reads",
            "--role=pod-reader",
            &sa,
        ]),
    );
    let can_list = kubectl(["-n", &ns, "auth", "can-i", "list", "pods", &bob]);
    assert_eq!(
        text(&can_list.stdout).trim(),
        "yes",
        "{}",
        text(&can_list.stderr)
    );
    let can_delete = kubectl(["-n", &ns, "auth", "can-i", "delete", "pods", &bob]);
    assert_eq!(text(&can_delete.stdout).trim(), "no");
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.binauthz.dev
spec:
  group: smoke.binauthz.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [replicas, maxReplicas]
              properties:
                replicas: {type: integer}
                maxReplicas: {type: integer}
              x-kubernetes-validations:
                - rule: self.replicas <= self.maxReplicas
                  message: replicas must not exceed maxReplicas
"#;

fn widget(ns: &str, name: &str, replicas: u32, max: u32) -> String {
    format!(
        "apiVersion: smoke.binauthz.dev/v1\nkind: Widget\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{replicas: {replicas}, maxReplicas: {max}}}\n"
    )
}

#[tokio::test]
async fn crd_cel_rule_rejects_an_invalid_object() {
    assert_ok(
        "apply CRD",
        &kubectl_stdin(["apply", "-f", "-"], WIDGET_CRD),
    );
    assert_ok(
        "wait for CRD",
        &kubectl([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/widgets.smoke.binauthz.dev",
        ]),
    );
    let ns = cluster::temp_namespace("smoke-cel").await;

    // kubectl's discovery can lag behind Established for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl_stdin(["create", "-f", "-"], &widget(&ns, "good", 1, 3));
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "valid widget refused: {}",
            text(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let out = kubectl_stdin(["create", "-f", "-"], &widget(&ns, "bad", 5, 3));
    assert!(!out.status.success(), "invalid widget accepted");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("replicas must not exceed maxReplicas"),
        "{stderr}"
    );
    assert!(stderr.contains("is invalid"), "{stderr}");
}

/// Makes a CA and a serving certificate for IP:127.0.0.1 with the openssl CLI.
fn webhook_certificates(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .expect("write leaf.ext");
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    for args in [
        format!(
            "req -x509 {ec} -keyout ca.key -out ca.crt -days 1 -subj /CN=smoke-webhook-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ),
        format!("req {ec} -keyout tls.key -out tls.csr -subj /CN=127.0.0.1"),
        "x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
         -extfile leaf.ext -out tls.crt"
            .to_owned(),
    ] {
        let out = std::process::Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert_ok(&format!("openssl {args}"), &out);
    }
    let read = |name: &str| std::fs::read(dir.join(name)).expect("read generated PEM");
    (read("ca.crt"), read("tls.crt"), read("tls.key"))
}

/// Answers AdmissionReviews: denies objects named `deny-*`, allows the rest, counts calls.
async fn review(
    request: Request<Incoming>,
    calls: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    calls.fetch_add(1, Ordering::SeqCst);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = &review["request"];
    let name = request["name"].as_str().unwrap_or_default();
    let response = if name.starts_with("deny-") {
        json!({"uid": request["uid"], "allowed": false,
               "status": {"code": 403, "message": format!("smoke webhook denies {name}")}})
    } else {
        json!({"uid": request["uid"], "allowed": true})
    };
    let reply = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.to_string())))
        .expect("static response parts are valid"))
}

/// Starts the HTTPS webhook on 127.0.0.1 and returns its port.
async fn start_webhook(cert_pem: &[u8], key_pem: &[u8], calls: Arc<AtomicUsize>) -> u16 {
    cluster::install_crypto_provider();
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("parse tls.crt");
    let key = PrivateKeyDer::from_pem_slice(key_pem).expect("parse tls.key");
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("webhook TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind webhook port");
    let port = listener.local_addr().expect("webhook address").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, calls) = (acceptor.clone(), calls.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| review(req, calls.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validating_webhook_is_called_over_tls_on_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, cert_pem, key_pem) = webhook_certificates(dir.path());
    let calls = Arc::new(AtomicUsize::new(0));
    let port = start_webhook(&cert_pem, &key_pem, calls.clone()).await;

    let client = cluster::client().await;
    let ns = cluster::temp_namespace("smoke-webhook").await;
    let config = ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: "smoke.binauthz.dev".into(),
            client_config: WebhookClientConfig {
                url: Some(format!("https://127.0.0.1:{port}/validate")),
                ca_bundle: Some(k8s_openapi::ByteString(ca_pem)),
                ..WebhookClientConfig::default()
            },
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["configmaps".into()]),
                scope: Some("Namespaced".into()),
            }]),
            // Only this test's namespace: a leftover configuration can never block anything else.
            namespace_selector: Some(LabelSelector {
                match_labels: Some([("kubernetes.io/metadata.name".to_owned(), ns.clone())].into()),
                ..LabelSelector::default()
            }),
            failure_policy: Some("Fail".into()),
            side_effects: "None".into(),
            admission_review_versions: vec!["v1".into()],
            timeout_seconds: Some(10),
            ..ValidatingWebhook::default()
        }]),
    };
    let configs = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    configs
        .create(&PostParams::default(), &config)
        .await
        .expect("create webhook configuration");

    // The apiserver picks up new webhook configurations asynchronously: retry with fresh names.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let named = |name: String| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let denial = loop {
        let name = cluster::unique_name("deny");
        match config_maps
            .create(&PostParams::default(), &named(name))
            .await
        {
            Err(kube::Error::Api(status)) => break status,
            Err(e) => panic!("create configmap: {e}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "webhook never took effect");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(
        denial.message.contains("smoke webhook denies deny-"),
        "{denial:?}"
    );
    assert!(
        denial
            .message
            .contains("admission webhook \"smoke.binauthz.dev\" denied"),
        "{denial:?}"
    );

    config_maps
        .create(&PostParams::default(), &named("allow-me".into()))
        .await
        .expect("webhook allows allow-me");
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "webhook saw {} calls",
        calls.load(Ordering::SeqCst)
    );

    configs
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete webhook configuration");
}
