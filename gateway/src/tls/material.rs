//! Everything the listener's TLS is made of, read from files and checked as
//! one piece: the certificate chain and key, each agency's client CA and its
//! CRLs. A new piece goes into service whole or not at all, so a reload
//! never pairs a new certificate with an old key or a CA with another's
//! CRLs.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{AgencyCa, ClientAuth, TlsConfig, TlsError, der, verifier::AgencyVerifier};

/// The files TLS is read from, resolved against the configuration's
/// directory.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    certificate: PathBuf,
    private_key: PathBuf,
    client_auth: ClientAuth,
    allow_tls12: bool,
    agencies: Vec<AgencySources>,
}

/// One agency's client CA bundle and the CRLs of the CAs in its chains.
#[derive(Debug, Clone)]
pub struct AgencySources {
    /// The agency.
    pub id: String,
    /// PEM bundle of the CA certificates.
    pub ca: PathBuf,
    /// CRLs, PEM or DER.
    pub crls: Vec<PathBuf>,
}

/// A loaded, checked TLS configuration.
#[derive(Debug)]
pub(crate) struct Material {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) agencies: Vec<AgencyCa>,
    /// When the served certificate expires.
    pub(crate) not_after: OffsetDateTime,
}

impl Sources {
    pub(crate) fn new(tls: &TlsConfig, agencies: Vec<AgencySources>, base_dir: &Path) -> Self {
        Self {
            certificate: base_dir.join(&tls.certificate),
            private_key: base_dir.join(&tls.private_key),
            client_auth: tls.client_auth,
            allow_tls12: tls.allow_tls12,
            agencies: agencies
                .into_iter()
                .map(|a| AgencySources {
                    ca: base_dir.join(a.ca),
                    crls: a.crls.iter().map(|c| base_dir.join(c)).collect(),
                    id: a.id,
                })
                .collect(),
        }
    }

    /// Every file read, in a fixed order.
    fn files(&self) -> impl Iterator<Item = &Path> {
        [self.certificate.as_path(), self.private_key.as_path()]
            .into_iter()
            .chain(self.agencies.iter().flat_map(|a| {
                std::iter::once(a.ca.as_path()).chain(a.crls.iter().map(PathBuf::as_path))
            }))
    }

    /// A digest of every file's content (or of its absence). Content, not
    /// modification times: a file rewritten within the clock's resolution,
    /// or a Kubernetes Secret volume swapping its `..data` link, still
    /// changes it, and a `touch` does not.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for path in self.files() {
            hash.update(path.as_os_str().as_encoded_bytes());
            match std::fs::read(path) {
                Ok(bytes) => {
                    hash.update([1]);
                    hash.update((bytes.len() as u64).to_be_bytes());
                    hash.update(&bytes);
                }
                Err(e) => {
                    hash.update([0]);
                    hash.update(e.kind().to_string().as_bytes());
                }
            }
        }
        hash.finalize().into()
    }

    /// Reads and checks everything, refusing a certificate that has expired
    /// at `now`, a key that is not the certificate's, and a CRL that is
    /// unreadable or past its `nextUpdate`.
    pub(crate) fn load(&self, now: OffsetDateTime) -> Result<Material, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = read_certs(&self.certificate)?;
        let not_after = check_validity(&self.certificate, &chain, now)?;
        let key = read_key(&self.private_key)?;
        let certified =
            rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                TlsError::Read {
                    path: self.private_key.clone(),
                    message: format!("not the key of `{}`: {e}", self.certificate.display()),
                }
            })?;

        let mut agencies = Vec::new();
        for agency in &self.agencies {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&agency.ca)? {
                roots.add(cert).map_err(|e| TlsError::Read {
                    path: agency.ca.clone(),
                    message: format!("CA for `{}`: {e}", agency.id),
                })?;
            }
            let mut crls = Vec::new();
            for path in &agency.crls {
                crls.extend(read_crls(path, now)?);
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            // Revocation as mature TLS servers check it (OpenSSL's
            // `X509_V_FLAG_CRL_CHECK_ALL`, Envoy's default): once an agency
            // has CRLs, every certificate in the chain must be covered by
            // one and a CRL past its `nextUpdate` counts as none, so a
            // missing or stale CRL refuses rather than admits. Agencies
            // without CRLs are not checked at all, which is why each has a
            // verifier of its own.
            let builder = if crls.is_empty() {
                builder
            } else {
                builder.with_crls(crls).enforce_revocation_expiration()
            };
            let verifier = builder.build().map_err(|e| TlsError::Read {
                path: agency.crls.first().unwrap_or(&agency.ca).clone(),
                message: format!("client verification for `{}`: {e}", agency.id),
            })?;
            agencies.push(AgencyCa {
                agency: agency.id.clone(),
                verifier,
            });
        }

        let versions: &[&rustls::SupportedProtocolVersion] = if self.allow_tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            mode => {
                if agencies.is_empty() {
                    return Err(TlsError::Config(
                        "client certificates are requested but no `[[agency]]` has a `client_ca`"
                            .into(),
                    ));
                }
                builder.with_client_cert_verifier(Arc::new(AgencyVerifier::new(
                    agencies.clone(),
                    mode == ClientAuth::Required,
                    &provider,
                )))
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Material {
            config: Arc::new(config),
            agencies,
            not_after,
        })
    }
}

/// The leaf's `notAfter`, if it has not passed.
fn check_validity(
    path: &Path,
    chain: &[CertificateDer<'static>],
    now: OffsetDateTime,
) -> Result<OffsetDateTime, TlsError> {
    let err = |message: String| TlsError::Read {
        path: path.to_path_buf(),
        message,
    };
    let leaf = chain
        .first()
        .ok_or_else(|| err("no PEM certificate found".into()))?;
    let (_, not_after) =
        der::validity(leaf).ok_or_else(|| err("the certificate is not valid DER".into()))?;
    if not_after <= now {
        return Err(err(format!("the certificate expired at {not_after}")));
    }
    Ok(not_after)
}

pub(super) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

/// The CRLs in a PEM file (`X509 CRL` blocks) or one DER CRL, each checked
/// to be a CRL that is still current.
fn read_crls(
    path: &Path,
    now: OffsetDateTime,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Read {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let crls = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(err("no CRL found".into()));
    }
    for crl in &crls {
        match der::next_update(crl) {
            None => return Err(err("not a DER or PEM certificate revocation list".into())),
            Some(Some(next)) if next <= now => {
                return Err(err(format!(
                    "the CRL is stale: its next update was due at {next}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(crls)
}
