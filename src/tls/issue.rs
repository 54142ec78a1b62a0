//! Planning and issuing the CA and the serving certificate (pure: no API calls).

use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::*;

pub(super) fn parse_pem_certs(key: &'static str, pem: &str) -> Result<Vec<Vec<u8>>, TlsError> {
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Parse {
            key,
            message: format!("bad PEM: {e}"),
        })?;
    if ders.is_empty() {
        return Err(TlsError::Parse {
            key,
            message: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(ders)
}

pub(super) fn to_jiff(
    key: &'static str,
    time: x509_parser::time::ASN1Time,
) -> Result<jiff::Timestamp, TlsError> {
    jiff::Timestamp::from_second(time.timestamp()).map_err(|e| TlsError::Parse {
        key,
        message: format!("validity time out of range: {e}"),
    })
}

/// Parse one DER certificate into the facts the rotation plan needs.
pub fn cert_facts(key: &'static str, der: &[u8]) -> Result<CertFacts, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::Parse {
        key,
        message: format!("bad certificate: {e}"),
    })?;
    let mut sans = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => {
                    sans.insert((*dns).to_owned());
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertFacts {
        not_before: to_jiff(key, cert.validity().not_before)?,
        not_after: to_jiff(key, cert.validity().not_after)?,
        sans,
        der: der.to_vec(),
    })
}

/// True when `leaf_der` carries a signature by the key of `ca_der`.
pub(super) fn issued_by(leaf_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, leaf)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(leaf_der),
        x509_parser::parse_x509_certificate(ca_der),
    ) else {
        return false;
    };
    leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// What the leader must do with the TLS Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Everything is valid: leave it.
    Keep,
    /// Nothing usable: issue a new CA and a serving certificate.
    NewAll,
    /// The active CA nears expiry: add a new CA in front of the bundle, keep the serving certificate.
    AddCa,
    /// Issue a new serving certificate from the active CA (expiring, wrong names, old CA),
    /// and drop expired CAs from the bundle.
    NewLeaf,
}

/// Decide what to do with the current material at time `now`, wanting these names.
pub fn plan(current: Option<&TlsMaterial>, sans: &BTreeSet<String>, now: jiff::Timestamp) -> Plan {
    let Some(current) = current else {
        return Plan::NewAll;
    };
    let Ok(cas) = parse_pem_certs(CA_CERT_KEY, &current.ca_bundle_pem) else {
        return Plan::NewAll;
    };
    let Some(Ok(active)) = cas.first().map(|der| cert_facts(CA_CERT_KEY, der)) else {
        return Plan::NewAll;
    };
    if KeyPair::from_pem(&current.ca_key_pem).is_err() || active.not_after <= now {
        return Plan::NewAll;
    }
    let leaf = parse_pem_certs(CERT_KEY, &current.cert_pem)
        .ok()
        .and_then(|ders| ders.into_iter().next())
        .and_then(|der| cert_facts(CERT_KEY, &der).ok());
    let Some(leaf) = leaf else {
        return Plan::NewLeaf;
    };
    if CertStore::parse(current).is_err() {
        return Plan::NewLeaf;
    }
    if active.not_after.duration_since(now) < CA_RENEW_BEFORE {
        return Plan::AddCa;
    }
    let lifetime = leaf.not_after.duration_since(leaf.not_before);
    let renew_at = leaf.not_before + lifetime / 3 * 2;
    let expiring = now >= renew_at || leaf.not_after <= now;
    let from_active = issued_by(&leaf.der, &active.der);
    let settled = now.duration_since(active.not_before) >= BACKDATE + CA_SETTLE;
    let trusted = cas.iter().any(|ca| issued_by(&leaf.der, ca));
    if !trusted || expiring || leaf.sans != *sans || (!from_active && settled) {
        return Plan::NewLeaf;
    }
    Plan::Keep
}

pub(super) fn x509_time(t: jiff::Timestamp) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|_| TlsError::Time(t))
}

pub(super) fn new_ca(now: jiff::Timestamp) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("binauthz webhook CA {}", now.as_second()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = x509_time(now - BACKDATE)?;
    params.not_after = x509_time(now + CA_LIFETIME)?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub(super) fn new_leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    sans: &BTreeSet<String>,
    now: jiff::Timestamp,
) -> Result<(String, String), TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.iter().cloned().collect::<Vec<_>>())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        sans.iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "binauthz".to_owned()),
    );
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = x509_time(now - BACKDATE)?;
    params.not_after = x509_time(now + LEAF_LIFETIME)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

pub(super) fn first_pem_block(pem: &str) -> String {
    match pem.find("-----END CERTIFICATE-----") {
        Some(end) => format!("{}\n", &pem[..end + "-----END CERTIFICATE-----".len()]),
        None => pem.to_owned(),
    }
}

/// Carry out a plan: the new material, or `None` for [`Plan::Keep`].
pub fn execute(
    plan: &Plan,
    current: Option<&TlsMaterial>,
    sans: &BTreeSet<String>,
    now: jiff::Timestamp,
) -> Result<Option<TlsMaterial>, TlsError> {
    match (plan, current) {
        (Plan::Keep, _) => Ok(None),
        (Plan::NewAll, _) | (_, None) => {
            let (ca_cert, ca_key) = new_ca(now)?;
            let (cert, key) = new_leaf(&ca_cert, &ca_key, sans, now)?;
            Ok(Some(TlsMaterial {
                ca_bundle_pem: ca_cert,
                ca_key_pem: ca_key,
                cert_pem: cert,
                key_pem: key,
            }))
        }
        (Plan::AddCa, Some(current)) => {
            let (ca_cert, ca_key) = new_ca(now)?;
            Ok(Some(TlsMaterial {
                ca_bundle_pem: format!("{ca_cert}{}", keep_valid_cas(&current.ca_bundle_pem, now)),
                ca_key_pem: ca_key,
                ..current.clone()
            }))
        }
        (Plan::NewLeaf, Some(current)) => {
            let active = first_pem_block(&current.ca_bundle_pem);
            let (cert, key) = new_leaf(&active, &current.ca_key_pem, sans, now)?;
            Ok(Some(TlsMaterial {
                ca_bundle_pem: keep_valid_cas(&current.ca_bundle_pem, now),
                cert_pem: cert,
                key_pem: key,
                ..current.clone()
            }))
        }
    }
}

/// The bundle without CAs that have expired (the active one is always kept).
pub(super) fn keep_valid_cas(bundle_pem: &str, now: jiff::Timestamp) -> String {
    let Ok(ders) = parse_pem_certs(CA_CERT_KEY, bundle_pem) else {
        return bundle_pem.to_owned();
    };
    let mut out = String::new();
    for (i, der) in ders.iter().enumerate() {
        let valid = cert_facts(CA_CERT_KEY, der).is_ok_and(|f| f.not_after > now);
        if i == 0 || valid {
            out.push_str(&pem_encode(der));
        }
    }
    out
}

pub(super) fn pem_encode(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
