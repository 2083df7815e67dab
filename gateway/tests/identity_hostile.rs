//! Hostile and broken tokens against the trust registry: a table of named
//! cases, each refused for its own reason, and ten thousand mutants of valid
//! tokens, none accepted and none panicking.
//!
//! Tokens come from real `oidc-provider` processes, and forgeries are signed
//! with those providers' genuine private keys (the harness hands them out),
//! so a refusal shows the gateway's rule at work, not a bad signature. Every
//! forging path also has a positive twin that must be accepted, so a broken
//! forger cannot make the refusals pass by accident.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod identity_kit;

use std::{collections::BTreeMap, time::Instant};

use identity_kit::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use liaison_conformance::oidc::TestProvider;
use liaison_gateway::identity::{MAX_HEADER_BYTES, MAX_TOKEN_BYTES, TrustRegistry};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MET: &str = "met-police";
const HACKNEY: &str = "hackney-childrens";

/// Two real agencies, a test-controlled issuer with a mixed key set, and
/// one that requires certificate-bound tokens.
struct Bench {
    met: TestProvider,
    hackney: TestProvider,
    lab: Lab,
    met_key: SigningKey,
    hackney_key: SigningKey,
    ed_key: SigningKey,
    bound_key: SigningKey,
    /// Signed by met's first key, which was rotated out and retired before
    /// the gateway ever read met's key set.
    old_met_token: String,
    registry: TrustRegistry,
}

impl Bench {
    async fn start() -> Bench {
        let (met, hackney, lab) = tokio::join!(
            provider(MET, "RS256"),
            provider(HACKNEY, "ES256"),
            Lab::start()
        );
        let old_met_token = met.token(SYSTEM).await.unwrap();
        met.rotate().await.unwrap();
        assert_eq!(met.retire().await.unwrap().len(), 1);
        let met_key = SigningKey::active(&met).await;
        let hackney_key = SigningKey::active(&hackney).await;
        let ed_key = SigningKey::ed("ed-1");
        let bound_key = SigningKey::ec("bound-1");
        let unpinned = |key: &SigningKey, kid: &str| {
            let mut jwk = key.with_kid(kid).jwk;
            jwk.as_object_mut().unwrap().remove("alg");
            jwk
        };
        let mut enc = unpinned(&met_key, "enc-1");
        enc["use"] = json!("enc");
        let mut oaep = unpinned(&met_key, "oaep-1");
        oaep.as_object_mut().unwrap().remove("use");
        oaep["alg"] = json!("RSA-OAEP");
        lab.publish(
            "mixed",
            vec![
                unpinned(&met_key, "rsa-unpinned"),
                met_key.with_kid("rsa-pinned").jwk,
                unpinned(&hackney_key, "ec-unpinned"),
                ed_key.jwk.clone(),
                json!({"kty": "oct", "kid": "oct-1", "alg": "HS256", "k": b64("shared-secret")}),
                enc,
                oaep,
                json!({"kty": "XYZ", "kid": "weird", "use": "sig"}),
            ],
        )
        .await;
        lab.publish("bound", vec![bound_key.jwk.clone()]).await;
        let registry = registry(&format!(
            "{}{}{}{}",
            issuer_toml(&met.issuer, MET, &["RS256"], ""),
            issuer_toml(&hackney.issuer, HACKNEY, &["ES256"], ""),
            issuer_toml(
                &lab.issuer("mixed"),
                "lab-mixed",
                &["RS256", "PS256", "ES256", "EdDSA"],
                ""
            ),
            issuer_toml(
                &lab.issuer("bound"),
                "lab-bound",
                &["ES256"],
                "require_certificate_bound = true"
            ),
        ));
        Bench {
            met,
            hackney,
            lab,
            met_key,
            hackney_key,
            ed_key,
            bound_key,
            old_met_token,
            registry,
        }
    }

    fn met_claims(&self) -> Value {
        claims(&self.met.issuer, MET)
    }

    fn met_forged(&self, claims: &Value) -> String {
        self.met_key.sign(claims)
    }

    /// The met claims with `edit` applied, signed with met's genuine key.
    fn met_edited(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut c = self.met_claims();
        edit(c.as_object_mut().unwrap());
        self.met_forged(&c)
    }

    /// A token signed with met's genuine key under a header with `edit`.
    fn met_header(&self, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut h = self.met_key.header();
        edit(h.as_object_mut().unwrap());
        self.met_key.sign_with(&h, &self.met_claims())
    }
}

/// One named hostile token and the refusal it must get.
struct Case {
    name: &'static str,
    token: String,
    peer: Option<Vec<u8>>,
    reason: &'static str,
    says: &'static str,
}

fn case(name: &'static str, token: String, reason: &'static str, says: &'static str) -> Case {
    Case {
        name,
        token,
        peer: None,
        reason,
        says,
    }
}

const INVALID: &str = "TOKEN_INVALID";
const EXPIRED: &str = "TOKEN_EXPIRED";
const UNTRUSTED: &str = "ISSUER_UNTRUSTED";

fn replace_segment(token: &str, index: usize, with: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = with;
    parts.join(".")
}

fn segment(token: &str, index: usize) -> &str {
    token.split('.').nth(index).unwrap()
}

