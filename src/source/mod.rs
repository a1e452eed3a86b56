//! Sources: where Skaffold's events come from. `grpc` subscribes to a live Skaffold
//! (and reconnects); `decode` and `json` turn wire messages into domain events.

pub mod backoff;
pub mod decode;
pub mod grpc;
pub mod json;

use crate::pb::v1;

/// What a source hands to the fold.
#[derive(Debug, Clone)]
pub struct SourceMessage {
    /// Which stream (1 for the first subscription, +1 per reconnect).
    pub stream: u64,
    /// Position in that stream, from 0.
    pub position: u64,
    /// The entry as Skaffold sent it.
    pub entry: v1::LogEntry,
}
