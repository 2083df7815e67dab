use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use casbin::{CoreApi, Enforcer};

use crate::cache::{DEFAULT_CAPACITY, DecisionCache};
use crate::decision::{Decision, DecisionRequest, DenyReason, Grant, Obligation, Withholding};
use crate::error::PolicyError;
use crate::isa::{Action, Agreement, AgreementStatus, BreakGlassScope, Effect, OperatorRule};
use crate::mask::FieldMask;
use crate::model::{MODEL, build_enforcer, has_shipped_matcher, parse_model, validate_model};
use crate::set::PolicySet;
use crate::table::DecisionTable;
use crate::version::policy_version;

/// A compiled policy: immutable, `Send + Sync`, cheap to share in an `Arc` and to swap whole on
/// reload.
///
/// casbin-rs evaluates every policy line on every call, so lines are not kept in one enforcer.
/// Each (agreement, dataset, recipient agency) gets its own small enforcer holding only that
/// agreement's allow lines for that dataset and recipient, plus the operator deny lines whose
/// agency and dataset could match. The index only narrows: every line still carries every
/// attribute and the matcher checks them all, so a wrong lookup can only deny.
///
/// Within one enforcer casbin's answer depends only on which of the enforcer's constants each
/// request attribute equals, so compiling asks casbin once per combination and keeps its answers
/// in a decision table (see `table.rs`); a decision maps the request to its combination, once
/// per distinct role and marker question, and reads what casbin said. An enforcer whose
/// combinations exceed [`CompileOptions::max_table_cells`], or any enforcer under a model with
/// another matcher, is asked live instead.
pub struct PolicyEngine {
    version: String,
    agreements: BTreeMap<String, CompiledAgreement>,
    /// The operator rules as written, for explain.
    rules: Vec<OperatorRule>,
    /// Decisions already made by this engine; see [`PolicyEngine::with_decision_cache`].
    cache: DecisionCache,
}

struct CompiledAgreement {
    agreement: Agreement,
    datasets: HashMap<String, CompiledDataset>,
}

struct CompiledDataset {
    /// The fields each role of the agreement's terms releases.
    masks: HashMap<String, FieldMask>,
    /// The fields break-glass adds, for each role that may invoke it.
    break_glass: HashMap<String, FieldMask>,
    obligations: Vec<Obligation>,
    by_recipient: HashMap<String, Candidates>,
}

/// The casbin lines that can match requests from one recipient for one dataset.
struct Candidates {
    evaluator: Evaluator,
    /// What the engine needs of each line, by its position in the enforcer.
    lines: Vec<Line>,
    /// Roles some line names.
    named_roles: HashSet<String>,
    /// Whether some line matches any role (`*`).
    any_role: bool,
    /// The markers some marker rule here names; each is put to casbin once per allowed share.
    markers: BTreeSet<String>,
}

/// How the lines casbin matches for a request are found.
enum Evaluator {
    /// Read from casbin's answers, asked for every class of request when the engine was built.
    Table(DecisionTable),
    /// Asked of casbin on every call: the enforcer's combinations exceed the table bound, or the
    /// model's matcher is not the shipped one.
    Live {
        /// Boxed: an enforcer is several times the size of a table, and most are tables.
        enforcer: Box<Enforcer>,
        /// Each line's position, by id (ids are unique within an enforcer).
        positions: HashMap<String, u32>,
    },
}

/// One compiled line as a decision uses it.
struct Line {
    id: String,
    kind: LineKind,
}

enum LineKind {
    Allow,
    Deny {
        /// The line's position among the deny lines, which follow the policy file, so that when
        /// several rules deny (through different roles) the one reported does not depend on the
        /// order of the caller's roles.
        rank: usize,
        /// The operator rule's own id.
        rule: String,
        /// Whether it applies only to break-glass shares (`break_glass = "deny"`).
        glass_only: bool,
    },
}

/// What casbin said across the roles it was asked about.
#[derive(Default)]
struct Verdict<'a> {
    /// Roles for which an agreement line matched, sorted and distinct.
    granted: Vec<&'a str>,
    /// The operator rule that denied, earliest in the policy file, with its position.
    denied_by: Option<(usize, &'a str)>,
    /// The same for rules that apply only to break-glass shares.
    glass_denied_by: Option<(usize, &'a str)>,
    matched: Vec<&'a str>,
    failed: bool,
}

/// How [`PolicyEngine::compile_with`] builds an engine.
#[derive(Debug, Clone, Copy)]
pub struct CompileOptions<'a> {
    /// The casbin model; it must pass [`validate_model`].
    pub model: &'a str,
    /// The most combinations of request classes one enforcer's decision table may hold. An
    /// enforcer over the bound, and every enforcer when this is zero, puts each decision to
    /// casbin live, at some microseconds per line.
    pub max_table_cells: usize,
}

