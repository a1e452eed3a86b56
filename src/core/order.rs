//! Skaffold's order into the fold. Within one stream, live events can overtake
//! Skaffold's replay (see `core::replay`): a live `Complete` can arrive before the
//! replayed `In Progress` of the same build, also on the very first subscription. The
//! fold must see every phase's start before its end, so each stream's messages pass
//! through [`Reorder`], which hands them on in Skaffold's timestamp order under these
//! rules (`W` is the window, 100 ms by default; Skaffold time is the events'
//! timestamps, arrival time the reader's monotonic clock):
//!
//! 1. **Window.** A message is held until a message at least `W` newer (Skaffold
//!    time) has arrived on the stream, and for at least `W` (arrival time: events that
//!    overtook a replay that has not started yet wait for it that long); held
//!    messages leave oldest first, ties in arrival order. Small inversions
//!    (concurrent emitters stamp events a few microseconds apart in either order) are
//!    undone on the way.
//! 2. **Replay behind.** A message more than `W` older than the newest one received
//!    (a *late* one) means a replay is flowing behind events that overtook it. While
//!    late messages keep arriving (the last one less than `W` ago, arrival time),
//!    nothing newer than the newest of them leaves: the overtaking events wait for the
//!    replay, however long it is. Late messages themselves are not held for `W`: they
//!    leave as soon as nothing older is held.
//! 3. **Pause.** When no ordered message has arrived for `W` (arrival time),
//!    everything held leaves: Skaffold is not sending events, so no replay is in
//!    flight. Messages that take no part in the order (v2 log events, which are only
//!    counted, and undecodable ones) do not count: an application that logs a line
//!    every few milliseconds would otherwise keep the stream from ever pausing.
//! 4. **End.** When the stream ends, everything held leaves, before the end is
//!    reported.
//! 5. **Bound.** At most `cap` messages, keeping at most `cap_bytes` of received bytes
//!    (what each message may keep alive, as its source counts it), are held; beyond,
//!    the oldest leave (a message over `cap_bytes` on its own leaves at once, after
//!    everything held that is stamped before it).
//!
//! Worst-case added latency of a live event outside a replay: `2 W` (it leaves when
//! an event `W` newer has arrived and `W` has passed, or `W` after the last arrival:
//! with events arriving just under `W` apart, the second one releases it). During a
//! replay, an event that overtook it waits for the replay to end, plus `W`. The
//! order is Skaffold's provided a replay starts within `W` of the live events that
//! overtake it and has no gap longer than `W` (Skaffold sends it in one go). Messages are never dropped or
//! duplicated here; an event arriving after newer ones already left is handed on at
//! once (it cannot be put back in the past).
//!
//! Pure: time comes in as arguments.

use std::collections::VecDeque;
use std::time::Duration;

use super::event::Nanos;

/// The default window `W`.
pub const WINDOW: Duration = Duration::from_millis(100);

/// The default bound on held messages: 1024 deliveries (at most 160 bytes each plus
/// their payloads' heap, well under 1 MiB when full). Filling it takes over a thousand
/// live events stamped within one window arriving ahead of a replay; Skaffold's own
/// bursts (a status check of many resources) stay far below it. During a replay burst
/// the buffer stays full (every message is held `W` of arrival time), so its size is
/// what each message travels through: 8192 made that 1.2 MB, past the CPU caches
/// (`Reorder::push` was 8 % of the exporter's CPU in the 1M-event replay profile).
pub const HELD_CAP: usize = 1024;

/// The default bound on the received bytes held messages keep alive: 16 MiB, room
/// for `HELD_CAP` small messages (a small v2 one may keep the 8 KiB chunk it was
/// copied into, see `source::grpc::EventDecoder`) and two messages at the size limit
/// (`source::limits::MAX_EVENT_BYTES`). Only a peer flooding large messages meets it
/// before the count bound.
pub const HELD_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
struct Held<T> {
    at: Nanos,
    /// Arrival time; `None` for a late message (rule 2: not held for `W`).
    arrived: Option<Duration>,
    /// Received bytes it keeps alive.
    bytes: u32,
    item: T,
}

