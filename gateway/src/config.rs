//! The gateway's typed configuration, validated as a whole at start-up.
//!
//! A gateway that starts with a half-understood configuration can share what
//! it should not, so every problem is collected and reported with the file,
//! line and key, and the process refuses to start. `deploy/liaison.example.toml`
//! documents every field and is tested to parse.

use std::{
    collections::BTreeSet,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The only configuration format version this gateway reads.
pub const CONFIG_VERSION: u32 = 1;

/// The gateway's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version; must be 1.
    pub version: Spanned<u32>,
    /// The gRPC listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where the audit ledger lives.
    pub ledger: LedgerConfig,
    /// Where Information Sharing Agreements and operator rules are read from.
    pub policy: PolicyConfig,
    /// The agencies in the trust registry.
    #[serde(default, rename = "agency")]
    pub agencies: Vec<AgencyConfig>,
    /// The identity providers trusted, each speaking for one agency. They
    /// are imported into the trust registry at start; `AdminService` may add
    /// and change issuers at run time.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// Who may change the trust registry at run time.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The legacy systems this gateway speaks for.
    #[serde(default, rename = "connector")]
    pub connectors: Vec<liaison_connectors::ConnectorConfig>,
    /// The DPO web console on its own listener; absent, none is served.
    #[serde(default)]
    pub console: Option<crate::console::ConsoleConfig>,
    /// Traces, metrics and log format; absent, nothing is exported.
    #[serde(default)]
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
    /// Where alerts a DPO must review (break-glass shares) are sent besides
    /// the log and the metrics; absent, they are logged and counted only.
    #[serde(default)]
    pub alerts: Option<crate::alerts::AlertsConfig>,
    /// Change subscriptions (`Subscribe`): limits, polling and the key
    /// that seals resume cursors.
    #[serde(default)]
    pub subscriptions: crate::subscription::SubscriptionConfig,
    /// The directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The gRPC listener and its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on for gRPC (sharing, oversight, admin, health,
    /// reflection).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request or response message accepted, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How long one connector may take before its part of a share is
    /// reported as a gap, in milliseconds.
    #[serde(default = "default_connector_deadline_ms")]
    pub connector_deadline_ms: u64,
    /// Upper bound on a whole request, in milliseconds, whatever deadline the
    /// client asks for.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// TLS for the listener. Without it the gateway serves plain HTTP/2,
    /// which is only for loopback development and tests.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Per-agency rate and concurrency limits and load shedding.
    #[serde(default)]
    pub limits: crate::admission::LimitsConfig,
}

/// The audit ledger's store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// `sqlite://PATH` (embedded, one node) or `postgres://…` (many
    /// replicas). A relative SQLite path is resolved against the config
    /// file's directory. The password may be given by the environment
    /// variable `LIAISON_LEDGER_URL`, which overrides this field.
    pub url: Spanned<String>,
    /// The Ed25519 private key (PKCS#8 PEM, as `liaison audit keygen`
    /// writes) with which this replica signs tree heads, relative to the
    /// config file; `LIAISON_LEDGER_SIGNING_KEY_FILE` overrides it. Without
    /// one the replica appends but never seals: on several replicas, give
    /// the key to those that may become the sealer.
    #[serde(default)]
    pub signing_key_file: Option<Spanned<PathBuf>>,
    /// Public keys (PEM) of earlier signing keys, kept after a rotation so
    /// the heads they signed still verify.
    #[serde(default)]
    pub previous_public_keys: Vec<Spanned<PathBuf>>,
    /// How often the sealer signs a new tree head, in milliseconds; also
    /// how long a standby takes to notice that the sealer is gone.
    #[serde(default = "default_seal_interval_ms")]
    pub seal_interval_ms: Spanned<u64>,
    /// A file to which every signed head is appended (JSON lines), kept
    /// where those who administer the database cannot write, so a
    /// rewritten or restored database is caught by `liaison audit verify
    /// --witness`.
    #[serde(default)]
    pub witness_file: Option<Spanned<PathBuf>>,
}

/// The key material the ledger section names, loaded.
#[derive(Debug)]
pub struct LedgerKeys {
    /// The key this replica seals with, if any.
    pub signing: Option<liaison_ledger::SigningKey>,
    /// Every public key a head may be signed with: the signing key's and
    /// the previous ones.
    pub ring: liaison_ledger::KeyRing,
}

