use super::*;

// Known answers from transparency-dev/merkle, `proof/verify_test.go` at commit
// 02194e9afb6c1d95b5381350007963aa70fff472 (the RFC 6962 vectors that Certificate Transparency
// implementations share; also in google/certificate-transparency-go `merkletree`).

/// The eight leaf inputs, hex.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// MTH of the first 1..=8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf, 1-based as in the source; tree size; audit path).
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        3,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        2,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

const EMPTY_ROOT_HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn h(hex: &str) -> Hash {
    hex::decode(hex).unwrap().try_into().unwrap()
}

fn hashes(hexes: &[&str]) -> Vec<Hash> {
    hexes.iter().map(|x| h(x)).collect()
}

fn vector_leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|x| leaf_hash(&hex::decode(x).unwrap()))
        .collect()
}

/// Leaves for the exhaustive checks: distinct, and not the vector leaves.
fn numbered_leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn flip(hash: &Hash, byte: usize, bit: u8) -> Hash {
    let mut out = *hash;
    out[byte] ^= 1 << bit;
    out
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(empty_root(), h(EMPTY_ROOT_HEX));
    assert_eq!(root(&[]), h(EMPTY_ROOT_HEX));
    assert_eq!(RootBuilder::new().root(), h(EMPTY_ROOT_HEX));
}

#[test]
fn known_roots() {
    let leaves = vector_leaves();
    for (n, want) in ROOTS.iter().enumerate() {
        let prefix = &leaves[..=n];
        assert_eq!(root(prefix), h(want), "root of {} leaves", n + 1);
        let mut builder = RootBuilder::new();
        prefix.iter().for_each(|l| builder.push(*l));
        assert_eq!(builder.root(), h(want), "streamed root of {} leaves", n + 1);
        assert_eq!(builder.size(), n as u64 + 1);
    }
}

#[test]
fn known_inclusion_proofs() {
    let leaves = vector_leaves();
    for (leaf, size, want) in INCLUSION {
        let tree = &leaves[..size as usize];
        let proof = inclusion_proof(leaf - 1, tree).unwrap();
        assert_eq!(proof, hashes(want), "path for leaf {leaf} of {size}");
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(&leaves[leaf as usize - 1], leaf - 1, size, &proof, &root).unwrap();
        for bad in corrupt_inclusion(leaf - 1, size, &proof) {
            assert!(
                verify_inclusion(
                    &leaves[leaf as usize - 1],
                    bad.index,
                    bad.size,
                    &bad.proof,
                    &root
                )
                .is_err(),
                "leaf {leaf} of {size}: {} verified",
                bad.what
            );
        }
    }
}

#[test]
fn known_consistency_proofs() {
    let leaves = vector_leaves();
    for (old, new, want) in CONSISTENCY {
        let proof = consistency_proof(old, &leaves[..new as usize]).unwrap();
        assert_eq!(proof, hashes(want), "proof {old} -> {new}");
        let (old_root, new_root) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
        verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
        if old < new {
            for bad in corrupt_consistency(old, new, &old_root, &new_root, &proof) {
                assert!(
                    verify_consistency(bad.old, bad.new, &bad.old_root, &bad.new_root, &bad.proof)
                        .is_err(),
                    "{old} -> {new}: {} verified",
                    bad.what
                );
            }
        }
    }
}

