//! Signed tree heads: the sealer's Ed25519 signature over a tree size and root.
//!
//! A signed tree head is the ledger's commitment to outsiders: "these are the first `size`
//! entries, and their Merkle root is `root`". Anyone holding the public key can check it, check
//! that an entry is included ([`crate::merkle::verify_inclusion`]) and that a later head extends
//! an earlier one ([`crate::merkle::verify_consistency`]), without access to the database.
//!
//! # What is signed
//!
//! The signature covers the 50-byte `TreeHeadSignature` structure of RFC 6962 §3.5, so any
//! Certificate Transparency tooling can check it:
//!
//! | bytes | field            | value                                           |
//! |-------|------------------|-------------------------------------------------|
//! | 1     | `version`        | `0` (v1)                                        |
//! | 1     | `signature_type` | `1` (`tree_hash`)                               |
//! | 8     | `timestamp`      | milliseconds since the Unix epoch, big-endian   |
//! | 8     | `tree_size`      | number of entries, big-endian                   |
//! | 32    | `sha256_root_hash` | the RFC 9162 Merkle root of those entries     |
//!
//! The signature is plain Ed25519 (RFC 8032) over those bytes. Because the structure is CT's, a
//! ledger signing key must be used for nothing else.
//!
//! # Key files
//!
//! [`SigningKey::from_file`] accepts, detected by content:
//!
//! - PEM `-----BEGIN PRIVATE KEY-----` holding PKCS#8 v1 or v2 (what
//!   `openssl genpkey -algorithm ed25519` writes, and [`SigningKey::to_pkcs8_pem`]);
//! - PKCS#8 DER;
//! - a raw 32-byte Ed25519 seed, as 32 bytes or as 64 hex digits (surrounding whitespace ignored).
//!
//! [`VerifyingKey::from_file`] accepts PEM `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo, as
//! `openssl pkey -pubout` writes and [`VerifyingKey::to_pem`]), its DER, or the raw 32-byte key
//! as bytes or 64 hex digits.
//!
//! The key id is the hex of the first 8 bytes of SHA-256 of the raw 32-byte public key.
//!
//! # Rotating the key
//!
//! Heads already signed keep the signature of the key that signed them. After a rotation the
//! sealer signs with the new key, and verifiers check with a [`KeyRing`] holding the new public
//! key and every earlier one still trusted; each head names its key by id, so the ring picks the
//! right one, and a head whose key is not in the ring fails as [`Problem::UnknownKey`].

use std::fmt;
use std::path::Path;

use aws_lc_rs::signature::{self as lc, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::LedgerError;
use crate::entry::TreeHead;
use crate::error::Problem;
use crate::merkle::Hash;

/// The length of the signed `TreeHeadSignature` structure.
pub const SIGNED_BYTES_LEN: usize = 50;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The ledger's private signing key. Only the sealer needs it.
pub struct SigningKey {
    pair: lc::Ed25519KeyPair,
    public: VerifyingKey,
}

/// The ledger's public key: all a verifier needs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey {
    bytes: [u8; 32],
}

/// The first 8 bytes of SHA-256 of a public key, shown as 16 hex digits. Names the key that
/// signed a head, so a verifier can tell a foreign signature from a corrupted one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

/// A tree head signed by the sealer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignedTreeHead {
    /// Number of entries covered.
    pub size: u64,
    /// RFC 9162 Merkle root of those entries.
    pub root: Hash,
    /// When it was signed: milliseconds since the Unix epoch (RFC 6962). Never decreases from one
    /// head to the next.
    pub timestamp: u64,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Ed25519 signature over [`SignedTreeHead::signed_bytes`].
    pub signature: [u8; 64],
}

impl SigningKey {
    /// A fresh random key (for tests and for `keygen` commands; persist it with
    /// [`SigningKey::to_pkcs8_pem`]).
    pub fn generate() -> Result<Self, LedgerError> {
        let pair = lc::Ed25519KeyPair::generate().map_err(|_| LedgerError::InvalidKey {
            reason: "the system could not generate a key".to_owned(),
        })?;
        Ok(Self::from_pair(pair))
    }

