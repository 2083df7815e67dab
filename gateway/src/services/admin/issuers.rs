//! Changes to the trust registry through `AdminService`.
//!
//! Open only to the `[identity] registry_role` of the issuer's own agency:
//! an agency can onboard, replace, suspend and remove its own issuers and
//! never another's, and an issuer's agency can never change (the caller's
//! agency must be the issuer's in both the version replaced and the new
//! one), because an issuer that could be moved to another agency would
//! mint that agency's principals. A proposal is checked exactly as the
//! configuration file's issuers are. Each change is a new version, recorded
//! in the ledger before it takes effect, in force on this replica when the
//! call returns and on every other within the reload interval; refused
//! attempts are recorded too.

use liaison_proto::v1 as pb;

use super::{Admin, Call};
use crate::{
    config::IssuerConfig,
    error::GatewayError,
    identity::{
        source::change_entry,
        store::{IssuerStatus, IssuerVersion, StoreError, StoredIssuer},
    },
    register::record,
};

impl Admin {
    /// The issuers in the registry that are not removed.
    pub(super) async fn issuers(&self) -> Result<pb::ListIssuersResponse, GatewayError> {
        let current = self.trust.store.current().await.map_err(store_error)?;
        Ok(pb::ListIssuersResponse {
            issuers: current
                .iter()
                .filter(|v| v.status != IssuerStatus::Removed)
                .map(to_proto)
                .collect(),
        })
    }

    /// Every version of one issuer.
    pub(super) async fn issuer_versions(
        &self,
        url: &str,
    ) -> Result<pb::ListIssuerVersionsResponse, GatewayError> {
        let versions = self.trust.store.versions(url).await.map_err(store_error)?;
        if versions.is_empty() {
            return Err(GatewayError::NotFound {
                what: format!("issuer `{url}`"),
            });
        }
        Ok(pb::ListIssuerVersionsResponse {
            versions: versions.iter().map(version_to_proto).collect(),
        })
    }

    /// Onboards an issuer or replaces its terms.
    pub(super) async fn propose_issuer_terms(
        &self,
        call: &Call,
        body: pb::ProposeIssuerRequest,
    ) -> Result<pb::ProposeIssuerResponse, GatewayError> {
        let parsed = IssuerConfig::parse_one(&body.issuer_toml, &self.config.agency_ids());
        let url = parsed
            .as_ref()
            .map(|i| i.url.get_ref().clone())
            .unwrap_or_default();
        let result = async {
            self.has_registry_role(call)?;
            call.check_justification()?;
            let proposed = parsed.map_err(|message| GatewayError::InvalidField {
                field: "issuer_toml".into(),
                message,
            })?;
            self.may_change_issuer(call, proposed.agency.get_ref())?;
            let current = self.trust.store.latest(&url).await.map_err(store_error)?;
            if let Some(current) = &current {
                self.may_change_issuer(call, current.agency())?;
            }
            let version =
                body.base_version
                    .checked_add(1)
                    .ok_or_else(|| GatewayError::InvalidField {
                        field: "base_version".into(),
                        message: "no versions left".into(),
                    })?;
            // A suspension is lifted only deliberately; new terms for a
            // removed issuer onboard it again.
            let status = match current.map(|c| c.status) {
                Some(IssuerStatus::Suspended) => IssuerStatus::Suspended,
                _ => IssuerStatus::Active,
            };
            let next = IssuerVersion::new(proposed, version, status).map_err(|message| {
                GatewayError::InvalidField {
                    field: "issuer_toml".into(),
                    message,
                }
            })?;
            self.change_issuer(call, next, body.base_version).await
        }
        .await;
        match result {
            Ok((version, receipt)) => Ok(pb::ProposeIssuerResponse {
                issuer: Some(to_proto(&version)),
                receipt: Some(receipt),
            }),
            Err(e) => {
                self.issuer_refused(call, &url, &e).await;
                Err(e)
            }
        }
    }

    /// Suspends, reactivates or removes an issuer.
    pub(super) async fn change_issuer_status(
        &self,
        call: &Call,
        body: pb::SetIssuerStatusRequest,
    ) -> Result<pb::SetIssuerStatusResponse, GatewayError> {
        let url = body.issuer_url.as_str();
        let result = async {
            self.has_registry_role(call)?;
            call.check_justification()?;
            let to = match pb::IssuerStatus::try_from(body.status) {
                Ok(pb::IssuerStatus::Active) => IssuerStatus::Active,
                Ok(pb::IssuerStatus::Suspended) => IssuerStatus::Suspended,
                Ok(pb::IssuerStatus::Removed) => IssuerStatus::Removed,
                _ => {
                    return Err(GatewayError::InvalidField {
                        field: "status".into(),
                        message: "must be active, suspended or removed".into(),
                    });
                }
            };
            let current = self
                .trust
                .store
                .latest(url)
                .await
                .map_err(store_error)?
                .ok_or_else(|| GatewayError::NotFound {
                    what: format!("issuer `{url}`"),
                })?;
            self.may_change_issuer(call, current.agency())?;
            if current.version != body.base_version {
                return Err(GatewayError::VersionConflict {
                    message: format!(
                        "issuer `{url}` is at version {}, not {}; read it again",
                        current.version, body.base_version
                    ),
                });
            }
            if !transition_allowed(current.status, to) {
                return Err(GatewayError::InvalidField {
                    field: "status".into(),
                    message: if current.status == IssuerStatus::Removed {
                        format!(
                            "issuer `{url}` is removed; propose its terms again to bring it back"
                        )
                    } else {
                        format!("issuer `{url}` cannot go from {} to {to}", current.status)
                    },
                });
            }
            let next = IssuerVersion {
                version: body.base_version.saturating_add(1),
                status: to,
                ..current
            };
            self.change_issuer(call, next, body.base_version).await
        }
        .await;
        match result {
            Ok((version, receipt)) => Ok(pb::SetIssuerStatusResponse {
                issuer: Some(to_proto(&version)),
                receipt: Some(receipt),
            }),
            Err(e) => {
                self.issuer_refused(call, url, &e).await;
                Err(e)
            }
        }
    }

