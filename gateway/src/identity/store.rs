//! [`IssuerStore`]: every version of every trusted issuer's terms, in the
//! ledger's database beside the agreement register, so all replicas trust
//! the same issuers.
//!
//! It is written exactly as the agreement register is: a version is
//! reserved (stored, not in force), appended to the ledger, then committed
//! with the id of the entry that recorded it, and only committed versions
//! are ever loaded. A version holds the canonical TOML of one `[[issuer]]`
//! table, its content hash, and a status; the hash covers the terms only,
//! so a suspension and a reactivation leave it unchanged and the replicas
//! can tell that an issuer's terms did not move.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use sqlx::Row;

use crate::{
    agreements::{
        AgreementStore, Change,
        store::{Db, STALE_RESERVATION, now_micros, on_db},
    },
    config::IssuerConfig,
};

/// The PostgreSQL channel a committed change to the trust registry is
/// announced on.
pub const CHANNEL: &str = "liaison_identity";

/// Guards concurrent schema creation by several replicas starting at once.
const SCHEMA_LOCK_KEY: i64 = i64::from_be_bytes(*b"issuerdb");

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS issuer_versions (
        issuer_url TEXT NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        agency TEXT NOT NULL,
        status TEXT NOT NULL,
        changed_by_agency TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        justification TEXT NOT NULL,
        recorded_at BIGINT NOT NULL,
        audit_entry_id TEXT NOT NULL DEFAULT '',
        committed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (issuer_url, version)
    )",
    "CREATE TABLE IF NOT EXISTS identity_epoch (
        id INTEGER PRIMARY KEY,
        epoch BIGINT NOT NULL
    )",
    "INSERT INTO identity_epoch (id, epoch) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
];

/// What can go wrong reading or writing the trust registry.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or refused the statement.
    #[error("issuer store: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored version no longer parses: someone edited the table by hand.
    #[error("issuer `{url}` version {version} as stored is not valid: {message}")]
    Corrupt {
        /// The issuer.
        url: String,
        /// The version.
        version: u32,
        /// What is wrong.
        message: String,
    },
    /// The change is based on a version that is no longer current.
    #[error("{0}")]
    Conflict(String),
}

/// Whether an issuer's tokens are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerStatus {
    /// Trusted.
    Active,
    /// Not trusted until reactivated; its terms are kept.
    Suspended,
    /// Not trusted; only a new proposal brings it back.
    Removed,
}

/// One version of an issuer's terms.
#[derive(Debug, Clone)]
pub struct IssuerVersion {
    /// The terms.
    pub issuer: IssuerConfig,
    /// The version, from 1.
    pub version: u32,
    /// Whether its tokens are accepted.
    pub status: IssuerStatus,
    /// `sha256:` and the hex SHA-256 of the terms' canonical text.
    pub content_hash: String,
}

/// One committed version with who made it, when and why.
#[derive(Debug, Clone)]
pub struct StoredIssuer {
    /// The version.
    pub version: IssuerVersion,
    /// Who changed it, and why.
    pub change: Change,
    /// When, in Unix microseconds.
    pub recorded_at_micros: i64,
    /// The audit entry that recorded the change.
    pub audit_entry_id: String,
}

/// The trust registry's versions.
#[derive(Debug, Clone)]
pub struct IssuerStore {
    db: Db,
    url: String,
}

/// The canonical document: one `[[issuer]]` table.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct One {
    issuer: Vec<IssuerConfig>,
}

impl IssuerStatus {
    /// The status as stored and as `liaison query` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Removed => "removed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "removed" => Some(Self::Removed),
            _ => None,
        }
    }
}

impl fmt::Display for IssuerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl IssuerVersion {
    /// `issuer` at `version` with `status`, hashed.
    pub fn new(issuer: IssuerConfig, version: u32, status: IssuerStatus) -> Result<Self, String> {
        let (_, content_hash) = canonical(&issuer)?;
        Ok(Self {
            issuer,
            version,
            status,
            content_hash,
        })
    }

    /// The issuer URL.
    pub fn url(&self) -> &str {
        self.issuer.url.get_ref()
    }

    /// The agency it speaks for.
    pub fn agency(&self) -> &str {
        self.issuer.agency.get_ref()
    }
}

/// The canonical TOML of an issuer's terms (every setting written out, in
/// a fixed order) and its content hash.
pub fn canonical(issuer: &IssuerConfig) -> Result<(String, String), String> {
    let text = toml::to_string(&One {
        issuer: vec![issuer.clone()],
    })
    .map_err(|e| format!("the issuer cannot be written as TOML: {e}"))?;
    let hash = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    );
    Ok((text, hash))
}

