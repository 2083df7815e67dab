//! Validate: every share states a purpose, a justification and the
//! agreement it relies on, and asks a well-formed, specific question. A
//! malformed share is refused `INVALID_ARGUMENT` naming the field, before
//! policy or any source is consulted.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use liaison_proto::v1 as pb;
use tower::{Layer, Service};

use super::{
    Answer, BoxFuture, Operation, Resume, ShareCall, ShareContext, ValidOperation, Validated,
};
use crate::error::GatewayError;

/// Shortest justification accepted: enough for a sentence, so "n/a" or
/// "test" is refused.
pub const MIN_JUSTIFICATION_CHARS: usize = 10;
/// Longest justification kept.
pub const MAX_JUSTIFICATION_CHARS: usize = 2_000;
/// Shortest break-glass reason accepted: a DPO reviewing the share must be
/// able to tell from it why the normal route could not wait.
pub const MIN_BREAK_GLASS_REASON_CHARS: usize = 20;
/// Largest page a search returns.
pub const MAX_PAGE_SIZE: usize = 100;
/// Most people one subscription follows: a subscription is for the people
/// in a caller's open cases, not a way to mirror a dataset.
pub const MAX_FOLLOWED: usize = 100;
const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_SHORT_FIELD: usize = 200;

/// Adds the validation stage.
#[derive(Debug, Clone, Default)]
pub struct ValidateLayer;

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Validate { inner }
    }
}

/// The validation stage.
#[derive(Debug, Clone)]
pub struct Validate<S> {
    inner: S,
}

impl<S> Service<ShareCall> for Validate<S>
where
    S: Service<Validated, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFuture<Result<Answer, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ShareCall) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let validated = match tracing::debug_span!("validate").in_scope(|| validate(call)) {
                Ok(v) => v,
                Err(e) => return Ok(Answer::refused(e)),
            };
            let context = validated.context.clone();
            let mut answer = inner.call(validated).await?;
            answer.facts.context = Some(context);
            Ok(answer)
        })
    }
}

