//! The DPO console's sign-in, end to end: a real `oidc-provider` for the
//! Met, the console on loopback, and a cookie-keeping client walking the
//! authorization-code flow as a browser would, through the provider's own
//! login form.
//!
//! Test credentials below are fixtures for these tests only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use liaison_conformance::oidc::{TestProvider, console_client, user};
use liaison_gateway::{
    config::Config,
    console::{self, Clock, ConsoleConfig, ConsoleState},
    identity::TrustRegistry,
};
use reqwest::{StatusCode, Url, header, header::HeaderMap};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CLIENT: (&str, &str) = ("met-dpo-console", "test-fixture-secret-console");
const DPO: (&str, &str) = ("u-dpo-1001", "test-fixture-password-dpo");
const WORKER: (&str, &str) = ("u-sw-2002", "test-fixture-password-sw");
const ROGUE: (&str, &str) = ("u-dpo-3003", "test-fixture-password-rogue");
const SESSION_COOKIE: &str = "liaison_session";
const SIGN_IN_COOKIE: &str = "liaison_sign_in";

/// A clock the test moves by hand.
#[derive(Debug)]
struct TestClock {
    start: Instant,
    seconds: AtomicU64,
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_secs(self.seconds.load(Ordering::SeqCst))
    }
}

impl TestClock {
    fn advance(&self, by: Duration) {
        self.seconds.fetch_add(by.as_secs(), Ordering::SeqCst);
    }
}

/// The provider and the console serving on loopback.
struct World {
    url: String,
    idp: TestProvider,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let idp = TestProvider::start_with(json!({
            "agency": "met-police", "audience": "liaison", "signing_alg": "RS256",
            "clients": [console_client(CLIENT.0, CLIENT.1, &url)],
            "users": [
                user(DPO.0, DPO.1, json!({ "name": "Dana Okafor", "roles": ["dpo"] })),
                user(WORKER.0, WORKER.1, json!({ "name": "Sam Okoro", "roles": ["social-worker"] })),
                // A provider misconfigured (or subverted) to speak for
                // another agency.
                user(ROGUE.0, ROGUE.1, json!({ "name": "Rory Vance", "roles": ["dpo"], "agency": "other" })),
            ],
        }))
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("console.secret"), format!("{}\n", CLIENT.1)).unwrap();
        let text = format!(
            r#"
version = 1
[ledger]
url = "sqlite://ledger.db"
[policy]
file = "policy.toml"
[[agency]]
id = "met-police"
display_name = "Metropolitan Police Service"
kind = "police"
[[issuer]]
url = "{issuer}"
agency = "met-police"
audiences = ["liaison"]
algorithms = ["RS256"]
allow_insecure_http = true
"#,
            issuer = idp.issuer
        );
        let config = Config::parse(&text, &dir.path().join("liaison.toml"), dir.path()).unwrap();
        let console: ConsoleConfig = toml::from_str(&format!(
            r#"
listen = "{addr}"
public_url = "{url}"
[[client]]
issuer = "{issuer}"
client_id = "{client}"
client_secret_file = "console.secret"
scopes = ["profile", "liaison"]
"#,
            issuer = idp.issuer,
            client = CLIENT.0,
        ))
        .unwrap();
        assert!(console.validate(&config.issuers, "").is_empty());
        let registry =
            Arc::new(TrustRegistry::from_config(&config, reqwest::Client::new()).unwrap());
        let clock = Arc::new(TestClock {
            start: Instant::now(),
            seconds: AtomicU64::new(0),
        });
        let state = ConsoleState::new(&console, &config, registry)
            .unwrap()
            .with_clock(clock.clone());
        let app = console::router(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        World {
            url,
            idp,
            clock,
            _dir: dir,
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn csp(&self) -> String {
        format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
            self.idp.issuer
        )
    }
}

/// One response, read whole.
#[derive(Debug)]
struct Page {
    url: Url,
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> Url {
        let location = self.headers[header::LOCATION].to_str().unwrap();
        self.url.join(location).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header on {}", self.url))
            .to_str()
            .unwrap()
    }

