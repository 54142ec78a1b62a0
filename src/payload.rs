//! Google's signing payload: the JSON document ("Atomic container signature", also called
//! simple signing) that an attestation signs, naming an image repository and its manifest
//! digest.
//!
//! [`create`] reproduces `gcloud container binauthz create-signature-payload` byte for byte,
//! including gcloud's validation order and messages; [`parse`] reads any of the forms seen in
//! the wild (gcloud's, Kritis' compact one, hand-written ones) and extracts the facts.

use crate::image::{Digest, ImageRef, ImageRefError};

/// The `critical.type` value gcloud writes.
pub const GCLOUD_PAYLOAD_TYPE: &str = "Google cloud binauthz container signature";
/// The largest payload [`parse`] reads (real ones are about 300 bytes).
pub const MAX_PAYLOAD_LEN: usize = 1 << 20;

// Character sets and limits of gcloud's `containerregistry.client.docker_name`.
const DIGEST_CHARS: &str = "sh:0123456789abcdef";
const DIGEST_LEN: usize = 71;
const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";
const REPOSITORY_MIN_LEN: usize = 2;
const REPOSITORY_MAX_LEN: usize = 255;
const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const TAG_MAX_LEN: usize = 127;

/// Why an artifact URL cannot be turned into a payload, or bytes are not a payload. The
/// artifact URL errors up to `BadCharacters` carry gcloud's exact wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// A scheme without `//host` (gcloud's wording).
    #[error("Image URL '{0}' is invalid because it does not have a host component.")]
    NoHost(String),
    /// Not exactly one `@` (gcloud's wording).
    #[error("Docker image name must be fully qualified (e.g.registry/repository@digest) saw: {0}")]
    NotFullyQualified(String),
    /// Nothing before the `@` (gcloud's wording).
    #[error("A Docker image name must be specified")]
    NoImageName,
    /// The first path component is not a registry (gcloud's wording).
    #[error("A Docker registry domain must be specified.")]
    NoRegistry,
    /// A digest, repository or tag shorter than gcloud allows (gcloud's wording).
    #[error("Invalid {element}: {value}, must be at least {min} characters")]
    TooShort {
        /// `digest`, `repository` or `tag`.
        element: &'static str,
        /// The value as written.
        value: String,
        /// The minimum length in characters.
        min: usize,
    },
    /// A digest, repository or tag longer than gcloud allows (gcloud's wording).
    #[error("Invalid {element}: {value}, must be at most {max} characters")]
    TooLong {
        /// `digest`, `repository` or `tag`.
        element: &'static str,
        /// The value as written.
        value: String,
        /// The maximum length in characters.
        max: usize,
    },
    /// A digest, repository or tag with characters gcloud refuses (gcloud's wording).
    #[error("Invalid {element}: {value}, acceptable characters include: {allowed}")]
    BadCharacters {
        /// `digest`, `repository` or `tag`.
        element: &'static str,
        /// The value as written.
        value: String,
        /// The characters gcloud accepts.
        allowed: &'static str,
    },
    /// Characters gcloud's URL parser silently drops or keeps; refused here.
    #[error(
        "Invalid artifact URL {url:?}: {found:?} is not allowed; an image URL has no whitespace, control characters, '?', '#' or ';'"
    )]
    ForbiddenCharacter {
        /// The artifact URL.
        url: String,
        /// The offending character.
        found: char,
    },
    /// gcloud would accept the URL, but it names no image a container runtime could pull.
    #[error("Invalid artifact URL {url:?}: {source}")]
    NotAnImage {
        /// The artifact URL.
        url: String,
        /// What is wrong with `docker-reference@digest`.
        #[source]
        source: ImageRefError,
    },
    /// A JSON object with `_type` that is not an in-toto Statement this reads.
    #[error("_type {0} is not an in-toto Statement (https://in-toto.io/Statement/v1)")]
    NotAStatement(String),
    /// The payload exceeds [`MAX_PAYLOAD_LEN`].
    #[error("payload is {len} bytes; at most {MAX_PAYLOAD_LEN} (1 MiB) are accepted")]
    PayloadTooLarge {
        /// The payload length.
        len: usize,
    },
    /// The payload is not JSON, or a JSON object where one is required is something else.
    #[error("payload is not a JSON signing payload: {0}")]
    NotJson(String),
    /// A required field is absent or null.
    #[error(
        "payload has no {0} field; a signing payload has critical.identity.docker-reference and critical.image.docker-manifest-digest"
    )]
    MissingField(&'static str),
    /// A field that must be a string is not.
    #[error("payload field {0} must be a JSON string")]
    NotAString(&'static str),
    /// `critical.image.docker-manifest-digest` is not `sha256:<64 lower-case hex>`.
    #[error("payload field critical.image.docker-manifest-digest is not a sha256 digest: {0}")]
    BadDigest(#[source] ImageRefError),
}

/// The bytes `gcloud container binauthz create-signature-payload --artifact-url URL` prints,
/// byte for byte.
pub fn create(artifact_url: &str) -> Result<Vec<u8>, PayloadError> {
    let (docker_reference, digest) = split_artifact_url(artifact_url)?;
    Ok(render(docker_reference, &digest))
}

/// gcloud's reading of an artifact URL: the `docker-reference` it signs (the URL without
/// scheme, tag and digest, not normalised) and the digest.
///
/// Mirrors gcloud's `ReplaceImageUrlScheme` and `docker_name.Digest`, check for check. Where
/// gcloud is lax or quirky this is stricter or saner, never silently different:
/// - `registry:port/...` without a scheme is accepted and read as `https://registry:port/...`
///   (Python's `urlparse` takes `registry` for a URL scheme, so gcloud fails with "does not
///   have a host component"; prefixing `https://` is gcloud's own workaround).
/// - Whitespace, control characters, `?`, `#` and `;` are refused (gcloud's URL parser drops
///   some of them silently and keeps others in the reference).
/// - The result must be a valid image reference with a `sha256:<64 lower-case hex>` digest
///   (gcloud accepts e.g. `gcr.io/p//i` or 71 characters of `sh:0-9a-f` as a digest).
pub fn split_artifact_url(artifact_url: &str) -> Result<(&str, Digest), PayloadError> {
    if let Some(found) = artifact_url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | ';'))
    {
        return Err(PayloadError::ForbiddenCharacter {
            url: artifact_url.to_owned(),
            found,
        });
    }
    let url = strip_scheme(artifact_url)?;
    let mut parts = url.split('@');
    let (Some(name), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(PayloadError::NotFullyQualified(url.to_owned()));
    };
    check_element("digest", digest, DIGEST_CHARS, DIGEST_LEN, DIGEST_LEN)?;
    // docker_name.Digest tries `name` as repository:tag first and falls back to `name` as a
    // bare repository when either part fails, reporting the fallback's error.
    let docker_reference = match name.rsplit_once(':') {
        Some((repository, tag))
            if check_element("tag", tag, TAG_CHARS, 1, TAG_MAX_LEN).is_ok()
                && check_repository(repository).is_ok() =>
        {
            repository
        }
        _ => {
            check_repository(name)?;
            name
        }
    };
    let not_an_image = |source| PayloadError::NotAnImage {
        url: artifact_url.to_owned(),
        source,
    };
    let digest = Digest::parse(digest).map_err(not_an_image)?;
    ImageRef::parse(&format!("{docker_reference}@{digest}")).map_err(not_an_image)?;
    Ok((docker_reference, digest))
}

