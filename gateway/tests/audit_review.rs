//! `liaison audit queue` and `liaison audit review` as a DPO runs them
//! against the ledger: the queue lists an emergency-access share until a
//! review names it, and a review is refused without a real note or for
//! another agency's entry; `liaison audit restrict` and `lift` withhold a
//! share from subject access reports and release it, each recorded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use liaison_gateway::share::audit;
use liaison_ledger::{EntryFilter, Ledger, test_util::fresh_sqlite_db};
use liaison_proto::v1 as pb;
use prost::Message;

const GLASS: &str = "0197a1b2-0000-7000-8000-000000000001";
const THEIRS: &str = "0197a1b2-0000-7000-8000-000000000002";

/// Noon on the latest weekday before now, so no out-of-hours flag joins
/// the queue whenever the test runs.
fn working_hours() -> prost_types::Timestamp {
    let now = time::OffsetDateTime::now_utc();
    let mut t = now.replace_time(time::macros::time!(12:00));
    while t > now || matches!(t.weekday(), time::Weekday::Saturday | time::Weekday::Sunday) {
        t -= time::Duration::days(1);
    }
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: 0,
    }
}

fn share(id: &str, agency: &str, reason: &str) -> pb::AuditEntry {
    pb::AuditEntry {
        format_version: 1,
        entry_id: id.into(),
        recorded_at: Some(working_hours()),
        principal: Some(pb::AuditPrincipal {
            agency_id: agency.into(),
            subject: "pc-4471".into(),
            ..Default::default()
        }),
        recipient_agency_id: agency.into(),
        action: pb::AuditAction::Read as i32,
        purpose: "missing-person".into(),
        isa_id: "met-hackney-children".into(),
        allowed: true,
        outcome: pb::AuditOutcome::Disclosed as i32,
        break_glass: Some(pb::BreakGlass {
            reason: reason.into(),
        }),
        ..Default::default()
    }
}

