//! Random policy sets and requests for the property and differential tests.
//!
//! Every name is drawn from a small universe so that generated requests meet generated
//! agreements often: half the requests are built from an agreement's own terms and then perhaps
//! changed in one attribute, which is where allow turns into deny. Every generated set passes
//! [`PolicySet::new`]: lists hold distinct values and dates run forward.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of these generators"
)]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "generators, not code under test: every index is drawn within its list"
)]

use liaison_policy::{
    Action, Agreement, AgreementStatus, BreakGlassScope, BreakGlassTerms, DatasetTerms,
    DecisionRequest, Effect, OperatorRule, PolicySet, RoleFields,
};
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset};

pub const AGENCIES: [&str; 4] = ["ag0", "ag1", "ag2", "ag3"];
pub const ROLES: [&str; 4] = ["ro0", "ro1", "ro2", "ro3"];
pub const DATASETS: [&str; 4] = ["ds0", "ds1", "ds2", "ds3"];
pub const PURPOSES: [&str; 4] = ["pu0", "pu1", "pu2", "pu3"];
/// Record sensitivity markers rules may name.
pub const MARKERS: [&str; 2] = ["mk0", "mk1"];
/// Markers records may carry: those rules may name, and one no rule names.
pub const RECORD_MARKERS: [&str; 3] = ["mk0", "mk1", "mk9"];
/// Agreement ids; a set uses a prefix of these, so the last is often unknown.
pub const ISAS: [&str; 4] = ["isa0", "isa1", "isa2", "isa3"];
/// Field paths shaped like the gateway's, parents and children alike, so masks fold.
pub const FIELDS: [&str; 10] = [
    "person",
    "person.names",
    "person.date_of_birth",
    "person.addresses",
    "incident",
    "incident.summary",
    "warning_marker.marker",
    "safeguarding_concern",
    "risk_assessment.level",
    "relationship",
];
/// Every leaf the generated fields can release, for checking masks path by path.
pub const LEAVES: [&str; 12] = [
    "person.names.given_names",
    "person.names.family_name",
    "person.date_of_birth",
    "person.addresses.postcode",
    "person.gender",
    "incident.summary",
    "incident.category",
    "warning_marker.marker",
    "warning_marker.description",
    "safeguarding_concern.summary",
    "risk_assessment.level",
    "relationship.related_name",
];

/// The first day agreements may start; requests fall a little before, within, and after the
/// windows generated from it.
pub const EPOCH: Date = time::macros::date!(2026 - 01 - 01);
/// Generated windows start within this many days of [`EPOCH`] and last at most as long again.
const SPAN: i64 = 60;

/// A request with owned values; [`OwnedRequest::as_request`] lends it to the engine.
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    pub agency: String,
    pub roles: Vec<String>,
    pub action: Action,
    pub dataset: String,
    pub purpose: String,
    pub isa_id: String,
    pub at: OffsetDateTime,
    pub break_glass: bool,
    /// The markers of a record the request would return.
    pub markers: Vec<String>,
}

/// The random choices behind one request, resolved against a set by [`RequestSeed::resolve`].
#[derive(Debug, Clone)]
pub struct RequestSeed {
    /// Build from an agreement's own terms rather than from the universes.
    derived: bool,
    isa: Index,
    agency: Index,
    dataset: Index,
    purpose: Index,
    roles: Vec<Index>,
    action: Action,
    /// Which of the terms' actions a derived request asks for, unless `mutate` says otherwise.
    derived_action: Index,
    day: i64,
    hour: u8,
    /// Replace one attribute of a derived request with a universe value: 0 isa, 1 agency,
    /// 2 dataset, 3 purpose, 4 roles, 5 action, anything else none.
    mutate: u8,
    random: (Index, Index, Index, Index, Vec<Index>),
    /// Add a role no agreement names.
    stranger: bool,
    /// Invoke break-glass.
    break_glass: bool,
    /// The markers of a record the request would return.
    markers: Vec<String>,
}

pub fn action() -> impl Strategy<Value = Action> {
    select(Action::ALL.to_vec())
}

