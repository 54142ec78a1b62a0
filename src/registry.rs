//! Reading cosign signatures from OCI registries, through `oci-client` (the OCI distribution
//! API: authentication, tags, manifests, blobs, referrers with the tag-schema fallback).
//!
//! Bounded: tags per repository, signatures per image, bytes per blob (a blob larger than its
//! kind allows is refused before it is fetched, and its reader stops at the bound), and time
//! per request. Plain HTTP only for loopback registries (as Docker allows 127.0.0.0/8) and for
//! registries the operator names insecure; everything else is HTTPS.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::cosign::{self, Descriptor, Format, Found};
use crate::image::{Digest, ImageRef};
use crate::metrics::Metrics;

/// Tags listed per page.
const PAGE: usize = 1000;
/// Most tags read from one repository.
pub const MAX_TAGS: usize = 100_000;
/// Most referrers read per image.
const MAX_REFERRERS: usize = 64;
/// Longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests in flight per repository.
const CONCURRENCY: usize = 8;
/// Media types asked for when reading manifests (OCI first; distribution answers 404 for OCI
/// manifests when they are not accepted).
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A repository to read signatures from: `registry/path`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// `host[:port]`, normalised (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository path (`library/nginx` on Docker Hub).
    pub path: String,
}

impl Repository {
    /// Parse `registry/repository` (no tag, no digest).
    pub fn parse(text: &str) -> Result<Self, String> {
        let image = ImageRef::parse(text).map_err(|e| format!("{text}: {e}"))?;
        if image.tag().is_some() || image.digest().is_some() {
            return Err(format!(
                "{text}: name a repository, without tag or digest (e.g. registry.example.com/team/app)"
            ));
        }
        Ok(Self {
            registry: image.registry().to_owned(),
            path: image.repository().to_owned(),
        })
    }

    /// `registry/path`, as image names are normalised.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }

    fn tag(&self, tag: &str) -> Reference {
        Reference::with_tag(self.registry.clone(), self.path.clone(), tag.to_owned())
    }

    fn digest(&self, digest: &str) -> Reference {
        Reference::with_digest(self.registry.clone(), self.path.clone(), digest.to_owned())
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// Why a registry could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The request failed (network, HTTP status, authentication).
    #[error("{registry}: {message}")]
    Request {
        /// The registry.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// It took too long.
    #[error("{registry}: no answer within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The registry.
        registry: String,
    },
    /// It sent more than is read.
    #[error("{registry}: {what}")]
    TooLarge {
        /// The registry.
        registry: String,
        /// What was too large.
        what: String,
    },
}

/// Registry credentials by registry host, from a `.dockerconfigjson` (a Secret of type
/// `kubernetes.io/dockerconfigjson`, or `~/.docker/config.json`).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_registry: BTreeMap<String, (String, String)>,
}

impl Credentials {
    /// Read the `auths` of a Docker config: `auth` (base64 of `user:password`) or
    /// `username` and `password` per registry; keys may carry a scheme and a path
    /// (`https://index.docker.io/v1/`). Credential helpers are not run.
    pub fn from_docker_config(json: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
        }
        let config: Config = serde_json::from_slice(json)
            .map_err(|e| format!("not a Docker config (.dockerconfigjson): {e}"))?;
        let mut by_registry = BTreeMap::new();
        for (key, entry) in config.auths {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            let host = match host {
                "index.docker.io" | "registry-1.docker.io" => "docker.io",
                other => other,
            };
            let pair = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) => {
                    let decoded = STANDARD
                        .decode(auth.trim())
                        .or_else(|_| STANDARD_NO_PAD.decode(auth.trim()))
                        .map_err(|e| format!("auths[{key}].auth is not base64: {e}"))?;
                    let text = String::from_utf8(decoded)
                        .map_err(|_| format!("auths[{key}].auth is not text"))?;
                    let (user, password) = text
                        .split_once(':')
                        .ok_or_else(|| format!("auths[{key}].auth is not user:password"))?;
                    (user.to_owned(), password.to_owned())
                }
                (None, Some(user), Some(password)) => (user, password),
                _ => continue,
            };
            by_registry.insert(host.to_owned(), pair);
        }
        Ok(Self { by_registry })
    }

    fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.by_registry.get(registry) {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

/// Whether a registry may be read over plain HTTP: loopback hosts, and hosts the operator names.
fn plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || insecure.iter().any(|i| i == registry || i == host)
}

