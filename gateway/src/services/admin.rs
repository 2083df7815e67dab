//! `AdminService`: the trust registry and the agreement register, read-only.
//! Any authenticated principal may read them, so integrators can see the
//! agreements they work under.

use std::sync::Arc;

use liaison_policy::{Agreement, AgreementStatus};
use liaison_proto::v1::{self as pb, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use crate::{
    authn,
    config::{AgencyKind, Config},
    error::GatewayError,
    share::authorize::PolicyHandle,
};

/// The admin service.
#[derive(Debug, Clone)]
pub struct Admin {
    config: Arc<Config>,
    policy: PolicyHandle,
}

impl Admin {
    /// Serves the registry in `config` and the agreements in `policy`.
    pub fn new(config: Arc<Config>, policy: PolicyHandle) -> Self {
        Self { config, policy }
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_agencies(
        &self,
        request: Request<pb::ListAgenciesRequest>,
    ) -> Result<Response<pb::ListAgenciesResponse>, Status> {
        authn::principal(&request)?;
        let agencies = self
            .config
            .agencies
            .iter()
            .map(|a| pb::Agency {
                agency_id: a.id.get_ref().clone(),
                display_name: a.display_name.clone(),
                kind: agency_kind(a.kind) as i32,
                issuers: self
                    .config
                    .issuers
                    .iter()
                    .filter(|i| i.agency.get_ref() == a.id.get_ref())
                    .map(|i| i.url.get_ref().clone())
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
        let issuers = self
            .config
            .issuers
            .iter()
            .map(|i| pb::Issuer {
                issuer_url: i.url.get_ref().clone(),
                agency_id: i.agency.get_ref().clone(),
                audiences: i.audiences.clone(),
                algorithms: i.algorithms.get_ref().clone(),
            })
            .collect();
        Ok(Response::new(pb::ListIssuersResponse { issuers }))
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
    }
}

/// The agency a connector speaks for.
fn connector_agency(c: &liaison_connectors::ConnectorConfig) -> Option<&str> {
    match c {
        liaison_connectors::ConnectorConfig::Sql(sql) => Some(&sql.agency),
        _ => None,
    }
}
