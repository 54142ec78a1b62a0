//! Registry signatures into the cluster: cosign signatures of the repositories an Attestor
//! names (`spec.registrySignatures`) become ImageAttestations in binauthz's namespace, which
//! the trust pipeline verifies like any other. Admission never waits on a registry.
//!
//! - The leader syncs each such Attestor every `interval`: it finds the signed images by their
//!   signature tags (and re-reads the images it holds signatures for, so removals are seen),
//!   writes one ImageAttestation per signature (labelled `binauthz.dev/source=registry`, owned
//!   by the Attestor) and deletes those whose signature left the registry. A repository that
//!   cannot be read keeps what it had; the Attestor's status says why.
//! - Every replica looks up, at once, the signatures of an image its webhook denied for want
//!   of an attestation when the image is in a synced repository: the ReplicaSet's next try
//!   finds it verified.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use tokio::sync::mpsc;

use crate::cosign::Found;
use crate::crd::{
    FIELD_MANAGER, ImageAttestation, ImageAttestationSpec, RegistrySignatures, RegistrySyncStatus,
    RepositorySyncStatus, Signature,
};
use crate::crypto::KeyKind;
use crate::image::{Digest, ImageRef};
use crate::metrics::Metrics;
use crate::registry::{self, Credentials, RegistryClient, Repository, SignatureCache};
use crate::trust::Index;
use crate::verify::{self, AttestorKeys};

/// Label of every ImageAttestation the sync writes.
pub const SOURCE_LABEL: &str = "binauthz.dev/source";
/// Its value.
pub const SOURCE_REGISTRY: &str = "registry";
/// Label naming the attestor (its name, or a hash of a name longer than a label value).
pub const ATTESTOR_LABEL: &str = "binauthz.dev/attestor";
/// Annotation naming the repository the signature was found in.
pub const REPOSITORY_ANNOTATION: &str = "binauthz.dev/repository";
/// Annotation naming the format (`cosign-v2`, `cosign-v3`).
pub const FORMAT_ANNOTATION: &str = "binauthz.dev/format";
/// Annotation naming the manifest that holds the signature.
pub const MANIFEST_ANNOTATION: &str = "binauthz.dev/signature-manifest";
/// Most ImageAttestations one Attestor's sync keeps.
pub const MAX_PER_ATTESTOR: usize = 10_000;
/// Sync interval when an Attestor names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
/// Shortest and longest interval.
pub const INTERVALS: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(24 * 3600));
/// Key of a `kubernetes.io/dockerconfigjson` Secret.
const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";
/// Lookups waiting per replica; more are dropped (and counted).
const LOOKUP_QUEUE: usize = 256;
/// A lookup of the same image is not repeated within this time.
const LOOKUP_AGAIN_AFTER: Duration = Duration::from_secs(15);

/// One Attestor's registry signatures, as the trust pipeline holds it.
#[derive(Clone, Debug)]
pub struct RegistrySource {
    /// The Attestor.
    pub attestor: Arc<str>,
    /// Its uid (the owner of what the sync writes).
    pub uid: Option<String>,
    /// The repositories, parsed; the spec's order.
    pub repositories: Vec<Repository>,
    /// Repositories of the spec that do not parse, with why.
    pub invalid: Vec<String>,
    /// The pull Secret's name.
    pub pull_secret: Option<String>,
    /// How often to sync.
    pub interval: Duration,
    /// The Attestor's keys.
    pub keys: Arc<AttestorKeys>,
    /// A hash of the spec's registry part: a change syncs at once.
    pub config: u64,
}

impl RegistrySource {
    /// The source of an Attestor with `spec.registrySignatures`.
    pub fn new(
        attestor: Arc<str>,
        uid: Option<String>,
        spec: &RegistrySignatures,
        keys: Arc<AttestorKeys>,
    ) -> Self {
        let mut repositories = Vec::new();
        let mut invalid = Vec::new();
        for text in &spec.repositories {
            match Repository::parse(text) {
                Ok(r) if !repositories.contains(&r) => repositories.push(r),
                Ok(_) => {}
                Err(e) => invalid.push(e),
            }
        }
        let interval = spec
            .interval
            .as_deref()
            .and_then(|i| crate::controller::validation::parse_interval(i).ok())
            .unwrap_or(DEFAULT_INTERVAL)
            .clamp(INTERVALS.0, INTERVALS.1);
        let config = {
            use std::hash::{Hash as _, Hasher as _};
            let mut hasher = std::hash::DefaultHasher::new();
            spec.repositories.hash(&mut hasher);
            spec.pull_secret.as_ref().map(|s| &s.name).hash(&mut hasher);
            interval.hash(&mut hasher);
            hasher.finish()
        };
        Self {
            attestor,
            uid,
            repositories,
            invalid,
            pull_secret: spec.pull_secret.as_ref().map(|s| s.name.clone()),
            interval,
            keys,
            config,
        }
    }