/// An artifact URL as an image reference: gcloud's forms (`https://gcr.io/...`) without the
/// scheme, once [`split_artifact_url`] accepts it.
pub fn without_scheme(artifact_url: &str) -> Result<&str, PayloadError> {
    split_artifact_url(artifact_url)?;
    strip_scheme(artifact_url)
}

/// `ReplaceImageUrlScheme(url, scheme='')`: drop `scheme://`, or leading slashes.
fn strip_scheme(url: &str) -> Result<&str, PayloadError> {
    // Python's urlsplit: a scheme is a letter then letters, digits, '+', '-', '.' up to the
    // first ':'.
    let scheme = url.split_once(':').filter(|(scheme, _)| {
        scheme
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    });
    let Some((_, rest)) = scheme else {
        return Ok(url.trim_start_matches('/'));
    };
    if let Some(authority) = rest.strip_prefix("//") {
        if authority.is_empty() || authority.starts_with('/') {
            return Err(PayloadError::NoHost(url.to_owned()));
        }
        return Ok(authority);
    }
    // `registry:5000/...`: a port, not a scheme (see `split_artifact_url`).
    let port_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if port_len > 0 && rest.as_bytes().get(port_len) == Some(&b'/') {
        return Ok(url);
    }
    Err(PayloadError::NoHost(url.to_owned()))
}

