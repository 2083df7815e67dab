//! Key caching under attack and rotation: a flood of tokens naming invented
//! `kid`s costs the identity provider at most one key fetch per issuer per
//! ten seconds, however many callers wait at once, and a key the provider
//! starts signing with is picked up without a restart.
//!
//! The issuer is served by the test so every fetch can be counted and every
//! answer delayed, as a slow provider's would be.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod identity_kit;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use identity_kit::*;
use liaison_gateway::identity::{MIN_REFRESH_INTERVAL, TrustRegistry};
use serde_json::json;

/// Presents every token at once; returns how many were accepted, and
/// panics on any refusal other than an unknown key.
async fn wave(registry: &Arc<TrustRegistry>, tokens: Vec<String>) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let registry = registry.clone();
        tasks.spawn(async move { registry.authenticate(&token).await });
    }
    let mut accepted = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            Ok(_) => accepted += 1,
            Err(e) => assert_eq!(
                (e.reason(), e.to_string().as_str()),
                (
                    "TOKEN_INVALID",
                    "token is signed with a key the issuer does not publish"
                )
            ),
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_keys_once_per_interval_and_rotation_needs_no_restart() {
    let lab = Lab::start().await;
    let k1 = SigningKey::ec("k1");
    lab.publish("flood", vec![k1.jwk.clone()]).await;
    // A slow provider: if callers queued one fetch each, a wave would take
    // hours rather than a fraction of a second.
    lab.set_delay(Duration::from_millis(200)).await;
    let url = lab.issuer("flood");
    let registry = Arc::new(registry(&issuer_toml(&url, "flood-agency", &["ES256"], "")));
    let claims = claims(&url, "flood-agency");
    let valid = k1.sign(&claims);
    // Tokens naming invented kids need no valid signature: they must be
    // refused before any signature is checked.
    let signature = valid.rsplit('.').next().unwrap().to_owned();
    let invented = |tag: &str, i: usize| {
        unsigned(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("{tag}-{i}")}),
            &claims,
            &signature,
        )
    };

    // A cold cache and 10,000 concurrent callers, one in a hundred honest.
    let started = Instant::now();
    let tokens: Vec<String> = (0..10_000)
        .map(|i| {
            if i % 100 == 0 {
                valid.clone()
            } else {
                invented("cold", i)
            }
        })
        .collect();
    assert_eq!(wave(&registry, tokens).await, 100);
    let cold = started.elapsed();
    assert_eq!(lab.discovery_fetches("flood").await, 1);
    assert_eq!(lab.jwks_fetches("flood").await, 1);
    let issuer = registry.issuer(&url).unwrap();
    let cache = issuer.keys();
    assert_eq!(cache.fetches().await, 1);

    // The provider rotates to a new key. Waves of invented kids keep coming
    // every half second while a caller with a genuine new-key token retries.
    let k2 = SigningKey::ec("k2");
    lab.publish("flood", vec![k1.jwk.clone(), k2.jwk.clone()])
        .await;
    let rotated = Instant::now();
    let new_token = k2.sign(&claims);
    let mut flood = 0;
    let picked_up = loop {
        let tokens: Vec<String> = (0..1_000)
            .map(|i| invented(&format!("w{flood}"), i))
            .collect();
        let (accepted, new) =
            tokio::join!(wave(&registry, tokens), registry.authenticate(&new_token));
        assert_eq!(accepted, 0);
        flood += 1;
        if new.is_ok() {
            break rotated.elapsed();
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(60),
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // One more wave at once after the refresh: answered from memory.
    let tokens: Vec<String> = (0..10_000).map(|i| invented("after", i)).collect();
    assert_eq!(wave(&registry, tokens).await, 0);
    let total = started.elapsed();
    let fetches = lab.jwks_fetches("flood").await;
    println!(
        "cold wave of 10000 in {cold:?}; rotation picked up after {picked_up:?}; \
         {} flooding tokens over {total:?}; {fetches} key-set fetches",
        10_000 + flood * 1_000 + 10_000
    );
    // Exactly one fetch on the cold cache and one once the interval had
    // passed: the thousands of callers waiting when it passed did not each
    // fetch again.
    assert_eq!(fetches, 2);
    assert_eq!(cache.fetches().await, 2);
    assert_eq!(
        lab.discovery_fetches("flood").await,
        1,
        "discovery is cached"
    );
    let intervals = total.as_secs() / MIN_REFRESH_INTERVAL.as_secs() + 1;
    assert!(fetches <= intervals, "{fetches} fetches in {total:?}");
    assert!(picked_up < Duration::from_secs(60));
    assert!(
        cold < Duration::from_secs(10),
        "the cold wave took {cold:?}: callers queued for fetches"
    );
    registry.authenticate(&valid).await.unwrap();
    registry.authenticate(&new_token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_fails_closed_once_its_cached_keys_lapse_and_others_are_unaffected() {
    let lab = Lab::start().await;
    let (a, b) = (SigningKey::ec("a1"), SigningKey::ec("b1"));
    lab.publish("a", vec![a.jwk.clone()]).await;
    lab.publish("b", vec![b.jwk.clone()]).await;
    let registry = registry(&format!(
        "{}{}",
        issuer_toml(
            &lab.issuer("a"),
            "agency-a",
            &["ES256"],
            "jwks_cache_seconds = 10"
        ),
        issuer_toml(
            &lab.issuer("b"),
            "agency-b",
            &["ES256"],
            "jwks_cache_seconds = 10"
        ),
    ));
    let token_a = a.sign(&claims(&lab.issuer("a"), "agency-a"));
    let token_b = b.sign(&claims(&lab.issuer("b"), "agency-b"));
    registry.authenticate(&token_a).await.unwrap();
    registry.authenticate(&token_b).await.unwrap();
    let fetched = Instant::now();

    lab.set_down("a", true).await;
    // Cached keys keep serving, without waiting on the provider, until the
    // cache lifetime after the last successful fetch.
    let mut last_good = Duration::ZERO;
    let failed_after = loop {
        let asked = Instant::now();
        match registry.authenticate(&token_a).await {
            Ok(_) => {
                assert!(
                    asked.elapsed() < Duration::from_secs(1),
                    "a stale key waited on the provider"
                );
                last_good = fetched.elapsed();
            }
            Err(e) => {
                assert_eq!(e.reason(), "ISSUER_UNAVAILABLE", "{e}");
                break fetched.elapsed();
            }
        }
        registry.authenticate(&token_b).await.unwrap();
        assert!(fetched.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("issuer a: keys served {last_good:?} into the outage, refused after {failed_after:?}");
    assert!(last_good >= Duration::from_secs(9), "{last_good:?}");
    assert!(failed_after <= Duration::from_secs(12), "{failed_after:?}");
    // The other issuer is unaffected; the failed one recovers when its
    // provider answers again (once the rate limit allows a fetch).
    registry.authenticate(&token_b).await.unwrap();
    lab.set_down("a", false).await;
    let recovering = Instant::now();
    loop {
        if registry.authenticate(&token_a).await.is_ok() {
            break;
        }
        assert!(
            recovering.elapsed() < Duration::from_secs(15),
            "issuer a did not recover"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A token seen before is answered from the token cache, but only while
/// what verified it still holds: a token that was not valid *yet* is
/// accepted once it is, and a token whose key the provider has withdrawn is
/// refused once the keys are re-read, though it was accepted before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tokens_are_remembered_only_while_their_key_holds() {
    let lab = Lab::start().await;
    let k1 = SigningKey::ec("k1");
    lab.publish("cache", vec![k1.jwk.clone()]).await;
    let url = lab.issuer("cache");
    let registry = Arc::new(registry(&issuer_toml(
        &url,
        "cache-agency",
        &["ES256"],
        "leeway_seconds = 0",
    )));
    let token = k1.sign(&claims(&url, "cache-agency"));

    // The second answer is the first one's principal, not a copy: a hit.
    let first = registry.authenticate_shared(&token, None).await.unwrap();
    let second = registry.authenticate_shared(&token, None).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second), "the second check was a hit");
    // Another certificate is another key: a certificate-bound check never
    // borrows a bearer check's answer.
    let with_cert = registry
        .authenticate_shared(&token, Some(&[7u8; 32]))
        .await
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &with_cert));

    // A forged signature is refused, and refused again from the cache with
    // the same reason (each refusal is still the caller's to audit).
    let mut forged = token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    for _ in 0..2 {
        let e = registry
            .authenticate_shared(&forged, None)
            .await
            .unwrap_err();
        assert_eq!(
            (e.reason(), e.to_string().as_str()),
            ("TOKEN_INVALID", "token signature does not verify")
        );
    }

    // Not valid for two more seconds: refused, then accepted once it is,
    // though the same token was refused before.
    let mut early = claims(&url, "cache-agency");
    early["nbf"] = json!(now() + 2);
    early["jti"] = json!("j-early");
    let early = k1.sign(&early);
    let e = registry
        .authenticate_shared(&early, None)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "token is not valid yet");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    registry.authenticate_shared(&early, None).await.unwrap();

    // The provider withdraws k1 for k2. Until the keys are re-read the
    // remembered token stands, as k1 itself would; once a token naming k2
    // makes the gateway re-read them, the remembered token is refused.
    let k2 = SigningKey::ec("k2");
    lab.publish("cache", vec![k2.jwk.clone()]).await;
    registry.authenticate_shared(&token, None).await.unwrap();
    let new_token = k2.sign(&claims(&url, "cache-agency"));
    let started = Instant::now();
    while registry
        .authenticate_shared(&new_token, None)
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "k2 not picked up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let e = registry
        .authenticate_shared(&token, None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.to_string().as_str()),
        (
            "TOKEN_INVALID",
            "token is signed with a key the issuer does not publish"
        )
    );
}
