//! Streaming resumption: every `Subscribe` message carries a cursor, a
//! subscriber that reconnects with one is resumed from it, and a cursor the
//! gateway did not issue is refused rather than trusted. A heartbeat
//! discloses nothing, so it carries no receipt; a record always does.

use std::{sync::Arc, time::Duration};

use liaison_proto::v1 as pb;
use tonic::{Code, Streaming};

use super::{
    CheckResult, Target, Verdict, contract, ensure, fail,
    status::{expect_error, names_field, unexpected},
};

/// How long a subscriber may wait for its first message. The API sends a
/// heartbeat while nothing changes, so this bounds a quiet stream too.
const FIRST_MESSAGE: Duration = Duration::from_secs(30);

/// A subscription to the first person the settings' search finds.
async fn subscribe(
    t: &Target,
    person_id: &str,
    resume_cursor: &str,
) -> Result<Result<Streaming<pb::SubscribeResponse>, tonic::Status>, Verdict> {
    let req = pb::SubscribeRequest {
        context: Some(t.share.context()),
        person_ids: vec![person_id.to_owned()],
        resume_cursor: resume_cursor.to_owned(),
    };
    let req = t.as_("sharer", req).await?;
    Ok(contract::sharing(t)
        .subscribe(req)
        .await
        .map(tonic::Response::into_inner))
}

/// The first message of a stream, checked for a cursor and for a receipt
/// exactly when it holds a record.
pub(super) async fn first_message(
    what: &str,
    stream: &mut Streaming<pb::SubscribeResponse>,
) -> Result<pb::SubscribeResponse, Verdict> {
    let message = tokio::time::timeout(FIRST_MESSAGE, stream.message())
        .await
        .map_err(|_| {
            fail(format!(
                "{what}: no message within {} s; a quiet stream must send heartbeats",
                FIRST_MESSAGE.as_secs()
            ))
        })?
        .map_err(|s| {
            fail(format!(
                "{what}: the stream failed: {:?}: {}",
                s.code(),
                s.message()
            ))
        })?
        .ok_or_else(|| fail(format!("{what}: the stream ended without a message")))?;
    ensure(!message.cursor.is_empty(), || {
        format!("{what}: a message carries no cursor")
    })?;
    ensure(
        message.record.is_some() == message.receipt.is_some(),
        || {
            format!(
                "{what}: a {} {} a receipt",
                if message.record.is_some() {
                    "record"
                } else {
                    "heartbeat"
                },
                if message.receipt.is_some() {
                    "carries"
                } else {
                    "lacks"
                }
            )
        },
    )?;
    Ok(message)
}

pub async fn resume(t: Arc<Target>) -> CheckResult {
    let found = contract::search(&t, 0).await?;
    let person_id = found
        .matches
        .iter()
        .find_map(|m| m.person.as_ref())
        .map(|p| p.person_id.clone())
        .ok_or_else(|| {
            Verdict::Skip(format!(
                "the search for {} {} found nobody to follow; set [share] in the principals file",
                t.share.given_name, t.share.family_name
            ))
        })?;
    let mut stream = match subscribe(&t, &person_id, "").await? {
        Ok(s) => s,
        Err(s) if s.code() == Code::Unimplemented => {
            expect_error(
                "Subscribe",
                Err::<(), _>(s),
                Code::Unimplemented,
                &["NOT_IMPLEMENTED"],
            )?;
            return Err(Verdict::Skip(
                "this deployment does not offer Subscribe (NOT_IMPLEMENTED)".into(),
            ));
        }
        Err(s) => return Err(unexpected("Subscribe")(s)),
    };
    let first = first_message("Subscribe", &mut stream).await?;
    drop(stream);

    let mut resumed = subscribe(&t, &person_id, &first.cursor)
        .await?
        .map_err(unexpected("Subscribe resumed from its own cursor"))?;
    first_message("Subscribe resumed from its own cursor", &mut resumed).await?;
    drop(resumed);

    // A cursor edited by the client, and one that was never issued.
    let mut edited = first.cursor.clone();
    let last = edited.pop().unwrap_or('A');
    edited.push(if last == 'A' { 'B' } else { 'A' });
    for (what, cursor) in [
        ("Subscribe with an edited cursor", edited),
        (
            "Subscribe with an invented cursor",
            "conformance-invented-cursor".to_owned(),
        ),
    ] {
        let refused = subscribe(&t, &person_id, &cursor).await?;
        let d = expect_error(what, refused, Code::InvalidArgument, &["INVALID_FIELD"])?;
        names_field(what, &d, "resume_cursor")?;
    }
    Ok(())
}