fn default_seal_interval_ms() -> Spanned<u64> {
    Spanned::new(0..0, 1000)
}

/// Where policy comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A TOML file of `[[agreement]]` and `[[rule]]` tables, relative to the
    /// config file. Its agreements are imported into the register (the
    /// ledger's database) as versions; its rules apply as they stand. Read
    /// again whenever it changes, so a GitOps deployment only replaces it.
    pub file: Spanned<PathBuf>,
    /// How often each replica checks the register and the file for changes,
    /// in milliseconds (100–60000). On PostgreSQL a committed change is also
    /// announced at once; this bounds how late a replica can be if the
    /// announcement is lost.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: Spanned<u64>,
    /// The role that may propose and change its own agency's agreements
    /// through `AdminService`.
    #[serde(default = "default_governance_role")]
    pub governance_role: String,
}

fn default_reload_interval_ms() -> Spanned<u64> {
    Spanned::new(0..0, 1000)
}

fn default_governance_role() -> String {
    "information-governance".into()
}

/// Changes to the trust registry at run time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The role that may onboard, replace, suspend and remove its own
    /// agency's issuers through `AdminService`. Kept apart from
    /// `policy.governance_role` because whoever controls an issuer controls
    /// every identity it vouches for.
    #[serde(default = "default_registry_role")]
    pub registry_role: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            registry_role: default_registry_role(),
        }
    }
}

fn default_registry_role() -> String {
    "identity-admin".into()
}

/// The kind of agency.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AgencyKind {
    /// A police force.
    Police,
    /// A local authority's children's or adults' services.
    LocalAuthority,
    /// A health body.
    Health,
    /// A school or education body.
    Education,
    /// The probation service.
    Probation,
    /// Any other partner.
    Other,
}

/// One agency in the trust registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyConfig {
    /// Stable id used in agreements, tokens and the ledger, e.g. `met-police`.
    pub id: Spanned<String>,
    /// Name shown to people.
    pub display_name: String,
    /// The kind of agency.
    pub kind: AgencyKind,
    /// PEM file of the CA that issues this agency's client certificates,
    /// for mutual TLS (`[server.tls] client_auth`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER) of the CAs in this
    /// agency's chains. With any, every certificate of a client chain must
    /// be covered by a current CRL, or the handshake is refused. Re-read
    /// with the CA bundle when they change.
    #[serde(default)]
    pub client_crls: Vec<PathBuf>,
}

/// One trusted OpenID Connect issuer. Serialized, it is the canonical text
/// of its terms that the trust registry stores and hashes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer URL exactly as tokens carry it in `iss`.
    pub url: Spanned<String>,
    /// The one agency this issuer speaks for; it can assert no other.
    pub agency: Spanned<String>,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms: RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384 or EdDSA. Never `none`, never HMAC.
    pub algorithms: Spanned<Vec<String>>,
    /// Allowed clock skew in seconds, at most 30.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: Spanned<u64>,
    /// How long fetched keys stay usable if the provider becomes
    /// unreachable, in seconds (10 to 604800). While the provider answers,
    /// keys are re-read at least every minute whatever this says.
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache_seconds: Spanned<u64>,
    /// The longest a token from this issuer may still be valid for when it
    /// is presented, in seconds (60 to 604800): a token whose `exp` is
    /// further ahead is refused, since it could not be revoked in practice.
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_seconds: Spanned<u64>,
    /// Accept only certificate-bound tokens (RFC 8705 `cnf.x5t#S256`)
    /// from this issuer, presented over mutual TLS with that certificate.
    /// A bound token is checked against its certificate whatever this says.
    #[serde(default)]
    pub require_certificate_bound: bool,
    /// Hosts other than the issuer's own that may serve its key set (the
    /// `jwks_uri` its discovery document names), e.g. `www.googleapis.com`
    /// for Google. Any other host is refused, so a tampered discovery
    /// document cannot point the gateway at internal addresses.
    #[serde(default)]
    pub jwks_hosts: Vec<String>,
    /// Allow `http://` discovery for a loopback issuer. For local
    /// development and tests only; refused for any other host.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// How the issuer's claims map onto a principal.
    #[serde(default)]
    pub claims: ClaimMapping,
}

