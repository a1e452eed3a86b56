//! The phases the fold holds open: when each running phase instance started, until
//! its terminal event takes the start back.
//!
//! Test, deploy, status check, render, verify and exec run one at a time (a slot
//! each); builds (by artifact), file syncs (by image) and v2 subtasks (by kind and id)
//! run many at once, each kind in a table of at most [`MAX_OPEN`] entries. Every kind
//! opens and closes the same way ([`OpenPhases::open`], [`OpenPhases::close`]); what
//! a start or an end *means* (iterations, streaks, failures) is the fold's
//! (`state::phases`).

use rustc_hash::FxHashMap as HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use super::{Key, MAX_OPEN};
use crate::core::event::Nanos;
use crate::core::transition::Phase;

/// One phase instance: its phase, and where its start is kept.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// A phase with one instance at a time: test, deploy, status check, render,
    /// verify or exec.
    Single(Phase),
    /// One artifact's build.
    Build(Key),
    /// One image's file sync.
    Sync(Key),
    /// One v2 subtask, by its kind (`Phase::DeploySubtask`, ...) and id.
    Subtask(Phase, Key),
}

impl Slot {
    /// The phase the instance's transitions report.
    #[inline]
    pub(super) fn phase(self) -> Phase {
        match self {
            Slot::Single(phase) | Slot::Subtask(phase, _) => phase,
            Slot::Build(_) => Phase::Build,
            Slot::Sync(_) => Phase::FileSync,
        }
    }
}

/// What opening a slot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opening {
    /// The instance is open from now on.
    Opened,
    /// It was open already: its first start stands.
    Repeated,
    /// Its kind's table is full: not tracked.
    Full,
}

/// The open phase instances of one run.
#[derive(Debug, Default)]
pub(super) struct OpenPhases {
    test: Option<Nanos>,
    deploy: Option<Nanos>,
    status_check: Option<Nanos>,
    render: Option<Nanos>,
    verify: Option<Nanos>,
    exec: Option<Nanos>,
    builds: HashMap<Key, Nanos>,
    syncs: HashMap<Key, Nanos>,
    subtasks: HashMap<(Phase, Key), Nanos>,
}

impl OpenPhases {
    /// Opens `slot` at `at`, unless it is open already or its table is full.
    #[inline]
    pub(super) fn open(&mut self, slot: Slot, at: Nanos) -> Opening {
        match slot {
            Slot::Single(phase) => {
                let start = self.single_mut(phase);
                if start.is_some() {
                    return Opening::Repeated;
                }
                *start = Some(at);
                Opening::Opened
            }
            Slot::Build(k) => open_in(&mut self.builds, k, at),
            Slot::Sync(k) => open_in(&mut self.syncs, k, at),
            Slot::Subtask(phase, k) => open_in(&mut self.subtasks, (phase, k), at),
        }
    }

    /// Closes `slot`: its start, `None` when it was not open.
    #[inline]
    pub(super) fn close(&mut self, slot: Slot) -> Option<Nanos> {
        match slot {
            Slot::Single(phase) => self.single_mut(phase).take(),
            Slot::Build(k) => self.builds.remove(&k),
            Slot::Sync(k) => self.syncs.remove(&k),
            Slot::Subtask(phase, k) => self.subtasks.remove(&(phase, k)),
        }
    }

    /// The start of the open instance of a one-at-a-time phase.
    #[inline]
    pub(super) fn single(&self, phase: Phase) -> Option<Nanos> {
        match phase {
            Phase::Test => self.test,
            Phase::Deploy => self.deploy,
            Phase::Render => self.render,
            Phase::Verify => self.verify,
            Phase::Exec => self.exec,
            Phase::StatusCheck => self.status_check,
            // Builds, syncs, subtasks and the dev loop are not one-at-a-time phases.
            _ => None,
        }
    }

    #[inline]
    fn single_mut(&mut self, phase: Phase) -> &mut Option<Nanos> {
        match phase {
            Phase::Test => &mut self.test,
            Phase::Deploy => &mut self.deploy,
            Phase::Render => &mut self.render,
            Phase::Verify => &mut self.verify,
            Phase::Exec => &mut self.exec,
            // `Slot::Single` holds only one-at-a-time phases (the fold makes them from
            // Test, Deploy, StatusCheck, Render, Verify and Exec events).
            _ => &mut self.status_check,
        }
    }

    /// Open instances of `phase`: builds and syncs by their tables, the others 0 or 1.
    pub(super) fn count(&self, phase: Phase) -> usize {
        match phase {
            Phase::Build => self.builds.len(),
            Phase::FileSync => self.syncs.len(),
            other => usize::from(self.single(other).is_some()),
        }
    }

    /// Builds or file syncs are still running (concurrent ones).
    #[inline]
    pub(super) fn concurrent(&self) -> bool {
        !self.builds.is_empty() || !self.syncs.is_empty()
    }

    /// Nothing is open.
    pub(super) fn is_idle(&self) -> bool {
        self.builds.is_empty()
            && self.syncs.is_empty()
            && self.subtasks.is_empty()
            && self.singles().iter().all(Option::is_none)
    }

    /// Drops every open instance; how many there were.
    pub(super) fn abandon(&mut self) -> usize {
        let mut open = self.builds.len() + self.syncs.len() + self.subtasks.len();
        for start in [
            &mut self.test,
            &mut self.deploy,
            &mut self.status_check,
            &mut self.render,
            &mut self.verify,
            &mut self.exec,
        ] {
            open += usize::from(start.take().is_some());
        }
        // Cleared, not replaced: the tables keep their capacity for the next
        // iteration.
        self.builds.clear();
        self.syncs.clear();
        self.subtasks.clear();
        open
    }

    fn singles(&self) -> [Option<Nanos>; 6] {
        [
            self.test,
            self.deploy,
            self.status_check,
            self.render,
            self.verify,
            self.exec,
        ]
    }
}

/// Opens `k` in a table of one kind: the table's part of [`OpenPhases::open`].
fn open_in<K: Hash + Eq>(table: &mut HashMap<K, Nanos>, k: K, at: Nanos) -> Opening {
    if table.len() >= MAX_OPEN {
        // Looked up only: an entry would reserve room in a full table.
        return if table.contains_key(&k) {
            Opening::Repeated
        } else {
            Opening::Full
        };
    }
    match table.entry(k) {
        Entry::Occupied(_) => Opening::Repeated,
        Entry::Vacant(v) => {
            v.insert(at);
            Opening::Opened
        }
    }
}
