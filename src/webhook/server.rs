//! Serving an axum router over rustls: a TCP accept loop, a TLS handshake per connection
//! (with a deadline, off the accept loop), HTTP/1.1 or HTTP/2 by ALPN, graceful shutdown.
//!
//! Whatever clients do, what a replica holds for them is bounded: at most [`MAX_CONNECTIONS`]
//! connections, each with at most [`H1_BUFFER`] (HTTP/1) or [`H2_CONNECTION_WINDOW`] (HTTP/2)
//! of unread data, headers within [`HEADER_TIMEOUT`], and request bodies within the budgets of
//! [`super::body`]. With a client CA ([`server_config`]), only clients holding a certificate
//! it issued (the API server) get past the handshake.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// A client must finish the TLS handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1 client must send the request headers within this, also while a kept-alive
/// connection is idle (so idle connections close).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections get this long to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog. The API server multiplexes
/// its calls over a few HTTP/2 connections.
pub const MAX_CONNECTIONS: usize = 256;
/// HTTP/1 read buffer per connection (request line and headers must fit).
pub const H1_BUFFER: usize = 64 * 1024;
/// HTTP/2 flow-control windows: unread request data a client may send before it must wait.
pub const H2_CONNECTION_WINDOW: u32 = 256 * 1024;
const H2_STREAM_WINDOW: u32 = 128 * 1024;
/// HTTP/2 requests open at once on one connection.
const H2_MAX_STREAMS: u32 = 32;
/// Largest HTTP/2 header block.
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/2 pings find dead peers.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Why a client CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    /// No certificate in the bundle.
    #[error(
        "{0}: no PEM certificate found; give the CA that issued the API server's client certificate"
    )]
    Empty(String),
    /// A certificate is malformed or unusable as a root.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The roots of a PEM CA bundle (`--client-ca-file`), to verify client certificates with.
pub fn client_roots(path: &str, pem: &[u8]) -> Result<rustls::RootCertStore, ClientCaError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ClientCaError::Invalid {
            path: path.to_owned(),
            message: format!("not a PEM certificate bundle: {e}"),
        })?;
        roots.add(cert).map_err(|e| ClientCaError::Invalid {
            path: path.to_owned(),
            message: format!("unusable CA certificate: {e}"),
        })?;
    }
    if roots.is_empty() {
        return Err(ClientCaError::Empty(path.to_owned()));
    }
    Ok(roots)
}

/// The rustls configuration for a certificate resolver (e.g. one that rotates certificates in
/// memory), offering HTTP/2 and HTTP/1.1, with the aws-lc-rs provider. With `client_roots`,
/// every client must present a certificate issued by one of them.
pub fn server_config(
    resolver: Arc<dyn rustls::server::ResolvesServerCert>,
    client_roots: Option<rustls::RootCertStore>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| rustls::Error::General(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serve `router` over TLS on `listener` until `shutdown` resolves, then drain.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(H1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(HANDSHAKE_TIMEOUT);
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (slot, (stream, peer)) = tokio::select! {
            // Take a connection slot first: while all are in use, new connections wait in the
            // listen backlog instead of costing memory here.
            accepted = async {
                let slot = connections.clone().acquire_owned().await;
                (slot, listener.accept().await)
            } => match accepted {
                (Ok(slot), Ok(accepted)) => (slot, accepted),
                (_, Err(error)) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                // The semaphore is never closed.
                (Err(_), Ok(_)) => continue,
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        // Answers go out at once: without TCP_NODELAY a response written in more than one
        // segment can wait for the client's delayed ACK (40 ms on Linux).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some webhook connections did not finish in time");
    }
}
