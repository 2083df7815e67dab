//! Normalisers for the identifiers and postcodes legacy systems hold in many
//! spellings.
//!
//! People are matched across agencies by these values, so each has exactly
//! one spelling in the common model, and a value that fails its check is
//! dropped rather than passed on: a mistyped NHS number that happens to be
//! another child's must never link two records.

use liaison_proto::v1::IdentifierScheme;

/// Why a value was rejected; short, and never quoting the value itself.
pub type Invalid = &'static str;

/// Normalises an NHS number: spaces and hyphens removed, ten digits, with a
/// valid modulus 11 check digit.
pub fn nhs_number(raw: &str) -> Result<String, Invalid> {
    let digits: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("an nhs number has ten digits");
    }
    let values: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    let (body, check) = values.split_at(9);
    let sum: u32 = body.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    let expected = match 11 - sum % 11 {
        11 => 0,
        10 => return Err("no nhs number has these first nine digits"),
        digit => digit,
    };
    if check != [expected] {
        return Err("the nhs number's check digit does not match");
    }
    Ok(digits)
}

/// Normalises a UK postcode: upper case, one space before the three-character
/// inward code, and the outward code in one of the six shapes Royal Mail
/// issues (`A9`, `A99`, `A9A`, `AA9`, `AA99`, `AA9A`).
pub fn postcode(raw: &str) -> Result<String, Invalid> {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if !(5..=7).contains(&compact.len()) || !compact.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("a postcode has five to seven letters and digits");
    }
    let (outward, inward) = compact.split_at(compact.len() - 3);
    let shape = |s: &str| -> String {
        s.bytes()
            .map(|b| if b.is_ascii_digit() { '9' } else { 'A' })
            .collect()
    };
    if shape(inward) != "9AA" {
        return Err("a postcode's inward code is a digit and two letters");
    }
    if !matches!(
        shape(outward).as_str(),
        "A9" | "A99" | "A9A" | "AA9" | "AA99" | "AA9A"
    ) {
        return Err("a postcode's outward code is not in a shape royal mail issues");
    }
    Ok(format!("{outward} {inward}"))
}

/// Normalises a Police National Computer id to upper case without spaces,
/// in the shape `YY/NNNNNNNA` (the year may have four digits, the serial one
/// to seven).
pub fn pnc_id(raw: &str) -> Result<String, Invalid> {
    let value: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let Some((year, rest)) = value.split_once('/') else {
        return Err("a pnc id has a year, a slash and a serial number");
    };
    let year_ok = matches!(year.len(), 2 | 4) && year.bytes().all(|b| b.is_ascii_digit());
    let serial_ok = match rest.as_bytes().split_last() {
        Some((letter, digits)) => {
            letter.is_ascii_uppercase()
                && (1..=7).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
        }
        None => false,
    };
    if !year_ok || !serial_ok {
        return Err("a pnc id has the shape `YY/NNNNNNNA`");
    }
    Ok(value)
}

/// Normalises a Unique Pupil Number: thirteen characters, upper case, a
/// check letter then eleven digits then a digit or letter.
pub fn upn(raw: &str) -> Result<String, Invalid> {
    let value: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = value.as_bytes();
    let ok = bytes.len() == 13
        && bytes.first().is_some_and(u8::is_ascii_uppercase)
        && bytes
            .get(1..12)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if !ok {
        return Err("a upn has a letter, eleven digits and a digit or letter");
    }
    Ok(value)
}

/// Normalises an identifier for its scheme. Local identifiers are only
/// trimmed: their shape is the issuing system's business.
pub fn identifier(scheme: IdentifierScheme, raw: &str) -> Result<String, Invalid> {
    match scheme {
        IdentifierScheme::NhsNumber => nhs_number(raw),
        IdentifierScheme::PncId => pnc_id(raw),
        IdentifierScheme::Upn => upn(raw),
        IdentifierScheme::Local => match raw.trim() {
            "" => Err("a local identifier is not empty"),
            value => Ok(value.to_owned()),
        },
        IdentifierScheme::Unspecified => Err("an identifier names its scheme"),
    }
}

