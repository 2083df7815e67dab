//! The deployment under test: how to reach it, who to call it as, and what
//! to share about.
//!
//! Principals are named by the part they play in the checks, not by who they
//! are, so one principals file fits any deployment:
//!
//! - `sharer`: a user of a recipient agency the agreement under test permits;
//! - `overseer`: a `dpo` or `auditor` of the sharer's agency, who can see the
//!   sharer's audit entries;
//! - `outsider` (optional): a user of an agency the agreement does not name
//!   as recipient;
//! - `expired`, `wrong_audience` (optional): static tokens the deployment's
//!   issuers signed but must refuse.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use liaison_proto::v1 as pb;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde::Deserialize;
use tokio::sync::Mutex;
use tonic::{
    Request,
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

/// A principals file (`--principals`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalsFile {
    /// The gateway, when `--target` is not given.
    #[serde(default)]
    pub target: Option<String>,
    /// What the sharing checks share about.
    #[serde(default)]
    pub share: ShareSettings,
    /// Principals by the part they play.
    #[serde(default)]
    pub principals: BTreeMap<String, PrincipalSource>,
}

/// How to get a token for one principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PrincipalSource {
    /// OAuth 2.0 client credentials at the agency's identity provider.
    ClientCredentials {
        /// The provider's token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
    },
    /// A token obtained some other way (and, for `expired`, kept until stale).
    Static {
        /// The bearer token.
        token: String,
    },
}

/// The share context and query the sharing checks use. The defaults are the
/// demo's agreement and seeded child.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShareSettings {
    /// The agreement under test.
    pub isa: String,
    /// A purpose the agreement permits.
    pub purpose: String,
    /// The justification sent with each share.
    pub justification: String,
    /// A case reference sent with each share.
    pub case_reference: String,
    /// Given name of a person the sharer may find.
    pub given_name: String,
    /// Family name of that person.
    pub family_name: String,
    /// Their date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
}

impl Default for ShareSettings {
    fn default() -> Self {
        Self {
            isa: "met-hackney-children".into(),
            purpose: "safeguarding-children".into(),
            justification: "Liaison conformance run: checks the gateway's contract".into(),
            case_reference: "CONFORMANCE".into(),
            given_name: "Leah".into(),
            family_name: "Marsh".into(),
            date_of_birth: "2013-05-14".into(),
        }
    }
}

impl ShareSettings {
    /// The share context the checks send, before they remove parts of it.
    pub fn context(&self) -> pb::ShareContext {
        pb::ShareContext {
            purpose: self.purpose.clone(),
            justification: self.justification.clone(),
            isa_id: self.isa.clone(),
            case_reference: self.case_reference.clone(),
            ..Default::default()
        }
    }

    /// The person query the checks search with.
    pub fn query(&self) -> pb::PersonQuery {
        let mut dob = self.date_of_birth.splitn(3, '-').map(|p| p.parse().ok());
        let date_of_birth = match (
            dob.next().flatten(),
            dob.next().flatten(),
            dob.next().flatten(),
        ) {
            (Some(year), Some(month), Some(day)) => Some(pb::Date { year, month, day }),
            _ => None,
        };
        pb::PersonQuery {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            date_of_birth,
            ..Default::default()
        }
    }
}

/// The state file `liaison demo` writes (`demo.json`), read here by shape
/// so the conformance suite need not depend on the gateway.
#[derive(Debug, Deserialize)]
struct DemoState {
    gateway: String,
    clients: BTreeMap<String, DemoProfile>,
}

#[derive(Debug, Deserialize)]
struct DemoProfile {
    token_url: String,
    client_id: String,
    client_secret: String,
}

/// Which demo profile plays which part.
const DEMO_PARTS: &[(&str, &str)] = &[
    ("sharer", "hackney-social-worker"),
    ("overseer", "hackney-dpo"),
    ("outsider", "met-officer"),
];

/// Reads a running demo's `demo.json` into a principals file.
pub fn from_demo_dir(dir: &Path) -> Result<PrincipalsFile, String> {
    let path = dir.join("demo.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read `{}`: {e}; is `liaison demo` running?",
            path.display()
        )
    })?;
    let state: DemoState = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not a demo state file: {e}", path.display()))?;
    let mut principals = BTreeMap::new();
    for (part, profile) in DEMO_PARTS {
        if let Some(p) = state.clients.get(*profile) {
            principals.insert(
                (*part).to_owned(),
                PrincipalSource::ClientCredentials {
                    token_url: p.token_url.clone(),
                    client_id: p.client_id.clone(),
                    client_secret: p.client_secret.clone(),
                },
            );
        }
    }
    Ok(PrincipalsFile {
        target: Some(state.gateway),
        share: ShareSettings::default(),
        principals,
    })
}

/// Reads a principals file.
pub fn from_file(path: &Path) -> Result<PrincipalsFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// TLS settings for an `https` target.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM roots to trust instead of none (a private CA).
    pub ca: Option<std::path::PathBuf>,
    /// PEM client certificate chain, for mutual TLS.
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<std::path::PathBuf>,
}

/// A deployment under test.
#[derive(Debug)]
pub struct Target {
    /// The gateway's address.
    pub url: String,
    /// One channel shared by every check.
    pub channel: Channel,
    /// Whether checks that disclose data may run.
    pub allow_writes: bool,
    /// What to share about.
    pub share: ShareSettings,
    principals: BTreeMap<String, PrincipalSource>,
    tokens: Mutex<BTreeMap<String, String>>,
    http: reqwest::Client,
}