/// Claim names (dot paths into the token's JSON) for each principal
/// attribute, because every identity provider names them differently.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// Claims holding roles, read in order and merged (e.g. `roles`,
    /// `groups`, `realm_access.roles`).
    #[serde(default = "default_roles_claims")]
    pub roles: Vec<String>,
    /// Claim holding a display name.
    #[serde(default = "default_name_claim")]
    pub display_name: String,
    /// Claim holding the team, if any.
    #[serde(default)]
    pub team: Option<String>,
    /// Claim holding the vetting level, if any.
    #[serde(default)]
    pub vetting: Option<String>,
    /// Claim in which a token may name its agency. If present it must equal
    /// the issuer's agency, or the token is refused.
    #[serde(default = "default_agency_claim")]
    pub agency: String,
    /// Claims that must be present.
    #[serde(default)]
    pub required: Vec<String>,
}

/// One configuration problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, as a dotted path.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file read.
    pub file: PathBuf,
    /// What is wrong, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configuration `{}` has {} problem(s):",
            self.file.display(),
            self.problems.len()
        )?;
        for p in &self.problems {
            match p.line {
                Some(line) => write!(
                    f,
                    "\n  {}:{}: `{}`: {}",
                    self.file.display(),
                    line,
                    p.key,
                    p.message
                )?,
                None => write!(f, "\n  {}: `{}`: {}", self.file.display(), p.key, p.message)?,
            }
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_message_bytes: default_max_message_bytes(),
            connector_deadline_ms: default_connector_deadline_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            tls: None,
            limits: crate::admission::LimitsConfig::default(),
        }
    }
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            roles: default_roles_claims(),
            display_name: default_name_claim(),
            team: None,
            vetting: None,
            agency: default_agency_claim(),
            required: Vec::new(),
        }
    }
}

