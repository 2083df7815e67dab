//! The CSV folder's change feed: a folder has no change log, so the
//! connector makes one by comparing each export it reads with the one
//! before, person by person.
//!
//! Each export read gets a **digest per person** (their mapped person and
//! records, the records in a canonical order) and a digest of the whole
//! snapshot. Replacing an export appends one **transition** to an
//! in-memory log: its load sequence number, the new snapshot's digest, and
//! the source ids, sorted, of the people added, removed or changed. An
//! export whose content maps to the same people as before appends nothing.
//!
//! A cursor is `<epoch>.<seq>.<offset>.<digest>`: the process's start time
//! in milliseconds (`epoch`), a transition's sequence number, how far into
//! its changes (`*` once past them all) and the digest of the snapshot it
//! leads to. Within a process the cursor only grows (`seq`, then `offset`).
//!
//! The log is bounded (`max_logged_changes`). A cursor this process did not
//! issue (the gateway restarted, or another replica issued it) or one older
//! than the log is answered with [`Changes::resync`]: the caller re-reads
//! everyone it follows and resumes from "now". The one exception is a
//! cursor that was past every change of a snapshot whose digest is the one
//! in service: nothing has changed since, so it resumes silently. Delivery
//! is therefore at least once across restarts: on doubt people are sent
//! again, never skipped.

use std::collections::{BTreeMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::error::excerpt;
use crate::{Change, ChangeCursor, Changes, ConnectorError};

/// A person's (or a snapshot's) content digest.
pub(crate) type Sha = [u8; 32];

/// Where a cursor points within a transition's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offset {
    /// Before the change at this index.
    At(usize),
    /// Past every change of the transition.
    Past,
}

/// A parsed cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    epoch: u64,
    seq: u64,
    offset: Offset,
    /// `None` before any export was read.
    digest: Option<Sha>,
}

impl Position {
    fn encode(&self) -> ChangeCursor {
        let offset = match self.offset {
            Offset::At(i) => i.to_string(),
            Offset::Past => "*".to_owned(),
        };
        let digest = self.digest.map_or_else(|| "-".to_owned(), hex::encode);
        ChangeCursor(format!("{}.{}.{offset}.{digest}", self.epoch, self.seq))
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let epoch = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let offset = match parts.next()? {
            "*" => Offset::Past,
            n => Offset::At(n.parse().ok()?),
        };
        let digest = match parts.next()? {
            "-" => None,
            hex_digest => {
                let mut out = [0; 32];
                hex::decode_to_slice(hex_digest, &mut out).ok()?;
                Some(out)
            }
        };
        parts.next().is_none().then_some(Self {
            epoch,
            seq,
            offset,
            digest,
        })
    }
}

/// One export replacing another.
#[derive(Debug)]
struct Transition {
    seq: u64,
    digest: Sha,
    /// The people who changed, sorted; `None` when there were more than
    /// the log keeps, so crossing it means a resynchronisation.
    changed: Option<Vec<String>>,
}

/// The change log of one connector.
#[derive(Debug)]
pub(crate) struct Feed {
    dataset: String,
    epoch: u64,
    capacity: usize,
    log: VecDeque<Transition>,
    /// Changes held in `log`.
    kept: usize,
    /// The last transition dropped from the log (or the start): a cursor
    /// past all of its changes can still be served.
    floor: (u64, Option<Sha>),
}

impl Feed {
    /// An empty log keeping at most `capacity` changes.
    pub(crate) fn new(dataset: &str, capacity: usize) -> Self {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::with_epoch(dataset, capacity, epoch)
    }

    fn with_epoch(dataset: &str, capacity: usize, epoch: u64) -> Self {
        Self {
            dataset: dataset.to_owned(),
            epoch,
            capacity,
            log: VecDeque::new(),
            kept: 0,
            floor: (0, None),
        }
    }

    /// The position past every change logged.
    fn head(&self) -> Position {
        let (seq, digest) = self
            .log
            .back()
            .map_or(self.floor, |t| (t.seq, Some(t.digest)));
        Position {
            epoch: self.epoch,
            seq,
            offset: Offset::Past,
            digest,
        }
    }

