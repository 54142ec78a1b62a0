//! Attestor import (`gcloud container binauthz attestors describe NAME --format=yaml`).

use serde_json::Value;

use crate::crd::{Attestor, AttestorPublicKey, AttestorSpec, PkixPublicKey};
use crate::crypto::SignatureAlgorithm;
use crate::crypto::pgp::PgpPublicKey;

use super::*;

/// Turn `gcloud container binauthz attestors describe NAME --format=yaml` output (v1
/// `userOwnedGrafeasNote`, or v1beta1 `userOwnedDrydockNote`) into an `Attestor`.
///
/// PKIX key ids are kept (signatures name them); PGP ids are dropped, since binauthz computes
/// them, after checking they are the keys' fingerprints.
pub fn import_attestor(text: &str, name: Option<&str>) -> Result<Imported<Attestor>, GcloudError> {
    let map = top_mapping(text, ATTESTOR_SOURCE)?;
    let top = Fields::of_map(
        "",
        &map,
        &[
            "description",
            "etag",
            "name",
            "updateTime",
            "userOwnedDrydockNote",
            "userOwnedGrafeasNote",
        ],
    )?;
    let resource_name = top.string("name")?;
    let from_resource = match &resource_name {
        None => None,
        Some(written) => {
            let parts: Vec<&str> = written.split('/').collect();
            match parts.as_slice() {
                ["projects", project, "attestors", attestor]
                    if !project.is_empty() && !attestor.is_empty() =>
                {
                    Some((*attestor).to_owned())
                }
                _ => {
                    return Err(field_error(
                        "name",
                        format!("expected projects/PROJECT_ID/attestors/NAME, got {written}"),
                    ));
                }
            }
        }
    };
    let name = match (name, from_resource) {
        (Some(given), _) => {
            if !is_dns_subdomain(given) {
                return Err(GcloudError::Unmappable(format!(
                    "--name {given}: not a Kubernetes object name ({SUBDOMAIN_RULE})"
                )));
            }
            given.to_owned()
        }
        (None, Some(attestor)) => {
            if !is_dns_subdomain(&attestor) {
                return Err(field_error(
                    "name",
                    format!(
                        "attestor {attestor} is not a Kubernetes object name ({SUBDOMAIN_RULE}); pass --name"
                    ),
                ));
            }
            attestor
        }
        (None, None) => {
            return Err(field_error(
                "name",
                "required (projects/PROJECT_ID/attestors/NAME), or pass --name",
            ));
        }
    };
    let description = top.string("description")?;
    let etag = top.string("etag")?;
    let update_time = top.string("updateTime")?;

    let (note_field, note_value) = match (
        top.get("userOwnedGrafeasNote"),
        top.get("userOwnedDrydockNote"),
    ) {
        (Some(v), None) => ("userOwnedGrafeasNote", v),
        (None, Some(v)) => ("userOwnedDrydockNote", v),
        (Some(_), Some(_)) => {
            return Err(field_error(
                "userOwnedDrydockNote",
                "give userOwnedGrafeasNote (v1) or userOwnedDrydockNote (v1beta1), not both",
            ));
        }
        (None, None) => {
            return Err(field_error(
                "userOwnedGrafeasNote",
                "required; it holds the attestor's public keys",
            ));
        }
    };
    let note = Fields::new(
        note_field,
        note_value,
        &[
            "delegationServiceAccountEmail",
            "noteReference",
            "publicKeys",
        ],
    )?;
    let note_reference = note.string("noteReference")?;
    let delegation = note.string("delegationServiceAccountEmail")?;

    let mut public_keys = Vec::new();
    let keys_path = note.child("publicKeys");
    let mut dropped_pgp_ids = 0usize;
    for (i, item) in note.list("publicKeys").iter().enumerate() {
        let path = format!("{keys_path}[{i}]");
        let (key, dropped_id) = decode_public_key(&path, item)?;
        if dropped_id {
            dropped_pgp_ids += 1;
        }
        public_keys.push(key);
    }

    let mut notes = vec![format!(
        "Imported by `binauthz attestor import` from {}.",
        resource_name
            .as_deref()
            .unwrap_or("a gcloud attestor description")
    )];
    let mut dropped = Vec::new();
    if let Some(note) = &note_reference {
        dropped.push(format!("{note_field}.noteReference {note}"));
    }
    if let Some(email) = &delegation {
        dropped.push(format!("delegationServiceAccountEmail {email}"));
    }
    if let Some(etag) = &etag {
        dropped.push(format!("etag {etag}"));
    }
    if let Some(time) = &update_time {
        dropped.push(format!("updateTime {time}"));
    }
    if !dropped.is_empty() {
        notes.push(format!(
            "Dropped (no binauthz equivalent; the Attestor object is the note): {}.",
            dropped.join(", ")
        ));
    }
    if dropped_pgp_ids > 0 {
        notes.push(
            "PGP key ids are not copied: binauthz computes them (the v4 fingerprint, as Google does)."
                .to_owned(),
        );
    }
    if public_keys.is_empty() {
        notes.push(
            "The attestor has no public keys: it vouches for nothing until one is added."
                .to_owned(),
        );
    }
    let attestor = Attestor::new(
        &name,
        AttestorSpec {
            description,
            public_keys,
            registry_signatures: None,
        },
    );
    Ok(Imported {
        object: attestor,
        notes,
    })
}

