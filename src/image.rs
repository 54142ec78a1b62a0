//! Temporary stub of the image reference module, with the agreed API only; replaced at merge.

use std::fmt;

/// A container image reference as written in a pod spec, with its normalised parts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    written: String,
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// A `sha256:<64 hex>` manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest(String);

/// Why an image reference or digest could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// The reference does not follow the docker reference grammar.
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid {
        /// The input as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn invalid(input: &str, reason: &'static str) -> ImageRefError {
    ImageRefError::Invalid {
        input: input.to_owned(),
        reason,
    }
}

impl Digest {
    /// Parse `sha256:<64 lower-case hex>`.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| invalid(s, "digest must start with sha256:"))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(s, "digest must be 64 lower-case hex digits"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The digest as `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ImageRef {
    /// Parse a reference such as `nginx`, `nginx:1.25` or `gcr.io/p/i:tag@sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        if s.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(invalid(s, "whitespace"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if name.is_empty() || tag.is_some_and(str::is_empty) {
            return Err(invalid(s, "empty name or tag"));
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(s, "repository must be lower case"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            Some(_) => ("docker.io".to_owned(), name.to_owned()),
            None => ("docker.io".to_owned(), format!("library/{name}")),
        };
        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            return Err(invalid(s, "empty path component"));
        }
        Ok(Self {
            written: s.to_owned(),
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The reference exactly as written.
    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// The registry host, `docker.io` when none is written.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `registry/repository`, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, if written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if written.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

/// Temporary: same repository after normalisation.
pub fn same_repository(a: &str, b: &str) -> bool {
    match (ImageRef::parse(a), ImageRef::parse(b)) {
        (Ok(a), Ok(b)) => a.name() == b.name(),
        _ => a == b,
    }
}
