//! The federation connector (`kind = "liaison"`): a dataset served by
//! another Liaison gateway, read through its `SharingService`.
//!
//! Each gateway authorises and audits its own half of a federated share.
//! The local gateway decides, under its own agreement, whether its caller
//! may reach the peer's dataset at all; the peer then decides again, under
//! the agreement this connector cites for it (`isa_map`), with this
//! connector's system client as its principal and the local practitioner as
//! `on_behalf_of`. Both halves carry the share's correlation id, so the two
//! ledgers can be matched entry for entry.
//!
//! The peer's answer is another agency's data, untrusted like any source's:
//! its size is bounded by the decoder (`max_message_bytes`), and every
//! person and record is checked and re-keyed to the local dataset
//! (`answer.rs`) before the local gateway minimises it under its own
//! agreement. A peer's refusal is a named gap, not a failure: a
//! `PERMISSION_DENIED` becomes [`ConnectorError::Declined`], naming the
//! peer's agency and its `ErrorInfo` reason.

mod answer;
mod config;
mod token;

use std::sync::Arc;
use std::time::Duration;

use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use self::answer::Rekey;
use self::config::check_url;
pub use self::config::{LiaisonConfig, TokenConfig};
use self::token::TokenSource;
use crate::error::excerpt;
use crate::request::ShareRequest;
use crate::{
    BoxFuture, Connector, ConnectorError, DatasetDescriptor, Fetched, Found, PeerGap, PersonQuery,
    RowProblem,
};

const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(2_000);
/// The peer's largest search page.
const MAX_PAGE_SIZE: usize = 100;

/// A dataset served by a peer Liaison gateway.
pub struct LiaisonConnector {
    descriptor: DatasetDescriptor,
    channel: Channel,
    tokens: TokenSource,
    rekey: Rekey,
    isa_map: std::collections::BTreeMap<String, String>,
    max_message_bytes: usize,
    call_timeout: Duration,
}

