//! The ledger as a DPO reads it: search, one entry with its inclusion
//! proof checked here on the server, and the subject access report.
//!
//! ```text
//! GET  /console/entries            search by non-personal filters (in the URL)
//! POST /console/entries            search, person filter allowed (in the body)
//! GET  /console/entries/{id}       one entry, its decision and its proof
//! GET  /console/subject            the subject access report form
//! POST /console/subject            every disclosure about one person
//! ```
//!
//! A person's identifier never travels in a URL, where proxies, history and
//! logs would keep it: a GET that names one is refused, not obeyed.
//! Every page reads the ledger with the same visibility rule as the
//! `OversightService`, so the console shows nothing the API would not.

use std::sync::Arc;

use askama::Template;
use axum::{
    Form,
    extract::{
        Path, Query, State,
        rejection::{FormRejection, QueryRejection},
    },
    response::{Html, IntoResponse, Response},
};
use liaison_ledger::{EntryFilter, Ledger, Order, Restriction, StoredEntry, merkle};
use liaison_proto::v1 as pb;
use serde::Deserialize;
use time::{Date, OffsetDateTime, Time, macros::format_description};

use super::{
    ConsoleState,
    dashboard::ReviewNote,
    error::ConsoleError,
    guard::SignedIn,
    oversee::{self, Look},
    record::{OUTCOMES, Record, outcome_words, rfc3339},
    review,
};
use crate::{
    error::GatewayError,
    identity::Principal,
    restriction,
    services::oversight::{self, OVERSIGHT_ROLES},
};

/// Entries on one page of results.
pub(super) const PAGE: usize = 50;
/// Entries a page reads at most when the dataset filter, which the
/// ledger's index does not hold, leaves it short; the page then offers a
/// "next" that carries on from where the reading stopped.
const PAGE_SCAN: usize = 5_000;
/// Longest filter value accepted.
const MAX_FILTER_LEN: usize = 200;

/// The search form, from the query string or a form body. Every field is
/// optional; an empty field filters nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct Search {
    /// The receiving agency.
    pub agency: String,
    /// The providing agency: whose data was shared.
    pub provider: String,
    /// `on` for break-glass shares only.
    pub break_glass: String,
    /// The user who asked (their id at their provider).
    pub user: String,
    pub purpose: String,
    pub isa: String,
    pub dataset: String,
    /// A person's identifier: only from a form body.
    pub subject: String,
    pub outcome: String,
    /// First day, `YYYY-MM-DD`, inclusive.
    pub from: String,
    /// Last day, `YYYY-MM-DD`, inclusive.
    pub until: String,
    /// `newest` (default) or `oldest`.
    pub order: String,
    /// The keyset cursor: the last sequence number of the previous page.
    pub after: String,
    /// The export format, for the export routes.
    pub format: String,
}

/// A validated search.
#[derive(Debug, Clone)]
pub(super) struct Criteria {
    pub filter: EntryFilter,
    pub dataset: Option<String>,
    pub after: Option<u64>,
}

/// A page of entries and where the next one starts.
pub(super) struct Found {
    pub records: Vec<Record>,
    pub next: Option<u64>,
}

/// A hidden form field (or query parameter) that carries a filter onward.
pub(super) struct Field {
    pub name: &'static str,
    pub value: String,
}

/// A row of the results table.
struct Row {
    id: String,
    when: String,
    who: String,
    agency: String,
    provider: String,
    break_glass: bool,
    purpose: String,
    isa: String,
    datasets: String,
    outcome: &'static str,
    denied: bool,
    people: usize,
}

#[derive(Template)]
#[template(path = "entries.html", config = "src/console/askama.toml")]
struct EntriesPage<'a> {
    nav: Nav<'a>,
    search: &'a Search,
    outcomes: Vec<(&'static str, &'static str)>,
    rows: Vec<Row>,
    /// Whether the search came by form body, so onward links must too.
    post: bool,
    fields: Vec<Field>,
    next: Option<String>,
    searched: bool,
}

