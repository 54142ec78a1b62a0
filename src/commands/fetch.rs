//! `--fetch-signatures` of `verify` and `evaluate`: the cosign signatures of the repositories
//! the Attestors of the inputs name, read with the registry client and turned into
//! ImageAttestations by the code the cluster's syncs use, so CI and the cluster agree.

use std::sync::Arc;

use super::CommandError;
use crate::cli::FetchArgs;
use crate::image::ImageRef;
use crate::manifests::{Manifests, Source};
use crate::registry::{self, Credentials, RegistryClient, SignatureCache};
use crate::registry_sync::{self, RegistrySource};
use crate::verify::AttestorKeys;

/// Which images to fetch signatures for.
pub enum Wanted {
    /// These images (the workloads'): their signatures only.
    Images(Vec<ImageRef>),
    /// Every signed image of every repository.
    Everything,
}

/// Add the registry signatures of the inputs' Attestors to the manifests; returns how many.
pub fn fetch(
    manifests: &mut Manifests,
    args: &FetchArgs,
    wanted: Wanted,
) -> Result<usize, CommandError> {
    if !args.fetch_signatures {
        return Ok(0);
    }
    let credentials = credentials(args)?;
    let sources: Vec<RegistrySource> = manifests
        .attestors
        .iter()
        .filter_map(|(_, a)| {
            let spec = a.spec.registry_signatures.as_ref()?;
            let name = a.metadata.name.clone().unwrap_or_default();
            let keys = Arc::new(AttestorKeys::load(&name, &a.spec));
            Some(RegistrySource::new(name.into(), None, spec, keys))
        })
        .collect();
    if sources.is_empty() {
        return Err(CommandError::Usage(
            "--fetch-signatures: no Attestor of the inputs names spec.registrySignatures".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Usage(format!("cannot start the registry client: {e}")))?;
    let mut fetched = Vec::new();
    for source in &sources {
        if let Some(problem) = source.invalid.first() {
            return Err(CommandError::Usage(format!(
                "Attestor {}: spec.registrySignatures.repositories: {problem}",
                source.attestor
            )));
        }
        for repository in &source.repositories {
            let client = RegistryClient::new(
                &repository.registry,
                &credentials,
                &args.insecure_registries,
                None,
            )
            .map_err(|e| CommandError::Usage(format!("--fetch-signatures: {e}")))?;
            let cache = SignatureCache::default();
            let found = runtime.block_on(async {
                match &wanted {
                    Wanted::Everything => {
                        registry::discover(&client, repository, Vec::new(), &cache)
                            .await
                            .map(|(found, _)| found.into_iter().collect::<Vec<_>>())
                    }
                    Wanted::Images(images) => {
                        let mut all = Vec::new();
                        for image in images
                            .iter()
                            .filter(|i| source.repository_of(i) == Some(repository))
                        {
                            let Some(digest) = image.digest() else {
                                continue;
                            };
                            let (found, _) =
                                registry::signatures(&client, repository, digest, &cache).await?;
                            if !found.is_empty() {
                                all.push((*digest, found));
                            }
                        }
                        Ok(all)
                    }
                }
            });
            let found = found.map_err(|e| {
                CommandError::Usage(format!(
                    "--fetch-signatures: Attestor {}: {repository}: {e}",
                    source.attestor
                ))
            })?;
            for (digest, signatures) in found {
                for f in &signatures {
                    fetched.push((
                        Source {
                            path: format!("{repository} ({})", f.format.as_str()),
                            document: 1,
                        },
                        registry_sync::attestation(source, repository, &digest, f, "default"),
                    ));
                }
            }
        }
    }
    let count = fetched.len();
    for (source, attestation) in fetched {
        manifests.add_fetched(source, attestation);
    }
    Ok(count)
}

fn credentials(args: &FetchArgs) -> Result<Credentials, CommandError> {
    let path = match &args.registry_config {
        Some(path) => path.clone(),
        None => {
            let default = std::env::var_os("DOCKER_CONFIG")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker"))
                })
                .map(|dir| dir.join("config.json"));
            match default {
                Some(path) if path.is_file() => path,
                _ => return Ok(Credentials::default()),
            }
        }
    };
    let bytes = crate::input::read_bytes(&path, crate::input::SMALL)?;
    Credentials::from_docker_config(&bytes)
        .map_err(|e| CommandError::Usage(format!("{}: {e}", path.display())))
}
