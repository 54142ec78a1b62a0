//! Container image references as written in pod specs, parsed and normalised the way the
//! container runtime reads them.
//!
//! The grammar and the normalisation follow `github.com/distribution/reference`
//! (`ParseNormalizedNamed`), which containerd and CRI-O use to turn a pod's `image` string into
//! something they pull: admission must interpret an image exactly as the runtime will.
//!
//! - The first path component is the registry when it contains `.` or `:`, is `localhost`, or
//!   has an upper-case letter; otherwise the image is on Docker Hub (`docker.io`).
//! - `index.docker.io` becomes `docker.io`; a Docker Hub name without a namespace gets
//!   `library/` (`nginx` -> `docker.io/library/nginx`).
//! - `name:tag@sha256:...` is a digest reference; the tag is kept but the runtime ignores it.
//!
//! Deliberate differences from distribution/reference: only `sha256` digests are accepted (as
//! Google's tooling does); inputs longer than [`MAX_REFERENCE_LEN`] bytes are refused; and a
//! first component with a `.` or `:` that is not a valid `host[:port]` (`my_ns.com/app`) is an
//! error, where distribution silently parses it as a registry-less path.
//!
//! The parser is a hand-written scanner (no regex, no allocation until the result is built):
//! it runs for every container of every admitted pod. `oci-spec`'s `distribution::Reference`
//! was evaluated and not used: it invents a `latest` tag for `nginx`, accepts
//! `Uppercase/lowercase` as a Docker Hub repository with upper-case letters, accepts non-ASCII
//! tags (Rust's `\w` is Unicode, Go's is ASCII), upper-case hex digests and bare 64-hex image
//! ids, rejects `[::1]:5000/...`, reports one generic "invalid reference format" error, and
//! pulls in about 30 crates even with default features off.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// The normalised registry name of Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";
/// The legacy Docker Hub host name that normalises to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// The namespace of Docker Hub's official images.
const OFFICIAL_PREFIX: &str = "library/";
/// The longest image reference accepted, in bytes (a valid one needs at most about 720).
pub const MAX_REFERENCE_LEN: usize = 1024;
/// The longest repository path (after normalisation) distribution/reference accepts.
pub const MAX_REPOSITORY_LEN: usize = 255;
/// The longest tag distribution/reference accepts.
pub const MAX_TAG_LEN: usize = 128;
/// How many bytes of an offending input an error message quotes.
const QUOTED_INPUT_LEN: usize = 256;
const SHA256_PREFIX: &str = "sha256:";
const SHA256_HEX_LEN: usize = 64;
const SHA256_TEXT_LEN: usize = SHA256_PREFIX.len() + SHA256_HEX_LEN;

