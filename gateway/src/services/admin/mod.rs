//! `AdminService`: the trust registry and the agreement register.
//!
//! Any authenticated principal may read them, so integrators can see the
//! agreements they work under. Changing an agreement is open only to the
//! information-governance role of the agency that provides its data: a
//! change is a new version (never an overwrite), is checked by compiling the
//! whole register with it, is appended to the ledger before it takes effect,
//! and is in force on this replica when the call returns and on every other
//! within the reload interval. Refused attempts are audited too. Changes to
//! the trust registry follow the same pattern under their own role
//! ([`issuers`]).

mod issuers;

use std::sync::Arc;

use liaison_ledger::Ledger;
use liaison_policy::{Agreement, AgreementStatus, PolicySet};
use liaison_proto::v1::{self as pb, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use crate::{
    agreements::{
        AgreementStore,
        source::{change_entry, compiles_with},
    },
    authn,
    config::{AgencyKind, Config},
    error::GatewayError,
    identity::{Principal, TrustRegistry, store::IssuerStore},
    register::{Change, Origin, Reloader, StoreError, record},
    share::{audit, authorize::PolicyHandle},
};

/// The shortest justification a change to an agreement may carry.
const MIN_JUSTIFICATION: usize = 10;

/// The admin service.
#[derive(Debug, Clone)]
pub struct Admin {
    config: Arc<Config>,
    policy: PolicyHandle,
    register: Register,
    trust: Trust,
}

/// Where trust registry changes are written, recorded (in the register's
/// ledger) and made to take effect.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Every version of every issuer's terms.
    pub store: IssuerStore,
    /// The issuers this replica trusts now.
    pub registry: Arc<TrustRegistry>,
    /// Reloads this replica's registry after a change.
    pub reloader: Reloader,
}

/// Where agreement changes are written, recorded and made to take effect.
#[derive(Debug, Clone)]
pub struct Register {
    /// Every version of every agreement.
    pub store: AgreementStore,
    /// Where each change is recorded before it takes effect.
    pub ledger: Arc<Ledger>,
    /// Rebuilds this replica's policy after a change.
    pub reloader: Reloader,
}

impl Admin {
    /// Serves the agencies in `config`, the agreements in `policy` and the
    /// issuers in `trust`, and writes changes through `register` and
    /// `trust`.
    pub fn new(
        config: Arc<Config>,
        policy: PolicyHandle,
        register: Register,
        trust: Trust,
    ) -> Self {
        Self {
            config,
            policy,
            register,
            trust,
        }
    }

    /// Refuses unless `principal` may change agreements provided by
    /// `provider`.
    fn may_change(&self, principal: &Principal, provider: &str) -> Result<(), GatewayError> {
        let role = &self.config.policy.governance_role;
        if !principal.has_role(role) {
            return Err(GatewayError::FunctionNotPermitted {
                message: format!(
                    "changing an agreement needs the `{role}` role of the agency that provides its data"
                ),
            });
        }
        if principal.agency != provider {
            return Err(GatewayError::FunctionNotPermitted {
                message: format!(
                    "agency `{}` may change only agreements it provides data under; this one is provided by `{provider}`",
                    principal.agency
                ),
            });
        }
        Ok(())
    }

    /// Checks, reserves, records and applies one new version.
    async fn change(
        &self,
        call: &Call,
        proposed: Agreement,
        base: u32,
    ) -> Result<(Agreement, pb::Receipt), GatewayError> {
        let current = self
            .register
            .store
            .latest(&proposed.id)
            .await
            .map_err(store_error)?;
        if let Some(current) = &current {
            self.may_change(&call.principal, &current.provider)?;
            if current.status == AgreementStatus::Expired {
                return Err(GatewayError::InvalidField {
                    field: "isa_id".into(),
                    message: format!(
                        "agreement `{}` has expired and cannot change; propose a new agreement",
                        current.id
                    ),
                });
            }
        }
        self.may_change(&call.principal, &proposed.provider)?;
        let rules = self.policy.borrow().rules().to_vec();
        compiles_with(&self.register.store, rules, proposed.clone())
            .await
            .map_err(|e| GatewayError::InvalidField {
                field: "agreement_toml".into(),
                message: e.to_string(),
            })?;
        let change = call.change();
        let reserved = self
            .register
            .store
            .reserve(proposed, base, &change)
            .await
            .map_err(store_error)?;
        let entry = change_entry(&reserved, &change, call.origin());
        let receipt = record(
            &self.register.store,
            &self.register.ledger,
            &reserved,
            &entry,
        )
        .await?;
        self.register.reloader.reload_now().await;
        Ok((reserved.value, receipt))
    }