/// A client for one registry, with its credentials.
pub struct RegistryClient {
    client: Client,
    auth: RegistryAuth,
    registry: String,
    metrics: Option<Arc<Metrics>>,
}

impl RegistryClient {
    /// A client for `registry`; `insecure` names registries read over plain HTTP besides
    /// loopback ones.
    pub fn new(
        registry: &str,
        credentials: &Credentials,
        insecure: &[String],
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let protocol = if plain_http(registry, insecure) {
            ClientProtocol::HttpsExcept(vec![registry.to_owned()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            read_timeout: Some(REQUEST_TIMEOUT),
            connect_timeout: Some(Duration::from_secs(5)),
            user_agent: concat!("binauthz/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Self {
            client: Client::new(config),
            auth: credentials.for_registry(registry),
            registry: registry.to_owned(),
            metrics,
        }
    }

    /// Run one request with the deadline, counting it.
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<Option<T>, RegistryError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, request).await;
        let result = match outcome {
            Err(_) => Err(RegistryError::Timeout {
                registry: self.registry.clone(),
            }),
            Ok(Ok(value)) => Ok(Some(value)),
            Ok(Err(error)) if is_not_found(&error) => Ok(None),
            Ok(Err(error)) => Err(RegistryError::Request {
                registry: self.registry.clone(),
                message: describe(&error),
            }),
        };
        if let Some(metrics) = &self.metrics {
            let outcome = match &result {
                Ok(Some(_)) => "ok",
                Ok(None) => "not_found",
                Err(_) => "error",
            };
            metrics.registry_request(&self.registry, outcome, started.elapsed());
        }
        result
    }

    /// Every tag of `repository` (at most [`MAX_TAGS`]); a repository that does not exist has
    /// none.
    pub async fn tags(&self, repository: &Repository) -> Result<Vec<String>, RegistryError> {
        let reference = repository.tag("latest");
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page = self
                .call(
                    self.client
                        .list_tags(&reference, &self.auth, Some(PAGE), last.as_deref()),
                )
                .await?;
            let Some(page) = page else { break };
            // Some registries ignore `last` on the final page; stop when a page brings nothing new.
            let fresh: Vec<String> = page
                .tags
                .into_iter()
                .filter(|t| last.as_ref().is_none_or(|l| t > l))
                .collect();
            let full = fresh.len() >= PAGE;
            tags.extend(fresh);
            if tags.len() > MAX_TAGS {
                return Err(RegistryError::TooLarge {
                    registry: self.registry.clone(),
                    what: format!("{repository} has more than {MAX_TAGS} tags"),
                });
            }
            if !full {
                break;
            }
        }
        Ok(tags)
    }