/// `docker_name.Repository(name, strict=True)`.
fn check_repository(name: &str) -> Result<(), PayloadError> {
    if name.is_empty() {
        return Err(PayloadError::NoImageName);
    }
    let repository = match name.split_once('/') {
        Some((registry, repository)) if registry.contains(['.', ':']) => repository,
        _ => return Err(PayloadError::NoRegistry),
    };
    // gcloud's registry check (`urlparse('//' + r).netloc == r`) only fails on '/', '?', '#',
    // which cannot be here; the registry grammar is enforced later by `ImageRef::parse`.
    check_element(
        "repository",
        repository,
        REPOSITORY_CHARS,
        REPOSITORY_MIN_LEN,
        REPOSITORY_MAX_LEN,
    )
}

/// `docker_name._check_element`: lengths in characters, then the character set.
fn check_element(
    element: &'static str,
    value: &str,
    allowed: &'static str,
    min: usize,
    max: usize,
) -> Result<(), PayloadError> {
    let len = value.chars().count();
    if len < min {
        return Err(PayloadError::TooShort {
            element,
            value: value.to_owned(),
            min,
        });
    }
    if len > max {
        return Err(PayloadError::TooLong {
            element,
            value: value.to_owned(),
            max,
        });
    }
    if !value.chars().all(|c| allowed.contains(c)) {
        return Err(PayloadError::BadCharacters {
            element,
            value: value.to_owned(),
            allowed,
        });
    }
    Ok(())
}

/// Python's `json.dumps(..., ensure_ascii=True, indent=2, separators=(',', ': '),
/// sort_keys=True) + "\n"` of gcloud's payload dict.
fn render(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    let mut out = String::with_capacity(240 + docker_reference.len());
    out.push_str("{\n  \"critical\": {\n    \"identity\": {\n      \"docker-reference\": ");
    push_json_string(&mut out, docker_reference);
    out.push_str("\n    },\n    \"image\": {\n      \"docker-manifest-digest\": ");
    push_json_string(&mut out, digest.as_str());
    out.push_str("\n    },\n    \"type\": ");
    push_json_string(&mut out, GCLOUD_PAYLOAD_TYPE);
    out.push_str("\n  }\n}\n");
    out.into_bytes()
}

/// A JSON string as Python's `ensure_ascii` encoder writes it: only printable ASCII literal,
/// `\uXXXX` (lower-case hex, surrogate pairs) for everything else.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// The facts a payload states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.identity.docker-reference`, as written.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: Digest,
    /// `critical.type`, if present.
    pub payload_type: Option<String>,
}

/// Parse tolerantly: gcloud's pretty form, Kritis' compact `atomic container signature` form,
/// other key orders and type strings; `optional` map ignored.
///
/// Strict where ambiguity could be exploited: a repeated key in any object on the path to the
/// facts is an error (parsers that keep the first and the last occurrence would disagree), as
/// is trailing data after the JSON value.
pub fn parse(bytes: &[u8]) -> Result<Payload, PayloadError> {
    if bytes.len() > MAX_PAYLOAD_LEN {
        return Err(PayloadError::PayloadTooLarge { len: bytes.len() });
    }
    let raw::Object(raw) = serde_json::from_slice::<raw::Object<raw::Payload>>(bytes)
        .map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let raw::Object(critical) = raw.critical.ok_or(PayloadError::MissingField("critical"))?;
    let docker_reference = critical
        .identity
        .ok_or(PayloadError::MissingField("critical.identity"))?
        .0
        .docker_reference;
    let docker_reference = string_field(docker_reference, "critical.identity.docker-reference")?
        .ok_or(PayloadError::MissingField(
            "critical.identity.docker-reference",
        ))?;
    let digest = critical
        .image
        .ok_or(PayloadError::MissingField("critical.image"))?
        .0
        .docker_manifest_digest;
    let digest = string_field(digest, "critical.image.docker-manifest-digest")?.ok_or(
        PayloadError::MissingField("critical.image.docker-manifest-digest"),
    )?;
    let manifest_digest = Digest::parse(&digest).map_err(PayloadError::BadDigest)?;
    let payload_type = string_field(critical.kind, "critical.type")?;
    Ok(Payload {
        docker_reference,
        manifest_digest,
        payload_type,
    })
}