#[test]
fn every_inclusion_proof_up_to_64_leaves() {
    let all = numbered_leaves(64);
    for size in 1..=64u64 {
        let tree = &all[..size as usize];
        let root = root(tree);
        for index in 0..size {
            let leaf = &tree[index as usize];
            let proof = inclusion_proof(index, tree).unwrap();
            verify_inclusion(leaf, index, size, &proof, &root)
                .unwrap_or_else(|e| panic!("leaf {index} of {size}: {e}"));
            for bad in corrupt_inclusion(index, size, &proof) {
                assert!(
                    verify_inclusion(leaf, bad.index, bad.size, &bad.proof, &root).is_err(),
                    "leaf {index} of {size}: {} verified",
                    bad.what
                );
            }
            // The right proof for the wrong leaf.
            assert!(verify_inclusion(&flip(leaf, 0, 0), index, size, &proof, &root).is_err());
            assert!(verify_inclusion(leaf, index, size, &proof, &flip(&root, 31, 7)).is_err());
        }
        assert_eq!(
            inclusion_proof(size, tree),
            Err(LedgerError::IndexOutOfRange { index: size, size })
        );
    }
}

#[test]
fn every_consistency_proof_up_to_64_leaves() {
    let all = numbered_leaves(64);
    let roots: Vec<Hash> = (0..=64).map(|n| root(&all[..n])).collect();
    for new in 1..=64u64 {
        let tree = &all[..new as usize];
        for old in 0..=new {
            let proof = consistency_proof(old, tree).unwrap();
            let (old_root, new_root) = (roots[old as usize], roots[new as usize]);
            verify_consistency(old, new, &old_root, &new_root, &proof)
                .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
            if old == 0 || old == new {
                assert!(proof.is_empty());
                // A trivial case still needs the right roots.
                assert!(
                    verify_consistency(old, new, &flip(&old_root, 0, 1), &new_root, &proof)
                        .is_err()
                );
                continue;
            }
            for bad in corrupt_consistency(old, new, &old_root, &new_root, &proof) {
                assert!(
                    verify_consistency(bad.old, bad.new, &bad.old_root, &bad.new_root, &bad.proof)
                        .is_err(),
                    "{old} -> {new}: {} verified",
                    bad.what
                );
            }
        }
        assert_eq!(
            consistency_proof(new + 1, tree),
            Err(LedgerError::InvalidSizes { old: new + 1, new })
        );
    }
}

#[test]
fn streamed_root_matches_recursive_root() {
    let all = numbered_leaves(300);
    let mut builder = RootBuilder::new();
    for (n, leaf) in all.iter().enumerate() {
        builder.push(*leaf);
        assert_eq!(builder.root(), root(&all[..=n]), "size {}", n + 1);
    }
}

#[test]
fn degenerate_inputs_are_errors_not_panics() {
    let leaf = leaf_hash(b"x");
    assert_eq!(
        inclusion_proof(0, &[]),
        Err(LedgerError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        inclusion_proof(u64::MAX, &[leaf]),
        Err(LedgerError::IndexOutOfRange {
            index: u64::MAX,
            size: 1
        })
    );
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &empty_root()),
        Err(LedgerError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert!(verify_inclusion(&leaf, u64::MAX, u64::MAX, &[leaf; 64], &leaf).is_err());
    assert!(verify_inclusion(&leaf, 0, u64::MAX, &[leaf; 64], &leaf).is_err());
    verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
    assert!(verify_inclusion(&leaf, 0, 1, &[leaf], &leaf).is_err());

    assert_eq!(
        verify_consistency(2, 1, &leaf, &leaf, &[]),
        Err(LedgerError::InvalidSizes { old: 2, new: 1 })
    );
    assert!(verify_consistency(1, 2, &leaf, &leaf, &[]).is_err());
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &leaf, &leaf, &[leaf; 70]).is_err());
    assert!(verify_consistency(1, u64::MAX, &leaf, &leaf, &[leaf; 70]).is_err());
    verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).unwrap();
    verify_consistency(0, 5, &empty_root(), &leaf, &[]).unwrap();
    assert!(verify_consistency(0, 5, &leaf, &leaf, &[]).is_err());
    assert!(verify_consistency(0, 5, &empty_root(), &leaf, &[leaf]).is_err());
    assert!(verify_consistency(3, 3, &leaf, &leaf, &[leaf]).is_err());
    assert!(verify_consistency(3, 3, &leaf, &empty_root(), &[]).is_err());
    assert_eq!(consistency_proof(0, &[]), Ok(vec![]));
    assert_eq!(
        consistency_proof(1, &[]),
        Err(LedgerError::InvalidSizes { old: 1, new: 0 })
    );
}