/// One `AttestorPublicKey`; the flag says a PGP id was dropped.
pub(super) fn decode_public_key(
    path: &str,
    value: &Value,
) -> Result<(AttestorPublicKey, bool), GcloudError> {
    let key = Fields::new(
        path,
        value,
        &["asciiArmoredPgpPublicKey", "comment", "id", "pkixPublicKey"],
    )?;
    let comment = key.string("comment")?;
    let id = key.string("id")?.filter(|id| !id.is_empty());
    match (
        key.string("asciiArmoredPgpPublicKey")?,
        key.get("pkixPublicKey"),
    ) {
        (Some(armored), None) => {
            let parsed = PgpPublicKey::from_armored(&armored)
                .map_err(|e| field_error(&key.child("asciiArmoredPgpPublicKey"), e.to_string()))?;
            if let Some(id) = &id
                && !id.eq_ignore_ascii_case(parsed.fingerprint())
            {
                return Err(field_error(
                    &key.child("id"),
                    format!(
                        "{id} is not the key's fingerprint {}; the description does not match its key",
                        parsed.fingerprint()
                    ),
                ));
            }
            Ok((
                AttestorPublicKey {
                    comment,
                    id: None,
                    ascii_armored_pgp_public_key: Some(armored),
                    pkix_public_key: None,
                },
                id.is_some(),
            ))
        }
        (None, Some(pkix)) => {
            let pkix_path = key.child("pkixPublicKey");
            let fields = Fields::new(
                &pkix_path,
                pkix,
                &["keyId", "publicKeyPem", "signatureAlgorithm"],
            )?;
            let Some(public_key_pem) = fields.string("publicKeyPem")? else {
                return Err(field_error(
                    &fields.child("publicKeyPem"),
                    "required; the PEM public key",
                ));
            };
            let algorithm_path = fields.child("signatureAlgorithm");
            let Some(algorithm) = fields.get("signatureAlgorithm") else {
                return Err(field_error(
                    &algorithm_path,
                    "required, e.g. ECDSA_P256_SHA256",
                ));
            };
            let google_algorithms: Vec<(&str, SignatureAlgorithm)> = SignatureAlgorithm::ALL
                .into_iter()
                .filter(|a| *a != SignatureAlgorithm::Ed25519)
                .map(|a| (a.as_str(), a))
                .collect();
            let signature_algorithm = enum_value(
                &algorithm_path,
                algorithm,
                "SIGNATURE_ALGORITHM_UNSPECIFIED",
                &google_algorithms,
            )?;
            let key_id = fields.string("keyId")?.filter(|k| !k.is_empty());
            let id = match (id, key_id) {
                (Some(id), Some(key_id)) if id != key_id => {
                    return Err(field_error(
                        &fields.child("keyId"),
                        format!(
                            "{key_id} differs from the key's id {id}; Google requires them equal"
                        ),
                    ));
                }
                (id, key_id) => id.or(key_id),
            };
            crate::crypto::pkix::PkixPublicKey::from_pem(
                &public_key_pem,
                signature_algorithm,
                id.as_deref(),
            )
            .map_err(|e| field_error(&pkix_path, e.to_string()))?;
            Ok((
                AttestorPublicKey {
                    comment,
                    id,
                    ascii_armored_pgp_public_key: None,
                    pkix_public_key: Some(PkixPublicKey {
                        public_key_pem,
                        signature_algorithm,
                    }),
                },
                false,
            ))
        }
        (Some(_), Some(_)) => Err(field_error(
            path,
            "set exactly one of asciiArmoredPgpPublicKey or pkixPublicKey, not both",
        )),
        (None, None) => Err(field_error(
            path,
            "set one of asciiArmoredPgpPublicKey or pkixPublicKey",
        )),
    }
}
