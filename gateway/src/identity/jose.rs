//! The compact JWS form, read strictly before any key is looked up.
//!
//! `jsonwebtoken` reads the header and claims with serde, which keeps the
//! last of two members with the same name, and it tolerates headers the
//! gateway must refuse. Two readers of one token that disagree about what it
//! says are how a signature and its meaning come apart, so the gateway reads
//! both parts itself first: every part is bounded before it is decoded, only
//! the base64url alphabet is accepted, and a duplicated member name at any
//! depth refuses the token. The claims the gateway maps to a principal are
//! the ones read here, from exactly the bytes the signature covers.

use std::{collections::HashSet, fmt, str::FromStr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::invalid;
use crate::error::GatewayError;

/// Largest bearer token accepted, checked before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Largest encoded JOSE header accepted. Real headers are well under 200
/// bytes; a large one is an attempt to make the gateway parse something big
/// (an embedded key or certificate chain it would ignore anyway).
pub const MAX_HEADER_BYTES: usize = 2 * 1024;

/// `typ` values accepted (compared case-insensitively, RFC 7515 §4.1.9):
/// an access token (RFC 9068) or a plain JWT. Anything else (a logout token,
/// a DPoP proof, a security event) is a token of another kind being
/// replayed as a bearer token.
const ACCEPTED_TYPES: &[&str] = &["jwt", "application/jwt", "at+jwt", "application/at+jwt"];

/// A signed token, split and read but not yet verified.
#[derive(Debug)]
pub(super) struct Compact {
    /// The algorithm the header names.
    pub alg: Algorithm,
    /// The key id the header names, if any.
    pub kid: Option<String>,
    /// The claims, read strictly; trusted only once the signature verifies.
    pub claims: Map<String, Value>,
}

impl Compact {
    /// Splits and reads a compact JWS, refusing anything malformed, oversized,
    /// ambiguous, encrypted, nested or carrying a critical extension.
    pub fn parse(token: &str) -> Result<Self, GatewayError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token is larger than the gateway accepts"));
        }
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature)) =
            (segments.next(), segments.next(), segments.next())
        else {
            return Err(invalid("token is not a signed JWT"));
        };
        match segments.count() {
            0 => {}
            2 => return Err(invalid("encrypted tokens (JWE) are not accepted")),
            _ => return Err(invalid("token is not a signed JWT")),
        }
        if header.is_empty() || payload.is_empty() {
            return Err(invalid("token is not a signed JWT"));
        }
        if signature.is_empty() {
            return Err(invalid("token is unsigned"));
        }
        if header.len() > MAX_HEADER_BYTES {
            return Err(invalid("token header is larger than the gateway accepts"));
        }
        if ![header, payload, signature].iter().all(|s| is_base64url(s)) {
            return Err(invalid("token is not base64url encoded"));
        }
        let header = decode_object(header, "header")?;
        let claims = decode_object(payload, "payload")?;
        let (alg, kid) = check_header(&header)?;
        Ok(Self { alg, kid, claims })
    }

    /// The `iss` claim, read before verification only to choose whose keys
    /// and rules apply.
    pub fn issuer(&self) -> Result<&str, GatewayError> {
        match self.claims.get("iss") {
            Some(Value::String(iss)) => Ok(iss),
            Some(_) => Err(invalid("claim `iss` is not a string")),
            None => Err(invalid("token lacks the required claim `iss`")),
        }
    }
}

/// The `iss` a token's payload claims, if it can be read at all, however
/// broken the rest of the token is; for the audit trail of a failed
/// authentication, never for a decision.
pub(super) fn claimed_issuer(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1).filter(|p| is_base64url(p))?;
    match decode_object(payload, "payload").ok()?.remove("iss")? {
        Value::String(iss) => Some(iss),
        _ => None,
    }
}

fn is_base64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_object(segment: &str, part: &str) -> Result<Map<String, Value>, GatewayError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| invalid(format!("token {part} is not base64url encoded")))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    let value = StrictValue
        .deserialize(&mut deserializer)
        .and_then(|v| deserializer.end().map(|()| v))
        .map_err(|e| {
            if e.to_string().starts_with(DUPLICATE) {
                invalid(format!("token {part} names a member twice"))
            } else {
                invalid(format!("token {part} is not JSON"))
            }
        })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(invalid(format!("token {part} is not a JSON object"))),
    }
}

