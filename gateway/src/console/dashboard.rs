//! The console's front page: who is signed in, how sharing went over the
//! last weeks, and whether the ledger holds together.
//!
//! Charts are drawn on the server (`charts.rs`): the pages run no script, so
//! the Content-Security-Policy stays `default-src 'none'`, and each chart has
//! its numbers beside it as a table for people who do not see it.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use liaison_ledger::{EntryFilter, Ledger, Order, StoredEntry};
use liaison_proto::v1 as pb;
use time::{Date, Duration, OffsetDateTime, Time};

use super::{
    ConsoleState, charts,
    entries::{Nav, gateway_error},
    error::ConsoleError,
    guard::SignedIn,
    record::{outcome_words, rfc3339},
    review,
};
use crate::services::oversight::{self, OVERSIGHT_ROLES};

/// Days the dashboard covers.
pub(super) const DAYS: i64 = 30;
/// Days the review queue covers: a break-glass share or a flag stays in
/// it this long, reviewed or not.
pub(crate) const QUEUE_DAYS: i64 = 90;
/// The actions that are shares, as the ledger's index names them; the
/// rest record oversight, administration and failed sign-ins.
pub(crate) const SHARE_ACTIONS: &[&str] = &["search", "read", "subscribe"];
/// Entries the dashboard reads at most; past this it says it counted a
/// part, not the whole.
pub(super) const MAX_SCAN: usize = 200_000;
/// Denials by one user in the window that raise a flag.
const REPEATED_DENIALS: u64 = 3;
/// Distinct users looking at one person in the window that raise a flag.
const MANY_USERS: usize = 5;
/// Requests by one user within one clock hour that raise a flag.
const BULK_PER_HOUR: u64 = 50;
/// Most flags listed.
const MAX_FLAGS: usize = 50;
/// Rows in each "top" list.
const TOP: usize = 10;

#[derive(Template)]
#[template(path = "dashboard.html", config = "src/console/askama.toml")]
struct DashboardPage<'a> {
    nav: Nav<'a>,
    name: &'a str,
    agency_name: &'a str,
    roles: String,
    overseer: bool,
    stats: Option<Stats>,
    integrity: Option<Integrity>,
    /// Break-glass shares no review names yet.
    awaiting: Option<usize>,
}

/// Counts over the dashboard's window.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub from: String,
    pub total: u64,
    pub denied: u64,
    pub partial: bool,
    pub days: Vec<Day>,
    /// The daily chart's SVG, drawn once the labels are final.
    pub chart: String,
    pub tables: Vec<CountTable>,
    pub flags: Vec<Flag>,
    /// Break-glass shares over [`QUEUE_DAYS`], newest first.
    pub break_glass: Vec<BreakGlassShare>,
    /// Reviews over [`QUEUE_DAYS`] by the entry id they concern, newest
    /// first.
    pub reviews: HashMap<String, Vec<ReviewNote>>,
}

/// A pattern worth a DPO's look: not a finding, a prompt.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Flag {
    pub kind: &'static str,
    pub subject: String,
    pub detail: String,
    /// The newest entry behind the flag: a review names it, so activity
    /// after the review raises the flag again.
    pub newest: Newest,
}

/// An entry a queue item points at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Newest {
    pub seq: u64,
    pub entry_id: String,
    pub at: String,
}

/// A share that invoked emergency access.
#[derive(Debug)]
pub(super) struct BreakGlassShare {
    pub newest: Newest,
    pub user: String,
    pub reason: String,
    pub purpose: String,
    pub isa: String,
}

/// A review recorded in the ledger.
#[derive(Debug, Clone)]
pub(crate) struct ReviewNote {
    /// The review's own entry.
    pub entry_id: String,
    pub at: String,
    pub reviewer: String,
    pub note: String,
}

/// One ranked list.
#[derive(Debug)]
pub(super) struct CountTable {
    pub title: &'static str,
    pub id: &'static str,
    pub rows: Vec<Count>,
    /// The rows as a bar chart's SVG.
    pub chart: String,
}

/// One day's requests.
#[derive(Debug)]
pub(super) struct Day {
    pub date: String,
    pub total: u64,
    pub denied: u64,
}

