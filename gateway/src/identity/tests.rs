use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

use super::*;

const CONFIG: &str = r#"
version = 1
[ledger]
url = "sqlite://x.db"
[policy]
file = "p.toml"
[[agency]]
id = "met-police"
display_name = "Met"
kind = "police"
[[issuer]]
url = "https://idp.met.example"
agency = "met-police"
audiences = ["liaison"]
algorithms = ["RS256", "ES256"]
[issuer.claims]
roles = ["roles", "realm_access.roles"]
team = "team"
"#;

fn registry() -> TrustRegistry {
    let config = Config::parse(CONFIG, Path::new("t.toml"), Path::new(".")).unwrap();
    TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap()
}

fn issuer() -> Arc<TrustedIssuer> {
    registry().issuers.into_values().next().unwrap()
}

fn token(header: serde_json::Value, claims: serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"signature")
    )
}

async fn reason(token: &str) -> &'static str {
    match registry().authenticate(token).await.unwrap_err() {
        GatewayError::Unauthenticated { reason, .. } => reason,
        other => panic!("{other:?}"),
    }
}

fn claims() -> serde_json::Value {
    json!({"iss": "https://idp.met.example", "sub": "u1", "aud": "liaison", "exp": 4_000_000_000u64})
}

#[tokio::test]
async fn structural_problems_are_refused_before_any_key_is_fetched() {
    assert_eq!(
        reason(&"a".repeat(MAX_TOKEN_BYTES + 1)).await,
        "TOKEN_INVALID"
    );
    assert_eq!(reason("a.b.c.d.e").await, "TOKEN_INVALID");
    assert_eq!(reason("only-one-segment").await, "TOKEN_INVALID");
    assert_eq!(
        reason(&token(json!({"alg": "none"}), claims())).await,
        "TOKEN_INVALID"
    );
    assert_eq!(
        reason(&token(
            json!({"alg": "RS256", "kid": "k", "crit": ["exp"]}),
            claims()
        ))
        .await,
        "TOKEN_INVALID"
    );
    assert_eq!(
        reason(&token(
            json!({"alg": "RS256", "kid": "k", "cty": "JWT"}),
            claims()
        ))
        .await,
        "TOKEN_INVALID"
    );
    assert_eq!(reason("e30.!!!.sig").await, "TOKEN_INVALID");
}

#[tokio::test]
async fn a_token_from_an_unknown_issuer_is_untrusted() {
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        reason(&token(json!({"alg": "RS256", "kid": "k"}), c)).await,
        "ISSUER_UNTRUSTED"
    );
}

#[tokio::test]
async fn hmac_and_unconfigured_algorithms_are_refused_for_a_trusted_issuer() {
    // Key confusion: HS256 "signed" with the issuer's public key.
    assert_eq!(
        reason(&token(json!({"alg": "HS256", "kid": "k"}), claims())).await,
        "TOKEN_INVALID"
    );
    assert_eq!(
        reason(&token(json!({"alg": "PS256", "kid": "k"}), claims())).await,
        "TOKEN_INVALID"
    );
    assert_eq!(
        reason(&token(json!({"alg": "RS256"}), claims())).await,
        "TOKEN_INVALID",
        "no kid"
    );
}

#[test]
fn claims_map_to_a_principal_with_roles_from_every_configured_claim() {
    let c = json!({
        "sub": "u1", "name": "Dana", "team": "MASH", "client_id": "c1",
        "roles": ["dpo"], "realm_access": {"roles": ["auditor", "dpo"]},
    });
    let p = principal::map_claims(&issuer(), c.as_object().unwrap()).unwrap();
    assert_eq!(p.agency, "met-police");
    assert_eq!(p.roles, vec!["dpo".to_owned(), "auditor".to_owned()]);
    assert_eq!(p.team.as_deref(), Some("MASH"));
    assert_eq!(p.display_name.as_deref(), Some("Dana"));
    assert!(!p.is_system);
}

#[test]
fn an_issuer_cannot_assert_another_agency() {
    let c = json!({"sub": "u1", "agency": "kent-police"});
    let err = principal::map_claims(&issuer(), c.as_object().unwrap()).unwrap_err();
    assert_eq!(err.reason(), "TOKEN_INVALID");
    let own = json!({"sub": "u1", "agency": "met-police"});
    principal::map_claims(&issuer(), own.as_object().unwrap()).unwrap();
}

#[test]
fn malformed_role_claims_are_refused() {
    let c = json!({"sub": "u1", "roles": [1, 2]});
    assert!(principal::map_claims(&issuer(), c.as_object().unwrap()).is_err());
    let c = json!({"sub": "u1", "roles": {"a": 1}});
    assert!(principal::map_claims(&issuer(), c.as_object().unwrap()).is_err());
    let c = json!({"sub": "u1", "roles": "dpo auditor"});
    let p = principal::map_claims(&issuer(), c.as_object().unwrap()).unwrap();
    assert_eq!(p.roles, vec!["dpo".to_owned(), "auditor".to_owned()]);
}

#[test]
fn a_system_principal_is_one_whose_subject_is_its_client() {
    let c = json!({"sub": "mash-system", "client_id": "mash-system"});
    assert!(
        principal::map_claims(&issuer(), c.as_object().unwrap())
            .unwrap()
            .is_system
    );
    let c = json!({"client_id": "x"});
    assert!(
        principal::map_claims(&issuer(), c.as_object().unwrap()).is_err(),
        "sub is required"
    );
}