struct BadInclusion {
    index: u64,
    size: u64,
    proof: Vec<Hash>,
    what: String,
}

/// The corruptions transparency-dev/merkle applies, plus every bit of the first byte of every
/// proof element and a dropped first element.
fn corrupt_inclusion(index: u64, size: u64, proof: &[Hash]) -> Vec<BadInclusion> {
    let garbage = leaf_hash(b"garbage");
    let mut out = Vec::new();
    let mut add = |index: u64, size: u64, proof: Vec<Hash>, what: String| {
        out.push(BadInclusion {
            index,
            size,
            proof,
            what,
        })
    };
    if index > 0 {
        add(index - 1, size, proof.to_vec(), "index - 1".into());
    }
    add(index + 1, size, proof.to_vec(), "index + 1".into());
    add(index ^ 1, size, proof.to_vec(), "index ^ 1".into());
    add(index ^ 2, size, proof.to_vec(), "index ^ 2".into());
    add(index, size * 2, proof.to_vec(), "size * 2".into());
    add(index, size / 2, proof.to_vec(), "size / 2".into());
    add(
        index,
        size + (1 << 20),
        proof.to_vec(),
        "size + 2^20".into(),
    );
    let with = |extra: Hash, front: bool| {
        let mut p = proof.to_vec();
        if front {
            p.insert(0, extra);
        } else {
            p.push(extra);
        }
        p
    };
    add(index, size, with(garbage, false), "trailing garbage".into());
    add(index, size, with(garbage, true), "preceding garbage".into());
    add(index, size, with([0; 32], false), "trailing zeros".into());
    for (i, _) in proof.iter().enumerate() {
        for bit in 0..8 {
            let mut p = proof.to_vec();
            p[i] = flip(&p[i], 0, bit);
            add(index, size, p, format!("proof[{i}] bit {bit} flipped"));
        }
        let mut p = proof.to_vec();
        p[i] = flip(&p[i], 31, 0);
        add(index, size, p, format!("proof[{i}] last bit flipped"));
    }
    if let Some((_, rest)) = proof.split_last() {
        add(index, size, rest.to_vec(), "last element removed".into());
    }
    if let Some((_, rest)) = proof.split_first() {
        add(index, size, rest.to_vec(), "first element removed".into());
    }
    if proof.len() > 1 {
        let mut p = proof.to_vec();
        p.insert(1, garbage);
        add(index, size, p, "inserted element".into());
        let mut p = proof.to_vec();
        p.swap(0, 1);
        add(index, size, p, "elements swapped".into());
    }
    out
}

struct BadConsistency {
    old: u64,
    new: u64,
    old_root: Hash,
    new_root: Hash,
    proof: Vec<Hash>,
    what: String,
}