    /// The repository of this source an image belongs to.
    pub fn repository_of(&self, image: &ImageRef) -> Option<&Repository> {
        self.repositories
            .iter()
            .find(|r| r.registry == image.registry() && r.path == image.repository())
    }
}

/// The value of [`ATTESTOR_LABEL`] for an attestor: its name when it fits a label value.
pub fn attestor_label(attestor: &str) -> String {
    if attestor.len() <= 63 {
        attestor.to_owned()
    } else {
        use sha2::Digest as _;
        let hash = hex::encode(&sha2::Sha256::digest(attestor.as_bytes())[..6]);
        format!("{}-{hash}", attestor[..50].trim_end_matches(['.', '-']))
    }
}

/// The ImageAttestation for one signature of `digest` found in `repository`: named from the
/// attestor, the digest and the signature, owned by the Attestor. Its key id is the key of the
/// attestor that verifies it (tried with the one verifier), else the first PKIX key (the
/// status then says why it does not verify).
pub fn attestation(
    source: &RegistrySource,
    repository: &Repository,
    digest: &Digest,
    found: &Found,
    namespace: &str,
) -> ImageAttestation {
    let artifact_url = format!("{}@{}", repository.name(), digest.as_str());
    let candidates: Vec<&str> = source
        .keys
        .keys
        .iter()
        .filter(|k| k.kind == KeyKind::Pkix && k.key.is_ok())
        .filter_map(|k| k.id.as_deref())
        .collect();
    let spec_with = |key_id: &str| ImageAttestationSpec {
        artifact_url: artifact_url.clone(),
        attestor: source.attestor.to_string(),
        serialized_payload: Some(STANDARD.encode(&found.payload)),
        signatures: vec![Signature {
            public_key_id: key_id.to_owned(),
            signature: STANDARD.encode(&found.signature),
        }],
    };
    let now = jiff::Timestamp::now();
    let spec = candidates
        .iter()
        .map(|id| spec_with(id))
        .find(|spec| verify::verify(spec, Some(&source.keys), now).is_ok())
        .unwrap_or_else(|| spec_with(candidates.first().copied().unwrap_or_default()));
    let attestor = attestor_label(&source.attestor);
    let name = format!(
        "{}-{}-{}",
        attestor.trim_end_matches(['.', '-']),
        &digest.hex()[..12],
        found.fingerprint()
    );
    let mut object = ImageAttestation::new(&name, spec);
    object.metadata.namespace = Some(namespace.to_owned());
    object.metadata.labels = Some(BTreeMap::from([
        (SOURCE_LABEL.to_owned(), SOURCE_REGISTRY.to_owned()),
        (ATTESTOR_LABEL.to_owned(), attestor),
    ]));
    object.metadata.annotations = Some(BTreeMap::from([
        (REPOSITORY_ANNOTATION.to_owned(), repository.name()),
        (
            FORMAT_ANNOTATION.to_owned(),
            found.format.as_str().to_owned(),
        ),
        (MANIFEST_ANNOTATION.to_owned(), found.manifest.clone()),
    ]));
    if let Some(uid) = &source.uid {
        object.metadata.owner_references = Some(vec![OwnerReference {
            api_version: format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
            kind: "Attestor".to_owned(),
            name: source.attestor.to_string(),
            uid: uid.clone(),
            ..OwnerReference::default()
        }]);
    }
    object
}

/// A request to look up the signatures of one image.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lookup {
    /// The attestor whose repository holds it.
    pub attestor: Arc<str>,
    /// The repository.
    pub repository: Repository,
    /// The image.
    pub digest: Digest,
}

/// Reads registries and writes what it finds; shared by the leader's syncs and every
/// replica's lookups.
pub struct Syncer {
    client: kube::Client,
    namespace: String,
    insecure: Vec<String>,
    metrics: Arc<Metrics>,
    index: Arc<Index>,
    caches: Mutex<HashMap<Arc<str>, Arc<SignatureCache>>>,
    /// When each repository of each attestor last synced without error.
    succeeded: Mutex<HashMap<(Arc<str>, String), Time>>,
}

