//! The pure core: domain events in, transitions out. No I/O, no clock reads; time
//! arrives inside the events (Skaffold's timestamps). Depends on nothing else of ours.
//!
//! - `event`: the domain events the decoders produce, and why one is invalid.
//! - `state`: the fold (`State::apply`), which owns per-run and cross-run state: the
//!   phases running now (`state::open`), what each phase's events mean
//!   (`state::phases`) and the dev-loop iterations (`state::iteration`).
//! - `transition`: what the fold concludes; the only thing sinks read.
//! - `order` and `replay`: Skaffold's order across streams, and exact replay
//!   de-duplication.
//! - `reason`: the bounded reasons counted as invalid.
//! - `health`: what a reader reports about itself, for sinks to record.

pub mod event;
pub mod health;
pub mod order;
pub mod reason;
pub mod replay;
pub mod state;
pub mod transition;

pub use event::{ErrorInfo, Event, EventKind, InvalidEvent, LogKind, Name, Nanos, Status};
pub use health::ReaderHealth;
pub use order::Reorder;
pub use reason::Reason;
pub use replay::{Admission, Attribution, ReplayFilter};
pub use state::State;
pub use transition::{Finished, LoopKind, Outcome, Phase, RunEnd, Transition, TransitionObserver};