/// Re-orders one stream's messages by Skaffold's timestamps (see the module docs).
#[derive(Debug)]
pub struct Reorder<T> {
    held: VecDeque<Held<T>>,
    window: Duration,
    /// `window` in Skaffold time (nanoseconds), computed once.
    window_ns: Nanos,
    cap: usize,
    cap_bytes: u64,
    /// Received bytes the held messages keep alive.
    held_bytes: u64,
    /// Newest Skaffold timestamp received.
    newest: Option<Nanos>,
    /// Rule 2: newest timestamp among late messages, and when the last one arrived.
    frontier: Option<(Nanos, Duration)>,
    /// Arrival time of the last message.
    last_arrival: Option<Duration>,
}

fn nanos(d: Duration) -> Nanos {
    Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX)
}

impl<T> Reorder<T> {
    /// An empty re-orderer with window `window` holding at most `cap` messages, which
    /// keep at most `cap_bytes` alive.
    pub fn new(window: Duration, cap: usize, cap_bytes: u64) -> Self {
        Self {
            held: VecDeque::new(),
            window,
            window_ns: nanos(window),
            cap: cap.max(1),
            cap_bytes,
            held_bytes: 0,
            newest: None,
            frontier: None,
            last_arrival: None,
        }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Received bytes the held messages keep alive.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// A message stamped `at` by Skaffold, keeping `bytes` of received bytes alive,
    /// arrived at `now`; hands on (appends to `out`, in order) what may leave.
    pub fn push(&mut self, at: Nanos, now: Duration, bytes: u32, item: T, out: &mut Vec<T>) {
        let w = self.window_ns;
        if let Some((_, last)) = self.frontier
            && now.saturating_sub(last) >= self.window
        {
            self.frontier = None;
        }
        let late = match self.newest {
            Some(newest) if at < newest.saturating_sub(w) => {
                let f = self.frontier.map_or(at, |(f, _)| f.max(at));
                self.frontier = Some((f, now));
                true
            }
            _ => {
                self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
                false
            }
        };
        self.last_arrival = Some(now);
        // Insert after every held message stamped at or before `at` (`held` is in
        // timestamp order): nearly always at the back; else found by bisection, not by
        // a walk over up to `cap` messages.
        let arrived = (!late).then_some(now);
        self.held_bytes += u64::from(bytes);
        let held = Held {
            at,
            arrived,
            bytes,
            item,
        };
        if self.held.back().is_none_or(|h| h.at <= at) {
            self.held.push_back(held);
        } else {
            let pos = self.held.partition_point(|h| h.at <= at);
            self.held.insert(pos, held);
        }
        self.release(now, out);
    }

    /// Hands on what rules 1, 2 and 5 let leave.
    fn release(&mut self, now: Duration, out: &mut Vec<T>) {
        let Some(newest) = self.newest else {
            return;
        };
        let mut limit = newest.saturating_sub(self.window_ns);
        if let Some((f, _)) = self.frontier {
            limit = limit.min(f);
        }
        let window = self.window;
        let may_leave = |h: &Held<T>| {
            h.at <= limit && h.arrived.is_none_or(|a| now.saturating_sub(a) >= window)
        };
        while self.held.front().is_some_and(may_leave)
            || self.held.len() > self.cap
            || self.held_bytes > self.cap_bytes
        {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= u64::from(h.bytes);
            out.push(h.item);
        }
    }

    /// When to call [`Reorder::paused`] next: `W` after the last arrival, while
    /// anything is held or a replay may be flowing.
    pub fn pause_due(&self) -> Option<Duration> {
        if self.held.is_empty() && self.frontier.is_none() {
            return None;
        }
        self.last_arrival.map(|a| a + self.window)
    }

    /// Nothing has arrived since the last message, and it is `now`: if that is a
    /// pause (rule 3), everything held leaves. Returns whether it was one.
    pub fn paused(&mut self, now: Duration, out: &mut Vec<T>) -> bool {
        if self
            .last_arrival
            .is_some_and(|a| now.saturating_sub(a) < self.window)
        {
            return false;
        }
        self.frontier = None;
        self.held_bytes = 0;
        out.extend(self.held.drain(..).map(|h| h.item));
        true
    }

    /// The stream ended: everything held leaves (rule 4), and the next stream starts
    /// afresh.
    pub fn flush(&mut self, out: &mut Vec<T>) {
        self.held_bytes = 0;
        out.extend(self.held.drain(..).map(|h| h.item));
        self.newest = None;
        self.frontier = None;
        self.last_arrival = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Pushes (Skaffold ms, arrival ms) pairs; returns the ids handed on after each.
    fn run(r: &mut Reorder<u32>, msgs: &[(u32, i64, u64)]) -> Vec<Vec<u32>> {
        msgs.iter()
            .map(|&(id, at, now)| {
                let mut out = Vec::new();
                r.push(at * MS, ms(now), 1, id, &mut out);
                out
            })
            .collect()
    }

    fn reorder() -> Reorder<u32> {
        Reorder::new(WINDOW, HELD_CAP, HELD_BYTES)
    }

    #[test]
    fn rule_1_a_message_waits_until_one_a_window_newer_arrives() {
        let mut r = reorder();
        let out = run(
            &mut r,
            &[(1, 0, 0), (2, 50, 50), (3, 100, 100), (4, 250, 250)],
        );
        assert_eq!(out, [vec![], vec![], vec![1], vec![2, 3]]);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn rule_1_small_inversions_are_undone() {
        let mut r = reorder();
        // Concurrent emitters: 2 is stamped before 1 but sent after it.
        let out = run(&mut r, &[(1, 10, 0), (2, 9, 0), (3, 400, 150)]);
        assert_eq!(out.concat(), [2, 1]);
    }

    #[test]
    fn rule_1_live_events_wait_for_a_replay_that_starts_within_the_window() {
        let mut r = reorder();
        // Live events spanning 10 s of Skaffold time arrive in one burst before the
        // replay's first message (its sender was scheduled late)...
        let live: Vec<(u32, i64, u64)> = (0..10u32)
            .map(|i| (100 + i, 60_000 + i64::from(i) * 1000, 1))
            .collect();
        assert!(run(&mut r, &live).concat().is_empty());
        // ...which comes 40 ms later and goes on: the replay leaves first.
        let replay: Vec<(u32, i64, u64)> = (0..20u32)
            .map(|i| (i, i64::from(i) * 100, 40 + u64::from(i)))
            .collect();
        let mut out = run(&mut r, &replay).concat();
        assert!(r.paused(ms(200), &mut out));
        let want: Vec<u32> = (0..20).chain(100..110).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn rule_2_an_event_that_overtook_the_replay_waits_for_the_whole_replay() {
        let mut r = reorder();
        // Replay of events stamped 0..; live `complete` (id 100, stamped 10 s) arrives
        // after two replayed ones; the replay goes on for 500 ms of arrival time and
        // another live event (id 101, 10.3 s) arrives in its middle.
        let mut msgs = vec![(0, 0, 0), (1, 100, 0), (100, 10_000, 1)];
        for i in 2..=50u32 {
            msgs.push((i, i64::from(i) * 100, u64::from(i) * 10));
        }
        msgs.insert(20, (101, 10_300, 200));
        let out = run(&mut r, &msgs).concat();
        let expected: Vec<u32> = (0..=50).collect();
        assert_eq!(
            out, expected,
            "the replay leaves in order, the live events wait"
        );
        // The replay stopped; after a pause everything leaves, live events last.
        let mut rest = Vec::new();
        assert!(r.paused(ms(600), &mut rest));
        let all: Vec<u32> = out.into_iter().chain(rest).collect();
        assert_eq!(&all[all.len() - 2..], [100, 101]);
        assert_eq!(all.len(), 53);
    }

    #[test]
    fn rule_2_ends_when_late_messages_stop_coming() {
        let mut r = reorder();
        run(&mut r, &[(100, 10_000, 0), (0, 0, 1)]);
        // Live traffic continues without late messages: after W of arrival time the
        // window rule applies again.
        let out = run(&mut r, &[(101, 10_150, 50), (102, 10_300, 150)]);
        assert_eq!(out.concat(), [100, 101]);
    }

    #[test]
    fn rule_3_a_pause_releases_everything() {
        let mut r = reorder();
        let out = run(&mut r, &[(1, 0, 0), (2, 10, 5)]);
        assert!(out.concat().is_empty());
        assert_eq!(r.pause_due(), Some(ms(105)));
        let mut rest = Vec::new();
        assert!(!r.paused(ms(80), &mut rest), "not a pause yet");
        assert!(rest.is_empty());
        assert!(r.paused(ms(105), &mut rest));
        assert_eq!(rest, [1, 2]);
        assert_eq!(r.pause_due(), None);
    }

    #[test]
    fn rule_4_the_end_of_the_stream_releases_everything_and_resets() {
        let mut r = reorder();
        run(&mut r, &[(1, 5_000, 0), (2, 4_000, 1)]);
        let mut rest = Vec::new();
        r.flush(&mut rest);
        assert_eq!(rest, [1]);
        // A new stream starts with no memory of the old one's timestamps.
        let out = run(&mut r, &[(3, 0, 10), (4, 300, 110)]);
        assert_eq!(out.concat(), [3]);
    }

    #[test]
    fn rule_5_at_most_cap_messages_are_held() {
        let mut r = Reorder::new(WINDOW, 3, HELD_BYTES);
        let out = run(
            &mut r,
            &[(1, 0, 0), (2, 1, 0), (3, 2, 0), (4, 3, 0), (5, 4, 0)],
        );
        assert_eq!(out.concat(), [1, 2]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn rule_5_at_most_cap_bytes_are_kept_alive_by_held_messages() {
        let mut r = Reorder::new(WINDOW, HELD_CAP, 10);
        let mut out = Vec::new();
        // All stamped alike (a flood): only the byte bound lets them leave.
        for (id, bytes) in [(1, 4), (2, 4), (3, 1), (4, 3), (5, 2)] {
            r.push(0, ms(0), bytes, id, &mut out);
        }
        assert_eq!(out, [1], "4 + 4 + 1 + 3 > 10: the oldest left");
        assert_eq!((r.len(), r.held_bytes()), (4, 10));
        // A message over the bound on its own leaves at once, after what was held
        // before it.
        r.push(0, ms(0), 11, 6, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6]);
        assert_eq!(r.held_bytes(), 0);
        r.push(0, ms(0), 2, 7, &mut out);
        let mut rest = Vec::new();
        r.flush(&mut rest);
        assert_eq!((rest, r.held_bytes()), (vec![7], 0));
    }

    #[test]
    fn live_events_wait_at_most_two_windows() {
        let mut r = reorder();
        // Events just under W apart, stamped as they are sent (Skaffold time = arrival).
        let mut waited = Vec::new();
        let mut out = Vec::new();
        for i in 0..50u32 {
            let t = u64::from(i) * 99;
            r.push(i64::from(i) * 99 * MS, ms(t), 1, i, &mut out);
            for id in out.drain(..) {
                waited.push(t - u64::from(id) * 99);
            }
        }
        assert_eq!(waited.len(), 48);
        assert!(waited.iter().all(|w| *w <= 200), "{waited:?}");
    }

    #[test]
    fn a_late_message_after_newer_ones_left_is_handed_on_at_once() {
        let mut r = reorder();
        let out = run(&mut r, &[(1, 0, 0), (2, 1_000, 150), (3, 500, 151)]);
        assert_eq!(out, [vec![], vec![1], vec![3]]);
    }
}
