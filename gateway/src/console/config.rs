//! The `[console]` section: where the DPO console listens, how long its
//! sessions last, who may use it, and the OpenID client it is registered as
//! at each agency's provider.

use std::{net::SocketAddr, ops::Range, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{IssuerConfig, Problem};

/// Longest idle session allowed, in minutes: a console left open on an
/// unattended desk must not stay signed in for a working day.
pub const MAX_SESSION_MINUTES: u64 = 12 * 60;

/// Longest absolute session allowed, in hours.
pub const MAX_ABSOLUTE_SESSION_HOURS: u64 = 24;

/// The DPO web console, served on its own listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address the console's HTTP listener binds, e.g. `127.0.0.1:8081`.
    /// Kept apart from the gRPC listener so it can be reachable only from
    /// the organisation's own network or reverse proxy.
    pub listen: SocketAddr,
    /// The console's origin as DPOs' browsers reach it: scheme, host and
    /// port, no path (e.g. `https://liaison.example.org`). The OpenID
    /// redirect URI is `<public_url>/console/callback`, the post-logout
    /// redirect URI `<public_url>/console/login`, and cookies are `Secure`
    /// and `__Host-` prefixed when it is https. Plain http is accepted only
    /// for a loopback host, for development.
    pub public_url: Spanned<String>,
    /// Minutes without a request after which a session ends.
    #[serde(default = "default_session_minutes")]
    pub session_minutes: Spanned<u64>,
    /// Hours after sign-in at which a session ends however active it is,
    /// so a stolen session cookie is not good for ever.
    #[serde(default = "default_absolute_hours")]
    pub absolute_session_hours: Spanned<u64>,
    /// Roles, as the issuer's claim mapping reads them, that may use the
    /// console; a person holding none of them is refused at sign-in.
    #[serde(default = "default_roles")]
    pub roles: Spanned<Vec<String>>,
    /// The console's OpenID client at each agency's provider, one per
    /// issuer offered on the sign-in page (`[[console.client]]`).
    #[serde(default, rename = "client")]
    pub clients: Vec<ConsoleClient>,
}

/// The console's registration at one agency's OpenID provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleClient {
    /// The issuer URL; must be one of the configured `[[issuer]]` URLs,
    /// whose agency and claim mapping then apply to people signing in.
    pub issuer: Spanned<String>,
    /// The client id the provider registered for the console.
    pub client_id: Spanned<String>,
    /// Name of the environment variable holding the client secret, so the
    /// secret never sits in this file.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// A file holding the client secret (e.g. a mounted Kubernetes secret),
    /// relative to the configuration file. With neither this nor
    /// `client_secret_env` the console is a public client and relies on
    /// PKCE alone.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes requested besides `openid`, which is always requested. They
    /// must bring the claims the issuer's mapping reads, e.g. roles.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

impl ConsoleConfig {
    /// Checks bounds and cross-references against the configured issuers,
    /// collecting every problem with its line in `text`; the gateway's
    /// configuration check calls this for its `[console]` section.
    pub fn validate(&self, issuers: &[IssuerConfig], text: &str) -> Vec<Problem> {
        self.problems(issuers)
            .into_iter()
            .map(|(span, key, message)| Problem {
                line: (!span.is_empty()).then(|| line_of(text, span.start)),
                key,
                message,
            })
            .collect()
    }

