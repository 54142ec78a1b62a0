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

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt as _};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

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

fn parse_pem_certs(key: &'static str, pem: &str) -> Result<Vec<Vec<u8>>, TlsError> {
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

fn to_jiff(
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
fn issued_by(leaf_der: &[u8], ca_der: &[u8]) -> bool {
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

fn x509_time(t: jiff::Timestamp) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second()).map_err(|_| TlsError::Time(t))
}

fn new_ca(now: jiff::Timestamp) -> Result<(String, String), TlsError> {
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

fn new_leaf(
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

fn first_pem_block(pem: &str) -> String {
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
fn keep_valid_cas(bundle_pem: &str, now: jiff::Timestamp) -> String {
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

fn pem_encode(der: &[u8]) -> String {
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

/// What the store serves now.
#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    ca_bundle: Vec<u8>,
    material: TlsMaterial,
}

/// The serving certificate of this replica: a rustls resolver over an atomically swapped
/// certificate, reloaded when the Secret changes.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwapOption<Loaded>,
    changes: tokio::sync::watch::Sender<u64>,
    /// Signalled when the Secret is deleted or unusable, so the leader re-issues at once.
    attention: tokio::sync::Notify,
}

impl CertStore {
    /// An empty store: it serves nothing until a certificate is loaded.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwapOption::empty(),
            changes: tokio::sync::watch::channel(0).0,
            attention: tokio::sync::Notify::new(),
        })
    }

    fn parse(material: &TlsMaterial) -> Result<CertifiedKey, TlsError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Parse {
                    key: CERT_KEY,
                    message: format!("bad PEM: {e}"),
                })?;
        if chain.is_empty() {
            return Err(TlsError::Parse {
                key: CERT_KEY,
                message: "no CERTIFICATE block".to_owned(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes()).map_err(|e| {
            TlsError::Parse {
                key: PRIVATE_KEY_KEY,
                message: format!("bad private key PEM: {e}"),
            }
        })?;
        parse_pem_certs(CA_CERT_KEY, &material.ca_bundle_pem)?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider)?;
        certified.keys_match()?;
        Ok(certified)
    }

    /// Load new material; on any parse error the current certificate stays and the error is
    /// returned. Returns true when the served certificate changed.
    pub fn load(&self, material: &TlsMaterial) -> Result<bool, TlsError> {
        if self
            .current
            .load()
            .as_ref()
            .is_some_and(|l| l.material == *material)
        {
            return Ok(false);
        }
        let certified = Self::parse(material)?;
        self.current.store(Some(Arc::new(Loaded {
            certified: Arc::new(certified),
            ca_bundle: material.ca_bundle_pem.as_bytes().to_vec(),
            material: material.clone(),
        })));
        self.changes.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Load the material of a Secret (see [`CertStore::load`]).
    pub fn load_secret(&self, secret: &Secret) -> Result<bool, TlsError> {
        self.load(&TlsMaterial::from_secret(secret)?)
    }

    /// The PEM CA bundle that verifies the served certificate, once one is loaded: the
    /// `caBundle` of the webhook configuration.
    pub fn ca_bundle(&self) -> Option<Vec<u8>> {
        self.current.load().as_ref().map(|l| l.ca_bundle.clone())
    }

    /// True once a certificate is loaded (for readiness).
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// The certificate served now, if any.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|l| l.certified.clone())
    }

    /// A receiver that changes whenever the served certificate (and CA bundle) changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// This store as a rustls certificate resolver for the webhook's `ServerConfig`.
    pub fn resolver(self: &Arc<Self>) -> Arc<dyn ResolvesServerCert> {
        self.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certified_key()
    }
}

/// Every replica: follow the TLS Secret and load each version into the store, forever.
/// A bad version is logged and the previous certificate kept.
pub async fn follow_secret(
    api: Api<Secret>,
    store: Arc<CertStore>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let config = crate::watcher::config().fields(&format!("metadata.name={SECRET_NAME}"));
    let _counted = crate::watcher::Counted::open(&metrics, "secrets");
    let mut events = std::pin::pin!(kube::runtime::WatchStreamExt::backoff(
        watcher(api, config),
        crate::watcher::WatchBackoff::new()
    ));
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => {
                match store.load_secret(&secret) {
                    Ok(true) => tracing::info!(
                        secret = SECRET_NAME,
                        version = secret.resource_version().unwrap_or_default(),
                        "loaded the webhook serving certificate"
                    ),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "keeping the previous webhook serving certificate");
                        store.attention.notify_one();
                    }
                }
            }
            Ok(watcher::Event::Delete(_)) => {
                tracing::warn!(
                    secret = SECRET_NAME,
                    "the TLS Secret was deleted; serving the previous certificate until the leader issues a new one"
                );
                store.attention.notify_one();
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(error) => tracing::warn!(%error, secret = SECRET_NAME, "watch failed; retrying"),
        }
    }
}

/// Leader only: create or rotate the TLS Secret once. Returns the plan carried out.
pub async fn ensure_secret(
    api: &Api<Secret>,
    sans: &BTreeSet<String>,
    now: jiff::Timestamp,
) -> Result<Plan, TlsError> {
    let existing = api.get_opt(SECRET_NAME).await?;
    let current = existing
        .as_ref()
        .and_then(|s| TlsMaterial::from_secret(s).ok());
    let plan = plan(current.as_ref(), sans, now);
    let Some(material) = execute(&plan, current.as_ref(), sans, now)? else {
        return Ok(plan);
    };
    let labels = BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_owned(),
        "binauthz".to_owned(),
    )]);
    match existing {
        None => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(SECRET_NAME.to_owned()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".to_owned()),
                data: Some(material.to_data()),
                ..Secret::default()
            };
            api.create(&PostParams::default(), &secret).await?;
        }
        Some(mut secret) => {
            // Replace with the read resourceVersion: a concurrent writer makes this fail
            // (409) instead of one of us silently losing its CA.
            secret.data = Some(material.to_data());
            secret.string_data = None;
            secret.metadata.managed_fields = None;
            api.replace(SECRET_NAME, &PostParams::default(), &secret)
                .await?;
        }
    }
    Ok(plan)
}

/// Leader only: keep the TLS Secret valid, checking now, every `interval`, and at once when
/// the store reports the Secret deleted or unusable.
pub async fn maintain_secret(
    api: Api<Secret>,
    sans: BTreeSet<String>,
    interval: Duration,
    store: Arc<CertStore>,
) {
    let mut retry = crate::watcher::Retry::up_to(Duration::from_secs(64));
    loop {
        let wait = match ensure_secret(&api, &sans, jiff::Timestamp::now()).await {
            Ok(plan) => {
                if plan != Plan::Keep {
                    tracing::info!(
                        ?plan,
                        secret = SECRET_NAME,
                        "updated the webhook TLS Secret"
                    );
                }
                retry.succeeded();
                interval
            }
            Err(error) => {
                tracing::warn!(%error, "cannot update the webhook TLS Secret; retrying");
                retry.failed()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = store.attention.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
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