fn names(universe: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    subsequence(universe, 1..=max).prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn status() -> impl Strategy<Value = AgreementStatus> {
    prop_oneof![
        7 => Just(AgreementStatus::Active),
        1 => Just(AgreementStatus::Draft),
        1 => Just(AgreementStatus::Suspended),
        1 => Just(AgreementStatus::Expired),
    ]
}

fn terms(dataset: String) -> impl Strategy<Value = DatasetTerms> {
    (
        subsequence(Action::ALL.to_vec(), 1..=3),
        subsequence(ROLES.as_slice(), 1..=3),
        proptest::collection::vec(subsequence(FIELDS.as_slice(), 1..=3), 3),
        any::<bool>(),
        any::<bool>(),
        (
            proptest::collection::vec(proptest::bool::weighted(0.4), 3),
            subsequence(FIELDS.as_slice(), 1..=3),
        ),
    )
        .prop_map(
            move |(actions, roles, fields, caveat, notify, (invokes, extra))| {
                // Break-glass may only name roles the terms grant normally.
                let invokers: Vec<String> = roles
                    .iter()
                    .zip(&invokes)
                    .filter(|(_, invokes)| **invokes)
                    .map(|(role, _)| (*role).to_owned())
                    .collect();
                let break_glass = if invokers.is_empty() {
                    Vec::new()
                } else {
                    vec![BreakGlassTerms {
                        roles: invokers,
                        fields: extra.into_iter().map(str::to_owned).collect(),
                    }]
                };
                DatasetTerms {
                    dataset: dataset.clone(),
                    actions,
                    roles: roles
                        .into_iter()
                        .zip(fields)
                        .map(|(role, fields)| RoleFields {
                            role: role.to_owned(),
                            fields: fields.into_iter().map(str::to_owned).collect(),
                        })
                        .collect(),
                    handling_caveat: caveat.then(|| "OFFICIAL-SENSITIVE".to_owned()),
                    notify_provider: notify,
                    break_glass,
                }
            },
        )
}

/// One agreement with id `id`.
pub fn agreement(id: &'static str) -> impl Strategy<Value = Agreement> {
    let datasets = subsequence(DATASETS.as_slice(), 1..=2).prop_flat_map(|names| {
        names
            .into_iter()
            .map(|d| terms(d.to_owned()))
            .collect::<Vec<_>>()
    });
    (
        (1u32..4, select(AGENCIES.to_vec()), names(&AGENCIES, 3)),
        names(&PURPOSES, 3),
        datasets,
        status(),
        (
            0..SPAN,
            proptest::option::of(0..SPAN),
            proptest::option::of(0..SPAN),
        ),
    )
        .prop_map(
            move |((version, provider, recipients), purposes, datasets, status, dates)| {
                let (from, until, review) = dates;
                let valid_from = EPOCH + Duration::days(from);
                Agreement {
                    id: id.to_owned(),
                    version,
                    title: format!("generated agreement {id}"),
                    provider: provider.to_owned(),
                    recipients,
                    purposes,
                    legal_basis: "generated".to_owned(),
                    datasets,
                    valid_from,
                    valid_until: until.map(|days| valid_from + Duration::days(days)),
                    review_date: review.map(|days| valid_from + Duration::days(days)),
                    status,
                    dpo_contacts: Vec::new(),
                    controllership: None,
                    special_category: false,
                    law_enforcement: false,
                    rights_handling: None,
                    retention: None,
                    security_requirements: None,
                    sign_off: Vec::new(),
                }
            },
        )
}

fn pattern(universe: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        2 => select(universe).prop_map(str::to_owned),
    ]
}

/// One operator deny rule with id `id`; each attribute is `*` a third of the time. A third of
/// rules withhold a marker's records rather than refuse shares, and a third are confined to
/// break-glass or (marker rules only) exempt from it.
pub fn rule(id: String) -> impl Strategy<Value = OperatorRule> {
    (
        pattern(&AGENCIES),
        pattern(&ROLES),
        pattern(&DATASETS),
        pattern(&PURPOSES),
        prop_oneof![
            1 => Just("*".to_owned()),
            2 => action().prop_map(|a| a.as_str().to_owned()),
        ],
        prop_oneof![
            2 => Just(None),
            1 => select(MARKERS.as_slice()).prop_map(|m| Some(m.to_owned())),
        ],
        prop_oneof![
            4 => Just(BreakGlassScope::Applies),
            1 => Just(BreakGlassScope::Deny),
            1 => Just(BreakGlassScope::Exempt),
        ],
    )
        .prop_map(
            move |(agency, role, dataset, purpose, action, marker, scope)| {
                // Exempting a rule that refuses whole shares would let break-glass lift a
                // denial, which the policy refuses.
                let break_glass = if marker.is_none() && scope == BreakGlassScope::Exempt {
                    BreakGlassScope::Applies
                } else {
                    scope
                };
                OperatorRule {
                    id: id.clone(),
                    effect: Effect::Deny,
                    agency,
                    role,
                    dataset,
                    purpose,
                    action,
                    description: "generated".to_owned(),
                    marker,
                    break_glass,
                }
            },
        )
}

/// Up to `agreements` agreements (ids taken in order from [`ISAS`]) and up to `rules` rules.
pub fn policy_set(agreements: usize, rules: usize) -> impl Strategy<Value = PolicySet> {
    (0..=agreements, 0..=rules).prop_flat_map(|(n_agreements, n_rules)| {
        let agreements: Vec<_> = ISAS
            .iter()
            .take(n_agreements)
            .map(|id| agreement(id))
            .collect();
        let rules: Vec<_> = (0..n_rules).map(|i| rule(format!("rule{i}"))).collect();
        (agreements, rules).prop_map(|(agreements, rules)| {
            PolicySet::new(agreements, rules).expect("generated sets are valid")
        })
    })
}

