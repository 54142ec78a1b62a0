//! `binauthz attestation create`: the ImageAttestation for a signature, checked as the cluster
//! would check it, and verified when the Attestor is given.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{CommandError, read_small};
use crate::cli::AttestationCreateArgs;
use crate::crd::{self, ImageAttestation, ImageAttestationSpec, limits, validate};
use crate::image::ImageRef;
use crate::manifests::Manifests;
use crate::payload;
use crate::policy::attestor_name;
use crate::verify::{self, AttestorKeys};

/// `binauthz attestation create`: the ImageAttestation YAML for a signature.
///
/// Refused (exit 2), naming the flag: an artifact URL without a sha256 digest, names the
/// cluster refuses, an empty or oversized key id or signature, a payload for another image,
/// and, with `--attestor-file`, a signature that does not verify with the Attestor's keys.
pub fn attestation_create(args: &AttestationCreateArgs) -> Result<String, CommandError> {
    let usage = |message: String| CommandError::Usage(message);
    // gcloud's forms: `https://` before the image, and the attestor as a resource name.
    let (_, digest) = payload::split_artifact_url(&args.artifact_url).map_err(|e| {
        usage(format!(
            "--artifact-url: {e}; name the image as registry/repository@sha256:<digest>"
        ))
    })?;
    let artifact_url = payload::without_scheme(&args.artifact_url)?.to_owned();
    let image =
        ImageRef::parse(&artifact_url).map_err(|e| usage(format!("--artifact-url: {e}")))?;
    let attestor = attestor_name(&args.attestor).to_owned();
    if !validate::is_dns_subdomain(&attestor) {
        return Err(usage(format!(
            "--attestor {:?}: an Attestor name is {}, or projects/PROJECT/attestors/NAME",
            args.attestor,
            validate::SUBDOMAIN_RULE
        )));
    }
    let key_id = args.public_key_id.trim();
    if key_id.is_empty() || key_id.chars().count() > limits::KEY_ID {
        return Err(usage(format!(
            "--public-key-id: give the id of the key that signed (1 to {} characters): the PGP fingerprint, or the PKIX key id (`binauthz key id FILE` prints it)",
            limits::KEY_ID
        )));
    }
    if !validate::is_dns_label(&args.namespace) {
        return Err(usage(format!(
            "--namespace {:?}: a namespace is at most 63 lower-case letters, digits and '-'",
            args.namespace
        )));
    }
    let name = match &args.name {
        Some(name) => name.clone(),
        None => format!("{attestor}-{}", &digest.hex()[..16]),
    };
    if !validate::is_dns_subdomain(&name) {
        return Err(usage(format!(
            "--name {name:?}: a name is {}",
            validate::SUBDOMAIN_RULE
        )));
    }

    let raw = read_small(&args.signature_file)?;
    let shown = args.signature_file.display();
    let text = std::str::from_utf8(&raw).ok().map(str::trim);
    let (signature, carries_payload) = match text {
        Some(t) if t.starts_with("-----BEGIN PGP") => (
            t.to_owned(),
            t.starts_with("-----BEGIN PGP MESSAGE")
                || t.starts_with("-----BEGIN PGP SIGNED MESSAGE"),
        ),
        Some(t) if t.starts_with("-----BEGIN") => {
            return Err(usage(format!(
                "{shown}: holds a PEM block, not a signature; give the signature file (PGP armor, or the raw bytes `binauthz sign` or `openssl dgst -sign` wrote)"
            )));
        }
        _ => (STANDARD.encode(&raw), false),
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(usage(format!("{shown}: the signature file is empty")));
    }
    if signature.chars().count() > limits::SIGNATURE {
        return Err(usage(format!(
            "{shown}: the signature is longer than {} characters once encoded; is it the right file?",
            limits::SIGNATURE
        )));
    }
    verify::decode_signature(&signature).map_err(|f| usage(format!("{shown}: {}", f.message)))?;

    let payload_bytes = match &args.payload_file {
        Some(file) => Some(read_small(file)?),
        None if carries_payload => None,
        None => Some(payload::create(&args.artifact_url)?),
    };
    if let Some(bytes) = &payload_bytes {
        // A payload for another image would never verify: say so now, not in the cluster.
        verify::check_payload(bytes, &image, &digest).map_err(|f| {
            usage(format!(
                "{}: {} ({})",
                args.payload_file
                    .as_ref()
                    .map_or_else(|| "the payload".to_owned(), |f| f.display().to_string()),
                f.message,
                f.reason
            ))
        })?;
        if base64::encoded_len(bytes.len(), true).unwrap_or(usize::MAX) > limits::PAYLOAD {
            return Err(usage(format!(
                "the payload is over {} bytes once base64-encoded; a signing payload is far smaller",
                limits::PAYLOAD
            )));
        }
    }

    let mut attestation = ImageAttestation::new(
        &name,
        ImageAttestationSpec {
            artifact_url,
            attestor: attestor.clone(),
            serialized_payload: payload_bytes.map(|b| STANDARD.encode(b)),
            signatures: vec![crd::Signature {
                public_key_id: key_id.to_owned(),
                signature,
            }],
        },
    );
    attestation.metadata.namespace = Some(args.namespace.clone());

    if let Some(file) = &args.attestor_file {
        let manifests = Manifests::load(std::slice::from_ref(file))?;
        let Some((_, found)) = manifests
            .attestors
            .iter()
            .find(|(_, a)| a.metadata.name.as_deref() == Some(attestor.as_str()))
        else {
            return Err(usage(format!(
                "--attestor-file {}: holds no Attestor named {attestor}",
                file.display()
            )));
        };
        let keys = AttestorKeys::load(&attestor, &found.spec);
        verify::verify(&attestation.spec, Some(&keys), jiff::Timestamp::now()).map_err(|f| {
            usage(format!(
                "the signature does not verify with Attestor {attestor} of {}: {}: {}",
                file.display(),
                f.reason,
                f.message
            ))
        })?;
    }

    // Whatever is printed is what the API server accepts.
    let document = serde_json::to_value(&attestation)?;
    if let Err(problems) = validate::check(&document) {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(usage(format!(
            "the ImageAttestation would be refused: {}",
            text.join("; ")
        )));
    }
    Ok(serde_yaml::to_string(&attestation)?)
}