/// The corruptions transparency-dev/merkle applies to non-trivial consistency proofs, plus every
/// bit of the first byte of every element.
fn corrupt_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Vec<BadConsistency> {
    let garbage = leaf_hash(b"garbage");
    let (r1, r2) = (*old_root, *new_root);
    let mut out = Vec::new();
    let mut add =
        |old: u64, new: u64, old_root: Hash, new_root: Hash, proof: Vec<Hash>, what: &str| {
            out.push(BadConsistency {
                old,
                new,
                old_root,
                new_root,
                proof,
                what: what.to_owned(),
            })
        };
    let p = || proof.to_vec();
    add(old - 1, new, r1, r2, p(), "old - 1");
    add(old + 1, new, r1, r2, p(), "old + 1");
    add(old ^ 2, new, r1, r2, p(), "old ^ 2");
    add(old, new * 2, r1, r2, p(), "new * 2");
    add(old, new / 2, r1, r2, p(), "new / 2");
    add(old, new, garbage, r2, p(), "wrong old root");
    add(old, new, r1, garbage, p(), "wrong new root");
    add(old, new, r2, r1, p(), "swapped roots");
    add(old, new, r1, r2, vec![], "empty proof");
    for (extra, name) in [(garbage, "garbage"), (r1, "old root"), (r2, "new root")] {
        let mut front = p();
        front.insert(0, extra);
        add(old, new, r1, r2, front, &format!("preceding {name}"));
        let mut back = p();
        back.push(extra);
        add(old, new, r1, r2, back, &format!("trailing {name}"));
    }
    let mut doubled = p();
    doubled.insert(0, proof[0]);
    add(old, new, r1, r2, doubled, "preceding proof[0]");
    if let Some((_, rest)) = proof.split_last() {
        add(old, new, r1, r2, rest.to_vec(), "truncated");
    }
    if let Some((_, rest)) = proof.split_first() {
        add(old, new, r1, r2, rest.to_vec(), "first element removed");
    }
    for i in 0..proof.len() {
        for bit in 0..8 {
            let mut bad = p();
            bad[i] = flip(&bad[i], 0, bit);
            add(
                old,
                new,
                r1,
                r2,
                bad,
                &format!("proof[{i}] bit {bit} flipped"),
            );
        }
    }
    out
}

#[test]
fn subtrees_decompose_ranges_and_fold_to_their_root() {
    let leaves = numbered_leaves(45);
    for size in 0..=45u64 {
        let nodes = subtrees(0, size).unwrap();
        assert_eq!(nodes.len() as u32, size.count_ones());
        let hashes: Vec<Hash> = nodes
            .iter()
            .map(|n| root(&leaves[n.start() as usize..n.end() as usize]))
            .collect();
        assert_eq!(fold(&hashes), root(&leaves[..size as usize]), "size {size}");
    }
    assert_eq!(
        subtrees(0, 13).unwrap(),
        [
            NodeId { level: 3, index: 0 },
            NodeId { level: 2, index: 2 },
            NodeId {
                level: 0,
                index: 12
            },
        ]
    );
    assert!(matches!(
        subtrees(3, 7),
        Err(LedgerError::InvalidProof { .. })
    ));
    assert!(matches!(
        subtrees(7, 3),
        Err(LedgerError::InvalidSizes { old: 7, new: 3 })
    ));
    let node = NodeId {
        level: 63,
        index: u64::MAX,
    };
    assert_eq!((node.start(), node.end()), (u64::MAX, u64::MAX));
    assert_eq!(NodeId { level: 0, index: 5 }.children(), None);
}

#[test]
fn builder_reports_every_completed_subtree_and_resumes_from_its_frontier() {
    let leaves = numbered_leaves(37);
    let mut builder = RootBuilder::new();
    let mut nodes = Vec::new();
    for leaf in &leaves {
        builder.push_with(*leaf, |node, hash| nodes.push((node, *hash)));
    }
    // 37 leaves and 18 + 9 + 4 + 2 + 1 interior nodes, each the root of its leaves.
    assert_eq!(nodes.len(), 37 + 18 + 9 + 4 + 2 + 1);
    for (node, hash) in &nodes {
        assert_eq!(
            *hash,
            root(&leaves[node.start() as usize..node.end() as usize])
        );
    }
    for split in [0usize, 1, 16, 21, 36] {
        let mut head = RootBuilder::new();
        for leaf in &leaves[..split] {
            head.push(*leaf);
        }
        let mut resumed = RootBuilder::from_frontier(split as u64, &head.frontier()).unwrap();
        for leaf in &leaves[split..] {
            resumed.push(*leaf);
        }
        assert_eq!(resumed.root(), root(&leaves));
    }
    assert!(RootBuilder::from_frontier(3, &[leaves[0]]).is_none());
}
