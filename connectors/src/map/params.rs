//! The named values a mapping can ask for: the caller's search terms, the
//! person's source id, a change feed's cursor and the row bound. SQL binds them as `:name`, HTTP
//! request templates fill them in as `{name}`.

/// A value the connector can bind to a named parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Param {
    FamilyName,
    GivenName,
    GivenNamePrefix,
    DateOfBirth,
    DateOfBirthIso,
    Postcode,
    PostcodeCompact,
    NhsNumber,
    PncId,
    Upn,
    LocalId,
    SourceId,
    /// The cursor a change feed resumes after.
    After,
    Limit,
}

/// Parameters a search query may use.
pub(crate) const SEARCH_PARAMS: &[Param] = &[
    Param::FamilyName,
    Param::GivenName,
    Param::GivenNamePrefix,
    Param::DateOfBirth,
    Param::DateOfBirthIso,
    Param::Postcode,
    Param::PostcodeCompact,
    Param::NhsNumber,
    Param::PncId,
    Param::Upn,
    Param::LocalId,
    Param::Limit,
];

/// Parameters a query keyed by one person may use.
pub(crate) const PERSON_PARAMS: &[Param] = &[Param::SourceId, Param::Limit];

/// Parameters a change feed's query may use.
pub(crate) const CHANGE_PARAMS: &[Param] = &[Param::After, Param::Limit];

/// Parameters the query for a change feed's latest cursor may use.
pub(crate) const HEAD_PARAMS: &[Param] = &[Param::Limit];

const ALL: &[Param] = &[
    Param::FamilyName,
    Param::GivenName,
    Param::GivenNamePrefix,
    Param::DateOfBirth,
    Param::DateOfBirthIso,
    Param::Postcode,
    Param::PostcodeCompact,
    Param::NhsNumber,
    Param::PncId,
    Param::Upn,
    Param::LocalId,
    Param::SourceId,
    Param::After,
    Param::Limit,
];

impl Param {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::FamilyName => "family_name",
            Self::GivenName => "given_name",
            Self::GivenNamePrefix => "given_name_prefix",
            Self::DateOfBirth => "date_of_birth",
            Self::DateOfBirthIso => "date_of_birth_iso",
            Self::Postcode => "postcode",
            Self::PostcodeCompact => "postcode_compact",
            Self::NhsNumber => "nhs_number",
            Self::PncId => "pnc_id",
            Self::Upn => "upn",
            Self::LocalId => "local_id",
            Self::SourceId => "source_id",
            Self::After => "after",
            Self::Limit => "limit",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        ALL.iter().copied().find(|p| p.name() == name)
    }
}