impl CompileOptions<'_> {
    /// 4,096 combinations: some tens of milliseconds of casbin calls to fill at ten lines, 16 KiB
    /// to keep.
    pub const DEFAULT_TABLE_CELLS: usize = 4_096;
}

impl Default for CompileOptions<'static> {
    fn default() -> Self {
        Self {
            model: MODEL,
            max_table_cells: Self::DEFAULT_TABLE_CELLS,
        }
    }
}

/// How a compiled engine's enforcers decide, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCoverage {
    /// Enforcers answering from a decision table.
    pub tables: usize,
    /// Enforcers asking casbin on every decision.
    pub live: usize,
    /// Combinations held across all tables.
    pub cells: usize,
}

impl PolicyEngine {
    /// Compiles `set` against the shipped [`MODEL`], with decision tables.
    ///
    /// Synchronous and CPU-bound: a gateway reloading policy from async code should call it
    /// inside `spawn_blocking`.
    pub fn compile(set: &PolicySet) -> Result<Self, PolicyError> {
        Self::compile_with(set, CompileOptions::default())
    }

    /// Compiles `set` against another casbin model, which must pass [`validate_model`].
    pub fn compile_with_model(set: &PolicySet, model_text: &str) -> Result<Self, PolicyError> {
        Self::compile_with(
            set,
            CompileOptions {
                model: model_text,
                ..CompileOptions::default()
            },
        )
    }

    /// Compiles `set` as `options` say.
    ///
    /// Each enforcer whose request classes number at most `options.max_table_cells` is asked
    /// about every class here, once, so that decisions read casbin's answers instead of running
    /// its matcher; that is most of the compile time. Under a model whose matcher is not the
    /// shipped one the classes would not be exact, so every enforcer is asked live.
    pub fn compile_with(set: &PolicySet, options: CompileOptions<'_>) -> Result<Self, PolicyError> {
        let model_text = options.model;
        validate_model(model_text)?;
        let model = parse_model(model_text)?;
        let version = policy_version(model_text, set.agreements(), set.rules());
        let max_cells = if has_shipped_matcher(&model) {
            options.max_table_cells
        } else {
            tracing::info!("the casbin model's matcher is not the shipped one; deciding live");
            0
        };

        // Every enforcer is independent of the others, and filling their tables is most of the
        // work, so they are built first, on every core.
        let keys: Vec<(&Agreement, &str, &str)> = set
            .agreements()
            .iter()
            .flat_map(|a| {
                a.datasets.iter().flat_map(move |terms| {
                    a.recipients
                        .iter()
                        .map(move |r| (a, terms.dataset.as_str(), r.as_str()))
                })
            })
            .collect();
        let mut built = build_enforcers(&model, &keys, set.rules(), max_cells)?.into_iter();

        let mut agreements = BTreeMap::new();
        for agreement in set.agreements() {
            let mut datasets = HashMap::new();
            for terms in &agreement.datasets {
                let masks = terms
                    .roles
                    .iter()
                    .map(|grant| (grant.role.clone(), FieldMask::new(&grant.fields)))
                    .collect();
                let break_glass = terms
                    .break_glass
                    .iter()
                    .flat_map(|bg| bg.roles.iter())
                    .filter_map(|role| {
                        let fields = terms.break_glass_fields_for(role)?;
                        Some((role.clone(), FieldMask::new(fields)))
                    })
                    .collect();
                let mut obligations = Vec::new();
                if let Some(caveat) = &terms.handling_caveat {
                    obligations.push(Obligation::HandlingCaveat(caveat.clone()));
                }
                if terms.notify_provider {
                    obligations.push(Obligation::NotifyProvider);
                }
                let mut by_recipient = HashMap::new();
                for recipient in &agreement.recipients {
                    // `built` follows the order `keys` was gathered in, which this loop repeats.
                    let candidates = built.next().ok_or_else(|| PolicyError::Casbin {
                        message: "fewer enforcers were built than asked for".into(),
                    })?;
                    by_recipient.insert(recipient.clone(), candidates);
                }
                datasets.insert(
                    terms.dataset.clone(),
                    CompiledDataset {
                        masks,
                        break_glass,
                        obligations,
                        by_recipient,
                    },
                );
            }
            agreements.insert(
                agreement.id.clone(),
                CompiledAgreement {
                    agreement: agreement.clone(),
                    datasets,
                },
            );
        }
        let engine = Self {
            version,
            agreements,
            rules: set.rules().to_vec(),
            cache: DecisionCache::new(DEFAULT_CAPACITY),
        };
        let coverage = engine.table_coverage();
        tracing::debug!(
            version = engine.version,
            agreements = engine.agreements.len(),
            tables = coverage.tables,
            live = coverage.live,
            cells = coverage.cells,
            "policy compiled"
        );
        Ok(engine)
    }