    /// A manifest and its digest, or `None` when there is none by that reference.
    async fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let found = self
            .call(
                self.client
                    .pull_manifest_raw(reference, &self.auth, &MANIFEST_TYPES),
            )
            .await?;
        match found {
            Some((bytes, _)) if bytes.len() as u64 > cosign::MAX_MANIFEST => {
                Err(RegistryError::TooLarge {
                    registry: self.registry.clone(),
                    what: format!(
                        "the manifest {reference} is over {} bytes",
                        cosign::MAX_MANIFEST
                    ),
                })
            }
            Some((bytes, digest)) => Ok(Some((bytes.to_vec(), digest))),
            None => Ok(None),
        }
    }

    /// A blob of at most `max` bytes.
    async fn blob(
        &self,
        repository: &Repository,
        descriptor: &Descriptor,
        max: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            registry: self.registry.clone(),
            what: format!("blob {} is over {max} bytes", descriptor.digest),
        };
        if descriptor.size > max {
            return Err(too_large());
        }
        let reference = repository.digest(&descriptor.digest);
        let mut out = Capped::new(max);
        let digest = descriptor.digest.as_str();
        let fetched = self
            .call(self.client.pull_blob(&reference, digest, &mut out))
            .await;
        if out.overflowed {
            return Err(too_large());
        }
        match fetched? {
            Some(()) => Ok(out.bytes),
            None => Err(RegistryError::Request {
                registry: self.registry.clone(),
                message: format!("blob {digest} of {repository} is missing"),
            }),
        }
    }

    /// The referrers of an image (the referrers API, or the `sha256-<hex>` tag where the
    /// registry has none).
    async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        self.client
            .store_auth_if_needed(&self.registry, &self.auth)
            .await;
        let index = self
            .call(
                self.client
                    .pull_referrers(&repository.digest(digest.as_str()), None),
            )
            .await?;
        Ok(index
            .map(|index| {
                index
                    .manifests
                    .into_iter()
                    .take(MAX_REFERRERS)
                    .map(|m| Descriptor {
                        media_type: m.media_type,
                        digest: m.digest,
                        size: u64::try_from(m.size).unwrap_or(u64::MAX),
                        annotations: m.annotations.unwrap_or_default().into_iter().collect(),
                        artifact_type: m.artifact_type,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// What was read before, by the digest of the manifest that holds it: signature manifests and
/// referrers are read again only when they change.
#[derive(Debug, Default)]
pub struct SignatureCache {
    /// Signatures by manifest digest, and whether the manifest was read in this round.
    entries: std::sync::Mutex<HashMap<String, (Vec<Found>, bool)>>,
}

impl SignatureCache {
    fn get(&self, manifest: &str) -> Option<Vec<Found>> {
        self.lock().get_mut(manifest).map(|(found, seen)| {
            *seen = true;
            found.clone()
        })
    }

    fn put(&self, manifest: String, found: Vec<Found>) {
        self.lock().insert(manifest, (found, true));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<Found>, bool)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// End a round: forget the manifests not read in it (they no longer exist, or their
    /// images are gone), and start the next.
    pub fn end_round(&self) {
        let mut entries = self.lock();
        entries.retain(|_, (_, seen)| *seen);
        for (_, seen) in entries.values_mut() {
            *seen = false;
        }
    }
}

/// Every cosign signature of one image in one repository: the layers of its `.sig` image
/// (v2) and the bundles among its referrers (v3). Signatures that cannot be read are skipped
/// and named in the second list.
pub async fn signatures(
    client: &RegistryClient,
    repository: &Repository,
    digest: &Digest,
    cache: &SignatureCache,
) -> Result<(Vec<Found>, Vec<String>), RegistryError> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    // cosign v2: the `.sig` image.
    if let Some((bytes, manifest_digest)) = client
        .manifest(&repository.tag(&cosign::signature_tag(digest)))
        .await?
    {
        if let Some(cached) = cache.get(&manifest_digest) {
            found.extend(cached);
        } else {
            let mut here = Vec::new();
            match cosign::parse_manifest(&bytes) {
                Ok(manifest) => {
                    for layer in cosign::v2_layers(&manifest) {
                        let blob = client
                            .blob(repository, &layer.payload, cosign::MAX_PAYLOAD_LAYER)
                            .await?;
                        match cosign::v2_found(&layer, blob, &manifest_digest) {
                            Ok(f) => here.push(f),
                            Err(e) => problems.push(format!("{manifest_digest}: {e}")),
                        }
                    }
                }
                Err(e) => problems.push(format!("{manifest_digest}: {e}")),
            }
            cache.put(manifest_digest, here.clone());
            found.extend(here);
        }
    }
    // cosign v3: bundles referring to the image.
    for referrer in client.referrers(repository, digest).await? {
        if let Some(cached) = cache.get(&referrer.digest) {
            found.extend(cached);
            continue;
        }
        let mut here = Vec::new();
        if let Some((bytes, manifest_digest)) = client
            .manifest(&repository.digest(&referrer.digest))
            .await?
        {
            match cosign::parse_manifest(&bytes) {
                Ok(manifest) => {
                    if let Some(layer) = cosign::v3_bundle_layer(&manifest, digest) {
                        let blob = client.blob(repository, layer, cosign::MAX_BUNDLE).await?;
                        match cosign::v3_found(layer, &blob, &manifest_digest) {
                            Ok(f) => here.extend(f),
                            Err(e) => problems.push(format!("{manifest_digest}: {e}")),
                        }
                    }
                }
                Err(e) => problems.push(format!("{manifest_digest}: {e}")),
            }
        }
        cache.put(referrer.digest, here.clone());
        found.extend(here);
    }
    found.truncate(cosign::MAX_SIGNATURES_PER_IMAGE * 2);
    Ok((found, problems))
}

/// The images of a repository that carry cosign signatures, found by their signature tags
/// (`sha256-<hex>.sig`, and `sha256-<hex>` where referrers are indexed by tag), with
/// `also` (images known to have had signatures, so that removals are seen), and the
/// signatures of each.
pub async fn discover(
    client: &RegistryClient,
    repository: &Repository,
    also: impl IntoIterator<Item = Digest>,
    cache: &SignatureCache,
) -> Result<(BTreeMap<Digest, Vec<Found>>, Vec<String>), RegistryError> {
    let mut digests: std::collections::BTreeSet<Digest> = client
        .tags(repository)
        .await?
        .iter()
        .filter_map(|t| cosign::tag_names_signatures(t).map(|(d, _)| d))
        .collect();
    digests.extend(also);
    let results: Vec<_> = futures::stream::iter(digests)
        .map(|digest| async move {
            let result = signatures(client, repository, &digest, cache).await;
            (digest, result)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut by_image = BTreeMap::new();
    let mut problems = Vec::new();
    for (digest, result) in results {
        let (found, skipped) = result?;
        problems.extend(skipped);
        if !found.is_empty() {
            by_image.insert(digest, found);
        }
    }
    Ok((by_image, problems))
}

/// The formats present among signatures, for messages.
pub fn formats(found: &[Found]) -> Vec<Format> {
    let mut formats: Vec<Format> = found.iter().map(|f| f.format).collect();
    formats.sort();
    formats.dedup();
    formats
}

fn is_not_found(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
                    | oci_client::errors::OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

fn describe(error: &OciDistributionError) -> String {
    let text = error.to_string();
    // Bound what goes into statuses and logs.
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A writer that keeps at most `max` bytes and then refuses more.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
    overflowed: bool,
}

impl Capped {
    fn new(max: u64) -> Self {
        Self {
            bytes: Vec::new(),
            max,
            overflowed: false,
        }
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.bytes.len() as u64 + buf.len() as u64 > self.max {
            self.overflowed = true;
            return Poll::Ready(Err(std::io::Error::other("blob over its size bound")));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_plain_http() {
        let r = Repository::parse("127.0.0.1:5000/team/app").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.path, "team/app");
        assert_eq!(
            Repository::parse("nginx").unwrap().name(),
            "docker.io/library/nginx"
        );
        assert!(Repository::parse("gcr.io/p/app:v1").is_err());
        assert!(plain_http("127.0.0.1:5000", &[]));
        assert!(plain_http("localhost:5000", &[]));
        assert!(!plain_http("registry.example.com", &[]));
        assert!(plain_http(
            "registry.internal:5000",
            &["registry.internal:5000".into()]
        ));
    }

    #[test]
    fn docker_config_credentials() {
        let config = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "127.0.0.1:5000":{"username":"u","password":"p"},"x":{}}}"#;
        let credentials = Credentials::from_docker_config(config).unwrap();
        assert_eq!(
            credentials.for_registry("docker.io"),
            RegistryAuth::Basic("user".into(), "pa:ss".into())
        );
        assert_eq!(
            credentials.for_registry("127.0.0.1:5000"),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(credentials.for_registry("gcr.io"), RegistryAuth::Anonymous);
        assert!(Credentials::from_docker_config(br#"{"auths": 5}"#).is_err());
        assert!(Credentials::from_docker_config(b"not json").is_err());
    }
}