fn liaison(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_liaison"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_break_glass_share_waits_in_the_queue_until_reviewed_from_the_command_line() {
    let (url, _dir) = fresh_sqlite_db();
    let ledger = Ledger::connect(&url).await.unwrap();
    audit::append(
        &ledger,
        &share(GLASS, "met-police", "child missing overnight"),
    )
    .await
    .unwrap();
    audit::append(&ledger, &share(THEIRS, "hackney", "their own emergency"))
        .await
        .unwrap();

    let (code, out, err) = liaison(&["audit", "queue", "--ledger", &url, "--agency", "met-police"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(&fields[..3], ["unreviewed", "Break-glass", GLASS]);
    assert!(fields[5].contains("child missing overnight"), "{out}");
    assert!(err.contains("1 unreviewed of 1 items"), "{err}");

    let (code, _, err) = liaison(&[
        "audit",
        "review",
        GLASS,
        "--ledger",
        &url,
        "--agency",
        "met-police",
        "--reviewer",
        "u-dpo-1",
        "--note",
        "fine",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("at least 10 characters"), "{err}");
    let (code, _, err) = liaison(&[
        "audit",
        "review",
        THEIRS,
        "--ledger",
        &url,
        "--agency",
        "met-police",
        "--reviewer",
        "u-dpo-1",
        "--note",
        "checked with the duty manager",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("was not found among agency `met-police`"),
        "{err}"
    );
    let (code, _, err) = liaison(&[
        "audit",
        "review",
        GLASS,
        "--ledger",
        &url,
        "--reviewer",
        "u-dpo-1",
        "--note",
        "checked with the duty manager",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("give --agency"), "{err}");

    let (code, out, err) = liaison(&[
        "audit",
        "review",
        GLASS,
        "--ledger",
        &url,
        "--agency",
        "met-police",
        "--reviewer",
        "u-dpo-1",
        "--name",
        "Dana Okafor",
        "--note",
        "checked with the duty manager",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("review of {GLASS} recorded as entry ")),
        "{out}"
    );

    let reviews = ledger
        .list(
            &EntryFilter {
                action: Some("review".into()),
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(reviews.len(), 1);
    let r = pb::AuditEntry::decode(reviews[0].body.as_slice()).unwrap();
    assert_eq!(r.target, GLASS);
    assert_eq!(r.outcome, pb::AuditOutcome::Recorded as i32);
    assert_eq!(r.justification, "checked with the duty manager");
    assert!(r.allowed);
    let p = r.principal.unwrap();
    assert_eq!(
        (
            p.agency_id.as_str(),
            p.subject.as_str(),
            p.display_name.as_str()
        ),
        ("met-police", "u-dpo-1", "Dana Okafor")
    );

    let (code, out, err) = liaison(&["audit", "queue", "--ledger", &url, "--agency", "met-police"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("0 unreviewed of 1 items"), "{err}");
    let (_, out, _) = liaison(&[
        "audit",
        "queue",
        "--ledger",
        &url,
        "--agency",
        "met-police",
        "--all",
    ]);
    assert!(out.starts_with("reviewed\tBreak-glass\t"), "{out}");
}

#[tokio::test]
async fn a_share_is_restricted_and_lifted_from_the_command_line() {
    let (url, _dir) = fresh_sqlite_db();
    let ledger = Ledger::connect(&url).await.unwrap();
    let mut disclosed = share(GLASS, "met-police", "child missing overnight");
    disclosed.disclosures = vec![pb::AuditDisclosure {
        dataset_id: "hackney-children".into(),
        person_id: "P-7".into(),
        fields: vec!["name".into()],
        ..Default::default()
    }];
    let seq = audit::append(&ledger, &disclosed).await.unwrap().sequence;
    let theirs = audit::append(&ledger, &share(THEIRS, "hackney", "their own emergency"))
        .await
        .unwrap()
        .sequence;
    let until = (time::OffsetDateTime::now_utc().date() + time::Duration::days(30)).to_string();
    let restrict = |seq: u64, until: &str| {
        liaison(&[
            "audit",
            "restrict",
            &seq.to_string(),
            "--ledger",
            &url,
            "--agency",
            "met-police",
            "--dpo",
            "u-dpo-1",
            "--until",
            until,
            "--reason",
            "Live investigation OP-HERON",
        ])
    };
    let (code, _, err) = restrict(theirs, &until);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("audit entry {theirs} not found")),
        "{err}"
    );
    let (code, _, err) = restrict(seq, "2020-01-01");
    assert_eq!(code, 1);
    assert!(err.contains("must be in the future"), "{err}");
    let (code, out, err) = restrict(seq, &until);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("until {until}")), "{out}");
    let restrictions = ledger.restrictions(&[seq]).await.unwrap();
    assert_eq!(restrictions[&seq].restricted_by, "u-dpo-1");

    let (code, out, err) = liaison(&[
        "audit",
        "lift",
        &seq.to_string(),
        "--ledger",
        &url,
        "--agency",
        "met-police",
        "--dpo",
        "u-dpo-1",
        "--reason",
        "Investigation OP-HERON closed",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("1 restriction(s)"), "{out}");
    assert!(ledger.restrictions(&[seq]).await.unwrap().is_empty());
    // Both recorded, neither counted as a review of the share.
    let (_, out, _) = liaison(&["audit", "queue", "--ledger", &url, "--agency", "met-police"]);
    assert!(
        out.starts_with(&format!("unreviewed\tBreak-glass\t{GLASS}")),
        "{out}"
    );
    let recorded = ledger
        .list(
            &EntryFilter {
                action: Some("review".into()),
                order: liaison_ledger::Order::OldestFirst,
                ..Default::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    let bodies: Vec<pb::AuditEntry> = recorded
        .iter()
        .map(|e| pb::AuditEntry::decode(e.body.as_slice()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.iter().all(|b| b.target == GLASS));
    assert!(!bodies[0].restriction.as_ref().unwrap().lifted);
    assert!(bodies[1].restriction.as_ref().unwrap().lifted);
}