    /// Keeps up to `capacity` decisions (16,384 unless set), or none when `capacity` is zero.
    ///
    /// The cache belongs to this engine, so a reloaded policy, being a new engine, never sees an
    /// old policy's decisions; and its key holds every input of a decision, so a hit is exactly
    /// what evaluating would return. A hit is still about three times cheaper than reading the
    /// decision tables (it skips the lookups and returns a finished decision), and far cheaper
    /// where an enforcer is asked live.
    #[must_use]
    pub fn with_decision_cache(mut self, capacity: usize) -> Self {
        self.cache = DecisionCache::new(capacity);
        self
    }

    /// Decides one request. Synchronous and without I/O: safe on any async worker. The only lock
    /// is the decision cache's, held for a map lookup or insert. casbin runs only for enforcers
    /// without a decision table.
    pub fn decide(&self, req: &DecisionRequest<'_>) -> Decision {
        let Some(compiled) = self.agreements.get(req.isa_id) else {
            return self.deny(
                None,
                DenyReason::AgreementUnknown {
                    isa: req.isa_id.to_owned(),
                },
                Vec::new(),
            );
        };
        let agreement = &compiled.agreement;
        // The agreement object's own state is checked before casbin: it is about the document,
        // not about who asks.
        if let Some(reason) = lifecycle(agreement, req.at.date()) {
            return self.deny(Some(agreement), reason, Vec::new());
        }

        // Only questions under an agreement in force reach the cache, so requests naming
        // agreements that do not exist cannot crowd out the ones that do.
        let key = self.cache.key(req);
        if let Some(hit) = key.as_ref().and_then(|key| self.cache.get(key)) {
            return hit;
        }
        let decision = self.decide_in_force(compiled, req);
        // A casbin failure is not an answer to remember.
        if let Some(key) = key
            && decision.deny != Some(DenyReason::EvaluationFailed)
        {
            self.cache.insert(key, &decision);
        }
        decision
    }