async fn hostile_cases(b: &Bench, rogue: &TestProvider) -> Vec<Case> {
    let now = now();
    let met = b.met.issuer.clone();
    let genuine = b.met.token(SYSTEM).await.unwrap();
    let hackney_genuine = b.hackney.token(SYSTEM).await.unwrap();
    let rogue_genuine = rogue.token(SYSTEM).await.unwrap();
    let rogue_key = SigningKey::active(rogue).await;
    let met_pem = SigningKey::public_pem(&b.met).await;
    let forged = b.met_forged(&b.met_claims());
    let cert = Sha256::digest(b"a client certificate's DER").to_vec();
    let other_cert = Sha256::digest(b"another client certificate").to_vec();
    let thumbprint = b64(&cert);
    let claims_text = b.met_claims().to_string();
    let header_text = b.met_key.header().to_string();
    let hmac = |secret: &[u8], alg: Algorithm| {
        sign_raw(
            &json!({"alg": alg_name(alg), "kid": b.met_key.kid, "typ": "JWT"}).to_string(),
            &claims_text,
            &EncodingKey::from_secret(secret),
            alg,
        )
    };
    // The attacker's own key, dressed up as met's.
    let attacker = rogue_key.with_kid(&b.met_key.kid);
    let attacker_with = |extra: Value| {
        let mut h = attacker.header();
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        attacker.sign_with(&h, &b.met_claims())
    };
    let lab = |key: &SigningKey, alg: Algorithm| {
        key.with_alg(alg)
            .sign(&claims(&b.lab.issuer("mixed"), "lab-mixed"))
    };
    vec![
        // --- the algorithm ---
        case(
            "alg_none_empty_signature",
            unsigned(&json!({"alg": "none"}), &b.met_claims(), ""),
            INVALID,
            "token is unsigned",
        ),
        case(
            "alg_none_with_signature",
            unsigned(
                &json!({"alg": "none", "kid": b.met_key.kid}),
                &b.met_claims(),
                "c2ln",
            ),
            INVALID,
            "`alg: none`",
        ),
        case(
            "alg_none_mixed_case",
            unsigned(&json!({"alg": "nOnE"}), &b.met_claims(), "c2ln"),
            INVALID,
            "`alg: none`",
        ),
        case(
            "hs256_keyed_with_the_issuers_public_pem",
            hmac(met_pem.as_bytes(), Algorithm::HS256),
            INVALID,
            "algorithm `HS256` is not accepted from this issuer",
        ),
        case(
            "hs512_keyed_with_the_issuers_public_jwk",
            hmac(b.met_key.jwk.to_string().as_bytes(), Algorithm::HS512),
            INVALID,
            "algorithm `HS512` is not accepted from this issuer",
        ),
        case(
            "alg_unknown",
            b.met_header(|h| {
                h.insert("alg".into(), json!("RS1024"));
            }),
            INVALID,
            "does not support",
        ),
        case(
            "alg_lowercase",
            b.met_header(|h| {
                h.insert("alg".into(), json!("rs256"));
            }),
            INVALID,
            "does not support",
        ),
        case(
            "alg_not_a_string",
            b.met_header(|h| {
                h.insert("alg".into(), json!(["RS256"]));
            }),
            INVALID,
            "header member `alg` is not a string",
        ),
        case(
            "alg_missing",
            b.met_header(|h| {
                h.remove("alg");
            }),
            INVALID,
            "names no algorithm",
        ),
        case(
            "alg_es256_from_an_rs256_issuer",
            b.hackney_key.with_kid(&b.met_key.kid).sign(&b.met_claims()),
            INVALID,
            "algorithm `ES256` is not accepted from this issuer",
        ),
        case(
            "rs256_header_naming_an_ec_key",
            lab(&b.met_key.with_kid("ec-unpinned"), Algorithm::RS256),
            INVALID,
            "token algorithm does not match its key",
        ),
        case(
            "es256_header_naming_an_rsa_key",
            lab(&b.hackney_key.with_kid("rsa-unpinned"), Algorithm::ES256),
            INVALID,
            "token algorithm does not match its key",
        ),
        case(
            "eddsa_header_naming_an_ec_key",
            lab(&b.ed_key.with_kid("ec-unpinned"), Algorithm::EdDSA),
            INVALID,
            "token algorithm does not match its key",
        ),
        case(
            "ps256_header_naming_a_key_pinned_to_rs256",
            lab(&b.met_key.with_kid("rsa-pinned"), Algorithm::PS256),
            INVALID,
            "token algorithm does not match its key",
        ),
        // --- the key id ---
        case(
            "kid_unknown",
            b.met_key.with_kid("no-such-key").sign(&b.met_claims()),
            INVALID,
            "a key the issuer does not publish",
        ),
        case(
            "kid_path_traversal",
            b.met_key.with_kid("../../etc/passwd").sign(&b.met_claims()),
            INVALID,
            "a key the issuer does not publish",
        ),
        case(
            "kid_sql_injection",
            b.met_key.with_kid("' OR 1=1--").sign(&b.met_claims()),
            INVALID,
            "a key the issuer does not publish",
        ),
        case(
            "kid_empty",
            b.met_key.with_kid("").sign(&b.met_claims()),
            INVALID,
            "no usable `kid`",
        ),
        case(
            "kid_missing",
            b.met_header(|h| {
                h.remove("kid");
            }),
            INVALID,
            "no usable `kid`",
        ),
        case(
            "kid_oversized",
            b.met_key.with_kid(&"k".repeat(300)).sign(&b.met_claims()),
            INVALID,
            "no usable `kid`",
        ),
        case(
            "kid_not_a_string",
            b.met_header(|h| {
                h.insert("kid".into(), json!(7));
            }),
            INVALID,
            "header member `kid` is not a string",
        ),
        case(
            "kid_of_a_retired_key",
            b.old_met_token.clone(),
            INVALID,
            "a key the issuer does not publish",
        ),
        case(
            "kid_of_a_symmetric_key_in_the_jwks",
            lab(&b.met_key.with_kid("oct-1"), Algorithm::RS256),
            INVALID,
            "a key the issuer does not publish",
        ),
        case(
            "kid_of_an_encryption_key",
            lab(&b.met_key.with_kid("enc-1"), Algorithm::RS256),
            INVALID,
            "a key the issuer does not publish",
        ),
        case(
            "kid_of_a_key_pinned_to_rsa_oaep",
            lab(&b.met_key.with_kid("oaep-1"), Algorithm::RS256),
            INVALID,
            "a key the issuer does not publish",
        ),
        // --- keys the token brings with it are never used ---
        case(
            "jku_pointing_at_the_attackers_jwks",
            attacker_with(json!({"jku": format!("{}/jwks", rogue.issuer)})),
            INVALID,
            "token signature does not verify",
        ),
        case(
            "x5u_pointing_at_the_attackers_certificate",
            attacker_with(json!({"x5u": format!("{}/cert.pem", rogue.issuer)})),
            INVALID,
            "token signature does not verify",
        ),
        case(
            "jwk_embedding_the_attackers_key",
            attacker_with(json!({"jwk": rogue_key.jwk})),
            INVALID,
            "token signature does not verify",
        ),
        case(
            "x5c_embedding_an_attackers_chain",
            attacker_with(json!({"x5c": ["MIIBszCCAVmgAwIBAgIUZm9yZ2Vk"]})),
            INVALID,
            "token signature does not verify",
        ),
        case(
            "jwk_embedded_and_no_kid",
            {
                let mut h = attacker.header();
                h.as_object_mut().unwrap().remove("kid");
                h["jwk"] = rogue_key.jwk.clone();
                attacker.sign_with(&h, &b.met_claims())
            },
            INVALID,
            "no usable `kid`",
        ),
        // --- time ---
        case(
            "expired",
            b.met_edited(|c| {
                c.insert("exp".into(), json!(now - 120));
                c.insert("iat".into(), json!(now - 420));
                c.insert("nbf".into(), json!(now - 420));
            }),
            EXPIRED,
            "token has expired",
        ),
        case(
            "expired_just_beyond_the_leeway",
            b.met_edited(|c| {
                c.insert("exp".into(), json!(now - 40));
            }),
            EXPIRED,
            "token has expired",
        ),
        case(
            "nbf_just_beyond_the_leeway",
            b.met_edited(|c| {
                c.insert("nbf".into(), json!(now + 40));
            }),
            EXPIRED,
            "token is not valid yet",
        ),
        case(
            "nbf_in_the_future",
            b.met_edited(|c| {
                c.insert("nbf".into(), json!(now + 120));
            }),
            EXPIRED,
            "token is not valid yet",
        ),
        case(
            "iat_far_in_the_future",
            b.met_edited(|c| {
                c.insert("iat".into(), json!(now + 3_600));
            }),
            INVALID,
            "token was issued in the future",
        ),
        case(
            "exp_as_a_string",
            b.met_edited(|c| {
                c.insert("exp".into(), json!((now + 300).to_string()));
            }),
            INVALID,
            "claim `exp` is malformed",
        ),
        case(
            "exp_negative",
            b.met_edited(|c| {
                c.insert("exp".into(), json!(-1));
            }),
            INVALID,
            "claim `exp` is malformed",
        ),
        case(
            "exp_missing",
            b.met_edited(|c| {
                c.remove("exp");
            }),
            INVALID,
            "token lacks the required claim `exp`",
        ),
        case(
            "exp_u64_max",
            b.met_edited(|c| {
                c.insert("exp".into(), json!(u64::MAX));
            }),
            INVALID,
            "expires later than this issuer's tokens may live",
        ),
        case(
            "exp_huge_float",
            b.met_edited(|c| {
                c.insert("exp".into(), json!(1e19));
            }),
            INVALID,
            "expires later than this issuer's tokens may live",
        ),
        case(
            "exp_a_year_ahead",
            b.met_edited(|c| {
                c.insert("exp".into(), json!(now + 366 * 86_400));
            }),
            INVALID,
            "expires later than this issuer's tokens may live",
        ),
        case(
            "exp_beyond_any_float",
            b.met_key.sign_raw(
                &header_text,
                &claims_text.replacen("\"exp\":", "\"exp\":1e400,\"x\":", 1),
            ),
            INVALID,
            "token payload is not JSON",
        ),
        case(
            "nbf_as_a_string",
            b.met_edited(|c| {
                c.insert("nbf".into(), json!("yesterday"));
            }),
            INVALID,
            "claim `nbf` is malformed",
        ),
        case(
            "nbf_null",
            b.met_edited(|c| {
                c.insert("nbf".into(), Value::Null);
            }),
            INVALID,
            "claim `nbf` is malformed",
        ),
        case(
            "iat_as_a_string",
            b.met_edited(|c| {
                c.insert("iat".into(), json!("now"));
            }),
            INVALID,
            "claim `iat` is malformed",
        ),
        // --- audience and issuer ---
        case(
            "aud_wrong",
            b.met_edited(|c| {
                c.insert("aud".into(), json!("another-service"));
            }),
            INVALID,
            "token audience is not accepted",
        ),
        case(
            "aud_empty_list",
            b.met_edited(|c| {
                c.insert("aud".into(), json!([]));
            }),
            INVALID,
            "token audience is not accepted",
        ),
        case(
            "aud_missing",
            b.met_edited(|c| {
                c.remove("aud");
            }),
            INVALID,
            "token lacks the required claim `aud`",
        ),
        case(
            "aud_a_number",
            b.met_edited(|c| {
                c.insert("aud".into(), json!(42));
            }),
            INVALID,
            "claim `aud` is malformed",
        ),
        case(
            "iss_wrong",
            b.met_edited(|c| {
                c.insert("iss".into(), json!("https://idp.evil.example"));
            }),
            UNTRUSTED,
            "token issuer is not trusted by this gateway",
        ),
        case(
            "iss_with_a_trailing_slash",
            b.met_edited(|c| {
                c.insert("iss".into(), json!(format!("{met}/")));
            }),
            UNTRUSTED,
            "token issuer is not trusted by this gateway",
        ),
        case(
            "iss_as_a_list",
            b.met_edited(|c| {
                c.insert("iss".into(), json!([met]));
            }),
            INVALID,
            "claim `iss` is not a string",
        ),
        case(
            "iss_missing",
            b.met_edited(|c| {
                c.remove("iss");
            }),
            INVALID,
            "token lacks the required claim `iss`",
        ),
        case(
            "issuer_a_key_signing_as_issuer_b",
            b.met_forged(&claims(&b.hackney.issuer, HACKNEY)),
            INVALID,
            "algorithm `RS256` is not accepted from this issuer",
        ),
        case(
            "issuer_a_asserting_agency_b",
            b.met_edited(|c| {
                c.insert("agency".into(), json!(HACKNEY));
            }),
            INVALID,
            "token asserts an agency its issuer does not speak for",
        ),
        case(
            "agency_as_a_number",
            b.met_edited(|c| {
                c.insert("agency".into(), json!(17));
            }),
            INVALID,
            "token asserts an agency its issuer does not speak for",
        ),
        case(
            "agency_as_a_list",
            b.met_edited(|c| {
                c.insert("agency".into(), json!([MET]));
            }),
            INVALID,
            "token asserts an agency its issuer does not speak for",
        ),
        case(
            "valid_token_from_an_untrusted_issuer",
            rogue_genuine.clone(),
            UNTRUSTED,
            "token issuer is not trusted by this gateway",
        ),
        // --- subject and roles ---
        case(
            "sub_empty",
            b.met_edited(|c| {
                c.insert("sub".into(), json!(""));
            }),
            INVALID,
            "claim `sub` is missing or malformed",
        ),
        case(
            "sub_oversized",
            b.met_edited(|c| {
                c.insert("sub".into(), json!("s".repeat(300)));
            }),
            INVALID,
            "claim `sub` is missing or malformed",
        ),
        case(
            "sub_a_number",
            b.met_edited(|c| {
                c.insert("sub".into(), json!(1001));
            }),
            INVALID,
            "claim `sub` is malformed",
        ),
        case(
            "sub_missing",
            b.met_edited(|c| {
                c.remove("sub");
            }),
            INVALID,
            "token lacks the required claim `sub`",
        ),
        case(
            "roles_with_non_string_items",
            b.met_edited(|c| {
                c.insert("roles".into(), json!(["officer", 7, null]));
            }),
            INVALID,
            "claim `roles` holds a non-string role",
        ),
        case(
            "roles_as_an_object",
            b.met_edited(|c| {
                c.insert("roles".into(), json!({"dpo": true}));
            }),
            INVALID,
            "claim `roles` is not a list of roles",
        ),
        // --- duplicated members: two parsers, two meanings ---
        case(
            "duplicated_aud",
            b.met_key.sign_raw(
                &header_text,
                &claims_text.replacen('{', "{\"aud\":\"another-service\",", 1),
            ),
            INVALID,
            "token payload names a member twice",
        ),
        case(
            "duplicated_sub",
            b.met_key.sign_raw(
                &header_text,
                &claims_text.replacen('{', "{\"sub\":\"admin\",", 1),
            ),
            INVALID,
            "token payload names a member twice",
        ),
        case(
            "duplicated_iss",
            b.met_key.sign_raw(
                &header_text,
                &claims_text.replacen('{', "{\"iss\":\"https://idp.evil.example\",", 1),
            ),
            INVALID,
            "token payload names a member twice",
        ),
        case(
            "duplicated_agency_spelled_with_an_escape",
            b.met_key.sign_raw(
                &header_text,
                &claims_text.replacen('{', &format!("{{\"\\u0061gency\":\"{HACKNEY}\","), 1),
            ),
            INVALID,
            "token payload names a member twice",
        ),
        case(
            "duplicated_alg_in_the_header",
            b.met_key.sign_raw(
                &header_text.replacen('{', "{\"alg\":\"none\",", 1),
                &claims_text,
            ),
            INVALID,
            "token header names a member twice",
        ),
        case(
            "duplicated_kid_in_the_header",
            b.met_key.sign_raw(
                &header_text.replacen('{', "{\"kid\":\"../../etc/passwd\",", 1),
                &claims_text,
            ),
            INVALID,
            "token header names a member twice",
        ),
        // --- header extensions and token kinds ---
        case(
            "crit_unknown_extension",
            b.met_header(|h| {
                h.insert("crit".into(), json!(["urn:example:must-understand"]));
                h.insert("urn:example:must-understand".into(), json!(true));
            }),
            INVALID,
            "critical header extension",
        ),
        case(
            "crit_empty_list",
            b.met_header(|h| {
                h.insert("crit".into(), json!([]));
            }),
            INVALID,
            "critical header extension",
        ),
        case(
            "b64_false_unencoded_payload",
            b.met_header(|h| {
                h.insert("b64".into(), json!(false));
            }),
            INVALID,
            "unencoded payload",
        ),
        case(
            "nested_jwt_cty",
            b.met_header(|h| {
                h.insert("cty".into(), json!("JWT"));
            }),
            INVALID,
            "nested tokens are not accepted",
        ),
        case(
            "jwe_header_in_three_segments",
            b.met_header(|h| {
                h.insert("enc".into(), json!("A256GCM"));
            }),
            INVALID,
            "encrypted tokens (JWE) are not accepted",
        ),
        case(
            "jwe_five_segments",
            format!(
                "{}.ZW5jcnlwdGVka2V5.aXY.Y2lwaGVydGV4dA.dGFn",
                b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
            ),
            INVALID,
            "encrypted tokens (JWE) are not accepted",
        ),
        case(
            "typ_logout_token",
            b.met_header(|h| {
                h.insert("typ".into(), json!("logout+jwt"));
            }),
            INVALID,
            "token type is not an access token",
        ),
        case(
            "typ_dpop_proof",
            b.met_header(|h| {
                h.insert("typ".into(), json!("dpop+jwt"));
            }),
            INVALID,
            "token type is not an access token",
        ),
        case(
            "header_not_an_object",
            format!("{}.{}.c2ln", b64("\"RS256\""), b64(&claims_text)),
            INVALID,
            "token header is not a JSON object",
        ),
        case(
            "payload_an_array",
            b.met_key
                .sign_raw(&header_text, &format!("[{claims_text}]")),
            INVALID,
            "token payload is not a JSON object",
        ),
        case(
            "payload_not_json",
            b.met_key.sign_raw(&header_text, "iss=met&sub=admin"),
            INVALID,
            "token payload is not JSON",
        ),
        case(
            "payload_with_trailing_garbage",
            b.met_key
                .sign_raw(&header_text, &format!("{claims_text}{{}}")),
            INVALID,
            "token payload is not JSON",
        ),
        // --- the signature ---
        case(
            "signature_stripped",
            replace_segment(&genuine, 2, ""),
            INVALID,
            "token is unsigned",
        ),
        case(
            "signature_of_another_genuine_token",
            replace_segment(&forged, 2, segment(&genuine, 2)),
            INVALID,
            "token signature does not verify",
        ),
        case(
            "signature_truncated",
            {
                let sig = segment(&genuine, 2);
                // Whole base64 quanta, so it decodes: just too short.
                replace_segment(&genuine, 2, &sig[..sig.len() / 4 * 4 - 4])
            },
            INVALID,
            "token signature does not verify",
        ),
        case(
            "signature_not_decodable",
            {
                let sig = segment(&genuine, 2);
                replace_segment(&genuine, 2, &sig[..sig.len() - 1])
            },
            INVALID,
            "token signature is malformed",
        ),
        case(
            "claims_altered_after_signing",
            replace_segment(
                &genuine,
                1,
                &b64(b.met_claims().to_string().replace("social-worker", "dpo")),
            ),
            INVALID,
            "token signature does not verify",
        ),
        case(
            "signature_from_another_agencys_token",
            replace_segment(&genuine, 2, segment(&hackney_genuine, 2)),
            INVALID,
            "token signature does not verify",
        ),
        // --- encoding and shape ---
        case("empty", String::new(), INVALID, "token is not a signed JWT"),
        case(
            "dots_only",
            "..".into(),
            INVALID,
            "token is not a signed JWT",
        ),
        case(
            "two_segments",
            genuine.rsplit_once('.').unwrap().0.to_owned(),
            INVALID,
            "token is not a signed JWT",
        ),
        case(
            "four_segments",
            format!("{genuine}.c2ln"),
            INVALID,
            "token is not a signed JWT",
        ),
        case(
            "header_truncated",
            replace_segment(&genuine, 0, &segment(&genuine, 0)[..5]),
            INVALID,
            "token header is not base64url encoded",
        ),
        case(
            "payload_truncated",
            {
                let p = segment(&genuine, 1);
                replace_segment(&genuine, 1, &p[..p.len() / 8 * 4])
            },
            INVALID,
            "token payload is not JSON",
        ),
        case(
            "non_base64_characters",
            replace_segment(&genuine, 1, &format!("{}*", segment(&genuine, 1))),
            INVALID,
            "token is not base64url encoded",
        ),
        case(
            "standard_base64_alphabet",
            genuine.replace('-', "+").replace('_', "/") + "+/",
            INVALID,
            "token is not base64url encoded",
        ),
        case(
            "base64_padding",
            replace_segment(&genuine, 0, &format!("{}==", segment(&genuine, 0))),
            INVALID,
            "token is not base64url encoded",
        ),
        case(
            "newline_inside",
            replace_segment(&genuine, 1, &format!("{}\n", segment(&genuine, 1))),
            INVALID,
            "token is not base64url encoded",
        ),
        case(
            "surrounding_whitespace",
            format!(" {genuine}\t"),
            INVALID,
            "token is not base64url encoded",
        ),
        case(
            "scheme_left_on_the_token",
            format!("Bearer {genuine}"),
            INVALID,
            "token is not base64url encoded",
        ),
        case(
            "oversized_token",
            format!("{}.{}.c2ln", b64(&header_text), "A".repeat(MAX_TOKEN_BYTES)),
            INVALID,
            "token is larger than the gateway accepts",
        ),
        case(
            "oversized_header",
            b.met_header(|h| {
                h.insert("x".into(), json!("x".repeat(MAX_HEADER_BYTES)));
            }),
            INVALID,
            "token header is larger than the gateway accepts",
        ),
        case(
            "oversized_payload",
            b.met_edited(|c| {
                c.insert("pad".into(), json!("p".repeat(MAX_TOKEN_BYTES)));
            }),
            INVALID,
            "token is larger than the gateway accepts",
        ),
        // --- certificate-bound tokens (RFC 8705) ---
        case(
            "certificate_bound_without_a_certificate",
            b.met_edited(|c| {
                c.insert("cnf".into(), json!({"x5t#S256": thumbprint}));
            }),
            INVALID,
            "bound to a client certificate, and none was presented",
        ),
        Case {
            name: "certificate_bound_with_another_certificate",
            token: b.met_edited(|c| {
                c.insert("cnf".into(), json!({"x5t#S256": thumbprint}));
            }),
            peer: Some(other_cert.clone()),
            reason: INVALID,
            says: "bound to a different client certificate",
        },
        Case {
            name: "unbound_token_for_an_issuer_that_requires_binding",
            token: b
                .bound_key
                .sign(&claims(&b.lab.issuer("bound"), "lab-bound")),
            peer: Some(cert.clone()),
            reason: INVALID,
            says: "must be bound to a client certificate",
        },
        case(
            "dpop_bound_token_presented_as_bearer",
            b.met_edited(|c| {
                c.insert(
                    "cnf".into(),
                    json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
                );
            }),
            INVALID,
            "confirmation method the gateway cannot check",
        ),
        case(
            "cnf_not_an_object",
            b.met_edited(|c| {
                c.insert("cnf".into(), json!(thumbprint));
            }),
            INVALID,
            "claim `cnf` is malformed",
        ),
        Case {
            name: "cnf_thumbprint_not_a_string",
            token: b.met_edited(|c| {
                c.insert("cnf".into(), json!({"x5t#S256": 1}));
            }),
            peer: Some(cert.clone()),
            reason: INVALID,
            says: "claim `cnf` is malformed",
        },
    ]
}

