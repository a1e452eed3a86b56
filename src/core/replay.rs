//! Replay de-duplication. Skaffold replays its whole event log, from process start, to
//! every new subscriber; after a reconnect we must skip what we already folded.
//!
//! A Skaffold process is recognised by the fingerprint of the first entry of its log
//! (its MetaEvent, with Skaffold's timestamp). Every message carries the fingerprint
//! of its stream's first one, so a new process is recognised even when that first
//! message was dropped on the way (full queue). When a new stream starts with the same
//! first entry, the first `folded` entries are a replay and are skipped; the entry at
//! `folded - 1` must match the last one we folded, otherwise the mismatch is reported.
//! A different first entry means a new Skaffold process: everything is new.

/// What to do with one received entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Fold it.
    Fold,
    /// Fold it; it is the first entry of a new Skaffold process.
    FoldNewProcess,
    /// Already folded on an earlier stream of the same process: skip it.
    Replayed,
    /// Replayed, but it differs from what we folded at this position (the log changed
    /// under us). Skipped; counted as invalid `replay_mismatch`.
    ReplayMismatch,
}

/// Tracks the position in Skaffold's log across streams.
#[derive(Debug, Default, Clone)]
pub struct ReplayFilter {
    process: Option<u64>,
    folded: u64,
    last_folded: Option<u64>,
}

impl ReplayFilter {
    /// A filter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries folded for the current Skaffold process.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Decides about the entry at `position` (0-based, counted by the reader from the
    /// start of its stream, so entries dropped on the way do not shift later ones),
    /// given its fingerprint (a hash of its encoded bytes) and that of its stream's
    /// first entry (`first`; equal to `fingerprint` at position 0).
    pub fn admit(&mut self, position: u64, fingerprint: u64, first: u64) -> Admission {
        let pos = position;
        if self.process != Some(first) {
            // A new process, from its first entry or (when that one was dropped on the
            // way) from the first one that arrived.
            self.process = Some(first);
            self.folded = pos + 1;
            self.last_folded = Some(fingerprint);
            return Admission::FoldNewProcess;
        }
        if pos < self.folded {
            if pos + 1 == self.folded && self.last_folded != Some(fingerprint) {
                return Admission::ReplayMismatch;
            }
            return Admission::Replayed;
        }
        self.folded = pos + 1;
        self.last_folded = Some(fingerprint);
        Admission::Fold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits a whole stream (positions from 0; the first fingerprint names it).
    fn run(filter: &mut ReplayFilter, stream: &[u64]) -> Vec<Admission> {
        (0u64..)
            .zip(stream)
            .map(|(pos, f)| filter.admit(pos, *f, stream[0]))
            .collect()
    }

    #[test]
    fn reconnect_skips_exactly_what_was_folded() {
        use Admission::*;
        let mut f = ReplayFilter::new();
        assert_eq!(run(&mut f, &[1, 2, 3]), [FoldNewProcess, Fold, Fold]);
        // Skaffold replays 1, 2, 3 then sends 4 live.
        assert_eq!(
            run(&mut f, &[1, 2, 3, 4]),
            [Replayed, Replayed, Replayed, Fold]
        );
        assert_eq!(f.folded(), 4);
    }

    #[test]
    fn stream_cut_during_replay_does_not_fold_twice() {
        use Admission::*;
        let mut f = ReplayFilter::new();
        run(&mut f, &[1, 2, 3, 4]);
        assert_eq!(run(&mut f, &[1, 2]), [Replayed, Replayed]);
        assert_eq!(
            run(&mut f, &[1, 2, 3, 4, 5]),
            [Replayed, Replayed, Replayed, Replayed, Fold]
        );
    }

    #[test]
    fn new_skaffold_process_starts_fresh() {
        use Admission::*;
        let mut f = ReplayFilter::new();
        run(&mut f, &[1, 2, 3]);
        assert_eq!(run(&mut f, &[9, 2]), [FoldNewProcess, Fold]);
        assert_eq!(f.folded(), 2);
    }

    #[test]
    fn changed_history_is_reported() {
        use Admission::*;
        let mut f = ReplayFilter::new();
        run(&mut f, &[1, 2, 3]);
        assert_eq!(
            run(&mut f, &[1, 2, 7, 8]),
            [Replayed, Replayed, ReplayMismatch, Fold]
        );
    }

    #[test]
    fn new_process_is_recognised_when_its_first_entry_was_dropped() {
        use Admission::*;
        let mut f = ReplayFilter::new();
        run(&mut f, &[1, 2, 3]);
        // A new Skaffold process (first entry 9); position 0 was dropped on the way
        // (full queue), so the reader hands over positions 1 and 2 only.
        assert_eq!(f.admit(1, 2, 9), FoldNewProcess);
        assert_eq!(f.admit(2, 5, 9), Fold);
        assert_eq!(f.folded(), 3);
        // A later reconnect to that process replays it and is skipped.
        assert_eq!(
            run(&mut f, &[9, 2, 5, 6]),
            [Replayed, Replayed, Replayed, Fold]
        );
        // Dropping position 0 of a reconnect to the same process changes nothing.
        assert_eq!(f.admit(1, 2, 9), Replayed);
        assert_eq!(f.admit(4, 7, 9), Fold);
    }
}
