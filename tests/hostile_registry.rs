//! A registry that attacks its reader: endless or over-declared manifests, tag lists, tokens
//! and error bodies, and content that does not match its digest.
//!
//! The registry is a raw HTTP/1.1 server on loopback, so it can send what no real registry
//! would. Each endless body is capped at 1 GiB by the server itself; the reader must stop far
//! earlier, at its own bound, and say which bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use binauthz::cosign;
use binauthz::image::Digest;
use binauthz::registry::{
    self, Credentials, RegistryClient, RegistryError, Repository, SignatureCache,
};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// The most an endless body is sent (the server stops there).
const ENDLESS: u64 = 1 << 30;
/// Bytes a reader may take beyond its bound through socket buffers before it stops.
const SLACK: u64 = 48 << 20;

/// What the hostile registry answers for a request path.
#[derive(Clone)]
enum Answer {
    /// 200, chunked, `prefix` and then filler without end.
    Endless { status: u16, prefix: &'static str },
    /// 200 declaring a huge Content-Length, then filler.
    Declared,
    /// 401 with a Bearer challenge whose realm is this server's `/token`.
    Challenge,
    /// 200 with this body.
    Body(Vec<u8>),
    /// 404.
    Missing,
}

struct Hostile {
    host: String,
    /// Body bytes sent, over all connections.
    sent: Arc<AtomicU64>,
}

/// Serve `route` (path without query, and the request head → answer) until the test ends.
async fn hostile(route: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let route = Arc::new(route);
    let (counter, realm_host) = (sent.clone(), host.clone());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (route, counter, realm_host) = (route.clone(), counter.clone(), realm_host.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                let target = line.split(' ').nth(1).unwrap_or_default();
                let path = target.split('?').next().unwrap_or_default();
                let filler = vec![b'a'; 64 * 1024];
                let head = match route(path, &head) {
                    Answer::Endless { status, prefix } => {
                        let head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let first = format!("{:x}\r\n{prefix}\r\n", prefix.len());
                        let _ = socket.write_all(first.as_bytes()).await;
                        let chunk = [format!("{:x}\r\n", filler.len()).as_bytes(), &filler, b"\r\n"].concat();
                        while counter.load(Ordering::Relaxed) < ENDLESS {
                            if socket.write_all(&chunk).await.is_err() {
                                return;
                            }
                            counter.fetch_add(filler.len() as u64, Ordering::Relaxed);
                        }
                        return;
                    }
                    Answer::Declared => {
                        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n", 10u64 << 30);
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        while counter.load(Ordering::Relaxed) < ENDLESS {
                            if socket.write_all(&filler).await.is_err() {
                                return;
                            }
                            counter.fetch_add(filler.len() as u64, Ordering::Relaxed);
                        }
                        return;
                    }
                    Answer::Challenge => format!(
                        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm_host}/token\",service=\"hostile\"\r\nContent-Length: 0\r\n\r\n"
                    )
                    .into_bytes(),
                    Answer::Body(body) => [
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes(),
                        body,
                    ]
                    .concat(),
                    Answer::Missing => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                };
                let _ = socket.write_all(&head).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Hostile { host, sent }
}

impl Hostile {
    fn client(&self) -> (RegistryClient, Repository) {
        let client = RegistryClient::new(&self.host, &Credentials::default(), &[], None).unwrap();
        (
            client,
            Repository::parse(&format!("{}/team/app", self.host)).unwrap(),
        )
    }

