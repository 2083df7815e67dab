//! The review queue: what a DPO must look at and close with a note.
//!
//! ```text
//! GET  /console/review     break-glass shares and flags, unreviewed first
//! POST /console/review     mark one reviewed: entry id + note (≥ 10 characters)
//! ```
//!
//! A review is a ledger entry (`REVIEW`, `RECORDED`, `target` = the entry
//! reviewed, the note as its justification), so it is as tamper-evident as
//! what it reviews, and an entry counts as reviewed exactly when such an
//! entry targets it. A flag is a pattern over many entries; its review
//! names the newest entry behind it, so activity after the review raises
//! the flag again. The page says "reviewed" only after the append is
//! durable; if it fails the DPO sees an error and nothing is marked.

use askama::Template;
use axum::{
    Form,
    extract::{
        Query, State,
        rejection::{FormRejection, QueryRejection},
    },
    response::{Html, IntoResponse, Redirect, Response},
};
use liaison_ledger::{EntryFilter, Ledger, Order};
use liaison_proto::v1 as pb;
use serde::Deserialize;
use time::OffsetDateTime;

pub(crate) use super::dashboard::QUEUE_DAYS;

use super::{
    ConsoleState,
    dashboard::{self, MAX_SCAN, ReviewNote, Stats},
    entries::{Nav, gateway_error, overseer},
    error::ConsoleError,
    guard::SignedIn,
    oversee::{self, Look},
};
use crate::{
    identity::Principal,
    services::oversight,
    share::audit::{self, audit_principal},
};

/// Shortest note a review is accepted with: enough for a sentence, so a
/// review cannot be a bare click.
pub(crate) const MIN_NOTE_CHARS: usize = 10;
/// Longest note accepted.
pub(crate) const MAX_NOTE_CHARS: usize = 2_000;
/// The role that may mark an entry reviewed; auditors read the queue.
pub(crate) const REVIEWER_ROLE: &str = "dpo";

/// One thing to review.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// `Break-glass` or the flag's pattern.
    pub kind: &'static str,
    pub break_glass: bool,
    /// The entry a review of this item names.
    pub entry_id: String,
    pub seq: u64,
    /// When that entry was recorded (UTC).
    pub at: String,
    /// The user (or, for one flag, the person) concerned.
    pub subject: String,
    pub detail: String,
    /// Reviews naming the entry, newest first.
    pub reviews: Vec<ReviewNote>,
}

