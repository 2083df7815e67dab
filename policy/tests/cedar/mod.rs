//! A second, independent evaluation of Liaison's policies, written in Cedar.
//!
//! Each agreement's dataset terms become one `permit`, each operator deny rule one `forbid`;
//! Cedar's own semantics supply deny-by-default and forbid-overrides-permit. The agreement's
//! state (status and dates) is entity data, not policy text, so suspending an agreement is a data
//! change here just as it is a reload for the engine. Nothing here reads the engine's code or its
//! casbin lines: only the policy set as a DPO would read it.
//!
//! The shape of a Cedar request:
//!
//! * principal `User::"caller"` with `agency: Agency::"<id>"` and `roles: Set<String>`;
//! * action `Action::"search" | "read" | "subscribe"`;
//! * resource `Dataset::"<id>"`;
//! * context `{ isa: Isa::"<id>", purpose: String, day: Long, break_glass: Bool,
//!   markers: Set<String> }`, where `markers` are those of a record the share would return
//!   (empty for the share itself) and `day` is the Julian day
//!   number of the request's date, and the entity `Isa::"<id>"`, when the agreement exists,
//!   holds `status: String`, `valid_from: Long` and, when it ends, `valid_until: Long`.

#![allow(
    dead_code,
    reason = "the differential test and the benchmark use different parts"
)]
#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a translation Cedar refuses is a bug in the translator and must stop \
              the run"
)]

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request,
    RestrictedExpression,
};
use liaison_policy::{
    Action, Agreement, BreakGlassScope, DecisionRequest, OperatorRule, PolicySet,
};

/// A policy set translated to Cedar, compiled once and reused for every request.
pub struct CedarPolicy {
    text: String,
    policies: cedar_policy::PolicySet,
    /// The `Isa` entity of each agreement, by id.
    isas: HashMap<String, Entity>,
    authorizer: Authorizer,
}

impl CedarPolicy {
    pub fn translate(set: &PolicySet) -> Self {
        let mut text = String::new();
        for agreement in set.agreements() {
            permits(&mut text, agreement);
        }
        for rule in set.rules() {
            forbid(&mut text, rule);
        }
        let policies = text
            .parse()
            .unwrap_or_else(|e| panic!("cedar refused the translation: {e:?}\n{text}"));
        let isas = set
            .agreements()
            .iter()
            .map(|a| (a.id.clone(), isa_entity(a)))
            .collect();
        Self {
            text,
            policies,
            isas,
            authorizer: Authorizer::new(),
        }
    }

    /// The Cedar source, for a failure message.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many Cedar policies the translation holds.
    pub fn len(&self) -> usize {
        self.policies.policies().count()
    }

    /// The Cedar request and entities for `req`, about the share itself.
    pub fn request(&self, req: &DecisionRequest<'_>) -> (Request, Entities) {
        self.record_request(req, &[])
    }

    /// The Cedar request and entities for `req`, about a record carrying `markers`.
    pub fn record_request(
        &self,
        req: &DecisionRequest<'_>,
        markers: &[String],
    ) -> (Request, Entities) {
        let user = uid("User", "caller");
        let attrs = HashMap::from([
            (
                "agency".to_owned(),
                RestrictedExpression::new_entity_uid(uid("Agency", req.agency)),
            ),
            (
                "roles".to_owned(),
                RestrictedExpression::new_set(
                    req.roles
                        .iter()
                        .map(|role| RestrictedExpression::new_string(role.clone())),
                ),
            ),
        ]);
        let caller = Entity::new(user.clone(), attrs, HashSet::new()).expect("caller entity");
        let entities = Entities::from_entities(
            std::iter::once(caller).chain(self.isas.get(req.isa_id).cloned()),
            None,
        )
        .expect("entities");
        let context = Context::from_pairs([
            (
                "isa".to_owned(),
                RestrictedExpression::new_entity_uid(uid("Isa", req.isa_id)),
            ),
            (
                "purpose".to_owned(),
                RestrictedExpression::new_string(req.purpose.to_owned()),
            ),
            (
                "day".to_owned(),
                RestrictedExpression::new_long(i64::from(req.at.date().to_julian_day())),
            ),
            (
                "break_glass".to_owned(),
                RestrictedExpression::new_bool(req.break_glass),
            ),
            (
                "markers".to_owned(),
                RestrictedExpression::new_set(
                    markers
                        .iter()
                        .map(|m| RestrictedExpression::new_string(m.clone())),
                ),
            ),
        ])
        .expect("context");
        let request = Request::new(
            user,
            uid("Action", req.action.as_str()),
            uid("Dataset", req.dataset),
            context,
            None,
        )
        .expect("request");
        (request, entities)
    }

