//! The webhook's serving certificate: a CA and a serving certificate kept in one Secret.
//!
//! The leader issues them (rcgen) and rotates the serving certificate before it expires; every
//! replica loads the Secret into a [`CertStore`], a rustls certificate resolver that swaps the
//! certificate in memory when the Secret changes and keeps the old one when the new one does
//! not parse. The CA goes into the `caBundle` of the generated webhook configuration.
//!
//! Secret layout (`kubernetes.io/tls`): `tls.crt` and `tls.key` (the serving certificate),
//! `ca.crt` (every trusted CA, the active one first) and `ca.key` (the active CA's key). A new
//! CA is first added to the bundle and only signs serving certificates some minutes later, so
//! the API server trusts it before any replica serves a certificate from it.
//!
//! [`issue`] plans and issues certificates (pure, rcgen), [`store`] serves them to rustls,
//! [`secret`] reads and writes the Secret.

mod issue;
mod secret;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

pub use issue::{Plan, cert_facts, execute, plan};
pub use secret::{ensure_secret, follow_secret, maintain_secret};
pub use store::CertStore;
/// Name of the Secret holding the CA and the serving certificate.
pub const SECRET_NAME: &str = "binauthz-webhook-tls";
/// Secret key of the serving certificate (PEM).
pub const CERT_KEY: &str = "tls.crt";
/// Secret key of the serving certificate's private key (PEM, PKCS#8).
pub const PRIVATE_KEY_KEY: &str = "tls.key";
/// Secret key of the trusted CAs (PEM bundle, the active CA first).
pub const CA_CERT_KEY: &str = "ca.crt";
/// Secret key of the active CA's private key (PEM, PKCS#8).
pub const CA_PRIVATE_KEY_KEY: &str = "ca.key";

/// How long a CA is valid.
pub const CA_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(10 * 365 * 24);
/// A CA this close to expiry is replaced (a new one is added to the bundle).
pub const CA_RENEW_BEFORE: jiff::SignedDuration = jiff::SignedDuration::from_hours(365 * 24);
/// How long a serving certificate is valid.
pub const LEAF_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(365 * 24);
/// Certificates start this long before they are issued, to tolerate clock skew.
const BACKDATE: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);
/// A new CA signs serving certificates only after it has been in the bundle this long.
const CA_SETTLE: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// Errors of certificate issuance and loading, one line each.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block or certificate does not parse.
    #[error("Secret {SECRET_NAME} key {key}: {message}")]
    Parse {
        /// The Secret key that holds the bad data.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A Secret key is missing.
    #[error(
        "Secret {SECRET_NAME} has no key {0}; delete the Secret to have the leader issue a new one"
    )]
    Missing(&'static str),
    /// rcgen could not generate a key or certificate.
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("Secret {SECRET_NAME}: rustls rejects the certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// A time is out of range for X.509.
    #[error("time {0} is out of range for a certificate")]
    Time(jiff::Timestamp),
    /// Reading or writing the Secret failed.
    #[error("Secret {SECRET_NAME}: {0}")]
    Kube(#[from] kube::Error),
}

/// The PEM contents of the TLS Secret.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TlsMaterial {
    /// Trusted CAs, the active one first.
    pub ca_bundle_pem: String,
    /// The active CA's private key.
    pub ca_key_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

impl TlsMaterial {
    /// Read the material from a Secret's data; `None` when a key is missing.
    pub fn from_secret(secret: &Secret) -> Result<Self, TlsError> {
        let data = secret.data.clone().unwrap_or_default();
        let get = |key: &'static str| -> Result<String, TlsError> {
            let bytes = data.get(key).ok_or(TlsError::Missing(key))?;
            String::from_utf8(bytes.0.clone()).map_err(|e| TlsError::Parse {
                key,
                message: format!("not UTF-8 PEM: {e}"),
            })
        };
        Ok(Self {
            ca_bundle_pem: get(CA_CERT_KEY)?,
            ca_key_pem: get(CA_PRIVATE_KEY_KEY)?,
            cert_pem: get(CERT_KEY)?,
            key_pem: get(PRIVATE_KEY_KEY)?,
        })
    }

    /// The Secret data for this material.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT_KEY, &self.ca_bundle_pem),
            (CA_PRIVATE_KEY_KEY, &self.ca_key_pem),
            (CERT_KEY, &self.cert_pem),
            (PRIVATE_KEY_KEY, &self.key_pem),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }
}