    /// Decides a request under an agreement that is active and in force on the request's date.
    fn decide_in_force(&self, compiled: &CompiledAgreement, req: &DecisionRequest<'_>) -> Decision {
        let agreement = &compiled.agreement;
        let dataset = compiled.datasets.get(req.dataset);
        let candidates = dataset.and_then(|d| d.by_recipient.get(req.agency));
        let verdict = candidates
            .map(|candidates| candidates.evaluate(req, NO_MARKER))
            .unwrap_or_default();
        // The first unmet condition of the agreement, in the documented order. casbin decides;
        // this names the reason, and must agree with casbin before anything is allowed.
        let gap = grant_gap(agreement, req);
        let mut matched: Vec<String> = verdict.matched.iter().map(|id| (*id).to_owned()).collect();

        if verdict.failed {
            return self.deny(Some(agreement), DenyReason::EvaluationFailed, matched);
        }
        let casbin_grants = !verdict.granted.is_empty();
        match (
            gap,
            verdict.denied_by.map(|(_, rule_id)| rule_id.to_owned()),
        ) {
            (Some(reason), _) => {
                if casbin_grants {
                    tracing::error!(
                        isa = req.isa_id,
                        dataset = req.dataset,
                        agency = req.agency,
                        reason = reason.reason(),
                        "casbin granted what the agreement does not; denying"
                    );
                }
                return self.deny(Some(agreement), reason, matched);
            }
            (None, denied_by) if !casbin_grants => {
                tracing::error!(
                    isa = req.isa_id,
                    dataset = req.dataset,
                    agency = req.agency,
                    "casbin granted no role where the agreement does; denying"
                );
                let reason = match denied_by {
                    Some(rule_id) => DenyReason::ExplicitDeny { rule_id },
                    None => DenyReason::NoRoleGranted {
                        isa: req.isa_id.to_owned(),
                        dataset: req.dataset.to_owned(),
                    },
                };
                return self.deny(Some(agreement), reason, matched);
            }
            (None, Some(rule_id)) => {
                return self.deny(
                    Some(agreement),
                    DenyReason::ExplicitDeny { rule_id },
                    matched,
                );
            }
            (None, None) => {}
        }

        let Some(dataset) = dataset else {
            // Unreachable: casbin only granted through this dataset's enforcer.
            return self.deny(Some(agreement), DenyReason::EvaluationFailed, matched);
        };
        let mut mask = FieldMask::empty();
        for role in &verdict.granted {
            if let Some(fields) = dataset.masks.get(*role) {
                mask.union_with(fields);
            }
        }
        // Break-glass is weighed last, on a share casbin has already allowed, and only widens
        // the mask of roles casbin granted: it cannot lift any denial above.
        if req.break_glass {
            let mut invoked = false;
            for role in &verdict.granted {
                if let Some(fields) = dataset.break_glass.get(*role) {
                    mask.union_with(fields);
                    matched.push(break_glass_id(agreement, req.dataset, role));
                    invoked = true;
                }
            }
            if !invoked {
                return self.deny(
                    Some(agreement),
                    DenyReason::BreakGlassNotPermitted {
                        isa: req.isa_id.to_owned(),
                        dataset: req.dataset.to_owned(),
                    },
                    matched,
                );
            }
            if let Some((_, rule_id)) = verdict.glass_denied_by {
                return self.deny(
                    Some(agreement),
                    DenyReason::BreakGlassDenied {
                        rule_id: rule_id.to_owned(),
                    },
                    matched,
                );
            }
        }
        // Marker rules are weighed only on an allowed share and only withhold records from it.
        let mut withheld = Vec::new();
        if let Some(candidates) = candidates {
            for marker in &candidates.markers {
                let verdict = candidates.evaluate(req, marker);
                if verdict.failed {
                    return self.deny(Some(agreement), DenyReason::EvaluationFailed, matched);
                }
                let earliest = match (verdict.denied_by, verdict.glass_denied_by) {
                    (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                    (a, b) => a.or(b),
                };
                if let Some((_, rule_id)) = earliest {
                    withheld.push(Withholding {
                        marker: marker.clone(),
                        rule_id: rule_id.to_owned(),
                    });
                }
            }
        }
        Decision {
            effect: Effect::Allow,
            deny: None,
            matched,
            break_glass: req.break_glass,
            withheld,
            mask,
            obligations: dataset.obligations.clone(),
            policy_version: self.version.clone(),
            isa_version: Some(agreement.version),
            legal_basis: Some(agreement.legal_basis.clone()),
        }
    }

    /// What `agency`'s principals holding `roles` may do at `at`, one grant per agreement and
    /// dataset, for `ListDatasets`.
    ///
    /// Built by asking [`PolicyEngine::decide`] about every purpose and action, so a listing
    /// never promises what a share would refuse (operator deny rules included).
    pub fn grants_for(
        &self,
        agency: &str,
        roles: &[String],
        at: time::OffsetDateTime,
    ) -> Vec<Grant> {
        let mut grants = Vec::new();
        for compiled in self.agreements.values() {
            let agreement = &compiled.agreement;
            if !agreement.recipients.iter().any(|r| r == agency) {
                continue;
            }
            for terms in &agreement.datasets {
                let mut purposes = BTreeSet::new();
                let mut actions = BTreeSet::new();
                let mut fields = FieldMask::empty();
                for purpose in &agreement.purposes {
                    for action in Action::ALL {
                        let decision = self.decide(&DecisionRequest {
                            agency,
                            roles,
                            action,
                            dataset: &terms.dataset,
                            purpose,
                            isa_id: &agreement.id,
                            at,
                            break_glass: false,
                        });
                        if decision.is_allowed() {
                            purposes.insert(purpose.clone());
                            actions.insert(action);
                            fields.union_with(&decision.mask);
                        }
                    }
                }
                if !purposes.is_empty() {
                    grants.push(Grant {
                        isa_id: agreement.id.clone(),
                        isa_version: agreement.version,
                        dataset: terms.dataset.clone(),
                        provider: agreement.provider.clone(),
                        purposes: purposes.into_iter().collect(),
                        actions: actions.into_iter().collect(),
                        fields,
                        legal_basis: agreement.legal_basis.clone(),
                    });
                }
            }
        }
        grants
    }

    /// How many enforcers answer from a decision table and how many ask casbin live.
    pub fn table_coverage(&self) -> TableCoverage {
        let mut coverage = TableCoverage::default();
        for candidates in self.candidates() {
            if candidates.is_table() {
                coverage.tables += 1;
                coverage.cells += candidates.cells();
            } else {
                coverage.live += 1;
            }
        }
        coverage
    }

    fn candidates(&self) -> impl Iterator<Item = &Candidates> {
        self.agreements
            .values()
            .flat_map(|a| a.datasets.values())
            .flat_map(|d| d.by_recipient.values())
    }

    pub fn agreement(&self, id: &str) -> Option<&Agreement> {
        self.agreements.get(id).map(|c| &c.agreement)
    }

    /// Every agreement, by id.
    pub fn agreements(&self) -> impl Iterator<Item = &Agreement> {
        self.agreements.values().map(|c| &c.agreement)
    }

    /// The operator rules, in policy file order.
    pub fn rules(&self) -> &[OperatorRule] {
        &self.rules
    }

    /// The content hash of the model, agreements and rules, `sha256:` and hex; recorded with
    /// every decision.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn deny(
        &self,
        agreement: Option<&Agreement>,
        reason: DenyReason,
        matched: Vec<String>,
    ) -> Decision {
        Decision {
            effect: Effect::Deny,
            deny: Some(reason),
            matched,
            mask: FieldMask::empty(),
            break_glass: false,
            withheld: Vec::new(),
            obligations: Vec::new(),
            policy_version: self.version.clone(),
            isa_version: agreement.map(|a| a.version),
            legal_basis: None,
        }
    }
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("version", &self.version)
            .field("agreements", &self.agreements.keys().collect::<Vec<_>>())
            .field("enforcers", &self.table_coverage())
            .field("decision_cache", &self.cache.capacity())
            .finish()
    }
}