    /// Records a refused change, so attempts are as visible as changes.
    async fn refused(&self, call: &Call, isa_id: &str, error: &GatewayError) {
        let outcome = match error {
            GatewayError::FunctionNotPermitted { .. } => pb::AuditOutcome::Denied,
            GatewayError::InvalidField { .. } | GatewayError::VersionConflict { .. } => {
                pb::AuditOutcome::Invalid
            }
            _ => pb::AuditOutcome::Failed,
        };
        let entry = pb::AuditEntry {
            isa_id: isa_id.to_owned(),
            ..call.refusal(error, outcome, format!("agreement:{isa_id}"))
        };
        self.record_refusal(&entry, "agreement").await;
    }

    /// Appends the entry of a refused change to the register `what`.
    async fn record_refusal(&self, entry: &pb::AuditEntry, what: &str) {
        if let Err(e) = audit::append(&self.register.ledger, entry).await {
            tracing::error!(error = %e, "could not record a refused {what} change");
        }
    }
}

/// Who asked for a change, from where, and why.
struct Call {
    principal: Arc<Principal>,
    method: &'static str,
    justification: String,
    client_address: String,
    trace_id: String,
}

impl Call {
    fn of<T>(
        request: &Request<T>,
        method: &'static str,
        justification: &str,
    ) -> Result<Self, Status> {
        Ok(Self {
            principal: authn::principal(request)?,
            method,
            justification: justification.trim().to_owned(),
            client_address: crate::tls::peer(request.extensions())
                .remote_addr
                .map(|a| a.to_string())
                .unwrap_or_default(),
            trace_id: crate::telemetry::current_trace_id().unwrap_or_default(),
        })
    }

    /// The change as the register stores it.
    fn change(&self) -> Change {
        Change {
            agency: self.principal.agency.clone(),
            by: self.principal.subject.clone(),
            justification: self.justification.clone(),
        }
    }

    /// The call as a change's audit entry names it.
    fn origin(&self) -> Origin<'static> {
        Origin {
            principal: audit::audit_principal(&self.principal),
            method: self.method,
            client_address: self.client_address.clone(),
            trace_id: self.trace_id.clone(),
        }
    }

    /// The `ADMINISTER` entry of this call refused with `error`, naming
    /// `target`.
    fn refusal(
        &self,
        error: &GatewayError,
        outcome: pb::AuditOutcome,
        target: String,
    ) -> pb::AuditEntry {
        pb::AuditEntry {
            format_version: audit::FORMAT_VERSION,
            entry_id: uuid::Uuid::now_v7().to_string(),
            recorded_at: Some(audit::now()),
            principal: Some(audit::audit_principal(&self.principal)),
            recipient_agency_id: self.principal.agency.clone(),
            action: pb::AuditAction::Administer as i32,
            method: self.method.to_owned(),
            justification: self.justification.clone(),
            outcome: outcome as i32,
            error_reason: error.reason().to_owned(),
            error_message: error.to_string(),
            target,
            client_address: self.client_address.clone(),
            trace_id: self.trace_id.clone(),
            ..Default::default()
        }
    }

    fn check_justification(&self) -> Result<(), GatewayError> {
        if self.justification.chars().count() < MIN_JUSTIFICATION {
            return Err(GatewayError::InvalidField {
                field: "justification".into(),
                message: format!(
                    "say why the change is made, in at least {MIN_JUSTIFICATION} characters"
                ),
            });
        }
        Ok(())
    }
}

fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(message) => GatewayError::VersionConflict { message },
        other => {
            tracing::error!(error = %other, "agreement register unavailable");
            GatewayError::AuditUnavailable
        }
    }
}

