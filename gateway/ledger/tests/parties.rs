//! Oversight's view of the ledger: both parties to a share, break-glass, date-range pages in time
//! order, the search columns filled in for older entries, and s.45 restrictions.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail by panicking; helpers outside #[test] fns are not exempt"
)]

mod common;

use common::Raw;
use liaison_ledger::test_util::sample_entry;
use liaison_ledger::{
    EntryFilter, IndexUpdate, Ledger, MAX_PAGE, NewEntry, Order, Restriction, StoredEntry,
};
use time::{Duration, OffsetDateTime};

on_both_backends!(
    a_party_sees_its_requests_and_shares_of_its_data,
    date_ranges_page_in_time_order,
    older_entries_are_indexed_once_from_their_bodies,
    restrictions_are_reserved_committed_and_lifted,
);

/// Which entries a filter should return.
type Keep = Box<dyn Fn(&NewEntry) -> bool>;

fn ids(page: &[StoredEntry]) -> Vec<u64> {
    page.iter().map(|e| e.seq).collect()
}

/// Every page of `filter`, `size` at a time.
async fn walk(ledger: &Ledger, filter: &EntryFilter, size: u32) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = ledger.list(filter, size, after).await.unwrap();
        assert!(page.len() <= size as usize);
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        seen.extend(ids(&page));
    }
    seen
}

async fn a_party_sees_its_requests_and_shares_of_its_data(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    let entries: Vec<NewEntry> = (1..=60).map(sample_entry).collect();
    for e in &entries {
        ledger.append(e.clone()).await.unwrap();
    }
    let want = |keep: &dyn Fn(&NewEntry) -> bool| -> Vec<u64> {
        (1..=60u64)
            .rev()
            .filter(|n| keep(&entries[*n as usize - 1]))
            .collect()
    };
    let party = |a: &str| EntryFilter {
        party: Some(a.into()),
        ..EntryFilter::default()
    };
    let cc = |e: &NewEntry| e.index.agency == "norfolk-cc" || e.index.provider == "norfolk-cc";
    // Neither side alone: some entries are norfolk-cc's requests, others shares of its data.
    assert!(
        entries
            .iter()
            .any(|e| e.index.agency == "norfolk-cc" && e.index.provider != "norfolk-cc")
    );
    assert!(
        entries
            .iter()
            .any(|e| e.index.agency != "norfolk-cc" && e.index.provider == "norfolk-cc")
    );
    assert!(entries.iter().any(|e| !cc(e)));
    let all = ledger
        .list(&party("norfolk-cc"), MAX_PAGE, None)
        .await
        .unwrap();
    assert_eq!(ids(&all), want(&cc));
    // Both sides of a self-share are one entry, listed once.
    assert!(
        entries
            .iter()
            .any(|e| e.index.agency == "norfolk-cc" && e.index.provider == "norfolk-cc")
    );
    for size in [1, 4, 7] {
        assert_eq!(
            walk(&ledger, &party("norfolk-cc"), size).await,
            want(&cc),
            "pages of {size}"
        );
    }
    let oldest = EntryFilter {
        order: Order::OldestFirst,
        ..party("norfolk-cc")
    };
    let mut rising = want(&cc);
    rising.reverse();
    assert_eq!(walk(&ledger, &oldest, 5).await, rising);

    let cases: Vec<(EntryFilter, Keep)> = vec![
        (
            EntryFilter {
                provider: Some("nhs-norfolk".into()),
                ..EntryFilter::default()
            },
            Box::new(|e| e.index.provider == "nhs-norfolk"),
        ),
        (
            // Break-glass shares of nhs-norfolk's data, all made by another agency.
            EntryFilter {
                break_glass: Some(true),
                ..party("nhs-norfolk")
            },
            Box::new(|e| {
                (e.index.agency == "nhs-norfolk" || e.index.provider == "nhs-norfolk")
                    && e.index.break_glass
            }),
        ),
        (
            EntryFilter {
                break_glass: Some(false),
                ..EntryFilter::default()
            },
            Box::new(|e| !e.index.break_glass),
        ),
        (
            EntryFilter {
                subject_ref: Some("person-3".into()),
                ..party("norfolk-cc")
            },
            Box::new(move |e| cc(e) && e.index.subjects.iter().any(|s| s == "person-3")),
        ),
        (
            EntryFilter {
                agency: Some("nhs-norfolk".into()),
                ..party("norfolk-cc")
            },
            Box::new(move |e| e.index.agency == "nhs-norfolk" && e.index.provider == "norfolk-cc"),
        ),
        (party("nobody"), Box::new(|_| false)),
    ];
    for (filter, keep) in &cases {
        let expected = want(keep.as_ref());
        assert!(!expected.is_empty() || filter.party.as_deref() == Some("nobody"));
        assert_eq!(walk(&ledger, filter, 3).await, expected, "{filter:?}");
    }
    let stored = ledger.get_by_seq(6).await.unwrap().unwrap();
    assert_eq!(
        (stored.index.provider.as_str(), stored.index.break_glass),
        ("nhs-norfolk", true)
    );
}

