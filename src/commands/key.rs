//! `binauthz key id` and `binauthz attestor create`: keys as an Attestor sees them.

use std::path::Path;

use super::{CommandError, read_text};
use crate::cli::AttestorCreateArgs;
use crate::crd::{
    Attestor, AttestorPublicKey, AttestorSpec, PkixPublicKey as PkixKeySpec, validate,
};
use crate::crypto::SignatureAlgorithm;
use crate::crypto::pgp::PgpPublicKey;
use crate::crypto::pkix;
use crate::verify::AttestorKeys;

/// A public key file, read.
enum KeyFile {
    /// An armored PGP public key (its primary key's fingerprint is its id).
    Pgp {
        armored: String,
        fingerprint: String,
    },
    /// A PEM `PUBLIC KEY`.
    Pkix { pem: String, info: pkix::KeyInfo },
}

fn read_key(path: &Path) -> Result<KeyFile, CommandError> {
    let text = read_text(path)?;
    let shown = path.display();
    let trimmed = text.trim_start();
    if trimmed.starts_with("-----BEGIN PGP PRIVATE KEY") {
        return Err(CommandError::Usage(format!(
            "{shown}: is a PGP secret key; give the public key (gpg --armor --export KEY)"
        )));
    }
    if trimmed.starts_with("-----BEGIN PGP") {
        let key = PgpPublicKey::from_armored(&text)
            .map_err(|e| CommandError::Usage(format!("{shown}: {e}")))?;
        return Ok(KeyFile::Pgp {
            fingerprint: key.fingerprint().to_owned(),
            armored: text,
        });
    }
    if trimmed.starts_with("-----BEGIN") {
        let info =
            pkix::inspect(&text).map_err(|e| CommandError::Usage(format!("{shown}: {e}")))?;
        return Ok(KeyFile::Pkix { pem: text, info });
    }
    Err(CommandError::Usage(format!(
        "{shown}: neither an armored PGP public key (gpg --armor --export KEY) nor a PEM public key (openssl pkey -pubout, cosign.pub)"
    )))
}

/// `binauthz key id FILE`: the id an Attestor uses for the key in FILE, the id signatures
/// name in `publicKeyId`: a PGP key's fingerprint, a PKIX key's `ni:///sha-256;...` id.
pub fn key_id(file: &Path) -> Result<String, CommandError> {
    Ok(match read_key(file)? {
        KeyFile::Pgp { fingerprint, .. } => fingerprint,
        KeyFile::Pkix { info, .. } => info.default_id,
    } + "\n")
}

/// `binauthz attestor create NAME`: the Attestor YAML for public key files, each key checked
/// as the cluster will use it.
pub fn attestor_create(args: &AttestorCreateArgs) -> Result<String, CommandError> {
    if !validate::is_dns_subdomain(&args.name) {
        return Err(CommandError::Usage(format!(
            "NAME {:?}: an Attestor name is {}",
            args.name,
            validate::SUBDOMAIN_RULE
        )));
    }
    if args.pgp_public_key_file.is_empty() && args.pkix_public_key_file.is_empty() {
        return Err(CommandError::Usage(
            "give at least one --pgp-public-key-file or --pkix-public-key-file".into(),
        ));
    }
    if args.public_key_id.is_some() && args.pkix_public_key_file.len() != 1 {
        return Err(CommandError::Usage(
            "--public-key-id names one PKIX key: give exactly one --pkix-public-key-file with it"
                .into(),
        ));
    }
    let algorithm: Option<SignatureAlgorithm> = args
        .algorithm
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| CommandError::Usage(format!("--algorithm: {e}")))?;
    let mut public_keys = Vec::new();
    for file in &args.pgp_public_key_file {
        let KeyFile::Pgp { armored, .. } = read_key(file)? else {
            return Err(CommandError::Usage(format!(
                "--pgp-public-key-file {}: is a PEM key; give it with --pkix-public-key-file",
                file.display()
            )));
        };
        public_keys.push(AttestorPublicKey {
            comment: Some(file_comment(file)),
            ascii_armored_pgp_public_key: Some(armored),
            ..AttestorPublicKey::default()
        });
    }
    for file in &args.pkix_public_key_file {
        let KeyFile::Pkix { pem, info } = read_key(file)? else {
            return Err(CommandError::Usage(format!(
                "--pkix-public-key-file {}: is a PGP key; give it with --pgp-public-key-file",
                file.display()
            )));
        };
        let Some(signature_algorithm) = algorithm.or_else(|| info.shape.only_algorithm()) else {
            let choices: Vec<String> = info
                .shape
                .algorithms()
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(CommandError::Usage(format!(
                "--pkix-public-key-file {}: {} signs with one of {}; choose with --algorithm",
                file.display(),
                info.shape,
                choices.join(", ")
            )));
        };
        public_keys.push(AttestorPublicKey {
            comment: Some(file_comment(file)),
            id: args.public_key_id.clone(),
            pkix_public_key: Some(PkixKeySpec {
                public_key_pem: pem,
                signature_algorithm,
            }),
            ..AttestorPublicKey::default()
        });
    }
    let spec = AttestorSpec {
        description: args.description.clone(),
        public_keys,
        registry_signatures: None,
    };
    // Every key must be usable as the cluster will load it (fits its algorithm, valid id).
    let loaded = AttestorKeys::load(&args.name, &spec);
    if let Some(problem) = loaded.keys.iter().find_map(|k| k.key.as_ref().err()) {
        return Err(CommandError::Usage(problem.clone()));
    }
    let attestor = Attestor::new(&args.name, spec);
    let document = serde_json::to_value(&attestor)?;
    if let Err(problems) = validate::check(&document) {
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(CommandError::Usage(format!(
            "the Attestor would be refused: {}",
            text.join("; ")
        )));
    }
    let mut yaml = serde_yaml::to_string(&attestor)?;
    // Key ids, as comments: what `--public-key-id` of `attestation create` takes.
    let ids: Vec<String> = loaded
        .keys
        .iter()
        .filter_map(|k| k.id.as_deref())
        .map(|id| format!("# key id: {id}\n"))
        .collect();
    yaml.insert_str(0, &ids.concat());
    Ok(yaml)
}

/// The file name of a key, as the comment of its entry.
fn file_comment(file: &Path) -> String {
    format!(
        "from {}",
        file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    )
}