/// `_type` of the in-toto Statements accepted (v1, which cosign v3 writes, and v0.1).
pub const IN_TOTO_STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
/// The predicate type of a cosign signature (`cosign sign`, v3): the only Statement that
/// vouches for an image; attestations of other predicates (SBOMs, provenance) do not.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The facts an in-toto Statement states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The sha256 digests of its subjects (cosign names the image's digest, and no name).
    pub subjects: Vec<Digest>,
    /// `predicateType`.
    pub predicate_type: String,
}

/// What a signature signed: a signing payload (Google, Kritis, cosign v2) or an in-toto
/// Statement (cosign v3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// A signing payload.
    Payload(Payload),
    /// An in-toto Statement.
    Statement(Statement),
}

/// Parse what was signed: an in-toto Statement when the JSON has `_type`, else a signing
/// payload ([`parse`]).
pub fn parse_signed(bytes: &[u8]) -> Result<Signed, PayloadError> {
    if bytes.len() > MAX_PAYLOAD_LEN {
        return Err(PayloadError::PayloadTooLarge { len: bytes.len() });
    }
    let kind: raw::Kind =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    if kind.statement_type.is_none() {
        return parse(bytes).map(Signed::Payload);
    }
    let statement: raw::Statement =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    if !IN_TOTO_STATEMENT_TYPES.contains(&statement.statement_type.as_str()) {
        return Err(PayloadError::NotAStatement(statement.statement_type));
    }
    let mut subjects = Vec::new();
    for subject in statement.subject {
        if let Some(hex) = subject.digest.sha256 {
            subjects
                .push(Digest::parse(&format!("sha256:{hex}")).map_err(PayloadError::BadDigest)?);
        }
    }
    Ok(Signed::Statement(Statement {
        subjects,
        predicate_type: statement.predicate_type,
    }))
}

fn string_field(
    value: Option<serde_json::Value>,
    field: &'static str,
) -> Result<Option<String>, PayloadError> {
    match value {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(PayloadError::NotAString(field)),
    }
}

/// The payload's JSON shape. Fields are optional so that absence gets a precise error;
/// serde's derive rejects duplicate keys; unknown keys (`optional`, ...) are ignored.
mod raw {
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    #[derive(serde::Deserialize)]
    pub(super) struct Payload {
        pub critical: Option<Object<Critical>>,
    }

    /// Only whether the JSON object is an in-toto Statement.
    #[derive(serde::Deserialize)]
    pub(super) struct Kind {
        #[serde(rename = "_type")]
        pub statement_type: Option<serde_json::Value>,
    }

