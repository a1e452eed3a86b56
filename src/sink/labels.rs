//! Cardinality caps for label values that come from users' data (artifacts, images,
//! resources): the first `max` distinct values are kept, the rest fold into `other`.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};

use rustc_hash::FxHashSet;

/// How many distinct folded values are remembered (as 8-byte hashes), so that each
/// is counted once; beyond it, further folded values are no longer counted.
const MAX_FOLDED_TRACKED: usize = 100_000;

/// The value that overflowing label values fold into.
pub const OTHER: &str = "other";

/// The default cap (`--max-label-values`): distinct values kept per label.
pub const DEFAULT_MAX_LABEL_VALUES: usize = 200;

/// Keeps at most `max` distinct values of one label.
#[derive(Debug, Clone)]
pub struct LabelCap {
    max: usize,
    /// FxHash: at most `max` values, looked up for every transition that carries one.
    kept: FxHashSet<String>,
    folded: FxHashSet<u64>,
}

impl LabelCap {
    /// A cap of `max` distinct values.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            kept: FxHashSet::default(),
            folded: FxHashSet::default(),
        }
    }

    /// Whether `value` has its own series (it was not folded into `other`).
    pub fn is_kept(&self, value: &str) -> bool {
        self.kept.contains(value)
    }

    /// The label value to use for `value`, and whether this is the first time that
    /// value was folded into `other` (so each folded value is counted once).
    pub fn apply<'v>(&mut self, value: &'v str) -> (Cow<'v, str>, bool) {
        if self.kept.contains(value) {
            return (Cow::Borrowed(value), false);
        }
        if self.kept.len() < self.max {
            self.kept.insert(value.to_owned());
            return (Cow::Borrowed(value), false);
        }
        let mut h = DefaultHasher::new();
        value.hash(&mut h);
        let first = self.folded.len() < MAX_FOLDED_TRACKED && self.folded.insert(h.finish());
        (Cow::Borrowed(OTHER), first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_values_beyond_the_cap_into_other() {
        let mut cap = LabelCap::new(2);
        assert_eq!(cap.apply("a"), ("a".into(), false));
        assert_eq!(cap.apply("b"), ("b".into(), false));
        assert_eq!(cap.apply("c"), ("other".into(), true));
        assert_eq!(cap.apply("c"), ("other".into(), false), "counted once");
        assert_eq!(cap.apply("d"), ("other".into(), true));
        assert_eq!(cap.apply("a"), ("a".into(), false));
        assert!(cap.is_kept("a") && !cap.is_kept("c"));
    }
}
