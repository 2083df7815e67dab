//! Every request message of the liaison.v1 services, decoded from bytes a
//! peer chose, then (for shares) validated as the share stack would.
//!
//! A decoded message must re-encode to bytes that decode to the same
//! message: prost is the only reader between the wire and the gateway, and a
//! message that changed meaning on a second reading would be recorded in the
//! ledger differently from how it was judged.
#![no_main]

use std::sync::Arc;

use liaison_gateway::identity::Principal;
use liaison_gateway::share::validate::validate;
use liaison_gateway::share::{Operation, ShareCall};
use liaison_policy::Action;
use liaison_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    let message = M::decode(data).ok()?;
    let again = M::decode(message.encode_to_vec().as_slice()).expect("re-encoded message decodes");
    assert_eq!(message, again, "message changed on a second reading");
    Some(message)
}

fn principal() -> Arc<Principal> {
    Arc::new(Principal {
        agency: "fuzz-agency".into(),
        subject: "fuzz-subject".into(),
        display_name: None,
        roles: vec!["safeguarding-officer".into()],
        team: None,
        vetting: None,
        client_id: None,
        issuer: "https://idp.fuzz.invalid".into(),
        is_system: false,
    })
}

fn share(action: Action, context: Option<pb::ShareContext>, operation: Operation) {
    let call = ShareCall {
        principal: principal(),
        method: "/liaison.v1.SharingService/Fuzz",
        action,
        context,
        operation,
        client_address: "192.0.2.1:443".into(),
        trace_id: String::new(),
        deadline: None,
    };
    let _ = validate(call);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<pb::ListAgenciesRequest>(data);
    round_trip::<pb::ListIssuersRequest>(data);
    round_trip::<pb::ListAgreementsRequest>(data);
    round_trip::<pb::GetAgreementRequest>(data);
    round_trip::<pb::ListAuditEntriesRequest>(data);
    round_trip::<pb::GetAuditEntryRequest>(data);
    round_trip::<pb::GetTreeHeadRequest>(data);
    round_trip::<pb::GetInclusionProofRequest>(data);
    round_trip::<pb::GetConsistencyProofRequest>(data);
    round_trip::<pb::GetSubjectAccessReportRequest>(data);
    round_trip::<pb::ListDatasetsRequest>(data);
    round_trip::<pb::SubscribeRequest>(data);
    if let Some(r) = round_trip::<pb::SearchPersonsRequest>(data) {
        share(
            Action::Search,
            r.context,
            Operation::Search {
                query: r.query,
                dataset_ids: r.dataset_ids,
                page_size: r.page_size,
            },
        );
    }
    if let Some(r) = round_trip::<pb::GetRecordsRequest>(data) {
        share(
            Action::Read,
            r.context,
            Operation::Read {
                person_id: r.person_id,
                kinds: r.kinds,
            },
        );
    }
});
