//! Alerts a Data Protection Officer must act on: today, every share allowed
//! under break-glass.
//!
//! Emergency access is only acceptable because someone reviews each use
//! afterwards (the pattern of NHS Summary Care Record's privacy officers), so
//! an allowed break-glass share raises three signals once its audit entry is
//! durable: a `warn` event on target `liaison::alert`, the counter
//! `liaison_break_glass_total{agency}`, and, when `[alerts] webhook_url` is
//! set, a POST to the DPO's tooling.
//!
//! The webhook is delivered by one background task fed by a bounded queue,
//! with a few jittered retries: the share that raised the alert never waits
//! for it and never fails because of it. An alert that cannot be queued or
//! delivered is logged and counted in `liaison_alerts_dropped_total{reason}`;
//! the ledger entry, which the DPO console lists for review, remains the
//! record of truth.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use toml::Spanned;

/// How many alerts may wait for delivery before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 256;
/// Delivery attempts per alert, the first included.
pub const MAX_ATTEMPTS: usize = 5;
/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `[alerts]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where to POST a JSON document for each break-glass share; `https`,
    /// or `http` to a loopback address only. Absent, alerts are logged and
    /// counted but not sent.
    #[serde(default)]
    pub webhook_url: Option<Spanned<String>>,
    /// A file holding a bearer token sent with each POST, relative to the
    /// configuration file; surrounding whitespace is ignored.
    #[serde(default)]
    pub token_file: Option<Spanned<PathBuf>>,
}

/// Why the alert dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// The webhook URL does not parse or is not allowed.
    #[error("alerts.webhook_url `{url}` {message}")]
    Url {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The token file cannot be read or is empty.
    #[error("alerts.token_file `{path}`: {message}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the alert webhook client: {0}")]
    Client(String),
}

/// What a webhook receives for one break-glass share: identifiers only, so
/// that an alert channel outside the gateway never carries personal data;
/// the DPO follows `console_path` to the entry for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassAlert {
    /// Always `break_glass`, so one endpoint can take other alerts later.
    pub kind: String,
    /// The audit entry recording the share.
    pub entry_id: String,
    /// Its position in the ledger.
    pub sequence: u64,
    /// The caller's agency.
    pub agency: String,
    /// The caller's subject identifier at their identity provider.
    pub subject: String,
    /// The agreement relied on.
    pub isa_id: String,
    /// The datasets disclosed from under break-glass.
    pub dataset_ids: Vec<String>,
    /// When the entry was recorded, RFC 3339.
    pub recorded_at: String,
    /// Where the entry is reviewed in the DPO console.
    pub console_path: String,
}

/// Raises alerts; cheap to clone, one per share stack.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    webhook: Option<mpsc::Sender<BreakGlassAlert>>,
}

/// Where and how the background task delivers.
struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<String>,
    backoff: ExponentialBuilder,
}

impl AlertsConfig {
    /// Every problem with the table, each with the span of the offending
    /// value and its key, for the configuration report.
    pub fn problems(&self, base_dir: &Path) -> Vec<(Range<usize>, String, String)> {
        let mut out = Vec::new();
        if let Some(url) = &self.webhook_url
            && let Err(message) = webhook_url(url.get_ref())
        {
            out.push((url.span(), "alerts.webhook_url".to_owned(), message));
        }
        if let Some(file) = &self.token_file {
            if self.webhook_url.is_none() {
                out.push((
                    file.span(),
                    "alerts.token_file".to_owned(),
                    "is set but `webhook_url` is not, so it would never be sent".to_owned(),
                ));
            }
            if let Err(e) = read_token(&base_dir.join(file.get_ref())) {
                out.push((file.span(), "alerts.token_file".to_owned(), e));
            }
        }
        out
    }
}

impl Alerts {
    /// Logs and counts alerts but sends none.
    pub fn log_only() -> Self {
        Self::default()
    }

    /// Starts the webhook task when `config` names a webhook. Must be called
    /// inside a Tokio runtime.
    pub fn start(config: Option<&AlertsConfig>, base_dir: &Path) -> Result<Self, AlertsError> {
        Self::start_with(config, base_dir, default_backoff())
    }

    /// As [`Alerts::start`], retrying on `backoff`'s schedule.
    pub fn start_with(
        config: Option<&AlertsConfig>,
        base_dir: &Path,
        backoff: ExponentialBuilder,
    ) -> Result<Self, AlertsError> {
        let Some(url) = config.and_then(|c| c.webhook_url.as_ref()) else {
            return Ok(Self::log_only());
        };
        let url = url.get_ref();
        let parsed = webhook_url(url).map_err(|message| AlertsError::Url {
            url: url.clone(),
            message,
        })?;
        let token = match config.and_then(|c| c.token_file.as_ref()) {
            Some(file) => {
                let path = base_dir.join(file.get_ref());
                Some(read_token(&path).map_err(|message| AlertsError::Token { path, message })?)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlertsError::Client(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let webhook = Webhook {
            client,
            url: parsed,
            token,
            backoff,
        };
        tokio::spawn(webhook.run(rx));
        Ok(Self { webhook: Some(tx) })
    }

    /// Raises the alert for one allowed break-glass share whose entry is
    /// durable. Never blocks: a full queue drops the webhook delivery (and
    /// counts it), never the share.
    pub fn break_glass(&self, alert: BreakGlassAlert, reason: &str) {
        tracing::warn!(
            target: "liaison::alert",
            entry_id = %alert.entry_id,
            sequence = alert.sequence,
            agency = %alert.agency,
            user = %alert.subject,
            isa = %alert.isa_id,
            datasets = ?alert.dataset_ids,
            reason,
            "break-glass share: a DPO must review it"
        );
        if let Some(m) = crate::telemetry::metrics() {
            m.break_glass(&alert.agency);
        }
        let Some(tx) = &self.webhook else {
            return;
        };
        if let Err(e) = tx.try_send(alert) {
            let (why, alert) = match e {
                mpsc::error::TrySendError::Full(a) => ("queue_full", a),
                mpsc::error::TrySendError::Closed(a) => ("closed", a),
            };
            dropped(why, &alert.entry_id);
        }
    }
}

impl Webhook {
    /// Delivers alerts one at a time, in the order raised, until every
    /// sender is gone.
    async fn run(self, mut rx: mpsc::Receiver<BreakGlassAlert>) {
        while let Some(alert) = rx.recv().await {
            let attempt = || self.post(&alert);
            let delivered = attempt
                .retry(self.backoff)
                .notify(|e, after| {
                    tracing::debug!(
                        target: "liaison::alert",
                        entry_id = %alert.entry_id,
                        error = %e,
                        retry_in_ms = after.as_millis(),
                        "alert webhook attempt failed"
                    );
                })
                .await;
            if let Err(e) = delivered {
                tracing::warn!(
                    target: "liaison::alert",
                    entry_id = %alert.entry_id,
                    error = %e,
                    "alert webhook gave up"
                );
                dropped("undeliverable", &alert.entry_id);
            }
        }
    }

    async fn post(&self, alert: &BreakGlassAlert) -> Result<(), String> {
        let mut request = self.client.post(self.url.clone()).json(alert);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {}", response.status()))
        }
    }
}

/// A few seconds of retries in all: long enough to ride out a restart of
/// the receiver, short enough that the queue keeps moving.
fn default_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(4))
        .with_max_times(MAX_ATTEMPTS - 1)
        .with_jitter()
}

fn dropped(reason: &'static str, entry_id: &str) {
    tracing::warn!(
        target: "liaison::alert",
        entry_id,
        reason,
        "break-glass alert dropped; the ledger entry still awaits review"
    );
    if let Some(m) = crate::telemetry::metrics() {
        m.alert_dropped(reason);
    }
}

/// The webhook URL, if it is one the gateway may send alerts to: https, or
/// plain http only to a loopback address (a local relay or a test).
fn webhook_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    let loopback = match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(parsed),
        "http" if loopback => Ok(parsed),
        "http" => Err("must use https (plain http is allowed only to a loopback address)".into()),
        _ => Err("must be an https URL".into()),
    }
}

fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let token = text.trim();
    if token.is_empty() {
        return Err("is empty".into());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in [
            "https://alerts.example/hook",
            "http://127.0.0.1:9000/hook",
            "http://[::1]:9000/hook",
            "http://localhost/hook",
        ] {
            assert!(webhook_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://alerts.example/hook", "must use https"),
            ("ftp://alerts.example/hook", "must be an https URL"),
            ("not a url", "is not a URL"),
        ] {
            let e = webhook_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_example_alerts_table_parses_when_uncommented() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/liaison.example.toml"),
        )
        .unwrap();
        let table: String = example
            .lines()
            .skip_while(|l| *l != "# [alerts]")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let config: AlertsConfig = toml::from_str(&table).unwrap();
        let url = config.webhook_url.as_ref().unwrap().get_ref();
        assert!(webhook_url(url).is_ok(), "{url}");
        assert!(config.token_file.is_some());
    }

    #[test]
    fn problems_name_the_key_and_span() {
        let text = "webhook_url = \"http://alerts.example/hook\"\ntoken_file = \"missing\"\n";
        let config: AlertsConfig = toml::from_str(text).unwrap();
        let problems = config.problems(Path::new("/nonexistent"));
        let keys: Vec<&str> = problems.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, ["alerts.webhook_url", "alerts.token_file"]);
        let (span, _, _) = &problems[0];
        assert_eq!(&text[span.clone()], "\"http://alerts.example/hook\"");
    }

    /// Log lines written while a test's subscriber is the default.
    #[derive(Clone, Default)]
    struct Capture(
        #[expect(
            clippy::disallowed_types,
            reason = "written from synchronous logging only, never across an await"
        )]
        std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    );

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_alert_is_a_warning_on_its_own_target_naming_entry_agency_user_isa_and_reason() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            Alerts::log_only().break_glass(alert(), "Child missing overnight, high risk");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        for part in [
            "WARN",
            "liaison::alert",
            "entry_id=e1",
            "agency=hackney-childrens",
            "user=u1",
            "isa=met-hackney-children",
            "reason=\"Child missing overnight, high risk\"",
            "a DPO must review it",
        ] {
            assert!(text.contains(part), "{part} missing from {text}");
        }
    }

    fn alert() -> BreakGlassAlert {
        BreakGlassAlert {
            kind: "break_glass".into(),
            entry_id: "e1".into(),
            sequence: 7,
            agency: "hackney-childrens".into(),
            subject: "u1".into(),
            isa_id: "met-hackney-children".into(),
            dataset_ids: vec!["met-police.records".into()],
            recorded_at: "2026-06-01T10:00:00Z".into(),
            console_path: "/console/entries/e1".into(),
        }
    }

    #[test]
    fn the_alert_carries_identifiers_only() {
        let json = serde_json::to_value(alert()).unwrap();
        // Sorted: whether serde_json keeps insertion order depends on the
        // features other crates in the build ask for.
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "agency",
                "console_path",
                "dataset_ids",
                "entry_id",
                "isa_id",
                "kind",
                "recorded_at",
                "sequence",
                "subject"
            ]
        );
    }
}