impl IssuerConfig {
    /// Every problem with this issuer's terms, as (span, key, message);
    /// `agencies` are the agencies it may speak for. The same checks apply
    /// to an issuer in the file and to one proposed through `AdminService`,
    /// so the registry can never hold terms the file could not.
    pub fn problems(
        &self,
        agencies: &BTreeSet<String>,
    ) -> Vec<(Range<usize>, &'static str, String)> {
        let mut out = Vec::new();
        let mut push = |span: Range<usize>, key: &'static str, message: String| {
            out.push((span, key, message));
        };
        let url = self.url.get_ref();
        match reqwest::Url::parse(url) {
            Ok(u) => {
                let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
                if u.scheme() == "http" && !(self.allow_insecure_http && loopback) {
                    push(
                        self.url.span(),
                        "url",
                        format!(
                            "issuer `{url}` must use https (plain http is allowed only for a loopback issuer with `allow_insecure_http = true`)"
                        ),
                    );
                } else if u.scheme() != "http" && u.scheme() != "https" {
                    push(
                        self.url.span(),
                        "url",
                        format!("issuer `{url}` must be an https URL"),
                    );
                }
            }
            Err(e) => push(self.url.span(), "url", format!("`{url}` is not a URL: {e}")),
        }
        if !agencies.contains(self.agency.get_ref()) {
            push(
                self.agency.span(),
                "agency",
                format!(
                    "agency `{}` is not defined in any [[agency]]",
                    self.agency.get_ref()
                ),
            );
        }
        if self.audiences.is_empty() {
            push(
                self.url.span(),
                "audiences",
                "at least one audience is required".into(),
            );
        }
        if self.algorithms.get_ref().is_empty() {
            push(
                self.algorithms.span(),
                "algorithms",
                "at least one algorithm is required".into(),
            );
        }
        for alg in self.algorithms.get_ref() {
            if let Err(m) = parse_algorithm(alg) {
                push(self.algorithms.span(), "algorithms", m);
            }
        }
        if *self.leeway_seconds.get_ref() > 30 {
            push(
                self.leeway_seconds.span(),
                "leeway_seconds",
                format!(
                    "leeway of {}s is too generous; at most 30s",
                    self.leeway_seconds.get_ref()
                ),
            );
        }
        // Below the refresh interval, cached keys would lapse while the
        // gateway may not yet ask the provider again.
        if !(10..=604_800).contains(self.jwks_cache_seconds.get_ref()) {
            push(
                self.jwks_cache_seconds.span(),
                "jwks_cache_seconds",
                format!(
                    "`{}` is out of range; between 10 and 604800 seconds",
                    self.jwks_cache_seconds.get_ref()
                ),
            );
        }
        if !(60..=604_800).contains(self.max_token_lifetime_seconds.get_ref()) {
            push(
                self.max_token_lifetime_seconds.span(),
                "max_token_lifetime_seconds",
                format!(
                    "`{}` is out of range; between 60 and 604800 seconds",
                    self.max_token_lifetime_seconds.get_ref()
                ),
            );
        }
        out
    }

    /// Reads a TOML document holding exactly one `[[issuer]]` table, as
    /// proposed through `AdminService`, and validates it as the file's
    /// issuers are. Every problem is named with its line in `text`.
    pub fn parse_one(text: &str, agencies: &BTreeSet<String>) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct One {
            #[serde(default)]
            issuer: Vec<IssuerConfig>,
        }
        let one: One = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => format!("line {}: {}", line_of(text, span.start), e.message().trim()),
            None => e.message().trim().to_owned(),
        })?;
        let mut issuers = one.issuer.into_iter();
        let (Some(issuer), None) = (issuers.next(), issuers.next()) else {
            return Err("the text must hold exactly one [[issuer]] table".into());
        };
        let problems: Vec<String> = issuer
            .problems(agencies)
            .into_iter()
            .map(|(span, key, message)| {
                format!(
                    "line {}: `issuer.{key}`: {message}",
                    line_of(text, span.start)
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(issuer)
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                line: None,
                key: String::new(),
                message: format!("cannot read file: {e}"),
            }],
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, path, &base)
    }

    /// Parses and validates configuration text; `file` is only used in
    /// messages and `base_dir` resolves relative paths.
    pub fn parse(text: &str, file: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                line: e.span().map(|s| line_of(text, s.start)),
                key: String::new(),
                message: e.message().trim().to_string(),
            }],
        })?;
        config.base_dir = base_dir.to_path_buf();
        let problems = config.validate(text);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: file.to_path_buf(),
                problems,
            })
        }
    }

    /// Checks every cross-reference and bound, collecting all problems.
    fn validate(&self, text: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |span: std::ops::Range<usize>, key: String, message: String| {
            out.push(Problem {
                line: Some(line_of(text, span.start)),
                key,
                message,
            });
        };
        if *self.version.get_ref() != CONFIG_VERSION {
            problem(
                self.version.span(),
                "version".into(),
                format!(
                    "unsupported version `{}`; this gateway reads version {CONFIG_VERSION}",
                    self.version.get_ref()
                ),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, a) in self.agencies.iter().enumerate() {
            if a.client_ca.is_none() && !a.client_crls.is_empty() {
                problem(
                    a.id.span(),
                    format!("agency[{i}].client_crls"),
                    "CRLs need the `client_ca` whose certificates they revoke".into(),
                );
            }
            if a.id.get_ref().trim().is_empty() {
                problem(
                    a.id.span(),
                    format!("agency[{i}].id"),
                    "must not be empty".into(),
                );
            } else if !seen.insert(a.id.get_ref().clone()) {
                problem(
                    a.id.span(),
                    format!("agency[{i}].id"),
                    format!("agency `{}` is defined twice", a.id.get_ref()),
                );
            }
        }
        let mut issuers = std::collections::BTreeSet::new();
        for (i, iss) in self.issuers.iter().enumerate() {
            let url = iss.url.get_ref();
            if !issuers.insert(url.clone()) {
                problem(
                    iss.url.span(),
                    format!("issuer[{i}].url"),
                    format!("issuer `{url}` is defined twice"),
                );
            }
            for (span, key, message) in iss.problems(&seen) {
                problem(span, format!("issuer[{i}].{key}"), message);
            }
        }
        if !(100..=60_000).contains(self.policy.reload_interval_ms.get_ref()) {
            problem(
                self.policy.reload_interval_ms.span(),
                "policy.reload_interval_ms".into(),
                format!(
                    "`{}` is out of range; between 100 and 60000 milliseconds",
                    self.policy.reload_interval_ms.get_ref()
                ),
            );
        }
        let ledger = &self.ledger;
        if !(100..=60_000).contains(ledger.seal_interval_ms.get_ref()) {
            problem(
                ledger.seal_interval_ms.span(),
                "ledger.seal_interval_ms".into(),
                format!(
                    "`{}` is out of range; between 100 and 60000 milliseconds",
                    ledger.seal_interval_ms.get_ref()
                ),
            );
        }
        if let Some(file) = &ledger.signing_key_file
            && std::env::var_os("LIAISON_LEDGER_SIGNING_KEY_FILE").is_none()
            && let Err(e) =
                liaison_ledger::SigningKey::from_file(&self.base_dir.join(file.get_ref()))
        {
            problem(file.span(), "ledger.signing_key_file".into(), e.to_string());
        }
        for (i, file) in ledger.previous_public_keys.iter().enumerate() {
            if let Err(e) =
                liaison_ledger::VerifyingKey::from_file(&self.base_dir.join(file.get_ref()))
            {
                problem(
                    file.span(),
                    format!("ledger.previous_public_keys[{i}]"),
                    e.to_string(),
                );
            }
        }
        for (key, message) in self.server.limits.problems() {
            out.push(Problem {
                line: find_line(text, key),
                key: format!("server.limits.{key}"),
                message,
            });
        }
        if self.server.max_message_bytes < 1024 || self.server.max_message_bytes > 64 << 20 {
            out.push(Problem {
                line: find_line(text, "max_message_bytes"),
                key: "server.max_message_bytes".into(),
                message: "must be between 1 KiB and 64 MiB".into(),
            });
        }
        for (i, connector) in self.connectors.iter().enumerate() {
            // Checked with paths as the server will resolve them, so a file
            // named relative to this file is looked for where it will be read.
            let mut resolved = connector.clone();
            resolved.resolve_paths(&self.base_dir);
            for message in resolved.problems() {
                let key = message.split(':').next().unwrap_or_default().to_owned();
                out.push(Problem {
                    line: connector_line(text, connector.id(), &key),
                    key: format!("connector[{i}].{key}"),
                    message: message
                        .split_once(": ")
                        .map_or(message.as_str(), |(_, m)| m)
                        .to_owned(),
                });
            }
        }
        for (key, message) in self.subscriptions.problems() {
            out.push(Problem {
                line: find_line(text, key),
                key: format!("subscriptions.{key}"),
                message,
            });
        }
        if self.subscriptions.cursor_key_file.is_some()
            && let Err(message) = self.subscriptions.cursor_key(&self.base_dir)
        {
            out.push(Problem {
                line: find_line(text, "cursor_key_file"),
                key: "subscriptions.cursor_key_file".into(),
                message,
            });
        }
        if let Some(console) = &self.console {
            out.extend(console.validate(&self.issuers, text));
        }
        if let Some(alerts) = &self.alerts {
            for (span, key, message) in alerts.problems(&self.base_dir) {
                out.push(Problem {
                    line: Some(line_of(text, span.start)),
                    key,
                    message,
                });
            }
        }
        if let Some(tls) = &self.server.tls {
            for (key, message) in tls.problems(self.tls_agencies(), &self.base_dir) {
                out.push(Problem {
                    line: find_line(text, key),
                    key: format!("server.tls.{key}"),
                    message,
                });
            }
        }
        if let Some(telemetry) = &self.telemetry {
            for (key, message) in telemetry.problems(&self.base_dir) {
                out.push(Problem {
                    line: find_line(text, key),
                    key: format!("telemetry.{key}"),
                    message,
                });
            }
        }
        out.sort_by_key(|p| p.line);
        out
    }

    /// The ledger URL, with `LIAISON_LEDGER_URL` taking precedence so a
    /// password never has to sit in the file, and a relative SQLite path
    /// resolved against the config file's directory.
    pub fn ledger_url(&self) -> String {
        let url = std::env::var("LIAISON_LEDGER_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.ledger.url.get_ref().clone());
        resolve_sqlite_url(&url, &self.base_dir)
    }

    /// Loads the ledger's signing key (`LIAISON_LEDGER_SIGNING_KEY_FILE`
    /// taking precedence over `signing_key_file`) and the ring of public
    /// keys heads are checked with.
    pub fn ledger_keys(&self) -> Result<LedgerKeys, String> {
        let signing_path = std::env::var_os("LIAISON_LEDGER_SIGNING_KEY_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                self.ledger
                    .signing_key_file
                    .as_ref()
                    .map(|f| self.base_dir.join(f.get_ref()))
            });
        let signing = signing_path
            .map(|path| {
                liaison_ledger::SigningKey::from_file(&path)
                    .map_err(|e| format!("ledger signing key `{}`: {e}", path.display()))
            })
            .transpose()?;
        let mut ring = liaison_ledger::KeyRing::default();
        if let Some(key) = &signing {
            ring.add(key.verifying_key());
        }
        for file in &self.ledger.previous_public_keys {
            let path = self.base_dir.join(file.get_ref());
            let key = liaison_ledger::VerifyingKey::from_file(&path)
                .map_err(|e| format!("ledger public key `{}`: {e}", path.display()))?;
            ring.add(key);
        }
        Ok(LedgerKeys { signing, ring })
    }

    /// The witness file's path, if one is configured.
    pub fn witness_path(&self) -> Option<PathBuf> {
        self.ledger
            .witness_file
            .as_ref()
            .map(|f| self.base_dir.join(f.get_ref()))
    }

    /// The ids of the agencies in the trust registry.
    pub fn agency_ids(&self) -> BTreeSet<String> {
        self.agencies
            .iter()
            .map(|a| a.id.get_ref().clone())
            .collect()
    }

    /// Each agency's client CA and CRLs, for mutual TLS.
    pub fn tls_agencies(&self) -> Vec<crate::tls::AgencySources> {
        self.agencies
            .iter()
            .filter_map(|a| {
                Some(crate::tls::AgencySources {
                    id: a.id.get_ref().clone(),
                    ca: a.client_ca.clone()?,
                    crls: a.client_crls.clone(),
                })
            })
            .collect()
    }

    /// The policy file's path.
    pub fn policy_path(&self) -> PathBuf {
        self.base_dir.join(self.policy.file.get_ref())
    }
}

