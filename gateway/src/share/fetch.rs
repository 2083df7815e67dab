//! Fetch: ask every allowed dataset's connector in parallel, each under a
//! deadline. A source that is slow or fails becomes a named gap in a partial
//! answer, never a hang; only when every source fails is the share failed.

use std::{
    collections::HashMap,
    convert::Infallible,
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::FutureExt as _;
use liaison_connectors::{Connector, PersonQuery, Registry};
use liaison_proto::v1 as pb;
use tokio::task::JoinSet;
use tower::Service;
use tracing::Instrument;

use super::{Answer, Authorized, BoxFuture, Facts, Payload, ValidOperation};
use crate::error::GatewayError;

/// The innermost stage: consults connectors.
#[derive(Debug, Clone)]
pub struct Fetch {
    registry: Arc<Registry>,
    deadline: Duration,
}

impl Fetch {
    /// Consults `registry`, giving each connector at most `deadline`.
    pub fn new(registry: Arc<Registry>, deadline: Duration) -> Self {
        Self { registry, deadline }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per connector call"
)]
enum SourceResult {
    Found(Vec<pb::Person>, Vec<liaison_connectors::PeerGap>),
    Fetched(
        Option<pb::Person>,
        Vec<pb::Record>,
        Vec<liaison_connectors::PeerGap>,
    ),
}

impl Service<Authorized> for Fetch {
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFuture<Result<Answer, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Authorized) -> Self::Future {
        let registry = self.registry.clone();
        let deadline = req
            .validated
            .call
            .deadline
            .map_or(self.deadline, |d| d.min(self.deadline));
        Box::pin(async move { Ok(fetch(registry, deadline, req).await) })
    }
}