    /// The `Set-Cookie` header for `name`, if any.
    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A browser: follows nothing by itself, keeps cookies by name (everything
/// here is on 127.0.0.1, and browsers do not separate cookies by port).
struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        let request = self.http.get(url);
        self.send(request).await
    }

    /// A form post, with the `Origin` a browser would send for a page on
    /// `origin`.
    async fn post(&mut self, url: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut request = self.http.post(url).form(form);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        self.send(request).await
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookies.is_empty() {
            request
        } else {
            request.header(header::COOKIE, cookies)
        };
        let response = request.send().await.unwrap();
        let url = response.url().clone();
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let lower = set.to_ascii_lowercase();
            if value.is_empty()
                || lower.contains("max-age=0")
                || lower.contains("expires=thu, 01 jan 1970")
            {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        Page {
            url,
            status,
            headers,
            body,
        }
    }

    /// Follows redirects from `page` until one points at `stop` (not
    /// fetched) or a page is not a redirect.
    async fn follow(&mut self, mut page: Page, stop: &str) -> Result<Url, Page> {
        for _ in 0..10 {
            if !page.status.is_redirection() {
                return Err(page);
            }
            let next = page.location();
            if next.as_str().starts_with(stop) {
                return Ok(next);
            }
            page = self.get(next.as_str()).await;
        }
        panic!("too many redirects");
    }

    /// The console's sign-in page and the form token in it.
    async fn login_page(&mut self, world: &World) -> (Page, String) {
        let page = self.get(&world.at("/console/login")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = hidden(&page.body, "csrf");
        (page, csrf)
    }

    /// Chooses the Met on the console's sign-in page and follows the
    /// provider's redirects to its login form.
    async fn reach_login_form(&mut self, world: &World) -> Page {
        let (_, csrf) = self.login_page(world).await;
        let start = self
            .post(
                &world.at("/console/login"),
                &[("issuer", &world.idp.issuer), ("csrf", &csrf)],
                Some(&world.url),
            )
            .await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let authorize = self.get(start.location().as_str()).await;
        let login = self
            .follow(authorize, &world.at("/console/callback"))
            .await
            .expect_err("the provider asks for a login first");
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        assert!(login.body.contains(r#"id="login-form""#), "{}", login.body);
        login
    }

    /// Walks the flow as `(sub, password)` up to the provider's redirect
    /// back to the console, which is returned unvisited; or the page where
    /// the flow stopped.
    async fn reach_callback(&mut self, world: &World, who: (&str, &str)) -> Result<Url, Page> {
        let login = self.reach_login_form(world).await;
        let action = attribute_after(&login.body, r#"id="login-form""#, "action");
        let submitted = self
            .post(
                login.url.join(&action).unwrap().as_str(),
                &[("login", who.0), ("password", who.1)],
                None,
            )
            .await;
        self.follow(submitted, &world.at("/console/callback")).await
    }

    /// Signs in completely and returns the callback's response.
    async fn sign_in(&mut self, world: &World, who: (&str, &str)) -> Page {
        let callback = self.reach_callback(world, who).await.unwrap();
        self.get(callback.as_str()).await
    }

    async fn session(&mut self, world: &World) -> Page {
        self.get(&world.at("/console/session")).await
    }
}

/// The value of the hidden input named `name`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no `{name}` in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The value of `attribute` in the element that contains `anchor`.
fn attribute_after(html: &str, anchor: &str, attribute: &str) -> String {
    let element = &html[html.find(anchor).unwrap()..];
    let element = &element[..element.find('>').unwrap()];
    let marker = format!(r#"{attribute}=""#);
    let start = element.find(&marker).unwrap() + marker.len();
    element[start..].split('"').next().unwrap().to_owned()
}

fn assert_security_headers(world: &World, page: &Page) {
    assert_eq!(page.header("content-security-policy"), world.csp());
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("referrer-policy"), "same-origin");
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(page.header("x-frame-options"), "DENY");
}

fn assert_console_cookie(set_cookie: &str, name: &str) {
    let (pair, attributes) = set_cookie.split_once("; ").unwrap();
    let value = pair.strip_prefix(&format!("{name}=")).unwrap();
    assert_eq!(value.len(), 43, "a 256-bit base64url token: {set_cookie}");
    let mut attributes: Vec<&str> = attributes.split("; ").collect();
    attributes.sort_unstable();
    // Plain-http loopback: no `__Host-` prefix and no `Secure`, but never
    // readable by script, never sent on cross-site subrequests, whole site,
    // and no lifetime beyond the browser's.
    assert_eq!(
        attributes,
        ["HttpOnly", "Path=/", "SameSite=Lax"],
        "{set_cookie}"
    );
}

#[tokio::test]
async fn a_dpo_signs_in_through_their_agency_provider() {
    let world = World::start().await;
    let mut browser = Browser::new();

    let (login, csrf) = browser.login_page(&world).await;
    assert_security_headers(&world, &login);
    assert!(login.header("content-type").starts_with("text/html"));
    assert_console_cookie(login.set_cookie(SIGN_IN_COOKIE).unwrap(), SIGN_IN_COOKIE);
    assert!(login.body.contains(&format!(
        r#"<button type="submit" name="issuer" value="{}">Metropolitan Police Service</button>"#,
        world.idp.issuer
    )));
    assert!(login.body.contains(r#"<html lang="en">"#));
    assert!(
        !login.body.contains("<script"),
        "no script, so the CSP holds"
    );
    assert!(!login.body.contains("style="), "no inline style");

    let start = browser
        .post(
            &world.at("/console/login"),
            &[("issuer", &world.idp.issuer), ("csrf", &csrf)],
            Some(&world.url),
        )
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    assert_security_headers(&world, &start);
    let authorize = start.location();
    assert_eq!(
        authorize.as_str().split('?').next().unwrap(),
        format!("{}/auth", world.idp.issuer)
    );
    let query: BTreeMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], CLIENT.0);
    assert_eq!(query["redirect_uri"], world.at("/console/callback"));
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);
    assert_eq!(query["state"].len(), 43, "256-bit state");
    assert_eq!(query["nonce"].len(), 43, "256-bit nonce");
    assert_eq!(query["scope"], "openid profile liaison");
    assert_eq!(
        query.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "client_id",
            "code_challenge",
            "code_challenge_method",
            "nonce",
            "redirect_uri",
            "response_type",
            "scope",
            "state"
        ],
        "nothing personal, nothing secret in the URL"
    );

    let authorize = browser.get(authorize.as_str()).await;
    let login_form = browser
        .follow(authorize, &world.at("/console/callback"))
        .await
        .unwrap_err();
    let action = attribute_after(&login_form.body, r#"id="login-form""#, "action");
    let submitted = browser
        .post(
            login_form.url.join(&action).unwrap().as_str(),
            &[("login", DPO.0), ("password", DPO.1)],
            None,
        )
        .await;
    let callback_url = browser
        .follow(submitted, &world.at("/console/callback"))
        .await
        .unwrap();
    let callback_query: BTreeMap<String, String> =
        callback_url.query_pairs().into_owned().collect();
    assert_eq!(
        callback_query["iss"], world.idp.issuer,
        "RFC 9207 `iss` is sent"
    );
    assert_eq!(callback_query["state"], query["state"]);

    let callback = browser.get(callback_url.as_str()).await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER, "{}", callback.body);
    assert_eq!(callback.location().as_str(), world.at("/console/"));
    assert_security_headers(&world, &callback);
    assert_console_cookie(callback.set_cookie(SESSION_COOKIE).unwrap(), SESSION_COOKIE);

    let session = browser.session(&world).await;
    assert_eq!(session.status, StatusCode::OK);
    assert_security_headers(&world, &session);
    assert!(
        session
            .header("content-type")
            .starts_with("application/json")
    );
    let json = session.json();
    assert_eq!(json["subject"], DPO.0);
    assert_eq!(json["display_name"], "Dana Okafor");
    assert_eq!(json["agency"], "met-police");
    assert_eq!(json["agency_name"], "Metropolitan Police Service");
    assert_eq!(json["roles"], json!(["dpo"]));
    assert_eq!(json["issuer"], world.idp.issuer);
    assert_eq!(json["csrf_token"].as_str().unwrap().len(), 43);

    let home = browser.get(&world.at("/console/")).await;
    assert_eq!(home.status, StatusCode::OK);
    assert_security_headers(&world, &home);
    assert!(
        home.body.contains(r#"<dd id="name">Dana Okafor</dd>"#),
        "{}",
        home.body
    );
    assert_eq!(
        hidden(&home.body, "csrf"),
        json["csrf_token"].as_str().unwrap()
    );

    let css = browser.get(&world.at("/console/static/console.css")).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
}

#[tokio::test]
async fn a_wrong_password_gets_no_session() {
    let world = World::start().await;
    let mut browser = Browser::new();
    let stopped = browser
        .reach_callback(&world, (DPO.0, "not-the-password"))
        .await
        .unwrap_err();
    assert_eq!(stopped.status, StatusCode::UNAUTHORIZED);
    assert!(stopped.body.contains(r#"id="login-error""#));
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    let session = browser.session(&world).await;
    assert_eq!(session.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        session.json()["error"],
        "you are not signed in, or your session has ended"
    );
    let home = browser.get(&world.at("/console/")).await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location().as_str(), world.at("/console/login"));
}

#[tokio::test]
async fn a_sign_in_cancelled_at_the_provider_is_refused() {
    let world = World::start().await;
    let mut browser = Browser::new();
    let login = browser.reach_login_form(&world).await;
    let abort = attribute_after(&login.body, r#"id="abort""#, "href");
    let aborted = browser.get(login.url.join(&abort).unwrap().as_str()).await;
    let callback = browser
        .follow(aborted, &world.at("/console/callback"))
        .await
        .unwrap();
    let refused = browser.get(callback.as_str()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_security_headers(&world, &refused);
    assert!(
        refused
            .body
            .contains("the identity provider did not sign you in (`access_denied`)"),
        "{}",
        refused.body
    );
    assert!(refused.set_cookie(SESSION_COOKIE).is_none());
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_person_without_a_console_role_is_refused() {
    let world = World::start().await;
    let mut browser = Browser::new();
    let callback = browser.sign_in(&world, WORKER).await;
    assert_eq!(callback.status, StatusCode::FORBIDDEN);
    assert_security_headers(&world, &callback);
    assert!(
        callback.body.contains(
            "your account at Metropolitan Police Service holds none of the roles that may use the console (`dpo`, `auditor`)"
        ),
        "{}",
        callback.body
    );
    assert!(callback.set_cookie(SESSION_COOKIE).is_none());
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_id_token_claiming_another_agency_is_refused() {
    let world = World::start().await;
    let mut browser = Browser::new();
    let callback = browser.sign_in(&world, ROGUE).await;
    assert_eq!(callback.status, StatusCode::FORBIDDEN, "{}", callback.body);
    assert!(
        callback
            .body
            .contains("token asserts an agency its issuer does not speak for"),
        "{}",
        callback.body
    );
    assert!(callback.set_cookie(SESSION_COOKIE).is_none());
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_tampered_state_is_refused_and_spends_nothing() {
    let world = World::start().await;
    let mut browser = Browser::new();
    let callback = browser.reach_callback(&world, DPO).await.unwrap();
    let mut tampered = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{}x", &v[1..])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let refused = browser.get(tampered.as_str()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_security_headers(&world, &refused);
    assert!(
        refused
            .body
            .contains("this sign-in is unknown, already completed or expired; start again")
    );
    assert!(refused.set_cookie(SESSION_COOKIE).is_none());
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );

    let genuine = browser.get(callback.as_str()).await;
    assert_eq!(genuine.status, StatusCode::SEE_OTHER, "{}", genuine.body);
    assert_eq!(browser.session(&world).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let world = World::start().await;
    let mut browser = Browser::new();
    let callback = browser.reach_callback(&world, DPO).await.unwrap();
    let first = browser.get(callback.as_str()).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let first_cookie = browser.jar[SESSION_COOKIE].clone();

    let replay = browser.get(callback.as_str()).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("already completed"));
    assert!(replay.set_cookie(SESSION_COOKIE).is_none());
    assert_eq!(browser.jar[SESSION_COOKIE], first_cookie);

    // Nor can another browser use it (an attacker who saw the URL).
    let mut attacker = Browser::new();
    let stolen = attacker.get(callback.as_str()).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        attacker.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_callback_opened_in_another_browser_is_refused() {
    let world = World::start().await;
    let mut victim = Browser::new();
    // Login CSRF: an attacker signs in as themselves and lures a victim to
    // the callback, hoping to sign the victim in to the attacker's account.
    let mut attacker = Browser::new();
    let callback = attacker.reach_callback(&world, DPO).await.unwrap();
    let lured = victim.get(callback.as_str()).await;
    assert_eq!(lured.status, StatusCode::BAD_REQUEST);
    assert!(
        lured
            .body
            .contains("this sign-in was started in another browser; start again here")
    );
    assert_eq!(
        victim.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_response_from_another_issuer_is_refused() {
    let world = World::start().await;
    for (iss, found) in [
        (Some("http://127.0.0.1:1"), "http://127.0.0.1:1"),
        (None, "none"),
    ] {
        let mut browser = Browser::new();
        let callback = browser.reach_callback(&world, DPO).await.unwrap();
        let mut mixed_up = callback.clone();
        let pairs: Vec<(String, String)> = callback
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        mixed_up.query_pairs_mut().clear().extend_pairs(pairs);
        if let Some(iss) = iss {
            mixed_up.query_pairs_mut().append_pair("iss", iss);
        }
        let refused = browser.get(mixed_up.as_str()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert!(
            refused.body.contains(&format!(
                "the sign-in response came from `{found}`, not from `{}`",
                world.idp.issuer
            )),
            "{}",
            refused.body
        );
        assert_eq!(
            browser.session(&world).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn signing_out_needs_the_form_token_and_ends_the_session() {
    let world = World::start().await;
    let mut browser = Browser::new();
    assert_eq!(
        browser.sign_in(&world, DPO).await.status,
        StatusCode::SEE_OTHER
    );
    let csrf = browser.session(&world).await.json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let logout = world.at("/console/logout");

    let missing = browser.post(&logout, &[], Some(&world.url)).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert_security_headers(&world, &missing);
    assert!(missing.body.contains("the form carried no form token"));

    let wrong = browser
        .post(&logout, &[("csrf", &"A".repeat(43))], Some(&world.url))
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        wrong
            .body
            .contains("the form token does not match this browser")
    );

    let cross_origin = browser
        .post(&logout, &[("csrf", &csrf)], Some("http://evil.example"))
        .await;
    assert_eq!(cross_origin.status, StatusCode::FORBIDDEN);
    assert!(
        cross_origin
            .body
            .contains("the request came from `http://evil.example`, not from a console page")
    );

    let request = browser
        .http
        .post(&logout)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str())]);
    let cross_site = browser.send(request).await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);

    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::OK,
        "refusals changed nothing"
    );

    let session_cookie = browser.jar[SESSION_COOKIE].clone();
    let request = browser
        .http
        .post(&logout)
        .header(header::ORIGIN, &world.url)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", csrf.as_str())]);
    let out = browser.send(request).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert_security_headers(&world, &out);
    let end = out.location();
    assert_eq!(
        end.as_str().split('?').next().unwrap(),
        format!("{}/session/end", world.idp.issuer)
    );
    let query: BTreeMap<String, String> = end.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT.0);
    assert_eq!(
        query["post_logout_redirect_uri"],
        world.at("/console/login")
    );
    assert!(
        !query.contains_key("id_token_hint"),
        "no personal data in the URL"
    );
    let removal = out.set_cookie(SESSION_COOKIE).unwrap();
    assert!(
        removal.starts_with(&format!("{SESSION_COOKIE}=;")),
        "{removal}"
    );
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The session is gone on the server, not only from the browser.
    browser.jar.insert(SESSION_COOKIE.into(), session_cookie);
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_limit() {
    let world = World::start().await;
    let mut browser = Browser::new();
    assert_eq!(
        browser.sign_in(&world, DPO).await.status,
        StatusCode::SEE_OTHER
    );
    world.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(browser.session(&world).await.status, StatusCode::OK);
    world.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::OK,
        "use restarts the idle timer"
    );
    world.clock.advance(Duration::from_secs(30 * 60));
    let idle = browser.session(&world).await;
    assert_eq!(idle.status, StatusCode::UNAUTHORIZED);
    assert_security_headers(&world, &idle);

    let mut browser = Browser::new();
    assert_eq!(
        browser.sign_in(&world, DPO).await.status,
        StatusCode::SEE_OTHER
    );
    for _ in 0..(8 * 60 / 20 - 1) {
        world.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(browser.session(&world).await.status, StatusCode::OK);
    }
    world.clock.advance(Duration::from_secs(20 * 60));
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED,
        "eight hours after sign-in, however active"
    );
}

#[tokio::test]
async fn the_sign_in_form_is_guarded() {
    let world = World::start().await;
    let mut browser = Browser::new();
    let (_, csrf) = browser.login_page(&world).await;
    let login = world.at("/console/login");

    let missing = browser
        .post(&login, &[("issuer", &world.idp.issuer)], Some(&world.url))
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);

    let forged = browser
        .post(
            &login,
            &[("issuer", &world.idp.issuer), ("csrf", &"A".repeat(43))],
            Some(&world.url),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let cross_origin = browser
        .post(
            &login,
            &[("issuer", &world.idp.issuer), ("csrf", &csrf)],
            Some("null"),
        )
        .await;
    assert_eq!(cross_origin.status, StatusCode::FORBIDDEN);

    // Another browser's token is no good here.
    let mut other = Browser::new();
    let (_, other_csrf) = other.login_page(&world).await;
    let foreign = browser
        .post(
            &login,
            &[("issuer", &world.idp.issuer), ("csrf", &other_csrf)],
            Some(&world.url),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);

    let unknown = browser
        .post(
            &login,
            &[("issuer", "https://idp.example"), ("csrf", &csrf)],
            Some(&world.url),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.body.contains(
            "`https://idp.example` is not an identity provider this console signs in with"
        )
    );
    assert_security_headers(&world, &unknown);
}

#[tokio::test]
async fn signing_in_again_replaces_the_session() {
    let world = World::start().await;
    let mut browser = Browser::new();
    assert_eq!(
        browser.sign_in(&world, DPO).await.status,
        StatusCode::SEE_OTHER
    );
    let first = browser.jar[SESSION_COOKIE].clone();
    // The provider's own session signs the person straight back in.
    let callback = browser.reach_callback_silently(&world).await;
    let second = browser.get(callback.as_str()).await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.body);
    let renewed = browser.jar[SESSION_COOKIE].clone();
    assert_ne!(first, renewed, "a new session id at every sign-in");
    assert_eq!(browser.session(&world).await.status, StatusCode::OK);
    browser.jar.insert(SESSION_COOKIE.into(), first);
    assert_eq!(
        browser.session(&world).await.status,
        StatusCode::UNAUTHORIZED,
        "the old one is ended"
    );
}

impl Browser {
    /// Starts a sign-in while the provider still remembers the person, so
    /// it comes straight back to the console. The console's session cookie
    /// is held back until the callback: a signed-in browser is sent home by
    /// the sign-in page rather than to the provider.
    async fn reach_callback_silently(&mut self, world: &World) -> Url {
        let session = self.jar.remove(SESSION_COOKIE).unwrap();
        let (_, csrf) = self.login_page(world).await;
        let start = self
            .post(
                &world.at("/console/login"),
                &[("issuer", &world.idp.issuer), ("csrf", &csrf)],
                Some(&world.url),
            )
            .await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let authorize = self.get(start.location().as_str()).await;
        let callback = self
            .follow(authorize, &world.at("/console/callback"))
            .await
            .unwrap();
        self.jar.insert(SESSION_COOKIE.into(), session);
        callback
    }
}
