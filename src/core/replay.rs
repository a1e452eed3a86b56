//! Replay de-duplication by content. Skaffold replays its whole event log to every new
//! subscriber, and its live events can arrive in the middle of that replay
//! (`forEachEvent` copies the log and registers the listener under its log lock, then
//! replays the copy outside the lock while new events are sent to the same stream
//! under it; even a stream's first message can be a live one). Positions mean
//! nothing, so events are recognised by a fingerprint: a hash of the bytes Skaffold
//! sent (computed by the source; see `source::fingerprint`).
//!
//! **Exactness.** Each stream delivers every event of Skaffold's log at most once (the
//! replay copy and the live sends are disjoint), so per fingerprint the exporter has
//! folded as many events as the stream that delivered most of them. The set keeps one
//! slot per folded event plus one "delivered on this stream" mark per slot: a message
//! whose fingerprint has an unmarked slot is a replay of a folded event (skipped, slot
//! marked); otherwise it is new (folded, a marked slot added). Two byte-identical
//! events (same content, same nanosecond) are therefore both folded, once each.
//!
//! **Which Skaffold process.** Fingerprints of different processes never coincide
//! (Skaffold's timestamps differ), so the set could simply keep growing; it is
//! replaced when a stream turns out to come from another process, so memory follows
//! the current process only. A stream of the current process replays every event the
//! set holds, starting with the first one of its log; a stream from another process
//! delivers none of them, and (a process replacing another on the same port starts
//! after it) only events newer than all of them. So a stream is attributed to the
//! current process at its first known fingerprint, and to a new process when it
//! pauses for the first time (the source reports that in band: Skaffold sends its
//! replay in one go, so by then the replay has been delivered) having delivered
//! events, none of them known and all newer than the newest one held. Until then the
//! new events it brings are kept apart and then become the new process's set (or
//! join the current one). A stream that ends, or pauses, without being attributed
//! keeps them in the current set: nothing is forgotten that could be replayed again.
//! Deciding late costs memory, never a double count.
//!
//! **Memory.** One 8-byte slot per folded event, in open-addressing tables kept
//! between 58 % and 87.5 % full: at most 14 bytes per event of the current process,
//! plus a fixed overhead under 6 KiB (64 tables, each allocated on first use). While
//! a new stream is undecided, the events it brought are held in a second set of the
//! same kind. Tables grow one at a time, so growing never holds more than one extra
//! table of 1/64 of the set. A stream that starts with nothing folded (the exporter's
//! first) cannot replay anything: its fingerprints are appended to a log without a
//! lookup (8 bytes each, written in sequence), which moves into the tables chunk by
//! chunk when the next stream begins.

/// Fingerprint tables (by the top bits of the fingerprint): growth copies one table
/// at a time, so the set never needs twice its size while growing.
const TABLE_BITS: u32 = 6;
const TABLES: usize = 1 << TABLE_BITS;
/// Bit 0 of a slot: delivered on the current stream.
const MARK: u64 = 1;
/// Smallest table allocated.
const MIN_SLOTS: usize = 8;

/// One open-addressing table of slots (0 = empty; else fingerprint bits with the mark
/// in bit 0), linear probing, no deletion.
#[derive(Debug, Clone, Default)]
struct Table {
    slots: Box<[u64]>,
    len: usize,
}

impl Table {
    /// Slot index of `key` in a table of `cap` slots (multiply-shift on bits 1..33).
    fn home(key: u64, cap: usize) -> usize {
        ((((key >> 1) & 0xffff_ffff) * cap as u64) >> 32) as usize
    }

    fn put(slots: &mut [u64], slot: u64) {
        let cap = slots.len();
        let mut i = Self::home(slot & !MARK, cap);
        while slots[i] != 0 {
            i += 1;
            if i == cap {
                i = 0;
            }
        }
        slots[i] = slot;
    }

    /// Grows to about 1.5 times the slots (load 7/8 → 7/12).
    fn grow(&mut self) {
        let cap = (self.slots.len() + self.slots.len() / 2).max(MIN_SLOTS);
        let mut slots = vec![0u64; cap].into_boxed_slice();
        for &s in self.slots.iter().filter(|s| **s != 0) {
            Self::put(&mut slots, s);
        }
        self.slots = slots;
    }

