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
//!
//! The certificate, the agencies' CAs and their CRLs are read as one piece
//! ([`material`]) and replaced while the gateway runs when their files
//! change ([`reload`]); each agency's client certificates are verified
//! against its own CA and CRLs ([`verifier`]).

mod der;
mod material;
mod reload;
mod verifier;

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::{pki_types::UnixTime, server::danger::ClientCertVerifier};
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
pub use material::AgencySources;
pub use reload::ReloadStatus;

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
    /// How often the certificate, key, client CAs and CRLs are checked for
    /// changes, in milliseconds (100 to 3600000); SIGHUP checks at once.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    30_000
}

impl TlsConfig {
    /// What is wrong, as `(key, message)`: the reload interval's bounds,
    /// and anything that stops the files from loading as they stand now.
    pub(crate) fn problems(
        &self,
        agencies: Vec<AgencySources>,
        base_dir: &Path,
    ) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(100..=3_600_000).contains(&self.reload_interval_ms) {
            out.push((
                "reload_interval_ms",
                format!(
                    "`{}` is out of range; between 100 and 3600000 milliseconds",
                    self.reload_interval_ms
                ),
            ));
        }
        let key = |e: &TlsError| match e {
            TlsError::Read { path, .. } if path.ends_with(&self.private_key) => "private_key",
            TlsError::Read { path, .. } if path.ends_with(&self.certificate) => "certificate",
            _ => "client_auth",
        };
        if let Err(e) =
            material::Sources::new(self, agencies, base_dir).load(time::OffsetDateTime::now_utc())
        {
            out.push((key(&e), e.to_string()));
        }
        out
    }
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
pub(crate) struct AgencyCa {
    agency: String,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// Accepts TLS connections on a listener with the material in service at
/// each handshake.
#[derive(Debug, Clone)]
pub struct Acceptor {
    live: Arc<reload::Live>,
    reload_interval: Duration,
}

impl Acceptor {
    /// Reads and checks the server's TLS material. `agencies` names each
    /// agency's client CA bundle and CRLs, relative to `base_dir`.
    pub fn new(
        tls: &TlsConfig,
        agencies: Vec<AgencySources>,
        base_dir: &Path,
    ) -> Result<Self, TlsError> {
        let live = reload::Live::load(material::Sources::new(tls, agencies, base_dir))?;
        Ok(Self {
            live,
            reload_interval: Duration::from_millis(tls.reload_interval_ms),
        })
    }

    /// Starts watching the files for changes; the task ends when aborted
    /// or when every clone of this acceptor is gone.
    pub fn watch(&self) -> tokio::task::JoinHandle<()> {
        self.live.watch(self.reload_interval)
    }

    /// What reloading has done so far.
    pub fn status(&self) -> ReloadStatus {
        self.live.status()
    }

    /// Turns a listener into a stream of connections that completed the
    /// TLS handshake and sent the HTTP/2 preface in time.
    pub fn incoming(self, listener: TcpListener) -> ReceiverStream<Result<TlsConn, io::Error>> {
        crate::transport::accept(listener, move |tcp, remote| {
            let this = self.clone();
            async move {
                let material = this.live.current();
                let mut stream = tokio_rustls::TlsAcceptor::from(material.config.clone())
                    .accept(tcp)
                    .await?;
                let info = peer_info(&material.agencies, &stream, remote);
                read_preface(&mut stream).await?;
                Ok(TlsConn {
                    inner: Guarded::new(stream),
                    info,
                })
            }
        })
    }
}

fn peer_info(
    agencies: &[AgencyCa],
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
    let agency = agencies
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
