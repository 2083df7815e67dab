//! The harness starts a real provider whose tokens carry the configured
//! claims, and refuses a wrong secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use liaison_conformance::oidc::{TestProvider, client};
use serde_json::json;

#[tokio::test]
async fn a_provider_issues_tokens_with_the_configured_claims_and_refuses_a_wrong_secret() {
    let provider = TestProvider::start(
        "met-police",
        "ES256",
        json!([client("c1", "test-fixture-secret", "PC Reid", &["officer"])]),
    )
    .await
    .unwrap();
    let token = provider.token(("c1", "test-fixture-secret")).await.unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims = String::from_utf8(base64url(payload)).unwrap();
    assert!(claims.contains("\"roles\":[\"officer\"]"), "{claims}");
    assert!(claims.contains("\"agency\":\"met-police\""), "{claims}");
    assert!(
        claims.contains(&format!("\"iss\":\"{}\"", provider.issuer)),
        "{claims}"
    );
    assert!(provider.token(("c1", "wrong")).await.is_err());
}

fn base64url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}
