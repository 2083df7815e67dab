//! The resume cursor a subscriber holds: every followed dataset's change
//! cursor in one opaque token, sealed with an HMAC so that a cursor the
//! gateway did not issue, or issued to another agency or for another
//! agreement, is refused rather than handed to a source.

use std::{collections::BTreeMap, path::Path};

use aws_lc_rs::hmac;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use liaison_connectors::ChangeCursor;
use serde::{Deserialize, Serialize};

/// The token format's version, the first thing sealed.
const VERSION: u8 = 1;
/// The longest token accepted, well above what 100 datasets' cursors need,
/// so decoding is bounded before anything is checked.
pub const MAX_TOKEN_CHARS: usize = 8_192;
/// Separates this key's use from any other use of the same bytes.
const LABEL: &[u8] = b"liaison.v1 subscribe cursor";

/// Where a subscription has got to in each dataset it follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionCursor {
    datasets: BTreeMap<String, ChangeCursor>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    v: u8,
    c: BTreeMap<String, String>,
}

impl SubscriptionCursor {
    /// A cursor holding these datasets' positions.
    pub fn new(datasets: BTreeMap<String, ChangeCursor>) -> Self {
        Self { datasets }
    }

    /// Each dataset's change cursor.
    pub fn datasets(&self) -> &BTreeMap<String, ChangeCursor> {
        &self.datasets
    }
}

/// The key that seals cursors. Replicas behind one address must share it,
/// or a subscriber that reconnects to another replica cannot resume.
#[derive(Clone)]
pub struct CursorKey {
    key: hmac::Key,
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// A key from secret bytes (at least 32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 32 {
            return Err(format!(
                "a cursor key needs at least 32 bytes, found {}",
                bytes.len()
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// Reads a key file: its bytes, surrounding whitespace removed.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read cursor key `{}`: {e}", path.display()))?;
        Self::from_bytes(bytes.trim_ascii())
    }

    /// A fresh random key; cursors then survive neither a restart nor a
    /// move to another replica.
    pub fn random() -> Result<Self, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map(|key| Self { key })
            .map_err(|_| "cannot generate a cursor key".to_owned())
    }

    /// Seals `cursor` for `agency` under agreement `isa_id`.
    pub fn seal(&self, agency: &str, isa_id: &str, cursor: &SubscriptionCursor) -> String {
        let body = Body {
            v: VERSION,
            c: cursor
                .datasets
                .iter()
                .map(|(d, c)| (d.clone(), c.0.clone()))
                .collect(),
        };
        // Serialising a map of strings cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let tag = hmac::sign(&self.key, &signed(agency, isa_id, &body));
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Opens a token sealed for `agency` under `isa_id`; the error says
    /// why it is refused, without echoing it.
    pub fn open(
        &self,
        agency: &str,
        isa_id: &str,
        token: &str,
    ) -> Result<SubscriptionCursor, String> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(format!("must be at most {MAX_TOKEN_CHARS} characters"));
        }
        let forged = || "is not a cursor this gateway issued to this agency for this agreement";
        let (body, tag) = token.split_once('.').ok_or_else(forged)?;
        let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| forged())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| forged())?;
        hmac::verify(&self.key, &signed(agency, isa_id, &body), &tag).map_err(|_| forged())?;
        let body: Body = serde_json::from_slice(&body).map_err(|_| forged())?;
        if body.v != VERSION {
            return Err(format!(
                "has version {}; this gateway reads {VERSION}",
                body.v
            ));
        }
        Ok(SubscriptionCursor {
            datasets: body
                .c
                .into_iter()
                .map(|(d, c)| (d, ChangeCursor(c)))
                .collect(),
        })
    }
}

/// The bytes the tag covers: the label, whom the cursor was issued to, and
/// the body, each length-prefixed so no two inputs share an encoding.
fn signed(agency: &str, isa_id: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABEL.len() + agency.len() + isa_id.len() + body.len() + 32);
    for part in [LABEL, agency.as_bytes(), isa_id.as_bytes(), body] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> SubscriptionCursor {
        SubscriptionCursor::new(
            [
                ("met-police.records".to_owned(), ChangeCursor("41".into())),
                ("hackney.csv".to_owned(), ChangeCursor(String::new())),
            ]
            .into(),
        )
    }

    #[test]
    fn a_sealed_cursor_opens_for_whom_it_was_sealed() {
        let key = CursorKey::random().unwrap();
        let token = key.seal("hackney", "isa-1", &cursor());
        assert_eq!(key.open("hackney", "isa-1", &token).unwrap(), cursor());
    }

    #[test]
    fn a_cursor_for_another_agency_agreement_or_key_is_refused() {
        let key = CursorKey::random().unwrap();
        let token = key.seal("hackney", "isa-1", &cursor());
        assert!(key.open("camden", "isa-1", &token).is_err());
        assert!(key.open("hackney", "isa-2", &token).is_err());
        let other = CursorKey::random().unwrap();
        assert!(other.open("hackney", "isa-1", &token).is_err());
    }

    #[test]
    fn an_edited_or_malformed_token_is_refused_not_a_panic() {
        let key = CursorKey::from_bytes(&[7; 32]).unwrap();
        let token = key.seal("hackney", "isa-1", &cursor());
        let (body, tag) = token.split_once('.').unwrap();
        // The body rewritten to skip ahead, with the old tag.
        let edited = URL_SAFE_NO_PAD.encode(br#"{"v":1,"c":{"met-police.records":"99"}}"#);
        for bad in [
            format!("{edited}.{tag}"),
            format!("{body}.{}", &tag[1..]),
            body.to_owned(),
            String::new(),
            "..".into(),
            "é.é".into(),
            "a".repeat(MAX_TOKEN_CHARS + 1),
        ] {
            assert!(key.open("hackney", "isa-1", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(CursorKey::from_bytes(&[1; 31]).is_err());
    }
}