#[derive(Template)]
#[template(path = "entry.html", config = "src/console/askama.toml")]
struct EntryPage<'a> {
    nav: Nav<'a>,
    r: &'a Record,
    agency: &'a str,
    recipient: &'a str,
    provider: &'a str,
    datasets: String,
    verdict: Verdict,
    reviews: Vec<ReviewNote>,
    may_review: bool,
    min_note: usize,
    /// The s.45 restriction on this entry, in force or ended but not lifted.
    restriction: Option<RestrictionView>,
    /// Whether this DPO may restrict or lift: a `dpo` of a party, on an
    /// entry that disclosed something.
    may_restrict: bool,
    /// The earliest date a restriction may run to, `YYYY-MM-DD`.
    tomorrow: String,
    min_reason: usize,
}

/// A restriction as the entry page and the report show it.
pub(super) struct RestrictionView {
    pub until: String,
    pub reason: String,
    pub by: String,
    pub agency: String,
    pub at: String,
    pub entry_id: String,
    pub in_force: bool,
}

#[derive(Template)]
#[template(path = "subject.html", config = "src/console/askama.toml")]
struct SubjectPage<'a> {
    nav: Nav<'a>,
    person: &'a str,
    rows: Vec<SubjectRow>,
    /// Restricted disclosures: shown to the DPO, never printed.
    withheld: Vec<(SubjectRow, RestrictionView)>,
    generated: String,
    asked: bool,
}

struct SubjectRow {
    when: String,
    agency: String,
    user: String,
    purpose: String,
    isa: String,
    legal_basis: String,
    fields: String,
    entry_id: String,
}

/// What every signed-in page's header shows.
pub(super) struct Nav<'a> {
    pub name: &'a str,
    pub agency_name: &'a str,
    pub csrf: &'a str,
    pub current: &'static str,
}

/// Whether an entry's inclusion proof checked out, in words.
pub(super) struct Verdict {
    pub verified: bool,
    pub summary: String,
    pub detail: String,
}

impl Search {
    /// The filters as the ledger takes them, limited to what `principal`
    /// may see.
    pub fn criteria(&self, principal: &Principal) -> Result<Criteria, ConsoleError> {
        let text = |name: &str, value: &str| -> Result<Option<String>, ConsoleError> {
            let value = value.trim();
            if value.chars().count() > MAX_FILTER_LEN {
                return Err(ConsoleError::BadRequest {
                    message: format!(
                        "the {name} filter is longer than {MAX_FILTER_LEN} characters"
                    ),
                });
            }
            Ok(Some(value.to_owned()).filter(|v| !v.is_empty()))
        };
        let outcome = text("outcome", &self.outcome)?;
        if let Some(o) = &outcome
            && !OUTCOMES.contains(&o.as_str())
        {
            return Err(ConsoleError::BadRequest {
                message: format!("`{o}` is not an outcome the ledger records"),
            });
        }
        let from = day("from", &self.from)?;
        let until = day("until", &self.until)?.and_then(|d| d.next_day());
        let order = match self.order.trim() {
            "" | "newest" => Order::NewestFirst,
            "oldest" => Order::OldestFirst,
            other => {
                return Err(ConsoleError::BadRequest {
                    message: format!("`{other}` is not an order; use `newest` or `oldest`"),
                });
            }
        };
        let after = match self.after.trim() {
            "" => None,
            a => Some(a.parse::<u64>().map_err(|_| ConsoleError::BadRequest {
                message: "the page cursor is not one this console gave".into(),
            })?),
        };
        let break_glass = match self.break_glass.trim() {
            "" => None,
            "on" => Some(true),
            other => {
                return Err(ConsoleError::BadRequest {
                    message: format!("`{other}` is not a break-glass filter; use `on`"),
                });
            }
        };
        Ok(Criteria {
            filter: EntryFilter {
                recipient: text("agency", &self.agency)?,
                provider: text("providing agency", &self.provider)?,
                break_glass,
                subject: text("user", &self.user)?,
                purpose: text("purpose", &self.purpose)?,
                isa_id: text("ISA", &self.isa)?,
                subject_ref: text("person", &self.subject)?,
                outcome,
                from: from.map(|d| d.with_time(Time::MIDNIGHT).assume_utc()),
                until: until.map(|d| d.with_time(Time::MIDNIGHT).assume_utc()),
                order,
                ..oversight::visible_filter(principal)
            },
            dataset: text("dataset", &self.dataset)?,
            after,
        })
    }

