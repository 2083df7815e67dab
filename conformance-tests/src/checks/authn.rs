//! Authentication negatives: the gateway admits no call it cannot tie to a
//! principal its issuers vouch for, and says why in a published reason.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use liaison_proto::v1::{self as pb, sharing_service_client::SharingServiceClient};
use tonic::{Code, Request};

use super::{CheckResult, Target, Verdict, fail, status::expect_error, target::with_bearer};

fn sharing(t: &Target) -> SharingServiceClient<tonic::transport::Channel> {
    SharingServiceClient::new(t.channel.clone())
}

async fn refused(
    t: &Target,
    what: &str,
    req: Request<pb::ListDatasetsRequest>,
    reasons: &[&str],
) -> CheckResult {
    let result = sharing(t).list_datasets(req).await;
    expect_error(what, result, Code::Unauthenticated, reasons).map(|_| ())
}

pub async fn no_token(t: Arc<Target>) -> CheckResult {
    let req = Request::new(pb::ListDatasetsRequest::default());
    refused(&t, "ListDatasets without a token", req, &["TOKEN_MISSING"]).await
}

pub async fn malformed_token(t: Arc<Target>) -> CheckResult {
    let req = with_bearer("not-a-jwt", pb::ListDatasetsRequest::default());
    refused(
        &t,
        "ListDatasets with `Bearer not-a-jwt`",
        req,
        &["TOKEN_INVALID"],
    )
    .await
}

pub async fn forged_signature(t: Arc<Target>) -> CheckResult {
    let token = t.token("sharer").await?;
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| fail("the sharer's token is not a compact JWS"))?;
    let mut sig = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| fail("the sharer's token signature is not base64url"))?;
    if let Some(b) = sig.first_mut() {
        *b ^= 0x01;
    }
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
    let req = with_bearer(&forged, pb::ListDatasetsRequest::default());
    refused(
        &t,
        "ListDatasets with an altered signature",
        req,
        &["TOKEN_INVALID"],
    )
    .await
}

/// With a genuinely expired token (`[principals.expired]`) the check proves
/// the gateway reads `exp`; without one it moves a real token's `exp` into
/// the past, which a sound gateway refuses for the broken signature or the
/// expiry, and an unsound one accepts.
pub async fn expired_token(t: Arc<Target>) -> CheckResult {
    let token = if t.has("expired") {
        t.token("expired").await?
    } else {
        backdated(&t.token("sharer").await?)?
    };
    let req = with_bearer(&token, pb::ListDatasetsRequest::default());
    refused(
        &t,
        "ListDatasets with an expired token",
        req,
        &["TOKEN_EXPIRED", "TOKEN_INVALID"],
    )
    .await
}

pub async fn wrong_audience(t: Arc<Target>) -> CheckResult {
    if !t.has("wrong_audience") {
        return Err(Verdict::Skip(
            "needs a `wrong_audience` principal: a token the deployment's issuer made for another audience".into(),
        ));
    }
    let token = t.token("wrong_audience").await?;
    let req = with_bearer(&token, pb::ListDatasetsRequest::default());
    refused(
        &t,
        "ListDatasets with a token for another audience",
        req,
        &["TOKEN_INVALID"],
    )
    .await
}

/// `token` with `exp` and `iat` an hour and two in the past.
fn backdated(token: &str) -> Result<String, Verdict> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(fail("the sharer's token is not a compact JWS"));
    };
    let mut claims: serde_json::Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fail("the sharer's token payload is not JSON"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if let Some(obj) = claims.as_object_mut() {
        obj.insert("exp".into(), (now.saturating_sub(3600)).into());
        obj.insert("iat".into(), (now.saturating_sub(7200)).into());
        obj.remove("nbf");
    }
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    Ok(format!("{header}.{payload}.{signature}"))
}
