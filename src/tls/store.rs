//! The certificate served now: a rustls resolver that swaps certificates in memory.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::issue::parse_pem_certs;
use super::*;

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
    pub(super) attention: tokio::sync::Notify,
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

    pub(super) fn parse(material: &TlsMaterial) -> Result<CertifiedKey, TlsError> {
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