/// A labelled count.
#[derive(Debug)]
pub(super) struct Count {
    pub label: String,
    pub count: u64,
}

/// The ledger's integrity, as cheaply as it can be known.
#[derive(Debug)]
pub(super) struct Integrity {
    pub ok: bool,
    pub summary: String,
}

/// `GET /console/`.
pub(super) async fn dashboard(
    State(state): State<ConsoleState>,
    signed_in: Result<SignedIn, ConsoleError>,
) -> Result<Response, ConsoleError> {
    let signed_in = match signed_in {
        Ok(s) => s,
        Err(ConsoleError::NotSignedIn) => return Ok(Redirect::to("/console/login").into_response()),
        Err(e) => return Err(e),
    };
    let p = signed_in.principal.clone();
    let overseer = OVERSIGHT_ROLES.iter().any(|r| p.has_role(r));
    let (stats, integrity, awaiting) = match (&state.ledger, overseer) {
        (Some(ledger), true) => {
            let now = OffsetDateTime::now_utc();
            let mut stats = stats(ledger, oversight::visible_filter(&p), now).await?;
            for c in stats
                .tables
                .iter_mut()
                .filter(|t| t.id == "by-agency")
                .flat_map(|t| t.rows.iter_mut())
            {
                c.label = state.agency_name(&c.label).to_owned();
            }
            draw_charts(&mut stats)?;
            let awaiting = review::queue_from(&stats).unreviewed_break_glass();
            (Some(stats), Some(integrity(ledger).await?), Some(awaiting))
        }
        _ => (None, None, None),
    };
    let page = DashboardPage {
        nav: state.nav(&signed_in, "dashboard"),
        name: p.label(),
        agency_name: state.agency_name(&p.agency),
        roles: p.roles.join(", "),
        overseer,
        stats,
        integrity,
        awaiting,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}

/// Counts the shares `visible` lets through over the last [`DAYS`] days
/// to `now`, and gathers what the review queue needs over the last
/// [`QUEUE_DAYS`]: break-glass shares and the reviews recorded. Only the
/// ledger's own entries about oversight (searches, reviews, changes,
/// failed sign-ins) are left out of the counts.
pub(super) async fn stats(
    ledger: &Ledger,
    visible: EntryFilter,
    now: OffsetDateTime,
) -> Result<Stats, ConsoleError> {
    let today = now.date();
    let first = today - Duration::days(DAYS - 1);
    let window = first.with_time(Time::MIDNIGHT).assume_utc();
    let filter = EntryFilter {
        from: Some(
            (today - Duration::days(QUEUE_DAYS - 1))
                .with_time(Time::MIDNIGHT)
                .assume_utc(),
        ),
        order: Order::NewestFirst,
        ..visible
    };
    let mut per_day: HashMap<Date, (u64, u64)> = HashMap::new();
    let mut agency: HashMap<String, u64> = HashMap::new();
    let mut purpose: HashMap<String, u64> = HashMap::new();
    let mut outcome: HashMap<String, u64> = HashMap::new();
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut users: HashMap<String, u64> = HashMap::new();
    // Each pattern keeps its count and the newest entry behind it (the
    // scan runs newest first, so the first one seen), which a review of
    // the flag names.
    let mut denials_by_user: HashMap<String, (u64, Newest)> = HashMap::new();
    let mut out_of_hours: HashMap<String, (u64, Newest)> = HashMap::new();
    let mut per_hour: HashMap<(String, i64), (u64, Newest)> = HashMap::new();
    let mut users_by_person: HashMap<String, (BTreeSet<String>, Newest)> = HashMap::new();
    let mut stats = Stats::default();
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
            let i = &e.index;
            if i.action == "review" {
                // A restriction targets an entry too, but reviews nothing.
                if let Ok(body) = oversight::decode(e)
                    && body.restriction.is_none()
                {
                    stats
                        .reviews
                        .entry(body.target.clone())
                        .or_default()
                        .push(ReviewNote::new(e, body));
                }
                continue;
            }
            if !SHARE_ACTIONS.contains(&i.action.as_str()) {
                continue;
            }
            let body = oversight::decode(e).ok();
            if let Some(b) = &body
                && let Some(glass) = &b.break_glass
            {
                stats.break_glass.push(BreakGlassShare {
                    newest: Newest::of(e),
                    user: i.subject.clone(),
                    reason: glass.reason.clone(),
                    purpose: i.purpose.clone(),
                    isa: i.isa_id.clone(),
                });
            }
            if e.recorded_at < window {
                continue;
            }
            let denied = i.outcome == "denied";
            let day = per_day.entry(e.recorded_at.date()).or_default();
            day.0 += 1;
            stats.total += 1;
            if denied {
                day.1 += 1;
                stats.denied += 1;
                let reason = body.map(|b| b.error_reason).unwrap_or_default();
                *reasons
                    .entry(if reason.is_empty() {
                        "not stated".into()
                    } else {
                        reason
                    })
                    .or_default() += 1;
            }
            *agency.entry(i.recipient.clone()).or_default() += 1;
            *purpose
                .entry(if i.purpose.is_empty() {
                    "none stated".into()
                } else {
                    i.purpose.clone()
                })
                .or_default() += 1;
            *outcome
                .entry(outcome_words(&i.outcome).to_owned())
                .or_default() += 1;
            *users.entry(i.subject.clone()).or_default() += 1;
            if denied {
                denials_by_user
                    .entry(i.subject.clone())
                    .or_insert_with(|| (0, Newest::of(e)))
                    .0 += 1;
            }
            let t = e.recorded_at;
            if t.hour() < 7
                || t.hour() >= 20
                || matches!(t.weekday(), time::Weekday::Saturday | time::Weekday::Sunday)
            {
                out_of_hours
                    .entry(i.subject.clone())
                    .or_insert_with(|| (0, Newest::of(e)))
                    .0 += 1;
            }
            per_hour
                .entry((i.subject.clone(), t.unix_timestamp().div_euclid(3600)))
                .or_insert_with(|| (0, Newest::of(e)))
                .0 += 1;
            for person in &i.subjects {
                users_by_person
                    .entry(person.clone())
                    .or_insert_with(|| (BTreeSet::new(), Newest::of(e)))
                    .0
                    .insert(i.subject.clone());
            }
        }
        if last {
            break;
        }
        if scanned >= MAX_SCAN {
            stats.partial = true;
            break;
        }
    }
    stats.from = first.to_string();
    let mut date = first;
    while date <= today {
        let (total, denied) = per_day.get(&date).copied().unwrap_or_default();
        stats.days.push(Day {
            date: date.to_string(),
            total,
            denied,
        });
        let Some(next) = date.next_day() else { break };
        date = next;
    }
    let mut flags = Vec::new();
    for (user, (n, newest)) in denials_by_user {
        if n >= REPEATED_DENIALS {
            flags.push(Flag {
                kind: "Repeated denials",
                subject: user,
                detail: format!("{n} requests denied by policy"),
                newest,
            });
        }
    }
    for (person, (who, newest)) in users_by_person {
        if who.len() >= MANY_USERS {
            flags.push(Flag {
                kind: "Many users on one person",
                subject: person,
                detail: format!("looked at by {} different users", who.len()),
                newest,
            });
        }
    }
    let mut bulk: HashMap<String, (u64, Newest)> = HashMap::new();
    for ((user, _), (n, newest)) in per_hour {
        if n >= BULK_PER_HOUR {
            let worst = bulk.entry(user).or_insert((0, newest.clone()));
            worst.0 = worst.0.max(n);
            if newest.seq > worst.1.seq {
                worst.1 = newest;
            }
        }
    }
    for (user, (n, newest)) in bulk {
        flags.push(Flag {
            kind: "Bulk look-ups",
            subject: user,
            detail: format!("up to {n} requests in one hour"),
            newest,
        });
    }
    for (user, (n, newest)) in out_of_hours {
        flags.push(Flag {
            kind: "Out of hours",
            subject: user,
            detail: format!("{n} requests before 07:00, after 20:00 (UTC) or at weekends"),
            newest,
        });
    }
    flags.sort();
    flags.truncate(MAX_FLAGS);
    stats.flags = flags;
    stats.tables = vec![
        CountTable {
            title: "By receiving agency",
            id: "by-agency",
            rows: ranked(agency, None),
            chart: String::new(),
        },
        CountTable {
            title: "By purpose",
            id: "by-purpose",
            rows: ranked(purpose, None),
            chart: String::new(),
        },
        CountTable {
            title: "By outcome",
            id: "by-outcome",
            rows: ranked(outcome, None),
            chart: String::new(),
        },
        CountTable {
            title: "Denials by reason",
            id: "denials",
            rows: ranked(reasons, None),
            chart: String::new(),
        },
        CountTable {
            title: "Most active users",
            id: "top-users",
            rows: ranked(users, Some(TOP)),
            chart: String::new(),
        },
    ];
    Ok(stats)
}

