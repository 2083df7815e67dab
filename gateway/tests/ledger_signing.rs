//! Signed tree heads through the running gateway: the sealer signs what the
//! shares appended, `OversightService` serves the signed head and proves
//! entries against it, and the `liaison audit` commands export and verify
//! the ledger with nothing but the public key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use liaison_gateway::config::Config;
use liaison_ledger::{SignedTreeHead, SigningKey, merkle, signed_bytes};
use liaison_proto::v1::{
    self as pb, oversight_service_client::OversightServiceClient,
    sharing_service_client::SharingServiceClient,
};

fn key_file(dir: &Path, name: &str, seed: u8) -> SigningKey {
    let key = SigningKey::from_seed(&[seed; 32]).unwrap();
    std::fs::write(dir.join(name), key.to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.pub")),
        key.verifying_key().to_pem(),
    )
    .unwrap();
    key
}

fn decode_hash(text: &str) -> merkle::Hash {
    hex::decode(text).unwrap().try_into().unwrap()
}

async fn search(world: &World, token: &str) -> pb::Receipt {
    SharingServiceClient::new(world.channel.clone())
        .search_persons(authed(
            token,
            pb::SearchPersonsRequest {
                context: Some(context("safeguarding-children")),
                query: Some(leah()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap()
}

/// Waits until the gateway serves a signed head of at least `size`.
async fn signed_head(
    oversight: &mut OversightServiceClient<tonic::transport::Channel>,
    dpo: &str,
    size: u64,
) -> pb::TreeHead {
    for _ in 0..100 {
        let head = oversight
            .get_tree_head(authed(dpo, pb::GetTreeHeadRequest {}))
            .await
            .unwrap()
            .into_inner()
            .head
            .unwrap();
        if !head.signature.is_empty() && head.tree_size >= size {
            return head;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no signed head of size {size} within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_are_sealed_served_signed_and_verify_offline() {
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path(), "ledger.pem", 7);
    let witness = keys.path().join("witness.jsonl");
    let world = World::start_with(None, |text| {
        text.replace(
            "[policy]",
            &format!(
                "signing_key_file = \"{}\"\nseal_interval_ms = 100\nwitness_file = \"{}\"\n[policy]",
                keys.path().join("ledger.pem").display(),
                witness.display()
            ),
        )
    })
    .await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let dpo = world.hackney.token(COUNCIL_DPO).await.unwrap();
    let mut receipts = Vec::new();
    for _ in 0..3 {
        receipts.push(search(&world, &sw).await);
    }
    let mut oversight = OversightServiceClient::new(world.channel.clone());
    // Start-up imports (agreements, issuers) come first: wait for a head
    // covering the last search.
    let last = receipts.last().unwrap().sequence;
    let head = signed_head(&mut oversight, &dpo, last).await;

    // The served head is the sealer's, signed with the configured key.
    assert_eq!(head.key_id, key.key_id().to_string());
    let timestamp = head.timestamp.unwrap();
    let millis = u64::try_from(timestamp.seconds).unwrap() * 1000
        + u64::try_from(timestamp.nanos).unwrap() / 1_000_000;
    let signed = SignedTreeHead {
        size: head.tree_size,
        root: decode_hash(&head.root_hash),
        timestamp: millis,
        key_id: key.key_id(),
        signature: hex::decode(&head.signature).unwrap().try_into().unwrap(),
    };
    assert_eq!(
        signed.signed_bytes(),
        signed_bytes(millis, signed.size, &signed.root)
    );
    key.verifying_key().verify(&signed).unwrap();
    let mut forged = signed;
    forged.root[0] ^= 1;
    assert!(key.verifying_key().verify(&forged).is_err());

    // By default an entry is proved against that signed head.
    for receipt in &receipts {
        let proof = oversight
            .get_inclusion_proof(authed(
                &dpo,
                pb::GetInclusionProofRequest {
                    entry_id: receipt.entry_id.clone(),
                    tree_size: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(proof.tree_size, head.tree_size);
        assert_eq!(proof.root_hash, head.root_hash);
        let path: Vec<merkle::Hash> = proof.audit_path.iter().map(|h| decode_hash(h)).collect();
        merkle::verify_inclusion(
            &decode_hash(&receipt.leaf_hash),
            receipt.sequence - 1,
            proof.tree_size,
            &path,
            &signed.root,
        )
        .unwrap();
    }

    // The witness file holds the head, signed.
    let witnessed = liaison_ledger::read_witness_file(&witness, &key.verifying_key()).unwrap();
    assert!(witnessed.contains(&signed), "{witnessed:?}");

    // Export and verify from the command line, as a DPO's auditor would.
    let config = world.config_path();
    let export = keys.path().join("export.jsonl");
    let liaison = env!("CARGO_BIN_EXE_liaison");
    let run = |args: &[&str]| {
        let out = Command::new(liaison).args(args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&[
        "audit",
        "export",
        "--config",
        config.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let public = keys.path().join("ledger.pem.pub");
    let (code, out, err) = run(&[
        "audit",
        "verify",
        "--export",
        export.to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
        "--witness",
        witness.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("export verifies"), "{out}");
    let (code, out, err) = run(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("by key {}", key.key_id())), "{out}");

    // A foreign key does not verify the export, and says whose signature it is.
    key_file(keys.path(), "other.pem", 8);
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--export",
        export.to_str().unwrap(),
        "--public-key",
        keys.path().join("other.pem.pub").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&key.key_id().to_string()), "{err}");
}

/// After a key rotation the old key is kept as a previous public key: the
/// gateway signs with the new key and both generations verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_keeps_old_heads_verifiable() {
    let keys = tempfile::tempdir().unwrap();
    let old = key_file(keys.path(), "old.pem", 1);
    let new = key_file(keys.path(), "new.pem", 2);
    let ledger_path = keys.path().join("ledger.db");
    let ledger_url = format!("sqlite://{}", ledger_path.display());
    let seal_with = |file: &'static str, previous: bool| {
        let dir = keys.path().to_owned();
        move |text: String| {
            let extra = if previous {
                format!(
                    "previous_public_keys = [\"{}\"]\n",
                    dir.join("old.pem.pub").display()
                )
            } else {
                String::new()
            };
            text.replace(
                "[policy]",
                &format!(
                    "signing_key_file = \"{}\"\nseal_interval_ms = 100\n{extra}[policy]",
                    dir.join(file).display()
                ),
            )
        }
    };
    {
        let world = World::start_with(Some(ledger_url.clone()), seal_with("old.pem", false)).await;
        let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
        let dpo = world.hackney.token(COUNCIL_DPO).await.unwrap();
        search(&world, &sw).await;
        let mut oversight = OversightServiceClient::new(world.channel.clone());
        assert_eq!(
            signed_head(&mut oversight, &dpo, 1).await.key_id,
            old.key_id().to_string()
        );
        world.gateway.shutdown().await.unwrap();
    }
    let world = World::start_with(Some(ledger_url), seal_with("new.pem", true)).await;
    let sw = world.hackney.token(SOCIAL_WORKER).await.unwrap();
    let dpo = world.hackney.token(COUNCIL_DPO).await.unwrap();
    search(&world, &sw).await;
    let mut oversight = OversightServiceClient::new(world.channel.clone());
    assert_eq!(
        signed_head(&mut oversight, &dpo, 2).await.key_id,
        new.key_id().to_string()
    );

    let config = Config::load(&world.config_path()).unwrap();
    let ring = config.ledger_keys().unwrap().ring;
    assert_eq!(ring.keys().len(), 2);
    let report = world
        .gateway
        .ledger
        .verify_signed(&ring, &[])
        .await
        .unwrap();
    assert_eq!(report.latest_head.unwrap().key_id, new.key_id());
    // Without the old key the first head is named as signed by an unknown key.
    let only_new = liaison_ledger::KeyRing::from(new.verifying_key());
    let err = world
        .gateway
        .ledger
        .verify_signed(&only_new, &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&old.key_id().to_string()), "{err}");
}

/// A signing key that cannot be read stops start-up and names its line.
#[test]
fn an_unreadable_signing_key_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.pem"), "not a key").unwrap();
    let text = "version = 1\n[ledger]\nurl = \"sqlite://l.db\"\nsigning_key_file = \"bad.pem\"\nprevious_public_keys = [\"missing.pub\"]\nseal_interval_ms = 5\n[policy]\nfile = \"p.toml\"\n";
    let err = Config::parse(text, Path::new("liaison.toml"), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("liaison.toml:4:") && err.contains("ledger.signing_key_file"),
        "{err}"
    );
    assert!(
        err.contains("liaison.toml:5:") && err.contains("ledger.previous_public_keys[0]"),
        "{err}"
    );
    assert!(
        err.contains("liaison.toml:6:") && err.contains("ledger.seal_interval_ms"),
        "{err}"
    );
}
