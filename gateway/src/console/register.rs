//! The register of information sharing agreements, as the policy the
//! gateway enforces holds them now: read-only, from the same policy handle
//! as `AdminService`, so the page cannot list an agreement the gateway
//! does not apply or miss one it does.

use askama::Template;
use axum::{
    extract::State,
    response::{Html, IntoResponse, Response},
};
use liaison_policy::{Agreement, AgreementStatus};
use time::{Date, OffsetDateTime};

use super::{
    ConsoleState,
    entries::{Nav, overseer},
    error::ConsoleError,
    guard::SignedIn,
};

/// Days before a review date from which it counts as falling due.
pub(super) const DUE_DAYS: i64 = 30;

#[derive(Template)]
#[template(path = "agreements.html", config = "src/console/askama.toml")]
struct RegisterPage<'a> {
    nav: Nav<'a>,
    rows: Vec<Row>,
    today: String,
    overdue: usize,
    due_days: i64,
}

/// One agreement in words.
#[derive(Debug)]
pub(super) struct Row {
    pub id: String,
    pub title: String,
    pub version: u32,
    pub status: &'static str,
    pub active: bool,
    pub provider: String,
    pub recipients: Vec<String>,
    pub purposes: Vec<String>,
    pub legal_basis: String,
    pub datasets: Vec<String>,
    pub valid: String,
    pub review: String,
    pub review_state: Review,
    pub dpo_contacts: Vec<String>,
    /// Whether the signed-in person's agency is a party.
    pub ours: bool,
}

/// Where an agreement's review date stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Review {
    Overdue,
    Due,
    Later,
    None,
}

impl Row {
    fn new(a: &Agreement, today: Date, agency: &str, name: impl Fn(&str) -> String) -> Self {
        let review_state = match a.review_date {
            Some(d) if d < today => Review::Overdue,
            Some(d) if d <= today + time::Duration::days(DUE_DAYS) => Review::Due,
            Some(_) => Review::Later,
            None => Review::None,
        };
        Self {
            id: a.id.clone(),
            title: a.title.clone(),
            version: a.version,
            status: match a.status {
                AgreementStatus::Draft => "Draft",
                AgreementStatus::Active => "Active",
                AgreementStatus::Suspended => "Suspended",
                AgreementStatus::Expired => "Expired",
            },
            active: a.status == AgreementStatus::Active,
            provider: name(&a.provider),
            recipients: a.recipients.iter().map(|r| name(r)).collect(),
            purposes: a.purposes.clone(),
            legal_basis: a.legal_basis.clone(),
            datasets: a.datasets.iter().map(|d| d.dataset.clone()).collect(),
            valid: match a.valid_until {
                Some(u) => format!("{} to {u}", a.valid_from),
                None => format!("from {}", a.valid_from),
            },
            review: a.review_date.map(|d| d.to_string()).unwrap_or_default(),
            review_state,
            dpo_contacts: a.dpo_contacts.clone(),
            ours: a.provider == agency || a.recipients.iter().any(|r| r == agency),
        }
    }

    pub fn overdue(&self) -> bool {
        self.review_state == Review::Overdue
    }

    pub fn due(&self) -> bool {
        self.review_state == Review::Due
    }
}

/// The register's rows: overdue reviews first, then those falling due,
/// then by agreement id.
pub(super) fn rows<'a>(
    agreements: impl Iterator<Item = &'a Agreement>,
    today: Date,
    agency: &str,
    name: impl Fn(&str) -> String,
) -> Vec<Row> {
    let mut rows: Vec<Row> = agreements
        .map(|a| Row::new(a, today, agency, &name))
        .collect();
    rows.sort_by(|a, b| {
        a.review_state
            .cmp(&b.review_state)
            .then_with(|| a.review.cmp(&b.review))
            .then_with(|| a.id.cmp(&b.id))
    });
    rows
}

/// `GET /console/agreements`.
pub(super) async fn register(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
) -> Result<Response, ConsoleError> {
    let principal = overseer(&signed_in)?;
    let engine = state
        .policy
        .as_ref()
        .ok_or_else(|| ConsoleError::internal("the console was started without the policy"))?
        .borrow()
        .clone();
    let today = OffsetDateTime::now_utc().date();
    let rows = rows(engine.agreements(), today, &principal.agency, |id| {
        state.agency_name(id).to_owned()
    });
    let page = RegisterPage {
        nav: state.nav(&signed_in, "agreements"),
        overdue: rows.iter().filter(|r| r.overdue()).count(),
        rows,
        today: today.to_string(),
        due_days: DUE_DAYS,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}
