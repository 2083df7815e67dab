//! Helpers for tests that need a real ledger database, in this crate and in others.
//!
//! PostgreSQL tests get a database of their own so they can run in parallel; they fail, rather
//! than skip, when the server is unreachable, so a missing database never passes CI silently.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use time::OffsetDateTime;

use crate::{EntryIndex, NewEntry, SigningKey};

/// The server tests use unless [`POSTGRES_URL_ENV`] says otherwise.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The environment variable naming the PostgreSQL server for tests: a URL whose user may create
/// and drop databases.
pub const POSTGRES_URL_ENV: &str = "LIAISON_TEST_POSTGRES_URL";

/// A database created for one test, dropped (with its connections) when this guard drops.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
}

/// Creates an empty PostgreSQL database for one test and returns its URL and the guard that
/// drops it.
///
/// # Panics
///
/// If the server is unreachable or refuses to create the database: the test fails.
#[expect(clippy::panic, reason = "a test helper fails the test that called it")]
pub async fn fresh_postgres_db() -> (String, TestDatabase) {
    let admin_url = admin_url();
    let name = unique_name();
    let created = async {
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        admin.close().await
    }
    .await;
    if let Err(err) = created {
        panic!(
            "cannot create a test database on the PostgreSQL server at `{admin_url}` \
             (set {POSTGRES_URL_ENV} to use another): {err}"
        );
    }
    let Some(url) = with_database(&admin_url, &name) else {
        panic!("{POSTGRES_URL_ENV} `{admin_url}` is not a postgres:// url");
    };
    (url, TestDatabase { admin_url, name })
}

/// A copy of the database `template` (which must have no open connections), for tests that
/// damage one copy per case. Returns its URL and the guard that drops it.
///
/// # Panics
///
/// If the server refuses to create the copy.
#[expect(clippy::panic, reason = "a test helper fails the test that called it")]
pub async fn copy_postgres_db(template: &TestDatabase) -> (String, TestDatabase) {
    let name = unique_name();
    let admin_url = template.admin_url.clone();
    let created = async {
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{}\" STRATEGY FILE_COPY",
            template.name
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await
    }
    .await;
    if let Err(err) = created {
        panic!("cannot copy test database `{}`: {err}", template.name);
    }
    let Some(url) = with_database(&admin_url, &name) else {
        panic!("{POSTGRES_URL_ENV} `{admin_url}` is not a postgres:// url");
    };
    (url, TestDatabase { admin_url, name })
}

/// A fresh SQLite ledger URL in a temporary directory, removed when the directory guard drops.
///
/// # Panics
///
/// If the temporary directory cannot be created.
#[expect(clippy::panic, reason = "a test helper fails the test that called it")]
pub fn fresh_sqlite_db() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("cannot create a temp dir: {err}"));
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    (url, dir)
}

/// A signing key derived from `n`: the same `n` gives the same key, so a test can build the
/// key a sealer uses again to verify, and different `n` give foreign keys.
///
/// # Panics
///
/// Never for any `n`; the seed is a valid Ed25519 seed.
#[expect(clippy::panic, reason = "a test helper fails the test that called it")]
pub fn test_signing_key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap_or_else(|err| panic!("test key {n}: {err}"))
}

/// A plausible entry numbered `n`, for tests that need many distinct entries.
pub fn sample_entry(n: u64) -> NewEntry {
    NewEntry {
        entry_id: format!("entry-{n:06}"),
        recorded_at: OffsetDateTime::UNIX_EPOCH
            + time::Duration::seconds(1_700_000_000)
            + time::Duration::nanoseconds(
                i64::try_from(n).unwrap_or(0).saturating_mul(1_000_000_007),
            ),
        body: format!("{{\"share\":{n},\"fields\":[\"name\",\"dob\"]}}").into_bytes(),
        index: EntryIndex {
            agency: match n % 3 {
                0 => "norfolk-police",
                1 => "norfolk-cc",
                _ => "nhs-norfolk",
            }
            .to_owned(),
            subject: format!("user-{}", n % 5),
            recipient: "norfolk-mash".to_owned(),
            provider: match n % 4 {
                0 => "norfolk-police",
                1 => "norfolk-cc",
                2 => "nhs-norfolk",
                _ => "",
            }
            .to_owned(),
            break_glass: n.is_multiple_of(6),
            action: "share.search".to_owned(),
            purpose: if n.is_multiple_of(2) {
                "safeguarding"
            } else {
                "crime-prevention"
            }
            .to_owned(),
            isa_id: "norfolk-mash-isa".to_owned(),
            outcome: if n % 4 == 3 { "denied" } else { "disclosed" }.to_owned(),
            subjects: vec![format!("person-{}", n % 7), format!("person-{}", n % 11)],
        },
    }
}

/// The body `ledger-load` records for `entry_id`, padded to about `bytes` bytes, so a crash
/// harness can check a stored body against its id.
pub fn body_for(entry_id: &str, bytes: usize) -> Vec<u8> {
    let head = format!("{{\"id\":\"{entry_id}\",\"pad\":\"");
    let pad = bytes.saturating_sub(head.len() + 2);
    let mut body = head.into_bytes();
    body.resize(body.len() + pad, b'x');
    body.extend_from_slice(b"\"}");
    body
}

/// An entry with this id and body and plausible search columns, for load tests.
pub fn load_entry(entry_id: &str, body: Vec<u8>) -> NewEntry {
    let n = body.len() as u64 + entry_id.len() as u64;
    NewEntry {
        entry_id: entry_id.to_owned(),
        recorded_at: OffsetDateTime::now_utc(),
        body,
        index: sample_entry(n).index,
    }
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the server's maintenance database, for tests that act on the server.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own
        // runtime can. `WITH (FORCE)` ends connections the test's pool still holds.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime
                .block_on(async {
                    let mut admin = PgConnection::connect(&admin_url).await?;
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                })
                .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "could not drop test database");
        }
    }
}

fn admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// A database name no other test, process or run uses.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("ledger_test_{}_{nanos:x}_{n}", std::process::id())
}

/// `url` with its database (path) replaced by `name`, keeping any query parameters.
fn with_database(url: &str, name: &str) -> Option<String> {
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://")?;
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(params) = params {
        out.push('?');
        out.push_str(params);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_and_parameters_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/t1")
        );
        assert_eq!(
            with_database("postgres://u:p@db/postgres?sslmode=disable", "t2").as_deref(),
            Some("postgres://u:p@db/t2?sslmode=disable")
        );
        assert_eq!(
            with_database("postgresql://localhost", "t3").as_deref(),
            Some("postgresql://localhost/t3")
        );
        assert_eq!(with_database("not a url", "t4"), None);
    }

    #[test]
    fn names_are_unique() {
        assert_ne!(unique_name(), unique_name());
    }
}