    /// Refuses unless the caller holds the registry role at all; checked
    /// before anything else, so a principal without it learns nothing
    /// about the registry from its answers.
    fn has_registry_role(&self, call: &Call) -> Result<(), GatewayError> {
        let role = &self.config.identity.registry_role;
        if call.principal.has_role(role) {
            Ok(())
        } else {
            Err(GatewayError::FunctionNotPermitted {
                message: format!(
                    "changing the trust registry needs the `{role}` role of the issuer's agency"
                ),
            })
        }
    }

    /// Refuses unless the caller may change issuers speaking for `agency`.
    fn may_change_issuer(&self, call: &Call, agency: &str) -> Result<(), GatewayError> {
        self.has_registry_role(call)?;
        if call.principal.agency != agency {
            return Err(GatewayError::FunctionNotPermitted {
                message: format!(
                    "agency `{}` may change only its own issuers; this one speaks for `{agency}`",
                    call.principal.agency
                ),
            });
        }
        Ok(())
    }

    /// Reserves, records and applies one new version.
    async fn change_issuer(
        &self,
        call: &Call,
        next: IssuerVersion,
        base: u32,
    ) -> Result<(IssuerVersion, pb::Receipt), GatewayError> {
        let change = call.change();
        let reserved = self
            .trust
            .store
            .reserve(next, base, &change)
            .await
            .map_err(store_error)?;
        let entry = change_entry(&reserved, &change, call.origin());
        let receipt = record(&self.trust.store, &self.register.ledger, &reserved, &entry).await?;
        self.trust.reloader.reload_now().await;
        Ok((reserved.value, receipt))
    }

    /// Records a refused change to the registry. An audit failure is not
    /// recorded again: the ledger is what failed.
    async fn issuer_refused(&self, call: &Call, url: &str, error: &GatewayError) {
        if matches!(error, GatewayError::AuditUnavailable) {
            return;
        }
        let outcome = match error {
            GatewayError::FunctionNotPermitted { .. } => pb::AuditOutcome::Denied,
            GatewayError::InvalidField { .. }
            | GatewayError::VersionConflict { .. }
            | GatewayError::NotFound { .. } => pb::AuditOutcome::Invalid,
            _ => pb::AuditOutcome::Failed,
        };
        // The caller is authenticated, so the URL it named is recorded as it
        // named it (bounded), like an agreement id.
        let target = format!("issuer:{}", url.chars().take(300).collect::<String>());
        let entry = call.refusal(error, outcome, target);
        self.record_refusal(&entry, "trust registry").await;
    }
}

/// Whether an issuer may move from `from` to `to` by a status change.
fn transition_allowed(from: IssuerStatus, to: IssuerStatus) -> bool {
    use IssuerStatus::{Active, Removed, Suspended};
    matches!(
        (from, to),
        (Active, Suspended) | (Suspended, Active) | (Active | Suspended, Removed)
    )
}

fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(message) => GatewayError::VersionConflict { message },
        other => {
            tracing::error!(error = %other, "trust registry unavailable");
            GatewayError::AuditUnavailable
        }
    }
}

fn status_to_proto(status: IssuerStatus) -> pb::IssuerStatus {
    match status {
        IssuerStatus::Active => pb::IssuerStatus::Active,
        IssuerStatus::Suspended => pb::IssuerStatus::Suspended,
        IssuerStatus::Removed => pb::IssuerStatus::Removed,
    }
}

fn to_proto(v: &IssuerVersion) -> pb::Issuer {
    pb::Issuer {
        issuer_url: v.url().to_owned(),
        agency_id: v.agency().to_owned(),
        audiences: v.issuer.audiences.clone(),
        algorithms: v.issuer.algorithms.get_ref().clone(),
        version: v.version,
        status: status_to_proto(v.status) as i32,
    }
}

fn version_to_proto(v: &StoredIssuer) -> pb::IssuerVersion {
    pb::IssuerVersion {
        issuer: Some(to_proto(&v.value)),
        issuer_toml: crate::identity::store::canonical(&v.value.issuer)
            .map(|(text, _)| text)
            .unwrap_or_default(),
        recorded_at: Some(prost_types::Timestamp {
            seconds: v.recorded_at_micros.div_euclid(1_000_000),
            nanos: i32::try_from(v.recorded_at_micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
        }),
        changed_by_agency_id: v.change.agency.clone(),
        changed_by: v.change.by.clone(),
        justification: v.change.justification.clone(),
        content_hash: v.value.content_hash.clone(),
        audit_entry_id: v.audit_entry_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_moves_between_active_and_suspended_and_removal_is_final() {
        use IssuerStatus::*;
        let all = [Active, Suspended, Removed];
        let allowed: Vec<_> = all
            .iter()
            .flat_map(|&f| all.iter().map(move |&t| (f, t)))
            .filter(|&(f, t)| transition_allowed(f, t))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Active, Suspended),
                (Active, Removed),
                (Suspended, Active),
                (Suspended, Removed),
            ]
        );
    }
}
