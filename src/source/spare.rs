//! Spare boxes for lean v2 events, reused instead of allocated and freed per event.
//!
//! Every decoded v2 event travels to the fold boxed (`Payload::V2`), and the fold
//! hands each batch back to the reader, which frees it (see `supervisor::Queue`): one
//! allocation and one free per event, about a tenth of the exporter's CPU in a
//! 1M-event v2 replay. Instead, the reader keeps the emptied boxes of the batches it
//! gets back ([`keep`]) and decodes the next events into them ([`decode`]): a box's
//! fields are cleared when it is kept, so a spare box holds nothing of what was
//! received.
//!
//! Spares are per thread (the reader runs on whichever worker the runtime gives it,
//! and a box is kept on the thread that frees the batch), at most [`MAX`] of them:
//! a batch comes back for each one sent, so a few batches' worth is all that is ever
//! reused; beyond, boxes are freed.

use std::cell::RefCell;

use bytes::Bytes;
use prost::Message as _;

use crate::pb::lean::v2::Event;

/// Most spare boxes kept per thread: two batches' worth (`supervisor::BATCH`), at most
/// 352 KiB (176 bytes a box) on each thread that ran the reader during a burst. Half a
/// batch's worth (512) left the other half to malloc and free.
pub const MAX: usize = 2 * super::supervisor::BATCH;

thread_local! {
    // The boxes themselves are what is reused: a `Vec<Event>` would move each event
    // in and out.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Event>>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `event`'s box, emptied, for a later [`decode`] (frees it when [`MAX`] are
/// kept).
pub fn keep(mut event: Box<Event>) {
    event.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < MAX {
            s.push(event);
        }
    });
}

/// Decodes `bytes` as a lean v2 event, into a spare box when there is one.
pub fn decode(bytes: Bytes) -> Result<Box<Event>, prost::DecodeError> {
    let mut event = SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    match event.merge(bytes) {
        Ok(()) => Ok(event),
        Err(e) => {
            keep(event);
            Err(e)
        }
    }
}

/// Spare boxes on this thread.
#[cfg(test)]
fn count() -> usize {
    SPARE.with(|s| s.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::enums::StatusCode;
    use crate::simulator::scenario::Script;

    /// The first v2 event of a build of `artifact` that names it, encoded.
    fn encoded(artifact: &str) -> Bytes {
        Script::new()
            .build(0, artifact, "In Progress", StatusCode::Ok)
            .events_v2(1_700_000_000_000_000_000)
            .iter()
            .map(|e| Bytes::from(e.encode_to_vec()))
            .find(|b| b.windows(artifact.len()).any(|w| w == artifact.as_bytes()))
            .expect("a build subtask names its artifact")
    }

    #[test]
    fn a_kept_box_is_reused_emptied_and_decodes_as_a_new_one_would() {
        // Other tests on this thread may have left spares: start without any.
        SPARE.with(|s| s.borrow_mut().clear());
        assert_ne!(
            encoded("web"),
            encoded("db"),
            "the artifact is in the event"
        );
        let first = decode(encoded("web")).unwrap();
        let at = std::ptr::from_ref::<Event>(&first) as usize;
        keep(first);
        assert_eq!(count(), 1);
        let second = decode(encoded("db")).unwrap();
        assert_eq!(std::ptr::from_ref::<Event>(&second) as usize, at, "reused");
        assert_eq!(count(), 0);
        // Nothing of the first event is left in it.
        assert_eq!(*second, Event::decode(encoded("db")).unwrap());
        // A box that fails to decode is kept, emptied.
        assert!(decode(Bytes::from_static(b"\xff")).is_err());
        assert_eq!(count(), 1);
        keep(second);
        for _ in 0..MAX + 10 {
            keep(Box::default());
        }
        assert_eq!(count(), MAX, "at most MAX kept");
        let empty = decode(Bytes::new()).unwrap();
        assert_eq!(*empty, Event::default(), "spares hold nothing");
    }
}