impl std::fmt::Debug for LiaisonConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiaisonConnector")
            .field("dataset", &self.descriptor.id)
            .field("remote_dataset", &self.rekey.remote)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl LiaisonConnector {
    /// Builds the connector: checks the configuration, reads the secret and
    /// the TLS files. Neither the peer nor the identity provider is reached.
    pub async fn new(config: &LiaisonConfig) -> Result<Self, ConnectorError> {
        let invalid = |problems: Vec<String>| ConnectorError::InvalidConfig {
            dataset: config.id.clone(),
            problems,
        };
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(invalid(problems));
        }
        let endpoint_url = check_url(&config.endpoint).map_err(|e| invalid(vec![e]))?;
        let token_url = check_url(&config.token.url).map_err(|e| invalid(vec![e]))?;
        let secret = tokio::fs::read_to_string(&config.token.client_secret_file)
            .await
            .map_err(|source| ConnectorError::ReadConfig {
                path: config.token.client_secret_file.clone(),
                source,
            })?
            .trim_end()
            .to_owned();
        if secret.is_empty() {
            return Err(invalid(vec![
                "token.client_secret_file: the file is empty".into(),
            ]));
        }
        let identity = match (&config.client_cert_file, &config.client_key_file) {
            (Some(cert), Some(key)) => {
                Some(read_identity(cert, key).map_err(|e| invalid(vec![e]))?)
            }
            _ => None,
        };
        let connect_timeout = config
            .connect_timeout_ms
            .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_millis);
        let channel = channel(
            &endpoint_url,
            config.ca_file.as_deref(),
            identity.as_ref(),
            connect_timeout,
        )
        .map_err(|e| invalid(vec![e]))?;
        let http = token_client(&config.token, identity.as_ref(), connect_timeout)
            .map_err(|e| invalid(vec![e]))?;
        let tokens = TokenSource::new(
            &config.id,
            http,
            token_url,
            config.token.client_id.clone(),
            secret,
            config.token.scope.clone(),
        );
        Ok(Self {
            descriptor: DatasetDescriptor {
                id: config.id.clone(),
                agency: config.agency.clone(),
                title: config.title.clone(),
                system: config.system.clone(),
                record_kinds: vec![
                    pb::RecordKind::Incident,
                    pb::RecordKind::WarningMarker,
                    pb::RecordKind::SafeguardingConcern,
                    pb::RecordKind::RiskAssessment,
                    pb::RecordKind::Relationship,
                ],
            },
            channel,
            tokens,
            rekey: Rekey {
                local: config.id.clone(),
                remote: config.remote_dataset.clone(),
                agency: config.agency.clone(),
                system: config.system.clone(),
            },
            isa_map: config.isa_map.clone(),
            max_message_bytes: config
                .max_message_bytes
                .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            call_timeout: Duration::from_millis(config.resilience.deadline_ms.max(1)),
        })
    }

    fn dataset(&self) -> String {
        self.descriptor.id.clone()
    }

    fn client(&self) -> SharingServiceClient<Channel> {
        SharingServiceClient::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    /// The share context the peer sees: the same purpose, justification,
    /// case and correlation id, the peer's agreement in place of the local
    /// one, and the local practitioner as `on_behalf_of`.
    fn context(&self) -> Result<pb::ShareContext, ConnectorError> {
        let Some(share) = crate::request::current() else {
            return Err(ConnectorError::InvalidQuery {
                dataset: self.dataset(),
                reason: "a peer gateway is only asked as part of a share, with its context".into(),
            });
        };
        let ShareRequest {
            purpose,
            justification,
            isa_id,
            case_reference,
            correlation_id,
            on_behalf_of,
        } = share;
        let Some(remote_isa) = self.isa_map.get(&isa_id) else {
            return Err(ConnectorError::InvalidQuery {
                dataset: self.dataset(),
                reason: format!(
                    "agreement `{}` is not mapped to one of the peer's (`isa_map`)",
                    excerpt(&isa_id, 64)
                ),
            });
        };
        Ok(pb::ShareContext {
            purpose,
            justification,
            isa_id: remote_isa.clone(),
            case_reference,
            on_behalf_of: Some(on_behalf_of),
            correlation_id,
            break_glass: None,
        })
    }

    /// `message` as a request with the bearer token, the call's deadline
    /// and the caller's trace context.
    async fn request<T>(&self, message: T) -> Result<tonic::Request<T>, ConnectorError> {
        let token = self.tokens.token().await?;
        let mut request = tonic::Request::new(message);
        let bearer = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            ConnectorError::TokenRefused {
                dataset: self.dataset(),
                reason: "the access token cannot be sent as a header".into(),
            }
        })?;
        request.metadata_mut().insert("authorization", bearer);
        if let Some(parent) = crate::trace::current()
            && let Ok(value) = MetadataValue::try_from(parent.as_str())
        {
            request.metadata_mut().insert("traceparent", value);
        }
        request.set_timeout(self.call_timeout);
        Ok(request)
    }

    /// What a peer's error status means here.
    async fn refusal(&self, status: &Status, operation: &'static str) -> ConnectorError {
        let details = status.get_error_details();
        let reason = details
            .error_info()
            .map(|i| excerpt(&i.reason, 64))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("{:?}", status.code()).to_uppercase());
        let message = excerpt(status.message(), 200);
        let dataset = self.dataset();
        match status.code() {
            Code::PermissionDenied => ConnectorError::Declined {
                dataset,
                agency: self.descriptor.agency.clone(),
                reason,
                message,
            },
            Code::Unauthenticated => {
                // The peer refused this gateway's credentials: an operator
                // must look, and the next call fetches a fresh token.
                tracing::error!(
                    dataset = %dataset,
                    agency = %self.descriptor.agency,
                    reason = %reason,
                    "the peer gateway refused this gateway's credentials"
                );
                self.tokens.forget().await;
                ConnectorError::PeerStatus {
                    dataset,
                    operation,
                    code: "UNAUTHENTICATED",
                    reason,
                    message,
                }
            }
            // The peer ran out of the time this call gave it, or tonic did
            // (it reports its own timeout as CANCELLED; nothing else cancels
            // a call this connector is still awaiting).
            Code::DeadlineExceeded | Code::Cancelled => ConnectorError::DeadlineExceeded {
                dataset,
                operation,
                after: self.call_timeout,
            },
            Code::InvalidArgument => ConnectorError::InvalidQuery {
                dataset,
                reason: format!("the peer refused the request: {reason}: {message}"),
            },
            code => ConnectorError::PeerStatus {
                dataset,
                operation,
                code: code_name(code),
                reason,
                message,
            },
        }
    }
}