    /// Logs a new export: who differs between `before` (the digests of the
    /// export in service, if any) and `after`. Nothing is logged when the
    /// snapshot's digest is unchanged.
    pub(crate) fn record(
        &mut self,
        before: Option<&BTreeMap<String, Sha>>,
        after: &BTreeMap<String, Sha>,
        digest: Sha,
    ) {
        if self.head().digest == Some(digest) {
            return;
        }
        let empty = BTreeMap::new();
        let before = before.unwrap_or(&empty);
        let mut changed: Vec<String> = after
            .iter()
            .filter(|(id, d)| before.get(*id) != Some(*d))
            .map(|(id, _)| id.clone())
            .collect();
        changed.extend(before.keys().filter(|id| !after.contains_key(*id)).cloned());
        changed.sort_unstable();
        let seq = self.head().seq + 1;
        let count = changed.len();
        let changed = (count <= self.capacity).then_some(changed);
        self.kept += changed.as_ref().map_or(0, Vec::len);
        self.log.push_back(Transition {
            seq,
            digest,
            changed,
        });
        while self.kept > self.capacity && self.log.len() > 1 {
            if let Some(old) = self.log.pop_front() {
                self.kept -= old.changed.as_ref().map_or(0, Vec::len);
                self.floor = (old.seq, Some(old.digest));
            }
        }
    }