/// Facts about one certificate, read with x509-parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// Start of validity.
    pub not_before: jiff::Timestamp,
    /// End of validity.
    pub not_after: jiff::Timestamp,
    /// Subject alternative names: DNS names and IP addresses as text.
    pub sans: BTreeSet<String>,
    /// DER bytes.
    pub der: Vec<u8>,
}

/// The names the serving certificate must carry: the Service's DNS names, and the host of
/// the webhook URL when one is given.
pub fn serving_names(service: &str, namespace: &str, url_host: Option<&str>) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
    .into_iter()
    .collect();
    if let Some(host) = url_host {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => names.insert(ip.to_string()),
            Err(_) => names.insert(host.to_owned()),
        };
    }
    names
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::issue::{issued_by, new_ca, parse_pem_certs};
    use super::*;

    fn names() -> BTreeSet<String> {
        serving_names("binauthz", "binauthz-system", Some("127.0.0.1"))
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn names_cover_service_and_url_host() {
        let n = names();
        assert!(n.contains("binauthz.binauthz-system.svc"));
        assert!(n.contains("binauthz.binauthz-system.svc.cluster.local"));
        assert!(n.contains("127.0.0.1"));
        assert!(serving_names("s", "n", Some("[::1]")).contains("::1"));
    }

    #[test]
    fn fresh_material_is_kept_and_serves() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(plan(None, &names(), now), Plan::NewAll);
        let m = execute(&Plan::NewAll, None, &names(), now)
            .unwrap()
            .unwrap();
        assert_eq!(plan(Some(&m), &names(), now), Plan::Keep);
        let leaf = cert_facts(
            CERT_KEY,
            &parse_pem_certs(CERT_KEY, &m.cert_pem).unwrap()[0],
        )
        .unwrap();
        assert_eq!(leaf.sans, names());
        let store = CertStore::new();
        assert!(!store.is_loaded());
        assert!(store.load(&m).unwrap());
        assert!(!store.load(&m).unwrap(), "same material is no change");
        assert_eq!(store.ca_bundle().unwrap(), m.ca_bundle_pem.as_bytes());
        assert!(store.certified_key().is_some());
    }

    #[test]
    fn leaf_renews_at_two_thirds_and_on_new_names() {
        let now = at("2026-01-01T00:00:00Z");
        let m = execute(&Plan::NewAll, None, &names(), now)
            .unwrap()
            .unwrap();
        let later = now + jiff::SignedDuration::from_hours(200 * 24);
        assert_eq!(plan(Some(&m), &names(), later), Plan::Keep);
        let renew = now + jiff::SignedDuration::from_hours(250 * 24);
        assert_eq!(plan(Some(&m), &names(), renew), Plan::NewLeaf);
        let other = serving_names("binauthz", "other", None);
        assert_eq!(plan(Some(&m), &other, now), Plan::NewLeaf);
        let renewed = execute(&Plan::NewLeaf, Some(&m), &other, now)
            .unwrap()
            .unwrap();
        assert_eq!(renewed.ca_bundle_pem, m.ca_bundle_pem, "the CA stays");
        assert_ne!(renewed.cert_pem, m.cert_pem);
        assert_eq!(plan(Some(&renewed), &other, now), Plan::Keep);
    }

    #[test]
    fn ca_rotation_adds_first_and_signs_after_settling() {
        let start = at("2026-01-01T00:00:00Z");
        let m = execute(&Plan::NewAll, None, &names(), start)
            .unwrap()
            .unwrap();
        let near_end = start + CA_LIFETIME - jiff::SignedDuration::from_hours(100 * 24);
        // The serving certificate would need renewing too, but the CA goes first.
        assert_eq!(plan(Some(&m), &names(), near_end), Plan::AddCa);
        let added = execute(&Plan::AddCa, Some(&m), &names(), near_end)
            .unwrap()
            .unwrap();
        assert_eq!(
            parse_pem_certs(CA_CERT_KEY, &added.ca_bundle_pem)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            added.cert_pem, m.cert_pem,
            "the serving certificate stays at first"
        );
        // The old leaf expired long ago in this scenario, so it is renewed from the new CA at once.
        assert_eq!(plan(Some(&added), &names(), near_end), Plan::NewLeaf);
        let renewed = execute(&Plan::NewLeaf, Some(&added), &names(), near_end)
            .unwrap()
            .unwrap();
        assert_eq!(plan(Some(&renewed), &names(), near_end), Plan::Keep);
        let ders = parse_pem_certs(CA_CERT_KEY, &renewed.ca_bundle_pem).unwrap();
        let leaf = parse_pem_certs(CERT_KEY, &renewed.cert_pem).unwrap();
        assert!(issued_by(&leaf[0], &ders[0]));
    }

    #[test]
    fn a_valid_leaf_waits_for_a_new_ca_to_settle() {
        let start = at("2026-01-01T00:00:00Z");
        let m = execute(&Plan::NewAll, None, &names(), start)
            .unwrap()
            .unwrap();
        let (ca, key) = new_ca(start + jiff::SignedDuration::from_hours(10)).unwrap();
        let added = TlsMaterial {
            ca_bundle_pem: format!("{ca}{}", m.ca_bundle_pem),
            ca_key_pem: key,
            ..m.clone()
        };
        let just_after =
            start + jiff::SignedDuration::from_hours(10) + jiff::SignedDuration::from_mins(1);
        assert_eq!(plan(Some(&added), &names(), just_after), Plan::Keep);
        let settled = start + jiff::SignedDuration::from_hours(12);
        assert_eq!(plan(Some(&added), &names(), settled), Plan::NewLeaf);
    }

    #[test]
    fn bad_material_never_replaces_a_good_certificate() {
        let now = at("2026-01-01T00:00:00Z");
        let m = execute(&Plan::NewAll, None, &names(), now)
            .unwrap()
            .unwrap();
        let store = CertStore::new();
        store.load(&m).unwrap();
        let before = store.certified_key().unwrap();
        let broken = TlsMaterial {
            cert_pem: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into(),
            ..m.clone()
        };
        assert!(store.load(&broken).is_err());
        let other = execute(&Plan::NewAll, None, &names(), now)
            .unwrap()
            .unwrap();
        let mismatched = TlsMaterial {
            key_pem: other.key_pem.clone(),
            ..m.clone()
        };
        assert!(matches!(store.load(&mismatched), Err(TlsError::Rustls(_))));
        assert!(Arc::ptr_eq(&before, &store.certified_key().unwrap()));
        assert_eq!(plan(Some(&broken), &names(), now), Plan::NewLeaf);
        let no_ca = TlsMaterial {
            ca_key_pem: "garbage".into(),
            ..m
        };
        assert_eq!(plan(Some(&no_ca), &names(), now), Plan::NewAll);
    }

    #[test]
    fn secret_round_trip() {
        let now = at("2026-01-01T00:00:00Z");
        let m = execute(&Plan::NewAll, None, &names(), now)
            .unwrap()
            .unwrap();
        let secret = Secret {
            data: Some(m.to_data()),
            ..Secret::default()
        };
        assert_eq!(TlsMaterial::from_secret(&secret).unwrap(), m);
        assert!(matches!(
            TlsMaterial::from_secret(&Secret::default()),
            Err(TlsError::Missing(_))
        ));
    }
}