/// Builds the enforcer for each (agreement, dataset, recipient) in `keys`, in order, spread over
/// the available cores.
fn build_enforcers(
    model: &casbin::DefaultModel,
    keys: &[(&Agreement, &str, &str)],
    rules: &[OperatorRule],
    max_cells: usize,
) -> Result<Vec<Candidates>, PolicyError> {
    let build = |keys: &[(&Agreement, &str, &str)]| -> Result<Vec<Candidates>, PolicyError> {
        keys.iter()
            .map(|(agreement, dataset, recipient)| {
                let lines = lines_for(agreement, dataset, recipient, rules);
                let key = (agreement.id.as_str(), *dataset, *recipient);
                Candidates::build(model, lines, key, max_cells)
            })
            .collect()
    };
    // Threads pay off only past a few dozen enforcers.
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(keys.len() / 32)
        .clamp(1, MAX_COMPILE_THREADS);
    if threads == 1 {
        return build(keys);
    }
    let chunk = keys.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = keys
            .chunks(chunk)
            .map(|part| scope.spawn(move || build(part)))
            .collect();
        let mut built = Vec::with_capacity(keys.len());
        for part in parts {
            let part = part.join().map_err(|_| PolicyError::Casbin {
                message: "building enforcers failed unexpectedly".into(),
            })?;
            built.extend(part?);
        }
        Ok(built)
    })
}

/// The most threads one compile uses: a reload should not take every core of a large host from
/// the decisions still being made under the old policy.
const MAX_COMPILE_THREADS: usize = 4;

