//! The pure core: domain events in, transitions out. No I/O, no clock reads; time
//! arrives inside the events (Skaffold's timestamps).

pub mod event;
pub mod health;
pub mod order;
pub mod reason;
pub mod replay;
pub mod state;
pub mod transition;

pub use event::{ErrorInfo, Event, EventKind, InvalidEvent, LogKind, Nanos, Status};
pub use health::ReaderHealth;
pub use order::Reorder;
pub use reason::Reason;
pub use replay::{Admission, Attribution, ReplayFilter};
pub use state::State;
pub use transition::{Finished, LoopKind, Outcome, Phase, RunEnd, Transition};
