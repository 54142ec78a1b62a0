//! cosign's keyed signatures as a registry holds them, read without a network (the registry
//! client fetches the bytes; this reads them):
//!
//! - **cosign v2** stores an image manifest under the tag `sha256-<hex>.sig` next to the
//!   image, one layer per signature: the layer (media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`) is the signed payload, and its
//!   annotation `dev.cosignproject.cosign/signature` is the base64 signature over it.
//! - **cosign v3** stores a Sigstore bundle (v0.3, media type
//!   `application/vnd.dev.sigstore.bundle.v0.3+json`) as an OCI 1.1 referrer of the image, found
//!   through the referrers API or the `sha256-<hex>` tag that indexes referrers where the API is
//!   missing. The bundle holds a DSSE envelope whose payload is an in-toto Statement; the
//!   signature covers the envelope's pre-authentication encoding.
//!
//! Each signature becomes a [`Found`]: the exact signed bytes and the signature, which an
//! ImageAttestation carries as `serializedPayload` and `signatures[].signature`, so the one
//! verifier ([`crate::verify`]) checks them like any other. Transparency-log data in a bundle is
//! ignored: trust comes from the attestor's key alone.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::crypto::IN_TOTO_DSSE_TYPE;
use crate::image::Digest;

/// Media type of a cosign v2 signature layer.
pub const SIMPLESIGNING_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation of a v2 layer holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Media type prefix of Sigstore bundles (cosign v3 writes v0.3).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle";
/// The bundle versions read: v0.3 (cosign v3), and the v0.1/v0.2 forms before it.
const BUNDLE_VERSIONS: [&str; 3] = ["v0.3", "v0.2", "v0.1"];
/// Largest v2 payload layer read (a cosign payload is under 1 KiB).
pub const MAX_PAYLOAD_LAYER: u64 = 64 * 1024;
/// Largest bundle read (a keyed bundle is about 2 KiB; with log entries, tens of KiB).
pub const MAX_BUNDLE: u64 = 256 * 1024;
/// Largest signature or referrer manifest, or referrers index, read.
pub const MAX_MANIFEST: u64 = 256 * 1024;
/// Signatures read per image and format (more are ignored, and said so).
pub const MAX_SIGNATURES_PER_IMAGE: usize = 16;

/// How a signature was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// A layer of the `sha256-<hex>.sig` image (cosign v2).
    V2,
    /// A Sigstore bundle referring to the image (cosign v3).
    V3,
}

impl Format {
    /// The name used in labels and annotations.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2 => "cosign-v2",
            Self::V3 => "cosign-v3",
        }
    }
}

/// One signature found for an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// How it was stored.
    pub format: Format,
    /// The exact bytes that were signed (the payload, or the Statement inside the envelope).
    pub payload: Vec<u8>,
    /// The raw signature.
    pub signature: Vec<u8>,
    /// The digest of the manifest that holds it (the `.sig` image or the referrer).
    pub manifest: String,
}

impl Found {
    /// A short, stable fingerprint of payload and signature, for object names.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.payload.len().to_be_bytes());
        hasher.update(&self.payload);
        hasher.update(&self.signature);
        hex::encode(&hasher.finalize()[..6])
    }
}

/// Why something read from the registry is not a cosign signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not the JSON expected.
    #[error("{what} is not valid JSON of its kind: {reason}")]
    Json {
        /// What was read.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// A blob does not hash to its descriptor's digest.
    #[error("blob {digest} does not match its digest")]
    DigestMismatch {
        /// The descriptor's digest.
        digest: String,
    },
    /// A field is missing or wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The tag cosign v2 stores an image's signatures under.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tag that indexes an image's referrers where the registry has no referrers API.
pub fn referrers_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

/// What a tag says about signatures: the image digest a `.sig` tag or a referrers tag is for.
pub fn tag_names_signatures(tag: &str) -> Option<(Digest, Format)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, format) = match rest.strip_suffix(".sig") {
        Some(hex) => (hex, Format::V2),
        None => (rest, Format::V3),
    };
    (hex.len() == 64)
        .then(|| Digest::parse(&format!("sha256:{hex}")).ok())
        .flatten()
        .map(|d| (d, format))
}