impl IssuerStore {
    /// The trust registry in the same database, and on the same pool, as
    /// the agreement register; creates its tables if needed.
    pub async fn open(agreements: &AgreementStore) -> Result<Self, StoreError> {
        let (db, url) = agreements.database();
        let store = Self {
            db,
            url: url.to_owned(),
        };
        store.create_schema().await?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Sqlite(pool) => {
                for &statement in SCHEMA {
                    sqlx::query(statement).execute(pool).await?;
                }
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SCHEMA_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                for &statement in SCHEMA {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// A listener for committed changes, on PostgreSQL; `None` on SQLite,
    /// where replicas rely on polling.
    pub async fn listener(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(_) => {
                let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
                listener.listen(CHANNEL).await?;
                Ok(Some(listener))
            }
        }
    }

    /// A counter every committed change increments: cheap to poll.
    pub async fn epoch(&self) -> Result<i64, StoreError> {
        let epoch: i64 = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT epoch FROM identity_epoch WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        Ok(epoch)
    }

    /// Every issuer the registry has ever held, at its latest committed
    /// version, whatever its status.
    pub async fn current(&self) -> Result<Vec<IssuerVersion>, StoreError> {
        const SQL: &str = "SELECT v.issuer_url, v.version, v.body, v.status FROM issuer_versions v \
            WHERE v.committed = 1 AND v.version = (SELECT max(w.version) \
            FROM issuer_versions w WHERE w.issuer_url = v.issuer_url AND w.committed = 1) \
            ORDER BY v.issuer_url";
        let rows: Vec<(String, i64, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(url, version, body, status)| parse(&url, version, &body, &status))
            .collect()
    }

    /// The latest committed version of one issuer.
    pub async fn latest(&self, url: &str) -> Result<Option<IssuerVersion>, StoreError> {
        const SQL: &str = "SELECT version, body, status FROM issuer_versions \
            WHERE issuer_url = $1 AND committed = 1 ORDER BY version DESC LIMIT 1";
        let row: Option<(i64, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).bind(url).fetch_optional(pool).await?
        });
        row.map(|(version, body, status)| parse(url, version, &body, &status))
            .transpose()
    }

