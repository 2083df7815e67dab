//! The principal model every agency's claims are mapped onto.

use serde_json::{Map, Value};

use super::{TrustedIssuer, invalid};
use crate::error::GatewayError;

/// Who is asking, after authentication. Every decision and audit entry is
/// about a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The agency, fixed by the issuer that vouched for the token.
    pub agency: String,
    /// Subject id at the agency's identity provider.
    pub subject: String,
    /// Display name, if the token carried one.
    pub display_name: Option<String>,
    /// Roles, from the issuer's configured role claims.
    pub roles: Vec<String>,
    /// Team, if mapped.
    pub team: Option<String>,
    /// Vetting level, if mapped.
    pub vetting: Option<String>,
    /// The OAuth client the token was issued to.
    pub client_id: Option<String>,
    /// The issuer URL.
    pub issuer: String,
    /// True for a system (client-credentials) principal.
    pub is_system: bool,
}

impl Principal {
    /// True if the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// A name for the audit trail and messages.
    pub fn label(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.subject)
    }
}

/// Maps verified claims to a principal using the issuer's claim mapping.
pub(super) fn map_claims(
    issuer: &TrustedIssuer,
    claims: &Map<String, Value>,
) -> Result<Principal, GatewayError> {
    let mapping = &issuer.claims;
    for required in &mapping.required {
        if lookup(claims, required).is_none() {
            return Err(invalid(format!(
                "token lacks the required claim `{required}`"
            )));
        }
    }
    if let Some(asserted) = lookup(claims, &mapping.agency) {
        // An issuer speaks for its own agency only: a token that names any
        // other is refused outright rather than silently corrected.
        if asserted.as_str() != Some(issuer.agency.as_str()) {
            return Err(invalid(
                "token asserts an agency its issuer does not speak for",
            ));
        }
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or_else(|| invalid("claim `sub` is missing or malformed"))?
        .to_owned();
    let mut roles = Vec::new();
    for path in &mapping.roles {
        match lookup(claims, path) {
            Some(Value::Array(items)) => {
                for item in items {
                    let role = item.as_str().ok_or_else(|| {
                        invalid(format!("claim `{path}` holds a non-string role"))
                    })?;
                    push_unique(&mut roles, role);
                }
            }
            Some(Value::String(s)) => {
                for role in s.split_whitespace() {
                    push_unique(&mut roles, role);
                }
            }
            Some(_) => return Err(invalid(format!("claim `{path}` is not a list of roles"))),
            None => {}
        }
    }
    let client_id = string_claim(claims, "client_id").or_else(|| string_claim(claims, "azp"));
    let is_system = client_id.as_deref() == Some(subject.as_str());
    Ok(Principal {
        agency: issuer.agency.clone(),
        display_name: lookup(claims, &mapping.display_name)
            .and_then(Value::as_str)
            .map(|s| truncate(s, 200)),
        team: mapping
            .team
            .as_deref()
            .and_then(|c| lookup(claims, c))
            .and_then(Value::as_str)
            .map(|s| truncate(s, 200)),
        vetting: mapping
            .vetting
            .as_deref()
            .and_then(|c| lookup(claims, c))
            .and_then(Value::as_str)
            .map(|s| truncate(s, 50)),
        subject,
        roles,
        client_id,
        issuer: issuer.url.clone(),
        is_system,
    })
}

/// Follows a dot path (`realm_access.roles`) into the claims.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(|s| truncate(s, 255))
}

fn push_unique(roles: &mut Vec<String>, role: &str) {
    if !role.is_empty() && role.len() <= 100 && !roles.iter().any(|r| r == role) && roles.len() < 64
    {
        roles.push(role.to_owned());
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