impl Candidates {
    /// Builds the enforcer for requests under agreement, dataset and recipient `key`, probes it,
    /// and fills its decision table if its request classes number at most `max_cells`.
    fn build(
        model: &casbin::DefaultModel,
        lines: Vec<Vec<String>>,
        (isa, dataset, recipient): (&str, &str, &str),
        max_cells: usize,
    ) -> Result<Self, PolicyError> {
        let mut named_roles = HashSet::new();
        let mut any_role = false;
        let mut markers = BTreeSet::new();
        let mut described = Vec::with_capacity(lines.len());
        let mut positions = HashMap::with_capacity(lines.len());
        // A deny line's rank is its place among the operator's rules as written.
        let is_deny = |line: &Vec<String>| line.get(EFT).is_some_and(|eft| eft == "deny");
        let is_glass_only = |line: &Vec<String>| {
            is_deny(line) && line.get(BREAK_GLASS).is_some_and(|bg| bg == GLASS_YES)
        };
        let ranks: HashMap<String, usize> = lines
            .iter()
            .filter(|line| is_deny(line))
            .filter_map(|line| line.get(ID).cloned())
            .enumerate()
            .map(|(rank, id)| (id, rank))
            .collect();
        // casbin stops at the first deny line that matches and reports only the lines up to it,
        // so a break-glass-only refusal listed first would hide an ordinary denial of the same
        // share, and break-glass would be refused for another reason than the share itself.
        // Ordinary lines therefore go first; ranks keep the rules' own order.
        let mut lines = lines;
        lines.sort_by_key(|line| is_glass_only(line));
        for line in &lines {
            let (Some(eft), Some(id)) = (line.get(EFT), line.get(ID)) else {
                return Err(PolicyError::Casbin {
                    message: "a compiled line has no effect or id".into(),
                });
            };
            let kind = if eft == "deny" {
                if let Some(marker) = line.get(MARKER).filter(|m| *m != ANY) {
                    markers.insert(marker.clone());
                }
                LineKind::Deny {
                    rank: ranks.get(id).copied().unwrap_or(usize::MAX),
                    rule: id.strip_prefix(RULE_PREFIX).unwrap_or(id).to_owned(),
                    glass_only: line.get(BREAK_GLASS).is_some_and(|bg| bg == GLASS_YES),
                }
            } else {
                LineKind::Allow
            };
            match line.get(ROLE) {
                Some(role) if role == "*" => any_role = true,
                Some(role) => {
                    named_roles.insert(role.clone());
                }
                None => {}
            }
            let position = u32::try_from(described.len()).map_err(|_| PolicyError::Casbin {
                message: "an enforcer holds more lines than it can number".into(),
            })?;
            positions.insert(id.clone(), position);
            described.push(Line {
                id: id.clone(),
                kind,
            });
        }
        let enforcer = build_enforcer(model, lines.clone())?;
        probe(&enforcer, &lines)?;
        let position = |line: &[String]| line.get(ID).and_then(|id| positions.get(id)).copied();
        let evaluator = match DecisionTable::build(
            &enforcer,
            &lines,
            (isa, recipient, dataset),
            position,
            max_cells,
        )? {
            Ok(table) => Evaluator::Table(table),
            Err(why) => {
                if max_cells > 0 {
                    tracing::debug!(isa, dataset, recipient, ?why, "deciding live");
                }
                Evaluator::Live {
                    enforcer: Box::new(enforcer),
                    positions,
                }
            }
        };
        Ok(Self {
            evaluator,
            lines: described,
            named_roles,
            any_role,
            markers,
        })
    }