    /// The public origin without a trailing slash, once validated.
    pub fn origin(&self) -> Result<String, String> {
        let url = reqwest::Url::parse(self.public_url.get_ref())
            .map_err(|e| format!("`{}` is not a URL: {e}", self.public_url.get_ref()))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(format!(
                    "console URL `{}` must use https (plain http is allowed only for a loopback host)",
                    self.public_url.get_ref()
                ));
            }
            other => return Err(format!("console URL scheme `{other}` is not http or https")),
        }
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "console URL `{}` must be an origin only (scheme, host and port), without path, query or credentials",
                self.public_url.get_ref()
            ));
        }
        Ok(url.origin().ascii_serialization())
    }

    pub(super) fn problems(&self, issuers: &[IssuerConfig]) -> Vec<(Range<usize>, String, String)> {
        let mut out = Vec::new();
        if let Err(m) = self.origin() {
            out.push((self.public_url.span(), "console.public_url".into(), m));
        }
        let minutes = *self.session_minutes.get_ref();
        let hours = *self.absolute_session_hours.get_ref();
        if minutes == 0 || minutes > MAX_SESSION_MINUTES {
            out.push((
                self.session_minutes.span(),
                "console.session_minutes".into(),
                format!(
                    "idle session of {minutes} minutes is out of range; between 1 and {MAX_SESSION_MINUTES}"
                ),
            ));
        }
        if hours == 0 || hours > MAX_ABSOLUTE_SESSION_HOURS {
            out.push((
                self.absolute_session_hours.span(),
                "console.absolute_session_hours".into(),
                format!(
                    "absolute session of {hours} hours is out of range; between 1 and {MAX_ABSOLUTE_SESSION_HOURS}"
                ),
            ));
        } else if minutes > hours.saturating_mul(60) {
            out.push((
                self.session_minutes.span(),
                "console.session_minutes".into(),
                "idle session is longer than the absolute session".into(),
            ));
        }
        if self.roles.get_ref().is_empty() {
            out.push((
                self.roles.span(),
                "console.roles".into(),
                "at least one role is required, or nobody could use the console".into(),
            ));
        }
        if self.roles.get_ref().iter().any(|r| r.trim().is_empty()) {
            out.push((
                self.roles.span(),
                "console.roles".into(),
                "roles must not be empty".into(),
            ));
        }
        if self.clients.is_empty() {
            out.push((
                self.public_url.span(),
                "console.client".into(),
                "at least one `[[console.client]]` is required, or nobody could sign in".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, client) in self.clients.iter().enumerate() {
            let issuer = client.issuer.get_ref();
            if !issuers.iter().any(|iss| iss.url.get_ref() == issuer) {
                out.push((
                    client.issuer.span(),
                    format!("console.client[{i}].issuer"),
                    format!("issuer `{issuer}` is not defined in any [[issuer]]"),
                ));
            } else if !seen.insert(issuer.clone()) {
                out.push((
                    client.issuer.span(),
                    format!("console.client[{i}].issuer"),
                    format!("issuer `{issuer}` has two console clients"),
                ));
            }
            if client.client_id.get_ref().trim().is_empty() {
                out.push((
                    client.client_id.span(),
                    format!("console.client[{i}].client_id"),
                    "must not be empty".into(),
                ));
            }
            match (&client.client_secret_env, &client.client_secret_file) {
                (Some(_), Some(_)) => out.push((
                    client.client_id.span(),
                    format!("console.client[{i}]"),
                    "give `client_secret_env` or `client_secret_file`, not both".into(),
                )),
                (Some(name), None) if name.trim().is_empty() || name.contains('=') => {
                    out.push((
                        client.client_id.span(),
                        format!("console.client[{i}].client_secret_env"),
                        format!("`{name}` is not an environment variable name"),
                    ));
                }
                _ => {}
            }
            for scope in &client.scopes {
                if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c == '"') {
                    out.push((
                        client.client_id.span(),
                        format!("console.client[{i}].scopes"),
                        format!("`{scope}` is not a valid scope"),
                    ));
                }
            }
        }
        out
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|s| s.bytes().filter(|b| *b == b'\n').count() + 1)
        .unwrap_or(1)
}

fn default_session_minutes() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_absolute_hours() -> Spanned<u64> {
    Spanned::new(0..0, 8)
}
fn default_roles() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["dpo".into(), "auditor".into()])
}
fn default_scopes() -> Vec<String> {
    vec!["profile".into()]
}
