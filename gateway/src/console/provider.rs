//! One agency's OpenID provider as the console's sign-in uses it:
//! discovery, the authorization request (PKCE S256, `state`, `nonce`), the
//! code exchange and the verification of the ID token.
//!
//! `openidconnect` does the protocol work; HTTP goes through the gateway's
//! own `reqwest` client by a small adapter rather than the crate's reqwest
//! feature, which would bring a second reqwest. The client never follows
//! redirects: a provider endpoint that redirects is a misconfiguration or
//! an attack, not something to chase.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl,
    LogoutProviderMetadata, LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadata, RedirectUrl, RequestTokenError, Scope,
    core::{
        CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
        CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
        CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
        CoreSubjectIdentifierType,
    },
    url::Url,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::error::ConsoleError;

/// How long discovered metadata and keys are reused before discovery runs
/// again.
const DISCOVERY_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The least time between two discoveries forced by an ID token signed
/// with a key the cached set lacks, so invented `kid`s cannot make the
/// console hammer a provider.
const MIN_REDISCOVERY_INTERVAL: Duration = Duration::from_secs(10);

/// Largest document read from a provider.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Bound on one request to a provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Discovery metadata fields beyond OpenID Connect Discovery 1.0 that the
/// console uses: RP-Initiated Logout's `end_session_endpoint` (through
/// [`LogoutProviderMetadata`]) and RFC 9207's
/// `authorization_response_iss_parameter_supported`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(super) struct IssParameter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for IssParameter {}

type Metadata = ProviderMetadata<
    LogoutProviderMetadata<IssParameter>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What a provider answered at discovery, with when.
#[derive(Debug, Clone)]
pub(super) struct Discovered {
    metadata: Arc<Metadata>,
    at: Instant,
}

/// A transport failure talking to a provider.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct HttpError(String);

/// One provider the console signs people in with.
#[derive(Debug)]
pub(super) struct Provider {
    /// The issuer URL, exactly as configured and as tokens carry it.
    pub issuer: String,
    /// The agency's display name, for the sign-in page.
    pub agency_name: String,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    scopes: Vec<Scope>,
    algorithms: Vec<CoreJwsSigningAlgorithm>,
    leeway: i64,
    discovered: Mutex<Option<Discovered>>,
}

/// An authorization request ready to send the browser to.
#[derive(Debug)]
pub(super) struct Authorization {
    /// Where to send the browser.
    pub url: Url,
    /// The `state` the callback must return.
    pub state: String,
    /// The PKCE verifier for the code exchange.
    pub verifier: PkceCodeVerifier,
    /// The nonce the ID token must carry.
    pub nonce: Nonce,
}

/// What the callback's query carries, as far as the console reads it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Callback<'a> {
    /// The authorization code.
    pub code: &'a str,
    /// RFC 9207's `iss`, if sent.
    pub iss: Option<&'a str>,
}

impl Provider {
    /// A provider from configuration; `algorithms` are the issuer's
    /// configured ones, which excludes `none` and HMAC.
    pub fn new(
        issuer: String,
        agency_name: String,
        client_id: String,
        client_secret: Option<String>,
        scopes: &[String],
        algorithms: &[String],
        leeway_seconds: u64,
    ) -> Result<Self, ConsoleError> {
        let algorithms = algorithms
            .iter()
            .map(|a| {
                serde_json::from_value::<CoreJwsSigningAlgorithm>(Value::String(a.clone())).map_err(
                    |_| ConsoleError::Config {
                        message: format!("algorithm `{a}` of issuer `{issuer}` is not supported"),
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.iter().any(|a| {
            matches!(
                a,
                CoreJwsSigningAlgorithm::HmacSha256
                    | CoreJwsSigningAlgorithm::HmacSha384
                    | CoreJwsSigningAlgorithm::HmacSha512
                    | CoreJwsSigningAlgorithm::None
            )
        }) {
            return Err(ConsoleError::Config {
                message: format!(
                    "issuer `{issuer}` allows HMAC or `none`, which is never accepted"
                ),
            });
        }
        Ok(Self {
            agency_name,
            client_id: ClientId::new(client_id),
            client_secret: client_secret.map(ClientSecret::new),
            scopes: scopes.iter().cloned().map(Scope::new).collect(),
            algorithms,
            leeway: i64::try_from(leeway_seconds).unwrap_or(30),
            discovered: Mutex::new(None),
            issuer,
        })
    }

    /// The provider's metadata and keys, discovered at most
    /// [`DISCOVERY_LIFETIME`] ago, or younger than `max_age` if given.
    /// Discovery is single-flight per provider.
    pub async fn discover(
        &self,
        http: &reqwest::Client,
        max_age: Option<Duration>,
    ) -> Result<Discovered, ConsoleError> {
        let mut cached = self.discovered.lock().await;
        let max_age = max_age.unwrap_or(DISCOVERY_LIFETIME);
        if let Some(d) = cached.as_ref().filter(|d| d.at.elapsed() < max_age) {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|e| self.unavailable(e))?;
        let client = |request| send(http.clone(), request);
        let metadata = Metadata::discover_async(issuer, &client)
            .await
            .map_err(|e| self.unavailable(format!("discovery failed: {}", chain(&e))))?;
        self.check_endpoints(&metadata)?;
        let discovered = Discovered {
            metadata: Arc::new(metadata),
            at: Instant::now(),
        };
        *cached = Some(discovered.clone());
        Ok(discovered)
    }

    /// The authorization request: code flow, PKCE S256, and fresh 256-bit
    /// `state` and `nonce`.
    pub fn authorize(
        &self,
        discovered: &Discovered,
        redirect: &RedirectUrl,
    ) -> Result<Authorization, ConsoleError> {
        let state = super::store::random_token()?;
        let nonce = super::store::random_token()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(discovered, redirect);
        let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_for_url),
                move || Nonce::new(nonce_for_url),
            )
            .add_scopes(self.scopes.iter().cloned())
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url,
            state,
            verifier,
            nonce: Nonce::new(nonce),
        })
    }

