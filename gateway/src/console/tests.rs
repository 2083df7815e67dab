use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::response::IntoResponse;
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use tower::ServiceExt;

use super::{
    store::{PendingSignIns, SIGN_IN_TIMEOUT, SessionKey, Sessions, is_token, random_token},
    *,
};
use crate::{config::Config, identity::Principal};

const GATEWAY: &str = r#"
version = 1
[ledger]
url = "sqlite://x.db"
[policy]
file = "p.toml"
[[agency]]
id = "met-police"
display_name = "Metropolitan Police Service"
kind = "police"
[[agency]]
id = "hackney"
display_name = "Hackney Council"
kind = "local-authority"
[[issuer]]
url = "https://idp.met.example/realms/met"
agency = "met-police"
audiences = ["liaison"]
algorithms = ["RS256"]
[[issuer]]
url = "https://login.hackney.example"
agency = "hackney"
audiences = ["liaison"]
algorithms = ["ES256"]
"#;

const CONSOLE: &str = r#"
listen = "127.0.0.1:8081"
public_url = "https://liaison.example.org"
[[client]]
issuer = "https://idp.met.example/realms/met"
client_id = "met-console"
[[client]]
issuer = "https://login.hackney.example"
client_id = "hackney-console"
scopes = ["profile", "roles"]
"#;

fn gateway() -> Config {
    Config::parse(GATEWAY, Path::new("t.toml"), Path::new(".")).unwrap()
}

fn console(text: &str) -> ConsoleConfig {
    toml::from_str(text).unwrap()
}

fn problems(text: &str) -> Vec<(Option<usize>, String, String)> {
    console(text)
        .validate(&gateway().issuers, text)
        .into_iter()
        .map(|p| (p.line, p.key, p.message))
        .collect()
}

fn state(text: &str) -> ConsoleState {
    let config = gateway();
    let registry = Arc::new(TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap());
    ConsoleState::new(&console(text), &config, registry).unwrap()
}

fn principal() -> Principal {
    Principal {
        agency: "met-police".into(),
        subject: "u-1".into(),
        display_name: Some("Dana Okafor".into()),
        roles: vec!["dpo".into()],
        team: None,
        vetting: None,
        client_id: Some("met-console".into()),
        issuer: "https://idp.met.example/realms/met".into(),
        is_system: false,
    }
}

#[test]
fn a_complete_console_section_has_no_problems_and_sensible_defaults() {
    assert_eq!(problems(CONSOLE), vec![]);
    let c = console(CONSOLE);
    assert_eq!(*c.session_minutes.get_ref(), 30);
    assert_eq!(*c.absolute_session_hours.get_ref(), 8);
    assert_eq!(c.roles.get_ref(), &["dpo", "auditor"]);
    assert_eq!(c.clients[0].scopes, ["profile"]);
    assert_eq!(c.origin().unwrap(), "https://liaison.example.org");
}

#[test]
fn every_problem_is_reported_with_its_line_and_key() {
    let text = r#"
listen = "127.0.0.1:8081"
public_url = "http://liaison.example.org/console"
session_minutes = 0
absolute_session_hours = 48
roles = []
[[client]]
issuer = "https://unknown.example"
client_id = ""
client_secret_env = "MET_SECRET"
client_secret_file = "met.secret"
scopes = ["a b"]
"#;
    let found = problems(text);
    let keys: Vec<(Option<usize>, &str)> = found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
    assert_eq!(
        keys,
        [
            (Some(3), "console.public_url"),
            (Some(4), "console.session_minutes"),
            (Some(5), "console.absolute_session_hours"),
            (Some(6), "console.roles"),
            (Some(8), "console.client[0].issuer"),
            (Some(9), "console.client[0].client_id"),
            (Some(9), "console.client[0]"),
            (Some(9), "console.client[0].scopes"),
        ]
    );
    assert_eq!(
        found[0].2,
        "console URL `http://liaison.example.org/console` must use https (plain http is allowed only for a loopback host)"
    );
    assert_eq!(
        found[4].2,
        "issuer `https://unknown.example` is not defined in any [[issuer]]"
    );
    assert_eq!(
        found[6].2,
        "give `client_secret_env` or `client_secret_file`, not both"
    );
}