    /// The filters to carry onward (to the next page or an export), without
    /// the cursor and format.
    pub fn fields(&self) -> Vec<Field> {
        [
            ("agency", &self.agency),
            ("provider", &self.provider),
            ("break_glass", &self.break_glass),
            ("user", &self.user),
            ("purpose", &self.purpose),
            ("isa", &self.isa),
            ("dataset", &self.dataset),
            ("subject", &self.subject),
            ("outcome", &self.outcome),
            ("from", &self.from),
            ("until", &self.until),
            ("order", &self.order),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(name, v)| Field {
            name,
            value: v.trim().to_owned(),
        })
        .collect()
    }

    fn names_a_person(&self) -> bool {
        !self.subject.trim().is_empty()
    }

    fn is_empty(&self) -> bool {
        self.fields().is_empty() && self.after.trim().is_empty()
    }
}

pub(super) fn day(name: &str, value: &str) -> Result<Option<Date>, ConsoleError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    Date::parse(value, format_description!("[year]-[month]-[day]"))
        .map(Some)
        .map_err(|_| ConsoleError::BadRequest {
            message: format!("the {name} date `{value}` is not a date like 2026-03-31"),
        })
}

/// Reads up to `limit` matching entries, reading at most `scan` entries
/// from the ledger. Filters the index holds are applied by the database
/// with keyset pagination; the dataset filter is applied to each decoded
/// entry.
pub(super) async fn find(
    ledger: &Ledger,
    criteria: &Criteria,
    limit: usize,
    scan: usize,
) -> Result<Found, ConsoleError> {
    let mut records = Vec::new();
    let mut after = criteria.after;
    let mut scanned = 0usize;
    loop {
        let want = if criteria.dataset.is_some() {
            liaison_ledger::MAX_PAGE
        } else {
            u32::try_from(limit.saturating_sub(records.len())).unwrap_or(liaison_ledger::MAX_PAGE)
        };
        let page = ledger
            .list(&criteria.filter, want, after)
            .await
            .map_err(|e| gateway_error(oversight::ledger_fault(e)))?;
        let exhausted = page.len() < usize::try_from(want).unwrap_or(usize::MAX);
        for stored in &page {
            after = Some(stored.seq);
            scanned += 1;
            let record = Record::new(stored, oversight::decode(stored).map_err(gateway_error)?);
            if let Some(d) = &criteria.dataset
                && !record.datasets().contains(&d.as_str())
            {
                continue;
            }
            records.push(record);
            if records.len() >= limit {
                return Ok(Found {
                    records,
                    next: after,
                });
            }
        }
        if exhausted {
            return Ok(Found {
                records,
                next: None,
            });
        }
        if scanned >= scan {
            return Ok(Found {
                records,
                next: after,
            });
        }
    }
}

/// The gateway's error in the console's terms.
pub(super) fn gateway_error(e: GatewayError) -> ConsoleError {
    match e {
        GatewayError::AuditUnavailable => ConsoleError::LedgerUnavailable,
        other => ConsoleError::internal(other),
    }
}

