//! Reading cosign signatures from OCI registries (the OCI distribution API: tags, manifests,
//! blobs, referrers with the tag-schema fallback; [`distribution`] speaks HTTP and
//! authentication).
//!
//! Bounded: tags per repository, signatures per image, bytes per response (tag pages,
//! manifests, referrer indexes, blobs, tokens and error bodies each have a bound; a response
//! declaring more is refused before it is read, and one sending more is dropped at the bound),
//! and time per request. Manifests and blobs are checked against their digests. Plain HTTP
//! only for loopback registries (as Docker allows 127.0.0.0/8) and for registries the operator
//! names insecure; everything else is HTTPS, redirects included.

mod distribution;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use futures::StreamExt as _;
use sha2::Digest as _;

use self::distribution::{Distribution, Read};

use crate::cosign::{self, Descriptor, Format, Found};
use crate::image::{Digest, ImageRef};
use crate::metrics::Metrics;

/// Tags listed per page.
const PAGE: usize = 1000;
/// Most tags read from one repository.
pub const MAX_TAGS: usize = 100_000;
/// Most referrers read per image.
const MAX_REFERRERS: usize = 64;
/// Largest page of a tag list read (a page holds at most [`PAGE`] tags of at most 128
/// characters each).
const MAX_TAG_PAGE: u64 = 256 * 1024;
/// Longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests in flight per repository.
const CONCURRENCY: usize = 8;
/// The media type of an image index (what the referrers API answers).
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
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

    /// The user and password for `registry`, if there are any.
    fn for_registry(&self, registry: &str) -> Option<(&str, &str)> {
        self.by_registry
            .get(registry)
            .map(|(user, password)| (user.as_str(), password.as_str()))
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
    distribution: Distribution,
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
    ) -> Result<Self, RegistryError> {
        Ok(Self {
            distribution: Distribution::new(
                registry,
                plain_http(registry, insecure),
                credentials.for_registry(registry),
            )?,
            registry: registry.to_owned(),
            metrics,
        })
    }

    /// One read, with the deadline, counted.
    async fn get(
        &self,
        repository: &Repository,
        read: Read<'_>,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let started = Instant::now();
        let request = self.distribution.get(&repository.path, &read);
        let result = match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Err(_) => Err(RegistryError::Timeout {
                registry: self.registry.clone(),
            }),
            Ok(result) => result,
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
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let page_size = PAGE.to_string();
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let mut query = vec![("n", page_size.as_str())];
            if let Some(last) = &last {
                query.push(("last", last.as_str()));
            }
            let what = &format!("a page of the tag list of {repository}");
            let page = self
                .get(
                    repository,
                    Read {
                        path: "tags/list".into(),
                        query: &query,
                        accept: &["application/json"],
                        max: MAX_TAG_PAGE,
                        what,
                    },
                )
                .await?;
            let Some(page) = page else { break };
            let page: TagList =
                serde_json::from_slice(&page).map_err(|e| RegistryError::Request {
                    registry: self.registry.clone(),
                    message: format!("{} is not a tag list: {e}", what),
                })?;
            // Some registries ignore `last` on the final page; stop when a page brings nothing new.
            let fresh: Vec<String> = page
                .tags
                .unwrap_or_default()
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

    /// The manifest `reference` (a tag or a digest) names and its digest (computed from its
    /// bytes), or `None` when there is none. A manifest read by digest must have that digest.
    async fn manifest(
        &self,
        repository: &Repository,
        reference: &str,
    ) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        // Registry-supplied references go into the URL path: a digest or a tag, nothing else.
        let by_digest = reference.contains(':');
        if by_digest {
            self.content_address(reference)?;
        } else if !is_tag(reference) {
            return Err(RegistryError::Request {
                registry: self.registry.clone(),
                message: distribution::bounded(format!(
                    "{reference:?} is neither a digest nor a tag; it is not fetched"
                )),
            });
        }
        let what = &format!("the manifest {repository}:{reference}");
        let Some(bytes) = self
            .get(
                repository,
                Read {
                    path: format!("manifests/{reference}"),
                    query: &[],
                    accept: &MANIFEST_TYPES,
                    max: cosign::MAX_MANIFEST,
                    what,
                },
            )
            .await?
        else {
            return Ok(None);
        };
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        if by_digest && digest != reference {
            return Err(self.mismatch(what, &digest));
        }
        Ok(Some((bytes, digest)))
    }

    /// A blob of at most `max` bytes, checked against its digest.
    async fn blob(
        &self,
        repository: &Repository,
        descriptor: &Descriptor,
        max: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = &format!("blob {} of {repository}", descriptor.digest);
        if descriptor.size > max {
            return Err(RegistryError::TooLarge {
                registry: self.registry.clone(),
                what: format!("{} is over {max} bytes", what),
            });
        }
        let expected = self.content_address(&descriptor.digest)?;
        let blob = self
            .get(
                repository,
                Read {
                    path: format!("blobs/{}", descriptor.digest),
                    query: &[],
                    accept: &[],
                    max,
                    what,
                },
            )
            .await?
            .ok_or_else(|| RegistryError::Request {
                registry: self.registry.clone(),
                message: format!("{} is missing", what),
            })?;
        if sha2::Sha256::digest(&blob).as_slice() != expected.as_bytes() {
            let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&blob)));
            return Err(self.mismatch(what, &actual));
        }
        Ok(blob)
    }

    /// The referrers of an image (the referrers API, or the `sha256-<hex>` tag where the
    /// registry has none).
    async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Descriptor>,
        }
        let what = &format!("the referrers of {repository}@{digest}");
        let index = match self
            .get(
                repository,
                Read {
                    path: format!("referrers/{digest}"),
                    query: &[],
                    accept: &[INDEX_TYPE],
                    max: cosign::MAX_MANIFEST,
                    what,
                },
            )
            .await?
        {
            Some(index) => Some(index),
            // A registry without the referrers API: the tag schema.
            None => self
                .manifest(repository, &cosign::referrers_tag(digest))
                .await?
                .map(|(bytes, _)| bytes),
        };
        let Some(index) = index else {
            return Ok(Vec::new());
        };
        let index: Index = serde_json::from_slice(&index).map_err(|e| RegistryError::Request {
            registry: self.registry.clone(),
            message: format!("{} is not an image index: {e}", what),
        })?;
        Ok(index.manifests.into_iter().take(MAX_REFERRERS).collect())
    }

    /// The digest a registry-supplied `sha256:<hex>` names, or why it cannot be fetched.
    fn content_address(&self, digest: &str) -> Result<Digest, RegistryError> {
        Digest::parse(digest).map_err(|e| RegistryError::Request {
            registry: self.registry.clone(),
            message: format!("the digest {digest:?} cannot be fetched: {e}"),
        })
    }

    fn mismatch(&self, what: &str, actual: &str) -> RegistryError {
        RegistryError::Request {
            registry: self.registry.clone(),
            message: format!("{what} does not match its digest (its content is {actual})"),
        }
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
        .manifest(repository, &cosign::signature_tag(digest))
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
        if let Some((bytes, manifest_digest)) =
            client.manifest(repository, &referrer.digest).await?
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

/// Whether `text` is a tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, the distribution spec's).
fn is_tag(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The formats present among signatures, for messages.
pub fn formats(found: &[Found]) -> Vec<Format> {
    let mut formats: Vec<Format> = found.iter().map(|f| f.format).collect();
    formats.sort();
    formats.dedup();
    formats
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
        assert!(is_tag("sha256-abc.sig") && is_tag("v1.2_x") && is_tag("_x"));
        assert!(
            !is_tag("../x") && !is_tag("x?y") && !is_tag("a/b") && !is_tag(".x") && !is_tag("")
        );
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
            Some(("user", "pa:ss"))
        );
        assert_eq!(credentials.for_registry("127.0.0.1:5000"), Some(("u", "p")));
        assert_eq!(credentials.for_registry("gcr.io"), None);
        assert!(Credentials::from_docker_config(br#"{"auths": 5}"#).is_err());
        assert!(Credentials::from_docker_config(b"not json").is_err());
    }
}