    /// Completes a sign-in: checks the response's `iss`, exchanges the code
    /// with the PKCE verifier, and verifies the ID token (signature with the
    /// provider's keys and the issuer's algorithms, `iss`, `aud`, `azp`,
    /// `exp`, `iat`, `nonce`). Returns the verified token's claims, whole,
    /// for the issuer's claim mapping.
    pub async fn complete(
        &self,
        http: &reqwest::Client,
        redirect: &RedirectUrl,
        callback: Callback<'_>,
        verifier: PkceCodeVerifier,
        nonce: &Nonce,
    ) -> Result<Map<String, Value>, ConsoleError> {
        let discovered = self.discover(http, None).await?;
        // RFC 9207: a response naming another issuer is a mix-up attack; a
        // provider that promises `iss` and omits it is treated the same.
        let promised = discovered
            .metadata
            .additional_metadata()
            .additional_metadata
            .authorization_response_iss_parameter_supported
            .unwrap_or(false);
        match callback.iss {
            Some(iss) if iss == self.issuer => {}
            Some(iss) => {
                return Err(ConsoleError::IssuerMismatch {
                    expected: self.issuer.clone(),
                    found: iss.chars().take(200).collect(),
                });
            }
            None if promised => {
                return Err(ConsoleError::IssuerMismatch {
                    expected: self.issuer.clone(),
                    found: "none".into(),
                });
            }
            None => {}
        }
        let client = self.client(&discovered, redirect);
        let adapter = |request| send(http.clone(), request);
        let response = client
            .exchange_code(AuthorizationCode::new(callback.code.to_owned()))
            .map_err(|e| self.unavailable(e))?
            .set_pkce_verifier(verifier)
            .request_async(&adapter)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => ConsoleError::TokenRefused {
                    message: format!(
                        "the provider refused the authorization code (`{}`)",
                        r.error().as_ref()
                    ),
                },
                other => self.unavailable(format!("token request failed: {}", chain(&other))),
            })?;
        let id_token = openidconnect::TokenResponse::id_token(&response).ok_or_else(|| {
            ConsoleError::TokenRefused {
                message: "the provider returned no ID token".into(),
            }
        })?;
        let verify = |client: &Client| -> Result<(), openidconnect::ClaimsVerificationError> {
            let leeway = self.leeway;
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(self.algorithms.iter().cloned())
                .set_issue_time_verifier_fn(move |iat| {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    if iat.timestamp() > now.saturating_add(leeway) {
                        Err("the ID token was issued in the future".into())
                    } else {
                        Ok(())
                    }
                });
            id_token.claims(&verifier, nonce).map(|_| ())
        };
        match verify(&client) {
            Ok(()) => {}
            // The provider may have rotated its keys since discovery.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) => {
                let fresh = self.discover(http, Some(MIN_REDISCOVERY_INTERVAL)).await?;
                verify(&self.client(&fresh, redirect)).map_err(refused)?;
            }
            Err(e) => return Err(refused(e)),
        }
        // The signature covers exactly these bytes, so the whole payload can
        // now be read for the claim mapping.
        let claims = payload(&id_token.to_string())?;
        if let Some(azp) = claims.get("azp")
            && azp.as_str() != Some(self.client_id.as_str())
        {
            return Err(ConsoleError::TokenRefused {
                message: "the ID token was issued to another client (`azp`)".into(),
            });
        }
        Ok(claims)
    }

    /// Where to send the browser after the console's own sign-out: the
    /// provider's end-session endpoint, if it advertises one. Only the
    /// client id and the post-logout redirect go in the URL, never the ID
    /// token, which holds personal data.
    pub async fn end_session_url(&self, http: &reqwest::Client, post_logout: &str) -> Option<Url> {
        let discovered = self.discover(http, None).await.ok()?;
        let endpoint = discovered
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = LogoutRequest::from(endpoint).set_client_id(self.client_id.clone());
        if let Ok(url) = PostLogoutRedirectUrl::new(post_logout.to_owned()) {
            request = request.set_post_logout_redirect_uri(url);
        }
        Some(request.http_get_url())
    }

    /// The origin of the issuer, for the CSP's `form-action`.
    pub fn origin(&self) -> Option<String> {
        Url::parse(&self.issuer)
            .ok()
            .map(|u| u.origin().ascii_serialization())
    }

    fn client(&self, discovered: &Discovered, redirect: &RedirectUrl) -> Client {
        let metadata = discovered.metadata.as_ref();
        let basic = metadata
            .token_endpoint_auth_methods_supported()
            .is_none_or(|m| {
                m.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    || !m.contains(&CoreClientAuthMethod::ClientSecretPost)
            });
        Client::from_provider_metadata(
            metadata.clone(),
            self.client_id.clone(),
            self.client_secret.clone(),
        )
        .set_redirect_uri(redirect.clone())
        .set_auth_type(if basic {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        })
    }

    /// An https issuer's endpoints must all be https too: a discovery
    /// document pointing the code exchange at plain http would leak codes
    /// and secrets.
    fn check_endpoints(&self, metadata: &Metadata) -> Result<(), ConsoleError> {
        if !self.issuer.starts_with("https://") {
            return Ok(());
        }
        let mut urls = vec![
            metadata.authorization_endpoint().url(),
            metadata.jwks_uri().url(),
        ];
        urls.extend(metadata.token_endpoint().map(|u| u.url()));
        urls.extend(
            metadata
                .additional_metadata()
                .end_session_endpoint
                .as_ref()
                .map(|u| u.url()),
        );
        match urls.iter().find(|u| u.scheme() != "https") {
            Some(u) => Err(self.unavailable(format!(
                "discovery names a plain-http endpoint `{}`",
                u.as_str()
            ))),
            None => Ok(()),
        }
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> ConsoleError {
        ConsoleError::ProviderUnavailable {
            issuer: self.issuer.clone(),
            message: message.to_string(),
        }
    }
}