/// Cuts `text` to at most `max_bytes` on a character boundary, returning the
/// original length when it had to cut.
pub(crate) fn truncate(text: &mut String, max_bytes: usize) -> Option<usize> {
    if text.len() <= max_bytes {
        return None;
    }
    let original = text.len();
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    Some(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_with_valid_check_digits_are_accepted() {
        assert_eq!(nhs_number("943 476 5919").unwrap(), "9434765919");
        assert_eq!(nhs_number("9434765919").unwrap(), "9434765919");
        assert_eq!(nhs_number(" 943-476-5919 ").unwrap(), "9434765919");
        assert_eq!(nhs_number("401 023 2137").unwrap(), "4010232137");
        // Remainder 0 gives check digit 0 rather than 11.
        assert_eq!(nhs_number("999 000 0050").unwrap(), "9990000050");
        assert_eq!(nhs_number("999 000 0018").unwrap(), "9990000018");
    }

    #[test]
    fn nhs_numbers_failing_their_check_are_rejected() {
        assert_eq!(
            nhs_number("943 476 5918"),
            Err("the nhs number's check digit does not match")
        );
        // The first nine digits give check value 10, which no number has.
        assert_eq!(
            nhs_number("999 123 4560"),
            Err("no nhs number has these first nine digits")
        );
        assert_eq!(
            nhs_number("943 476 591"),
            Err("an nhs number has ten digits")
        );
        assert_eq!(
            nhs_number("94347659190"),
            Err("an nhs number has ten digits")
        );
        assert_eq!(
            nhs_number("943476591X"),
            Err("an nhs number has ten digits")
        );
        assert_eq!(
            nhs_number("９４３４７６５９１９"),
            Err("an nhs number has ten digits")
        );
        assert_eq!(nhs_number(""), Err("an nhs number has ten digits"));
    }

    #[test]
    fn postcodes_are_normalised() {
        assert_eq!(postcode("e81dy").unwrap(), "E8 1DY");
        assert_eq!(postcode(" E8  1DY ").unwrap(), "E8 1DY");
        assert_eq!(postcode("sw1a1aa").unwrap(), "SW1A 1AA");
        assert_eq!(postcode("W1A 0AX").unwrap(), "W1A 0AX");
        assert_eq!(postcode("M11AE").unwrap(), "M1 1AE");
        assert_eq!(postcode("B338TH").unwrap(), "B33 8TH");
        assert_eq!(postcode("cr26xh").unwrap(), "CR2 6XH");
        assert_eq!(postcode("DN551PT").unwrap(), "DN55 1PT");
    }

    #[test]
    fn malformed_postcodes_are_rejected() {
        for bad in [
            "",
            "E8",
            "E8 1D",
            "E8 1DYY",
            "8E 1DY",
            "E8 DY1",
            "ZZ99 9ZZZ",
            "E8-1DY",
            "EEE8 1DY",
        ] {
            assert!(postcode(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn pnc_ids_are_upper_cased_and_checked_for_shape() {
        assert_eq!(pnc_id("08/123456k").unwrap(), "08/123456K");
        assert_eq!(pnc_id(" 2008/12A ").unwrap(), "2008/12A");
        for bad in [
            "",
            "08123456K",
            "8/123456K",
            "08/12345678K",
            "08/123456",
            "08/K",
            "ab/123K",
        ] {
            assert!(pnc_id(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn upns_are_checked_for_shape() {
        assert_eq!(upn("a123 4567 8901 2").unwrap(), "A123456789012");
        assert_eq!(upn("A12345678901B").unwrap(), "A12345678901B");
        assert!(upn("112345678901B").is_err());
        assert!(upn("A1234567890").is_err());
    }

    #[test]
    fn identifiers_dispatch_on_scheme() {
        assert_eq!(
            identifier(IdentifierScheme::NhsNumber, "943 476 5919").unwrap(),
            "9434765919"
        );
        assert_eq!(identifier(IdentifierScheme::Local, " X-1 ").unwrap(), "X-1");
        assert!(identifier(IdentifierScheme::Local, "  ").is_err());
        assert!(identifier(IdentifierScheme::Unspecified, "1").is_err());
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        let mut text = "aé".repeat(3);
        assert_eq!(truncate(&mut text, 4), Some(9));
        assert_eq!(text, "aéa");
        let mut short = "abc".to_owned();
        assert_eq!(truncate(&mut short, 3), None);
        assert_eq!(short, "abc");
    }
}