/// Checks the JOSE header and returns the algorithm and key id.
fn check_header(header: &Map<String, Value>) -> Result<(Algorithm, Option<String>), GatewayError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        Some(_) => return Err(invalid("header member `alg` is not a string")),
        None => return Err(invalid("token header names no algorithm")),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(invalid("unsigned tokens (`alg: none`) are not accepted"));
    }
    let alg = Algorithm::from_str(alg)
        .map_err(|_| invalid("token names an algorithm the gateway does not support"))?;
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: a recipient must refuse critical extensions it
        // does not understand, and this gateway understands none.
        return Err(invalid(
            "token has a critical header extension the gateway does not understand",
        ));
    }
    if header.contains_key("b64") {
        // RFC 7797: an unencoded payload changes what the signature covers.
        return Err(invalid("tokens with an unencoded payload are not accepted"));
    }
    if header.contains_key("enc") || header.contains_key("zip") {
        return Err(invalid("encrypted tokens (JWE) are not accepted"));
    }
    match header.get("cty") {
        None => {}
        Some(Value::String(cty))
            if cty.eq_ignore_ascii_case("jwt") || cty.eq_ignore_ascii_case("application/jwt") =>
        {
            return Err(invalid("nested tokens are not accepted"));
        }
        Some(Value::String(_)) => {
            return Err(invalid("token content type is not accepted"));
        }
        Some(_) => return Err(invalid("header member `cty` is not a string")),
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if ACCEPTED_TYPES.iter().any(|t| typ.eq_ignore_ascii_case(t)) => {}
        Some(_) => {
            return Err(invalid("token type is not an access token or a plain JWT"));
        }
    }
    // `jku`, `x5u`, `jwk`, `x5c` and `x5t` name or carry keys; they are never
    // read, because a key the token brings with it proves nothing.
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(invalid("header member `kid` is not a string")),
    };
    Ok((alg, kid))
}

/// The start of the error a duplicated member raises, to tell it apart.
const DUPLICATE: &str = "duplicate member";

/// Deserializes any JSON value as `serde_json::Value` does, but refuses an
/// object that names a member twice (RFC 7519 §4 lets a recipient refuse
/// such a token, and it should: parsers disagree on which one wins).
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value = access.next_value_seed(StrictValue)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> Result<Map<String, Value>, GatewayError> {
        decode_object(&URL_SAFE_NO_PAD.encode(json), "payload")
    }

    #[test]
    fn duplicated_members_are_refused_at_any_depth() {
        assert!(object(r#"{"sub":"a","aud":"x"}"#).is_ok());
        for json in [
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"aud":"x","sub":"a","aud":"y"}"#,
            r#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#,
            r#"{"a":[{"k":1,"k":2}]}"#,
            // The same name spelled with an escape is the same member.
            r#"{"sub":"a","\u0073ub":"b"}"#,
        ] {
            let err = object(json).unwrap_err();
            assert_eq!(
                err.to_string(),
                "token payload names a member twice",
                "{json}"
            );
        }
    }

    #[test]
    fn values_read_strictly_equal_values_read_by_serde_json() {
        let json = r#"{"a":[1,-2,3.5,true,null,"s",{"b":{}}],"c":18446744073709551615}"#;
        let strict = Value::Object(object(json).unwrap());
        let loose: Value = serde_json::from_str(json).unwrap();
        assert_eq!(strict, loose);
    }

    #[test]
    fn trailing_bytes_and_non_objects_are_refused() {
        assert_eq!(
            object(r#"{"a":1} x"#).unwrap_err().to_string(),
            "token payload is not JSON"
        );
        assert_eq!(
            object(r#"["a"]"#).unwrap_err().to_string(),
            "token payload is not a JSON object"
        );
        assert_eq!(
            object("1e400").unwrap_err().to_string(),
            "token payload is not JSON"
        );
    }
}
