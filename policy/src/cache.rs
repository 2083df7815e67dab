//! A bounded cache of decisions, inside one compiled engine.
//!
//! A decision read from the decision tables costs a couple of microseconds (one reaching casbin
//! live, where an enforcer is too large for a table, tens). Callers repeat themselves (the same
//! caseworker, role, dataset, purpose and agreement, many times a day), so a repeated question is
//! answered from here, with the finished decision, in well under a microsecond.
//!
//! The cache lives in the engine, and the engine is immutable and replaced whole on reload, so a
//! policy change starts with an empty cache: nothing decided under an old policy can be served
//! under a new one. The key holds every input [`crate::PolicyEngine::decide`] reads, the request's
//! date standing in for its time (agreements run from day to day), so a hit returns exactly what
//! evaluating would.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use crate::decision::{Decision, DecisionRequest};
use crate::isa::Action;

/// How many decisions an engine keeps unless told otherwise: about a kilobyte each with its key,
/// so some 20 MB at most, for more distinct questions than a large deployment asks in a day.
pub(crate) const DEFAULT_CAPACITY: usize = 16_384;

/// Independent locks, so concurrent decisions rarely wait on one another.
const SHARDS: usize = 16;

#[expect(
    clippy::disallowed_types,
    reason = "held only inside the synchronous `decide`, for a map lookup or insert, never across \
              an await"
)]
type Lock<T> = std::sync::Mutex<T>;

pub(crate) struct DecisionCache {
    shards: Vec<Lock<Shard>>,
    hasher: RandomState,
    /// Entries per generation per shard; zero disables the cache.
    generation: usize,
}

/// Two generations: entries are added to `hot`; when `hot` is full it becomes `cold` and the old
/// `cold` is dropped. A hit in `cold` moves the entry back to `hot`. Recently used decisions stay,
/// and a shard never holds more than two generations.
#[derive(Default)]
struct Shard {
    hot: HashMap<Key, Decision>,
    cold: HashMap<Key, Decision>,
}

/// Every input of a decision. Roles keep the caller's order, since the order of the matched
/// lines a decision reports follows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    isa: Box<str>,
    agency: Box<str>,
    roles: Box<[Box<str>]>,
    dataset: Box<str>,
    purpose: Box<str>,
    action: Action,
    date: time::Date,
    break_glass: bool,
}

impl DecisionCache {
    /// A cache of at most `capacity` decisions (rounded up to a whole number per shard); zero
    /// keeps none.
    pub(crate) fn new(capacity: usize) -> Self {
        let generation = capacity.div_ceil(2 * SHARDS);
        Self {
            shards: (0..SHARDS).map(|_| Lock::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            generation,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.generation * 2 * SHARDS
    }

    /// The key for `req`, or `None` when the cache is off.
    pub(crate) fn key(&self, req: &DecisionRequest<'_>) -> Option<Key> {
        (self.generation > 0).then(|| Key {
            isa: req.isa_id.into(),
            agency: req.agency.into(),
            roles: req.roles.iter().map(|r| r.as_str().into()).collect(),
            dataset: req.dataset.into(),
            purpose: req.purpose.into(),
            action: req.action,
            date: req.at.date(),
            break_glass: req.break_glass,
        })
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Decision> {
        let mut shard = self.shard(key)?;
        if let Some(decision) = shard.hot.get(key) {
            return Some(decision.clone());
        }
        let (key, decision) = shard.cold.remove_entry(key)?;
        shard.insert(key, decision.clone(), self.generation);
        Some(decision)
    }

    pub(crate) fn insert(&self, key: Key, decision: &Decision) {
        if let Some(mut shard) = self.shard(&key) {
            shard.insert(key, decision.clone(), self.generation);
        }
    }

    /// The shard for `key`, locked; `None` if a thread panicked while holding it, in which case
    /// the cache is skipped rather than trusted.
    fn shard(&self, key: &Key) -> Option<std::sync::MutexGuard<'_, Shard>> {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        self.shards.get(index)?.lock().ok()
    }
}

impl Shard {
    fn insert(&mut self, key: Key, decision: Decision, generation: usize) {
        if self.hot.len() >= generation {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(key, decision);
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::isa::Effect;
    use crate::mask::FieldMask;

    fn decision(n: u32) -> Decision {
        Decision {
            effect: Effect::Deny,
            deny: None,
            matched: Vec::new(),
            mask: FieldMask::empty(),
            break_glass: false,
            withheld: Vec::new(),
            obligations: Vec::new(),
            policy_version: String::new(),
            isa_version: Some(n),
            legal_basis: None,
        }
    }

    impl Key {
        fn of(req: &DecisionRequest<'_>) -> Self {
            DecisionCache::new(1).key(req).unwrap()
        }
    }

    fn request<'a>(roles: &'a [String], agency: &'a str) -> DecisionRequest<'a> {
        DecisionRequest {
            agency,
            roles,
            action: Action::Read,
            dataset: "d",
            purpose: "p",
            isa_id: "i",
            at: datetime!(2026-06-01 10:00 +01:00),
            break_glass: false,
        }
    }

    #[test]
    fn a_key_holds_every_input_and_the_date_not_the_time() {
        let roles = ["a".to_owned(), "b".to_owned()];
        let reversed = ["b".to_owned(), "a".to_owned()];
        let base = request(&roles, "x");
        assert_eq!(Key::of(&base), Key::of(&request(&roles, "x")));
        assert_ne!(Key::of(&base), Key::of(&request(&roles, "y")));
        assert_ne!(Key::of(&base), Key::of(&request(&reversed, "x")));
        assert_ne!(Key::of(&base), Key::of(&request(&roles[..1], "x")));
        let later = DecisionRequest {
            at: datetime!(2026-06-01 23:59 +01:00),
            ..base
        };
        assert_eq!(Key::of(&base), Key::of(&later));
        let tomorrow = DecisionRequest {
            at: datetime!(2026-06-02 00:00 +01:00),
            ..base
        };
        assert_ne!(Key::of(&base), Key::of(&tomorrow));
        let other = DecisionRequest {
            action: Action::Search,
            ..base
        };
        assert_ne!(Key::of(&base), Key::of(&other));
        let invoked = DecisionRequest {
            break_glass: true,
            ..base
        };
        assert_ne!(Key::of(&base), Key::of(&invoked));
    }

    #[test]
    fn it_stays_within_its_bound_and_keeps_what_is_used() {
        let cache = DecisionCache::new(64);
        assert_eq!(cache.capacity(), 64);
        let roles = ["r".to_owned()];
        let agencies: Vec<String> = (0..1_000).map(|n| format!("agency-{n}")).collect();
        let keep = cache.key(&request(&roles, "kept")).unwrap();
        cache.insert(keep.clone(), &decision(7));
        for (n, agency) in agencies.iter().enumerate() {
            let key = cache.key(&request(&roles, agency)).unwrap();
            cache.insert(key, &decision(1));
            assert_eq!(cache.get(&keep), Some(decision(7)), "{n}");
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                s.hot.len() + s.cold.len()
            })
            .sum();
        assert!(held <= 64, "{held}");
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let cache = DecisionCache::new(0);
        let roles = ["r".to_owned()];
        assert_eq!(cache.key(&request(&roles, "x")), None);
    }
}