async fn date_ranges_page_in_time_order(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    // Times out of sequence order, as concurrent appenders leave them, with ties.
    let base = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let minutes = [5i64, 3, 9, 1, 3, 7, 2, 8, 3, 6, 4, 0];
    for (i, m) in minutes.iter().enumerate() {
        let mut e = sample_entry(i as u64 + 1);
        e.recorded_at = base + Duration::minutes(*m);
        e.index.agency = "norfolk-cc".into();
        ledger.append(e).await.unwrap();
    }
    let filter = EntryFilter {
        party: Some("norfolk-cc".into()),
        from: Some(base + Duration::minutes(1)),
        until: Some(base + Duration::minutes(9)),
        ..EntryFilter::default()
    };
    // (time, seq) descending, 9 and 0 minutes outside the range.
    let mut want: Vec<(i64, u64)> = minutes
        .iter()
        .enumerate()
        .filter(|(_, m)| (1..9).contains(*m))
        .map(|(i, m)| (*m, i as u64 + 1))
        .collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    let want: Vec<u64> = want.into_iter().map(|(_, s)| s).collect();
    for size in [1, 2, 3, 50] {
        assert_eq!(walk(&ledger, &filter, size).await, want, "pages of {size}");
    }
    let oldest = EntryFilter {
        order: Order::OldestFirst,
        ..filter.clone()
    };
    let mut rising = want.clone();
    rising.reverse();
    assert_eq!(walk(&ledger, &oldest, 2).await, rising);
}

async fn older_entries_are_indexed_once_from_their_bodies(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    // Entries as a ledger from before the columns held them: defaults, the facts in the body.
    for n in 1..=25u64 {
        let mut e = sample_entry(n);
        e.index.provider = String::new();
        e.index.break_glass = false;
        e.body = format!(
            "provider={};glass={}",
            sample_entry(n).index.provider,
            n % 6 == 0
        )
        .into_bytes();
        ledger.append(e).await.unwrap();
    }
    let raw = Raw::connect(url).await;
    // What the migration records for a ledger of 20 entries; the last 5 came after it.
    raw.exec("UPDATE ledger_index_backfill SET end_seq = 20")
        .await;
    let derive = |body: &[u8]| {
        let text = std::str::from_utf8(body).ok()?;
        let (provider, glass) = text.strip_prefix("provider=")?.split_once(";glass=")?;
        Some(IndexUpdate {
            provider: provider.to_owned(),
            break_glass: glass == "true",
        })
    };
    assert_eq!(ledger.backfill_index(derive).await.unwrap(), 20);
    assert_eq!(ledger.backfill_index(derive).await.unwrap(), 0, "done once");
    for n in 1..=25u64 {
        let e = ledger.get_by_seq(n).await.unwrap().unwrap();
        let want = if n <= 20 {
            (sample_entry(n).index.provider, n % 6 == 0)
        } else {
            (String::new(), false)
        };
        assert_eq!((e.index.provider, e.index.break_glass), want, "entry {n}");
    }
    let found = ledger
        .list(
            &EntryFilter {
                provider: Some("nhs-norfolk".into()),
                ..EntryFilter::default()
            },
            MAX_PAGE,
            None,
        )
        .await
        .unwrap();
    assert_eq!(ids(&found), vec![18, 14, 10, 6, 2]);
    // Once filled, never again; entries after the migration never; other columns never.
    for sql in [
        "UPDATE audit_entries SET provider = 'someone-else' WHERE seq = 2",
        "UPDATE audit_entries SET provider = 'someone-else' WHERE seq = 23",
        "UPDATE audit_entries SET purpose = 'other' WHERE seq = 3",
        "UPDATE audit_entries SET agency = 'x', provider = 'y' WHERE seq = 3",
    ] {
        let err = raw.try_exec(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    ledger.verify().await.unwrap();
}

async fn restrictions_are_reserved_committed_and_lifted(url: &str) {
    let ledger = Ledger::connect(url).await.unwrap();
    for n in 1..=3 {
        ledger.append(sample_entry(n)).await.unwrap();
    }
    let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let restriction = |id: &str, seq: u64, days: i64, minutes: i64| Restriction {
        id: id.into(),
        seq,
        until: at + Duration::days(days),
        reason: "live investigation OP-HERON".into(),
        agency: "norfolk-police".into(),
        restricted_by: "dpo-1".into(),
        recorded_at: at + Duration::minutes(minutes),
    };
    let first = restriction("r-1", 2, 30, 0);
    ledger.reserve_restriction(&first).await.unwrap();
    assert!(
        ledger.restrictions(&[1, 2, 3]).await.unwrap().is_empty(),
        "reserved is not in force"
    );
    ledger.commit_restriction("r-1").await.unwrap();
    let found = ledger.restrictions(&[1, 2, 3]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[&2], first);
    assert!(found[&2].in_force(at + Duration::days(29)));
    assert!(
        !found[&2].in_force(at + Duration::days(30)),
        "the date ends it"
    );

    // A later restriction of the same entry is the one that counts.
    let second = restriction("r-2", 2, 90, 5);
    ledger.reserve_restriction(&second).await.unwrap();
    ledger.commit_restriction("r-2").await.unwrap();
    assert_eq!(ledger.restrictions(&[2]).await.unwrap()[&2], second);

    // One whose record failed is abandoned, never honoured.
    ledger
        .reserve_restriction(&restriction("r-3", 3, 30, 0))
        .await
        .unwrap();
    ledger.abandon_restriction("r-3").await.unwrap();
    ledger.commit_restriction("r-3").await.unwrap();
    assert!(!ledger.restrictions(&[3]).await.unwrap().contains_key(&3));

    assert_eq!(ledger.lift_restrictions(2, "lift-1").await.unwrap(), 2);
    assert!(ledger.restrictions(&[2]).await.unwrap().is_empty());
    assert_eq!(ledger.lift_restrictions(2, "lift-2").await.unwrap(), 0);
    // The entry itself never changed.
    ledger.verify().await.unwrap();
}
