//! Every RPC of the three services answers, or gives its documented error.

use std::sync::Arc;

use liaison_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient,
    oversight_service_client::OversightServiceClient, sharing_service_client::SharingServiceClient,
};
use tonic::{Code, transport::Channel};

use super::{
    CheckResult, Target, Verdict, ensure, fail, receipts,
    status::{expect_error, unexpected},
};

/// An entry id no ledger holds (a v7-shaped UUID of zeros).
const UNKNOWN_ENTRY: &str = "00000000-0000-7000-8000-000000000000";

pub(super) fn sharing(t: &Target) -> SharingServiceClient<Channel> {
    SharingServiceClient::new(t.channel.clone())
}
pub(super) fn oversight(t: &Target) -> OversightServiceClient<Channel> {
    OversightServiceClient::new(t.channel.clone())
}
pub(super) fn admin(t: &Target) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(t.channel.clone())
}

/// A search under the settings' context and query, as the sharer.
pub(super) async fn search(
    t: &Target,
    page_size: i32,
) -> Result<pb::SearchPersonsResponse, Verdict> {
    let req = pb::SearchPersonsRequest {
        context: Some(t.share.context()),
        query: Some(t.share.query()),
        dataset_ids: vec![],
        page_size,
    };
    sharing(t)
        .search_persons(t.as_("sharer", req).await?)
        .await
        .map(tonic::Response::into_inner)
        .map_err(unexpected("SearchPersons"))
}

/// The first person a search finds, read in full, as the sharer.
pub(super) async fn read_first(t: &Target) -> Result<pb::GetRecordsResponse, Verdict> {
    let found = search(t, 0).await?;
    let person_id = found
        .matches
        .iter()
        .find_map(|m| m.person.as_ref())
        .map(|p| p.person_id.clone())
        .ok_or_else(|| {
            Verdict::Skip(format!(
                "the search for {} {} found nobody to read; set [share] in the principals file",
                t.share.given_name, t.share.family_name
            ))
        })?;
    let req = pb::GetRecordsRequest {
        context: Some(t.share.context()),
        person_id,
        kinds: vec![],
    };
    sharing(t)
        .get_records(t.as_("sharer", req).await?)
        .await
        .map(tonic::Response::into_inner)
        .map_err(unexpected("GetRecords"))
}

pub(super) async fn agreement(t: &Target) -> Result<pb::Agreement, Verdict> {
    let req = pb::GetAgreementRequest {
        isa_id: t.share.isa.clone(),
    };
    admin(t)
        .get_agreement(t.as_("sharer", req).await?)
        .await
        .map_err(unexpected("GetAgreement"))?
        .into_inner()
        .agreement
        .ok_or_else(|| fail("GetAgreement answered without an agreement"))
}

pub async fn list_datasets(t: Arc<Target>) -> CheckResult {
    let req = t.as_("sharer", pb::ListDatasetsRequest::default()).await?;
    let grants = sharing(&t)
        .list_datasets(req)
        .await
        .map_err(unexpected("ListDatasets"))?
        .into_inner()
        .grants;
    ensure(grants.iter().any(|g| g.isa_id == t.share.isa), || {
        format!(
            "ListDatasets: no grant under `{}` among {:?}",
            t.share.isa,
            grants.iter().map(|g| &g.isa_id).collect::<Vec<_>>()
        )
    })
}

pub async fn search_persons(t: Arc<Target>) -> CheckResult {
    let found = search(&t, 0).await?;
    ensure(!found.matches.is_empty(), || {
        format!(
            "SearchPersons: no match for {} {}",
            t.share.given_name, t.share.family_name
        )
    })?;
    ensure(found.receipt.is_some(), || {
        "SearchPersons: answered without a receipt".into()
    })
}

pub async fn get_records(t: Arc<Target>) -> CheckResult {
    let read = read_first(&t).await?;
    ensure(read.receipt.is_some(), || {
        "GetRecords: answered without a receipt".into()
    })
}

/// Subscribe is a share: without `--allow-writes` it is sent without a
/// purpose so it can only be refused (or be unimplemented); with it, it
/// follows the person the settings' search finds and must send a first
/// message (a heartbeat at least) rather than hang.
pub async fn subscribe(t: Arc<Target>) -> CheckResult {
    let mut context = t.share.context();
    let mut person_ids = vec![];
    if t.allow_writes {
        let found = search(&t, 0).await?;
        person_ids.extend(
            found
                .matches
                .iter()
                .find_map(|m| m.person.as_ref())
                .map(|p| p.person_id.clone()),
        );
    } else {
        context.purpose.clear();
    }
    let req = pb::SubscribeRequest {
        context: Some(context),
        person_ids,
        resume_cursor: String::new(),
    };
    let req = t.as_("sharer", req).await?;
    match sharing(&t).subscribe(req).await {
        Ok(stream) if t.allow_writes => {
            let mut stream = stream.into_inner();
            super::stream::first_message("Subscribe", &mut stream)
                .await
                .map(|_| ())
        }
        Ok(_) => Err(fail("Subscribe without a purpose: the stream was opened")),
        Err(s) if s.code() == Code::Unimplemented => expect_error(
            "Subscribe",
            Err::<(), _>(s),
            Code::Unimplemented,
            &["NOT_IMPLEMENTED"],
        )
        .map(|_| ()),
        Err(s) if s.code() == Code::InvalidArgument && !t.allow_writes => expect_error(
            "Subscribe without a purpose",
            Err::<(), _>(s),
            Code::InvalidArgument,
            &["PURPOSE_MISSING"],
        )
        .map(|_| ()),
        Err(s) => Err(unexpected("Subscribe")(s)),
    }
}

