//! Change-feed checks, for connectors that offer a feed: "now" works, a
//! cursor only moves forward, and a page boundary loses nothing.

use liaison_connectors::{ChangeCursor, Changes, Connector, ConnectorError, Fault};

use super::{KitReport, KnownChanges};

/// The most changes a walk reads, so a feed that never ends fails rather
/// than hangs.
const MAX_WALK: usize = 2_000;
/// A page large enough to read a walk's changes in few requests.
const LARGE_PAGE: usize = 500;

pub(super) async fn checks(
    c: &dyn Connector,
    known: Option<&KnownChanges>,
    report: &mut KitReport,
) {
    let head = match c.changes(None, 10).await {
        Err(ConnectorError::ChangesNotOffered { .. }) if known.is_none() => return,
        Err(ConnectorError::ChangesNotOffered { .. }) => {
            report.check(
                "changes.head",
                Err(
                    "the expectations describe a change feed, but the connector offers none".into(),
                ),
            );
            return;
        }
        other => other,
    };
    report.check("changes.head", head_check(c, head).await);
    if let Some(bad) = known.and_then(|k| k.invalid_cursor.as_deref()) {
        report.check("changes.invalid_cursor", invalid_cursor(c, bad).await);
    }
    let Some((from, page)) =
        known.and_then(|k| Some((k.from.clone()?, k.page.unwrap_or(3).max(1))))
    else {
        return;
    };
    let from = ChangeCursor(from);
    let walked = match walk(c, &from, page).await {
        Ok(walked) => walked,
        Err(why) => {
            report.check("changes.walk", Err(why));
            return;
        }
    };
    report.check(
        "changes.walk",
        Ok(format!("{} changes in pages of {page}", walked.len())),
    );
    report.check(
        "changes.page_boundary",
        page_boundary(c, &from, &walked).await,
    );
    report.check("changes.grows", grows(c, &walked).await);
}

async fn head_check(
    c: &dyn Connector,
    head: Result<Changes, ConnectorError>,
) -> Result<String, String> {
    let head = head.map_err(|e| format!("asking for \"now\" failed: {e}"))?;
    if !head.changes.is_empty() {
        return Err(format!(
            "\"now\" came with {} changes; it should come with none",
            head.changes.len()
        ));
    }
    let after = c
        .changes(Some(&head.cursor), 10)
        .await
        .map_err(|e| format!("reading after \"now\" failed: {e}"))?;
    if after.resync {
        return Err("reading after \"now\" asked for a resynchronisation".into());
    }
    Ok(format!(
        "\"now\" is a cursor of {} characters; {} changes after it",
        head.cursor.0.len(),
        after.changes.len()
    ))
}

async fn invalid_cursor(c: &dyn Connector, bad: &str) -> Result<String, String> {
    match c.changes(Some(&ChangeCursor(bad.to_owned())), 10).await {
        Err(e) if e.fault() == Fault::Caller => Ok(format!("refused: {e}")),
        Err(e) => Err(format!("refused, but not as the caller's fault: {e}")),
        Ok(page) => Err(format!(
            "accepted, with {} changes{}",
            page.changes.len(),
            if page.resync {
                " and a resynchronisation"
            } else {
                ""
            }
        )),
    }
}

/// Reads the feed from `from` to its end in pages of `page`: each change's
/// person and cursor, in order.
async fn walk(
    c: &dyn Connector,
    from: &ChangeCursor,
    page: usize,
) -> Result<Vec<(String, ChangeCursor)>, String> {
    let mut out = Vec::new();
    let mut cursor = from.clone();
    loop {
        let got = c
            .changes(Some(&cursor), page)
            .await
            .map_err(|e| format!("after {} changes, reading on failed: {e}", out.len()))?;
        if got.resync {
            return Err(format!(
                "after {} changes, the feed asked for a resynchronisation",
                out.len()
            ));
        }
        if got.changes.len() > page {
            return Err(format!(
                "a page of {page} held {} changes",
                got.changes.len()
            ));
        }
        let Some(last) = got.changes.last() else {
            if got.cursor != cursor {
                return Err("a page with no changes moved the cursor".into());
            }
            return Ok(out);
        };
        if got.cursor != last.cursor {
            return Err(format!(
                "after {} changes, a page did not end at its last change's cursor",
                out.len()
            ));
        }
        cursor = got.cursor.clone();
        out.extend(
            got.changes
                .into_iter()
                .map(|change| (change.source_id, change.cursor)),
        );
        if out.len() > MAX_WALK {
            return Err(format!("the feed did not end within {MAX_WALK} changes"));
        }
    }
}

async fn page_boundary(
    c: &dyn Connector,
    from: &ChangeCursor,
    walked: &[(String, ChangeCursor)],
) -> Result<String, String> {
    let large = walk(c, from, LARGE_PAGE).await?;
    if large != walked {
        let at = large
            .iter()
            .zip(walked)
            .position(|(a, b)| a != b)
            .unwrap_or(large.len().min(walked.len()));
        return Err(format!(
            "pages of {LARGE_PAGE} gave {} changes and small pages {}; they differ from change {at}",
            large.len(),
            walked.len()
        ));
    }
    Ok(format!("{} changes either way", large.len()))
}

async fn grows(c: &dyn Connector, walked: &[(String, ChangeCursor)]) -> Result<String, String> {
    let n = walked.len();
    let mut positions: Vec<usize> = [0, n / 3, n / 2, n.saturating_sub(2)]
        .into_iter()
        .filter(|i| *i < n)
        .collect();
    positions.dedup();
    for i in &positions {
        let Some((_, cursor)) = walked.get(*i) else {
            continue;
        };
        let rest = walked.get(i + 1..).unwrap_or_default();
        let got = c
            .changes(Some(cursor), rest.len().clamp(1, LARGE_PAGE))
            .await
            .map_err(|e| format!("resuming after change {i} failed: {e}"))?;
        let got: Vec<(String, ChangeCursor)> = got
            .changes
            .into_iter()
            .map(|change| (change.source_id, change.cursor))
            .collect();
        let expected = rest.get(..got.len().min(rest.len())).unwrap_or_default();
        if got.len() != rest.len().min(LARGE_PAGE) || got != expected {
            return Err(format!(
                "resuming after change {i} gave {} changes, not the {} that follow it",
                got.len(),
                rest.len()
            ));
        }
    }
    Ok(format!("resumed after {} positions", positions.len()))
}
