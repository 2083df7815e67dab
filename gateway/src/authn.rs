//! Authenticate: a tower layer, not a tonic interceptor, because verifying
//! a token may need an async key refresh. The verified [`Principal`] rides
//! in the request's extensions; a request without a valid token never
//! reaches a service. Failures are answered `UNAUTHENTICATED` with a reason
//! that says what was wrong without echoing key material, and are recorded
//! in the ledger (issuer, reason and client address; never the token).

use std::{
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};
use tracing::Instrument;

use http::{Request, Response};
use liaison_ledger::Ledger;
use liaison_proto::v1 as pb;
use tonic::{body::Body, server::NamedService};
use tower::{Layer, Service};

use crate::{
    error::GatewayError,
    identity::{Principal, TrustRegistry},
    share::audit,
    tls,
};

/// Paths open without a token: health checks and reflection, which disclose
/// nothing about people.
const OPEN_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Adds authentication.
#[derive(Debug, Clone)]
pub struct AuthnLayer {
    registry: Arc<TrustRegistry>,
    ledger: Arc<Ledger>,
}

impl AuthnLayer {
    /// Verifies tokens against `registry`; records failures in `ledger`.
    pub fn new(registry: Arc<TrustRegistry>, ledger: Arc<Ledger>) -> Self {
        Self { registry, ledger }
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authn<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authn {
            inner,
            registry: self.registry.clone(),
            ledger: self.ledger.clone(),
        }
    }
}

/// The authentication stage.
#[derive(Debug, Clone)]
pub struct Authn<S> {
    inner: S,
    registry: Arc<TrustRegistry>,
    ledger: Arc<Ledger>,
}

impl<S: NamedService> NamedService for Authn<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Authn<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let registry = self.registry.clone();
        let ledger = self.ledger.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            if OPEN_PREFIXES.iter().any(|p| path.starts_with(p)) {
                return inner.call(req).await;
            }
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let peer = tls::peer(req.extensions());
            let result = match header.as_deref() {
                None => Err(GatewayError::Unauthenticated {
                    reason: "TOKEN_MISSING",
                    message: "a bearer token is required".into(),
                }),
                Some(h) => match h
                    .strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
                {
                    // A token bound to a client certificate (RFC 8705) is
                    // only good on a connection presenting that certificate.
                    Some(token) => {
                        registry
                            .authenticate_shared(
                                token.trim(),
                                peer.certificate_sha256.as_ref().map(|h| &h[..]),
                            )
                            .instrument(tracing::debug_span!("authenticate"))
                            .await
                    }
                    None => Err(GatewayError::Unauthenticated {
                        reason: "TOKEN_MISSING",
                        message: "the authorization header must carry a bearer token".into(),
                    }),
                },
            };
            // With mutual TLS, the certificate's agency and the token's must
            // agree: one agency's system cannot present another's tokens.
            let result = result.and_then(|p| match &peer.agency {
                Some(agency) if *agency != p.agency => Err(GatewayError::Unauthenticated {
                    reason: "TOKEN_INVALID",
                    message: "the client certificate belongs to another agency than the token"
                        .into(),
                }),
                _ => Ok(p),
            });
            match result {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(error) => {
                    let client = peer.remote_addr;
                    record_failure(&ledger, &registry, &path, header.as_deref(), &error, client)
                        .await;
                    Ok(tonic::Status::from(error).into_http())
                }
            }
        })
    }
}

/// Records a failed authentication: the reason, the method, the client's
/// address and the issuer the token names, if the gateway trusts it (else
/// `untrusted`, so a caller cannot write text of its choosing into the
/// ledger). Never the token. A failure to record it does not change the
/// answer (the caller is refused either way), but is logged loudly.
async fn record_failure(
    ledger: &Ledger,
    registry: &TrustRegistry,
    method: &str,
    authorization: Option<&str>,
    error: &GatewayError,
    client: Option<SocketAddr>,
) {
    let issuer = authorization
        .map(|h| {
            let token = h
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .and_then(|_| h.get(7..))
                .unwrap_or(h);
            registry.audit_issuer(token.trim()).to_owned()
        })
        .unwrap_or_default();
    let entry = pb::AuditEntry {
        format_version: audit::FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(audit::now()),
        principal: Some(pb::AuditPrincipal {
            issuer,
            ..Default::default()
        }),
        action: pb::AuditAction::Authenticate as i32,
        method: method.chars().take(200).collect(),
        outcome: pb::AuditOutcome::Denied as i32,
        error_reason: error.reason().to_owned(),
        error_message: error.to_string(),
        client_address: client.map(|a| a.to_string()).unwrap_or_default(),
        ..Default::default()
    };
    if let Err(e) = audit::append(ledger, &entry).await {
        tracing::error!(error = %e, "could not record a failed authentication");
    }
}

/// The principal a request was authenticated as.
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Arc<Principal>, tonic::Status> {
    req.extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| {
            tonic::Status::from(GatewayError::Unauthenticated {
                reason: "TOKEN_MISSING",
                message: "a bearer token is required".into(),
            })
        })
}
