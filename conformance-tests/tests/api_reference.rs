//! `docs/api-reference.md` is what `proto-doc` generates from the compiled
//! descriptors, so a change to a `.proto` comment cannot leave the published
//! reference behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn the_committed_api_reference_is_the_generated_one() {
    let generated =
        liaison_conformance::protodoc::render(liaison_proto::FILE_DESCRIPTOR_SET).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api-reference.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api-reference.md is stale; run `cargo run -p liaison-conformance --bin proto-doc`"
    );
}

#[test]
fn the_reference_documents_every_rpc_and_carries_the_proto_comments() {
    let text = liaison_conformance::protodoc::render(liaison_proto::FILE_DESCRIPTOR_SET).unwrap();
    for rpc in [
        "SearchPersons(",
        "GetRecords(",
        "GetInclusionProof(",
        "GetAgreement(",
        "Subscribe(",
    ] {
        assert!(text.contains(rpc), "{rpc} missing");
    }
    assert!(text.contains("### enum `ErrorReason`"));
    assert!(text.contains("ERROR_REASON_ISA_UNKNOWN"));
    // A field comment, not just a name: the generator read source info.
    assert!(
        text.lines()
            .filter(|l| l.starts_with("| `purpose` |"))
            .all(|l| l.len() > 40)
    );
}