pub fn request_seed() -> impl Strategy<Value = RequestSeed> {
    (
        (
            any::<bool>(),
            any::<Index>(),
            any::<Index>(),
            any::<Index>(),
        ),
        (
            any::<Index>(),
            proptest::collection::vec(any::<Index>(), 1..=2),
            action(),
        ),
        (-10..2 * SPAN + 10, 0u8..24, 0u8..12, any::<Index>()),
        (
            any::<Index>(),
            any::<Index>(),
            any::<Index>(),
            any::<Index>(),
            proptest::collection::vec(any::<Index>(), 0..=3),
        ),
        (
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.3),
            subsequence(RECORD_MARKERS.as_slice(), 0..=2),
        ),
    )
        .prop_map(
            |(
                (derived, isa, agency, dataset),
                (purpose, roles, action),
                (day, hour, mutate, derived_action),
                random,
                (stranger, break_glass, markers),
            )| RequestSeed {
                derived,
                isa,
                agency,
                dataset,
                purpose,
                roles,
                action,
                derived_action,
                day,
                hour,
                mutate,
                random,
                stranger,
                break_glass,
                markers: markers.into_iter().map(str::to_owned).collect(),
            },
        )
}

/// A policy set and `requests` request seeds to put to it.
pub fn scenario(
    agreements: usize,
    rules: usize,
    requests: usize,
) -> impl Strategy<Value = (PolicySet, Vec<RequestSeed>)> {
    (
        policy_set(agreements, rules),
        proptest::collection::vec(request_seed(), requests),
    )
}

impl RequestSeed {
    /// The request these choices make against `set`.
    pub fn resolve(&self, set: &PolicySet) -> OwnedRequest {
        let (r_isa, r_agency, r_dataset, r_purpose, r_roles) = &self.random;
        let pick =
            |universe: &[&str], index: &Index| universe[index.index(universe.len())].to_owned();
        let mut request = OwnedRequest {
            isa_id: pick(&ISAS, r_isa),
            agency: pick(&AGENCIES, r_agency),
            dataset: pick(&DATASETS, r_dataset),
            purpose: pick(&PURPOSES, r_purpose),
            roles: r_roles.iter().map(|i| pick(&ROLES, i)).collect(),
            action: self.action,
            at: OffsetDateTime::new_in_offset(
                EPOCH + Duration::days(self.day),
                Time::from_hms(self.hour, 0, 0).unwrap(),
                UtcOffset::UTC,
            ),
            break_glass: self.break_glass,
            markers: self.markers.clone(),
        };
        let agreements = set.agreements();
        if self.derived && !agreements.is_empty() {
            let a = &agreements[self.isa.index(agreements.len())];
            let terms = &a.datasets[self.dataset.index(a.datasets.len())];
            let original = request.clone();
            request.isa_id = a.id.clone();
            request.agency = a.recipients[self.agency.index(a.recipients.len())].clone();
            request.dataset = terms.dataset.clone();
            request.purpose = a.purposes[self.purpose.index(a.purposes.len())].clone();
            request.roles = self
                .roles
                .iter()
                .map(|i| terms.roles[i.index(terms.roles.len())].role.clone())
                .collect();
            request.action = terms.actions[self.derived_action.index(terms.actions.len())];
            // Keep the day inside the agreement's window most of the time.
            if !self.hour.is_multiple_of(4) {
                let end = a.valid_until.unwrap_or(a.valid_from + Duration::days(SPAN));
                let length = (end - a.valid_from).whole_days() + 1;
                let day = a.valid_from + Duration::days(self.day.rem_euclid(length));
                request.at = OffsetDateTime::new_in_offset(day, request.at.time(), UtcOffset::UTC);
            }
            match self.mutate {
                0 => request.isa_id = original.isa_id,
                1 => request.agency = original.agency,
                2 => request.dataset = original.dataset,
                3 => request.purpose = original.purpose,
                4 => request.roles = original.roles,
                5 => request.action = original.action,
                _ => {}
            }
        }
        if self.stranger {
            request.roles.push("stranger".to_owned());
        }
        request
    }
}

impl OwnedRequest {
    pub fn as_request(&self) -> DecisionRequest<'_> {
        DecisionRequest {
            agency: &self.agency,
            roles: &self.roles,
            action: self.action,
            dataset: &self.dataset,
            purpose: &self.purpose,
            isa_id: &self.isa_id,
            at: self.at,
            break_glass: self.break_glass,
        }
    }
}