/// Whether an agreement may move from `from` to `to`.
fn transition_allowed(from: AgreementStatus, to: AgreementStatus) -> bool {
    use AgreementStatus::{Active, Draft, Expired, Suspended};
    matches!(
        (from, to),
        (Draft, Active)
            | (Active | Suspended, Suspended | Active)
            | (Draft | Active | Suspended, Expired)
    ) && from != to
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_agencies(
        &self,
        request: Request<pb::ListAgenciesRequest>,
    ) -> Result<Response<pb::ListAgenciesResponse>, Status> {
        authn::principal(&request)?;
        let trusted = self.trust.registry.issuers();
        let agencies = self
            .config
            .agencies
            .iter()
            .map(|a| pb::Agency {
                agency_id: a.id.get_ref().clone(),
                display_name: a.display_name.clone(),
                kind: agency_kind(a.kind) as i32,
                issuers: trusted
                    .iter()
                    .filter(|i| i.agency == *a.id.get_ref())
                    .map(|i| i.url.clone())
                    .collect(),
                dataset_ids: self
                    .config
                    .connectors
                    .iter()
                    .filter(|c| connector_agency(c) == Some(a.id.get_ref().as_str()))
                    .map(|c| c.id().to_owned())
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListAgenciesResponse { agencies }))
    }

    async fn list_issuers(
        &self,
        request: Request<pb::ListIssuersRequest>,
    ) -> Result<Response<pb::ListIssuersResponse>, Status> {
        authn::principal(&request)?;
        Ok(Response::new(self.issuers().await?))
    }

    async fn list_agreements(
        &self,
        request: Request<pb::ListAgreementsRequest>,
    ) -> Result<Response<pb::ListAgreementsResponse>, Status> {
        authn::principal(&request)?;
        let agency = request.into_inner().agency_id;
        let engine = self.policy.borrow().clone();
        let agreements = engine
            .agreements()
            .filter(|a| agency.is_empty() || a.provider == agency || a.recipients.contains(&agency))
            .map(to_proto)
            .collect();
        Ok(Response::new(pb::ListAgreementsResponse { agreements }))
    }

    async fn get_agreement(
        &self,
        request: Request<pb::GetAgreementRequest>,
    ) -> Result<Response<pb::GetAgreementResponse>, Status> {
        authn::principal(&request)?;
        let id = request.into_inner().isa_id;
        let engine = self.policy.borrow().clone();
        let agreement = engine
            .agreement(&id)
            .ok_or_else(|| GatewayError::NotFound {
                what: format!("agreement `{id}`"),
            })?;
        Ok(Response::new(pb::GetAgreementResponse {
            agreement: Some(to_proto(agreement)),
        }))
    }

    async fn list_agreement_versions(
        &self,
        request: Request<pb::ListAgreementVersionsRequest>,
    ) -> Result<Response<pb::ListAgreementVersionsResponse>, Status> {
        authn::principal(&request)?;
        let id = request.into_inner().isa_id;
        let versions = self
            .register
            .store
            .versions(&id)
            .await
            .map_err(store_error)?;
        if versions.is_empty() {
            return Err(GatewayError::NotFound {
                what: format!("agreement `{id}`"),
            }
            .into());
        }
        let versions = versions
            .into_iter()
            .map(|v| pb::AgreementVersion {
                agreement: Some(to_proto(&v.value)),
                recorded_at: Some(prost_types::Timestamp {
                    seconds: v.recorded_at_micros.div_euclid(1_000_000),
                    nanos: i32::try_from(v.recorded_at_micros.rem_euclid(1_000_000) * 1_000)
                        .unwrap_or(0),
                }),
                changed_by_agency_id: v.change.agency,
                changed_by: v.change.by,
                justification: v.change.justification,
                content_hash: v.content_hash,
                audit_entry_id: v.audit_entry_id,
            })
            .collect();
        Ok(Response::new(pb::ListAgreementVersionsResponse {
            versions,
        }))
    }

    async fn propose_agreement(
        &self,
        request: Request<pb::ProposeAgreementRequest>,
    ) -> Result<Response<pb::ProposeAgreementResponse>, Status> {
        const METHOD: &str = "/liaison.v1.AdminService/ProposeAgreement";
        let call = Call::of(&request, METHOD, &request.get_ref().justification)?;
        let body = request.into_inner();
        let parsed = PolicySet::one_agreement(&body.agreement_toml).map_err(|e| {
            GatewayError::InvalidField {
                field: "agreement_toml".into(),
                message: e.to_string(),
            }
        });
        let isa_id = parsed.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        let result = async {
            call.check_justification()?;
            let mut proposed = parsed?;
            proposed.version =
                body.base_version
                    .checked_add(1)
                    .ok_or_else(|| GatewayError::InvalidField {
                        field: "base_version".into(),
                        message: "no versions left".into(),
                    })?;
            self.change(&call, proposed, body.base_version).await
        }
        .await;
        match result {
            Ok((agreement, receipt)) => Ok(Response::new(pb::ProposeAgreementResponse {
                agreement: Some(to_proto(&agreement)),
                receipt: Some(receipt),
            })),
            Err(e) => {
                if !matches!(e, GatewayError::AuditUnavailable) {
                    self.refused(&call, &isa_id, &e).await;
                }
                Err(e.into())
            }
        }
    }

    async fn set_agreement_status(
        &self,
        request: Request<pb::SetAgreementStatusRequest>,
    ) -> Result<Response<pb::SetAgreementStatusResponse>, Status> {
        const METHOD: &str = "/liaison.v1.AdminService/SetAgreementStatus";
        let call = Call::of(&request, METHOD, &request.get_ref().justification)?;
        let body = request.into_inner();
        let result = async {
            call.check_justification()?;
            let to = match pb::AgreementStatus::try_from(body.status) {
                Ok(pb::AgreementStatus::Active) => AgreementStatus::Active,
                Ok(pb::AgreementStatus::Suspended) => AgreementStatus::Suspended,
                Ok(pb::AgreementStatus::Expired) => AgreementStatus::Expired,
                _ => {
                    return Err(GatewayError::InvalidField {
                        field: "status".into(),
                        message: "must be active, suspended or expired".into(),
                    });
                }
            };
            let current = self
                .register
                .store
                .latest(&body.isa_id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| GatewayError::NotFound {
                    what: format!("agreement `{}`", body.isa_id),
                })?;
            self.may_change(&call.principal, &current.provider)?;
            if current.version != body.base_version {
                return Err(GatewayError::VersionConflict {
                    message: format!(
                        "agreement `{}` is at version {}, not {}; read it again",
                        current.id, current.version, body.base_version
                    ),
                });
            }
            if !transition_allowed(current.status, to) {
                return Err(GatewayError::InvalidField {
                    field: "status".into(),
                    message: format!(
                        "agreement `{}` cannot go from {} to {to}",
                        current.id, current.status
                    ),
                });
            }
            let mut next = current;
            next.status = to;
            next.version = body.base_version.saturating_add(1);
            self.change(&call, next, body.base_version).await
        }
        .await;
        match result {
            Ok((agreement, receipt)) => Ok(Response::new(pb::SetAgreementStatusResponse {
                agreement: Some(to_proto(&agreement)),
                receipt: Some(receipt),
            })),
            Err(e) => {
                if !matches!(e, GatewayError::AuditUnavailable) {
                    self.refused(&call, &body.isa_id, &e).await;
                }
                Err(e.into())
            }
        }
    }

    async fn list_issuer_versions(
        &self,
        request: Request<pb::ListIssuerVersionsRequest>,
    ) -> Result<Response<pb::ListIssuerVersionsResponse>, Status> {
        authn::principal(&request)?;
        let url = request.into_inner().issuer_url;
        Ok(Response::new(self.issuer_versions(&url).await?))
    }

    async fn propose_issuer(
        &self,
        request: Request<pb::ProposeIssuerRequest>,
    ) -> Result<Response<pb::ProposeIssuerResponse>, Status> {
        const METHOD: &str = "/liaison.v1.AdminService/ProposeIssuer";
        let call = Call::of(&request, METHOD, &request.get_ref().justification)?;
        let body = request.into_inner();
        Ok(Response::new(self.propose_issuer_terms(&call, body).await?))
    }

    async fn set_issuer_status(
        &self,
        request: Request<pb::SetIssuerStatusRequest>,
    ) -> Result<Response<pb::SetIssuerStatusResponse>, Status> {
        const METHOD: &str = "/liaison.v1.AdminService/SetIssuerStatus";
        let call = Call::of(&request, METHOD, &request.get_ref().justification)?;
        let body = request.into_inner();
        Ok(Response::new(self.change_issuer_status(&call, body).await?))
    }
}

