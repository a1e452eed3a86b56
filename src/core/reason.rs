//! Why something could not be interpreted: the bounded `reason` label of
//! `skaffold_exporter_invalid_events_total`. One list: the decoders' reasons
//! ([`crate::core::InvalidEvent::reason`]), the fold's anomalies
//! ([`crate::core::Transition::Anomaly`]) and unreadable streams. Sinks create every
//! series at zero from [`Reason::ALL`], so the first occurrence is an `increase`.

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $label:literal,)*) => {
        /// A bounded reason for an event the exporter could not interpret.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in label order of the list above.
            pub const ALL: &[Reason] = &[$(Reason::$variant,)*];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => $label,)*
                }
            }
        }
    };
}

reasons! {
    /// A decoder: the entry had no event at all.
    EmptyEvent => "empty_event",
    /// A decoder: a status string Skaffold does not send.
    UnknownStatus => "unknown_status",
    /// A decoder: a required field was empty.
    MissingField => "missing_field",
    /// A decoder: a value outside any sane range.
    AbsurdValue => "absurd_value",
    /// A decoder: the bytes or JSON could not be decoded.
    Undecodable => "undecodable",
    /// The fold: a phase ended that never started.
    TerminalWithoutStart => "terminal_without_start",
    /// The fold: a dev-loop iteration started before the previous one ended.
    DevLoopWithoutEnd => "dev_loop_without_end",
    /// The fold: more phases open at once than it keeps.
    TooManyOpen => "too_many_open",
    /// The fold: a phase never ended within its run.
    PhaseWithoutEnd => "phase_without_end",
    /// A reader: a message of a stream whose layout the exporter cannot decode
    /// (Skaffold v1.22–v1.25's API v2); the stream is kept open until Skaffold closes
    /// it, and each of its messages is counted with this reason.
    IncompatibleLayout => "incompatible_layout",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the label value (`reason == "too_many_open"`).
impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Every label value of [`Reason`], in the order of [`Reason::ALL`].
pub const INVALID_REASONS: [&str; Reason::ALL.len()] = {
    let mut out = [""; Reason::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = Reason::ALL[i].as_str();
        i += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case_and_unchanged() {
        assert_eq!(
            INVALID_REASONS,
            [
                "empty_event",
                "unknown_status",
                "missing_field",
                "absurd_value",
                "undecodable",
                "terminal_without_start",
                "dev_loop_without_end",
                "too_many_open",
                "phase_without_end",
                "incompatible_layout",
            ]
        );
        let distinct: std::collections::HashSet<_> = INVALID_REASONS.iter().collect();
        assert_eq!(distinct.len(), Reason::ALL.len());
        assert_eq!(Reason::TooManyOpen.to_string(), "too_many_open");
    }
}
