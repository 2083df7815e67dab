use std::collections::BTreeSet;
use std::fmt;

/// The field paths a decision releases: data minimisation in one value.
///
/// Paths are dot-separated (`person.names`). Releasing a path releases everything beneath it,
/// segment by segment: `person` releases `person.names`, but `person.names` releases neither
/// `person` nor `person.names_history`. An empty mask releases nothing, so a mask that was never
/// filled in fails closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldMask {
    // INVARIANT: every path is normalised (no trailing `.*`, no empty segment) and no path lies
    // beneath another, so the set is the smallest one that releases the same fields.
    paths: BTreeSet<String>,
}

impl FieldMask {
    /// A mask releasing exactly `paths`; `x.*` is read as `x`, and empty paths are dropped.
    pub fn new<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut mask = Self::default();
        mask.extend(paths);
        mask
    }

    /// Releases nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether the field at `path`, and so everything beneath it, is released.
    pub fn allows(&self, path: &str) -> bool {
        if path.is_empty() {
            return false;
        }
        self.paths.contains(path)
            || path
                .match_indices('.')
                .filter_map(|(end, _)| path.get(..end))
                .any(|ancestor| self.paths.contains(ancestor))
    }

    /// Whether anything at or beneath `path` is released, so a minimiser knows to keep the
    /// object at `path` (and then ask [`FieldMask::allows`] about each of its fields).
    pub fn allows_within(&self, path: &str) -> bool {
        if self.allows(path) {
            return true;
        }
        let prefix = format!("{path}.");
        self.paths
            .range(prefix.clone()..)
            .next()
            .is_some_and(|first| first.starts_with(&prefix))
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The released paths, sorted.
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }

    /// Releases `paths` as well.
    pub fn extend<I, S>(&mut self, paths: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for path in paths {
            self.insert(path.as_ref());
        }
    }

    /// Releases whatever `other` releases as well.
    pub fn union_with(&mut self, other: &FieldMask) {
        self.extend(other.paths());
    }

    fn insert(&mut self, path: &str) {
        let path = normalise(path);
        if path.is_empty() || self.allows(path) {
            return;
        }
        // Anything beneath the new path is now redundant.
        let prefix = format!("{path}.");
        let beneath: Vec<String> = self
            .paths
            .range(prefix.clone()..)
            .take_while(|p| p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in beneath {
            self.paths.remove(&p);
        }
        self.paths.insert(path.to_owned());
    }
}

impl fmt::Display for FieldMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, path) in self.paths().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(path)?;
        }
        Ok(())
    }
}

impl<S: AsRef<str>> FromIterator<S> for FieldMask {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self::new(iter)
    }
}

fn normalise(path: &str) -> &str {
    let path = path.trim();
    path.strip_suffix(".*").unwrap_or(path)
}

/// Whether `path` is a field path an agreement may name: dot-separated segments of ASCII
/// letters, digits, `_` and `-`, optionally ending in `.*`.
pub(crate) fn is_valid_path(path: &str) -> bool {
    let path = path.strip_suffix(".*").unwrap_or(path);
    !path.is_empty()
        && path.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_releases_its_children_by_whole_segment() {
        let mask = FieldMask::new(["person"]);
        assert!(mask.allows("person"));
        assert!(mask.allows("person.names"));
        assert!(mask.allows("person.names.given"));
        assert!(!mask.allows("personal"));
        assert!(!mask.allows("personal.names"));
        assert!(!mask.allows("incident"));
    }

    #[test]
    fn a_child_does_not_release_its_parent_or_siblings() {
        let mask = FieldMask::new(["person.names"]);
        assert!(mask.allows("person.names"));
        assert!(mask.allows("person.names.family"));
        assert!(!mask.allows("person"));
        assert!(!mask.allows("person.date_of_birth"));
        assert!(!mask.allows("person.names_history"));
    }

    #[test]
    fn empty_mask_releases_nothing() {
        let mask = FieldMask::empty();
        assert!(mask.is_empty());
        assert!(!mask.allows("person"));
        assert!(!mask.allows(""));
        assert!(!mask.allows_within("person"));
    }

    #[test]
    fn empty_path_is_never_released() {
        assert!(!FieldMask::new(["person"]).allows(""));
    }

    #[test]
    fn star_suffix_means_the_whole_subtree() {
        let mask = FieldMask::new(["safeguarding_concern.*"]);
        assert_eq!(mask.paths().collect::<Vec<_>>(), ["safeguarding_concern"]);
        assert!(mask.allows("safeguarding_concern.category"));
    }

    #[test]
    fn paths_beneath_a_released_path_are_folded_away() {
        let mask = FieldMask::new(["relationship.kind", "person.names", "relationship"]);
        assert_eq!(
            mask.paths().collect::<Vec<_>>(),
            ["person.names", "relationship"]
        );
        let same = FieldMask::new(["relationship", "person.names", "relationship.kind"]);
        assert_eq!(mask, same);
    }

    #[test]
    fn allows_within_finds_released_descendants() {
        let mask = FieldMask::new(["person.names"]);
        assert!(mask.allows_within("person"));
        assert!(mask.allows_within("person.names"));
        assert!(!mask.allows_within("person.names_history"));
        assert!(!mask.allows_within("pers"));
        assert!(!mask.allows_within("incident"));
    }

    #[test]
    fn union_keeps_both_sides() {
        let mut mask = FieldMask::new(["person.names"]);
        mask.union_with(&FieldMask::new(["incident.summary"]));
        assert!(mask.allows("person.names"));
        assert!(mask.allows("incident.summary"));
        assert!(!mask.allows("incident.category"));
    }

    #[test]
    fn valid_paths() {
        assert!(is_valid_path("person.names"));
        assert!(is_valid_path("safeguarding_concern.*"));
        assert!(is_valid_path("incident"));
        assert!(!is_valid_path(""));
        assert!(!is_valid_path("*"));
        assert!(!is_valid_path("person..names"));
        assert!(!is_valid_path("person.*.names"));
        assert!(!is_valid_path("person names"));
        assert!(!is_valid_path(".person"));
    }
}