impl Target {
    /// Connects lazily: an unreachable gateway fails each check with the
    /// transport error rather than aborting the run.
    pub fn new(
        url: &str,
        tls: &TlsFiles,
        file: PrincipalsFile,
        allow_writes: bool,
    ) -> Result<Arc<Self>, String> {
        let channel = channel(url, tls)?;
        Ok(Arc::new(Self {
            url: url.to_owned(),
            channel,
            allow_writes,
            share: file.share,
            principals: file.principals,
            tokens: Mutex::new(BTreeMap::new()),
            http: reqwest::Client::new(),
        }))
    }

    /// Whether a principal is configured for `part`.
    pub fn has(&self, part: &str) -> bool {
        self.principals.contains_key(part)
    }

    /// A bearer token for `part`, fetched once per run.
    pub async fn token(&self, part: &str) -> Result<String, super::Verdict> {
        let source = self
            .principals
            .get(part)
            .ok_or_else(|| super::Verdict::Skip(format!("no `{part}` principal is configured")))?;
        let mut cache = self.tokens.lock().await;
        if let Some(t) = cache.get(part) {
            return Ok(t.clone());
        }
        let token = match source {
            PrincipalSource::Static { token } => token.clone(),
            PrincipalSource::ClientCredentials {
                token_url,
                client_id,
                client_secret,
            } => fetch_token(&self.http, token_url, client_id, client_secret)
                .await
                .map_err(|e| super::fail(format!("`{part}`: {e}")))?,
        };
        cache.insert(part.to_owned(), token.clone());
        Ok(token)
    }

    /// `message` with `part`'s bearer token.
    pub async fn as_<T>(&self, part: &str, message: T) -> Result<Request<T>, super::Verdict> {
        let token = self.token(part).await?;
        Ok(with_bearer(&token, message))
    }
}

/// `message` with `Authorization: Bearer {token}`, or with no header if the
/// value cannot be sent (the checks then see TOKEN_MISSING).
pub fn with_bearer<T>(token: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    if let Ok(v) = MetadataValue::try_from(format!("Bearer {token}")) {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// Client credentials, as `liaison query` does it.
async fn fetch_token(
    http: &reqwest::Client,
    url: &str,
    client_id: &str,
    secret: &str,
) -> Result<String, String> {
    #[derive(Deserialize)]
    struct TokenResponse {
        access_token: String,
    }
    let response = http
        .post(url)
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| format!("cannot reach the identity provider at {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "the identity provider refused a token: {}",
            response.status()
        ));
    }
    response
        .json::<TokenResponse>()
        .await
        .map(|t| t.access_token)
        .map_err(|e| format!("the identity provider's answer is not a token response: {e}"))
}

fn channel(url: &str, tls: &TlsFiles) -> Result<Channel, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("`{url}` is not a gateway address: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Ok(endpoint.connect_lazy());
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("`{url}` has no host"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let config = Arc::new(client_config(tls)?);
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
    // tonic's own TLS would need a feature the rest of the workspace does not
    // build; rustls through a connector is the same stack the gateway serves.
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri| {
            let config = config.clone();
            let server_name = server_name.clone();
            let addr = format!("{host}:{port}");
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        })),
    )
}

fn client_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = tls
        .ca
        .as_ref()
        .ok_or("an https target needs --ca (the gateway's CA, PEM)")?;
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read `{}`: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| format!("`{}`: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("`{}`: {e}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("cannot read `{}`: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("`{}`: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read `{}`: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--cert and --key go together".into()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The principals file shown to integrators parses, so the example
    /// cannot drift from the format.
    #[test]
    fn the_documented_principals_file_parses() {
        let doc = include_str!("../../../docs/integrating.md");
        let block = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.contains("[principals.sharer]"))
            .expect("docs/integrating.md shows a principals file");
        let file: PrincipalsFile = toml::from_str(block).unwrap();
        assert_eq!(file.share.isa, "met-hackney-children");
        assert!(matches!(
            file.principals.get("sharer"),
            Some(PrincipalSource::ClientCredentials { .. })
        ));
        assert!(matches!(
            file.principals.get("expired"),
            Some(PrincipalSource::Static { .. })
        ));
        let q = file.share.query();
        assert_eq!(
            q.date_of_birth,
            Some(pb::Date {
                year: 2013,
                month: 5,
                day: 14
            })
        );
    }

    #[test]
    fn the_demo_state_gives_every_part_a_principal() {
        let dir = tempfile::tempdir().unwrap();
        let client = |id: &str| {
            serde_json::json!({"description": "", "token_url": "http://127.0.0.1:1/token",
                "client_id": id, "client_secret": "s"})
        };
        let state = serde_json::json!({
            "gateway": "http://127.0.0.1:50051",
            "clients": {
                "hackney-social-worker": client("sw"),
                "hackney-dpo": client("dpo"),
                "met-officer": client("officer"),
            }
        });
        std::fs::write(dir.path().join("demo.json"), state.to_string()).unwrap();
        let file = from_demo_dir(dir.path()).unwrap();
        assert_eq!(file.target.as_deref(), Some("http://127.0.0.1:50051"));
        for part in ["sharer", "overseer", "outsider"] {
            assert!(file.principals.contains_key(part), "{part}");
        }
    }
}