/// Why a string is not an acceptable image reference or digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// The input is the empty string.
    #[error("image reference is empty; write registry/repository@sha256:<64 hex digits>")]
    Empty,
    /// The input is longer than [`MAX_REFERENCE_LEN`].
    #[error(
        "image reference {input:?} is {len} bytes long; at most {MAX_REFERENCE_LEN} are accepted"
    )]
    TooLong {
        /// The input (shortened).
        input: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Nothing precedes the tag or digest.
    #[error(
        "image reference {input:?} has no repository name; write registry/repository[:tag][@digest]"
    )]
    MissingName {
        /// The input.
        input: String,
    },
    /// The input is a bare 64-hex-digit image id.
    #[error(
        "image reference {input:?} is a bare image id, not an image name; write registry/repository@sha256:<id>"
    )]
    ImageId {
        /// The input.
        input: String,
    },
    /// The repository path has upper-case letters.
    #[error("image reference {input:?}: repository {repository:?} must be lower case")]
    UpperCase {
        /// The input.
        input: String,
        /// The repository path as written.
        repository: String,
    },
    /// The repository path breaks the path-component grammar.
    #[error(
        "image reference {input:?}: repository {repository:?} is invalid; it must be '/'-separated components of lower-case letters and digits, joined inside a component by '.', '_', '__' or dashes"
    )]
    InvalidRepository {
        /// The input.
        input: String,
        /// The repository path as written.
        repository: String,
    },
    /// The normalised repository path is longer than [`MAX_REPOSITORY_LEN`].
    #[error(
        "image reference {input:?}: repository path is {len} characters long; at most {MAX_REPOSITORY_LEN} are allowed"
    )]
    RepositoryTooLong {
        /// The input (shortened).
        input: String,
        /// The normalised path length.
        len: usize,
    },
    /// The registry is not `host[:port]`.
    #[error(
        "image reference {input:?}: registry {registry:?} is not a valid host[:port] (letters, digits and inner '-' in '.'-separated labels, or [ipv6], then an optional :port)"
    )]
    InvalidRegistry {
        /// The input.
        input: String,
        /// The registry as written.
        registry: String,
    },
    /// The tag breaks the tag grammar.
    #[error(
        "image reference {input:?}: tag {tag:?} is invalid; a tag is 1 to {MAX_TAG_LEN} ASCII letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    InvalidTag {
        /// The input.
        input: String,
        /// The tag as written.
        tag: String,
    },
    /// The digest uses an algorithm other than sha256.
    #[error(
        "{input:?}: digest algorithm {algorithm:?} is not supported; only sha256:<64 lower-case hex digits> digests are accepted"
    )]
    UnsupportedDigest {
        /// The input.
        input: String,
        /// The algorithm as written.
        algorithm: String,
    },
    /// The sha256 digest does not have 64 hex digits.
    #[error("{input:?}: a sha256 digest has 64 hex digits, this one has {len}")]
    DigestLength {
        /// The input (shortened).
        input: String,
        /// The number of characters after `sha256:`.
        len: usize,
    },
    /// The digest is not `sha256:` followed by lower-case hex.
    #[error(
        "{input:?}: digest {digest:?} is malformed; write sha256: followed by 64 lower-case hex digits (0-9, a-f)"
    )]
    InvalidDigest {
        /// The input.
        input: String,
        /// The digest as written.
        digest: String,
    },
}

/// A sha256 manifest digest, `sha256:<64 lower-case hex digits>` (only sha256 is accepted, as
/// Google's tooling does). Hashing and comparison use the 32 raw bytes.
#[derive(Clone, Copy)]
pub struct Digest {
    bytes: [u8; 32],
    /// `sha256:<hex>`, always ASCII; kept inline so `as_str` needs no allocation.
    text: [u8; SHA256_TEXT_LEN],
}

