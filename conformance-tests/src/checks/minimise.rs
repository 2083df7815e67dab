//! Nothing leaves the gateway that the agreement does not release. The field
//! set comes from the deployment's own `GetAgreement`, so the check needs no
//! knowledge of the policy beyond the agreement's id.

use std::{collections::BTreeSet, sync::Arc};

use super::{CheckResult, Target, contract, ensure, fields};

fn report(what: &str, leaks: &BTreeSet<String>) -> CheckResult {
    ensure(leaks.is_empty(), || {
        format!(
            "{what}: disclosed outside the agreement: {}",
            leaks.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

pub async fn search(t: Arc<Target>) -> CheckResult {
    let agreement = contract::agreement(&t).await?;
    let found = contract::search(&t, 0).await?;
    let mut leaks = BTreeSet::new();
    for p in found.matches.iter().filter_map(|m| m.person.as_ref()) {
        let dataset = p
            .provenance
            .as_ref()
            .map(|v| v.dataset_id.as_str())
            .filter(|d| !d.is_empty());
        let allowed = fields::agreement_fields(&agreement, dataset);
        leaks.extend(fields::outside(&fields::person(p), &allowed));
    }
    report("SearchPersons", &leaks)
}

pub async fn records(t: Arc<Target>) -> CheckResult {
    let agreement = contract::agreement(&t).await?;
    let read = contract::read_first(&t).await?;
    let mut leaks = BTreeSet::new();
    if let Some(p) = &read.person {
        let dataset = p
            .provenance
            .as_ref()
            .map(|v| v.dataset_id.as_str())
            .filter(|d| !d.is_empty());
        leaks.extend(fields::outside(
            &fields::person(p),
            &fields::agreement_fields(&agreement, dataset),
        ));
    }
    for r in &read.records {
        let dataset = r
            .provenance
            .as_ref()
            .map(|v| v.dataset_id.as_str())
            .filter(|d| !d.is_empty());
        let allowed = fields::agreement_fields(&agreement, dataset);
        leaks.extend(fields::outside(&fields::record(r), &allowed));
    }
    report("GetRecords", &leaks)
}