/// Counts, largest first (then by label).
fn ranked(counts: HashMap<String, u64>, top: Option<usize>) -> Vec<Count> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if let Some(n) = top {
        v.truncate(n);
    }
    v.into_iter()
        .map(|(label, count)| Count { label, count })
        .collect()
}

impl Newest {
    pub(super) fn of(e: &StoredEntry) -> Self {
        Self {
            seq: e.seq,
            entry_id: e.entry_id.clone(),
            at: rfc3339(e.recorded_at),
        }
    }
}

impl ReviewNote {
    pub(super) fn new(e: &StoredEntry, body: pb::AuditEntry) -> Self {
        let p = body.principal.unwrap_or_default();
        Self {
            entry_id: e.entry_id.clone(),
            at: rfc3339(e.recorded_at),
            reviewer: if p.display_name.is_empty() {
                p.subject
            } else {
                p.display_name
            },
            note: body.justification,
        }
    }
}

/// Draws the charts from the counts as the page will label them.
fn draw_charts(stats: &mut Stats) -> Result<(), ConsoleError> {
    stats.chart = charts::daily(
        &stats.days,
        &format!("Requests per day since {}", stats.from),
        "Blue bars: every request that day. Red bars in front: those denied by policy. The numbers are in the table below.",
    )?;
    for t in &mut stats.tables {
        t.chart = charts::ranked(t.id, &t.rows, t.title)?;
    }
    Ok(())
}