impl Digest {
    /// Parse `sha256:<64 lower-case hex digits>`.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        scan_digest(s).map_err(|p| p.into_error(s))
    }

    /// The digest of the given 32 sha256 bytes.
    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; SHA256_TEXT_LEN];
        let (prefix, hex) = text.split_at_mut(SHA256_PREFIX.len());
        prefix.copy_from_slice(SHA256_PREFIX.as_bytes());
        for (pair, b) in hex.chunks_exact_mut(2).zip(bytes) {
            pair.copy_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]);
        }
        Digest { bytes, text }
    }

    /// The digest as `sha256:<64 lower-case hex digits>`.
    pub fn as_str(&self) -> &str {
        // `text` is built from ASCII only, so this never falls back.
        std::str::from_utf8(&self.text).unwrap_or(SHA256_PREFIX)
    }

    /// The 64 lower-case hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        self.as_str().get(SHA256_PREFIX.len()..).unwrap_or_default()
    }

    /// The 32 raw sha256 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Digest {}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Digest {
    /// Byte order, which is also the order of the hex strings.
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Digest").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Digest {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A parsed image reference as written in a pod spec.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The string as written.
    original: Box<str>,
    /// `registry/repository` when it differs from `original[..name_len]` (Docker Hub names).
    normalised: Option<Box<str>>,
    /// Where the name (registry and path, as written) ends in `original`.
    name_len: usize,
    /// Length of the registry at the start of the normalised name.
    registry_len: usize,
    /// Byte range of the tag in `original`.
    tag: Option<(usize, usize)>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parse and normalise an image reference such as `nginx`, `gcr.io/p/app:v1` or
    /// `registry:5000/team/app@sha256:<64 hex>`.
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let scanned = scan(s).map_err(|p| p.into_error(s))?;
        let normalised = if scanned.written_registry == Some(scanned.registry) && !scanned.library {
            None
        } else {
            let prefix = if scanned.library { OFFICIAL_PREFIX } else { "" };
            let mut name = String::with_capacity(
                scanned.registry.len() + 1 + prefix.len() + scanned.path.len(),
            );
            name.push_str(scanned.registry);
            name.push('/');
            name.push_str(prefix);
            name.push_str(scanned.path);
            Some(name.into_boxed_str())
        };
        Ok(ImageRef {
            original: s.into(),
            normalised,
            name_len: scanned.name_len,
            registry_len: scanned.registry.len(),
            tag: scanned.tag,
            digest: scanned.digest,
        })
    }

    /// The reference exactly as written.
    pub fn as_written(&self) -> &str {
        &self.original
    }

    /// The normalised registry: `docker.io` for Docker Hub, otherwise as written (with port).
    pub fn registry(&self) -> &str {
        self.name().get(..self.registry_len).unwrap_or_default()
    }

    /// The repository path without the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        self.name().get(self.registry_len + 1..).unwrap_or_default()
    }

    /// The normalised `registry/repository`, e.g. `docker.io/library/nginx`.
    pub fn name(&self) -> &str {
        match &self.normalised {
            Some(name) => name,
            None => self.original.get(..self.name_len).unwrap_or_default(),
        }
    }

    /// The tag as written, if any (no implicit `latest`).
    pub fn tag(&self) -> Option<&str> {
        self.tag
            .and_then(|(start, end)| self.original.get(start..end))
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageRef")
            .field("written", &self.as_written())
            .field("name", &self.name())
            .field("tag", &self.tag())
            .field("digest", &self.digest)
            .finish()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_written())
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_written())
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// True when two repository names denote the same repository after normalisation
/// (`docker.io/library/nginx` == `index.docker.io/library/nginx` == `nginx`).
///
/// Tags and digests, if present, are ignored; registries compare ASCII-case-insensitively
/// (host names are), paths exactly. A name that does not parse equals nothing. Never allocates.
pub fn same_repository(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (scan(a), scan(b)) else {
        return false;
    };
    if !a.registry.eq_ignore_ascii_case(b.registry) {
        return false;
    }
    match (a.library, b.library) {
        (true, false) => b.path.strip_prefix(OFFICIAL_PREFIX) == Some(a.path),
        (false, true) => a.path.strip_prefix(OFFICIAL_PREFIX) == Some(b.path),
        _ => a.path == b.path,
    }
}

/// The parts of a valid reference, borrowed from the input.
struct Scanned<'a> {
    /// The registry as written, if one was.
    written_registry: Option<&'a str>,
    /// The normalised registry.
    registry: &'a str,
    /// Whether `library/` precedes `path` in the normalised name.
    library: bool,
    /// The repository path as written.
    path: &'a str,
    /// End of the written name in the input.
    name_len: usize,
    tag: Option<(usize, usize)>,
    digest: Option<Digest>,
}

