//! Sources: where Skaffold's events come from.
//!
//! - `grpc`: subscribes to a live Skaffold over gRPC, API v1 or v2 (`--api`), and
//!   keeps subscribing; `gateway`: the same over Skaffold's HTTP gateway;
//!   `supervisor`: the reconnect loop they share.
//! - `file`: event log files and gateway captures (`skaffold-exporter replay`).
//! - `decode` (v1), `decode_v2`, `wire` (cheap looks at v2 bytes) and `json` turn wire
//!   messages into domain events.
//!
//! Every source hands the fold [`SourceMessage`]s: the wire message (or what the cheap
//! look made of it) with its position in its stream and a fingerprint, which is all
//! the replay de-duplication needs.

pub mod backoff;
pub mod decode;
pub mod decode_v2;
pub mod file;
pub mod gateway;
pub mod grpc;
pub mod json;
pub mod supervisor;
pub mod wire;

use std::hash::{DefaultHasher, Hasher};

use prost::Message;

use crate::core::InvalidEvent;
use crate::pb::{v1, v2};
pub use wire::LogKind;

/// Which of Skaffold's event APIs to subscribe to (`--api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Api {
    /// `proto.SkaffoldService/Events` (`/v1/events`): every Skaffold since v0.34.
    V1,
    /// `proto.v2.SkaffoldV2Service/Events` (`/v2/events`): Skaffold v1.26 and later
    /// (the v1.22–v1.25 layout is detected: that stream is read to its end without
    /// folding anything, then re-subscribed). Subscribing to v2 also releases
    /// `skaffold --wait-for-connection`.
    V2,
    /// v2 when the server offers it (current layout), else v1; decided on the first
    /// successful subscription and kept, so the same events are never counted twice.
    #[default]
    Auto,
}

impl Api {
    /// `v1`, `v2` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::V1 => "v1",
            Api::V2 => "v2",
            Api::Auto => "auto",
        }
    }
}

/// What a source received, as far as the source decoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A v1 `LogEntry`.
    V1(v1::LogEntry),
    /// A v2 `Event`.
    V2(v2::Event),
    /// A v2 log event, skipped without decoding (counted).
    SkippedLog(LogKind),
    /// A message that could not be decoded at all (counted as invalid).
    Invalid(InvalidEvent),
}

/// What a source hands to the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMessage {
    /// Which stream (1 for the first subscription, +1 per reconnect).
    pub stream: u64,
    /// Position in that stream, from 0 (every message counts, skipped ones too).
    pub position: u64,
    /// Hash of the message as Skaffold sent it: the same event replayed on a later
    /// stream has the same fingerprint (see `core::replay`).
    pub fingerprint: u64,
    /// The fingerprint of the stream's first message (position 0): it names the
    /// Skaffold process even when that message itself was dropped on the way.
    pub first: u64,
    /// The message.
    pub payload: Payload,
}

impl SourceMessage {
    /// A v1 entry; the fingerprint is the hash of its encoding. `first` is set to
    /// it too (right for position 0; see [`SourceMessage::with_first`]).
    pub fn v1(stream: u64, position: u64, entry: v1::LogEntry) -> Self {
        let fingerprint = fingerprint_bytes(&entry.encode_to_vec());
        Self {
            stream,
            position,
            fingerprint,
            first: fingerprint,
            payload: Payload::V1(entry),
        }
    }

    /// A v2 event; the fingerprint is the hash of its encoding. `first` is set to it
    /// too (right for position 0; see [`SourceMessage::with_first`]).
    pub fn v2(stream: u64, position: u64, event: v2::Event) -> Self {
        let fingerprint = fingerprint_bytes(&event.encode_to_vec()) ^ V2_SALT;
        Self {
            stream,
            position,
            fingerprint,
            first: fingerprint,
            payload: Payload::V2(event),
        }
    }

    /// The same message, its stream's first message having fingerprint `first`.
    pub fn with_first(mut self, first: u64) -> Self {
        self.first = first;
        self
    }
}

/// Mixed into v2 fingerprints so a v1 and a v2 message can never look alike.
pub const V2_SALT: u64 = 0x5f32_5f32_5f32_5f32;

/// A stable hash of encoded bytes (SipHash with fixed keys: equal across streams and
/// restarts of the exporter).
pub fn fingerprint_bytes(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}
