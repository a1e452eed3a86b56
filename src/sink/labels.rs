//! Cardinality caps for label values that come from users' data (artifacts, images,
//! resources): the first `max` distinct values are kept, the rest fold into `other`.

use std::collections::HashSet;

/// The value that overflowing label values fold into.
pub const OTHER: &str = "other";

/// Keeps at most `max` distinct values of one label.
#[derive(Debug, Clone)]
pub struct LabelCap {
    max: usize,
    kept: HashSet<String>,
}

impl LabelCap {
    /// A cap of `max` distinct values.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            kept: HashSet::new(),
        }
    }

    /// The label value to use for `value`, and whether it was folded into `other`.
    pub fn apply(&mut self, value: &str) -> (String, bool) {
        if self.kept.contains(value) {
            return (value.to_owned(), false);
        }
        if self.kept.len() < self.max {
            self.kept.insert(value.to_owned());
            return (value.to_owned(), false);
        }
        (OTHER.to_owned(), true)
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
        assert_eq!(cap.apply("a"), ("a".into(), false));
    }
}