/// The signed-in person, if they hold an oversight role: the console's
/// `[console] roles` decide who signs in, this decides who reads the
/// ledger, and it is the API's rule.
pub(super) fn overseer(signed_in: &SignedIn) -> Result<&Principal, ConsoleError> {
    let p = &*signed_in.principal;
    if OVERSIGHT_ROLES.iter().any(|r| p.has_role(r)) {
        Ok(p)
    } else {
        Err(ConsoleError::Forbidden {
            message: "reading the audit ledger needs the `dpo` or `auditor` role".into(),
        })
    }
}

impl ConsoleState {
    /// The ledger the oversight pages read.
    pub(super) fn ledger(&self) -> Result<&Arc<Ledger>, ConsoleError> {
        self.ledger.as_ref().ok_or(ConsoleError::LedgerUnavailable)
    }

    /// An agency's display name, or its id.
    pub(super) fn agency_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.inner.agencies.get(id).map_or(id, String::as_str)
    }

    pub(super) fn nav<'a>(&'a self, signed_in: &'a SignedIn, current: &'static str) -> Nav<'a> {
        let p = &signed_in.principal;
        Nav {
            name: p.label(),
            agency_name: self.agency_name(&p.agency),
            csrf: &signed_in.csrf_token,
            current,
        }
    }
}

/// `GET /console/entries`: a search by filters that name no person.
pub(super) async fn search_get(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    query: Result<Query<Search>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(search) = query.map_err(|e| ConsoleError::BadRequest {
        message: format!("the search is malformed: {}", e.body_text()),
    })?;
    if search.names_a_person() {
        return Err(person_in_url());
    }
    search_page(&state, &signed_in, &search, false).await
}

/// `POST /console/entries`: a search that may name a person.
pub(super) async fn search_post(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    form: Result<Form<Search>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Form(search) = form.map_err(|e| ConsoleError::BadRequest {
        message: format!("the search is malformed: {}", e.body_text()),
    })?;
    search_page(&state, &signed_in, &search, true).await
}

pub(super) fn person_in_url() -> ConsoleError {
    ConsoleError::BadRequest {
        message: "a person filter must be sent from the search form, never in the address".into(),
    }
}