    /// Cedar's answer to a request built by [`CedarPolicy::request`].
    pub fn is_authorized(&self, request: &Request, entities: &Entities) -> bool {
        let response = self
            .authorizer
            .is_authorized(request, &self.policies, entities);
        response.decision() == Decision::Allow
    }

    pub fn allows(&self, req: &DecisionRequest<'_>) -> bool {
        let (request, entities) = self.request(req);
        self.is_authorized(&request, &entities)
    }

    /// Whether a record carrying `markers` is released to `req`.
    pub fn allows_record(&self, req: &DecisionRequest<'_>, markers: &[String]) -> bool {
        let (request, entities) = self.record_request(req, markers);
        self.is_authorized(&request, &entities)
    }
}

/// One `permit` per dataset the agreement covers: the caller's agency is a recipient, the purpose
/// is permitted, the action is one the terms list, and the caller holds a role the terms name;
/// all under the named agreement, while it is active and in force. A caller invoking
/// break-glass must also hold a role the terms' break-glass lists name.
fn permits(out: &mut String, agreement: &Agreement) {
    let recipients = list(
        agreement
            .recipients
            .iter()
            .map(|r| format!("Agency::{r:?}")),
    );
    let purposes = list(agreement.purposes.iter().map(|p| format!("{p:?}")));
    for terms in &agreement.datasets {
        let actions = list(terms.actions.iter().map(|a| action_uid(*a)));
        let roles = list(terms.roles.iter().map(|grant| format!("{:?}", grant.role)));
        let invokers = list(
            terms
                .break_glass
                .iter()
                .flat_map(|bg| bg.roles.iter())
                .map(|role| format!("{role:?}")),
        );
        let _ = write!(
            out,
            r#"permit (principal, action in {actions}, resource == Dataset::{dataset:?})
when {{
    context.isa == Isa::{isa:?} &&
    context.isa.status == "active" &&
    context.isa.valid_from <= context.day &&
    (!(context.isa has valid_until) || context.day <= context.isa.valid_until) &&
    {recipients}.contains(principal.agency) &&
    {purposes}.contains(context.purpose) &&
    principal.roles.containsAny({roles}) &&
    (!context.break_glass || principal.roles.containsAny({invokers}))
}};
"#,
            dataset = terms.dataset,
            isa = agreement.id,
        );
    }
}

/// One `forbid` per operator rule; `*` leaves the attribute unconstrained. A marker rule forbids
/// records carrying its marker; a rule confined to break-glass, or exempt from it, says so of
/// `context.break_glass`.
fn forbid(out: &mut String, rule: &OperatorRule) {
    let action = match rule.action.as_str() {
        "*" => "action".to_owned(),
        action => format!("action == Action::{action:?}"),
    };
    let resource = match rule.dataset.as_str() {
        "*" => "resource".to_owned(),
        dataset => format!("resource == Dataset::{dataset:?}"),
    };
    let mut conditions = Vec::new();
    if rule.agency != "*" {
        conditions.push(format!("principal.agency == Agency::{:?}", rule.agency));
    }
    if rule.purpose != "*" {
        conditions.push(format!("context.purpose == {:?}", rule.purpose));
    }
    if rule.role != "*" {
        conditions.push(format!("principal.roles.contains({:?})", rule.role));
    }
    if let Some(marker) = &rule.marker {
        conditions.push(format!("context.markers.contains({marker:?})"));
    }
    match rule.break_glass {
        BreakGlassScope::Applies => {}
        BreakGlassScope::Deny => conditions.push("context.break_glass".to_owned()),
        BreakGlassScope::Exempt => conditions.push("!context.break_glass".to_owned()),
    }
    let condition = if conditions.is_empty() {
        "true".to_owned()
    } else {
        conditions.join(" && ")
    };
    let _ = writeln!(
        out,
        "@id({id:?})\nforbid (principal, {action}, {resource}) when {{ {condition} }};",
        id = format!("rule:{}", rule.id),
    );
}

fn isa_entity(agreement: &Agreement) -> Entity {
    let day = |date: time::Date| RestrictedExpression::new_long(i64::from(date.to_julian_day()));
    let mut attrs = HashMap::from([
        (
            "status".to_owned(),
            RestrictedExpression::new_string(agreement.status.as_str().to_owned()),
        ),
        ("valid_from".to_owned(), day(agreement.valid_from)),
    ]);
    if let Some(until) = agreement.valid_until {
        attrs.insert("valid_until".to_owned(), day(until));
    }
    Entity::new(uid("Isa", &agreement.id), attrs, HashSet::new()).expect("isa entity")
}

fn action_uid(action: Action) -> String {
    format!("Action::{:?}", action.as_str())
}

fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

fn uid(kind: &str, id: &str) -> EntityUid {
    let kind: EntityTypeName = kind.parse().expect("entity type");
    EntityUid::from_type_name_and_id(kind, EntityId::new(id))
}