/// Parses an allowed algorithm, refusing `none` and HMAC: a federated
/// issuer's shared secret would have to be known to the gateway, and HMAC
/// with a public key is the classic key-confusion attack.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        "HS256" | "HS384" | "HS512" => Err(format!(
            "algorithm `{name}` is HMAC, which is never accepted from a federated issuer"
        )),
        "none" => Err("algorithm `none` is never accepted".into()),
        other => Err(format!("unknown algorithm `{other}`")),
    }
}

/// Resolves `sqlite://relative/path` against `base`.
pub fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if !path.starts_with('/') && !path.starts_with(':') {
            let abs = base.join(path);
            return match query {
                Some(q) => format!("sqlite://{}?{q}", abs.display()),
                None => format!("sqlite://{}", abs.display()),
            };
        }
    }
    url.to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|s| s.bytes().filter(|b| *b == b'\n').count() + 1)
        .unwrap_or(1)
}

/// The line of `key` in the `[[connector]]` whose id is `id` (the first
/// line from its id that starts with the key's last part, up to the next
/// `[[connector]]`), or of its id when the key is not written out.
fn connector_line(text: &str, id: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let id_line = lines.iter().position(|l| {
        let l = l.trim_start();
        l.starts_with("id") && l.contains(&format!("\"{id}\""))
    })?;
    let start = lines
        .iter()
        .take(id_line + 1)
        .rposition(|l| l.trim_start().starts_with("[[connector]]"))
        .unwrap_or(id_line);
    let end = lines
        .iter()
        .skip(id_line + 1)
        .position(|l| l.trim_start().starts_with("[[connector]]"))
        .map_or(lines.len(), |n| id_line + 1 + n);
    let field = key.rsplit('.').next().unwrap_or(key);
    let found = lines
        .iter()
        .enumerate()
        .take(end)
        .skip(start)
        .find(|(_, l)| l.trim_start().starts_with(field))
        .map(|(n, _)| n);
    Some(found.unwrap_or(id_line) + 1)
}

fn find_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(key))
        .map(|i| i + 1)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50051))
}
fn default_max_message_bytes() -> usize {
    4 << 20
}
fn default_connector_deadline_ms() -> u64 {
    3_000
}
fn default_request_timeout_ms() -> u64 {
    15_000
}
fn default_leeway() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_jwks_cache() -> Spanned<u64> {
    Spanned::new(0..0, 3_600)
}
fn default_max_token_lifetime() -> Spanned<u64> {
    Spanned::new(0..0, 86_400)
}
fn default_roles_claims() -> Vec<String> {
    vec!["roles".into()]
}
fn default_name_claim() -> String {
    "name".into()
}
fn default_agency_claim() -> String {
    "agency".into()
}

#[cfg(test)]
mod tests;