    /// The key with this 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, LedgerError> {
        let pair = lc::Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|err| invalid_key(format!("the seed is not an ed25519 key: {err}")))?;
        Ok(Self::from_pair(pair))
    }

    /// Parses PKCS#8 (v1 or v2) DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, LedgerError> {
        let pair = lc::Ed25519KeyPair::from_pkcs8(der)
            .map_err(|err| invalid_key(format!("not an ed25519 pkcs#8 private key: {err}")))?;
        Ok(Self::from_pair(pair))
    }

    /// Parses a key file's contents in any of the formats listed in the [module docs](self).
    pub fn parse(contents: &[u8]) -> Result<Self, LedgerError> {
        if let Some(der) = pem_block(contents, "PRIVATE KEY")? {
            return Self::from_pkcs8_der(&der);
        }
        if let Some(seed) = raw_32(contents) {
            return Self::from_seed(&seed);
        }
        if contents.first() == Some(&0x30) {
            return Self::from_pkcs8_der(contents);
        }
        Err(invalid_key(
            "expected a PEM private key, PKCS#8 DER, or a 32-byte seed (raw or hex)".to_owned(),
        ))
    }

    /// Reads a key file (see [`SigningKey::parse`]). The error names the path, never the key.
    pub fn from_file(path: &Path) -> Result<Self, LedgerError> {
        let contents = std::fs::read(path).map_err(|err| {
            invalid_key(format!("cannot read key file `{}`: {err}", path.display()))
        })?;
        Self::parse(&contents).map_err(|err| match err {
            LedgerError::InvalidKey { reason } => {
                invalid_key(format!("key file `{}`: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// The key as PKCS#8 v1 PEM, the format `openssl genpkey -algorithm ed25519` writes.
    pub fn to_pkcs8_pem(&self) -> Result<String, LedgerError> {
        let doc = self
            .pair
            .to_pkcs8v1()
            .map_err(|_| invalid_key("the key cannot be serialised".to_owned()))?;
        Ok(pem("PRIVATE KEY", doc.as_ref()))
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        self.public.key_id()
    }

    /// Signs the head of `size` entries with root `root` at `timestamp` (milliseconds).
    pub fn sign_head(
        &self,
        size: u64,
        root: Hash,
        timestamp: u64,
    ) -> Result<SignedTreeHead, LedgerError> {
        let bytes = signed_bytes(timestamp, size, &root);
        let signature = self
            .pair
            .try_sign(&bytes)
            .map_err(|_| invalid_key("the key could not sign".to_owned()))?;
        let signature: [u8; 64] = signature
            .as_ref()
            .try_into()
            .map_err(|_| invalid_key("the signature is not 64 bytes".to_owned()))?;
        Ok(SignedTreeHead {
            size,
            root,
            timestamp,
            key_id: self.key_id(),
            signature,
        })
    }

    fn from_pair(pair: lc::Ed25519KeyPair) -> Self {
        let mut bytes = [0; 32];
        let public = pair.public_key().as_ref();
        if public.len() == 32 {
            bytes.copy_from_slice(public);
        }
        Self {
            pair,
            public: VerifyingKey { bytes },
        }
    }
}

impl VerifyingKey {
    /// The key with these 32 raw bytes. Ed25519 public keys are checked when a signature is
    /// verified, not here.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self { bytes }
    }

    /// Parses a public key in any of the formats listed in the [module docs](self).
    pub fn parse(contents: &[u8]) -> Result<Self, LedgerError> {
        if let Some(der) = pem_block(contents, "PUBLIC KEY")? {
            return Self::from_spki_der(&der);
        }
        if let Some(bytes) = raw_32(contents) {
            return Ok(Self { bytes });
        }
        Self::from_spki_der(contents).map_err(|_| {
            invalid_key(
                "expected a PEM public key, SubjectPublicKeyInfo DER, or 32 bytes (raw or hex)"
                    .to_owned(),
            )
        })
    }

    /// Reads a public key file (see [`VerifyingKey::parse`]).
    pub fn from_file(path: &Path) -> Result<Self, LedgerError> {
        let contents = std::fs::read(path).map_err(|err| {
            invalid_key(format!("cannot read key file `{}`: {err}", path.display()))
        })?;
        Self::parse(&contents).map_err(|err| match err {
            LedgerError::InvalidKey { reason } => {
                invalid_key(format!("key file `{}`: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The raw key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.bytes);
        pem("PUBLIC KEY", &der)
    }

    /// `hex(SHA-256(public key)[..8])`.
    pub fn key_id(&self) -> KeyId {
        let digest = Sha256::digest(self.bytes);
        let mut id = [0; 8];
        for (out, byte) in id.iter_mut().zip(digest) {
            *out = byte;
        }
        KeyId(id)
    }

    /// Checks that `head` was signed by this key. The error is [`LedgerError::Broken`] at the
    /// head's size with [`Problem::UnknownKey`] when another key's id is named, or
    /// [`Problem::BadSignature`] when the signature does not verify.
    pub fn verify(&self, head: &SignedTreeHead) -> Result<(), LedgerError> {
        if head.key_id != self.key_id() {
            return Err(LedgerError::broken(
                head.size,
                None,
                Problem::UnknownKey {
                    signed_size: head.size,
                    key_id: head.key_id,
                },
            ));
        }
        lc::UnparsedPublicKey::new(&lc::ED25519, &self.bytes)
            .verify(&head.signed_bytes(), &head.signature)
            .map_err(|_| {
                LedgerError::broken(
                    head.size,
                    None,
                    Problem::BadSignature {
                        signed_size: head.size,
                    },
                )
            })
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, LedgerError> {
        der.strip_prefix(&SPKI_PREFIX)
            .and_then(|key| <[u8; 32]>::try_from(key).ok())
            .map(Self::from_bytes)
            .ok_or_else(|| invalid_key("not an ed25519 SubjectPublicKeyInfo".to_owned()))
    }
}

/// Checks that a head was signed by a trusted key: one [`VerifyingKey`], or a [`KeyRing`] of
/// the current key and those it replaced.
pub trait HeadVerifier: Send + Sync {
    /// `Ok` when `head`'s signature is good under a trusted key; otherwise
    /// [`LedgerError::Broken`] with [`Problem::UnknownKey`] or [`Problem::BadSignature`].
    fn verify_head(&self, head: &SignedTreeHead) -> Result<(), LedgerError>;
}

impl HeadVerifier for VerifyingKey {
    fn verify_head(&self, head: &SignedTreeHead) -> Result<(), LedgerError> {
        self.verify(head)
    }
}

/// The public keys a verifier trusts: the current signing key's and those of keys it replaced,
/// so heads signed before a rotation still verify. A head is checked with the key its id names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<VerifyingKey>,
}

impl KeyRing {
    /// A ring of `keys`; a key given twice is kept once.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let mut ring = Self::default();
        for key in keys {
            ring.add(key);
        }
        ring
    }

    /// Trusts `key` too.
    pub fn add(&mut self, key: VerifyingKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// The trusted keys, in the order given.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The key with id `id`, if trusted.
    pub fn get(&self, id: KeyId) -> Option<&VerifyingKey> {
        self.keys.iter().find(|key| key.key_id() == id)
    }
}

impl From<VerifyingKey> for KeyRing {
    fn from(key: VerifyingKey) -> Self {
        Self { keys: vec![key] }
    }
}

impl HeadVerifier for KeyRing {
    fn verify_head(&self, head: &SignedTreeHead) -> Result<(), LedgerError> {
        match self.get(head.key_id) {
            Some(key) => key.verify(head),
            None => Err(LedgerError::broken(
                head.size,
                None,
                Problem::UnknownKey {
                    signed_size: head.size,
                    key_id: head.key_id,
                },
            )),
        }
    }
}

impl SignedTreeHead {
    /// The 50 bytes the signature covers (see the [module docs](self)).
    pub fn signed_bytes(&self) -> [u8; SIGNED_BYTES_LEN] {
        signed_bytes(self.timestamp, self.size, &self.root)
    }

    /// The unsigned head.
    pub fn tree_head(&self) -> TreeHead {
        TreeHead {
            size: self.size,
            root: self.root,
        }
    }

    /// The signing time, if it is a representable date.
    pub fn signed_at(&self) -> Option<OffsetDateTime> {
        let nanos = i128::from(self.timestamp).checked_mul(1_000_000)?;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
    }
}

impl KeyId {
    /// Parses 16 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut id = [0; 8];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(Self(id))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifyingKey").field(&self.to_hex()).finish()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl fmt::Debug for SignedTreeHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedTreeHead")
            .field("size", &self.size)
            .field("root", &hex::encode(self.root))
            .field("timestamp", &self.timestamp)
            .field("key_id", &self.key_id)
            .field("signature", &hex::encode(self.signature))
            .finish()
    }
}

/// RFC 6962 §3.5 `TreeHeadSignature`: version v1 (0), signature type `tree_hash` (1), timestamp,
/// tree size, root.
pub fn signed_bytes(timestamp: u64, size: u64, root: &Hash) -> [u8; SIGNED_BYTES_LEN] {
    let mut out = [0u8; SIGNED_BYTES_LEN];
    let fields = [0u8, 1u8]
        .into_iter()
        .chain(timestamp.to_be_bytes())
        .chain(size.to_be_bytes())
        .chain(root.iter().copied());
    for (slot, byte) in out.iter_mut().zip(fields) {
        *slot = byte;
    }
    out
}

fn invalid_key(reason: String) -> LedgerError {
    LedgerError::InvalidKey { reason }
}

/// 32 raw bytes, or 64 hex digits with optional surrounding whitespace.
fn raw_32(contents: &[u8]) -> Option<[u8; 32]> {
    if let Ok(bytes) = <[u8; 32]>::try_from(contents) {
        return Some(bytes);
    }
    let text = std::str::from_utf8(contents).ok()?.trim();
    let mut bytes = [0; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

/// The DER inside the first PEM block labelled `label`, if the contents are PEM at all.
fn pem_block(contents: &[u8], label: &str) -> Result<Option<Vec<u8>>, LedgerError> {
    let Ok(text) = std::str::from_utf8(contents) else {
        return Ok(None);
    };
    if !text.contains("-----BEGIN ") {
        return Ok(None);
    }
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| invalid_key(format!("no `{begin}` block")))?;
    let joined: String = body.split_whitespace().collect();
    BASE64
        .decode(joined)
        .map(Some)
        .map_err(|_| invalid_key("the PEM block is not valid base64".to_owned()))
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = encoded.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1 TEST 1: the seed, public key, and the signature of the empty message.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn test_key() -> SigningKey {
        let mut seed = [0; 32];
        hex::decode_to_slice(RFC8032_SEED, &mut seed).unwrap();
        SigningKey::from_seed(&seed).unwrap()
    }

    #[test]
    fn seed_gives_the_rfc8032_public_key() {
        assert_eq!(test_key().verifying_key().to_hex(), RFC8032_PUBLIC);
        let digest = Sha256::digest(hex::decode(RFC8032_PUBLIC).unwrap());
        assert_eq!(
            test_key().key_id().to_string(),
            hex::encode(&digest[..8]),
            "key id is the first 8 bytes of SHA-256 of the public key"
        );
    }

    #[test]
    fn signed_bytes_follow_rfc6962_tree_head_signature() {
        let root = [0xab; 32];
        let bytes = signed_bytes(0x0102_0304_0506_0708, 0x1112_1314_1516_1718, &root);
        let mut want = vec![0u8, 1];
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        want.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        want.extend_from_slice(&root);
        assert_eq!(bytes.to_vec(), want);
    }

    #[test]
    fn signatures_verify_and_changes_do_not() {
        let key = test_key();
        let head = key.sign_head(42, [7; 32], 1_700_000_000_000).unwrap();
        let public = key.verifying_key();
        public.verify(&head).unwrap();
        assert_eq!(head.signed_at().unwrap().unix_timestamp(), 1_700_000_000);

        let bad_sig = |head: SignedTreeHead| {
            assert_eq!(
                public.verify(&head).unwrap_err(),
                LedgerError::Broken {
                    seq: head.size,
                    entry_id: None,
                    problem: Problem::BadSignature {
                        signed_size: head.size
                    }
                }
            );
        };
        bad_sig(SignedTreeHead { size: 43, ..head });
        bad_sig(SignedTreeHead {
            root: [8; 32],
            ..head
        });
        bad_sig(SignedTreeHead {
            timestamp: head.timestamp + 1,
            ..head
        });
        let mut signature = head.signature;
        signature[10] ^= 1;
        bad_sig(SignedTreeHead { signature, ..head });

        let other = SigningKey::generate().unwrap();
        let foreign = other.sign_head(42, [7; 32], head.timestamp).unwrap();
        assert_eq!(
            public.verify(&foreign).unwrap_err(),
            LedgerError::Broken {
                seq: 42,
                entry_id: None,
                problem: Problem::UnknownKey {
                    signed_size: 42,
                    key_id: other.key_id()
                }
            }
        );
        // A foreign signature under our key id is a bad signature.
        bad_sig(SignedTreeHead {
            key_id: key.key_id(),
            ..foreign
        });
    }

    #[test]
    fn key_files_round_trip_in_every_format() {
        let key = test_key();
        let public = key.verifying_key();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let formats: Vec<Vec<u8>> = vec![
            pem.clone().into_bytes(),
            hex::decode(RFC8032_SEED).unwrap(),
            format!("  {RFC8032_SEED}\n").into_bytes(),
            pem_block(pem.as_bytes(), "PRIVATE KEY").unwrap().unwrap(),
        ];
        for contents in formats {
            assert_eq!(
                SigningKey::parse(&contents).unwrap().verifying_key(),
                public
            );
        }

        let public_pem = public.to_pem();
        for contents in [
            public_pem.clone().into_bytes(),
            public.to_hex().into_bytes(),
            public.as_bytes().to_vec(),
            pem_block(public_pem.as_bytes(), "PUBLIC KEY")
                .unwrap()
                .unwrap(),
        ] {
            assert_eq!(VerifyingKey::parse(&contents).unwrap(), public);
        }
    }

    /// The PEM that `openssl genpkey -algorithm ed25519` writes for the RFC 8032 test seed.
    #[test]
    fn openssl_pkcs8_v1_is_accepted() {
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n\
                   -----END PRIVATE KEY-----\n";
        assert_eq!(
            SigningKey::parse(pem.as_bytes())
                .unwrap()
                .verifying_key()
                .to_hex(),
            RFC8032_PUBLIC
        );
        let public = "-----BEGIN PUBLIC KEY-----\n\
                      MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n\
                      -----END PUBLIC KEY-----\n";
        assert_eq!(
            VerifyingKey::parse(public.as_bytes()).unwrap().to_hex(),
            RFC8032_PUBLIC
        );
    }

    #[test]
    fn malformed_keys_are_errors_that_do_not_echo_the_key() {
        for contents in [
            &b"not a key"[..],
            b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            &[0x30, 0x01, 0x02],
            &[0u8; 31],
        ] {
            let err = SigningKey::parse(contents).unwrap_err();
            assert!(matches!(err, LedgerError::InvalidKey { .. }), "{err:?}");
        }
        let err = SigningKey::from_file(Path::new("/nonexistent/ledger.key")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "ledger signing key is invalid: cannot read key file `/nonexistent/ledger.key`"
            ),
            "{err}"
        );
        let err = VerifyingKey::parse(b"00").unwrap_err();
        assert!(matches!(err, LedgerError::InvalidKey { .. }), "{err:?}");
        assert!(!format!("{:?}", test_key()).contains(RFC8032_SEED));
    }
}
