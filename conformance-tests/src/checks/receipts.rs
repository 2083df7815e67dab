//! Every share leaves a receipt a DPO can resolve and anyone can check: the
//! entry's canonical bytes hash to the receipt's leaf, and the leaf is in the
//! tree the gateway publishes. The proof is verified here with RFC 9162
//! arithmetic (the ledger crate's, which the offline verifier also uses), so
//! a gateway cannot pass by asserting its own honesty.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use liaison_ledger::merkle;
use liaison_proto::v1 as pb;
use tonic::Code;

use super::{CheckResult, Target, Verdict, contract, ensure, fail, status::unexpected};

/// A 32-byte hash from lowercase or uppercase hex.
pub fn hash32(hex_text: &str) -> Option<[u8; 32]> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

fn hashes(what: &str, list: &[String]) -> Result<Vec<[u8; 32]>, Verdict> {
    list.iter()
        .map(|h| hash32(h).ok_or_else(|| fail(format!("{what}: `{h}` is not a 32-byte hex hash"))))
        .collect()
}

pub(super) async fn tree_head(t: &Target) -> Result<pb::TreeHead, Verdict> {
    contract::oversight(t)
        .get_tree_head(t.as_("overseer", pb::GetTreeHeadRequest {}).await?)
        .await
        .map_err(unexpected("GetTreeHead"))?
        .into_inner()
        .head
        .ok_or_else(|| fail("GetTreeHead answered without a head"))
}

/// How long a published head may lag a receipt the gateway already issued.
const HEAD_CATCH_UP: Duration = Duration::from_secs(5);

/// The current head and an inclusion proof against it, for a head that
/// covers the receipt.
///
/// The receipt is sent only after its entry is durable, so the head should
/// already cover it; a gateway reading the head through a lagging
/// connection or replica is given [`HEAD_CATCH_UP`] to do so, and fails
/// after that with what it published.
async fn head_and_proof(
    t: &Target,
    what: &str,
    receipt: &pb::Receipt,
) -> Result<(pb::TreeHead, pb::GetInclusionProofResponse), Verdict> {
    let started = Instant::now();
    loop {
        let head = tree_head(t).await?;
        let req = pb::GetInclusionProofRequest {
            entry_id: receipt.entry_id.clone(),
            tree_size: head.tree_size,
        };
        let lagging = head.tree_size < receipt.sequence;
        let answer = if lagging {
            None
        } else {
            match contract::oversight(t)
                .get_inclusion_proof(t.as_("overseer", req).await?)
                .await
            {
                Ok(p) => Some(p.into_inner()),
                // The proof's own read of the ledger size may lag too.
                Err(s)
                    if s.code() == Code::InvalidArgument && started.elapsed() < HEAD_CATCH_UP =>
                {
                    None
                }
                Err(s) => return Err(unexpected("GetInclusionProof")(s)),
            }
        };
        match answer {
            Some(proof) => return Ok((head, proof)),
            None if started.elapsed() >= HEAD_CATCH_UP => {
                return Err(fail(format!(
                    "{what}: receipt {} (sequence {}) is still outside the published tree of {} entries after {} ms",
                    receipt.entry_id,
                    receipt.sequence,
                    head.tree_size,
                    HEAD_CATCH_UP.as_millis()
                )));
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub(super) fn verify_consistency(p: &pb::GetConsistencyProofResponse) -> CheckResult {
    let proof = hashes("GetConsistencyProof", &p.proof)?;
    let (Some(first), Some(second)) = (hash32(&p.first_root), hash32(&p.second_root)) else {
        return Err(fail(
            "GetConsistencyProof: a root is not a 32-byte hex hash",
        ));
    };
    merkle::verify_consistency(p.first_size, p.second_size, &first, &second, &proof).map_err(|e| {
        fail(format!(
            "GetConsistencyProof {}→{}: {e}",
            p.first_size, p.second_size
        ))
    })
}

/// Resolves `receipt` as the overseer and verifies it end to end.
pub async fn verify_receipt(t: &Target, what: &str, receipt: Option<&pb::Receipt>) -> CheckResult {
    let receipt =
        receipt.ok_or_else(|| fail(format!("{what}: the share answered without a receipt")))?;
    ensure(!receipt.entry_id.is_empty(), || {
        format!("{what}: the receipt names no entry")
    })?;
    let stored = contract::oversight(t)
        .get_audit_entry(
            t.as_(
                "overseer",
                pb::GetAuditEntryRequest {
                    entry_id: receipt.entry_id.clone(),
                },
            )
            .await?,
        )
        .await
        .map_err(|s| {
            fail(format!(
                "{what}: receipt `{}` does not resolve: {:?} {}",
                receipt.entry_id,
                s.code(),
                s.message()
            ))
        })?
        .into_inner()
        .entry
        .ok_or_else(|| fail(format!("{what}: GetAuditEntry answered without an entry")))?;
    let leaf = merkle::leaf_hash(&stored.canonical);
    let leaf_hex = hex::encode(leaf);
    ensure(leaf_hex == stored.leaf_hash.to_ascii_lowercase(), || {
        format!(
            "{what}: the entry's canonical bytes hash to {leaf_hex}, the ledger says {}",
            stored.leaf_hash
        )
    })?;
    ensure(leaf_hex == receipt.leaf_hash.to_ascii_lowercase(), || {
        format!(
            "{what}: the receipt's leaf {} is not the entry's {leaf_hex}",
            receipt.leaf_hash
        )
    })?;
    ensure(
        stored
            .entry
            .as_ref()
            .is_some_and(|e| e.entry_id == receipt.entry_id),
        || {
            format!(
                "{what}: GetAuditEntry({}) answered another entry",
                receipt.entry_id
            )
        },
    )?;

    let (head, proof) = head_and_proof(t, what, receipt).await?;
    let path = hashes("GetInclusionProof", &proof.audit_path)?;
    let root = hash32(&proof.root_hash).ok_or_else(|| {
        fail(format!(
            "{what}: the proof's root is not a 32-byte hex hash"
        ))
    })?;
    ensure(
        proof.tree_size == head.tree_size && proof.root_hash.eq_ignore_ascii_case(&head.root_hash),
        || {
            format!(
                "{what}: the proof is for tree {} ({}), the published head is {} ({})",
                proof.tree_size, proof.root_hash, head.tree_size, head.root_hash
            )
        },
    )?;
    merkle::verify_inclusion(&leaf, proof.leaf_index, proof.tree_size, &path, &root).map_err(|e| {
        fail(format!(
            "{what}: inclusion proof for leaf {} in tree {} does not verify: {e}",
            proof.leaf_index, proof.tree_size
        ))
    })
}

pub async fn search(t: Arc<Target>) -> CheckResult {
    let found = contract::search(&t, 0).await?;
    verify_receipt(&t, "SearchPersons", found.receipt.as_ref()).await
}

pub async fn records(t: Arc<Target>) -> CheckResult {
    let read = contract::read_first(&t).await?;
    verify_receipt(&t, "GetRecords", read.receipt.as_ref()).await
}
