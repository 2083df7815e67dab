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
    registry().issuers().into_iter().next().unwrap()
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

fn config_problems(extra: &str) -> Vec<String> {
    let text = CONFIG.replace("[issuer.claims]", &format!("{extra}\n[issuer.claims]"));
    match Config::parse(&text, Path::new("t.toml"), Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect(),
    }
}

#[test]
fn key_cache_and_token_lifetimes_are_bounded_in_configuration() {
    assert!(config_problems("jwks_cache_seconds = 10\nmax_token_lifetime_seconds = 60").is_empty());
    assert_eq!(
        config_problems("jwks_cache_seconds = 5"),
        ["issuer[0].jwks_cache_seconds: `5` is out of range; between 10 and 604800 seconds"]
    );
    assert_eq!(
        config_problems("max_token_lifetime_seconds = 31536000"),
        [
            "issuer[0].max_token_lifetime_seconds: `31536000` is out of range; between 60 and 604800 seconds"
        ]
    );
    assert!(config_problems("require_certificate_bound = true").is_empty());
    let issuer = issuer();
    assert_eq!(issuer.max_lifetime, 86_400);
    assert!(!issuer.require_certificate_bound);
}

#[test]
fn failed_authentications_name_only_a_trusted_issuer() {
    let registry = registry();
    let trusted = token(json!({"alg": "none"}), claims());
    assert_eq!(registry.audit_issuer(&trusted), "https://idp.met.example");
    let mut c = claims();
    c["iss"] = json!("https://evil.example/<script>");
    assert_eq!(
        registry.audit_issuer(&token(json!({"alg": "RS256"}), c)),
        UNTRUSTED_ISSUER
    );
    assert_eq!(registry.audit_issuer("garbage"), UNTRUSTED_ISSUER);
    assert_eq!(registry.audit_issuer(""), UNTRUSTED_ISSUER);
    let twice = format!(
        "e30.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"iss":"https://evil.example","iss":"https://idp.met.example"}"#)
    );
    assert_eq!(registry.audit_issuer(&twice), UNTRUSTED_ISSUER);
    let huge = format!("e30.{}.c2ln", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(registry.audit_issuer(&huge), UNTRUSTED_ISSUER);
}

#[test]
fn numeric_dates_are_integers_or_finite_floats() {
    assert_eq!(numeric_date(&json!(1_700_000_000)), Some(1_700_000_000));
    assert_eq!(numeric_date(&json!(1_700_000_000.9)), Some(1_700_000_000));
    assert_eq!(numeric_date(&json!(-1)), Some(-1));
    assert_eq!(numeric_date(&json!(u64::MAX)), Some(i64::MAX));
    assert_eq!(numeric_date(&json!(1e300)), Some(i64::MAX));
    assert_eq!(numeric_date(&json!("1700000000")), None);
    assert_eq!(numeric_date(&serde_json::Value::Null), None);
}

#[test]
fn certificate_binding_follows_rfc_8705() {
    let issuer = issuer();
    let digest = [7u8; 32];
    let bound = json!({"cnf": {"x5t#S256": URL_SAFE_NO_PAD.encode(digest)}});
    let bound = bound.as_object().unwrap();
    let plain = serde_json::Map::new();
    let reason = |r: Result<(), GatewayError>| r.map_err(|e| e.to_string());
    assert_eq!(reason(issuer.check_binding(bound, Some(&digest))), Ok(()));
    assert_eq!(
        reason(issuer.check_binding(bound, None)),
        Err("token is bound to a client certificate, and none was presented".into())
    );
    assert_eq!(
        reason(issuer.check_binding(bound, Some(&[8u8; 32]))),
        Err("token is bound to a different client certificate".into())
    );
    assert_eq!(reason(issuer.check_binding(&plain, None)), Ok(()));
    assert_eq!(reason(issuer.check_binding(&plain, Some(&digest))), Ok(()));
    let strict = TrustedIssuer {
        require_certificate_bound: true,
        ..Arc::try_unwrap(issuer).unwrap()
    };
    assert_eq!(
        reason(strict.check_binding(&plain, Some(&digest))),
        Err(
            "this issuer's tokens must be bound to a client certificate, and this one is not"
                .into()
        )
    );
    assert_eq!(reason(strict.check_binding(bound, Some(&digest))), Ok(()));
}

#[tokio::test]
async fn unchanged_issuers_are_kept_and_every_change_moves_the_generation() {
    const URL: &str = "https://idp.met.example";
    let config = Config::parse(CONFIG, Path::new("t.toml"), Path::new(".")).unwrap();
    let registry = TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap();
    let first = registry.issuer(URL).unwrap();
    assert_eq!(registry.generation(), 0);

    // The same terms again: the same issuer, the same keys, no new generation.
    assert!(!registry.replace(&config.issuers));
    assert!(Arc::ptr_eq(&first, &registry.issuer(URL).unwrap()));
    assert_eq!(registry.generation(), 0);

    // A second issuer joins; the first is untouched.
    let mut other = config.issuers[0].clone();
    other.url = toml::Spanned::new(0..0, "https://idp.other.example".into());
    assert!(registry.replace([&config.issuers[0], &other]));
    assert_eq!(registry.generation(), 1);
    assert!(Arc::ptr_eq(&first, &registry.issuer(URL).unwrap()));
    let second = registry.issuer("https://idp.other.example").unwrap();

    // New audiences: a new issuer, but its keys come from the same place,
    // so the cache carries over; the other issuer is untouched.
    let mut widened = config.issuers[0].clone();
    widened.audiences.push("liaison-2".into());
    assert!(registry.replace([&widened, &other]));
    assert_eq!(registry.generation(), 2);
    let replaced = registry.issuer(URL).unwrap();
    assert!(!Arc::ptr_eq(&first, &replaced));
    assert_ne!(first.content_hash(), replaced.content_hash());
    assert!(replaced.keys().shares_state_with(first.keys()));
    assert!(Arc::ptr_eq(
        &second,
        &registry.issuer("https://idp.other.example").unwrap()
    ));

    // A different key lifetime is a different cache.
    let mut relaxed = widened.clone();
    relaxed.jwks_cache_seconds = toml::Spanned::new(0..0, 60);
    assert!(registry.replace([&relaxed, &other]));
    assert!(
        !registry
            .issuer(URL)
            .unwrap()
            .keys()
            .shares_state_with(first.keys())
    );

    // Dropped: its tokens name an issuer no longer trusted.
    assert!(registry.replace([&other]));
    assert_eq!(registry.generation(), 4);
    assert!(registry.issuer(URL).is_none());
    match registry
        .authenticate(&token(json!({"alg": "RS256", "kid": "k"}), claims()))
        .await
    {
        Err(GatewayError::Unauthenticated { reason, .. }) => assert_eq!(reason, "ISSUER_UNTRUSTED"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        registry.audit_issuer(&token(json!({"alg": "RS256"}), claims())),
        UNTRUSTED_ISSUER
    );
}
