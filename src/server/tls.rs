//! Optional TLS for the listener (`[tls]`), with certificate reload.
//!
//! [`MaybeTls`] is the listener `serve` runs on: plain TCP, or TCP whose connections finish a
//! rustls handshake first. Handshakes run in their own tasks (a slow or broken client never
//! holds up the others) and a failed one only drops that connection. The certificate chain and
//! key are re-read when the files' content changes (polled: cert-manager and Kubernetes Secret
//! updates swap symlinks) and new handshakes use the new pair at once; a pair that does not
//! load keeps the previous one in force.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[tls]`: serve HTTPS with this certificate chain and key (PEM files).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the files are checked for a new certificate.
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_ms() -> u64 {
    5000
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The PEM content is not a certificate chain or key.
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    /// The key is of a kind rustls cannot sign with.
    #[error("{path}: unsupported private key: {message}")]
    Key { path: PathBuf, message: String },
}

/// The certificate in use, swapped whole on reload.
pub struct ReloadingCert {
    config: TlsConfig,
    current: RwLock<(Arc<CertifiedKey>, blake3::Hash)>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.config.cert_file)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair named by `config`.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let (key, digest) = load_pair(config)?;
        Ok(Arc::new(Self {
            config: config.clone(),
            current: RwLock::new((key, digest)),
        }))
    }

    /// Re-reads the files; `Ok(true)` when the pair changed. On error the old pair stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (key, digest) = load_pair(&self.config)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.1 == digest {
            return Ok(false);
        }
        *current = (key, digest);
        Ok(true)
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certified key of the PEM files, and a digest of their content.
fn load_pair(config: &TlsConfig) -> Result<(Arc<CertifiedKey>, blake3::Hash), TlsError> {
    let cert_pem = read(&config.cert_file)?;
    let key_pem = read(&config.key_file)?;
    let pem_error = |path: &Path, message: String| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&config.cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(&config.cert_file, "no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error(&config.key_file, e.to_string()))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Key {
            path: config.key_file.clone(),
            message: e.to_string(),
        })?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&cert_pem).update(&key_pem);
    Ok((
        Arc::new(CertifiedKey::new(chain, signing)),
        hasher.finalize(),
    ))
}

/// The rustls server config on `cert` (HTTP/1.1 over TLS, ring provider).
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A connection of [`MaybeTls`]: plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The service's listener: plain TCP, or TLS with certificate reload.
pub struct MaybeTls(Listening);

enum Listening {
    Plain(TcpListener),
    Tls {
        local: SocketAddr,
        handshaken: tokio::sync::mpsc::Receiver<(Conn, SocketAddr)>,
        _tasks: Vec<AbortOnDrop>,
    },
}

impl MaybeTls {
    /// `tcp` as is without `[tls]`; otherwise loads the certificate and starts the handshake
    /// and reload tasks (call inside the runtime).
    pub fn new(tcp: TcpListener, tls: Option<&TlsConfig>) -> anyhow::Result<Self> {
        let Some(tls) = tls else {
            return Ok(Self(Listening::Plain(tcp)));
        };
        let cert = ReloadingCert::load(tls)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert.clone())?));
        let local = tcp.local_addr()?;
        let (tx, handshaken) = tokio::sync::mpsc::channel(64);
        let accept = tokio::spawn(accept_loop(tcp, acceptor, tx));
        let reload = tokio::spawn(reload_loop(cert, tls.reload_interval_ms));
        Ok(Self(Listening::Tls {
            local,
            handshaken,
            _tasks: vec![AbortOnDrop(accept), AbortOnDrop(reload)],
        }))
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.0, Listening::Tls { .. })
    }
}

/// Accepts TCP connections and hands each to its own handshake task.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: tokio::sync::mpsc::Sender<(Conn, SocketAddr)>,
) {
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((Conn::Tls(Box::new(tls)), addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

/// Polls the certificate files and swaps in a changed pair.
async fn reload_loop(cert: Arc<ReloadingCert>, interval_ms: u64) {
    let interval = Duration::from_millis(interval_ms.max(50));
    loop {
        tokio::time::sleep(interval).await;
        match cert.reload() {
            Ok(true) => {
                tracing::info!(cert = %cert.config.cert_file.display(), "TLS certificate reloaded")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays in force")
            }
        }
    }
}

impl axum::serve::Listener for MaybeTls {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.0 {
            Listening::Plain(tcp) => {
                let (stream, addr) = axum::serve::Listener::accept(tcp).await;
                (Conn::Plain(stream), addr)
            }
            Listening::Tls { handshaken, .. } => match handshaken.recv().await {
                Some(pair) => pair,
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match &self.0 {
            Listening::Plain(tcp) => tcp.local_addr(),
            Listening::Tls { local, .. } => Ok(*local),
        }
    }
}

/// A client builder that also trusts the CA certificates of `ca_file` (PEM), for remote
/// services behind a private CA; the webpki roots stay trusted.
pub fn client_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, TlsError> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        let pem = read(path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                path: path.to_path_buf(),
                message: "no certificate".into(),
            });
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    Ok(builder)
}