    /// The body bytes sent stayed far under the endless body: the reader stopped at its bound.
    fn assert_reader_stopped(&self) {
        let sent = self.sent.load(Ordering::Relaxed);
        assert!(
            sent < SLACK,
            "the reader took {sent} bytes of an endless body"
        );
    }
}

fn digest() -> Digest {
    Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap()
}

fn assert_too_large(result: Result<impl std::fmt::Debug, RegistryError>, what: &str) {
    match result {
        Err(RegistryError::TooLarge { what: said, .. }) => {
            assert!(said.contains(what), "{said} should name {what}")
        }
        other => panic!("expected TooLarge naming {what}, got {other:?}"),
    }
}

#[tokio::test]
async fn an_endless_tag_list_is_dropped_at_its_bound() {
    let registry = hostile(|path, _| match path {
        "/v2/team/app/tags/list" => Answer::Endless {
            status: 200,
            prefix: "{\"name\":\"team/app\",\"tags\":[\"",
        },
        _ => Answer::Missing,
    })
    .await;
    let (client, repository) = registry.client();
    assert_too_large(client.tags(&repository).await, "tag list");
    registry.assert_reader_stopped();
}

#[tokio::test]
async fn an_endless_or_over_declared_manifest_is_refused() {
    let sig = format!(
        "/v2/team/app/manifests/{}",
        cosign::signature_tag(&digest())
    );
    let endless = hostile({
        let sig = sig.clone();
        move |path, _| {
            if path == sig {
                Answer::Endless {
                    status: 200,
                    prefix: "{",
                }
            } else {
                Answer::Missing
            }
        }
    })
    .await;
    let (client, repository) = endless.client();
    let cache = SignatureCache::default();
    assert_too_large(
        registry::signatures(&client, &repository, &digest(), &cache).await,
        "manifest",
    );
    endless.assert_reader_stopped();

    // A declared length over the bound is refused before the body is read.
    let declared = hostile(move |path, _| {
        if path == sig {
            Answer::Declared
        } else {
            Answer::Missing
        }
    })
    .await;
    let (client, repository) = declared.client();
    assert_too_large(
        registry::signatures(&client, &repository, &digest(), &cache).await,
        "manifest",
    );
    declared.assert_reader_stopped();
}

#[tokio::test]
async fn an_endless_token_or_error_body_is_dropped_at_its_bound() {
    let token = hostile(|path, _| match path {
        "/token" => Answer::Endless {
            status: 200,
            prefix: "{\"token\":\"",
        },
        _ => Answer::Challenge,
    })
    .await;
    let (client, repository) = token.client();
    assert_too_large(client.tags(&repository).await, "token response");
    token.assert_reader_stopped();

    let error = hostile(|_, _| Answer::Endless {
        status: 500,
        prefix: "{\"errors\":[{\"code\":\"",
    })
    .await;
    let (client, repository) = error.client();
    match client.tags(&repository).await {
        Err(RegistryError::Request { message, .. }) => {
            assert!(message.contains("HTTP 500"), "{message}")
        }
        other => panic!("expected the 500 to be named, got {other:?}"),
    }
    error.assert_reader_stopped();
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    // The referrers API names a manifest by digest; the registry serves other bytes for it.
    let named = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(b"{\"layers\":[]}"))
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": named, "size": 13,
                       "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}],
    });
    let referrers = format!("/v2/team/app/referrers/{}", digest());
    let manifest = format!("/v2/team/app/manifests/{named}");
    let registry = hostile(move |path, _| {
        if path == referrers {
            Answer::Body(serde_json::to_vec(&index).unwrap())
        } else if path == manifest {
            Answer::Body(b"{\"layers\":[{}]}".to_vec())
        } else {
            Answer::Missing
        }
    })
    .await;
    let (client, repository) = registry.client();
    let cache = SignatureCache::default();
    match registry::signatures(&client, &repository, &digest(), &cache).await {
        Err(RegistryError::Request { message, .. }) => {
            assert!(message.contains("does not match its digest"), "{message}")
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_referrer_digest_that_is_not_a_digest_is_not_fetched() {
    // With and without a `sha256:` prefix: neither may steer a request to another path.
    for (named, refusal) in [
        ("sha256:../../../token", "cannot be fetched"),
        ("../../../token/manifests/x", "neither a digest nor a tag"),
    ] {
        let index = serde_json::json!({
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": named, "size": 13}],
        });
        let referrers = format!("/v2/team/app/referrers/{}", digest());
        let fetched = Arc::new(AtomicU64::new(0));
        let seen = fetched.clone();
        let registry = hostile(move |path, _| {
            if path == referrers {
                Answer::Body(serde_json::to_vec(&index).unwrap())
            } else {
                if path.contains("token") {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                Answer::Missing
            }
        })
        .await;
        let (client, repository) = registry.client();
        let cache = SignatureCache::default();
        match registry::signatures(&client, &repository, &digest(), &cache).await {
            Err(RegistryError::Request { message, .. }) => {
                assert!(message.contains(refusal), "{message}")
            }
            other => panic!("expected {named} to be refused, got {other:?}"),
        }
        assert_eq!(fetched.load(Ordering::Relaxed), 0, "{named} was requested");
    }
}

#[tokio::test]
async fn a_token_registry_is_read_with_its_token() {
    // The well-behaved counterpart of the attacks above: a Bearer challenge, a token service
    // asked for a pull scope on the repository, and the token sent on the retried request.
    let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    let registry = hostile(move |path, head| {
        let target = head.lines().next().unwrap_or_default().to_owned();
        log.lock().unwrap().push(target);
        match path {
            "/token" => Answer::Body(br#"{"token":"t0k3n","expires_in":300}"#.to_vec()),
            "/v2/team/app/tags/list"
                if head
                    .to_ascii_lowercase()
                    .contains("authorization: bearer t0k3n") =>
            {
                Answer::Body(br#"{"name":"team/app","tags":["v1","v2"]}"#.to_vec())
            }
            _ => Answer::Challenge,
        }
    })
    .await;
    let (client, repository) = registry.client();
    assert_eq!(client.tags(&repository).await.unwrap(), ["v1", "v2"]);
    // The token is kept: a second read asks the token service nothing more.
    assert_eq!(client.tags(&repository).await.unwrap(), ["v1", "v2"]);
    let asked = asked.lock().unwrap().clone();
    let tokens: Vec<_> = asked.iter().filter(|t| t.contains("/token")).collect();
    assert_eq!(tokens.len(), 1, "{asked:?}");
    assert!(
        tokens[0].contains("scope=repository%3Ateam%2Fapp%3Apull")
            && tokens[0].contains("service=hostile"),
        "{asked:?}"
    );
}