impl Connector for LiaisonConnector {
    fn descriptor(&self) -> &DatasetDescriptor {
        &self.descriptor
    }

    fn search<'a>(
        &'a self,
        query: &'a PersonQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<Found, ConnectorError>> {
        Box::pin(async move {
            let limit = limit.min(MAX_PAGE_SIZE);
            if limit == 0 {
                return Ok(Found::default());
            }
            let message = pb::SearchPersonsRequest {
                context: Some(self.context()?),
                query: Some(pb::PersonQuery {
                    given_name: query.given_name.clone().unwrap_or_default(),
                    family_name: query.family_name.clone().unwrap_or_default(),
                    date_of_birth: query.date_of_birth,
                    postcode: query.postcode.clone().unwrap_or_default(),
                    identifiers: query.identifiers.clone(),
                }),
                dataset_ids: vec![self.rekey.remote.clone()],
                page_size: i32::try_from(limit).unwrap_or(100),
            };
            let request = self.request(message).await?;
            let answer = match self.client().search_persons(request).await {
                Ok(answer) => answer.into_inner(),
                Err(status) => return Err(self.refusal(&status, "search").await),
            };
            let mut found = Found {
                gaps: self.peer_gaps(&answer.gaps),
                ..Found::default()
            };
            for m in answer.matches.into_iter().take(limit) {
                if let Some(person) = m.person
                    && let Some(p) = self.rekey.person(person, &mut found.skipped)
                {
                    found.persons.push(p);
                }
            }
            Ok(found)
        })
    }

    fn fetch<'a>(
        &'a self,
        source_id: &'a str,
        kinds: &'a [pb::RecordKind],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(async move {
            if source_id.is_empty() || source_id.len() > 256 {
                return Err(ConnectorError::InvalidSourceId {
                    dataset: self.dataset(),
                    source_id: excerpt(source_id, 64),
                    reason: "must be 1 to 256 bytes".into(),
                });
            }
            let remote_person_id = self.rekey.remote_id(source_id);
            let message = pb::GetRecordsRequest {
                context: Some(self.context()?),
                person_id: remote_person_id.clone(),
                kinds: kinds.iter().map(|k| *k as i32).collect(),
            };
            let request = self.request(message).await?;
            let answer = match self.client().get_records(request).await {
                Ok(answer) => answer.into_inner(),
                Err(status) if status.code() == Code::NotFound => return Ok(Fetched::default()),
                Err(status) => return Err(self.refusal(&status, "fetch").await),
            };
            let mut fetched = Fetched {
                gaps: self.peer_gaps(&answer.gaps),
                ..Fetched::default()
            };
            let Some(person) = answer.person else {
                return Ok(fetched);
            };
            if person.person_id != remote_person_id {
                fetched.skipped.push(RowProblem {
                    source_id: source_id.to_owned(),
                    problem: "the peer answered about another person; its answer was dropped"
                        .into(),
                });
                return Ok(fetched);
            }
            let Some(person) = self.rekey.person(person, &mut fetched.skipped) else {
                return Ok(fetched);
            };
            for record in answer.records {
                if let Some(r) = self.rekey.record(
                    record,
                    &remote_person_id,
                    &person.person_id,
                    &mut fetched.skipped,
                ) && (kinds.is_empty() || kinds.iter().any(|k| *k as i32 == r.kind))
                {
                    fetched.records.push(r);
                }
            }
            fetched.person = Some(person);
            Ok(fetched)
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        // Getting a token proves the credentials; the peer is asked nothing,
        // since every question to it is a share it must audit.
        Box::pin(async move { self.tokens.token().await.map(|_| ()) })
    }
}

