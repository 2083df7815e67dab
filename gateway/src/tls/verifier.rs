//! The client-certificate verifier of a listener with several agencies:
//! one webpki verifier per agency, each with that agency's CA and CRLs.
//!
//! A single verifier over every agency's CA would apply one revocation
//! policy to all of them: once one agency published CRLs, certificates from
//! an agency that publishes none would have an unknown revocation status
//! and be refused, or, to avoid that, unknown status would have to be
//! admitted for every agency. Kept apart, each agency's certificates are
//! checked against its own CRLs alone, and the agency that admitted a
//! certificate is the one it belongs to.

use std::sync::Arc;

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

use super::AgencyCa;

/// Admits a certificate that any one agency's verifier admits.
#[derive(Debug)]
pub(crate) struct AgencyVerifier {
    agencies: Vec<AgencyCa>,
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl AgencyVerifier {
    pub(crate) fn new(
        agencies: Vec<AgencyCa>,
        mandatory: bool,
        provider: &Arc<CryptoProvider>,
    ) -> Self {
        let hints = agencies
            .iter()
            .flat_map(|a| a.verifier.root_hint_subjects().iter().cloned())
            .collect();
        Self {
            agencies,
            hints,
            mandatory,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for AgencyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // The refusal reported is the one from the agency whose CA issued
        // the certificate (revoked, expired, wrong purpose), not another
        // agency's "unknown issuer".
        let mut refusal = None;
        for agency in &self.agencies {
            match agency
                .verifier
                .verify_client_cert(end_entity, intermediates, now)
            {
                Ok(verified) => return Ok(verified),
                Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        Err(refusal.unwrap_or(Error::InvalidCertificate(CertificateError::UnknownIssuer)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