/// What is wrong with an input, borrowed from it; turned into an [`ImageRefError`] only on
/// the error path so that `same_repository` never allocates.
enum Problem<'a> {
    Empty,
    TooLong(usize),
    MissingName,
    ImageId,
    UpperCase(&'a str),
    InvalidRepository(&'a str),
    RepositoryTooLong(usize),
    InvalidRegistry(&'a str),
    InvalidTag(&'a str),
    UnsupportedDigest(&'a str),
    DigestLength(usize),
    InvalidDigest(&'a str),
}

impl Problem<'_> {
    fn into_error(self, input: &str) -> ImageRefError {
        let input = quote(input);
        match self {
            Problem::Empty => ImageRefError::Empty,
            Problem::TooLong(len) => ImageRefError::TooLong { input, len },
            Problem::MissingName => ImageRefError::MissingName { input },
            Problem::ImageId => ImageRefError::ImageId { input },
            Problem::UpperCase(path) => ImageRefError::UpperCase {
                input,
                repository: quote(path),
            },
            Problem::InvalidRepository(path) => ImageRefError::InvalidRepository {
                input,
                repository: quote(path),
            },
            Problem::RepositoryTooLong(len) => ImageRefError::RepositoryTooLong { input, len },
            Problem::InvalidRegistry(registry) => ImageRefError::InvalidRegistry {
                input,
                registry: quote(registry),
            },
            Problem::InvalidTag(tag) => ImageRefError::InvalidTag {
                input,
                tag: quote(tag),
            },
            Problem::UnsupportedDigest(algorithm) => ImageRefError::UnsupportedDigest {
                input,
                algorithm: quote(algorithm),
            },
            Problem::DigestLength(len) => ImageRefError::DigestLength { input, len },
            Problem::InvalidDigest(digest) => ImageRefError::InvalidDigest {
                input,
                digest: quote(digest),
            },
        }
    }
}

/// The input for an error message, cut at [`QUOTED_INPUT_LEN`] bytes so a hostile megabyte
/// never lands in a log line.
fn quote(s: &str) -> String {
    if s.len() <= QUOTED_INPUT_LEN {
        return s.to_owned();
    }
    let mut end = QUOTED_INPUT_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}

fn scan(s: &str) -> Result<Scanned<'_>, Problem<'_>> {
    if s.is_empty() {
        return Err(Problem::Empty);
    }
    if s.len() > MAX_REFERENCE_LEN {
        return Err(Problem::TooLong(s.len()));
    }
    if s.len() == SHA256_HEX_LEN && s.bytes().all(is_lower_hex) {
        return Err(Problem::ImageId);
    }
    // A name and a tag never contain '@', so the first one starts the digest.
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    // distribution's splitDockerDomain: the first component is a registry when it has a '.'
    // or ':', is "localhost", or has upper case (Docker Hub namespaces are lower case).
    let (written_registry, path_start) = match rest.split_once('/') {
        Some((first, _))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), first.len() + 1)
        }
        _ => (None, 0),
    };
    let remainder = rest.get(path_start..).unwrap_or_default();
    // Paths never contain ':', so the first one after the registry starts the tag.
    let (path, tag) = match remainder.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (remainder, None),
    };
    if path.is_empty() {
        return Err(Problem::MissingName);
    }
    let registry = match written_registry {
        None | Some(LEGACY_DOCKER_HUB) => DOCKER_HUB,
        Some(registry) if valid_registry(registry) => registry,
        Some(registry) => return Err(Problem::InvalidRegistry(registry)),
    };
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Problem::UpperCase(path));
    }
    if !path.split('/').all(valid_path_component) {
        return Err(Problem::InvalidRepository(path));
    }
    let library = registry == DOCKER_HUB && !path.contains('/');
    let path_len = path.len() + if library { OFFICIAL_PREFIX.len() } else { 0 };
    if path_len > MAX_REPOSITORY_LEN {
        return Err(Problem::RepositoryTooLong(path_len));
    }
    let name_len = path_start + path.len();
    let tag = match tag {
        Some(tag) if valid_tag(tag) => Some((name_len + 1, name_len + 1 + tag.len())),
        Some(tag) => return Err(Problem::InvalidTag(tag)),
        None => None,
    };
    let digest = digest.map(scan_digest).transpose()?;
    Ok(Scanned {
        written_registry,
        registry,
        library,
        path,
        name_len,
        tag,
        digest,
    })
}

fn scan_digest(d: &str) -> Result<Digest, Problem<'_>> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(Problem::InvalidDigest(d));
    };
    if algorithm != "sha256" {
        return Err(if algorithm.is_empty() {
            Problem::InvalidDigest(d)
        } else {
            Problem::UnsupportedDigest(algorithm)
        });
    }
    if hex.len() != SHA256_HEX_LEN {
        return Err(Problem::DigestLength(hex.chars().count()));
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => *byte = (high << 4) | low,
            _ => return Err(Problem::InvalidDigest(d)),
        }
    }
    // `d` is now known to be exactly `sha256:` and 64 lower-case hex digits.
    let mut text = [0u8; SHA256_TEXT_LEN];
    text.copy_from_slice(d.as_bytes());
    Ok(Digest { bytes, text })
}

