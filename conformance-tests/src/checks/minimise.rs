//! Nothing leaves the gateway that the agreement does not release. The field
//! set comes from the deployment's own `GetAgreement`, so the check needs no
//! knowledge of the policy beyond the agreement's id. Where `ListDatasets`
//! tells the caller which fields its roles receive, the answer is held to
//! that narrower set too: a leak to the wrong role is still a leak.

use std::{collections::BTreeSet, sync::Arc};

use liaison_proto::v1 as pb;

use super::{CheckResult, Target, Verdict, contract, ensure, fields, status::unexpected};

/// The field sets one item is held to.
struct Allowed {
    agreement: pb::Agreement,
    grants: Vec<pb::DatasetGrant>,
}

impl Allowed {
    async fn fetch(t: &Target) -> Result<Self, Verdict> {
        let agreement = contract::agreement(t).await?;
        let req = t.as_("sharer", pb::ListDatasetsRequest::default()).await?;
        let grants = contract::sharing(t)
            .list_datasets(req)
            .await
            .map_err(unexpected("ListDatasets"))?
            .into_inner()
            .grants;
        Ok(Self { agreement, grants })
    }

    /// Paths of `disclosed` outside the agreement, and outside the caller's
    /// grant where it names fields, each labelled.
    fn leaks(
        &self,
        provenance: Option<&pb::Provenance>,
        disclosed: &BTreeSet<String>,
    ) -> Vec<String> {
        let dataset = provenance
            .map(|v| v.dataset_id.as_str())
            .filter(|d| !d.is_empty());
        let mut out: Vec<String> = fields::outside(
            disclosed,
            &fields::agreement_fields(&self.agreement, dataset),
        )
        .into_iter()
        .map(|p| format!("{p} (not in the agreement)"))
        .collect();
        let granted: BTreeSet<String> = self
            .grants
            .iter()
            .filter(|g| g.isa_id == self.agreement.isa_id)
            .filter(|g| dataset.is_none_or(|d| g.dataset_id == d))
            .flat_map(|g| g.fields.iter().cloned())
            .collect();
        if !granted.is_empty() {
            let beyond_agreement = fields::outside(
                disclosed,
                &fields::agreement_fields(&self.agreement, dataset),
            );
            let beyond_grant: Vec<String> = fields::outside(disclosed, &granted)
                .into_iter()
                .filter(|p| !beyond_agreement.contains(p))
                .map(|p| format!("{p} (not granted to the caller's roles)"))
                .collect();
            out.extend(beyond_grant);
        }
        out
    }
}

fn report(what: &str, leaks: &BTreeSet<String>) -> CheckResult {
    ensure(leaks.is_empty(), || {
        format!(
            "{what}: disclosed {}",
            leaks.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

pub async fn search(t: Arc<Target>) -> CheckResult {
    let allowed = Allowed::fetch(&t).await?;
    let found = contract::search(&t, 0).await?;
    let mut leaks = BTreeSet::new();
    for p in found.matches.iter().filter_map(|m| m.person.as_ref()) {
        leaks.extend(allowed.leaks(p.provenance.as_ref(), &fields::person(p)));
    }
    report("SearchPersons", &leaks)
}

pub async fn records(t: Arc<Target>) -> CheckResult {
    let allowed = Allowed::fetch(&t).await?;
    let read = contract::read_first(&t).await?;
    let mut leaks = BTreeSet::new();
    if let Some(p) = &read.person {
        leaks.extend(allowed.leaks(p.provenance.as_ref(), &fields::person(p)));
    }
    for r in &read.records {
        leaks.extend(allowed.leaks(r.provenance.as_ref(), &fields::record(r)));
    }
    report("GetRecords", &leaks)
}