#[test]
fn the_public_url_must_be_an_origin() {
    let with = |url: &str| {
        let text = CONSOLE.replace("https://liaison.example.org", url);
        problems(&text)
            .into_iter()
            .map(|(_, k, _)| k)
            .collect::<Vec<_>>()
    };
    assert!(with("http://127.0.0.1:8081").is_empty());
    assert!(with("http://localhost:8081").is_empty());
    assert!(with("https://liaison.example.org/").is_empty());
    assert_eq!(
        with("https://liaison.example.org/console"),
        ["console.public_url"]
    );
    assert_eq!(
        with("https://liaison.example.org?x=1"),
        ["console.public_url"]
    );
    assert_eq!(
        with("https://user@liaison.example.org"),
        ["console.public_url"]
    );
    assert_eq!(with("http://10.0.0.1:8081"), ["console.public_url"]);
    assert_eq!(with("ftp://liaison.example.org"), ["console.public_url"]);
}

#[test]
fn a_provider_twice_or_no_provider_is_a_problem() {
    let twice = CONSOLE.replace(
        "https://login.hackney.example",
        "https://idp.met.example/realms/met",
    );
    assert_eq!(
        problems(&twice)
            .into_iter()
            .map(|(_, k, m)| (k, m))
            .collect::<Vec<_>>(),
        [(
            "console.client[1].issuer".to_owned(),
            "issuer `https://idp.met.example/realms/met` has two console clients".to_owned()
        )]
    );
    let none = "listen = \"127.0.0.1:8081\"\npublic_url = \"https://liaison.example.org\"\n";
    assert_eq!(problems(none)[0].1, "console.client");
}

#[test]
fn unknown_fields_and_a_secret_in_the_file_are_refused() {
    let with_secret = CONSOLE.replace(
        "client_id = \"met-console\"",
        "client_id = \"met-console\"\nclient_secret = \"s3cret\"",
    );
    let err = toml::from_str::<ConsoleConfig>(&with_secret).unwrap_err();
    assert!(
        err.message().contains("unknown field `client_secret`"),
        "{err}"
    );
}

