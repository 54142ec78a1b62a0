//! Serving certificates for tests, issued by binauthz's own `tls` module.

use std::collections::BTreeSet;

use binauthz::tls::{self, CertStore, TlsMaterial};

/// A new CA and a serving certificate for 127.0.0.1 (the CA's PEM is `ca_bundle_pem`), and a
/// rustls configuration serving it as the webhook does.
pub fn loopback_tls() -> (TlsMaterial, rustls::ServerConfig) {
    super::cluster::install_crypto_provider();
    let names = BTreeSet::from(["127.0.0.1".to_owned()]);
    let material = tls::execute(&tls::Plan::NewAll, None, &names, jiff::Timestamp::now())
        .expect("issue a CA and a serving certificate")
        .expect("new material");
    let store = CertStore::new();
    store.load(&material).expect("load the serving certificate");
    let config = binauthz::webhook::server::server_config(store.resolver(), None)
        .expect("a rustls configuration");
    (material, config)
}