impl Syncer {
    /// A syncer writing into `namespace`; `insecure` names registries read over plain HTTP.
    pub fn new(
        client: kube::Client,
        namespace: String,
        insecure: Vec<String>,
        metrics: Arc<Metrics>,
        index: Arc<Index>,
    ) -> Self {
        Self {
            client,
            namespace,
            insecure,
            metrics,
            index,
            caches: Mutex::new(HashMap::new()),
            succeeded: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self, attestor: &Arc<str>) -> Arc<SignatureCache> {
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(attestor.clone())
            .or_default()
            .clone()
    }

    /// The credentials of a source: its pull Secret, else none.
    async fn credentials(&self, source: &RegistrySource) -> Result<Credentials, String> {
        let Some(name) = &source.pull_secret else {
            return Ok(Credentials::default());
        };
        let api = Api::<Secret>::namespaced(self.client.clone(), &self.namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read pull Secret {}/{name}: {e}", self.namespace))?
            .ok_or_else(|| {
                format!(
                    "pull Secret {}/{name} does not exist; create it with kubectl create secret docker-registry {name} -n {}",
                    self.namespace, self.namespace
                )
            })?;
        let data = secret
            .data
            .and_then(|mut d| d.remove(DOCKER_CONFIG_KEY))
            .ok_or_else(|| {
                format!(
                    "pull Secret {}/{name} has no {DOCKER_CONFIG_KEY}; it must be of type kubernetes.io/dockerconfigjson",
                    self.namespace
                )
            })?;
        Credentials::from_docker_config(&data.0)
            .map_err(|e| format!("pull Secret {}/{name}: {e}", self.namespace))
    }

    fn registry_client(
        &self,
        repository: &Repository,
        credentials: &Credentials,
    ) -> Result<RegistryClient, String> {
        RegistryClient::new(
            &repository.registry,
            credentials,
            &self.insecure,
            Some(self.metrics.clone()),
        )
        .map_err(|e| e.to_string())
    }

    fn api(&self) -> Api<ImageAttestation> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The ImageAttestations the sync wrote for an attestor.
    async fn written(&self, attestor: &str) -> Result<Vec<ImageAttestation>, kube::Error> {
        let selector = format!(
            "{SOURCE_LABEL}={SOURCE_REGISTRY},{ATTESTOR_LABEL}={}",
            attestor_label(attestor)
        );
        let list = self
            .api()
            .list(&ListParams::default().labels(&selector))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter(|a| a.spec.attestor == attestor)
            .collect())
    }

    /// Write an ImageAttestation unless it is there as it should be.
    async fn write(
        &self,
        object: &ImageAttestation,
        existing: &HashMap<String, ImageAttestationSpec>,
    ) -> Result<(), kube::Error> {
        let name = object.metadata.name.clone().unwrap_or_default();
        if existing.get(&name) == Some(&object.spec) {
            return Ok(());
        }
        self.api()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
            .map(|_| ())
    }

    /// Sync one attestor: every repository, then the status.
    pub async fn sync(&self, source: &RegistrySource) -> RegistrySyncStatus {
        let now = Time(jiff::Timestamp::now());
        let credentials = self.credentials(source).await;
        let written = match self.written(&source.attestor).await {
            Ok(written) => written,
            Err(e) => {
                return self.failed_everywhere(
                    source,
                    &format!("cannot list ImageAttestations: {e}"),
                    now,
                );
            }
        };
        let existing: HashMap<String, ImageAttestationSpec> = written
            .iter()
            .map(|a| (a.metadata.name.clone().unwrap_or_default(), a.spec.clone()))
            .collect();
        let cache = self.cache(&source.attestor);
        let mut status = RegistrySyncStatus {
            last_sync_time: Some(now.clone()),
            signatures: 0,
            repositories: Vec::new(),
        };
        let mut kept: BTreeSet<String> = BTreeSet::new();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        for text in &source.invalid {
            status.repositories.push(RepositorySyncStatus {
                repository: text.clone(),
                error: Some(text.clone()),
                ..RepositorySyncStatus::default()
            });
        }
        for repository in &source.repositories {
            let name = repository.name();
            let result = match &credentials {
                Err(e) => Err(e.clone()),
                Ok(credentials) => {
                    self.sync_repository(
                        source,
                        repository,
                        credentials,
                        &written,
                        &existing,
                        &cache,
                        kept.len(),
                    )
                    .await
                }
            };
            match result {
                Ok(names) => {
                    self.succeeded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert((source.attestor.clone(), name.clone()), now.clone());
                    status.repositories.push(RepositorySyncStatus {
                        repository: name,
                        signatures: i32::try_from(names.len()).unwrap_or(i32::MAX),
                        error: None,
                        last_success_time: Some(now.clone()),
                    });
                    kept.extend(names);
                }
                Err(error) => {
                    tracing::warn!(attestor = %source.attestor, repository = %name, %error, "registry sync failed");
                    self.metrics.registry_sync_failed(&source.attestor);
                    // What was synced from it stays.
                    let held: Vec<String> = written
                        .iter()
                        .filter(|a| annotation(a, REPOSITORY_ANNOTATION) == Some(name.as_str()))
                        .filter_map(|a| a.metadata.name.clone())
                        .collect();
                    status.repositories.push(RepositorySyncStatus {
                        repository: name.clone(),
                        signatures: i32::try_from(held.len()).unwrap_or(i32::MAX),
                        error: Some(error),
                        last_success_time: self
                            .succeeded
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(&(source.attestor.clone(), name.clone()))
                            .cloned(),
                    });
                    kept.extend(held);
                    failed.insert(name);
                }
            }
        }
        cache.end_round();
        // Signatures that left the registry (or whose repository the spec no longer names).
        for stale in written.iter().filter(|a| {
            let name = a.metadata.name.clone().unwrap_or_default();
            !kept.contains(&name)
                && !annotation(a, REPOSITORY_ANNOTATION).is_some_and(|r| failed.contains(r))
        }) {
            let name = stale.metadata.name.clone().unwrap_or_default();
            match self.api().delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(attestor = %source.attestor, attestation = %name, "registry signature gone: ImageAttestation deleted")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(attestation = %name, error = %e, "cannot delete a stale registry ImageAttestation")
                }
            }
        }
        status.signatures = i32::try_from(kept.len()).unwrap_or(i32::MAX);
        self.metrics
            .set_registry_signatures(&source.attestor, Some(i64::from(status.signatures)));
        status
    }

    #[allow(clippy::too_many_arguments)]
    async fn sync_repository(
        &self,
        source: &RegistrySource,
        repository: &Repository,
        credentials: &Credentials,
        written: &[ImageAttestation],
        existing: &HashMap<String, ImageAttestationSpec>,
        cache: &SignatureCache,
        already: usize,
    ) -> Result<Vec<String>, String> {
        let name = repository.name();
        let known: Vec<Digest> = written
            .iter()
            .filter(|a| annotation(a, REPOSITORY_ANNOTATION) == Some(name.as_str()))
            .filter_map(|a| {
                ImageRef::parse(&a.spec.artifact_url)
                    .ok()?
                    .digest()
                    .cloned()
            })
            .collect();
        let client = self.registry_client(repository, credentials)?;
        let (found, problems) = registry::discover(&client, repository, known, cache)
            .await
            .map_err(|e| e.to_string())?;
        for problem in problems {
            tracing::info!(attestor = %source.attestor, repository = %name, %problem, "registry signature skipped");
        }
        let objects: Vec<ImageAttestation> = found
            .iter()
            .flat_map(|(digest, signatures)| {
                signatures
                    .iter()
                    .map(|f| attestation(source, repository, digest, f, &self.namespace))
            })
            .take(MAX_PER_ATTESTOR.saturating_sub(already))
            .collect();
        let results: Vec<Result<String, String>> = futures::stream::iter(objects)
            .map(|object| async move {
                let name = object.metadata.name.clone().unwrap_or_default();
                self.write(&object, existing)
                    .await
                    .map(|()| name.clone())
                    .map_err(|e| format!("cannot write ImageAttestation {name}: {e}"))
            })
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }

    fn failed_everywhere(
        &self,
        source: &RegistrySource,
        error: &str,
        now: Time,
    ) -> RegistrySyncStatus {
        RegistrySyncStatus {
            last_sync_time: Some(now),
            signatures: 0,
            repositories: source
                .repositories
                .iter()
                .map(|r| RepositorySyncStatus {
                    repository: r.name(),
                    error: Some(error.to_owned()),
                    ..RepositorySyncStatus::default()
                })
                .collect(),
        }
    }

    /// Look up one image's signatures and write them; returns how many were found.
    pub async fn lookup(&self, source: &RegistrySource, lookup: &Lookup) -> Result<usize, String> {
        let credentials = self.credentials(source).await?;
        let client = self.registry_client(&lookup.repository, &credentials)?;
        let cache = self.cache(&source.attestor);
        let (found, _) = registry::signatures(&client, &lookup.repository, &lookup.digest, &cache)
            .await
            .map_err(|e| e.to_string())?;
        for f in &found {
            let object = attestation(
                source,
                &lookup.repository,
                &lookup.digest,
                f,
                &self.namespace,
            );
            self.write(&object, &HashMap::new())
                .await
                .map_err(|e| format!("cannot write the ImageAttestation: {e}"))?;
        }
        Ok(found.len())
    }

    /// Delete what the sync wrote for an attestor that no longer names repositories.
    async fn forget(&self, attestor: &str) {
        match self.written(attestor).await {
            Ok(written) => {
                for a in written {
                    let name = a.metadata.name.unwrap_or_default();
                    if let Err(e) = self.api().delete(&name, &DeleteParams::default()).await {
                        tracing::warn!(attestation = %name, error = %e, "cannot delete a registry ImageAttestation");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%attestor, error = %e, "cannot list registry ImageAttestations")
            }
        }
        self.metrics.set_registry_signatures(attestor, None);
        self.caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(attestor);
        self.succeeded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(a, _), _| &**a != attestor);
    }
}

