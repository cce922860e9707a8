//! TLS in the server itself (rustls with ring): a certificate and key given by the operator, one
//! from an ACME authority ([`super::acme`]), or a self-signed certificate made on the first start
//! and kept, whose public-key pin tills learn from their join code. Handshakes run off the accept
//! loop, so a slow client delays nobody.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::sync::tls::spki_pin;

/// Why the server's TLS identity cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("making the self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS: {0}")]
    Config(String),
}

/// The server's certificate chain and key, ready to serve, and the pin of its key.
pub struct TlsIdentity {
    pub config: Arc<rustls::ServerConfig>,
    /// `sha256/<base64>` of the certificate's public key: what a join code carries.
    pub pin: String,
    /// Where the certificate is (for the log and `terminal add`).
    pub cert_path: PathBuf,
    /// With ACME: what a client offering the `acme-tls/1` protocol gets, an authority validating
    /// a TLS-ALPN-01 challenge (its connection ends with the handshake, never reaching a route).
    pub acme_challenge: Option<Arc<rustls::ServerConfig>>,
}

pub(crate) fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Loads a PEM certificate chain (leaf first) and its PEM private key.
pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    let leaf = chain
        .first()
        .ok_or_else(|| file_err(cert, "no certificate in the file"))?;
    let pin = spki_pin(leaf.as_ref()).map_err(|e| file_err(cert, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let config = config_builder()?
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            TlsError::Config(format!(
                "{} and {} do not make a usable identity: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(TlsIdentity {
        config: Arc::new(config),
        pin,
        cert_path: cert.to_owned(),
        acme_challenge: None,
    })
}

/// A server configuration (ring, TLS 1.2 and 1.3, no client certificates) waiting for its
/// certificate.
pub(crate) fn config_builder()
-> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, TlsError> {
    Ok(rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Config(e.to_string()))?
    .with_no_client_auth())
}

/// The self-signed identity kept in `dir` (`cert.pem`, `key.pem`), made on first use for
/// `names` (host names and addresses the certificate names; tills check the pin, not these).
pub fn self_signed(dir: &Path, names: &[String]) -> Result<TlsIdentity, TlsError> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let made = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
        crate::pass::write_atomically(&cert, made.cert.pem().as_bytes())
            .map_err(|e| file_err(&cert, e))?;
    }
    load(&cert, &key)
}

/// Writes a key readable by this user only, whole or not at all.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| file_err(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| file_err(path, e))?;
    }
    tmp.write_all(bytes).map_err(|e| file_err(path, e))?;
    tmp.as_file().sync_all().map_err(|e| file_err(path, e))?;
    tmp.persist(path).map_err(|e| file_err(path, e.error))?;
    Ok(())
}

/// Connections finished with their TLS handshake, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Handshakes under way at once; more connections wait in the kernel's backlog.
const HANDSHAKES: usize = 256;

impl TlsListener {
    /// Accepts on `tcp` and completes handshakes with `identity`, each on its own task.
    pub fn new(tcp: TcpListener, identity: &TlsIdentity) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let config = Arc::clone(&identity.config);
        let challenge = identity.acme_challenge.clone();
        let (done, ready) = mpsc::channel(HANDSHAKES);
        let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        continue;
                    }
                };
                let (config, challenge, done) =
                    (Arc::clone(&config), challenge.clone(), done.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        handshake(stream, config, challenge),
                    )
                    .await;
                    drop(slot);
                    match handshake {
                        Ok(Ok(Some(tls))) => {
                            let _ = done.send((tls, peer)).await;
                        }
                        Ok(Ok(None)) => tracing::debug!(%peer, "answered an ACME challenge"),
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

/// Completes a handshake: with `challenge` when the client offers the `acme-tls/1` protocol (an
/// ACME authority validating; the connection ends there), else with `config`.
async fn handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    challenge: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let validating = start
        .client_hello()
        .alpn()
        .is_some_and(|mut offered| offered.any(|p| p == super::acme::ACME_TLS_ALPN));
    match challenge.filter(|_| validating) {
        Some(challenge) => {
            start.into_stream(challenge).await?;
            Ok(None)
        }
        None => start.into_stream(config).await.map(Some),
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ends only with the runtime; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