/// Whether a tag is cosign's bookkeeping rather than an image (`.sig`, `.att`, `.sbom` and
/// referrers tags).
pub fn is_cosign_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-").is_some_and(|rest| {
        let hex = rest.split('.').next().unwrap_or_default();
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// An OCI descriptor, the parts read.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Artifact type (index entries of referrers).
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// An OCI image manifest or index, the parts read.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Layers (image manifests).
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Entries (indexes).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// What a referrer refers to.
    #[serde(default)]
    pub subject: Option<Descriptor>,
}

/// Parse a manifest or index.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, FormatError> {
    serde_json::from_slice(bytes).map_err(|e| FormatError::Json {
        what: "the manifest",
        reason: e.to_string(),
    })
}

/// A v2 signature layer: where its payload is, and its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Layer {
    /// The payload blob.
    pub payload: Descriptor,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// The signature layers of a v2 `.sig` manifest (at most [`MAX_SIGNATURES_PER_IMAGE`]);
/// layers of other media types, oversized ones and ones without a signature are skipped.
pub fn v2_layers(manifest: &Manifest) -> Vec<V2Layer> {
    manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLESIGNING_LAYER && l.size <= MAX_PAYLOAD_LAYER)
        .filter_map(|l| {
            let signature = decode_base64(l.annotations.get(SIGNATURE_ANNOTATION)?)?;
            Some(V2Layer {
                payload: l.clone(),
                signature,
            })
        })
        .take(MAX_SIGNATURES_PER_IMAGE)
        .collect()
}

/// A v2 signature, once its payload blob is fetched (checked against the layer's digest).
pub fn v2_found(layer: &V2Layer, blob: Vec<u8>, manifest: &str) -> Result<Found, FormatError> {
    check_blob(&layer.payload.digest, &blob)?;
    Ok(Found {
        format: Format::V2,
        payload: blob,
        signature: layer.signature.clone(),
        manifest: manifest.to_owned(),
    })
}

/// The bundle layer of a v3 referrer manifest for `image`, if it is one: exactly one layer, a
/// Sigstore bundle of a version read, and a `subject` naming the image.
pub fn v3_bundle_layer<'m>(manifest: &'m Manifest, image: &Digest) -> Option<&'m Descriptor> {
    if manifest.subject.as_ref()?.digest != image.as_str() {
        return None;
    }
    match manifest.layers.as_slice() {
        [layer]
            if layer.media_type.starts_with(BUNDLE_MEDIA_TYPE)
                && BUNDLE_VERSIONS.iter().any(|v| layer.media_type.contains(v))
                && layer.size <= MAX_BUNDLE =>
        {
            Some(layer)
        }
        _ => None,
    }
}

/// The signatures of a v3 bundle blob (checked against its descriptor's digest): the DSSE
/// envelope's payload with each of its signatures. Bundles that sign a message instead of an
/// envelope, or an envelope of another payload type, are not cosign image signatures.
pub fn v3_found(
    layer: &Descriptor,
    blob: &[u8],
    manifest: &str,
) -> Result<Vec<Found>, FormatError> {
    check_blob(&layer.digest, blob)?;
    let bundle: raw::Bundle = serde_json::from_slice(blob).map_err(|e| FormatError::Json {
        what: "the Sigstore bundle",
        reason: e.to_string(),
    })?;
    let Some(envelope) = bundle.dsse_envelope else {
        return Err(FormatError::Invalid(
            "the bundle holds no DSSE envelope (a message signature is not an image signature)"
                .into(),
        ));
    };
    if envelope.payload_type != IN_TOTO_DSSE_TYPE {
        return Err(FormatError::Invalid(format!(
            "the envelope's payloadType is {}, not {IN_TOTO_DSSE_TYPE}",
            envelope.payload_type
        )));
    }
    let payload = decode_base64(&envelope.payload)
        .ok_or_else(|| FormatError::Invalid("the envelope's payload is not base64".into()))?;
    Ok(envelope
        .signatures
        .iter()
        .filter_map(|s| decode_base64(&s.sig))
        .take(MAX_SIGNATURES_PER_IMAGE)
        .map(|signature| Found {
            format: Format::V3,
            payload: payload.clone(),
            signature,
            manifest: manifest.to_owned(),
        })
        .collect())
}

fn check_blob(digest: &str, blob: &[u8]) -> Result<(), FormatError> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(blob)));
    if actual == digest {
        Ok(())
    } else {
        Err(FormatError::DigestMismatch {
            digest: digest.to_owned(),
        })
    }
}

/// Base64 as protobuf JSON and cosign write it: standard or URL-safe, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
        .filter(|b| !b.is_empty())
}