fn agency_kind(kind: AgencyKind) -> pb::AgencyKind {
    match kind {
        AgencyKind::Police => pb::AgencyKind::Police,
        AgencyKind::LocalAuthority => pb::AgencyKind::LocalAuthority,
        AgencyKind::Health => pb::AgencyKind::Health,
        AgencyKind::Education => pb::AgencyKind::Education,
        AgencyKind::Probation => pb::AgencyKind::Probation,
        AgencyKind::Other => pb::AgencyKind::Other,
    }
}

fn date(d: time::Date) -> pb::Date {
    pb::Date {
        year: d.year(),
        month: i32::from(u8::from(d.month())),
        day: i32::from(d.day()),
    }
}

fn to_proto(a: &Agreement) -> pb::Agreement {
    pb::Agreement {
        isa_id: a.id.clone(),
        version: a.version,
        title: a.title.clone(),
        provider_agency_id: a.provider.clone(),
        recipient_agency_ids: a.recipients.clone(),
        purposes: a.purposes.clone(),
        legal_basis: a.legal_basis.clone(),
        datasets: a
            .datasets
            .iter()
            .map(|d| pb::DatasetTerms {
                dataset_id: d.dataset.clone(),
                actions: d.actions.iter().map(|x| x.to_string()).collect(),
                roles: d
                    .roles
                    .iter()
                    .map(|r| pb::RoleFields {
                        role: r.role.clone(),
                        fields: r.fields.clone(),
                    })
                    .collect(),
                break_glass: d
                    .break_glass
                    .iter()
                    .map(|b| pb::BreakGlassTerms {
                        roles: b.roles.clone(),
                        fields: b.fields.clone(),
                    })
                    .collect(),
            })
            .collect(),
        valid_from: Some(date(a.valid_from)),
        valid_until: a.valid_until.map(date),
        review_date: a.review_date.map(date),
        status: match a.status {
            AgreementStatus::Draft => pb::AgreementStatus::Draft,
            AgreementStatus::Active => pb::AgreementStatus::Active,
            AgreementStatus::Suspended => pb::AgreementStatus::Suspended,
            AgreementStatus::Expired => pb::AgreementStatus::Expired,
        } as i32,
        dpo_contacts: a.dpo_contacts.clone(),
        controllership: a
            .controllership
            .map(|c| match c {
                liaison_policy::Controllership::Independent => "independent",
                liaison_policy::Controllership::Joint => "joint",
            })
            .unwrap_or_default()
            .to_owned(),
        special_category: a.special_category,
        law_enforcement: a.law_enforcement,
        rights_handling: a.rights_handling.clone().unwrap_or_default(),
        retention: a.retention.clone().unwrap_or_default(),
        security_requirements: a.security_requirements.clone().unwrap_or_default(),
        sign_off: a
            .sign_off
            .iter()
            .map(|s| pb::SignOff {
                agency_id: s.agency.clone(),
                name: s.name.clone(),
                role: s.role.clone(),
                date: Some(date(s.date)),
            })
            .collect(),
    }
}

/// The agency a connector speaks for.
fn connector_agency(c: &liaison_connectors::ConnectorConfig) -> Option<&str> {
    match c {
        liaison_connectors::ConnectorConfig::Sql(sql) => Some(&sql.agency),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_moves_only_forward_or_between_active_and_suspended() {
        use AgreementStatus::*;
        let all = [Draft, Active, Suspended, Expired];
        let allowed: Vec<_> = all
            .iter()
            .flat_map(|&f| all.iter().map(move |&t| (f, t)))
            .filter(|&(f, t)| transition_allowed(f, t))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Draft, Active),
                (Draft, Expired),
                (Active, Suspended),
                (Active, Expired),
                (Suspended, Active),
                (Suspended, Expired),
            ]
        );
    }
}