#[test]
fn building_the_console_reads_secrets_and_refuses_what_it_cannot_use() {
    let config = gateway();
    let registry = Arc::new(TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap());
    let missing_env = CONSOLE.replace(
        "client_id = \"met-console\"",
        "client_id = \"met-console\"\nclient_secret_env = \"LIAISON_TEST_CONSOLE_SECRET_THAT_IS_NOT_SET\"",
    );
    let err = ConsoleState::new(&console(&missing_env), &config, registry.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "console configuration: environment variable `LIAISON_TEST_CONSOLE_SECRET_THAT_IS_NOT_SET` named by `console.client[0].client_secret_env` is not set"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config_in_dir = config.clone();
    config_in_dir.base_dir = dir.path().to_path_buf();
    std::fs::write(dir.path().join("met.secret"), "\n").unwrap();
    let empty_file = CONSOLE.replace(
        "client_id = \"met-console\"",
        "client_id = \"met-console\"\nclient_secret_file = \"met.secret\"",
    );
    let err =
        ConsoleState::new(&console(&empty_file), &config_in_dir, registry.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "console configuration: the client secret of `console.client[0]` is empty"
    );
    let bad = CONSOLE.replace("https://login.hackney.example", "https://nowhere.example");
    let err = ConsoleState::new(&console(&bad), &config, registry).unwrap_err();
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(err.to_string().contains("`console.client[1].issuer`: issuer `https://nowhere.example` is not defined in any [[issuer]]"));
}

#[test]
fn the_csp_allows_forms_to_reach_only_the_console_and_the_providers() {
    let s = state(CONSOLE);
    assert_eq!(
        s.content_security_policy().to_str().unwrap(),
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' https://idp.met.example https://login.hackney.example; frame-ancestors 'none'; base-uri 'none'"
    );
}

#[tokio::test]
async fn over_https_cookies_are_host_prefixed_and_secure() {
    let app = router(state(CONSOLE));
    let response = app
        .oneshot(Request::get("/console/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    let (pair, attributes) = cookie.split_once("; ").unwrap();
    assert!(pair.starts_with("__Host-liaison_sign_in="), "{cookie}");
    let mut attributes: Vec<&str> = attributes.split("; ").collect();
    attributes.sort_unstable();
    assert_eq!(attributes, ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"]);
    assert_eq!(
        response.headers()[header::STRICT_TRANSPORT_SECURITY],
        "max-age=63072000"
    );
}

#[tokio::test]
async fn state_changing_requests_need_a_token_whatever_the_route() {
    let app = router(state(CONSOLE));
    for (method, path) in [
        ("POST", "/console/login"),
        ("POST", "/console/logout"),
        ("PUT", "/console/login"),
        ("DELETE", "/console/session"),
        ("POST", "/console/nowhere"),
    ] {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from("issuer=x"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert!(
            response
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }
}

#[tokio::test]
async fn the_sign_in_token_is_bound_to_the_browser_cookie() {
    let s = state(CONSOLE);
    let app = router(s.clone());
    let page = app
        .clone()
        .oneshot(Request::get("/console/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let browser = cookie.split_once('=').unwrap().1.to_owned();
    let token = s.sign_in_token(&browser);
    let body = axum::body::to_bytes(page.into_body(), 1 << 20)
        .await
        .unwrap();
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(html.contains(&format!(
        r#"<input type="hidden" name="csrf" value="{token}">"#
    )));
    assert_ne!(token, s.sign_in_token(&random_token().unwrap()));

    let post = |cookie: String, token: String| {
        Request::post("/console/login")
            .header(header::COOKIE, cookie)
            .header(header::ORIGIN, "https://liaison.example.org")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "issuer=https%3A%2F%2Fnowhere.example&csrf={token}"
            )))
            .unwrap()
    };
    // Past the guard, the handler refuses the unknown provider: 400.
    let accepted = app
        .clone()
        .oneshot(post(cookie.clone(), token.clone()))
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::BAD_REQUEST);
    let other_browser = format!("__Host-liaison_sign_in={}", random_token().unwrap());
    let refused = app
        .clone()
        .oneshot(post(other_browser, token))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[test]
fn cross_site_requests_are_recognised() {
    let origin = "https://liaison.example.org";
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    };
    assert!(guard::same_origin(origin, &headers(&[])).is_ok());
    assert!(
        guard::same_origin(
            origin,
            &headers(&[("origin", "https://liaison.example.org")])
        )
        .is_ok()
    );
    assert!(guard::same_origin(origin, &headers(&[("sec-fetch-site", "same-origin")])).is_ok());
    for bad in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")],
        &[("origin", "http://liaison.example.org")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "none")],
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://evil.example"),
        ],
    ] {
        assert!(
            matches!(
                guard::same_origin(origin, &headers(bad)),
                Err(ConsoleError::CrossSite { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn sessions_expire_when_idle_and_absolutely() {
    let start = Instant::now();
    let minutes = |m: u64| start + Duration::from_secs(m * 60);
    let mut sessions = Sessions::new(Duration::from_secs(30 * 60), Duration::from_secs(8 * 3600));
    let (id, session) = sessions.create(principal(), start).unwrap();
    assert!(is_token(&id) && is_token(&session.csrf));
    assert_ne!(id, session.csrf);
    let key = SessionKey::of(&id);
    assert!(sessions.touch(key, minutes(29)).is_some());
    assert!(sessions.touch(key, minutes(58)).is_some());
    assert!(sessions.touch(key, minutes(88)).is_none());
    assert_eq!(sessions.len(), 0, "an expired session is removed");

    let (id, _) = sessions.create(principal(), start).unwrap();
    let key = SessionKey::of(&id);
    for m in (20..480).step_by(20) {
        assert!(sessions.touch(key, minutes(m)).is_some(), "{m}");
    }
    assert!(sessions.touch(key, minutes(480)).is_none());
    assert!(
        sessions
            .touch(SessionKey::of("never issued"), start)
            .is_none()
    );
}

#[test]
fn pending_sign_ins_are_one_use_bounded_and_expire() {
    let now = Instant::now();
    let mut pending = PendingSignIns::default();
    let add = |p: &mut PendingSignIns, state: &str, at: Instant| {
        p.insert(
            state.into(),
            "https://idp.met.example/realms/met".into(),
            openidconnect::PkceCodeVerifier::new("v".repeat(43)),
            openidconnect::Nonce::new("n".into()),
            "b".into(),
            at,
        );
    };
    add(&mut pending, "s1", now);
    assert!(pending.take("s1", now).is_some());
    assert!(pending.take("s1", now).is_none(), "one use");
    add(&mut pending, "s2", now);
    assert!(
        pending.take("s2", now + SIGN_IN_TIMEOUT).is_none(),
        "expired"
    );
    for i in 0..MAX_PENDING_SIGN_INS + 5 {
        add(
            &mut pending,
            &format!("f{i}"),
            now + Duration::from_millis(i as u64),
        );
    }
    assert_eq!(pending.len(), MAX_PENDING_SIGN_INS);
    assert!(pending.take("f0", now).is_none(), "the oldest went first");
    let newest = format!("f{}", MAX_PENDING_SIGN_INS + 4);
    assert!(pending.take(&newest, now).is_some());
}

#[test]
fn every_error_has_its_status_and_fault() {
    use crate::error::Fault;
    let cases = [
        (
            ConsoleError::NotSignedIn,
            StatusCode::UNAUTHORIZED,
            Fault::Caller,
        ),
        (
            ConsoleError::CrossSite {
                source_site: "x".into(),
            },
            StatusCode::FORBIDDEN,
            Fault::Caller,
        ),
        (
            ConsoleError::FormTokenMissing,
            StatusCode::FORBIDDEN,
            Fault::Caller,
        ),
        (
            ConsoleError::FormTokenInvalid,
            StatusCode::FORBIDDEN,
            Fault::Caller,
        ),
        (
            ConsoleError::BadRequest {
                message: "x".into(),
            },
            StatusCode::BAD_REQUEST,
            Fault::Caller,
        ),
        (
            ConsoleError::UnknownIssuer { issuer: "x".into() },
            StatusCode::BAD_REQUEST,
            Fault::Caller,
        ),
        (
            ConsoleError::UnknownSignIn,
            StatusCode::BAD_REQUEST,
            Fault::Caller,
        ),
        (
            ConsoleError::OtherBrowser,
            StatusCode::BAD_REQUEST,
            Fault::Caller,
        ),
        (
            ConsoleError::IssuerMismatch {
                expected: "a".into(),
                found: "b".into(),
            },
            StatusCode::BAD_REQUEST,
            Fault::Caller,
        ),
        (
            ConsoleError::ProviderRefused {
                code: "access_denied".into(),
            },
            StatusCode::FORBIDDEN,
            Fault::Caller,
        ),
        (
            ConsoleError::ProviderUnavailable {
                issuer: "a".into(),
                message: "b".into(),
            },
            StatusCode::BAD_GATEWAY,
            Fault::Gateway,
        ),
        (
            ConsoleError::TokenRefused {
                message: "x".into(),
            },
            StatusCode::UNAUTHORIZED,
            Fault::Caller,
        ),
        (
            ConsoleError::NotPermitted {
                message: "x".into(),
            },
            StatusCode::FORBIDDEN,
            Fault::Caller,
        ),
        (
            ConsoleError::Config {
                message: "x".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
            Fault::Gateway,
        ),
        (
            ConsoleError::Internal {
                message: "x".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
            Fault::Gateway,
        ),
    ];
    for (error, status, fault) in cases {
        assert_eq!(
            (error.status(), error.fault()),
            (status, fault),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(!message.ends_with('.'), "{message}");
        assert!(
            message.starts_with(|c: char| !c.is_uppercase()),
            "{message}"
        );
    }
}

#[tokio::test]
async fn error_pages_escape_what_they_show() {
    let response = ConsoleError::UnknownIssuer {
        issuer: "<script>alert(1)</script>".into(),
    }
    .into_response();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );
}