/// Tokens that must be accepted: the twin of each forging path above.
async fn positive_twins(b: &Bench) -> Vec<(&'static str, String, Option<Vec<u8>>)> {
    let now = now();
    let cert = Sha256::digest(b"a client certificate's DER").to_vec();
    let thumbprint = b64(&cert);
    let lab_claims = claims(&b.lab.issuer("mixed"), "lab-mixed");
    vec![
        (
            "genuine_met_token",
            b.met.token(SYSTEM).await.unwrap(),
            None,
        ),
        (
            "genuine_hackney_token",
            b.hackney.token(SYSTEM).await.unwrap(),
            None,
        ),
        (
            "forged_with_the_genuine_key",
            b.met_forged(&b.met_claims()),
            None,
        ),
        (
            "expired_but_within_leeway",
            b.met_edited(|c| {
                c.insert("exp".into(), json!(now - 10));
            }),
            None,
        ),
        (
            "not_yet_valid_but_within_leeway",
            b.met_edited(|c| {
                c.insert("nbf".into(), json!(now + 10));
                c.insert("iat".into(), json!(now + 10));
            }),
            None,
        ),
        (
            "aud_list_naming_this_gateway",
            b.met_edited(|c| {
                c.insert("aud".into(), json!(["another-service", "liaison"]));
            }),
            None,
        ),
        (
            "typ_jwt_and_fractional_times",
            {
                let mut h = b.met_key.header();
                h["typ"] = json!("JWT");
                let mut c = b.met_claims();
                c["exp"] = json!(now as f64 + 300.5);
                c["iat"] = json!(now as f64 - 0.5);
                b.met_key.sign_with(&h, &c)
            },
            None,
        ),
        (
            "roles_as_a_space_separated_string",
            b.met_edited(|c| {
                c.insert("roles".into(), json!("officer dpo"));
            }),
            None,
        ),
        (
            "certificate_bound_with_its_certificate",
            b.met_edited(|c| {
                c.insert("cnf".into(), json!({"x5t#S256": thumbprint}));
            }),
            Some(cert.clone()),
        ),
        (
            "bound_token_for_an_issuer_that_requires_binding",
            {
                let mut c = claims(&b.lab.issuer("bound"), "lab-bound");
                c["cnf"] = json!({"x5t#S256": thumbprint});
                b.bound_key.sign(&c)
            },
            Some(cert.clone()),
        ),
        (
            "lab_rs256_with_an_unpinned_rsa_key",
            b.met_key.with_kid("rsa-unpinned").sign(&lab_claims),
            None,
        ),
        (
            "lab_ps256_with_an_unpinned_rsa_key",
            b.met_key
                .with_kid("rsa-unpinned")
                .with_alg(Algorithm::PS256)
                .sign(&lab_claims),
            None,
        ),
        (
            "lab_rs256_with_a_pinned_rsa_key",
            b.met_key.with_kid("rsa-pinned").sign(&lab_claims),
            None,
        ),
        (
            "lab_es256_with_an_unpinned_ec_key",
            b.hackney_key.with_kid("ec-unpinned").sign(&lab_claims),
            None,
        ),
        ("lab_eddsa", b.ed_key.sign(&lab_claims), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_hostile_tokens_are_refused_for_the_right_reason() {
    let (bench, rogue) = tokio::join!(Bench::start(), provider("rogue-agency", "RS256"));

    let mut failures = Vec::new();
    for (name, token, peer) in positive_twins(&bench).await {
        if let Err(e) = bench
            .registry
            .authenticate_bound(&token, peer.as_deref())
            .await
        {
            failures.push(format!("{name}: refused ({e})"));
        }
    }
    let cases = hostile_cases(&bench, &rogue).await;
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "case `{}` is named twice", c.name);
        let result = bench
            .registry
            .authenticate_bound(&c.token, c.peer.as_deref())
            .await;
        match result {
            Ok(p) => failures.push(format!("{}: ACCEPTED as {}", c.name, p.subject)),
            Err(e) if e.reason() != c.reason || !e.to_string().contains(c.says) => {
                failures.push(format!(
                    "{}: refused with {} `{e}`, expected {} containing `{}`",
                    c.name,
                    e.reason(),
                    c.reason,
                    c.says
                ))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(cases.len() >= 40, "only {} named cases", cases.len());
    println!("{} named hostile cases refused", cases.len());
}

/// One way to spoil a valid token.
fn mutate(
    rng: &mut Rng,
    token: &str,
    others: &[String],
    resign: &[SigningKey],
) -> (String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    let bytes = token.as_bytes();
    match rng.below(12) {
        0 => {
            // Flip one to three low bits (the token stays ASCII).
            let mut b = bytes.to_vec();
            let flips = 1 + rng.below(3);
            for _ in 0..flips {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(7);
            }
            ("bit flip".into(), String::from_utf8(b).unwrap())
        }
        1 => {
            let mut b = bytes.to_vec();
            let i = rng.below(b.len());
            b[i] =
                *rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ");
            ("character replaced".into(), String::from_utf8(b).unwrap())
        }
        2 => {
            let cut = rng.below(bytes.len());
            ("truncated".into(), token[..cut].to_owned())
        }
        3 => {
            let (i, j) = (rng.below(3), rng.below(3));
            let mut p = parts.clone();
            p.swap(i, j);
            if i == j {
                p.push(parts[i]);
            }
            ("segments swapped or repeated".into(), p.join("."))
        }
        4 => {
            // A segment from another genuine token.
            let other = rng.pick(others);
            let i = rng.below(3);
            let mut p = parts.clone();
            let o: Vec<&str> = other.split('.').collect();
            p[i] = o[i];
            ("segment from another token".into(), p.join("."))
        }
        5 => {
            // Re-encodings that decode to the same bytes elsewhere.
            let i = rng.below(3);
            let decoded =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[i])
                    .unwrap();
            let encoded = match rng.below(4) {
                0 => base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &decoded),
                1 => base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, &decoded),
                2 => format!("{} ", parts[i]),
                _ => parts[i].to_ascii_uppercase(),
            };
            let mut p = parts.clone();
            p[i] = &encoded;
            ("segment re-encoded".into(), p.join("."))
        }
        6 => {
            // Header algorithm swapped, signature kept.
            let alg = rng
                .pick(&[
                    json!("none"),
                    json!("HS256"),
                    json!("HS512"),
                    json!("RS384"),
                    json!("PS256"),
                    json!("ES256"),
                    json!("ES384"),
                    json!("EdDSA"),
                    json!("rs256"),
                    json!(""),
                    Value::Null,
                    json!(1),
                ])
                .clone();
            let mut header = decode_json(parts[0]);
            header["alg"] = alg;
            let mut p = parts.clone();
            let h = b64(header.to_string());
            p[0] = &h;
            ("header alg swapped".into(), p.join("."))
        }
        7 => {
            // HMAC key confusion with the public key, every HMAC strength.
            let mut header = decode_json(parts[0]);
            let alg = *rng.pick(&[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]);
            header["alg"] = json!(alg_name(alg));
            let key = rng.pick(resign);
            let secret = key.jwk.to_string();
            (
                "hmac keyed with a public key".into(),
                sign_raw(
                    &header.to_string(),
                    &decode_text(parts[1]),
                    &EncodingKey::from_secret(secret.as_bytes()),
                    alg,
                ),
            )
        }
        8 => {
            // A claim changed, signature kept.
            let mut claims = decode_json(parts[1]);
            let (name, value) = bad_claim(rng, &claims);
            claims[name.as_str()] = value;
            let mut p = parts.clone();
            let c = b64(claims.to_string());
            p[1] = &c;
            (
                format!("claim `{name}` changed, signature kept"),
                p.join("."),
            )
        }
        9 | 10 => {
            // A claim made invalid, then signed with the genuine key: only
            // the gateway's claim checks stand between this and acceptance.
            let mut claims = decode_json(parts[1]);
            let (name, value) = bad_claim(rng, &claims);
            if value == json!("__remove__") {
                claims.as_object_mut().unwrap().remove(&name);
            } else {
                claims[name.as_str()] = value;
            }
            let header = decode_json(parts[0]);
            let key = resign
                .iter()
                .find(|k| header["kid"] == k.kid.as_str())
                .unwrap();
            (
                format!("claim `{name}` made invalid, re-signed"),
                key.sign_with(&header, &claims),
            )
        }
        _ => {
            // A header made hostile, re-signed with the genuine key.
            let mut header = decode_json(parts[0]);
            let key = resign
                .iter()
                .find(|k| header["kid"] == k.kid.as_str())
                .unwrap()
                .clone();
            let (what, edit): (&str, Value) = rng
                .pick(&[
                    ("crit", json!({"crit": ["exp"]})),
                    ("cty", json!({"cty": "JWT"})),
                    ("enc", json!({"enc": "A128GCM"})),
                    ("typ", json!({"typ": "secevent+jwt"})),
                    ("kid", json!({"kid": "../../../../dev/null"})),
                    ("kid", json!({"kid": 1})),
                    ("b64", json!({"b64": false})),
                    ("zip", json!({"zip": "DEF"})),
                ])
                .clone();
            header
                .as_object_mut()
                .unwrap()
                .extend(edit.as_object().unwrap().clone());
            (
                format!("header `{what}` made hostile, re-signed"),
                key.sign_with(&header, &decode_json(parts[1])),
            )
        }
    }
}

/// A claim and a value for it that no valid token may carry.
fn bad_claim(rng: &mut Rng, claims: &Value) -> (String, Value) {
    let now = now();
    let iss = claims["iss"].as_str().unwrap_or_default().to_owned();
    let choices: Vec<(&str, Vec<Value>)> = vec![
        (
            "exp",
            vec![
                json!("soon"),
                Value::Null,
                json!(true),
                json!([now + 60]),
                json!(-5),
                json!(now - 100),
                json!(u64::MAX),
                json!("__remove__"),
            ],
        ),
        (
            "nbf",
            vec![json!("now"), Value::Null, json!({}), json!(now + 600)],
        ),
        (
            "iat",
            vec![json!("now"), Value::Null, json!([]), json!(now + 600)],
        ),
        (
            "iss",
            vec![
                json!(1),
                Value::Null,
                json!([iss]),
                json!({}),
                json!(format!("{iss}/")),
                json!("https://evil.example"),
                json!("__remove__"),
            ],
        ),
        (
            "sub",
            vec![
                json!(1),
                Value::Null,
                json!(""),
                json!([]),
                json!("s".repeat(256)),
                json!("__remove__"),
            ],
        ),
        (
            "aud",
            vec![
                json!(1),
                Value::Null,
                json!([]),
                json!([1]),
                json!({}),
                json!("other"),
                json!(["other"]),
                json!("__remove__"),
            ],
        ),
        (
            "agency",
            vec![
                json!(1),
                Value::Null,
                json!(true),
                json!(["x"]),
                json!("another-agency"),
            ],
        ),
        (
            "roles",
            vec![json!(1), json!({}), json!([1]), json!([null]), json!(true)],
        ),
        (
            "cnf",
            vec![
                json!("x"),
                json!({}),
                json!({"jkt": "abc"}),
                json!({"x5t#S256": 1}),
                json!({"x5t#S256": "abc"}),
            ],
        ),
    ];
    let (name, values) = rng.pick(&choices);
    (name.to_string(), rng.pick(values).clone())
}

fn decode_text(segment: &str) -> String {
    String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, segment).unwrap(),
    )
    .unwrap()
}