async fn fetch(registry: Arc<Registry>, deadline: Duration, req: Authorized) -> Answer {
    if let ValidOperation::Subscribe { cursors, .. } = &req.validated.operation {
        let cursors = cursors.clone();
        return open_feeds(registry, deadline, req.plan, cursors).await;
    }
    let mut facts = Facts::default();
    let share = share_request(&req);
    let mut consults = Vec::with_capacity(req.plan.len());
    for (dataset, _) in &req.plan {
        facts.sources.push(dataset.clone());
        let Some(connector) = registry.get(dataset).cloned() else {
            facts.gaps.push(gap(
                dataset,
                "UNAVAILABLE",
                "no connector serves this dataset",
            ));
            continue;
        };
        let dataset = dataset.clone();
        let operation = req.validated.operation.clone();
        let share = share.clone();
        let span = tracing::debug_span!("fetch", dataset = %dataset);
        let name = dataset.clone();
        consults.push((
            name,
            async move {
                // The connector's source joins this span's trace.
                let parent = crate::telemetry::current_trace_parent();
                let started = std::time::Instant::now();
                let consulted =
                    tokio::time::timeout(deadline, consult(connector.as_ref(), &operation));
                let consulted =
                    liaison_connectors::request::with_share_request(Some(share), consulted);
                let result = liaison_connectors::trace::with_trace_parent(parent, consulted).await;
                if let Some(m) = crate::telemetry::metrics() {
                    let error = match &result {
                        Err(_) => Some("deadline"),
                        Ok(Err(_)) => Some("unavailable"),
                        Ok(Ok(_)) => None,
                    };
                    m.connector(&dataset, started.elapsed(), error);
                }
                (dataset, result)
            }
            .instrument(span),
        ));
    }
    // A connector that panics (on hostile data, say) is a gap like one that
    // fails, named but without the panic's words.
    let panicked = |facts: &mut Facts, dataset: &str| {
        tracing::error!(dataset = %dataset, "connector call panicked");
        facts
            .gaps
            .push(gap(dataset, "UNAVAILABLE", "the connector failed"));
    };
    let mut results = Vec::with_capacity(consults.len());
    if consults.len() == 1 {
        // One source (the usual share) is consulted on this task: a task of
        // its own would only add a spawn and a wake-up.
        for (dataset, consult) in consults {
            match AssertUnwindSafe(consult).catch_unwind().await {
                Ok(r) => results.push(r),
                Err(_) => panicked(&mut facts, &dataset),
            }
        }
    } else {
        let mut tasks = JoinSet::new();
        let mut names = HashMap::with_capacity(consults.len());
        for (dataset, consult) in consults {
            names.insert(tasks.spawn(consult).id(), dataset);
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => match names.get(&e.id()) {
                    Some(dataset) if e.is_panic() => panicked(&mut facts, dataset),
                    _ => tracing::error!(error = %e, "connector task failed"),
                },
            }
        }
    }
    let mut found = Vec::new();
    let mut person = None;
    let mut records = Vec::new();
    // Sources a peer reported missing from its answer: part of the answer's
    // gaps, but not failures of a dataset asked here.
    let mut behind = Vec::new();
    for (dataset, result) in results {
        match result {
            Err(_) => facts.gaps.push(gap(
                &dataset,
                "DEADLINE_EXCEEDED",
                &format!("no answer within {} ms", deadline.as_millis()),
            )),
            Ok(Err(e)) => {
                tracing::warn!(dataset = %dataset, error = %e, "connector failed");
                facts
                    .gaps
                    .push(gap(&dataset, gap_reason(&e), &e.to_string()));
            }
            Ok(Ok(SourceResult::Found(persons, gaps))) => {
                found.extend(persons.into_iter().map(|p| (dataset.clone(), p)));
                behind.extend(gaps);
            }
            Ok(Ok(SourceResult::Fetched(p, r, gaps))) => {
                person = p.or(person);
                records.extend(r);
                behind.extend(gaps);
            }
        }
    }
    facts.gaps.sort_by(|a, b| a.dataset_id.cmp(&b.dataset_id));
    if !req.plan.is_empty() && facts.gaps.len() == req.plan.len() {
        let message = facts
            .gaps
            .iter()
            .map(|g| format!("`{}` {}", g.dataset_id, g.reason))
            .collect::<Vec<_>>()
            .join(", ");
        // Declined everywhere is an answer, not an outage: retrying will
        // not change it, so it is not `SOURCES_UNAVAILABLE`.
        let error = if facts.gaps.iter().all(|g| g.reason == "DECLINED") {
            GatewayError::SourcesDeclined {
                datasets: facts.gaps.iter().map(|g| g.dataset_id.clone()).collect(),
                message: facts
                    .gaps
                    .iter()
                    .map(|g| format!("`{}` {}", g.dataset_id, g.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        } else {
            GatewayError::SourcesUnavailable { message }
        };
        return Answer {
            facts,
            result: Err(error),
        };
    }
    let mut behind: Vec<pb::SourceGap> = behind
        .into_iter()
        .map(|g| gap(&g.source, &g.reason, &g.message))
        .collect();
    behind.sort_by(|a, b| a.dataset_id.cmp(&b.dataset_id));
    facts.gaps.extend(behind);
    let gaps = facts.gaps.clone();
    let payload = match &req.validated.operation {
        ValidOperation::Search {
            query, page_size, ..
        } => Payload::Search {
            matches: rank(query, found, *page_size),
            gaps,
        },
        ValidOperation::Read { .. } => Payload::Read {
            person,
            records,
            gaps,
        },
        ValidOperation::Subscribe { .. } => {
            return Answer::refused(GatewayError::internal("subscription reached a read"));
        }
    };
    Answer {
        facts,
        result: Ok(payload),
    }
}

/// Finds where each allowed dataset's change feed starts: "now" for a new
/// subscription, or the resumed cursor once its dataset has accepted it. A
/// cursor a dataset refuses is the caller's fault; a dataset without a feed
/// is a gap, and the subscription fails only if no dataset can be followed.
async fn open_feeds(
    registry: Arc<Registry>,
    deadline: Duration,
    plan: Vec<(String, Arc<liaison_policy::Decision>)>,
    resumed: std::collections::BTreeMap<String, liaison_connectors::ChangeCursor>,
) -> Answer {
    let mut facts = Facts::default();
    let mut cursors = std::collections::BTreeMap::new();
    let mut followed = Vec::new();
    for (dataset, decision) in plan {
        facts.sources.push(dataset.clone());
        let Some(connector) = registry.get(&dataset).cloned() else {
            facts.gaps.push(gap(
                &dataset,
                "UNAVAILABLE",
                "no connector serves this dataset",
            ));
            continue;
        };
        let after = resumed.get(&dataset);
        let read = tokio::time::timeout(deadline, connector.changes(after, 1))
            .instrument(tracing::debug_span!("fetch", dataset = %dataset))
            .await;
        match read {
            Ok(Ok(changes)) => {
                // Resuming starts after the cursor given, not after the
                // change just peeked at.
                let cursor = after.cloned().unwrap_or(changes.cursor);
                cursors.insert(dataset.clone(), cursor);
                followed.push((dataset, decision));
            }
            Ok(Err(liaison_connectors::ConnectorError::InvalidCursor { .. })) => {
                return Answer {
                    facts,
                    result: Err(GatewayError::InvalidField {
                        field: "resume_cursor".into(),
                        message: format!("dataset `{dataset}` cannot resume from it"),
                    }),
                };
            }
            Ok(Err(e)) => facts
                .gaps
                .push(gap(&dataset, "UNAVAILABLE", &e.to_string())),
            Err(_) => facts.gaps.push(gap(
                &dataset,
                "DEADLINE_EXCEEDED",
                &format!("no answer within {} ms", deadline.as_millis()),
            )),
        }
    }
    if followed.is_empty() {
        let message = facts
            .gaps
            .iter()
            .map(|g| format!("`{}` {}", g.dataset_id, g.message))
            .collect::<Vec<_>>()
            .join(", ");
        return Answer {
            facts,
            result: Err(GatewayError::SourcesUnavailable { message }),
        };
    }
    let gaps = facts.gaps.clone();
    Answer {
        facts,
        result: Ok(Payload::Subscribed {
            plan: followed,
            cursors,
            gaps,
        }),
    }
}

async fn consult(
    connector: &dyn Connector,
    operation: &ValidOperation,
) -> Result<SourceResult, liaison_connectors::ConnectorError> {
    match operation {
        ValidOperation::Search {
            query, page_size, ..
        } => {
            let found = connector.search(&to_query(query), *page_size).await?;
            report_skipped(connector, &found.skipped);
            Ok(SourceResult::Found(found.persons, found.gaps))
        }
        ValidOperation::Read {
            source_id, kinds, ..
        } => {
            let fetched = connector.fetch(source_id, kinds).await?;
            report_skipped(connector, &fetched.skipped);
            Ok(SourceResult::Fetched(
                fetched.person,
                fetched.records,
                fetched.gaps,
            ))
        }
        ValidOperation::Subscribe { .. } => Ok(SourceResult::Found(Vec::new(), Vec::new())),
    }
}

fn report_skipped(connector: &dyn Connector, skipped: &[liaison_connectors::RowProblem]) {
    for p in skipped {
        tracing::warn!(
            dataset = %connector.descriptor().id,
            source_id = %p.source_id,
            problem = %p.problem,
            "skipped a source row the mapping could not use"
        );
    }
}

fn to_query(q: &pb::PersonQuery) -> PersonQuery {
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    PersonQuery {
        given_name: text(&q.given_name),
        family_name: text(&q.family_name),
        date_of_birth: q.date_of_birth,
        postcode: text(&q.postcode),
        identifiers: q.identifiers.clone(),
    }
}

/// Scores matches, merges the same person found in several datasets by a
/// shared identifier, and keeps the best `limit`.
fn rank(
    query: &pb::PersonQuery,
    found: Vec<(String, pb::Person)>,
    limit: usize,
) -> Vec<pb::PersonMatch> {
    let mut matches: Vec<pb::PersonMatch> = Vec::new();
    for (_, person) in found {
        let confidence = confidence(query, &person);
        let duplicate = matches.iter_mut().find(|m| {
            m.person.as_ref().is_some_and(|p| {
                p.identifiers.iter().any(|a| {
                    !a.value.is_empty()
                        && a.scheme != pb::IdentifierScheme::Local as i32
                        && person
                            .identifiers
                            .iter()
                            .any(|b| a.scheme == b.scheme && a.value == b.value)
                })
            })
        });
        match duplicate {
            Some(m) => {
                m.also_known_as.push(person.person_id.clone());
                m.confidence = m.confidence.max(confidence);
            }
            None => matches.push(pb::PersonMatch {
                person: Some(person),
                confidence,
                also_known_as: Vec::new(),
            }),
        }
    }
    matches.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    matches.truncate(limit);
    matches
}

fn confidence(q: &pb::PersonQuery, p: &pb::Person) -> f32 {
    let identifier = q.identifiers.iter().any(|qi| {
        p.identifiers
            .iter()
            .any(|pi| pi.scheme == qi.scheme && normalise(&pi.value) == normalise(&qi.value))
    });
    if identifier {
        return 1.0;
    }
    let mut score: f32 = 0.5;
    if q.date_of_birth.is_some() && q.date_of_birth == p.date_of_birth {
        score += 0.3;
    }
    let postcode = normalise(&q.postcode);
    if !postcode.is_empty()
        && p.addresses
            .iter()
            .any(|a| normalise(&a.postcode) == postcode)
    {
        score += 0.15;
    }
    let given = q.given_name.trim().to_lowercase();
    if !given.is_empty()
        && p.names
            .iter()
            .any(|n| n.given_names.to_lowercase().starts_with(&given))
    {
        score += 0.05;
    }
    score.min(0.99)
}

fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

/// The share as a connector may pass it on (a peer gateway audits its own
/// half from it). The practitioner is the caller, unless the caller is a
/// system that said whom it acts for.
fn share_request(req: &Authorized) -> liaison_connectors::request::ShareRequest {
    let context = &req.validated.context;
    let principal = &req.validated.call.principal;
    let on_behalf_of = match &context.on_behalf_of {
        Some(o) if principal.is_system => o.clone(),
        _ => pb::OnBehalfOf {
            agency_id: principal.agency.clone(),
            subject: principal.subject.clone(),
            display_name: principal.label().to_owned(),
        },
    };
    liaison_connectors::request::ShareRequest {
        purpose: context.purpose.clone(),
        justification: context.justification.clone(),
        isa_id: context.isa_id.clone(),
        case_reference: context.case_reference.clone(),
        correlation_id: context.correlation_id.clone(),
        on_behalf_of,
    }
}

/// A gap's reason, from the values `SourceGap.reason` documents.
fn gap_reason(error: &liaison_connectors::ConnectorError) -> &'static str {
    use liaison_connectors::ConnectorError as E;
    match error {
        E::Declined { .. } => "DECLINED",
        E::DeadlineExceeded { .. } => "DEADLINE_EXCEEDED",
        E::CircuitOpen { .. } => "CIRCUIT_OPEN",
        _ => "UNAVAILABLE",
    }
}

fn gap(dataset: &str, reason: &str, message: &str) -> pb::SourceGap {
    pb::SourceGap {
        dataset_id: dataset.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use liaison_connectors::request::ShareRequest;
    use liaison_connectors::{
        BoxFuture as ConnectorFuture, Connector, ConnectorError, DatasetDescriptor, Fetched, Found,
        PersonQuery, Registry,
    };
    use liaison_policy::{Action, Decision, Effect};
    use liaison_proto::v1 as pb;
    use tower::ServiceExt;

    use super::*;
    use crate::identity::Principal;
    use crate::share::{Operation, ShareCall, validate::validate};

    /// A source that remembers the share it was asked in, and declines it
    /// if it is a peer told to.
    #[derive(Debug)]
    struct Declining {
        descriptor: DatasetDescriptor,
        decline: bool,
        seen: std::sync::OnceLock<Option<ShareRequest>>,
    }

    impl Connector for Declining {
        fn descriptor(&self) -> &DatasetDescriptor {
            &self.descriptor
        }

        fn search<'a>(
            &'a self,
            _query: &'a PersonQuery,
            _limit: usize,
        ) -> ConnectorFuture<'a, Result<Found, ConnectorError>> {
            let _ = self.seen.set(liaison_connectors::request::current());
            if !self.decline {
                return Box::pin(async { Ok(Found::default()) });
            }
            Box::pin(async {
                Err(ConnectorError::Declined {
                    dataset: "met.fed".into(),
                    agency: "met-police".into(),
                    reason: "PURPOSE_NOT_PERMITTED".into(),
                    message: "not for this purpose".into(),
                })
            })
        }

        fn fetch<'a>(
            &'a self,
            _source_id: &'a str,
            _kinds: &'a [pb::RecordKind],
        ) -> ConnectorFuture<'a, Result<Fetched, ConnectorError>> {
            Box::pin(async { Ok(Fetched::default()) })
        }
    }

    fn authorized(is_system: bool, on_behalf_of: Option<pb::OnBehalfOf>) -> Authorized {
        let validated = validate(ShareCall {
            principal: Arc::new(Principal {
                agency: "hackney-childrens".into(),
                subject: "sw-1".into(),
                display_name: Some("Sam Okoro".into()),
                roles: vec!["social-worker".into()],
                team: None,
                vetting: None,
                client_id: None,
                issuer: "https://idp".into(),
                is_system,
            }),
            method: "/liaison.v1.SharingService/SearchPersons",
            action: Action::Search,
            context: Some(pb::ShareContext {
                purpose: "safeguarding-children".into(),
                justification: "Section 47 enquiry after a school referral".into(),
                isa_id: "hackney-met".into(),
                on_behalf_of,
                ..Default::default()
            }),
            operation: Operation::Search {
                query: Some(pb::PersonQuery {
                    family_name: "Doyle".into(),
                    postcode: "N16 7AB".into(),
                    ..Default::default()
                }),
                dataset_ids: vec![],
                page_size: 0,
            },
            client_address: String::new(),
            trace_id: String::new(),
            deadline: None,
        })
        .unwrap();
        let allow = Arc::new(Decision {
            effect: Effect::Allow,
            deny: None,
            matched: vec![],
            mask: Default::default(),
            obligations: vec![],
            policy_version: "sha256:test".into(),
            isa_version: Some(1),
            legal_basis: None,
            break_glass: false,
            withheld: vec![],
        });
        Authorized {
            validated,
            plan: vec![
                ("met.fed".into(), allow.clone()),
                ("local".into(), allow.clone()),
                ("absent".into(), allow),
            ],
        }
    }

    #[tokio::test]
    async fn a_peer_sees_the_share_and_its_decline_is_a_named_gap() {
        let source = |id: &str, decline| {
            Arc::new(Declining {
                descriptor: DatasetDescriptor {
                    id: id.into(),
                    agency: "met-police".into(),
                    title: "t".into(),
                    system: "s".into(),
                    record_kinds: vec![],
                },
                decline,
                seen: std::sync::OnceLock::new(),
            })
        };
        let peer = source("met.fed", true);
        let mut registry = Registry::default();
        registry.insert(peer.clone()).unwrap();
        registry.insert(source("local", false)).unwrap();
        let req = authorized(false, None);
        let correlation = req.validated.context.correlation_id.clone();
        let answer = Fetch::new(Arc::new(registry), Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        let Ok(Payload::Search { matches, gaps }) = answer.result else {
            panic!("{:?}", answer.result)
        };
        assert!(matches.is_empty());
        let gaps: Vec<(&str, &str, &str)> = gaps
            .iter()
            .map(|g| (g.dataset_id.as_str(), g.reason.as_str(), g.message.as_str()))
            .collect();
        assert_eq!(
            gaps,
            vec![
                ("absent", "UNAVAILABLE", "no connector serves this dataset"),
                (
                    "met.fed",
                    "DECLINED",
                    "declined by met-police: PURPOSE_NOT_PERMITTED: not for this purpose"
                ),
            ]
        );
        let seen = peer.seen.get().cloned().flatten().unwrap();
        assert_eq!(seen.correlation_id, correlation);
        assert_eq!(seen.isa_id, "hackney-met");
        assert_eq!(
            seen.on_behalf_of,
            pb::OnBehalfOf {
                agency_id: "hackney-childrens".into(),
                subject: "sw-1".into(),
                display_name: "Sam Okoro".into(),
            }
        );
    }

    #[test]
    fn only_a_system_passes_on_whom_it_acts_for() {
        let practitioner = pb::OnBehalfOf {
            agency_id: "hackney-childrens".into(),
            subject: "sw-9".into(),
            display_name: "Ruth Adeyemi".into(),
        };
        let system = share_request(&authorized(true, Some(practitioner.clone())));
        assert_eq!(system.on_behalf_of, practitioner);
        // A person cannot name someone else as the one asking.
        let person = share_request(&authorized(false, Some(practitioner)));
        assert_eq!(person.on_behalf_of.subject, "sw-1");
    }

    /// A peer whose answer is missing one of its own sources.
    #[derive(Debug)]
    struct Partial(DatasetDescriptor);

    impl Connector for Partial {
        fn descriptor(&self) -> &DatasetDescriptor {
            &self.0
        }

        fn search<'a>(
            &'a self,
            _query: &'a PersonQuery,
            _limit: usize,
        ) -> ConnectorFuture<'a, Result<Found, ConnectorError>> {
            Box::pin(async {
                Ok(Found {
                    gaps: vec![liaison_connectors::PeerGap {
                        source: "met-police/met-police.custody".into(),
                        reason: "DEADLINE_EXCEEDED".into(),
                        message: "no answer within 2000 ms".into(),
                    }],
                    ..Found::default()
                })
            })
        }

        fn fetch<'a>(
            &'a self,
            _source_id: &'a str,
            _kinds: &'a [pb::RecordKind],
        ) -> ConnectorFuture<'a, Result<Fetched, ConnectorError>> {
            Box::pin(async { Ok(Fetched::default()) })
        }
    }

    fn descriptor(id: &str) -> DatasetDescriptor {
        DatasetDescriptor {
            id: id.into(),
            agency: "met-police".into(),
            title: "t".into(),
            system: "s".into(),
            record_kinds: vec![],
        }
    }

    #[tokio::test]
    async fn a_peers_own_gaps_join_the_answer_and_declined_everywhere_is_a_refusal() {
        let mut registry = Registry::default();
        registry
            .insert(Arc::new(Partial(descriptor("local"))))
            .unwrap();
        registry
            .insert(Arc::new(Declining {
                descriptor: descriptor("met.fed"),
                decline: true,
                seen: std::sync::OnceLock::new(),
            }))
            .unwrap();
        let registry = Arc::new(registry);

        // The peer answered, missing one of its sources: the answer says
        // so, and the peer's gap does not count as a failed dataset.
        let mut req = authorized(false, None);
        req.plan.retain(|(d, _)| d == "local");
        let answer = Fetch::new(registry.clone(), Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        let Ok(Payload::Search { gaps, .. }) = answer.result else {
            panic!("{:?}", answer.result)
        };
        let gaps: Vec<(&str, &str)> = gaps
            .iter()
            .map(|g| (g.dataset_id.as_str(), g.reason.as_str()))
            .collect();
        assert_eq!(
            gaps,
            [("met-police/met-police.custody", "DEADLINE_EXCEEDED")]
        );

        // Every source declined: a refusal saying so, not "unavailable".
        let mut req = authorized(false, None);
        req.plan.retain(|(d, _)| d == "met.fed");
        let answer = Fetch::new(registry, Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        let Err(GatewayError::SourcesDeclined { datasets, message }) = answer.result else {
            panic!("{:?}", answer.result)
        };
        assert_eq!(datasets, ["met.fed"]);
        assert!(message.contains("PURPOSE_NOT_PERMITTED"), "{message}");
    }

    /// A source whose every answer panics, as a connector might on data it
    /// did not expect.
    #[derive(Debug)]
    struct Panicking(DatasetDescriptor);

    impl Connector for Panicking {
        fn descriptor(&self) -> &DatasetDescriptor {
            &self.0
        }

        fn search<'a>(
            &'a self,
            _query: &'a PersonQuery,
            _limit: usize,
        ) -> ConnectorFuture<'a, Result<Found, ConnectorError>> {
            Box::pin(async { panic!("unexpected legacy row") })
        }

        fn fetch<'a>(
            &'a self,
            _source_id: &'a str,
            _kinds: &'a [pb::RecordKind],
        ) -> ConnectorFuture<'a, Result<Fetched, ConnectorError>> {
            Box::pin(async { panic!("unexpected legacy row") })
        }
    }

    #[tokio::test]
    async fn a_connector_that_panics_is_a_named_gap_alone_or_beside_others() {
        let mut registry = Registry::default();
        registry
            .insert(Arc::new(Panicking(descriptor("local"))))
            .unwrap();
        registry
            .insert(Arc::new(Declining {
                descriptor: descriptor("met.fed"),
                decline: false,
                seen: std::sync::OnceLock::new(),
            }))
            .unwrap();
        let registry = Arc::new(registry);

        // Alone (consulted on the share's own task): the share fails as
        // unavailable, naming the source and not the panic.
        let mut req = authorized(false, None);
        req.plan.retain(|(d, _)| d == "local");
        let answer = Fetch::new(registry.clone(), Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        let Err(GatewayError::SourcesUnavailable { message }) = &answer.result else {
            panic!("{:?}", answer.result)
        };
        assert_eq!(message, "`local` UNAVAILABLE");
        let messages: Vec<&str> = answer
            .facts
            .gaps
            .iter()
            .map(|g| g.message.as_str())
            .collect();
        assert_eq!(messages, ["the connector failed"]);

        // Beside a source that answers (a task each): a partial answer with
        // the panicking source as its gap.
        let mut req = authorized(false, None);
        req.plan.retain(|(d, _)| d != "absent");
        let answer = Fetch::new(registry, Duration::from_secs(2))
            .oneshot(req)
            .await
            .unwrap();
        let Ok(Payload::Search { gaps, .. }) = answer.result else {
            panic!("{:?}", answer.result)
        };
        let gaps: Vec<(&str, &str, &str)> = gaps
            .iter()
            .map(|g| (g.dataset_id.as_str(), g.reason.as_str(), g.message.as_str()))
            .collect();
        assert_eq!(gaps, [("local", "UNAVAILABLE", "the connector failed")]);
    }
}