fn annotation<'a>(object: &'a ImageAttestation, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The leader's syncs, until dropped: each source when due (its interval, or at once when its
/// registry configuration changed), its status handed to `report`.
pub async fn run(syncer: Arc<Syncer>, report: impl Fn(&str, Option<RegistrySyncStatus>)) {
    let mut changes = syncer.index.subscribe();
    let mut due: HashMap<Arc<str>, (Instant, u64)> = HashMap::new();
    loop {
        let sources = syncer.index.registry_sources();
        let now = Instant::now();
        let gone: Vec<Arc<str>> = due
            .keys()
            .filter(|a| !sources.iter().any(|s| &s.attestor == *a))
            .cloned()
            .collect();
        for attestor in gone {
            due.remove(&attestor);
            syncer.forget(&attestor).await;
            report(&attestor, None);
        }
        for source in sources.iter() {
            let ready = match due.get(&source.attestor) {
                Some((at, config)) => *config != source.config || now >= *at,
                None => true,
            };
            if !ready {
                continue;
            }
            let status = syncer.sync(source).await;
            report(&source.attestor, Some(status));
            due.insert(
                source.attestor.clone(),
                (Instant::now() + source.interval, source.config),
            );
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The queue of lookups of one replica.
#[derive(Debug)]
pub struct Lookups {
    sender: mpsc::Sender<Lookup>,
    recent: Mutex<HashMap<Lookup, Instant>>,
}

impl Lookups {
    /// A queue and its receiving end (for [`run_lookups`]).
    pub fn new() -> (Self, mpsc::Receiver<Lookup>) {
        let (sender, receiver) = mpsc::channel(LOOKUP_QUEUE);
        (
            Self {
                sender,
                recent: Mutex::new(HashMap::new()),
            },
            receiver,
        )
    }

    /// Ask for a lookup; true when one is queued or was asked for recently.
    pub fn request(&self, lookup: Lookup, metrics: &Metrics) -> bool {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.retain(|_, at| now.duration_since(*at) < LOOKUP_AGAIN_AFTER);
        if recent.contains_key(&lookup) {
            return true;
        }
        if recent.len() >= LOOKUP_QUEUE * 4 {
            metrics.lookup("dropped");
            return false;
        }
        match self.sender.try_send(lookup.clone()) {
            Ok(()) => {
                recent.insert(lookup, now);
                true
            }
            Err(_) => {
                metrics.lookup("dropped");
                false
            }
        }
    }
}

/// Run the lookups of this replica, one at a time, until the queue closes.
pub async fn run_lookups(syncer: Arc<Syncer>, mut receiver: mpsc::Receiver<Lookup>) {
    while let Some(lookup) = receiver.recv().await {
        let Some(source) = syncer
            .index
            .registry_sources()
            .iter()
            .find(|s| s.attestor == lookup.attestor)
            .cloned()
        else {
            continue;
        };
        let started = Instant::now();
        match syncer.lookup(&source, &lookup).await {
            Ok(0) => {
                syncer.metrics.lookup("none");
                tracing::info!(attestor = %lookup.attestor, repository = %lookup.repository, digest = lookup.digest.as_str(), "no registry signature for a denied image");
            }
            Ok(n) => {
                syncer.metrics.lookup("found");
                tracing::info!(attestor = %lookup.attestor, repository = %lookup.repository, digest = lookup.digest.as_str(), signatures = n, took_ms = started.elapsed().as_millis() as u64, "registry signatures of a denied image written");
            }
            Err(error) => {
                syncer.metrics.lookup("error");
                tracing::warn!(attestor = %lookup.attestor, repository = %lookup.repository, %error, "registry lookup failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestor_labels_fit_label_values() {
        assert_eq!(attestor_label("cosign"), "cosign");
        let long = format!("{}.example", "a".repeat(80));
        let label = attestor_label(&long);
        assert!(label.len() <= 63, "{label}");
        assert_ne!(attestor_label(&long), attestor_label(&format!("{long}2")));
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }
}
