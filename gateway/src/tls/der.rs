//! The few DER fields rustls does not expose and a reload must check before
//! it puts new material in service: a certificate's validity period and a
//! CRL's `nextUpdate`. A reader of tags and lengths, no more; the signature
//! and structure are left to webpki, which checks them at the handshake.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` at the start of a v3 TBSCertificate.
const VERSION: u8 = 0xa0;

/// A certificate's `notBefore` and `notAfter` (RFC 5280 §4.1.2.5).
pub(crate) fn validity(cert: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (cert, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag == VERSION {
        (_, _, rest) = tlv(rest)?; // serialNumber
    }
    let (_, rest) = expect(rest, SEQUENCE)?; // signature
    let (_, rest) = expect(rest, SEQUENCE)?; // issuer
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (not_before, rest) = time_at(validity)?;
    let (not_after, _) = time_at(rest)?;
    Some((not_before, not_after))
}

/// A CRL's `nextUpdate`, `Ok(None)` when it has none (RFC 5280 §5.1.2.5);
/// `None` when the bytes are not a CRL.
pub(crate) fn next_update(crl: &[u8]) -> Option<Option<OffsetDateTime>> {
    let (crl, _) = expect(crl, SEQUENCE)?;
    let (tbs, _) = expect(crl, SEQUENCE)?;
    let rest = match tlv(tbs)? {
        (INTEGER, _, rest) => rest, // version
        _ => tbs,
    };
    let (_, rest) = expect(rest, SEQUENCE)?; // signature
    let (_, rest) = expect(rest, SEQUENCE)?; // issuer
    let (_, rest) = time_at(rest)?; // thisUpdate
    match tlv(rest) {
        Some((UTC_TIME | GENERALIZED_TIME, _, _)) => Some(Some(time_at(rest)?.0)),
        _ => Some(None),
    }
}

/// One tag-length-value: the tag, the value and what follows.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 {
            return None;
        }
        let (bytes, rest) = input.split_at_checked(octets)?;
        input = rest;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    let (value, rest) = input.split_at_checked(len)?;
    Some((tag, value, rest))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, value, rest) if t == tag => Some((value, rest)),
        _ => None,
    }
}

/// A `Time` (UTCTime or GeneralizedTime, both in UTC with seconds, as RFC
/// 5280 §4.1.2.5 requires) and what follows it.
fn time_at(input: &[u8]) -> Option<(OffsetDateTime, &[u8])> {
    let (tag, value, rest) = tlv(input)?;
    let text = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let (year, text) = match tag {
        UTC_TIME => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        GENERALIZED_TIME => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let two = |at: usize| -> Option<u8> { text.get(at..at + 2)?.parse().ok() };
    let date = Date::from_calendar_date(year, Month::try_from(two(0)?).ok()?, two(2)?).ok()?;
    let time = Time::from_hms(two(4)?, two(6)?, two(8)?).ok()?;
    Some((PrimitiveDateTime::new(date, time).assume_utc(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificates_validity_is_read() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = time::macros::datetime!(2001-02-03 04:05:06 UTC);
        params.not_after = time::macros::datetime!(2061-07-08 09:10:11 UTC);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            validity(cert.der()),
            Some((params.not_before, params.not_after))
        );
        assert_eq!(validity(b"not a certificate"), None);
        assert_eq!(validity(&cert.der()[..40]), None);
    }

    #[test]
    fn a_crls_next_update_is_read() {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, &key);
        let next = time::macros::datetime!(2040-01-02 03:04:05 UTC);
        let crl = rcgen::CertificateRevocationListParams {
            this_update: time::macros::datetime!(2030-01-01 00:00:00 UTC),
            next_update: next,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        assert_eq!(next_update(crl.der()), Some(Some(next)));
        assert_eq!(next_update(b"\x30\x03\x02\x01\x01"), None);
    }
}