async fn search_page(
    state: &ConsoleState,
    signed_in: &SignedIn,
    search: &Search,
    post: bool,
) -> Result<Response, ConsoleError> {
    let principal = overseer(signed_in)?;
    let criteria = search.criteria(principal)?;
    let ledger = state.ledger()?;
    let found = find(ledger, &criteria, PAGE, PAGE_SCAN).await?;
    let mut what = format!(
        "ledger search ({}); {} entries shown",
        oversee::describe(&search.fields()),
        found.records.len()
    );
    if let Some(after) = criteria.after {
        what.push_str(&format!(" after entry {after}"));
    }
    oversee::record(ledger, principal, Look::answered("/console/entries", what)).await?;
    let rows = found
        .records
        .iter()
        .map(|r| Row {
            id: r.entry_id.clone(),
            when: r.recorded_at.clone(),
            who: r.who().to_owned(),
            agency: state.agency_name(&r.recipient_agency).to_owned(),
            provider: state.agency_name(&r.provider_agency).to_owned(),
            break_glass: r.break_glass.is_some(),
            purpose: r.purpose.clone(),
            isa: r.isa_id.clone(),
            datasets: r.datasets().join(", "),
            outcome: r.outcome_words(),
            denied: r.outcome == "denied",
            people: r.people().len(),
        })
        .collect();
    let page = EntriesPage {
        nav: state.nav(signed_in, "entries"),
        search,
        outcomes: OUTCOMES.iter().map(|o| (*o, outcome_words(o))).collect(),
        rows,
        post,
        fields: search.fields(),
        next: found.next.map(|n| n.to_string()),
        searched: post || !search.is_empty(),
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}

/// `GET /console/entries/{id}`: one entry in full, with its inclusion
/// proof checked.
pub(super) async fn entry(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let principal = overseer(&signed_in)?;
    let ledger = state.ledger()?;
    let not_found = || ConsoleError::NotFound {
        what: "this audit entry".into(),
    };
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let stored = if well_formed {
        ledger
            .get(&id)
            .await
            .map_err(|e| gateway_error(oversight::ledger_fault(e)))?
            .filter(|e| oversight::visible(principal, e))
    } else {
        None
    };
    // An attempt on an entry this DPO may not see is recorded as refused,
    // so probing for other agencies' entry ids leaves a trace.
    let look = Look {
        method: "/console/entries/{id}",
        what: format!(
            "entry view{}",
            if stored.is_some() {
                ""
            } else {
                "; not found or not visible"
            }
        ),
        target: if well_formed {
            id.clone()
        } else {
            String::new()
        },
        refused: stored.is_none().then_some("NOT_FOUND"),
    };
    oversee::record(ledger, principal, look).await?;
    let stored = stored.ok_or_else(not_found)?;
    let record = Record::new(&stored, oversight::decode(&stored).map_err(gateway_error)?);
    let verdict = check_inclusion(ledger, &stored).await?;
    let reviews = review::reviews_of(
        ledger,
        oversight::visible_filter(principal),
        &record.entry_id,
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    let restriction = ledger
        .restrictions(&[stored.seq])
        .await
        .map_err(|e| gateway_error(oversight::ledger_fault(e)))?
        .remove(&stored.seq)
        .map(|r| RestrictionView::new(&state, &r, now));
    let page = EntryPage {
        reviews,
        may_review: review::may_review(principal),
        min_note: review::MIN_NOTE_CHARS,
        restriction,
        may_restrict: restriction::may_restrict(principal).is_ok()
            && !record.disclosures.is_empty(),
        tomorrow: (now.date() + time::Duration::days(1)).to_string(),
        min_reason: restriction::MIN_REASON_CHARS,
        provider: state.agency_name(&record.provider_agency),
        nav: state.nav(&signed_in, "entries"),
        datasets: record.datasets().join(", "),
        agency: state.agency_name(&record.agency),
        recipient: state.agency_name(&record.recipient_agency),
        r: &record,
        verdict,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}

impl RestrictionView {
    pub(super) fn new(state: &ConsoleState, r: &Restriction, now: OffsetDateTime) -> Self {
        Self {
            until: rfc3339(r.until),
            reason: r.reason.clone(),
            by: r.restricted_by.clone(),
            agency: state.agency_name(&r.agency).to_owned(),
            at: rfc3339(r.recorded_at),
            entry_id: r.id.clone(),
            in_force: r.in_force(now),
        }
    }
}

fn timestamp_words(t: Option<prost_types::Timestamp>) -> String {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .map(rfc3339)
        .unwrap_or_default()
}

/// Checks that the entry's body is what its leaf hash says and that the
/// leaf is in the latest tree head: the signed one if the sealer has
/// signed one that covers the entry, else the head computed now.
pub(super) async fn check_inclusion(
    ledger: &Ledger,
    stored: &StoredEntry,
) -> Result<Verdict, ConsoleError> {
    let fault = |e| gateway_error(oversight::ledger_fault(e));
    let leaf = merkle::leaf_hash(&stored.body);
    if leaf != stored.leaf_hash {
        return Ok(Verdict {
            verified: false,
            summary: "Not verified: the entry's content does not match its recorded leaf hash"
                .into(),
            detail: "The entry was altered after it was recorded.".into(),
        });
    }
    let signed = ledger
        .latest_signed_head()
        .await
        .map_err(fault)?
        .filter(|h| h.size >= stored.seq);
    let (size, root, which) = match &signed {
        Some(h) => (
            h.size,
            h.root,
            format!(
                "the signed tree head{}",
                h.signed_at()
                    .map(|t| format!(" of {}", rfc3339(t)))
                    .unwrap_or_default()
            ),
        ),
        None => {
            let size = ledger.size().await.map_err(fault)?;
            let head = ledger.tree_head(size).await.map_err(fault)?;
            (
                size,
                head.root,
                "the current tree head (no signed head covers this entry yet)".to_owned(),
            )
        }
    };
    let proof = ledger
        .inclusion_proof(stored.seq, size)
        .await
        .map_err(fault)?;
    Ok(
        match merkle::verify_inclusion(&leaf, stored.seq - 1, size, &proof, &root) {
            Ok(()) => Verdict {
                verified: true,
                summary: format!(
                    "Verified: included in tree of size {size}, root {}",
                    hex::encode(root)
                ),
                detail: format!(
                    "Entry {} (leaf {}) was checked against {which} with a proof of {} hashes.",
                    stored.seq,
                    stored.seq - 1,
                    proof.len()
                ),
            },
            Err(e) => Verdict {
                verified: false,
                summary: format!("Not verified: {e}"),
                detail: format!("Checked against {which}, tree of size {size}."),
            },
        },
    )
}

/// The subject access report form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SubjectForm {
    person: String,
}

/// `GET /console/subject`: the report's form.
pub(super) async fn subject_form(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
) -> Result<Response, ConsoleError> {
    overseer(&signed_in)?;
    let page = SubjectPage {
        nav: state.nav(&signed_in, "subject"),
        person: "",
        rows: Vec::new(),
        withheld: Vec::new(),
        generated: String::new(),
        asked: false,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}

/// `POST /console/subject`: every disclosure about one person that this
/// DPO may see, oldest first, laid out to print.
pub(super) async fn subject_report(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    form: Result<Form<SubjectForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let principal = overseer(&signed_in)?;
    let Form(form) = form.map_err(|e| ConsoleError::BadRequest {
        message: format!("the form is malformed: {}", e.body_text()),
    })?;
    let person = form.person.trim();
    if person.is_empty() || person.chars().count() > MAX_FILTER_LEN {
        return Err(ConsoleError::BadRequest {
            message: format!("enter the person's identifier (at most {MAX_FILTER_LEN} characters)"),
        });
    }
    let now = OffsetDateTime::now_utc();
    let report = oversight::subject_report(state.ledger()?, principal, person, now)
        .await
        .map_err(gateway_error)?;
    tracing::info!(
        agency = %principal.agency,
        disclosures = report.disclosures.len(),
        withheld = report.withheld.len(),
        "console subject access report"
    );
    oversee::record(
        state.ledger()?,
        principal,
        Look::answered(
            "/console/subject",
            format!(
                "subject access report (person={person}); {} disclosures, {} withheld under s.45",
                report.disclosures.len(),
                report.withheld.len()
            ),
        ),
    )
    .await?;
    let row = |d: pb::SubjectDisclosure| SubjectRow {
        when: d
            .disclosed_at
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok())
            .map(rfc3339)
            .unwrap_or_default(),
        agency: state.agency_name(&d.recipient_agency_id).to_owned(),
        user: d.recipient_user,
        purpose: d.purpose,
        isa: d.isa_id,
        legal_basis: d.legal_basis,
        fields: d.fields.join(", "),
        entry_id: d.entry_id,
    };
    let rows = report.disclosures.into_iter().map(row).collect();
    let withheld = report
        .withheld
        .into_iter()
        .filter_map(|w| {
            let r = w.restriction?;
            let view = RestrictionView {
                until: timestamp_words(r.until),
                reason: r.reason,
                by: r.restricted_by,
                agency: state.agency_name(&r.restricted_by_agency_id).to_owned(),
                at: timestamp_words(r.restricted_at),
                entry_id: r.audit_entry_id,
                in_force: true,
            };
            Some((row(w.disclosure?), view))
        })
        .collect();
    let page = SubjectPage {
        nav: state.nav(&signed_in, "subject"),
        person,
        rows,
        withheld,
        generated: rfc3339(now),
        asked: true,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}