    /// The positions of the lines casbin matches for `req` with `role` and `marker`, in the
    /// order casbin reports them.
    fn matched(
        &self,
        req: &DecisionRequest<'_>,
        role: &str,
        marker: &str,
        glass: &str,
    ) -> Result<Cow<'_, [u32]>, String> {
        match &self.evaluator {
            Evaluator::Table(table) => table
                .matched([role, req.purpose, req.action.as_str(), marker, glass])
                .map(Cow::Borrowed)
                .ok_or_else(|| "the decision table has no such cell".to_owned()),
            Evaluator::Live {
                enforcer,
                positions,
            } => {
                let request = (
                    req.isa_id,
                    req.agency,
                    role,
                    req.dataset,
                    req.purpose,
                    req.action.as_str(),
                    marker,
                    glass,
                );
                let (_, lines) = enforcer.enforce_ex(request).map_err(|e| e.to_string())?;
                lines
                    .iter()
                    .map(|line| line.get(ID).and_then(|id| positions.get(id)).copied())
                    .collect::<Option<Vec<u32>>>()
                    .map(Cow::Owned)
                    .ok_or_else(|| "casbin reported a line the enforcer was not given".to_owned())
            }
        }
    }

    /// What casbin says about `req` for each distinct role that could match, about the share
    /// itself (`marker` empty) or about its records carrying `marker`.
    fn evaluate<'a>(&'a self, req: &DecisionRequest<'a>, marker: &str) -> Verdict<'a> {
        let glass = if req.break_glass { GLASS_YES } else { GLASS_NO };
        let mut verdict = Verdict::default();
        let mut seen_unnamed = false;
        for (n, role) in req.roles.iter().enumerate() {
            if req
                .roles
                .get(..n)
                .is_some_and(|before| before.contains(role))
            {
                continue;
            }
            // A role no line names can only match `*` lines, and matches them all alike, so one
            // such role stands for the rest.
            if !self.named_roles.contains(role) {
                if !self.any_role || seen_unnamed {
                    continue;
                }
                seen_unnamed = true;
            }
            let matched = match self.matched(req, role, marker, glass) {
                Ok(matched) => matched,
                Err(error) => {
                    tracing::error!(%error, isa = req.isa_id, "casbin evaluation failed");
                    verdict.failed = true;
                    continue;
                }
            };
            for position in matched.iter() {
                let Some(line) = usize::try_from(*position)
                    .ok()
                    .and_then(|p| self.lines.get(p))
                else {
                    verdict.failed = true;
                    continue;
                };
                match &line.kind {
                    LineKind::Allow => {
                        if !verdict.granted.contains(&role.as_str()) {
                            verdict.granted.push(role);
                        }
                    }
                    LineKind::Deny {
                        rank,
                        rule,
                        glass_only,
                    } => {
                        let slot = if *glass_only {
                            &mut verdict.glass_denied_by
                        } else {
                            &mut verdict.denied_by
                        };
                        if slot.is_none_or(|(r, _)| *rank < r) {
                            *slot = Some((*rank, rule));
                        }
                    }
                }
                if !verdict.matched.contains(&line.id.as_str()) {
                    verdict.matched.push(&line.id);
                }
            }
        }
        verdict.granted.sort_unstable();
        verdict
    }

    fn is_table(&self) -> bool {
        matches!(self.evaluator, Evaluator::Table(_))
    }

    fn cells(&self) -> usize {
        match &self.evaluator {
            Evaluator::Table(table) => table.cells(),
            Evaluator::Live { .. } => 0,
        }
    }
}

/// Enforces the first allow line's own values and expects it among the matches, so a model
/// whose matcher cannot see the compiled lines fails at compile time, not on the first share.
fn probe(enforcer: &Enforcer, lines: &[Vec<String>]) -> Result<(), PolicyError> {
    let Some(allow) = lines
        .iter()
        .find(|l| l.get(EFT).is_some_and(|e| e == "allow"))
    else {
        return Ok(());
    };
    let value = |column: usize| allow.get(column).map_or("", String::as_str);
    let expected = value(ID);
    let request = (
        value(2),
        value(3),
        value(ROLE),
        value(5),
        value(6),
        value(7),
        NO_MARKER,
        GLASS_NO,
    );
    match enforcer.enforce_ex(request) {
        Ok((_, lines))
            if lines
                .iter()
                .any(|l| l.get(ID).is_some_and(|id| id == expected)) =>
        {
            Ok(())
        }
        Ok(_) => Err(PolicyError::Model {
            reason: format!("its matcher does not match the compiled line `{expected}`"),
        }),
        Err(e) => Err(PolicyError::Model {
            reason: format!("its matcher fails on `{expected}`: {e}"),
        }),
    }
}

// Column positions in a compiled line; they follow `model::POLICY`.
const EFT: usize = 0;
const ID: usize = 1;
const ROLE: usize = 4;
const MARKER: usize = 8;
const BREAK_GLASS: usize = 9;
const RULE_PREFIX: &str = "rule:";
const ANY: &str = "*";
/// The request's marker when casbin is asked about the share rather than marked records; no
/// marker rule can name it, since markers are identifiers.
const NO_MARKER: &str = "";
const GLASS_YES: &str = "yes";
const GLASS_NO: &str = "no";

