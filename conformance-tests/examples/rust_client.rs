//! A Liaison client in Rust: search, read, and check the audit receipt.
//!
//! What an integrating agency's system does, with the tonic client that
//! `liaison-proto` generates from the published `.proto` files:
//!
//! 1. get a token from the agency's identity provider (client credentials);
//! 2. search for a person and read their records under a share context
//!    (purpose, justification, agreement);
//! 3. as the agency's DPO, fetch the read's audit entry and its inclusion
//!    proof, and check the proof here, so the receipt is trusted because it
//!    verifies rather than because the gateway says so.
//!
//! ```sh
//! cargo run -p liaison-conformance --example rust_client -- .liaison/demo
//! ```
//! (the argument is a running `liaison demo`'s directory).

use std::time::Duration;

use liaison_ledger::merkle;
use liaison_proto::v1::{
    self as pb, oversight_service_client::OversightServiceClient,
    sharing_service_client::SharingServiceClient,
};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One client of the demo's `demo.json`.
#[derive(serde::Deserialize)]
struct Client {
    token_url: String,
    client_id: String,
    client_secret: String,
}

#[derive(serde::Deserialize)]
struct Demo {
    gateway: String,
    clients: std::collections::BTreeMap<String, Client>,
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4).
async fn token(client: &Client) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Answer {
        access_token: String,
    }
    let answer: Answer = reqwest::Client::new()
        .post(&client.token_url)
        .basic_auth(&client.client_id, Some(&client.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer.access_token)
}

/// A request with a bearer token and a deadline.
fn call<T>(token: &str, message: T) -> Result<Request<T>, Error> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse()?;
    request.metadata_mut().insert("authorization", value);
    request.set_timeout(Duration::from_secs(10));
    Ok(request)
}

fn context() -> pb::ShareContext {
    pb::ShareContext {
        purpose: "safeguarding-children".into(),
        justification: "Section 47 enquiry following a school referral".into(),
        isa_id: "met-hackney-children".into(),
        ..Default::default()
    }
}

fn hash(text: &str) -> Result<merkle::Hash, Error> {
    Ok(hex::decode(text)?
        .try_into()
        .map_err(|_| "a hash is 32 bytes")?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| ".liaison/demo".into());
    let demo: Demo = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/demo.json"))?)?;
    let channel = Channel::from_shared(demo.gateway.clone())?
        .connect()
        .await?;
    let profile = |name: &str| {
        demo.clients
            .get(name)
            .ok_or_else(|| format!("demo.json has no `{name}` client"))
    };
    let worker = token(profile("hackney-social-worker")?).await?;

    let mut sharing = SharingServiceClient::new(channel.clone());
    let found = sharing
        .search_persons(call(
            &worker,
            pb::SearchPersonsRequest {
                context: Some(context()),
                query: Some(pb::PersonQuery {
                    family_name: "Marsh".into(),
                    date_of_birth: Some(pb::Date {
                        year: 2013,
                        month: 5,
                        day: 14,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )?)
        .await?
        .into_inner();
    let person = found
        .matches
        .first()
        .and_then(|m| m.person.clone())
        .ok_or("no match")?;
    println!("found {}", person.person_id);

    let read = sharing
        .get_records(call(
            &worker,
            pb::GetRecordsRequest {
                context: Some(context()),
                person_id: person.person_id.clone(),
                ..Default::default()
            },
        )?)
        .await?
        .into_inner();
    let receipt = read.receipt.ok_or("a read always carries its receipt")?;
    println!(
        "read {} records; receipt {} (#{})",
        read.records.len(),
        receipt.entry_id,
        receipt.sequence
    );

    // The DPO checks the receipt: the stored entry hashes to the receipt's
    // leaf, and the leaf is in the tree the proof names.
    let dpo = token(profile("hackney-dpo")?).await?;
    let mut oversight = OversightServiceClient::new(channel);
    let entry = oversight
        .get_audit_entry(call(
            &dpo,
            pb::GetAuditEntryRequest {
                entry_id: receipt.entry_id.clone(),
            },
        )?)
        .await?
        .into_inner()
        .entry
        .ok_or("no entry")?;
    let leaf = merkle::leaf_hash(&entry.canonical);
    if hex::encode(leaf) != receipt.leaf_hash {
        return Err("the stored entry does not hash to the receipt's leaf".into());
    }
    let proof = oversight
        .get_inclusion_proof(call(
            &dpo,
            pb::GetInclusionProofRequest {
                entry_id: receipt.entry_id.clone(),
                tree_size: 0,
            },
        )?)
        .await?
        .into_inner();
    let path = proof
        .audit_path
        .iter()
        .map(|h| hash(h))
        .collect::<Result<Vec<_>, _>>()?;
    merkle::verify_inclusion(
        &leaf,
        proof.leaf_index,
        proof.tree_size,
        &path,
        &hash(&proof.root_hash)?,
    )?;
    println!(
        "receipt verified: leaf {} of {}, root {}",
        proof.leaf_index, proof.tree_size, proof.root_hash
    );
    Ok(())
}