    /// An in-toto Statement; serde's derive refuses repeated keys.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Statement {
        #[serde(rename = "_type")]
        pub statement_type: String,
        pub subject: Vec<Subject>,
        pub predicate_type: String,
    }

    #[derive(serde::Deserialize)]
    pub(super) struct Subject {
        #[serde(default)]
        pub digest: SubjectDigest,
    }

    /// The digests of a subject; algorithms other than sha256 are ignored.
    #[derive(serde::Deserialize, Default)]
    pub(super) struct SubjectDigest {
        pub sha256: Option<String>,
    }

    #[derive(serde::Deserialize)]
    pub(super) struct Critical {
        pub identity: Option<Object<Identity>>,
        pub image: Option<Object<Image>>,
        #[serde(rename = "type")]
        pub kind: Option<serde_json::Value>,
    }

    #[derive(serde::Deserialize)]
    pub(super) struct Identity {
        #[serde(rename = "docker-reference")]
        pub docker_reference: Option<serde_json::Value>,
    }

    #[derive(serde::Deserialize)]
    pub(super) struct Image {
        #[serde(rename = "docker-manifest-digest")]
        pub docker_manifest_digest: Option<serde_json::Value>,
    }

    /// What a JSON object must hold, for error messages.
    pub(super) trait Expecting {
        const EXPECTING: &'static str;
    }

    impl Expecting for Payload {
        const EXPECTING: &'static str = "the payload to be a JSON object with a critical object";
    }

    impl Expecting for Critical {
        const EXPECTING: &'static str = "critical to be a JSON object";
    }

    impl Expecting for Identity {
        const EXPECTING: &'static str = "critical.identity to be a JSON object";
    }

    impl Expecting for Image {
        const EXPECTING: &'static str = "critical.image to be a JSON object";
    }

    /// A JSON object read into `T`. serde's derived structs also accept JSON arrays
    /// (fields by position); a signing payload is never one, so only objects are accepted.
    pub(super) struct Object<T>(pub T);

    impl<'de, T: Deserialize<'de> + Expecting> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ObjectVisitor<T>(PhantomData<T>);

            impl<'de, T: Deserialize<'de> + Expecting> Visitor<'de> for ObjectVisitor<T> {
                type Value = T;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(T::EXPECTING)
                }

                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(MapAccessDeserializer::new(map))
                }
            }

            deserializer
                .deserialize_map(ObjectVisitor(PhantomData))
                .map(Object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    const HEX: &str = "0000000000000000000000000000000000000000000000000000000000000abc";

    fn digest() -> String {
        format!("sha256:{HEX}")
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn reproduces_the_reference_example() {
        let payload = create(&format!(
            "gcr.io/example-project/example-image@{}",
            digest()
        ))
        .unwrap();
        assert_eq!(payload.len(), 298);
        assert_eq!(
            hex::encode(Sha256::digest(&payload)),
            "0533c1b3ae558d4ef5d656fe76671c4a86049ac28c5284743b6e6e13ca88523d"
        );
        let expected = format!(
            "{{\n  \"critical\": {{\n    \"identity\": {{\n      \"docker-reference\": \"gcr.io/example-project/example-image\"\n    }},\n    \"image\": {{\n      \"docker-manifest-digest\": \"{}\"\n    }},\n    \"type\": \"Google cloud binauthz container signature\"\n  }}\n}}\n",
            digest()
        );
        assert_eq!(text(&payload), expected);
    }

    /// (artifact URL, docker-reference gcloud writes); `@D` stands for `@sha256:<HEX>`.
    #[rustfmt::skip]
    const REFERENCES: &[(&str, &str)] = &[
        ("gcr.io/p/i@D",                         "gcr.io/p/i"),
        ("https://gcr.io/p/i@D",                 "gcr.io/p/i"),
        ("http://gcr.io/p/i@D",                  "gcr.io/p/i"),
        ("HTTPS://gcr.io/p/i@D",                 "gcr.io/p/i"),
        ("oci://gcr.io/p/i@D",                   "gcr.io/p/i"),
        ("//gcr.io/p/i@D",                       "gcr.io/p/i"),
        ("/gcr.io/p/i@D",                        "gcr.io/p/i"),
        ("gcr.io/p/i:v1.2@D",                    "gcr.io/p/i"),
        ("gcr.io/p/i:TAG@D",                     "gcr.io/p/i"),
        ("GCR.io/p/i@D",                         "GCR.io/p/i"),
        ("index.docker.io/library/nginx@D",      "index.docker.io/library/nginx"),
        ("docker.io/nginx@D",                    "docker.io/nginx"),
        ("us-docker.pkg.dev/p/r/i@D",            "us-docker.pkg.dev/p/r/i"),
        ("https://registry.example.com:5000/team/app:v1@D", "registry.example.com:5000/team/app"),
        ("https://[::1]:5000/a/b@D",             "[::1]:5000/a/b"),
        // gcloud refuses these ("no host component"); read as if https:// were prefixed.
        ("localhost:5000/a/b@D",                 "localhost:5000/a/b"),
        ("gcr.io:443/p/i:v1@D",                  "gcr.io:443/p/i"),
    ];

    #[test]
    fn docker_reference_is_the_url_without_scheme_tag_and_digest() {
        for &(url, reference) in REFERENCES {
            let url = url.replace("@D", &format!("@{}", digest()));
            let (got, d) = split_artifact_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(got, reference, "{url}");
            assert_eq!(d.as_str(), digest());
            let payload = parse(&create(&url).unwrap()).unwrap();
            assert_eq!(payload.docker_reference, reference);
            assert_eq!(payload.manifest_digest, d);
            assert_eq!(payload.payload_type.as_deref(), Some(GCLOUD_PAYLOAD_TYPE));
        }
    }

    /// (artifact URL, the error message); gcloud prints the same message for every entry
    /// above the marked line.
    #[rustfmt::skip]
    const ERRORS: &[(&str, &str)] = &[
        ("nginx@D", "A Docker registry domain must be specified."),
        ("localhost/a/b@D", "A Docker registry domain must be specified."),
        ("gcr.io/p/i:tag", "Docker image name must be fully qualified (e.g.registry/repository@digest) saw: gcr.io/p/i:tag"),
        ("", "Docker image name must be fully qualified (e.g.registry/repository@digest) saw: "),
        ("gcr.io/p/i@D@D", "Docker image name must be fully qualified (e.g.registry/repository@digest) saw: gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc@sha256:0000000000000000000000000000000000000000000000000000000000000abc"),
        ("https://user@gcr.io/p/i@D", "Docker image name must be fully qualified (e.g.registry/repository@digest) saw: user@gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc"),
        ("gcr.io/p/i@sha256:abc", "Invalid digest: sha256:abc, must be at least 71 characters"),
        ("gcr.io/p/i@", "Invalid digest: , must be at least 71 characters"),
        ("gcr.io/p/i@sha512:0000000000000000000000000000000000000000000000000000000000000abc0000000000000000000000000000000000000000000000000000000000000abc", "Invalid digest: sha512:0000000000000000000000000000000000000000000000000000000000000abc0000000000000000000000000000000000000000000000000000000000000abc, must be at most 71 characters"),
        ("gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000ABC", "Invalid digest: sha256:0000000000000000000000000000000000000000000000000000000000000ABC, acceptable characters include: sh:0123456789abcdef"),
        ("gcr.io/P/R/I@D", "Invalid repository: P/R/I, acceptable characters include: abcdefghijklmnopqrstuvwxyz0123456789_-./"),
        ("gcr.io/p/i:v1:v2@D", "Invalid repository: p/i:v1:v2, acceptable characters include: abcdefghijklmnopqrstuvwxyz0123456789_-./"),
        ("gcr.io/p/i:@D", "Invalid repository: p/i:, acceptable characters include: abcdefghijklmnopqrstuvwxyz0123456789_-./"),
        ("gcr.io/a@D", "Invalid repository: a, must be at least 2 characters"),
        ("@D", "A Docker image name must be specified"),
        ("https://", "Image URL 'https://' is invalid because it does not have a host component."),
        ("https:gcr.io/p/i@D", "Image URL 'https:gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc' is invalid because it does not have a host component."),
        ("https:///p/i@D", "Image URL 'https:///p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc' is invalid because it does not have a host component."),
        ("localhost:5000@D", "Image URL 'localhost:5000@sha256:0000000000000000000000000000000000000000000000000000000000000abc' is invalid because it does not have a host component."),
        // ---- gcloud accepts these; refused here with our own messages.
        (" gcr.io/p/i@D", "Invalid artifact URL \" gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc\": ' ' is not allowed; an image URL has no whitespace, control characters, '?', '#' or ';'"),
        ("gcr.io/p/i@D?", "Invalid artifact URL \"gcr.io/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc?\": '?' is not allowed; an image URL has no whitespace, control characters, '?', '#' or ';'"),
        ("gcr.io/p//i@D", "Invalid artifact URL \"gcr.io/p//i@sha256:0000000000000000000000000000000000000000000000000000000000000abc\": image reference \"gcr.io/p//i@sha256:0000000000000000000000000000000000000000000000000000000000000abc\": repository \"p//i\" is invalid; it must be '/'-separated components of lower-case letters and digits, joined inside a component by '.', '_', '__' or dashes"),
        ("gcr.io/p/i@sha256:ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss", "Invalid artifact URL \"gcr.io/p/i@sha256:ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss\": \"sha256:ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss\": digest \"sha256:ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss\" is malformed; write sha256: followed by 64 lower-case hex digits (0-9, a-f)"),
        ("https://bücher.de/p/i@D", "Invalid artifact URL \"https://bücher.de/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc\": image reference \"bücher.de/p/i@sha256:0000000000000000000000000000000000000000000000000000000000000abc\": registry \"bücher.de\" is not a valid host[:port] (letters, digits and inner '-' in '.'-separated labels, or [ipv6], then an optional :port)"),
    ];

    #[test]
    fn refuses_what_gcloud_refuses_with_its_words() {
        for &(url, message) in ERRORS {
            let url = url.replace("@D", &format!("@{}", digest()));
            match create(&url) {
                Ok(p) => panic!("{url:?} gave {}", text(&p)),
                Err(e) => assert_eq!(e.to_string(), message, "{url:?}"),
            }
        }
    }

    #[test]
    fn json_strings_are_escaped_like_python_ensure_ascii() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀/");
        assert_eq!(out, r#""a\"b\\c\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00/""#);
    }

    fn gcloud_form() -> Vec<u8> {
        create(&format!(
            "gcr.io/example-project/example-image@{}",
            digest()
        ))
        .unwrap()
    }

    #[test]
    fn parses_the_forms_seen_in_the_wild() {
        let d = digest();
        let kritis = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"index.docker.io/library/nginx"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"atomic container signature"}},"optional":{{"creator":"kritis","timestamp":1700000000}}}}"#
        );
        // Google's continuous-validation docs: a heredoc with its own case and spacing.
        let cv_docs = format!(
            "{{\r\n\t\"critical\" : {{\r\n\t\t\"identity\" : {{ \"docker-reference\" : \"us-docker.pkg.dev/p/r/i\" }},\r\n\t\t\"image\" : {{ \"docker-manifest-digest\" : \"{d}\" }},\r\n\t\t\"type\" : \"Google Cloud BinAuthz container signature\"\r\n\t}}\r\n}}\r\n"
        );
        let reordered = format!(
            r#"{{"optional":null,"critical":{{"type":"x","image":{{"docker-manifest-digest":"{d}","extra":[1,2]}},"identity":{{"docker-reference":"gcr.io/p/i","extra":{{}}}}}}}}"#
        );
        let no_type = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":""}},"image":{{"docker-manifest-digest":"{d}"}}}}}}"#
        );
        let cases = [
            (
                gcloud_form(),
                "gcr.io/example-project/example-image",
                Some(GCLOUD_PAYLOAD_TYPE),
            ),
            (
                kritis.into_bytes(),
                "index.docker.io/library/nginx",
                Some("atomic container signature"),
            ),
            (
                cv_docs.into_bytes(),
                "us-docker.pkg.dev/p/r/i",
                Some("Google Cloud BinAuthz container signature"),
            ),
            (reordered.into_bytes(), "gcr.io/p/i", Some("x")),
            (no_type.into_bytes(), "", None),
        ];
        for (bytes, reference, kind) in cases {
            let payload = parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", text(&bytes)));
            assert_eq!(payload.docker_reference, reference);
            assert_eq!(payload.manifest_digest.as_str(), d);
            assert_eq!(payload.payload_type.as_deref(), kind);
        }
    }

    #[test]
    fn refuses_what_is_not_a_payload() {
        let d = digest();
        let with = |identity: &str, image: &str| {
            format!(r#"{{"critical":{{"identity":{identity},"image":{image},"type":"t"}}}}"#)
        };
        let good_identity = r#"{"docker-reference":"gcr.io/p/i"}"#;
        let good_image = format!(r#"{{"docker-manifest-digest":"{d}"}}"#);
        let cases: Vec<(String, &str)> = vec![
            (
                String::new(),
                "not a JSON signing payload: EOF while parsing",
            ),
            ("{".into(), "not a JSON signing payload: EOF while parsing"),
            (
                "[]".into(),
                "invalid type: sequence, expected the payload to be a JSON object",
            ),
            (
                "\"critical\"".into(),
                "expected the payload to be a JSON object",
            ),
            (
                r#"{"critical":[[["gcr.io/p/i"],["sha256:x"]]]}"#.into(),
                "invalid type: sequence, expected critical to be a JSON object",
            ),
            ("{}".into(), "payload has no critical field"),
            (
                r#"{"critical":null}"#.into(),
                "payload has no critical field",
            ),
            (
                r#"{"critical":"x"}"#.into(),
                "expected critical to be a JSON object",
            ),
            (
                r#"{"critical":{}}"#.into(),
                "payload has no critical.identity field",
            ),
            (
                with("[]", &good_image),
                "expected critical.identity to be a JSON object",
            ),
            (
                with("{}", &good_image),
                "payload has no critical.identity.docker-reference field",
            ),
            (
                with(r#"{"docker-reference":7}"#, &good_image),
                "payload field critical.identity.docker-reference must be a JSON string",
            ),
            (
                format!(r#"{{"critical":{{"identity":{good_identity}}}}}"#),
                "payload has no critical.image field",
            ),
            (
                with(good_identity, "{}"),
                "payload has no critical.image.docker-manifest-digest field",
            ),
            (
                with(good_identity, r#"{"docker-manifest-digest":null}"#),
                "payload has no critical.image.docker-manifest-digest field",
            ),
            (
                with(good_identity, r#"{"docker-manifest-digest":["sha256:x"]}"#),
                "payload field critical.image.docker-manifest-digest must be a JSON string",
            ),
            (
                with(
                    good_identity,
                    &format!(r#"{{"docker-manifest-digest":"sha512:{HEX}{HEX}"}}"#),
                ),
                "critical.image.docker-manifest-digest is not a sha256 digest: \"sha512:",
            ),
            (
                with(good_identity, r#"{"docker-manifest-digest":"sha256:abc"}"#),
                "is not a sha256 digest: \"sha256:abc\": a sha256 digest has 64 hex digits, this one has 3",
            ),
            (
                with(
                    good_identity,
                    &format!(
                        r#"{{"docker-manifest-digest":"sha256:{}"}}"#,
                        HEX.to_uppercase()
                    ),
                ),
                "is not a sha256 digest",
            ),
            (
                with(
                    good_identity,
                    &format!(r#"{{"docker-manifest-digest":"{HEX}"}}"#),
                ),
                "is not a sha256 digest",
            ),
            (
                format!(
                    r#"{{"critical":{{"identity":{good_identity},"image":{good_image},"type":1}}}}"#
                ),
                "payload field critical.type must be a JSON string",
            ),
            // Two digests: one parser may take the first, another the last.
            (
                with(
                    good_identity,
                    &format!(
                        r#"{{"docker-manifest-digest":"{d}","docker-manifest-digest":"sha256:{}"}}"#,
                        "1".repeat(64)
                    ),
                ),
                "duplicate field `docker-manifest-digest`",
            ),
            (
                format!(
                    r#"{{"critical":{{"identity":{good_identity},"identity":{good_identity},"image":{good_image}}}}}"#
                ),
                "duplicate field `identity`",
            ),
            (
                format!("{}{{}}", with(good_identity, &good_image)),
                "trailing characters",
            ),
        ];
        for (input, message) in cases {
            match parse(input.as_bytes()) {
                Ok(p) => panic!("{input:?} parsed as {p:?}"),
                Err(e) => assert!(e.to_string().contains(message), "{input:?}: {e}"),
            }
        }
    }

    #[test]
    fn refuses_payloads_over_one_mebibyte() {
        let mut big = gcloud_form();
        big.resize(MAX_PAYLOAD_LEN + 1, b' ');
        assert_eq!(
            parse(&big),
            Err(PayloadError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
        // Whitespace padding up to the limit is still JSON.
        big.truncate(MAX_PAYLOAD_LEN);
        assert!(parse(&big).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // Ignored fields are skipped without recursion.
        let ignored = format!(r#"{{"optional":{}, "critical":{{}}}}"#, nest(100_000));
        assert_eq!(
            parse(ignored.as_bytes()),
            Err(PayloadError::MissingField("critical.identity"))
        );
        // Kept fields hit serde_json's recursion limit.
        let kept = format!(r#"{{"critical":{{"type":{}}}}}"#, nest(100_000));
        let err = parse(kept.as_bytes());
        assert!(
            matches!(&err, Err(PayloadError::NotJson(m)) if m.contains("recursion limit")),
            "{err:?}"
        );
    }
}
