//! Fetch: ask every allowed dataset's connector in parallel, each under a
//! deadline. A source that is slow or fails becomes a named gap in a partial
//! answer, never a hang; only when every source fails is the share failed.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

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
    Found(Vec<pb::Person>),
    Fetched(Option<pb::Person>, Vec<pb::Record>),
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
    let mut tasks = JoinSet::new();
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
        let span = tracing::info_span!("fetch", dataset = %dataset);
        tasks.spawn(
            async move {
                // The connector's source joins this span's trace.
                let parent = crate::telemetry::current_trace_parent();
                let started = std::time::Instant::now();
                let consulted =
                    tokio::time::timeout(deadline, consult(connector.as_ref(), &operation));
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
        );
    }
    let mut found = Vec::new();
    let mut person = None;
    let mut records = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (dataset, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "connector task failed");
                continue;
            }
        };
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
                    .push(gap(&dataset, "UNAVAILABLE", &e.to_string()));
            }
            Ok(Ok(SourceResult::Found(persons))) => {
                found.extend(persons.into_iter().map(|p| (dataset.clone(), p)));
            }
            Ok(Ok(SourceResult::Fetched(p, r))) => {
                person = p.or(person);
                records.extend(r);
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
        return Answer {
            facts,
            result: Err(GatewayError::SourcesUnavailable { message }),
        };
    }
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
            .instrument(tracing::info_span!("fetch", dataset = %dataset))
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
            Ok(SourceResult::Found(found.persons))
        }
        ValidOperation::Read {
            source_id, kinds, ..
        } => {
            let fetched = connector.fetch(source_id, kinds).await?;
            report_skipped(connector, &fetched.skipped);
            Ok(SourceResult::Fetched(fetched.person, fetched.records))
        }
        ValidOperation::Subscribe { .. } => Ok(SourceResult::Found(Vec::new())),
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

fn gap(dataset: &str, reason: &str, message: &str) -> pb::SourceGap {
    pb::SourceGap {
        dataset_id: dataset.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
    }
}