/// Validates a call into a [`Validated`] share.
pub fn validate(call: ShareCall) -> Result<Validated, GatewayError> {
    let context = ShareContext::try_from(call.context.clone().unwrap_or_default())?;
    let operation = match &call.operation {
        Operation::Search {
            query,
            dataset_ids,
            page_size,
        } => {
            let query = query.clone().ok_or(GatewayError::QueryTooBroad)?;
            check_query(&query)?;
            let page_size = match *page_size {
                0 => DEFAULT_PAGE_SIZE,
                n if n < 0 => return Err(bad("page_size", "must not be negative")),
                n => usize::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_PAGE_SIZE)
                    .ok_or_else(|| bad("page_size", "must be at most 100"))?,
            };
            for id in dataset_ids {
                short("dataset_ids", id)?;
            }
            ValidOperation::Search {
                query,
                dataset_ids: dataset_ids.clone(),
                page_size,
            }
        }
        Operation::Read { person_id, kinds } => {
            short("person_id", person_id)?;
            let (dataset_id, source_id) = split_person_id(person_id, "person_id")?;
            let kinds = kinds
                .iter()
                .map(|k| {
                    pb::RecordKind::try_from(*k)
                        .ok()
                        .filter(|k| *k != pb::RecordKind::Unspecified)
                        .ok_or_else(|| bad("kinds", &format!("`{k}` is not a record kind")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            ValidOperation::Read {
                dataset_id: dataset_id.to_owned(),
                source_id: source_id.to_owned(),
                person_id: person_id.clone(),
                kinds,
            }
        }
        Operation::Subscribe { person_ids, resume } => {
            if person_ids.is_empty() {
                return Err(bad("person_ids", "name at least one person to follow"));
            }
            if person_ids.len() > MAX_FOLLOWED {
                return Err(bad("person_ids", "at most 100 people per subscription"));
            }
            let mut persons = std::collections::BTreeMap::<_, std::collections::BTreeSet<_>>::new();
            for id in person_ids {
                short("person_ids", id)?;
                let (dataset_id, source_id) = split_person_id(id, "person_ids")?;
                persons
                    .entry(dataset_id.to_owned())
                    .or_default()
                    .insert(source_id.to_owned());
            }
            let cursors = match resume {
                Resume::Now => Default::default(),
                Resume::From(cursor) => cursor.datasets().clone(),
                Resume::Forged(why) => return Err(bad("resume_cursor", why)),
            };
            ValidOperation::Subscribe { persons, cursors }
        }
    };
    Ok(Validated {
        call,
        context,
        operation,
    })
}

impl TryFrom<pb::ShareContext> for ShareContext {
    type Error = GatewayError;

    fn try_from(c: pb::ShareContext) -> Result<Self, GatewayError> {
        let purpose = c.purpose.trim();
        if purpose.is_empty() {
            return Err(GatewayError::ContextMissing {
                field: "context.purpose",
                reason: "PURPOSE_MISSING",
            });
        }
        short("context.purpose", purpose)?;
        let justification = c.justification.trim();
        if justification.chars().count() < MIN_JUSTIFICATION_CHARS {
            return Err(GatewayError::ContextMissing {
                field: "context.justification",
                reason: "JUSTIFICATION_MISSING",
            });
        }
        if justification.chars().count() > MAX_JUSTIFICATION_CHARS {
            return Err(bad(
                "context.justification",
                "must be at most 2000 characters",
            ));
        }
        let isa_id = c.isa_id.trim();
        if isa_id.is_empty() {
            return Err(GatewayError::ContextMissing {
                field: "context.isa_id",
                reason: "ISA_MISSING",
            });
        }
        short("context.isa_id", isa_id)?;
        short("context.case_reference", &c.case_reference)?;
        short("context.correlation_id", &c.correlation_id)?;
        if let Some(o) = &c.on_behalf_of {
            short("context.on_behalf_of.agency_id", &o.agency_id)?;
            short("context.on_behalf_of.subject", &o.subject)?;
            short("context.on_behalf_of.display_name", &o.display_name)?;
        }
        let break_glass = match &c.break_glass {
            None => None,
            Some(b) => {
                let reason = b.reason.trim();
                if reason.chars().count() < MIN_BREAK_GLASS_REASON_CHARS {
                    return Err(GatewayError::ContextMissing {
                        field: "context.break_glass.reason",
                        reason: "BREAK_GLASS_REASON_MISSING",
                    });
                }
                if reason.chars().count() > MAX_JUSTIFICATION_CHARS {
                    return Err(bad(
                        "context.break_glass.reason",
                        "must be at most 2000 characters",
                    ));
                }
                Some(reason.to_owned())
            }
        };
        let correlation_id = if c.correlation_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            c.correlation_id.clone()
        };
        Ok(Self {
            purpose: purpose.to_owned(),
            justification: justification.to_owned(),
            isa_id: isa_id.to_owned(),
            case_reference: c.case_reference.trim().to_owned(),
            on_behalf_of: c.on_behalf_of,
            correlation_id,
            break_glass,
        })
    }
}

/// A search must be able to single a person out: an identifier, or a
/// family name with a date of birth or postcode. Anything broader is a
/// fishing expedition no agreement permits.
fn check_query(q: &pb::PersonQuery) -> Result<(), GatewayError> {
    short("query.given_name", &q.given_name)?;
    short("query.family_name", &q.family_name)?;
    short("query.postcode", &q.postcode)?;
    if q.identifiers.len() > 10 {
        return Err(bad("query.identifiers", "at most 10 identifiers"));
    }
    for id in &q.identifiers {
        short("query.identifiers.value", &id.value)?;
    }
    if let Some(d) = &q.date_of_birth
        && (time::Date::from_calendar_date(
            d.year,
            u8::try_from(d.month)
                .ok()
                .and_then(|m| time::Month::try_from(m).ok())
                .unwrap_or(time::Month::January),
            u8::try_from(d.day).unwrap_or(0),
        )
        .is_err()
            || !(1..=12).contains(&d.month))
    {
        return Err(bad("query.date_of_birth", "is not a calendar date"));
    }
    let has_identifier = q.identifiers.iter().any(|i| !i.value.trim().is_empty());
    let has_name = !q.family_name.trim().is_empty();
    let has_anchor = q.date_of_birth.is_some() || !q.postcode.trim().is_empty();
    if has_identifier || (has_name && has_anchor) {
        Ok(())
    } else {
        Err(GatewayError::QueryTooBroad)
    }
}

/// Splits a person reference into its dataset and source id.
fn split_person_id<'a>(id: &'a str, field: &str) -> Result<(&'a str, &'a str), GatewayError> {
    id.split_once(':')
        .filter(|(d, s)| !d.is_empty() && !s.is_empty())
        .ok_or_else(|| bad(field, "must be a reference from a search, `<dataset>:<id>`"))
}

fn short(field: &str, value: &str) -> Result<(), GatewayError> {
    if value.chars().count() > MAX_SHORT_FIELD {
        Err(bad(field, "must be at most 200 characters"))
    } else {
        Ok(())
    }
}

fn bad(field: &str, message: &str) -> GatewayError {
    GatewayError::InvalidField {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
