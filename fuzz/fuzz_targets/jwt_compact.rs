//! Bearer tokens read before any signature is checked: the gateway's strict
//! JOSE reader (`identity/jose.rs`) through the registry's public entry
//! points, and the claim mapping that runs on a verified token's claims.
//!
//! The registry trusts one issuer whose keys are never fetched: a token
//! naming it would go on to a key lookup over the network, so those inputs
//! stop at the reader (via `audit_issuer`), and all others run the whole
//! pre-verification path and must be refused.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use liaison_gateway::config::Config;
use liaison_gateway::identity::{TrustRegistry, UNTRUSTED_ISSUER};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "https://idp.fuzz.invalid";

static REGISTRY: LazyLock<TrustRegistry> = LazyLock::new(|| {
    let text = include_str!("../seeds/jwt_gateway.toml");
    let config = Config::parse(text, Path::new("jwt_gateway.toml"), Path::new("."))
        .expect("the fixture configuration is valid");
    TrustRegistry::from_config(&config, reqwest::Client::new()).expect("registry builds")
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let registry = &*REGISTRY;
    let audit = registry.audit_issuer(token);
    assert!(
        audit == ISSUER || audit == UNTRUSTED_ISSUER,
        "audit issuer is caller-chosen text"
    );
    if audit == UNTRUSTED_ISSUER {
        // Everything up to the issuer lookup is synchronous; a token the
        // registry does not trust is refused on the first poll.
        let mut future = std::pin::pin!(registry.authenticate(token));
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(result) => assert!(result.is_err(), "untrusted token accepted"),
            Poll::Pending => panic!("an untrusted token reached the network"),
        }
    }
    // The claim mapping a verified token's payload goes through.
    if let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice(data) {
        if let Some(issuer) = registry.issuer(ISSUER) {
            if let Ok(principal) = issuer.principal_from_claims(&claims) {
                assert_eq!(
                    principal.agency, "fuzz-agency",
                    "agency taken from the token"
                );
            }
        }
    }
});
