//! A caller's search, checked and normalised once, and the match rules of
//! `connectors/SPEC.md` 1.3 that every connector enforces on what its
//! source returns.
//!
//! Sources pre-select candidates (SQL `WHERE`, an API's query parameters, a
//! scan of a file); the rules here decide. So the answer keeps to the
//! contract whatever the operator's SQL or the remote API does.

use liaison_proto::v1::{Date, IdentifierScheme, Person};

use super::compile::Format;
use super::params::Param;
use crate::error::excerpt;
use crate::{ConnectorError, PersonQuery, normalise};

/// Longer search terms are refused: no name or identifier is this long.
pub(crate) const MAX_TERM_BYTES: usize = 256;

/// A caller's query, checked and normalised.
#[derive(Debug, Default)]
pub(crate) struct SearchTerms {
    pub(crate) family_name: Option<String>,
    pub(crate) given_name: Option<String>,
    pub(crate) date_of_birth: Option<time::Date>,
    /// The date written in the source's own format, when the mapping's
    /// date of birth field has one.
    pub(crate) date_of_birth_source: Option<String>,
    pub(crate) postcode: Option<String>,
    /// Scheme, normalised value, and system (empty when not given).
    pub(crate) identifiers: Vec<(IdentifierScheme, String, String)>,
}

impl SearchTerms {
    /// Checks and normalises `query`, refusing it as the caller's fault
    /// when it has no criterion or one that cannot be valid.
    pub(crate) fn parse(
        dataset: &str,
        query: &PersonQuery,
        dob_format: Option<&Format>,
    ) -> Result<Self, ConnectorError> {
        let refuse = |reason: String| ConnectorError::InvalidQuery {
            dataset: dataset.to_owned(),
            reason,
        };
        let term = |name: &str, value: &Option<String>| -> Result<Option<String>, ConnectorError> {
            match value.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) if v.len() > MAX_TERM_BYTES => Err(refuse(format!(
                    "`{name}` is longer than {MAX_TERM_BYTES} bytes"
                ))),
                Some(v) => Ok(Some(v.to_owned())),
            }
        };
        let mut terms = Self {
            family_name: term("family_name", &query.family_name)?,
            given_name: term("given_name", &query.given_name)?,
            ..Self::default()
        };
        if let Some(date) = &query.date_of_birth {
            let d = calendar_date(date).ok_or_else(|| {
                refuse(format!(
                    "`date_of_birth` {:04}-{:02}-{:02} is not a calendar date",
                    date.year, date.month, date.day
                ))
            })?;
            terms.date_of_birth = Some(d);
            terms.date_of_birth_source = match dob_format {
                Some(Format::Description { items, .. }) => d.format(items).ok(),
                _ => iso_date(d),
            };
        }
        if let Some(raw) = term("postcode", &query.postcode)? {
            let postcode = normalise::postcode(&raw).map_err(|why| {
                refuse(format!(
                    "`postcode` `{}` is not valid: {why}",
                    excerpt(&raw, 16)
                ))
            })?;
            terms.postcode = Some(postcode);
        }
        for identifier in &query.identifiers {
            let scheme = IdentifierScheme::try_from(identifier.scheme)
                .unwrap_or(IdentifierScheme::Unspecified);
            if identifier.value.len() > MAX_TERM_BYTES {
                return Err(refuse(format!(
                    "an identifier is longer than {MAX_TERM_BYTES} bytes"
                )));
            }
            let value = normalise::identifier(scheme, &identifier.value).map_err(|why| {
                refuse(format!(
                    "identifier `{}` of scheme `{}` is not valid: {why}",
                    excerpt(&identifier.value, 32),
                    scheme.as_str_name()
                ))
            })?;
            if terms.identifiers.iter().any(|(s, _, _)| *s == scheme) {
                return Err(refuse(format!(
                    "the query holds more than one identifier of scheme `{}`",
                    scheme.as_str_name()
                )));
            }
            terms
                .identifiers
                .push((scheme, value, identifier.system.trim().to_owned()));
        }
        let empty = terms.family_name.is_none()
            && terms.given_name.is_none()
            && terms.date_of_birth.is_none()
            && terms.postcode.is_none()
            && terms.identifiers.is_empty();
        if empty {
            return Err(refuse("the query has no criteria".into()));
        }
        Ok(terms)
    }

    pub(crate) fn identifier(&self, scheme: IdentifierScheme) -> Option<String> {
        self.identifiers
            .iter()
            .find(|(s, _, _)| *s == scheme)
            .map(|(_, v, _)| v.clone())
    }

    /// The text of a search parameter, or `None` when the caller did not
    /// give it. `:given_name_prefix` is SQL's own and `:limit` and
    /// `:source_id` are not search terms, so those are `None` here.
    pub(crate) fn text(&self, param: Param) -> Option<String> {
        match param {
            Param::FamilyName => self.family_name.clone(),
            Param::GivenName => self.given_name.clone(),
            Param::DateOfBirth => self.date_of_birth_source.clone(),
            Param::DateOfBirthIso => self.date_of_birth.and_then(iso_date),
            Param::Postcode => self.postcode.clone(),
            Param::PostcodeCompact => self.postcode.as_ref().map(|p| p.replace(' ', "")),
            Param::NhsNumber => self.identifier(IdentifierScheme::NhsNumber),
            Param::PncId => self.identifier(IdentifierScheme::PncId),
            Param::Upn => self.identifier(IdentifierScheme::Upn),
            Param::LocalId => self.identifier(IdentifierScheme::Local),
            Param::GivenNamePrefix | Param::SourceId | Param::After | Param::Limit => None,
        }
    }

    /// Whether a mapped person meets every criterion.
    pub(crate) fn matches(&self, person: &Person) -> bool {
        let fold = |s: &str| s.to_lowercase();
        let family_ok = self.family_name.as_deref().is_none_or(|want| {
            let want = fold(want);
            person.names.iter().any(|n| fold(&n.family_name) == want)
        });
        let given_ok = self.given_name.as_deref().is_none_or(|want| {
            let want = fold(want);
            person
                .names
                .iter()
                .any(|n| fold(&n.given_names).starts_with(&want))
        });
        let dob_ok = self.date_of_birth.is_none_or(|want| {
            person
                .date_of_birth
                .as_ref()
                .and_then(calendar_date)
                .is_some_and(|d| d == want)
        });
        let postcode_ok = self
            .postcode
            .as_deref()
            .is_none_or(|want| person.addresses.iter().any(|a| a.postcode == want));
        let identifiers_ok = self.identifiers.iter().all(|(scheme, value, system)| {
            person.identifiers.iter().any(|i| {
                i.scheme == *scheme as i32
                    && i.value == *value
                    && (system.is_empty() || i.system == *system)
            })
        });
        family_ok && given_ok && dob_ok && postcode_ok && identifiers_ok
    }
}

pub(crate) fn calendar_date(date: &Date) -> Option<time::Date> {
    let month = u8::try_from(date.month).ok()?;
    let month = time::Month::try_from(month).ok()?;
    let day = u8::try_from(date.day).ok()?;
    time::Date::from_calendar_date(date.year, month, day).ok()
}

pub(crate) fn iso_date(date: time::Date) -> Option<String> {
    date.format(&time::format_description::well_known::Iso8601::DATE)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_are_checked() {
        let date = |year, month, day| Date { year, month, day };
        assert!(calendar_date(&date(2013, 5, 14)).is_some());
        assert!(calendar_date(&date(2010, 2, 31)).is_none());
        assert!(calendar_date(&date(2010, 13, 1)).is_none());
        assert!(calendar_date(&date(2010, -1, 1)).is_none());
    }
}