/// The bundle's JSON shape, the parts read.
mod raw {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Bundle {
        pub dsse_envelope: Option<Envelope>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Envelope {
        pub payload: String,
        pub payload_type: String,
        #[serde(default)]
        pub signatures: Vec<Signature>,
    }

    #[derive(Deserialize)]
    pub(super) struct Signature {
        pub sig: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "845f77fab71033404f4cfceaa1ddb27b70c3551ceb22a5e7f4498cdda6c9daea";

    fn digest() -> Digest {
        Digest::parse(&format!("sha256:{HEX}")).unwrap()
    }

    fn sha(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    #[test]
    fn tags_name_the_signed_digest() {
        assert_eq!(signature_tag(&digest()), format!("sha256-{HEX}.sig"));
        assert_eq!(referrers_tag(&digest()), format!("sha256-{HEX}"));
        assert_eq!(
            tag_names_signatures(&format!("sha256-{HEX}.sig")),
            Some((digest(), Format::V2))
        );
        assert_eq!(
            tag_names_signatures(&format!("sha256-{HEX}")),
            Some((digest(), Format::V3))
        );
        assert_eq!(tag_names_signatures("v1"), None);
        assert_eq!(tag_names_signatures("sha256-abc.sig"), None);
        assert!(is_cosign_tag(&format!("sha256-{HEX}.att")));
        assert!(!is_cosign_tag("sha256-latest"));
    }

    #[test]
    fn v2_layers_carry_payload_and_signature() {
        let payload = br#"{"critical":{"identity":{"docker-reference":"r/a"},"image":{"docker-manifest-digest":"sha256:x"},"type":"cosign container image signature"},"optional":null}"#;
        let manifest = format!(
            r#"{{"schemaVersion":2,"layers":[
              {{"mediaType":"{SIMPLESIGNING_LAYER}","size":{},"digest":"{}","annotations":{{"{SIGNATURE_ANNOTATION}":"c2ln"}}}},
              {{"mediaType":"application/octet-stream","size":3,"digest":"sha256:00"}},
              {{"mediaType":"{SIMPLESIGNING_LAYER}","size":3,"digest":"sha256:00"}}]}}"#,
            payload.len(),
            sha(payload)
        );
        let manifest = parse_manifest(manifest.as_bytes()).unwrap();
        let layers = v2_layers(&manifest);
        assert_eq!(layers.len(), 1, "only signature layers with a signature");
        assert_eq!(layers[0].signature, b"sig");
        let found = v2_found(&layers[0], payload.to_vec(), "sha256:m").unwrap();
        assert_eq!(found.payload, payload);
        assert_eq!(found.format, Format::V2);
        assert!(matches!(
            v2_found(&layers[0], b"tampered".to_vec(), "sha256:m"),
            Err(FormatError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn v3_bundles_yield_the_statement_and_its_signatures() {
        let statement = format!(
            r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"digest":{{"sha256":"{HEX}"}}}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{{}}}}"#
        );
        let bundle = format!(
            r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{{"publicKey":{{"hint":"aGludA=="}}}},"dsseEnvelope":{{"payload":"{}","payloadType":"application/vnd.in-toto+json","signatures":[{{"sig":"c2ln"}}]}}}}"#,
            STANDARD.encode(&statement)
        );
        let layer = Descriptor {
            media_type: "application/vnd.dev.sigstore.bundle.v0.3+json".into(),
            digest: sha(bundle.as_bytes()),
            size: bundle.len() as u64,
            annotations: Default::default(),
            artifact_type: None,
        };
        let manifest = Manifest {
            layers: vec![layer.clone()],
            manifests: Vec::new(),
            subject: Some(Descriptor {
                digest: digest().as_str().to_owned(),
                ..layer.clone()
            }),
        };
        assert_eq!(v3_bundle_layer(&manifest, &digest()), Some(&layer));
        let other = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        assert_eq!(
            v3_bundle_layer(&manifest, &other),
            None,
            "the subject must be the image"
        );
        let found = v3_found(&layer, bundle.as_bytes(), "sha256:r").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].payload, statement.as_bytes());
        assert_eq!(found[0].signature, b"sig");
        let message = bundle.replace("dsseEnvelope", "messageSignature");
        let layer = Descriptor {
            digest: sha(message.as_bytes()),
            ..layer
        };
        assert!(v3_found(&layer, message.as_bytes(), "sha256:r").is_err());
    }
}