/// The queue for what `visible` lets through, and whether the scan behind
/// it was cut short.
#[derive(Debug)]
pub(crate) struct Queue {
    pub items: Vec<Item>,
    pub partial: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct QueueQuery {
    /// `break-glass`, `flag` or empty for both.
    kind: String,
    /// `unreviewed`, `reviewed` or empty for both.
    status: String,
    /// The review just recorded, to confirm it.
    done: String,
    /// The entry it reviewed.
    entry: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ReviewForm {
    entry: String,
    note: String,
}

#[derive(Template)]
#[template(path = "review.html", config = "src/console/askama.toml")]
struct QueuePage<'a> {
    nav: Nav<'a>,
    items: Vec<Item>,
    kind: &'a str,
    status: &'a str,
    done: Option<(String, String)>,
    unreviewed: usize,
    partial: bool,
    may_review: bool,
    days: i64,
}

impl Item {
    /// Whether a review names this item's entry.
    pub fn reviewed(&self) -> bool {
        !self.reviews.is_empty()
    }
}

impl Queue {
    /// Break-glass shares no review names yet.
    pub fn unreviewed_break_glass(&self) -> usize {
        self.items
            .iter()
            .filter(|i| i.break_glass && !i.reviewed())
            .count()
    }
}

/// The queue built from the dashboard's scan: every break-glass share and
/// every flag, unreviewed first, then newest first.
pub(super) fn queue_from(stats: &Stats) -> Queue {
    let reviews = |id: &str| stats.reviews.get(id).cloned().unwrap_or_default();
    let mut items: Vec<Item> = stats
        .break_glass
        .iter()
        .map(|b| Item {
            kind: "Break-glass",
            break_glass: true,
            entry_id: b.newest.entry_id.clone(),
            seq: b.newest.seq,
            at: b.newest.at.clone(),
            subject: b.user.clone(),
            detail: format!(
                "Emergency access for {} under {}: {}",
                words_or(&b.purpose, "no stated purpose"),
                words_or(&b.isa, "no agreement"),
                words_or(&b.reason, "no reason recorded")
            ),
            reviews: reviews(&b.newest.entry_id),
        })
        .chain(stats.flags.iter().map(|f| Item {
            kind: f.kind,
            break_glass: false,
            entry_id: f.newest.entry_id.clone(),
            seq: f.newest.seq,
            at: f.newest.at.clone(),
            subject: f.subject.clone(),
            detail: f.detail.clone(),
            reviews: reviews(&f.newest.entry_id),
        }))
        .collect();
    items.sort_by(|a, b| {
        a.reviewed()
            .cmp(&b.reviewed())
            .then_with(|| b.seq.cmp(&a.seq))
            .then_with(|| a.kind.cmp(b.kind))
    });
    Queue {
        items,
        partial: stats.partial,
    }
}

/// The queue of what `visible` lets through, as of `now`.
pub(crate) async fn queue(
    ledger: &Ledger,
    visible: EntryFilter,
    now: OffsetDateTime,
) -> Result<Queue, ConsoleError> {
    Ok(queue_from(&dashboard::stats(ledger, visible, now).await?))
}

/// Checks a review note and returns it trimmed.
pub(crate) fn check_note(note: &str) -> Result<&str, ConsoleError> {
    let note = note.trim();
    let n = note.chars().count();
    if n < MIN_NOTE_CHARS {
        return Err(ConsoleError::BadRequest {
            message: format!(
                "a review needs a note of at least {MIN_NOTE_CHARS} characters saying what was checked"
            ),
        });
    }
    if n > MAX_NOTE_CHARS {
        return Err(ConsoleError::BadRequest {
            message: format!("a review note may be at most {MAX_NOTE_CHARS} characters"),
        });
    }
    Ok(note)
}

/// The ledger entry recording `reviewer`'s review of entry `target`.
pub(crate) fn review_entry(
    reviewer: pb::AuditPrincipal,
    method: &str,
    target: &str,
    note: &str,
) -> pb::AuditEntry {
    pb::AuditEntry {
        format_version: audit::FORMAT_VERSION,
        entry_id: uuid::Uuid::now_v7().to_string(),
        recorded_at: Some(audit::now()),
        recipient_agency_id: reviewer.agency_id.clone(),
        principal: Some(reviewer),
        action: pb::AuditAction::Review as i32,
        method: method.to_owned(),
        justification: note.to_owned(),
        allowed: true,
        outcome: pb::AuditOutcome::Recorded as i32,
        target: target.to_owned(),
        ..pb::AuditEntry::default()
    }
}

/// Every review of entry `target` that `visible` lets through, newest
/// first. Reviews are few beside shares and the index finds them by
/// action, so this reads reviews only.
pub(crate) async fn reviews_of(
    ledger: &Ledger,
    visible: EntryFilter,
    target: &str,
) -> Result<Vec<ReviewNote>, ConsoleError> {
    let filter = EntryFilter {
        action: Some("review".into()),
        order: Order::NewestFirst,
        ..visible
    };
    let mut found = Vec::new();
    let mut after = None;
    let mut scanned = 0usize;
    loop {
        let page = ledger
            .list(&filter, liaison_ledger::MAX_PAGE, after)
            .await
            .map_err(|e| gateway_error(oversight::ledger_fault(e)))?;
        let last = page.len() < usize::try_from(liaison_ledger::MAX_PAGE).unwrap_or(usize::MAX);
        for e in &page {
            after = Some(e.seq);
            scanned += 1;
            let body = oversight::decode(e).map_err(gateway_error)?;
            if body.target == target && body.restriction.is_none() {
                found.push(ReviewNote::new(e, body));
            }
        }
        if last || scanned >= MAX_SCAN {
            return Ok(found);
        }
    }
}

/// Whether `principal` may mark entries reviewed.
pub(super) fn may_review(principal: &Principal) -> bool {
    principal.has_role(REVIEWER_ROLE)
}

/// `GET /console/review`.
pub(super) async fn queue_page(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let principal = overseer(&signed_in)?;
    let Query(q) = query.map_err(|e| ConsoleError::BadRequest {
        message: format!("the queue's filter is malformed: {}", e.body_text()),
    })?;
    let kind = match q.kind.trim() {
        k @ ("" | "break-glass" | "flag") => k,
        other => {
            return Err(ConsoleError::BadRequest {
                message: format!("`{other}` is not a kind; use `break-glass` or `flag`"),
            });
        }
    };
    let status = match q.status.trim() {
        s @ ("" | "unreviewed" | "reviewed") => s,
        other => {
            return Err(ConsoleError::BadRequest {
                message: format!("`{other}` is not a status; use `unreviewed` or `reviewed`"),
            });
        }
    };
    let ledger = state.ledger()?;
    let queue = queue(
        ledger,
        oversight::visible_filter(principal),
        OffsetDateTime::now_utc(),
    )
    .await?;
    let unreviewed = queue.items.iter().filter(|i| !i.reviewed()).count();
    let items: Vec<Item> = queue
        .items
        .iter()
        .filter(|i| match kind {
            "break-glass" => i.break_glass,
            "flag" => !i.break_glass,
            _ => true,
        })
        .filter(|i| match status {
            "unreviewed" => !i.reviewed(),
            "reviewed" => i.reviewed(),
            _ => true,
        })
        .cloned()
        .collect();
    let id_like = |v: &str| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let done = (id_like(&q.done) && id_like(&q.entry)).then(|| (q.done.clone(), q.entry.clone()));
    oversee::record(
        ledger,
        principal,
        Look::answered(
            "/console/review",
            format!(
                "review queue (kind={}, status={}); {} items shown",
                words_or(kind, "all"),
                words_or(status, "all"),
                items.len()
            ),
        ),
    )
    .await?;
    let page = QueuePage {
        nav: state.nav(&signed_in, "review"),
        items,
        kind,
        status,
        done,
        unreviewed,
        partial: queue.partial,
        may_review: may_review(principal),
        days: QUEUE_DAYS,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}

/// `POST /console/review`: records a review, durably, then shows the
/// queue with it.
pub(super) async fn mark_reviewed(
    State(state): State<ConsoleState>,
    signed_in: SignedIn,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let principal = overseer(&signed_in)?;
    if !may_review(principal) {
        return Err(ConsoleError::Forbidden {
            message: format!("marking an entry reviewed needs the `{REVIEWER_ROLE}` role"),
        });
    }
    let Form(form) = form.map_err(|e| ConsoleError::BadRequest {
        message: format!("the review form is malformed: {}", e.body_text()),
    })?;
    let note = check_note(&form.note)?;
    let id = form.entry.trim();
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let ledger = state.ledger()?;
    let visible = if well_formed {
        ledger
            .get(id)
            .await
            .map_err(|e| gateway_error(oversight::ledger_fault(e)))?
            .is_some_and(|e| oversight::visible(principal, &e))
    } else {
        false
    };
    if !visible {
        oversee::record(
            ledger,
            principal,
            Look {
                method: "/console/review",
                what: "review of an entry not found or not visible".into(),
                target: if well_formed {
                    id.to_owned()
                } else {
                    String::new()
                },
                refused: Some("NOT_FOUND"),
            },
        )
        .await?;
        return Err(ConsoleError::NotFound {
            what: "this audit entry".into(),
        });
    }
    let entry = review_entry(audit_principal(principal), "/console/review", id, note);
    oversee::append(ledger, &entry).await?;
    tracing::info!(agency = %principal.agency, target = %id, "console review recorded");
    Ok(Redirect::to(&format!(
        "/console/review?done={}&entry={id}",
        entry.entry_id
    ))
    .into_response())
}

fn words_or<'a>(value: &'a str, otherwise: &'a str) -> &'a str {
    if value.trim().is_empty() {
        otherwise
    } else {
        value
    }
}