/// The casbin lines for one agreement, dataset and recipient: the agreement's allow lines, then
/// the operator deny lines that could match, in file order. Allow lines come first because casbin stops at the
/// first matching deny; this way explain lists every allow that matched as well as the deny.
fn lines_for(
    agreement: &Agreement,
    dataset: &str,
    recipient: &str,
    rules: &[OperatorRule],
) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    if let Some(terms) = agreement.dataset(dataset) {
        for grant in &terms.roles {
            for action in &terms.actions {
                for purpose in &agreement.purposes {
                    let id = allow_id(agreement, dataset, recipient, &grant.role, *action, purpose);
                    lines.push(vec![
                        "allow".to_owned(),
                        id,
                        agreement.id.clone(),
                        recipient.to_owned(),
                        grant.role.clone(),
                        dataset.to_owned(),
                        purpose.clone(),
                        action.as_str().to_owned(),
                        ANY.to_owned(),
                        ANY.to_owned(),
                    ]);
                }
            }
        }
    }
    let could_match = |pattern: &str, value: &str| pattern == "*" || pattern == value;
    for rule in rules.iter().filter(|r| {
        r.effect == Effect::Deny
            && could_match(&r.agency, recipient)
            && could_match(&r.dataset, dataset)
    }) {
        lines.push(vec![
            "deny".to_owned(),
            format!("{RULE_PREFIX}{}", rule.id),
            "*".to_owned(),
            rule.agency.clone(),
            rule.role.clone(),
            rule.dataset.clone(),
            rule.purpose.clone(),
            rule.action.clone(),
            rule.marker.clone().unwrap_or_else(|| ANY.to_owned()),
            match rule.break_glass {
                BreakGlassScope::Applies => ANY,
                BreakGlassScope::Deny => GLASS_YES,
                BreakGlassScope::Exempt => GLASS_NO,
            }
            .to_owned(),
        ]);
    }
    lines
}

fn allow_id(
    agreement: &Agreement,
    dataset: &str,
    recipient: &str,
    role: &str,
    action: Action,
    purpose: &str,
) -> String {
    format!(
        "isa:{}@{}:{dataset}:{recipient}:{role}:{action}:{purpose}",
        agreement.id, agreement.version
    )
}

/// Names the break-glass terms a decision used, for explain and the audit entry's matched rules.
fn break_glass_id(agreement: &Agreement, dataset: &str, role: &str) -> String {
    format!(
        "break-glass:{}@{}:{dataset}:{role}",
        agreement.id, agreement.version
    )
}

/// Whether the agreement is usable at all on `today`.
fn lifecycle(agreement: &Agreement, today: time::Date) -> Option<DenyReason> {
    let isa = || agreement.id.clone();
    if agreement.status != AgreementStatus::Active {
        return Some(DenyReason::AgreementNotActive {
            isa: isa(),
            status: agreement.status,
        });
    }
    if today < agreement.valid_from {
        return Some(DenyReason::AgreementNotYetValid {
            isa: isa(),
            valid_from: agreement.valid_from,
        });
    }
    match agreement.valid_until {
        Some(until) if until < today => Some(DenyReason::AgreementExpired {
            isa: isa(),
            valid_until: until,
        }),
        _ => None,
    }
}

/// The first condition of the agreement's grant that `req` does not meet, in the documented
/// order: recipient, purpose, dataset, action, role.
fn grant_gap(agreement: &Agreement, req: &DecisionRequest<'_>) -> Option<DenyReason> {
    let isa = || agreement.id.clone();
    if !agreement.recipients.iter().any(|r| r == req.agency) {
        return Some(DenyReason::NotARecipient {
            isa: isa(),
            agency: req.agency.to_owned(),
        });
    }
    if !agreement.purposes.iter().any(|p| p == req.purpose) {
        return Some(DenyReason::PurposeNotPermitted {
            isa: isa(),
            purpose: req.purpose.to_owned(),
        });
    }
    let Some(terms) = agreement.dataset(req.dataset) else {
        return Some(DenyReason::DatasetNotCovered {
            isa: isa(),
            dataset: req.dataset.to_owned(),
        });
    };
    if !terms.actions.contains(&req.action) {
        return Some(DenyReason::ActionNotPermitted {
            isa: isa(),
            dataset: req.dataset.to_owned(),
            action: req.action,
        });
    }
    if !req
        .roles
        .iter()
        .any(|role| terms.fields_for(role).is_some())
    {
        return Some(DenyReason::NoRoleGranted {
            isa: isa(),
            dataset: req.dataset.to_owned(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_can_be_shared_across_threads() {
        assert_send_sync::<PolicyEngine>();
    }
}