    /// The changes after `after`, at most `limit`; see the module's
    /// documentation for what is answered when the cursor is not known.
    pub(crate) fn changes(
        &self,
        after: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<Changes, ConnectorError> {
        let head = self.head();
        let Some(after) = after else {
            return Ok(Changes {
                cursor: head.encode(),
                ..Changes::default()
            });
        };
        let Some(from) = Position::decode(&after.0) else {
            return Err(ConnectorError::InvalidCursor {
                dataset: self.dataset.clone(),
                cursor: excerpt(&after.0, 32),
            });
        };
        let resync = || Changes {
            cursor: head.encode(),
            resync: true,
            ..Changes::default()
        };
        if from.epoch != self.epoch {
            // Issued before a restart or by another replica: only a cursor
            // past every change of the snapshot in service is known good.
            let up_to_date = from.offset == Offset::Past && from.digest == head.digest;
            return Ok(if up_to_date {
                Changes {
                    cursor: head.encode(),
                    ..Changes::default()
                }
            } else {
                resync()
            });
        }
        let known = (from.seq, from.digest) == self.floor && from.offset == Offset::Past
            || self
                .log
                .iter()
                .any(|t| t.seq == from.seq && Some(t.digest) == from.digest);
        if !known {
            return Ok(resync());
        }
        let mut out = Changes {
            cursor: from.encode(),
            ..Changes::default()
        };
        for t in self.log.iter().filter(|t| t.seq >= from.seq) {
            let start = match (t.seq == from.seq, from.offset) {
                (true, Offset::Past) => continue,
                (true, Offset::At(i)) => i,
                (false, _) => 0,
            };
            let Some(changed) = &t.changed else {
                // More changes than were kept: re-read everyone, unless
                // changes before it are still to be handed over.
                return Ok(if out.changes.is_empty() {
                    resync()
                } else {
                    out
                });
            };
            for (i, source_id) in changed.iter().enumerate().skip(start) {
                if out.changes.len() >= limit {
                    return Ok(out);
                }
                let offset = if i + 1 == changed.len() {
                    Offset::Past
                } else {
                    Offset::At(i + 1)
                };
                let cursor = Position {
                    epoch: self.epoch,
                    seq: t.seq,
                    offset,
                    digest: Some(t.digest),
                }
                .encode();
                out.changes.push(Change {
                    cursor: cursor.clone(),
                    source_id: source_id.clone(),
                });
                out.cursor = cursor;
            }
            if out.changes.len() >= limit {
                return Ok(out);
            }
            // A transition with no one left to hand over is passed.
            out.cursor = Position {
                epoch: self.epoch,
                seq: t.seq,
                offset: Offset::Past,
                digest: Some(t.digest),
            }
            .encode();
        }
        Ok(out)
    }
}

/// A snapshot's digest from its people's, in source id order.
pub(crate) fn snapshot_digest(people: &BTreeMap<String, Sha>) -> Sha {
    let mut hash = Sha256::new();
    for (id, digest) in people {
        hash.update((id.len() as u64).to_be_bytes());
        hash.update(id.as_bytes());
        hash.update(digest);
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people(entries: &[(&str, u8)]) -> BTreeMap<String, Sha> {
        entries
            .iter()
            .map(|(id, d)| ((*id).to_owned(), [*d; 32]))
            .collect()
    }

    fn load(
        feed: &mut Feed,
        before: Option<&BTreeMap<String, Sha>>,
        after: &BTreeMap<String, Sha>,
    ) {
        feed.record(before, after, snapshot_digest(after));
    }

    fn ids(changes: &Changes) -> Vec<&str> {
        changes
            .changes
            .iter()
            .map(|c| c.source_id.as_str())
            .collect()
    }

    #[test]
    fn only_people_whose_content_differs_are_changes_and_pages_lose_nothing() {
        let mut feed = Feed::with_epoch("council", 100, 7);
        let first = people(&[("1", 1), ("2", 2), ("3", 3)]);
        load(&mut feed, None, &first);
        let now = feed.changes(None, 10).unwrap();
        assert!(now.changes.is_empty() && !now.resync);

        // 1 changed, 3 removed, 4 added, 2 untouched.
        let second = people(&[("1", 9), ("2", 2), ("4", 4)]);
        load(&mut feed, Some(&first), &second);
        // The same content again is no transition at all.
        load(&mut feed, Some(&second), &second);

        let page = feed.changes(Some(&now.cursor), 2).unwrap();
        assert_eq!(ids(&page), ["1", "3"]);
        let rest = feed.changes(Some(&page.cursor), 2).unwrap();
        assert_eq!(ids(&rest), ["4"]);
        let after = feed.changes(Some(&rest.cursor), 2).unwrap();
        assert!(after.changes.is_empty() && !after.resync);
        assert_eq!(after.cursor, rest.cursor);
        assert_eq!(after.cursor, feed.changes(None, 1).unwrap().cursor);
        // Each change's own cursor resumes just after it.
        let from_first = feed.changes(Some(&page.changes[0].cursor), 10).unwrap();
        assert_eq!(ids(&from_first), ["3", "4"]);
    }

    #[test]
    fn cursors_only_grow_within_a_process() {
        let mut feed = Feed::with_epoch("council", 100, 7);
        let mut before = people(&[]);
        let mut cursors = vec![feed.changes(None, 1).unwrap().cursor];
        for n in 1..5u8 {
            let after = people(&[("a", n), ("b", n)]);
            load(&mut feed, Some(&before), &after);
            before = after;
        }
        loop {
            let page = feed.changes(cursors.last(), 1).unwrap();
            if page.changes.is_empty() {
                break;
            }
            cursors.push(page.cursor);
        }
        let positions: Vec<(u64, u64)> = cursors
            .iter()
            .map(|c| {
                let p = Position::decode(&c.0).unwrap();
                let offset = match p.offset {
                    Offset::At(i) => i as u64,
                    Offset::Past => u64::MAX,
                };
                (p.seq, offset)
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        assert_eq!(cursors.len(), 9, "two changes in each of four exports");
    }

    #[test]
    fn an_unknown_or_forgotten_cursor_resynchronises_and_a_malformed_one_is_refused() {
        let mut feed = Feed::with_epoch("council", 3, 7);
        let start = feed.changes(None, 1).unwrap().cursor;
        let a = people(&[("1", 1), ("2", 1)]);
        load(&mut feed, None, &a);
        let at_a = feed.changes(None, 1).unwrap().cursor;
        let b = people(&[("1", 2), ("2", 2)]);
        load(&mut feed, Some(&a), &b);
        // The first transition was dropped to keep at most 3 changes, but a
        // cursor past it is still served.
        let page = feed.changes(Some(&at_a), 10).unwrap();
        assert_eq!(ids(&page), ["1", "2"]);
        let stale = feed.changes(Some(&start), 10).unwrap();
        assert!(stale.resync && stale.changes.is_empty());
        assert_eq!(stale.cursor, feed.changes(None, 1).unwrap().cursor);

        // Another process: up to date only if past the snapshot in service.
        let mut restarted = Feed::with_epoch("council", 3, 8);
        load(&mut restarted, None, &b);
        let current = restarted.changes(Some(&page.cursor), 10).unwrap();
        assert!(!current.resync && current.changes.is_empty());
        assert!(restarted.changes(Some(&at_a), 10).unwrap().resync);
        assert!(
            restarted
                .changes(Some(&page.changes[0].cursor), 10)
                .unwrap()
                .resync
        );

        // More changes in one export than the log keeps.
        let c = people(&[("1", 3), ("2", 3), ("3", 3), ("4", 3)]);
        load(&mut feed, Some(&b), &c);
        assert!(feed.changes(Some(&page.cursor), 10).unwrap().resync);

        for bad in ["", "x", "1.2.3", "7.1.*.zz", "7.1.*.-.9"] {
            let err = feed
                .changes(Some(&ChangeCursor(bad.into())), 1)
                .unwrap_err();
            assert!(matches!(err, ConnectorError::InvalidCursor { .. }), "{bad}");
        }
    }
}