    /// The latest committed version of one issuer made by `by` (the
    /// configuration file's imports, for instance).
    pub async fn latest_by(
        &self,
        url: &str,
        by: &str,
    ) -> Result<Option<IssuerVersion>, StoreError> {
        const SQL: &str = "SELECT version, body, status FROM issuer_versions \
            WHERE issuer_url = $1 AND changed_by = $2 AND committed = 1 \
            ORDER BY version DESC LIMIT 1";
        let row: Option<(i64, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(SQL).bind(url).bind(by).fetch_optional(pool).await?
        });
        row.map(|(version, body, status)| parse(url, version, &body, &status))
            .transpose()
    }

    /// The issuers `by` has recorded a version of.
    pub async fn urls_changed_by(&self, by: &str) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT DISTINCT issuer_url FROM issuer_versions \
            WHERE changed_by = $1 AND committed = 1 ORDER BY issuer_url";
        let urls: Vec<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar(SQL).bind(by).fetch_all(pool).await?
        });
        Ok(urls)
    }

    /// Every committed version of one issuer, oldest first.
    pub async fn versions(&self, url: &str) -> Result<Vec<StoredIssuer>, StoreError> {
        const SQL: &str = "SELECT version, body, status, changed_by_agency, changed_by, \
            justification, recorded_at, audit_entry_id FROM issuer_versions \
            WHERE issuer_url = $1 AND committed = 1 ORDER BY version";
        let rows = on_db!(&self.db, pool => {
            sqlx::query(SQL)
                .bind(url)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|row| {
                    Ok::<_, sqlx::Error>((
                        row.try_get::<i64, _>(0)?,
                        row.try_get::<String, _>(1)?,
                        row.try_get::<String, _>(2)?,
                        Change {
                            agency: row.try_get(3)?,
                            by: row.try_get(4)?,
                            justification: row.try_get(5)?,
                        },
                        row.try_get::<i64, _>(6)?,
                        row.try_get::<String, _>(7)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()?
        });
        rows.into_iter()
            .map(
                |(version, body, status, change, recorded_at_micros, audit_entry_id)| {
                    Ok(StoredIssuer {
                        version: parse(url, version, &body, &status)?,
                        change,
                        recorded_at_micros,
                        audit_entry_id,
                    })
                },
            )
            .collect()
    }

    /// Stores `next`, which must follow `base` (the latest committed
    /// version; 0 for a new issuer), not yet in force. Fails with
    /// [`StoreError::Conflict`] if `base` is not the latest committed
    /// version or another change holds the number.
    pub async fn reserve(
        &self,
        next: IssuerVersion,
        base: u32,
        change: &Change,
    ) -> Result<IssuerVersion, StoreError> {
        let url = next.url().to_owned();
        let latest = self.latest(&url).await?.map_or(0, |v| v.version);
        if latest != base {
            return Err(StoreError::Conflict(format!(
                "issuer `{url}` is at version {latest}, not {base}; read it again"
            )));
        }
        if next.version <= base {
            return Err(StoreError::Conflict(format!(
                "issuer `{url}` version {} does not follow version {base}",
                next.version
            )));
        }
        let (body, content_hash) =
            canonical(&next.issuer).map_err(|message| StoreError::Corrupt {
                url: url.clone(),
                version: next.version,
                message,
            })?;
        let now = now_micros();
        let stale = now.saturating_sub(i64::try_from(STALE_RESERVATION.as_micros()).unwrap_or(0));
        const CLEAR: &str = "DELETE FROM issuer_versions WHERE issuer_url = $1 AND committed = 0 \
            AND recorded_at < $2";
        const INSERT: &str = "INSERT INTO issuer_versions (issuer_url, version, body, \
            content_hash, agency, status, changed_by_agency, changed_by, justification, \
            recorded_at, committed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)";
        let inserted = on_db!(&self.db, pool => {
            sqlx::query(CLEAR).bind(&url).bind(stale).execute(pool).await?;
            sqlx::query(INSERT)
                .bind(&url)
                .bind(i64::from(next.version))
                .bind(&body)
                .bind(&content_hash)
                .bind(next.agency())
                .bind(next.status.as_str())
                .bind(&change.agency)
                .bind(&change.by)
                .bind(&change.justification)
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        match inserted {
            Ok(_) => Ok(IssuerVersion {
                content_hash,
                ..next
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("another change to issuer `{url}` is being recorded; read it again"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Puts a reserved version in force, naming the audit entry that
    /// recorded it, and tells every replica.
    pub async fn commit(
        &self,
        reserved: &IssuerVersion,
        audit_entry_id: &str,
    ) -> Result<(), StoreError> {
        const COMMIT: &str = "UPDATE issuer_versions SET committed = 1, audit_entry_id = $3 \
            WHERE issuer_url = $1 AND version = $2 AND committed = 0";
        const BUMP: &str = "UPDATE identity_epoch SET epoch = epoch + 1 WHERE id = 1";
        let url = reserved.url();
        let version = i64::from(reserved.version);
        let updated = match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let n = sqlx::query(COMMIT)
                    .bind(url)
                    .bind(version)
                    .bind(audit_entry_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                n
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let n = sqlx::query(COMMIT)
                    .bind(url)
                    .bind(version)
                    .bind(audit_entry_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(BUMP).execute(&mut *tx).await?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(format!("{url}@{version}"))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                n
            }
        };
        if updated == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "issuer `{url}` version {version} was no longer reserved"
            )))
        }
    }

    /// Drops a reservation whose audit append failed.
    pub async fn abandon(&self, reserved: &IssuerVersion) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM issuer_versions WHERE issuer_url = $1 AND version = $2 \
            AND committed = 0";
        on_db!(&self.db, pool => {
            sqlx::query(SQL)
                .bind(reserved.url())
                .bind(i64::from(reserved.version))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }
}

/// Reads a stored version back. Stored terms were validated when they were
/// written; they are not validated again here, so an agency later dropped
/// from the file does not make the whole registry unreadable.
fn parse(url: &str, version: i64, body: &str, status: &str) -> Result<IssuerVersion, StoreError> {
    let version = u32::try_from(version).unwrap_or(0);
    let corrupt = |message: String| StoreError::Corrupt {
        url: url.to_owned(),
        version,
        message,
    };
    let one: One = toml::from_str(body).map_err(|e| corrupt(e.message().trim().to_owned()))?;
    let mut issuers = one.issuer.into_iter();
    let (Some(issuer), None) = (issuers.next(), issuers.next()) else {
        return Err(corrupt("the text must hold exactly one issuer".into()));
    };
    if issuer.url.get_ref() != url {
        return Err(corrupt(format!(
            "the text holds issuer `{}`",
            issuer.url.get_ref()
        )));
    }
    let status =
        IssuerStatus::parse(status).ok_or_else(|| corrupt(format!("unknown status `{status}`")))?;
    IssuerVersion::new(issuer, version, status).map_err(corrupt)
}
