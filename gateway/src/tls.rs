//! TLS for the gRPC listener: rustls with the aws-lc-rs provider, TLS 1.3
//! only unless configured otherwise, the post-quantum hybrid key exchange
//! `X25519MLKEM768` preferred, and optional or required client certificates
//! issued by each agency's own CA.
//!
//! Handshakes run in their own tasks with a deadline that also covers the
//! HTTP/2 preface (`transport.rs`), so a slow or silent client cannot hold
//! up the accept loop; only completed handshakes reach the gRPC server.
//! Each connection carries a [`PeerInfo`]: the remote
//! address, the SHA-256 thumbprint of the client certificate (for
//! certificate-bound tokens, RFC 8705) and the agency whose CA issued it.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::transport::{Guarded, read_preface};

pub use crate::transport::HANDSHAKE_TIMEOUT;

/// Whether clients must present certificates.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are requested.
    #[default]
    None,
    /// A certificate is verified if presented.
    Optional,
    /// Every client must present a certificate from an agency's CA.
    Required,
}

/// The `[server.tls]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain presented by the gateway, leaf first.
    pub certificate: PathBuf,
    /// PEM private key for the certificate (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// Whether clients must present certificates from their agency's CA
    /// (`[[agency]] client_ca`): `none`, `optional` or `required`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Also accept TLS 1.2. Off by default: TLS 1.3 only.
    #[serde(default)]
    pub allow_tls12: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read `{path}`: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// What the gateway knows about the peer of one connection.
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The remote address.
    pub remote_addr: Option<SocketAddr>,
    /// SHA-256 of the client certificate's DER, if one was presented.
    pub certificate_sha256: Option<[u8; 32]>,
    /// The agency whose CA issued the client certificate.
    pub agency: Option<String>,
}

/// A TLS connection the gRPC server can serve.
#[derive(Debug)]
pub struct TlsConn {
    inner: Guarded<tokio_rustls::server::TlsStream<TcpStream>>,
    info: PeerInfo,
}

/// One agency's client CA, to tell which agency a certificate belongs to.
#[derive(Debug, Clone)]
struct AgencyCa {
    agency: String,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// Accepts TLS connections on a listener.
#[derive(Clone)]
pub struct Acceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    agencies: Arc<Vec<AgencyCa>>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("agencies", &self.agencies.len())
            .finish_non_exhaustive()
    }
}

impl Acceptor {
    /// Builds the server's TLS configuration. `agency_cas` pairs each agency
    /// with the PEM file of the CA that issues its client certificates.
    pub fn new(
        tls: &TlsConfig,
        agency_cas: &[(String, PathBuf)],
        base_dir: &Path,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = read_certs(&base_dir.join(&tls.certificate))?;
        let key = read_key(&base_dir.join(&tls.private_key))?;

        let mut all_roots = RootCertStore::empty();
        let mut agencies = Vec::new();
        for (agency, path) in agency_cas {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&base_dir.join(path))? {
                roots
                    .add(cert.clone())
                    .map_err(|e| TlsError::Config(format!("CA for `{agency}`: {e}")))?;
                all_roots
                    .add(cert)
                    .map_err(|e| TlsError::Config(format!("CA for `{agency}`: {e}")))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Config(format!("CA for `{agency}`: {e}")))?;
            agencies.push(AgencyCa {
                agency: agency.clone(),
                verifier,
            });
        }

        let versions: &[&rustls::SupportedProtocolVersion] = if tls.allow_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match tls.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            mode => {
                if agencies.is_empty() {
                    return Err(TlsError::Config(
                        "client certificates are requested but no `[[agency]]` has a `client_ca`"
                            .into(),
                    ));
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(all_roots), provider);
                let verifier = if mode == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?,
                )
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            agencies: Arc::new(agencies),
        })
    }

    /// Turns a listener into a stream of connections that completed the
    /// TLS handshake and sent the HTTP/2 preface in time.
    pub fn incoming(self, listener: TcpListener) -> ReceiverStream<Result<TlsConn, io::Error>> {
        crate::transport::accept(listener, move |tcp, remote| {
            let this = self.clone();
            async move {
                let mut stream = this.acceptor.accept(tcp).await?;
                let info = this.peer_info(&stream, remote);
                read_preface(&mut stream).await?;
                Ok(TlsConn {
                    inner: Guarded::new(stream),
                    info,
                })
            }
        })
    }

    fn peer_info(
        &self,
        stream: &tokio_rustls::server::TlsStream<TcpStream>,
        remote: SocketAddr,
    ) -> PeerInfo {
        let (_, session) = stream.get_ref();
        let certs = session.peer_certificates().unwrap_or_default();
        let Some((leaf, intermediates)) = certs.split_first() else {
            return PeerInfo {
                remote_addr: Some(remote),
                ..PeerInfo::default()
            };
        };
        let now = UnixTime::now();
        let agency = self
            .agencies
            .iter()
            .find(|a| {
                a.verifier
                    .verify_client_cert(leaf, intermediates, now)
                    .is_ok()
            })
            .map(|a| a.agency.clone());
        PeerInfo {
            remote_addr: Some(remote),
            certificate_sha256: Some(Sha256::digest(leaf.as_ref()).into()),
            agency,
        }
    }
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The peer of a request, whether it arrived over TLS or plain TCP.
pub fn peer(extensions: &http::Extensions) -> PeerInfo {
    if let Some(info) = extensions.get::<PeerInfo>() {
        return info.clone();
    }
    PeerInfo {
        remote_addr: extensions
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr()),
        ..PeerInfo::default()
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Read {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
