//! The federation connector's configuration and its checks.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::config::identity_problems;
use crate::resilience::ResilienceConfig;

/// A federation connector's configuration (`kind = "liaison"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiaisonConfig {
    /// The local dataset id the peer's dataset is served under.
    pub id: String,
    /// The peer's agency: the one that holds the data and answers for it.
    pub agency: String,
    /// A human-readable title for the dataset.
    pub title: String,
    /// The peer's system, for provenance, such as `Liaison (Kent Police)`.
    pub system: String,
    /// The peer gateway's gRPC address: `https://host:port`, or
    /// `http://127.0.0.1:port` for a gateway on the same machine.
    pub endpoint: String,
    /// The peer's dataset id, which its person and record ids start with.
    pub remote_dataset: String,
    /// The local agreement id → the peer's agreement id to cite. A share
    /// under a local agreement missing here is not sent.
    pub isa_map: BTreeMap<String, String>,
    /// PEM roots the peer's server certificate must chain to; required for
    /// `https`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to the peer (and to the token
    /// endpoint), for mutual TLS and certificate-bound tokens (RFC 8705).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The private key for `client_cert_file`, PEM.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The largest answer decoded from the peer, in bytes; larger ones fail
    /// the call. Defaults to 4 MiB.
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// How long to wait for a connection, in milliseconds. Defaults to 2000.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// How the connector gets its access token.
    pub token: TokenConfig,
    /// Deadline, concurrency, circuit breaker and retry settings.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

/// OAuth 2.0 client credentials at the local agency's identity provider,
/// which the peer trusts for this system client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The provider's token endpoint (https, or http on loopback).
    pub url: String,
    /// The client id.
    pub client_id: String,
    /// A file holding the client secret (trailing whitespace is dropped).
    pub client_secret_file: PathBuf,
    /// Scopes to ask for, space-separated; none by default.
    #[serde(default)]
    pub scope: Option<String>,
    /// PEM roots for an https token endpoint whose certificate a private CA
    /// issued; the platform's roots otherwise.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl LiaisonConfig {
    /// Every problem with the configuration, each as `key: what is wrong`.
    /// Files are checked for existence, not read.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = identity_problems(&self.id, &self.agency, &self.title, &self.system);
        problems.extend(self.resilience.problems());
        if let Err(why) = check_url(&self.endpoint) {
            problems.push(format!("endpoint: {why}"));
        }
        let https = self.endpoint.starts_with("https:");
        if https && self.ca_file.is_none() {
            problems.push("ca_file: required for an https endpoint".into());
        }
        if self.remote_dataset.is_empty() || self.remote_dataset.contains(':') {
            problems.push("remote_dataset: must be the peer's dataset id, without `:`".into());
        }
        if self.isa_map.is_empty() {
            problems.push(
                "isa_map: must map at least one local agreement to the peer's agreement".into(),
            );
        }
        for (local, remote) in &self.isa_map {
            if local.trim().is_empty() || remote.trim().is_empty() {
                problems.push("isa_map: agreement ids must not be empty".into());
            }
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) | (None, Some(_)) => problems.push(
                "client_cert_file: `client_cert_file` and `client_key_file` go together".into(),
            ),
            _ => {}
        }
        for (key, file) in [
            ("ca_file", &self.ca_file),
            ("client_cert_file", &self.client_cert_file),
            ("client_key_file", &self.client_key_file),
            ("token.ca_file", &self.token.ca_file),
        ] {
            if let Some(path) = file {
                missing(key, path, &mut problems);
            }
        }
        missing(
            "token.client_secret_file",
            &self.token.client_secret_file,
            &mut problems,
        );
        if let Err(why) = check_url(&self.token.url) {
            problems.push(format!("token.url: {why}"));
        }
        if self.token.client_id.trim().is_empty() {
            problems.push("token.client_id: must not be empty".into());
        }
        if self.max_message_bytes == Some(0) {
            problems.push("max_message_bytes: must be at least 1".into());
        }
        problems
    }

    /// Makes relative file paths relative to `base_dir`.
    pub(crate) fn resolve_paths(&mut self, base_dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        };
        self.ca_file.iter_mut().for_each(resolve);
        self.client_cert_file.iter_mut().for_each(resolve);
        self.client_key_file.iter_mut().for_each(resolve);
        self.token.ca_file.iter_mut().for_each(resolve);
        resolve(&mut self.token.client_secret_file);
    }
}

fn missing(key: &str, path: &Path, problems: &mut Vec<String>) {
    if !path.is_file() {
        problems.push(format!(
            "{key}: `{}` is not a readable file",
            path.display()
        ));
    }
}

/// An https URL, or an http one whose host is a loopback address: a token
/// or a share sent in clear text anywhere else could be read on the way.
pub(crate) fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url.host_str().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "`{text}` must use https (plain http only for a loopback address)"
        )),
        other => Err(format!("`{text}` has scheme `{other}`; use https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}