fn refused(e: openidconnect::ClaimsVerificationError) -> ConsoleError {
    use openidconnect::ClaimsVerificationError as E;
    let message = match e {
        E::Expired(_) => "the ID token has expired or is not yet valid".into(),
        E::InvalidAudience(_) => "the ID token is not for this console (`aud`)".into(),
        E::InvalidIssuer(_) => "the ID token names another issuer (`iss`)".into(),
        E::InvalidNonce(_) => "the ID token's `nonce` does not match this sign-in".into(),
        E::SignatureVerification(s) => format!("the ID token's signature does not verify: {s}"),
        other => format!("the ID token is not acceptable: {other}"),
    };
    ConsoleError::TokenRefused { message }
}

/// The JSON payload of a compact JWS.
fn payload(jwt: &str) -> Result<Map<String, Value>, ConsoleError> {
    let refused = || ConsoleError::TokenRefused {
        message: "the ID token's payload is malformed".into(),
    };
    let segment = jwt.split('.').nth(1).ok_or_else(refused)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| refused())?;
    serde_json::from_slice(&bytes).map_err(|_| refused())
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Sends one `openidconnect` request with the gateway's `reqwest` client,
/// with a timeout and a bound on the answer's size.
async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let url = parts.uri.to_string();
    let mut response = http
        .request(parts.method, &url)
        .headers(parts.headers)
        .body(body)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| HttpError(format!("request to `{url}` failed: {}", chain(&e))))?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError(format!("reading `{url}` failed: {e}")))?
    {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError(format!(
                "`{url}` answered more than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    builder
        .body(bytes)
        .map_err(|e| HttpError(format!("answer from `{url}` is malformed: {e}")))
}
