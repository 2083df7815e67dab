//! The channel OTLP is exported over: plaintext HTTP/2 to an `http://`
//! collector, rustls to an `https://` one, through a connector as the
//! federation client does, so the exporter brings no TLS stack of its own
//! (tonic's TLS features would add a second provider build and roots
//! bundle). The collector is checked against `otlp_ca` or, without it, the
//! system's trust store; a client certificate is presented where the
//! collector requires mutual TLS.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tonic::transport::{Channel, Endpoint};

/// TLS settings for an `https://` collector, paths already resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct OtlpTls {
    /// PEM CAs to trust instead of the system's.
    pub(crate) ca: Option<PathBuf>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
}

/// A lazily connected channel to `endpoint`.
pub(crate) fn channel(endpoint: &str, tls: &OtlpTls) -> Result<Channel, String> {
    let uri: http::Uri = endpoint.parse().map_err(|e| format!("not a URL: {e}"))?;
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    match uri.scheme_str() {
        Some("http") => return Ok(channel.connect_lazy()),
        Some("https") => {}
        _ => return Err("the URL must start `http://` or `https://`".into()),
    }
    let host = uri
        .host()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let config = Arc::new(client_config(tls)?);
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("`{host}`: {e}"))?;
    Ok(
        channel.connect_with_connector_lazy(tower::service_fn(move |_uri| {
            let config = config.clone();
            let name = name.clone();
            let addr = (host.clone(), port);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        })),
    )
}

/// Whether the TLS files load, without connecting.
pub(crate) fn channel_config_check(tls: &OtlpTls) -> Result<(), String> {
    client_config(tls).map(|_| ())
}

fn client_config(tls: &OtlpTls) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?;
    let builder = match &tls.ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("`{}`: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder
                .with_platform_verifier()
                .map_err(|e| format!("the system's trust store: {e}"))?
        }
    };
    let mut config = match &tls.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                read_certs(cert)?,
                PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("`{}`: {e}", key.display()))?,
            )
            .map_err(|e| format!("`{}`: {e}", key.display()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("`{}`: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{}`: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}`: no PEM certificate found", path.display()));
    }
    Ok(certs)
}