impl LiaisonConnector {
    /// The peer's own missing sources, named with the peer's agency so the
    /// caller can tell them from this gateway's. The peer is untrusted: at
    /// most 16 are kept, each bounded, and a reason outside the published
    /// set is read as `UNAVAILABLE`.
    fn peer_gaps(&self, gaps: &[pb::SourceGap]) -> Vec<PeerGap> {
        gaps.iter()
            .take(MAX_PEER_GAPS)
            .map(|g| {
                let reason = match g.reason.as_str() {
                    r @ ("DEADLINE_EXCEEDED" | "UNAVAILABLE" | "CIRCUIT_OPEN" | "DECLINED"
                    | "INVALID_DATA") => r,
                    _ => "UNAVAILABLE",
                };
                let source = format!("{}/{}", self.descriptor.agency, excerpt(&g.dataset_id, 64));
                tracing::warn!(
                    dataset = %self.descriptor.id,
                    source = %source,
                    reason,
                    "the peer's answer is missing one of its sources"
                );
                PeerGap {
                    source,
                    reason: reason.to_owned(),
                    message: excerpt(&g.message, 200),
                }
            })
            .collect()
    }
}

/// The most of a peer's own gaps passed on.
const MAX_PEER_GAPS: usize = 16;

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A client certificate chain and its key, read once.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pem: Vec<u8>,
}

fn read_identity(cert: &std::path::Path, key: &std::path::Path) -> Result<Identity, String> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| format!("client_cert_file: cannot read: {e}"))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("client_key_file: cannot read: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client_cert_file: {e}"))?;
    if chain.is_empty() {
        return Err("client_cert_file: holds no certificate".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("client_key_file: {e}"))?;
    let mut pem = cert_pem;
    pem.push(b'\n');
    pem.extend_from_slice(&key_pem);
    Ok(Identity { chain, key, pem })
}

/// A lazily connected channel to the peer: plain HTTP/2 for a loopback
/// `http` endpoint, otherwise rustls (the stack the gateway serves with)
/// through a connector, with the configured roots and client certificate.
fn channel(
    url: &url::Url,
    ca_file: Option<&std::path::Path>,
    identity: Option<&Identity>,
    connect_timeout: Duration,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.as_str().trim_end_matches('/').to_owned())
        .map_err(|e| format!("endpoint: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if url.scheme() != "https" {
        return Ok(endpoint.connect_lazy());
    }
    let host = url
        .host_str()
        .ok_or("endpoint: has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    let ca = ca_file.ok_or("ca_file: required for an https endpoint")?;
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("ca_file: {e}"))? {
        let cert = cert.map_err(|e| format!("ca_file: {e}"))?;
        roots.add(cert).map_err(|e| format!("ca_file: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut tls = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| format!("client_cert_file: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = Arc::new(tls);
    let server_name =
        ServerName::try_from(host.clone()).map_err(|e| format!("endpoint: `{host}`: {e}"))?;
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri| {
            let tls = tls.clone();
            let server_name = server_name.clone();
            let addr = (host.clone(), port);
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let stream = tokio_rustls::TlsConnector::from(tls)
                    .connect(server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        })),
    )
}

/// The HTTP client for the token endpoint: no redirects (the secret must
/// not follow one), the configured roots, and the client certificate so a
/// provider can bind the token to it (RFC 8705).
fn token_client(
    config: &TokenConfig,
    identity: Option<&Identity>,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(Duration::from_secs(10));
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("token.ca_file: cannot read: {e}"))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("token.ca_file: {e}"))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(id) = identity {
        let identity =
            reqwest::Identity::from_pem(&id.pem).map_err(|e| format!("client_key_file: {e}"))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the token client: {e}"))
}

#[cfg(test)]
mod tests;
