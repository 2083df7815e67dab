//! s.45 restrictions from an entry's page.
//!
//! ```text
//! POST /console/entries/{id}/restrict   until (a date) + reason: withhold from reports
//! POST /console/entries/{id}/lift       reason: report it again
//! ```
//!
//! The rules and the record are [`crate::restriction`]'s, shared with the
//! API and the command line; here only the form is read and the answer
//! drawn. An attempt on an entry this DPO's agency is not party to is
//! recorded as refused, as a review's is.

use axum::{
    Form,
    extract::{Path, State, rejection::FormRejection},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use time::{OffsetDateTime, Time};

use super::{
    ConsoleState,
    entries::{day, gateway_error, overseer},
    error::ConsoleError,
    guard::SignedIn,
    oversee::{self, Look},
};
use crate::{error::GatewayError, restriction, services::oversight};

/// The restriction form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RestrictForm {
    /// `YYYY-MM-DD`: the first day the entry is reported again.
    until: String,
    reason: String,
}

/// The lift form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LiftForm {
    reason: String,
}

/// `POST /console/entries/{id}/restrict`.
pub(super) async fn restrict(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<RestrictForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let principal = overseer(&signed_in)?;
    let Form(form) = form.map_err(|e| ConsoleError::BadRequest {
        message: format!("the restriction form is malformed: {}", e.body_text()),
    })?;
    let until = day("until", &form.until)?
        .ok_or_else(|| ConsoleError::BadRequest {
            message: "give the date from which the entry may be reported again".into(),
        })?
        .with_time(Time::MIDNIGHT)
        .assume_utc();
    let seq = party_seq(&state, principal, &id, "/console/entries/{id}/restrict").await?;
    restriction::restrict(
        state.ledger()?,
        principal,
        "/console/entries/{id}/restrict",
        seq,
        until,
        &form.reason,
        OffsetDateTime::now_utc(),
    )
    .await
    .map_err(console_error)?;
    Ok(Redirect::to(&format!("/console/entries/{id}#restriction")).into_response())
}

/// `POST /console/entries/{id}/lift`.
pub(super) async fn lift(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<LiftForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let principal = overseer(&signed_in)?;
    let Form(form) = form.map_err(|e| ConsoleError::BadRequest {
        message: format!("the lift form is malformed: {}", e.body_text()),
    })?;
    let seq = party_seq(&state, principal, &id, "/console/entries/{id}/lift").await?;
    restriction::lift(
        state.ledger()?,
        principal,
        "/console/entries/{id}/lift",
        seq,
        &form.reason,
    )
    .await
    .map_err(console_error)?;
    Ok(Redirect::to(&format!("/console/entries/{id}#restriction")).into_response())
}

/// The position of entry `id` if the DPO's agency is party to it; an
/// attempt on any other is recorded and answered 404.
async fn party_seq(
    state: &ConsoleState,
    principal: &crate::identity::Principal,
    id: &str,
    method: &'static str,
) -> Result<u64, ConsoleError> {
    restriction::may_restrict(principal).map_err(console_error)?;
    let ledger = state.ledger()?;
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let stored = if well_formed {
        ledger
            .get(id)
            .await
            .map_err(|e| gateway_error(oversight::ledger_fault(e)))?
            .filter(|e| oversight::visible(principal, e))
    } else {
        None
    };
    match stored {
        Some(e) => Ok(e.seq),
        None => {
            oversee::record(
                ledger,
                principal,
                Look {
                    method,
                    what: "restriction of an entry not found or not visible".into(),
                    target: if well_formed {
                        id.to_owned()
                    } else {
                        String::new()
                    },
                    refused: Some("NOT_FOUND"),
                },
            )
            .await?;
            Err(ConsoleError::NotFound {
                what: "this audit entry".into(),
            })
        }
    }
}

/// A refusal from the shared rules in the console's terms.
fn console_error(e: GatewayError) -> ConsoleError {
    match e {
        GatewayError::InvalidField { field, message } => ConsoleError::BadRequest {
            message: format!("the {field}: {message}"),
        },
        GatewayError::FunctionNotPermitted { message } => ConsoleError::Forbidden { message },
        GatewayError::NotFound { .. } => ConsoleError::NotFound {
            what: "this audit entry".into(),
        },
        other => gateway_error(other),
    }
}
