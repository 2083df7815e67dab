//! The console's front page: who is signed in, how sharing went over the
//! last weeks, and whether the ledger holds together.
//!
//! Charts are drawn on the server (`charts.rs`): the pages run no script, so
//! the Content-Security-Policy stays `default-src 'none'`, and each chart has
//! its numbers beside it as a table for people who do not see it.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use liaison_ledger::{EntryFilter, Ledger, Order};
use time::{Date, Duration, OffsetDateTime, Time};

use super::{
    ConsoleState, charts,
    entries::{Nav, gateway_error},
    error::ConsoleError,
    guard::SignedIn,
    record::outcome_words,
};
use crate::services::oversight::{self, OVERSIGHT_ROLES};

/// Days the dashboard covers.
pub(super) const DAYS: i64 = 30;
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
}

/// A pattern worth a DPO's look: not a finding, a prompt.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Flag {
    pub kind: &'static str,
    pub subject: String,
    pub detail: String,
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
    let (stats, integrity) = match (&state.ledger, overseer) {
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
            (Some(stats), Some(integrity(ledger).await?))
        }
        _ => (None, None),
    };
    let page = DashboardPage {
        nav: state.nav(&signed_in, "dashboard"),
        name: p.label(),
        agency_name: state.agency_name(&p.agency),
        roles: p.roles.join(", "),
        overseer,
        stats,
        integrity,
    }
    .render()
    .map_err(ConsoleError::internal)?;
    Ok(Html(page).into_response())
}

/// Counts the entries `visible` lets through over the last [`DAYS`] days
/// to `now`. Only index columns are read, except for denials, whose
/// reason is in the body.
pub(super) async fn stats(
    ledger: &Ledger,
    visible: EntryFilter,
    now: OffsetDateTime,
) -> Result<Stats, ConsoleError> {
    let today = now.date();
    let first = today - Duration::days(DAYS - 1);
    let filter = EntryFilter {
        from: Some(first.with_time(Time::MIDNIGHT).assume_utc()),
        order: Order::NewestFirst,
        ..visible
    };
    let mut per_day: HashMap<Date, (u64, u64)> = HashMap::new();
    let mut agency: HashMap<String, u64> = HashMap::new();
    let mut purpose: HashMap<String, u64> = HashMap::new();
    let mut outcome: HashMap<String, u64> = HashMap::new();
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut users: HashMap<String, u64> = HashMap::new();
    let mut denials_by_user: HashMap<String, u64> = HashMap::new();
    let mut out_of_hours: HashMap<String, u64> = HashMap::new();
    let mut per_hour: HashMap<(String, i64), u64> = HashMap::new();
    let mut users_by_person: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
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
            let denied = i.outcome == "denied";
            let day = per_day.entry(e.recorded_at.date()).or_default();
            day.0 += 1;
            stats.total += 1;
            if denied {
                day.1 += 1;
                stats.denied += 1;
                let reason = oversight::decode(e)
                    .map(|b| b.error_reason)
                    .unwrap_or_default();
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
                *denials_by_user.entry(i.subject.clone()).or_default() += 1;
            }
            let t = e.recorded_at;
            if t.hour() < 7
                || t.hour() >= 20
                || matches!(t.weekday(), time::Weekday::Saturday | time::Weekday::Sunday)
            {
                *out_of_hours.entry(i.subject.clone()).or_default() += 1;
            }
            *per_hour
                .entry((i.subject.clone(), t.unix_timestamp().div_euclid(3600)))
                .or_default() += 1;
            for person in &i.subjects {
                users_by_person
                    .entry(person.clone())
                    .or_default()
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
    for (user, n) in denials_by_user {
        if n >= REPEATED_DENIALS {
            flags.push(Flag {
                kind: "Repeated denials",
                subject: user,
                detail: format!("{n} requests denied by policy"),
            });
        }
    }
    for (person, who) in users_by_person {
        if who.len() >= MANY_USERS {
            flags.push(Flag {
                kind: "Many users on one person",
                subject: person,
                detail: format!("looked at by {} different users", who.len()),
            });
        }
    }
    let mut bulk: HashMap<String, u64> = HashMap::new();
    for ((user, _), n) in per_hour {
        if n >= BULK_PER_HOUR {
            let worst = bulk.entry(user).or_default();
            *worst = (*worst).max(n);
        }
    }
    for (user, n) in bulk {
        flags.push(Flag {
            kind: "Bulk look-ups",
            subject: user,
            detail: format!("up to {n} requests in one hour"),
        });
    }
    for (user, n) in out_of_hours {
        flags.push(Flag {
            kind: "Out of hours",
            subject: user,
            detail: format!("{n} requests before 07:00, after 20:00 (UTC) or at weekends"),
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
