//! The policy version: a content hash, so every replica that loads the same policy reports the
//! same version in its audit entries, and any change to what is enforced changes it.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::isa::{Agreement, OperatorRule};
use crate::mask::FieldMask;

/// Bumped if the canonical form below ever changes, so old and new hashes never collide.
const DOMAIN: &str = "liaison-policy/canonical/v2";

/// `sha256:` and the hex digest of a canonical form of the model, agreements and rules.
///
/// The form is length-prefixed (so no two inputs serialise alike) and ordered (agreements by id,
/// rules by id, every list sorted and deduplicated, field lists as their minimal masks), so
/// reordering a file or repeating an entry in a list does not change the version; anything
/// that changes what is enforced or recorded does.
pub(crate) fn policy_version(
    model: &str,
    agreements: &[Agreement],
    rules: &[OperatorRule],
) -> String {
    let mut c = Canonical(Sha256::new());
    c.str(DOMAIN);
    c.str(model);

    let mut agreements: Vec<&Agreement> = agreements.iter().collect();
    agreements.sort_by(|a, b| (&a.id, a.version).cmp(&(&b.id, b.version)));
    c.len(agreements.len());
    for a in agreements {
        c.str(&a.id);
        c.u32(a.version);
        c.str(&a.title);
        c.str(&a.provider);
        c.set(&a.recipients);
        c.set(&a.purposes);
        c.str(&a.legal_basis);
        c.str(&a.valid_from.to_string());
        c.option(a.valid_until.map(|d| d.to_string()).as_deref());
        c.option(a.review_date.map(|d| d.to_string()).as_deref());
        c.str(a.status.as_str());
        c.set(&a.dpo_contacts);

        let mut datasets: Vec<_> = a.datasets.iter().collect();
        datasets.sort_by(|x, y| x.dataset.cmp(&y.dataset));
        c.len(datasets.len());
        for terms in datasets {
            c.str(&terms.dataset);
            c.set(terms.actions.iter().map(|action| action.as_str()));
            c.option(terms.handling_caveat.as_deref());
            c.str(if terms.notify_provider {
                "notify"
            } else {
                "silent"
            });
            let mut roles: Vec<_> = terms.roles.iter().collect();
            roles.sort_by(|x, y| x.role.cmp(&y.role));
            c.len(roles.len());
            for grant in roles {
                c.str(&grant.role);
                let mask = FieldMask::new(&grant.fields);
                c.len(mask.paths().len());
                for path in mask.paths() {
                    c.str(path);
                }
            }
            // Break-glass by role, as enforced: how the terms group roles does not matter.
            let invokers: BTreeSet<&str> = terms
                .break_glass
                .iter()
                .flat_map(|bg| bg.roles.iter().map(String::as_str))
                .collect();
            c.len(invokers.len());
            for role in invokers {
                c.str(role);
                let mask = FieldMask::new(terms.break_glass_fields_for(role).unwrap_or_default());
                c.len(mask.paths().len());
                for path in mask.paths() {
                    c.str(path);
                }
            }
        }
    }

    let mut rules: Vec<&OperatorRule> = rules.iter().collect();
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    c.len(rules.len());
    for r in rules {
        for value in [
            r.id.as_str(),
            r.effect.as_str(),
            &r.agency,
            &r.role,
            &r.dataset,
            &r.purpose,
            &r.action,
            &r.description,
        ] {
            c.str(value);
        }
        c.option(r.marker.as_deref());
        c.str(r.break_glass.as_str());
    }

    format!("sha256:{}", hex::encode(c.0.finalize()))
}

struct Canonical(Sha256);

impl Canonical {
    fn len(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }

    fn u32(&mut self, n: u32) {
        self.0.update(n.to_be_bytes());
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.update(s.as_bytes());
    }

    fn option(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.update([1]);
                self.str(s);
            }
            None => self.0.update([0]),
        }
    }

    fn set<I, S>(&mut self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let values: BTreeSet<String> = values.into_iter().map(|v| v.as_ref().to_owned()).collect();
        self.len(values.len());
        for value in &values {
            self.str(value);
        }
    }
}