/// The value of a lower-case hex digit.
fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn is_lower_hex(b: u8) -> bool {
    nibble(b).is_some()
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    let mut i = 0;
    loop {
        let run = i;
        while b.get(i).is_some_and(|&c| is_lower_alnum(c)) {
            i += 1;
        }
        if i == run {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let separator = i;
        while b.get(i).is_some_and(|&c| !is_lower_alnum(c)) {
            i += 1;
        }
        match b.get(separator..i) {
            Some(b"." | b"_" | b"__") => {}
            Some(dashes) if dashes.iter().all(|&c| c == b'-') => {}
            _ => return false,
        }
    }
}

/// `host[:port]` where host is a domain name (`[a-zA-Z0-9]` labels with inner dashes,
/// decimal IPv4 included) or a bracketed IPv6 address.
fn valid_registry(registry: &str) -> bool {
    let (host_ok, port) = match registry.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((inner, port)) => (
                !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
                port,
            ),
            None => return false,
        },
        None => {
            let (host, port) = registry.split_at(registry.find(':').unwrap_or(registry.len()));
            (host.split('.').all(valid_domain_label), port)
        }
    };
    host_ok
        && (port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
}

fn valid_domain_label(label: &str) -> bool {
    let b = label.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        _ => false,
    }
}

/// `[\w][\w.-]{0,127}` with ASCII `\w`, as in Go.
fn valid_tag(tag: &str) -> bool {
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let b = tag.as_bytes();
    b.len() <= MAX_TAG_LEN
        && b.first().is_some_and(word)
        && b.iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0000000000000000000000000000000000000000000000000000000000000abc";

    /// `@D` in a table entry stands for `@sha256:<HEX>`.
    fn expand(s: &str) -> String {
        s.replace("@D", &format!("@sha256:{HEX}"))
    }

    /// (input, registry, repository, tag); the name is `registry/repository`.
    #[rustfmt::skip]
    const VALID: &[(&str, &str, &str, Option<&str>)] = &[
        ("nginx",                               "docker.io",      "library/nginx",  None),
        ("nginx:1.25",                          "docker.io",      "library/nginx",  Some("1.25")),
        ("nginx:latest",                        "docker.io",      "library/nginx",  Some("latest")),
        ("nginx@D",                             "docker.io",      "library/nginx",  None),
        ("nginx:_x",                            "docker.io",      "library/nginx",  Some("_x")),
        ("bitnami/redis",                       "docker.io",      "bitnami/redis",  None),
        ("docker.io/nginx",                     "docker.io",      "library/nginx",  None),
        ("docker.io/library/nginx",             "docker.io",      "library/nginx",  None),
        ("index.docker.io/library/nginx",       "docker.io",      "library/nginx",  None),
        ("index.docker.io/nginx:1",             "docker.io",      "library/nginx",  Some("1")),
        ("gcr.io/example-project/example-image@D", "gcr.io",      "example-project/example-image", None),
        ("us-docker.pkg.dev/p/r/i@D",           "us-docker.pkg.dev", "p/r/i",       None),
        ("gcr.io/a/b/c/d/e:v1",                 "gcr.io",         "a/b/c/d/e",      Some("v1")),
        ("gcr.io/p/i:v1.2.3@D",                 "gcr.io",         "p/i",            Some("v1.2.3")),
        ("localhost/app",                       "localhost",      "app",            None),
        ("localhost:5000/team/app:dev",         "localhost:5000", "team/app",       Some("dev")),
        ("registry.example.com:5000/team/app@D", "registry.example.com:5000", "team/app", None),
        ("127.0.0.1:5000/app",                  "127.0.0.1:5000", "app",            None),
        ("[::1]:5000/app:v1",                   "[::1]:5000",     "app",            Some("v1")),
        ("[2001:db8::1]/app",                   "[2001:db8::1]",  "app",            None),
        ("GCR.io/p/i",                          "GCR.io",         "p/i",            None),
        // distribution treats an upper-case first component as a registry.
        ("Uppercase/lowercase:tag",             "Uppercase",      "lowercase",      Some("tag")),
        // Without a '/', "localhost:5000" is the Docker Hub image "localhost", tag "5000".
        ("localhost:5000",                      "docker.io",      "library/localhost", Some("5000")),
        ("example.com",                         "docker.io",      "library/example.com", None),
        ("a__b/c--d/e.f_g:TAG_x-1.0",           "docker.io",      "a__b/c--d/e.f_g", Some("TAG_x-1.0")),
        ("my_ns/app",                           "docker.io",      "my_ns/app",      None),
        ("xn--n3h.com/myimage:xn--n3h.com",     "xn--n3h.com",    "myimage",        Some("xn--n3h.com")),
        ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", Some("some-long-tag")),
    ];

    #[test]
    fn parses_and_normalises() {
        for &(input, registry, repository, tag) in VALID {
            let input = expand(input);
            let r = ImageRef::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.as_written(), input);
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
            assert_eq!(r.name(), format!("{registry}/{repository}"), "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            let digest = input.contains('@').then(|| format!("sha256:{HEX}"));
            assert_eq!(r.digest().map(Digest::as_str), digest.as_deref(), "{input}");
            assert_eq!(r.to_string(), input);
        }
    }

    #[test]
    fn accepts_the_longest_tag_and_path() {
        let tag = "t".repeat(MAX_TAG_LEN);
        let r = ImageRef::parse(&format!("gcr.io/p/i:{tag}")).unwrap();
        assert_eq!(r.tag(), Some(tag.as_str()));
        let path = "a".repeat(MAX_REPOSITORY_LEN);
        let r = ImageRef::parse(&format!("gcr.io/{path}")).unwrap();
        assert_eq!(r.repository(), path);
        let path = "a".repeat(MAX_REPOSITORY_LEN - OFFICIAL_PREFIX.len());
        let r = ImageRef::parse(&path).unwrap();
        assert_eq!(r.repository(), format!("library/{path}"));
    }

    /// (input, the error variant expected)
    #[rustfmt::skip]
    const INVALID: &[(&str, &str)] = &[
        ("",                                    "Empty"),
        (HEX,                                   "ImageId"),
        ("Nginx",                               "UpperCase"),
        ("gcr.io/Project/app",                  "UpperCase"),
        ("docker.io/Library/nginx",             "UpperCase"),
        ("test:5000/Uppercase/lowercase:tag",   "UpperCase"),
        ("gcr.io/p//i",                         "InvalidRepository"),
        ("gcr.io/p/i/",                         "InvalidRepository"),
        ("gcr.io/-p/i",                         "InvalidRepository"),
        ("gcr.io/p/i.",                         "InvalidRepository"),
        ("gcr.io/p/a..b",                       "InvalidRepository"),
        ("gcr.io/p/a___b",                      "InvalidRepository"),
        ("gcr.io/p/a_-b",                       "InvalidRepository"),
        ("gcr.io/p/ä",                          "InvalidRepository"),
        (" nginx",                              "InvalidRepository"),
        ("nginx ",                              "InvalidRepository"),
        ("aa/asdf$$^/aa",                       "InvalidRepository"),
        ("my_ns.com/app",                       "InvalidRegistry"),
        ("-gcr.io/p/i",                         "InvalidRegistry"),
        ("gcr..io/p/i",                         "InvalidRegistry"),
        ("gcr.io:/p/i",                         "InvalidRegistry"),
        ("gcr.io:50a/p/i",                      "InvalidRegistry"),
        ("[::1/p/i",                            "InvalidRegistry"),
        ("[]:5000/p/i",                         "InvalidRegistry"),
        ("[::1]5000/p/i",                       "InvalidRegistry"),
        ("https://gcr.io/p/i",                  "InvalidRegistry"),
        ("nginx:",                              "InvalidTag"),
        ("nginx:.hidden",                       "InvalidTag"),
        ("nginx:-x",                            "InvalidTag"),
        ("nginx:tägü",                          "InvalidTag"),
        ("gcr.io/p/i:a:b",                      "InvalidTag"),
        ("gcr.io/p/i:1.0/foo",                  "InvalidTag"),
        ("@D",                                  "MissingName"),
        (":justtag",                            "MissingName"),
        ("gcr.io/",                             "MissingName"),
        ("gcr.io/p/i@sha512:0000000000000000000000000000000000000000000000000000000000000abc0000000000000000000000000000000000000000000000000000000000000abc", "UnsupportedDigest"),
        ("gcr.io/p/i@sha384:0000000000000000000000000000000000000000000000000000000000000abc", "UnsupportedDigest"),
        ("gcr.io/p/i@SHA256:0000000000000000000000000000000000000000000000000000000000000abc", "UnsupportedDigest"),
        ("gcr.io/p/i@sha256:abc",               "DigestLength"),
        ("gcr.io/p/i@D0",                       "DigestLength"),
        ("gcr.io/p/i@D@D",                      "DigestLength"),
        ("gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000ABC", "InvalidDigest"),
        ("gcr.io/p/i@sha256:000000000000000000000000000000000000000000000000000000000000000g", "InvalidDigest"),
        ("gcr.io/p/i@0000000000000000000000000000000000000000000000000000000000000abc", "InvalidDigest"),
        ("gcr.io/p/i@:0000000000000000000000000000000000000000000000000000000000000abc", "InvalidDigest"),
        ("gcr.io/p/i@",                         "InvalidDigest"),
    ];

    fn variant(e: &ImageRefError) -> String {
        let debug = format!("{e:?}");
        debug
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn rejects_invalid_references() {
        let too_long = "x".repeat(MAX_REFERENCE_LEN + 1);
        let path_too_long = format!("gcr.io/{}", "a".repeat(MAX_REPOSITORY_LEN + 1));
        // The implied "library/" counts towards the 255.
        let hub_path_too_long = "a".repeat(MAX_REPOSITORY_LEN - OFFICIAL_PREFIX.len() + 1);
        let tag_too_long = format!("gcr.io/p/i:{}", "t".repeat(MAX_TAG_LEN + 1));
        let generated = [
            (too_long.as_str(), "TooLong"),
            (path_too_long.as_str(), "RepositoryTooLong"),
            (hub_path_too_long.as_str(), "RepositoryTooLong"),
            (tag_too_long.as_str(), "InvalidTag"),
        ];
        assert!(INVALID.len() + generated.len() >= 40);
        for &(input, want) in INVALID.iter().chain(&generated) {
            let input = expand(input);
            match ImageRef::parse(&input) {
                Ok(r) => panic!("{input:?} parsed as {r:?}"),
                Err(e) => assert_eq!(variant(&e), want, "{input:?}: {e}"),
            }
            assert!(!same_repository(&input, &input), "{input:?}");
        }
    }

    #[test]
    fn errors_name_the_input_and_the_problem() {
        let msg = |s: &str| {
            ImageRef::parse(&expand(s))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            msg("gcr.io/P/i"),
            "image reference \"gcr.io/P/i\": repository \"P/i\" must be lower case"
        );
        assert!(msg("gcr.io/p/i@sha512:x").contains("algorithm \"sha512\" is not supported"));
        assert!(msg("gcr.io/p/i@sha256:abc").ends_with("64 hex digits, this one has 3"));
        assert!(msg("nginx:-x").contains("tag \"-x\" is invalid"));
        assert!(msg("my_ns.com/app").contains("registry \"my_ns.com\" is not a valid host"));
        assert!(msg("").contains("empty"));
        let long = msg(&"x".repeat(100_000));
        assert!(long.contains("is 100000 bytes long"), "{long}");
        assert!(
            long.len() < 600,
            "quotes a shortened input: {} bytes",
            long.len()
        );
        for e in [msg("gcr.io/P/i"), msg("nginx:-x"), msg("a\nb"), long] {
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn digest_round_trips_and_keys_on_bytes() {
        let text = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let digest = Digest::parse(&text).unwrap();
        assert_eq!(digest.as_str(), text);
        assert_eq!(digest.hex(), "0123456789abcdef".repeat(4));
        assert_eq!(
            digest.as_bytes()[..8],
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        assert_eq!(Digest::from_sha256(*digest.as_bytes()), digest);
        assert_eq!(digest.to_string(), text);
        assert_eq!(format!("{digest:?}"), format!("Digest({text:?})"));
        assert_eq!(text.parse::<Digest>().unwrap(), digest);
        let other = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_ne!(digest, other);
        assert!(other < digest);
        let set: std::collections::HashSet<Digest> = [digest, other, digest].into_iter().collect();
        assert_eq!(set.len(), 2);
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
        assert_eq!(std::mem::size_of::<Digest>(), 32 + 71);
    }

    #[test]
    fn digest_parse_rejects_everything_but_lower_case_sha256() {
        for bad in [
            String::new(),
            "sha256:".into(),
            HEX.into(),
            format!("sha512:{HEX}{HEX}"),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("sha256:{HEX} "),
            format!(" sha256:{HEX}"),
            format!("sha256:{}ü", &HEX[2..]),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn image_ref_equality_serde_and_debug() {
        let a = ImageRef::parse("nginx:1").unwrap();
        assert_eq!(a, "nginx:1".parse::<ImageRef>().unwrap());
        assert_ne!(a, ImageRef::parse("docker.io/library/nginx:1").unwrap());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"nginx:1\"");
        assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), a);
        assert!(serde_json::from_str::<ImageRef>("\"Nginx\"").is_err());
        assert!(format!("{a:?}").contains("docker.io/library/nginx"));
    }

    #[test]
    fn written_names_need_no_second_allocation() {
        let name = |s: &str| ImageRef::parse(&expand(s)).unwrap().normalised;
        assert!(name("gcr.io/p/i:v1@D").is_none());
        assert!(name("docker.io/library/nginx").is_none());
        assert!(name("nginx").is_some());
        assert!(name("index.docker.io/library/nginx").is_some());
        assert!(name("docker.io/nginx").is_some());
    }

    #[test]
    fn same_repository_normalises() {
        let same = [
            ("nginx", "docker.io/library/nginx"),
            ("nginx", "index.docker.io/library/nginx"),
            ("docker.io/library/nginx", "index.docker.io/library/nginx"),
            ("docker.io/nginx", "nginx"),
            ("index.docker.io/nginx", "docker.io/library/nginx"),
            ("bitnami/redis", "docker.io/bitnami/redis"),
            ("gcr.io/p/i", "gcr.io/p/i"),
            ("GCR.io/p/i", "gcr.io/p/i"),
            ("gcr.io/p/i:v1", "gcr.io/p/i"),
            ("localhost:5000/a/b", "localhost:5000/a/b"),
        ];
        for (a, b) in same {
            assert!(same_repository(a, b), "{a} == {b}");
            assert!(same_repository(b, a), "{b} == {a}");
        }
        let different = [
            ("nginx", "gcr.io/library/nginx"),
            ("nginx", "docker.io/library/nginx2"),
            ("nginx", "library"),
            ("library/nginx", "library/library/nginx"),
            ("gcr.io/p/i", "gcr.io/p/I"),
            ("gcr.io/p/i", "gcr.io/p/i/j"),
            ("gcr.io/p/i", "eu.gcr.io/p/i"),
            ("localhost:5000/a/b", "localhost:5001/a/b"),
            ("localhost/a", "docker.io/localhost/a"),
            ("gcr.io/p/i", ""),
        ];
        for (a, b) in different {
            assert!(!same_repository(a, b), "{a} != {b}");
            assert!(!same_repository(b, a), "{b} != {a}");
        }
    }
}