/// A cheap integrity check: the latest signed head's root must be the root
/// the stored tree gives for its size now (a rewritten or truncated ledger
/// fails this), and the newest entry's body must hash to its leaf. The full
/// `liaison audit verify` reads every entry and is for the command line.
pub(super) async fn integrity(ledger: &Ledger) -> Result<Integrity, ConsoleError> {
    let fault = |e| gateway_error(oversight::ledger_fault(e));
    let size = ledger.size().await.map_err(fault)?;
    if size == 0 {
        return Ok(Integrity {
            ok: true,
            summary: "The ledger is empty.".into(),
        });
    }
    if let Some(newest) = ledger.get_by_seq(size).await.map_err(fault)?
        && liaison_ledger::merkle::leaf_hash(&newest.body) != newest.leaf_hash
    {
        return Ok(Integrity {
            ok: false,
            summary: format!("Entry {size} does not match its recorded leaf hash."),
        });
    }
    let current = ledger.tree_head(size).await.map_err(fault)?;
    Ok(match ledger.latest_signed_head().await.map_err(fault)? {
        Some(head) => {
            let stored = ledger.tree_head(head.size).await.map_err(fault)?;
            if stored.root == head.root {
                Integrity {
                    ok: true,
                    summary: format!(
                        "Consistent: the signed head of {} entries matches the stored tree; {size} entries in all, root {}.",
                        head.size,
                        hex::encode(current.root)
                    ),
                }
            } else {
                Integrity {
                    ok: false,
                    summary: format!(
                        "Inconsistent: the signed head of {} entries does not match the stored tree.",
                        head.size
                    ),
                }
            }
        }
        None => Integrity {
            ok: true,
            summary: format!(
                "{size} entries, root {}; no signed tree head yet.",
                hex::encode(current.root)
            ),
        },
    })
}