fn decode_json(segment: &str) -> Value {
    serde_json::from_str(&decode_text(segment)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mutants_of_valid_tokens_are_all_refused() {
    const MUTANTS: usize = 10_000;
    let bench = Bench::start().await;
    let lab_claims = claims(&bench.lab.issuer("mixed"), "lab-mixed");
    let bases = vec![
        bench.met.token(SYSTEM).await.unwrap(),
        bench.hackney.token(SYSTEM).await.unwrap(),
        bench.met_forged(&bench.met_claims()),
        bench.ed_key.sign(&lab_claims),
        bench.hackney_key.with_kid("ec-unpinned").sign(&lab_claims),
    ];
    let resign = vec![
        bench.met_key.clone(),
        bench.hackney_key.clone(),
        bench.ed_key.clone(),
        bench.hackney_key.with_kid("ec-unpinned"),
    ];
    for base in &bases {
        bench.registry.authenticate(base).await.unwrap();
    }

    let started = Instant::now();
    let mut rng = Rng::new(0x4c69_6169_736f_6e21);
    let mut mutants = Vec::with_capacity(MUTANTS);
    while mutants.len() < MUTANTS {
        let base = rng.pick(&bases).clone();
        let (mut what, mut token) = mutate(&mut rng, &base, &bases, &resign);
        if rng.below(4) == 0 {
            // Now and then, a second mutation on top of the first.
            let on = if well_formed(&token, &resign) {
                token.clone()
            } else {
                base.clone()
            };
            let (more, t) = mutate(&mut rng, &on, &bases, &resign);
            what = format!("{what}, then {more}");
            token = t;
        }
        if token != base {
            mutants.push((what, token));
        }
    }
    let generated = started.elapsed();

    let registry = std::sync::Arc::new(bench.registry);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (what, token)) in mutants.into_iter().enumerate() {
        let registry = registry.clone();
        tasks.spawn(async move {
            let result = registry.authenticate(&token).await;
            (i, what, token, result)
        });
    }
    let (mut accepted, mut panics, mut unexpected) = (Vec::new(), 0, Vec::new());
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Err(e) if e.is_panic() => panics += 1,
            Err(e) => panic!("{e}"),
            Ok((i, what, token, Ok(p))) => accepted.push(format!("#{i} {what}: {token} as {p:?}")),
            Ok((i, what, _, Err(e))) => {
                *reasons.entry(e.reason()).or_default() += 1;
                if !matches!(
                    e.reason(),
                    "TOKEN_INVALID" | "TOKEN_EXPIRED" | "ISSUER_UNTRUSTED"
                ) {
                    unexpected.push(format!("#{i} {what}: {} {e}", e.reason()));
                }
            }
        }
    }
    println!(
        "{MUTANTS} mutants generated in {generated:?}, verified in {:?}: {reasons:?}",
        started.elapsed() - generated
    );
    assert_eq!(panics, 0, "the verifier panicked");
    assert!(
        accepted.is_empty(),
        "mutants accepted:\n{}",
        accepted.join("\n")
    );
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}

/// A second mutation needs a token whose parts decode and whose key the
/// test holds.
fn well_formed(token: &str, resign: &[SigningKey]) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let decoded: Vec<Option<Vec<u8>>> = parts
        .iter()
        .map(|s| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s).ok())
        .collect();
    let object = |b: &Option<Vec<u8>>| {
        b.as_deref()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .filter(Value::is_object)
    };
    parts.len() == 3
        && decoded[2].is_some()
        && object(&decoded[1]).is_some()
        && object(&decoded[0]).is_some_and(|h| resign.iter().any(|k| h["kid"] == k.kid.as_str()))
}