pub async fn list_audit_entries(t: Arc<Target>) -> CheckResult {
    let req = pb::ListAuditEntriesRequest {
        page_size: 5,
        ..Default::default()
    };
    oversight(&t)
        .list_audit_entries(t.as_("overseer", req).await?)
        .await
        .map_err(unexpected("ListAuditEntries"))?;
    Ok(())
}

pub async fn get_tree_head(t: Arc<Target>) -> CheckResult {
    let head = receipts::tree_head(&t).await?;
    ensure(receipts::hash32(&head.root_hash).is_some(), || {
        format!(
            "GetTreeHead: root_hash `{}` is not 32 bytes of hex",
            head.root_hash
        )
    })
}

pub async fn get_audit_entry_unknown(t: Arc<Target>) -> CheckResult {
    let req = pb::GetAuditEntryRequest {
        entry_id: UNKNOWN_ENTRY.into(),
    };
    let r = oversight(&t)
        .get_audit_entry(t.as_("overseer", req).await?)
        .await;
    expect_error(
        "GetAuditEntry for an unknown id",
        r,
        Code::NotFound,
        &["NOT_FOUND"],
    )
    .map(|_| ())
}

pub async fn get_inclusion_proof_unknown(t: Arc<Target>) -> CheckResult {
    let req = pb::GetInclusionProofRequest {
        entry_id: UNKNOWN_ENTRY.into(),
        tree_size: 0,
    };
    let r = oversight(&t)
        .get_inclusion_proof(t.as_("overseer", req).await?)
        .await;
    expect_error(
        "GetInclusionProof for an unknown id",
        r,
        Code::NotFound,
        &["NOT_FOUND"],
    )
    .map(|_| ())
}

pub async fn get_consistency_proof(t: Arc<Target>) -> CheckResult {
    let head = receipts::tree_head(&t).await?;
    if head.tree_size < 1 {
        return Err(Verdict::Skip("the ledger is empty".into()));
    }
    let req = pb::GetConsistencyProofRequest {
        first_size: 1,
        second_size: head.tree_size,
    };
    let p = oversight(&t)
        .get_consistency_proof(t.as_("overseer", req).await?)
        .await
        .map_err(unexpected("GetConsistencyProof"))?
        .into_inner();
    receipts::verify_consistency(&p)
}

pub async fn get_subject_access_report(t: Arc<Target>) -> CheckResult {
    let req = pb::GetSubjectAccessReportRequest {
        person_id: "conformance:nobody".into(),
    };
    match oversight(&t)
        .get_subject_access_report(t.as_("overseer", req).await?)
        .await
    {
        Ok(r) => ensure(r.get_ref().disclosures.is_empty(), || {
            "GetSubjectAccessReport: disclosures reported for a person nobody shared".into()
        }),
        Err(s) if s.code() == Code::NotFound => expect_error(
            "GetSubjectAccessReport",
            Err::<(), _>(s),
            Code::NotFound,
            &["NOT_FOUND"],
        )
        .map(|_| ()),
        Err(s) => Err(unexpected("GetSubjectAccessReport")(s)),
    }
}

pub async fn oversight_refused_to_sharer(t: Arc<Target>) -> CheckResult {
    let r = oversight(&t)
        .get_tree_head(t.as_("sharer", pb::GetTreeHeadRequest {}).await?)
        .await;
    expect_error("GetTreeHead as the sharer", r, Code::PermissionDenied, &[]).map(|_| ())
}

pub async fn list_agencies(t: Arc<Target>) -> CheckResult {
    let r = admin(&t)
        .list_agencies(t.as_("sharer", pb::ListAgenciesRequest {}).await?)
        .await
        .map_err(unexpected("ListAgencies"))?;
    ensure(!r.get_ref().agencies.is_empty(), || {
        "ListAgencies: no agencies".into()
    })
}

pub async fn list_issuers(t: Arc<Target>) -> CheckResult {
    let r = admin(&t)
        .list_issuers(t.as_("sharer", pb::ListIssuersRequest {}).await?)
        .await
        .map_err(unexpected("ListIssuers"))?;
    ensure(!r.get_ref().issuers.is_empty(), || {
        "ListIssuers: no issuers".into()
    })
}

pub async fn list_agreements(t: Arc<Target>) -> CheckResult {
    let r = admin(&t)
        .list_agreements(
            t.as_("sharer", pb::ListAgreementsRequest::default())
                .await?,
        )
        .await
        .map_err(unexpected("ListAgreements"))?;
    ensure(
        r.get_ref()
            .agreements
            .iter()
            .any(|a| a.isa_id == t.share.isa),
        || format!("ListAgreements: `{}` is not listed", t.share.isa),
    )
}

pub async fn get_agreement(t: Arc<Target>) -> CheckResult {
    let a = agreement(&t).await?;
    ensure(a.isa_id == t.share.isa && !a.datasets.is_empty(), || {
        format!(
            "GetAgreement: asked for `{}`, got `{}` with {} datasets",
            t.share.isa,
            a.isa_id,
            a.datasets.len()
        )
    })
}

pub async fn get_agreement_unknown(t: Arc<Target>) -> CheckResult {
    let req = pb::GetAgreementRequest {
        isa_id: "conformance-no-such-agreement".into(),
    };
    let r = admin(&t).get_agreement(t.as_("sharer", req).await?).await;
    expect_error(
        "GetAgreement for an unknown id",
        r,
        Code::NotFound,
        &["NOT_FOUND"],
    )
    .map(|_| ())
}