    /// Finds an unmarked slot of `key` and marks it (`true`), or adds a marked slot
    /// when `insert` (`false`).
    fn mark_or_insert(&mut self, key: u64, insert: bool) -> bool {
        if insert && (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let cap = self.slots.len();
        if cap == 0 {
            return false;
        }
        let mut i = Self::home(key, cap);
        loop {
            let s = self.slots[i];
            if s == 0 {
                if insert {
                    self.slots[i] = key | MARK;
                    self.len += 1;
                }
                return false;
            }
            if s == key {
                self.slots[i] = key | MARK;
                return true;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }
}

/// A multiset of event fingerprints with a per-stream mark.
#[derive(Debug, Clone)]
pub struct FingerprintSet {
    tables: Vec<Table>,
    len: usize,
    /// Fingerprints appended without a lookup (see [`FingerprintSet::append`]), in
    /// chunks, not yet in the tables.
    log: Vec<Vec<u64>>,
}

/// Fingerprints per chunk of the append log.
const LOG_CHUNK: usize = 8192;

impl Default for FingerprintSet {
    fn default() -> Self {
        Self::new()
    }
}

/// The stored form of a fingerprint: bit 0 cleared (it holds the mark), never 0.
fn key(fingerprint: u64) -> u64 {
    match fingerprint & !MARK {
        0 => 2,
        k => k,
    }
}

fn table_of(key: u64) -> usize {
    (key >> (64 - TABLE_BITS)) as usize
}

impl FingerprintSet {
    /// An empty set (allocates its table directory only).
    pub fn new() -> Self {
        Self {
            tables: vec![Table::default(); TABLES],
            len: 0,
            log: Vec::new(),
        }
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.len + self.log.iter().map(Vec::len).sum::<usize>()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated (slots, the table directory and the append log).
    pub fn bytes(&self) -> usize {
        self.tables.len() * std::mem::size_of::<Table>()
            + self.tables.iter().map(|t| t.slots.len() * 8).sum::<usize>()
            + self.log.iter().map(|c| c.capacity() * 8).sum::<usize>()
    }

    /// Adds an event without looking it up: for a stream that started with nothing
    /// to compare with, every event is new. Sequential writes, no cache miss; the
    /// tables take the log in at the next [`FingerprintSet::unmark_all`].
    pub fn append(&mut self, fingerprint: u64) {
        match self.log.last_mut() {
            Some(c) if c.len() < LOG_CHUNK => c.push(fingerprint),
            _ => {
                let mut c = Vec::with_capacity(LOG_CHUNK);
                c.push(fingerprint);
                self.log.push(c);
            }
        }
    }

    /// Moves the append log into the tables (unmarked), a chunk at a time, each chunk
    /// freed once inserted.
    fn take_in_log(&mut self) {
        for chunk in std::mem::take(&mut self.log) {
            for f in chunk {
                let k = key(f);
                let table = &mut self.tables[table_of(k)];
                if (table.len + 1) * 8 > table.slots.len() * 7 {
                    table.grow();
                }
                Table::put(&mut table.slots, k);
                table.len += 1;
                self.len += 1;
            }
        }
    }

    /// The slot `fingerprint` would be looked up at first (0 when none is allocated).
    fn peek(&self, fingerprint: u64) -> u64 {
        let k = key(fingerprint);
        let t = &self.tables[table_of(k)];
        match t.slots.len() {
            0 => 0,
            cap => t.slots[Table::home(k, cap)],
        }
    }

    /// A new stream begins: nothing has been delivered on it yet.
    pub fn unmark_all(&mut self) {
        self.take_in_log();
        for t in &mut self.tables {
            for s in t.slots.iter_mut() {
                *s &= !MARK;
            }
        }
    }

    /// Marks an event not yet delivered on this stream: `true` when one was found.
    pub fn mark(&mut self, fingerprint: u64) -> bool {
        let k = key(fingerprint);
        self.tables[table_of(k)].mark_or_insert(k, false)
    }

    /// Marks an event not yet delivered on this stream (`true`), or adds it, marked
    /// (`false`).
    pub fn mark_or_insert(&mut self, fingerprint: u64) -> bool {
        let k = key(fingerprint);
        let found = self.tables[table_of(k)].mark_or_insert(k, true);
        if !found {
            self.len += 1;
        }
        found
    }

    /// Adds every event of `other` (with its marks).
    pub fn absorb(&mut self, mut other: FingerprintSet) {
        for chunk in std::mem::take(&mut other.log) {
            for f in chunk {
                self.append(f);
            }
        }
        for t in other.tables {
            for &s in t.slots.iter().filter(|s| **s != 0) {
                let k = s & !MARK;
                let table = &mut self.tables[table_of(k)];
                if (table.len + 1) * 8 > table.slots.len() * 7 {
                    table.grow();
                }
                Table::put(&mut table.slots, s);
                table.len += 1;
                self.len += 1;
            }
        }
    }
}

/// What to do with one received event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// New: fold it.
    Fold,
    /// Already folded (a replay): skip it.
    Replayed,
}

/// How the current stream was attributed when it first paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// Decided before (or nothing to decide: the first stream, or a repeated pause).
    Unchanged,
    /// Its replay contained events already folded: the same Skaffold process.
    SameProcess,
    /// Its replay contained none of them: another Skaffold process; the set now holds
    /// that process's events only.
    NewProcess,
}

/// De-duplicates the events of the streams of one exporter (see the module docs).
#[derive(Debug, Default)]
pub struct ReplayFilter {
    /// The current Skaffold process's events.
    current: FingerprintSet,
    /// Skaffold's timestamp of the newest event in `current`.
    newest: Option<i64>,
    /// New events of a stream not attributed yet.
    undecided: Option<FingerprintSet>,
    /// The current stream started with nothing folded: every event on it is new.
    fresh: bool,
    /// The current stream: events delivered, their oldest timestamp, and the newest
    /// timestamp of those it brought as new.
    delivered: u64,
    oldest_delivered: Option<i64>,
    newest_new: Option<i64>,
}

fn later(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl ReplayFilter {
    /// A filter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events of the current Skaffold process held (plus those of an undecided stream).
    pub fn len(&self) -> usize {
        self.current.len() + self.undecided.as_ref().map_or(0, FingerprintSet::len)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated.
    pub fn bytes(&self) -> usize {
        self.current.bytes() + self.undecided.as_ref().map_or(0, FingerprintSet::bytes)
    }

    /// Whether the current stream is not attributed to a process yet.
    pub fn undecided(&self) -> bool {
        self.undecided.is_some()
    }

    /// A new stream begins. With nothing folded there is nothing to compare it with:
    /// it is the current process's.
    pub fn begin_stream(&mut self) {
        self.end_stream();
        self.delivered = 0;
        self.oldest_delivered = None;
        self.newest_new = None;
        self.current.unmark_all();
        self.fresh = self.current.is_empty();
        if !self.fresh {
            self.undecided = Some(FingerprintSet::new());
        }
    }

    /// Decides about one event of the current stream, by its fingerprint and
    /// Skaffold's timestamp (`None` when the message carries none we could read).
    pub fn admit(&mut self, fingerprint: u64, at: Option<i64>) -> Admission {
        self.delivered += 1;
        if let Some(at) = at {
            self.oldest_delivered = Some(self.oldest_delivered.map_or(at, |o| o.min(at)));
        }
        if self.fresh {
            // Nothing to compare with (each stream delivers an event once, and
            // byte-identical events are folded as often as they come).
            self.current.append(fingerprint);
            self.newest = later(self.newest, at);
            return Admission::Fold;
        }
        let Some(u) = &mut self.undecided else {
            if self.current.mark_or_insert(fingerprint) {
                return Admission::Replayed;
            }
            self.newest = later(self.newest, at);
            return Admission::Fold;
        };
        if self.current.mark(fingerprint) {
            // A replay of the current process's events: the stream is theirs.
            self.attribute_to_current();
            return Admission::Replayed;
        }
        if u.mark_or_insert(fingerprint) {
            return Admission::Replayed;
        }
        self.newest_new = later(self.newest_new, at);
        Admission::Fold
    }

    fn attribute_to_current(&mut self) {
        if let Some(u) = self.undecided.take() {
            self.current.absorb(u);
            self.newest = later(self.newest, self.newest_new.take());
        }
    }

    /// The stream paused: its replay has been delivered. A stream that delivered
    /// events, none held and all newer than the newest one held, comes from another
    /// Skaffold process. Otherwise nothing changes (an undecided stream stays so).
    pub fn settled(&mut self) -> Attribution {
        if self.undecided.is_none() {
            return Attribution::Unchanged;
        }
        let newer = match (self.oldest_delivered, self.newest) {
            (Some(oldest), Some(newest)) => oldest > newest,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if self.delivered == 0 || !newer {
            return Attribution::Unchanged;
        }
        self.current = self.undecided.take().expect("checked above");
        self.newest = self.newest_new.take();
        Attribution::NewProcess
    }

    /// The stream ended. Undecided events join the current set: that stream may have
    /// been the current process's, cut before its replay reached a known event.
    pub fn end_stream(&mut self) {
        self.attribute_to_current();
    }

    /// Reads the slots `fingerprints` will be looked up at, so that the lookups that
    /// follow find them in the cache (independent reads overlap; one after another,
    /// each would wait for memory). Changes nothing.
    pub fn warm(&self, fingerprints: impl Iterator<Item = u64>) {
        if self.fresh {
            return;
        }
        let mut touched = 0u64;
        for f in fingerprints {
            touched ^= self.current.peek(f);
        }
        std::hint::black_box(touched);
    }

    /// Whether the set holds `fingerprint` (for tests and diagnostics; clones).
    pub fn holds(&self, fingerprint: u64) -> bool {
        let found = |s: &FingerprintSet| {
            let mut s = s.clone();
            s.unmark_all();
            s.mark(fingerprint)
        };
        found(&self.current) || self.undecided.as_ref().is_some_and(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Admission::{Fold, Replayed};

    /// Well-spread fingerprints for small test ids.
    fn fp(id: u64) -> u64 {
        id.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ 0x5bd1_e995
    }

    /// Admits a whole stream of ids; returns the admissions.
    fn stream(f: &mut ReplayFilter, ids: &[u64]) -> Vec<Admission> {
        f.begin_stream();
        ids.iter()
            .map(|i| f.admit(fp(*i), Some(*i as i64)))
            .collect()
    }

    fn folded(adm: &[Admission], ids: &[u64]) -> Vec<u64> {
        ids.iter()
            .zip(adm)
            .filter(|(_, a)| **a == Fold)
            .map(|(i, _)| *i)
            .collect()
    }

    #[test]
    fn a_reconnect_skips_the_replay_and_folds_what_is_new() {
        let mut f = ReplayFilter::new();
        assert_eq!(stream(&mut f, &[1, 2, 3]), [Fold, Fold, Fold]);
        f.end_stream();
        assert_eq!(
            stream(&mut f, &[1, 2, 3, 4]),
            [Replayed, Replayed, Replayed, Fold]
        );
        assert!(!f.undecided(), "attributed at the first known event");
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn live_events_overtaking_the_replay_are_folded_once() {
        // Log 1..=6 folded up to 3 plus live 5 (cut while 5 had overtaken 4); the next
        // stream replays 1..=6 with live 7 and 8 arriving in between.
        let mut f = ReplayFilter::new();
        let first = [1, 2, 5, 3];
        assert_eq!(folded(&stream(&mut f, &first), &first), first);
        f.end_stream();
        let second = [7, 1, 2, 8, 3, 4, 5, 6];
        assert_eq!(folded(&stream(&mut f, &second), &second), [7, 8, 4, 6]);
        f.end_stream();
        // A third stream replays everything: nothing is new.
        let third = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(folded(&stream(&mut f, &third), &third), Vec::<u64>::new());
    }

    #[test]
    fn identical_events_are_folded_as_often_as_skaffold_logged_them() {
        let mut f = ReplayFilter::new();
        // Two byte-identical events (same content, same nanosecond) in one stream.
        assert_eq!(stream(&mut f, &[1, 9, 9]), [Fold, Fold, Fold]);
        f.end_stream();
        // The replay brings both again, then a third identical one live.
        assert_eq!(
            stream(&mut f, &[1, 9, 9, 9]),
            [Replayed, Replayed, Replayed, Fold]
        );
        // Cut after one of them: the other is still owed by a later replay.
        f.end_stream();
        assert_eq!(stream(&mut f, &[1, 9]), [Replayed, Replayed]);
        f.end_stream();
        assert_eq!(
            stream(&mut f, &[1, 9, 9, 9, 9]),
            [Replayed, Replayed, Replayed, Replayed, Fold]
        );
    }

    #[test]
    fn a_new_skaffold_process_starts_a_new_set_once_its_replay_is_delivered() {
        let mut f = ReplayFilter::new();
        stream(&mut f, &[1, 2, 3]);
        f.settled();
        f.end_stream();
        // A restarted Skaffold: its first event is live-overtaken, nothing is known.
        assert_eq!(stream(&mut f, &[21, 20, 22]), [Fold, Fold, Fold]);
        assert!(f.undecided());
        assert_eq!(f.settled(), Attribution::NewProcess);
        assert_eq!(f.len(), 3);
        assert!(!f.holds(fp(1)) && f.holds(fp(20)));
        // Later pauses change nothing.
        assert_eq!(f.settled(), Attribution::Unchanged);
        f.end_stream();
        assert_eq!(
            stream(&mut f, &[20, 21, 22, 23]),
            [Replayed, Replayed, Replayed, Fold]
        );
    }

    #[test]
    fn an_empty_replay_decides_nothing_until_events_arrive() {
        let mut f = ReplayFilter::new();
        stream(&mut f, &[1, 2]);
        f.end_stream();
        // A restarted Skaffold with an empty log: the first pause says nothing.
        f.begin_stream();
        assert_eq!(f.settled(), Attribution::Unchanged);
        assert!(f.undecided());
        // Its first events arrive live; at the next pause they decide.
        assert_eq!(f.admit(fp(30), Some(30)), Fold);
        assert_eq!(f.settled(), Attribution::NewProcess);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn an_unknown_event_older_than_the_set_keeps_the_stream_undecided() {
        let mut f = ReplayFilter::new();
        stream(&mut f, &[10, 11]);
        f.end_stream();
        // The same Skaffold, reached after a stream that was cut before its replay got
        // to the first known event: event 5 (older than 11) cannot be another
        // process's.
        assert_eq!(stream(&mut f, &[5]), [Fold]);
        assert_eq!(f.settled(), Attribution::Unchanged);
        assert_eq!(f.admit(fp(10), Some(10)), Replayed);
        assert!(!f.undecided());
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn a_stream_cut_before_it_was_attributed_forgets_nothing() {
        let mut f = ReplayFilter::new();
        stream(&mut f, &[1, 2, 3]);
        f.end_stream();
        // Only two live events arrived before the cut (replay not reached).
        assert_eq!(stream(&mut f, &[4, 5]), [Fold, Fold]);
        f.end_stream();
        assert!(!f.undecided());
        assert_eq!(
            stream(&mut f, &[1, 2, 3, 4, 5, 6]),
            [Replayed, Replayed, Replayed, Replayed, Replayed, Fold]
        );
    }

    #[test]
    fn the_first_known_event_attributes_and_keeps_what_came_before() {
        let mut f = ReplayFilter::new();
        stream(&mut f, &[1, 2]);
        f.end_stream();
        // Live 7 overtakes the replay's head; the replay then proves the process.
        assert_eq!(stream(&mut f, &[7, 1, 2]), [Fold, Replayed, Replayed]);
        assert_eq!(f.settled(), Attribution::Unchanged);
        f.end_stream();
        assert_eq!(stream(&mut f, &[1, 2, 7]), [Replayed, Replayed, Replayed]);
    }

    #[test]
    fn memory_stays_within_16_bytes_per_event() {
        let mut s = FingerprintSet::new();
        let fixed = s.bytes();
        assert!(fixed < 6 * 1024, "fixed overhead {fixed}");
        let mut n = 0u64;
        for target in [1_000u64, 10_000, 100_000, 300_000, 1_000_000] {
            while n < target {
                assert!(!s.mark_or_insert(fp(n)));
                n += 1;
                if n.is_multiple_of(9_973) {
                    let b = s.bytes() - fixed;
                    // Small sets pay for their first tables (64 × 8 slots).
                    assert!(
                        b as u64 <= 16 * n + 64 * MIN_SLOTS as u64 * 8,
                        "{b} bytes for {n} events"
                    );
                }
            }
            let per_event = (s.bytes() - fixed) as f64 / n as f64;
            assert!(per_event <= 14.0, "{per_event:.2} bytes/event at {n}");
        }
        assert_eq!(s.len(), 1_000_000);
        // The append log (a fresh stream) costs 8 bytes per event, and once taken in
        // the tables stay within the bound.
        let mut a = FingerprintSet::new();
        for i in 0..300_000 {
            a.append(fp(i));
        }
        assert!((a.bytes() - fixed) as f64 / 300_000.0 <= 8.3);
        a.unmark_all();
        assert!((a.bytes() - fixed) as f64 / 300_000.0 <= 14.0);
        assert!((0..300_000).all(|i| a.mark(fp(i))));
        // Every event is still found exactly once.
        s.unmark_all();
        assert!((0..1_000_000).all(|i| s.mark(fp(i))));
        assert!((0..1_000_000).all(|i| !s.mark(fp(i))));
    }

    #[test]
    fn bit_zero_holds_the_mark_so_fingerprints_are_compared_on_63_bits() {
        let mut s = FingerprintSet::new();
        assert!(!s.mark_or_insert(6));
        assert!(
            !s.mark_or_insert(0),
            "0 is stored, not taken for an empty slot"
        );
        s.unmark_all();
        assert!(s.mark(7), "6 and 7 differ only in the mark bit");
        assert!(s.mark(1), "0 and 1 too");
        assert!(!s.mark(8));
        assert_eq!(s.len(), 2);
    }
}
