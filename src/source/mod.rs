//! Sources: where Skaffold's events come from.
//!
//! - `grpc`: subscribes to a live Skaffold over gRPC, API v1 or v2 (`--api`), and
//!   keeps subscribing; `gateway`: the same over Skaffold's HTTP gateway;
//!   `supervisor`: the reconnect loop they share; [`run`] subscribes to an
//!   [`Origin`] (the gRPC port or the gateway) through them.
//! - `file`: event log files and gateway captures (`skaffold-exporter replay`), record
//!   by record; `file::input` opens them (files, stdin) and follows a growing file.
//! - `decode` (v1), `decode_v2`, `v1_view` (a v1 message read in place), `wire`
//!   (cheap looks at v2 bytes) and `json` turn wire messages into domain events.
//! - `limits`: what one message may cost to decode; `backoff`: the reconnect delays;
//!   `spare`: boxes of v2 events reused by the reader.
//!
//! Every source hands the fold [`Delivery`]s through one bounded queue: the
//! connection's state (subscribed, paused, ended, Skaffold unreachable) travels in
//! band with the messages, so the fold sees it in order with the events. Each message
//! carries a fingerprint of the bytes Skaffold sent and Skaffold's timestamp, which is
//! all the replay de-duplication (`core::replay`) needs.

pub mod backoff;
pub mod decode;
pub mod decode_v2;
pub mod file;
pub mod gateway;
pub mod grpc;
pub mod json;
pub mod limits;
pub mod spare;
pub mod supervisor;
pub mod v1_view;
pub mod wire;

use prost::Message;

use crate::core::{Event, InvalidEvent, LogKind, Nanos, ReaderHealth};
use crate::pb::{lean, v1, v2};
use decode::timestamp_nanos;

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

    /// The API a connector uses from its first stream (`None` for `auto`: decided by
    /// the first successful subscription).
    pub fn fixed(self) -> Option<Api> {
        match self {
            Api::Auto => None,
            other => Some(other),
        }
    }
}

/// With `--api auto` (`asked`), a stream that ended because Skaffold does not offer
/// v2 or sends it in a layout we cannot read switches the connector to v1, once: sets
/// `chosen` and returns `true` (the connector logs it).
fn fall_back_to_v1(asked: Api, chosen: &mut Option<Api>, err: &supervisor::StreamError) -> bool {
    use supervisor::StreamError::{Incompatible, Missing};
    if matches!(err, Incompatible(_) | Missing(_)) && asked == Api::Auto && *chosen != Some(Api::V1)
    {
        *chosen = Some(Api::V1);
        return true;
    }
    false
}

/// Where the live exporter reads Skaffold's events.
#[derive(Debug, Clone)]
pub enum Origin {
    /// Skaffold's gRPC port (`host:port`).
    Grpc(String),
    /// Skaffold's HTTP gateway (`http://host:port`).
    Gateway(http::Uri),
}

/// Subscribes to `origin`'s `api` and keeps subscribing, `retry` apart, until
/// `shutdown` turns true or the fold's queue closes.
pub async fn run<H: ReaderHealth>(
    origin: Origin,
    api: Api,
    retry: supervisor::Retry,
    tx: impl Into<supervisor::Queue>,
    health: H,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    match origin {
        Origin::Grpc(addr) => {
            let connector = grpc::GrpcConnector::new(&addr, api);
            supervisor::run(connector, retry, tx, health, shutdown).await;
        }
        Origin::Gateway(base) => {
            let client = crate::skaffold::gateway::GatewayClient::new(base);
            let connector = gateway::GatewayConnector::new(client, api);
            supervisor::run(connector, retry, tx, health, shutdown).await;
        }
    }
}

/// What a source received, as far as the source decoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A v1 `LogEntry` (boxed, as `V2`).
    V1(Box<v1::LogEntry>),
    /// A v1 `LogEntry` the reader already turned into the domain event (v1 needs no
    /// per-run state to decode, so live sources decode it where the bytes arrive).
    Event(Event),
    /// A v2 `Event`, lean (boxed: most payloads are far smaller, and payloads are
    /// moved through the ordering buffer and the queue).
    V2(Box<lean::v2::Event>),
    /// A v2 log event, skipped without decoding (counted).
    SkippedLog(LogKind),
    /// A message that could not be decoded at all (counted as invalid).
    Invalid(InvalidEvent),
}

impl Payload {
    /// Decodes what can be decoded without the fold's state: a v1 entry becomes its
    /// domain event (or the reason it is invalid).
    pub fn digest(self) -> Self {
        match self {
            Payload::V1(entry) => Self::decoded_v1(&entry),
            other => other,
        }
    }

    /// A v1 entry, decoded into its domain event (or the reason it is invalid).
    pub fn decoded_v1(entry: &v1::LogEntry) -> Self {
        Self::of(decode::decode_v1_full(entry))
    }

    /// An encoded v1 entry (as the gRPC source receives it), decoded into its domain
    /// event (or the reason it is invalid).
    pub fn decoded_v1_bytes(bytes: &[u8]) -> Self {
        Self::of(decode::decode_v1_bytes(bytes))
    }

    fn of(decoded: Result<Event, InvalidEvent>) -> Self {
        match decoded {
            Ok(ev) => Payload::Event(ev),
            Err(e) => Payload::Invalid(e),
        }
    }
}

/// One message, as a source hands it to the fold.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMessage {
    /// Hash of the bytes Skaffold sent ([`fingerprint`]): the same event replayed on a
    /// later stream has the same fingerprint.
    pub fingerprint: u64,
    /// Skaffold's timestamp, when the message carries one we could read.
    pub at: Option<Nanos>,
    /// Received bytes this message may keep alive until it is folded and freed: 0
    /// when its payload keeps nothing of what was received (skipped, invalid), else
    /// its size as received: a v2 payload's strings are slices of it (the gRPC source
    /// copies each v2 message out of tonic's buffer, a small one into a chunk shared
    /// with its neighbours, which it then counts as keeping: see
    /// `grpc::EventDecoder`); a v1 event's names and errors are copies of parts of it,
    /// no larger. The reader bounds the bytes held for Skaffold's order and queued for
    /// the fold by it (see `supervisor`).
    pub keeps: u32,
    /// The message.
    pub payload: Payload,
}

impl SourceMessage {
    /// A message with its fingerprint; Skaffold's timestamp is read from it.
    pub fn new(fingerprint: u64, payload: Payload) -> Self {
        let at = match &payload {
            Payload::V1(e) => timestamp_nanos(e.timestamp.as_ref()).ok(),
            Payload::Event(e) => Some(e.at),
            Payload::V2(e) => timestamp_nanos(e.timestamp.as_ref()).ok(),
            Payload::SkippedLog(_) | Payload::Invalid(_) => None,
        };
        Self {
            fingerprint,
            at,
            keeps: 0,
            payload,
        }
    }

    /// Whether its payload may keep received bytes alive (a decoded event).
    pub fn retains(&self) -> bool {
        matches!(
            self.payload,
            Payload::V1(_) | Payload::Event(_) | Payload::V2(_)
        )
    }

    /// The message, counted as keeping `bytes` received bytes alive if its payload
    /// keeps any (see [`SourceMessage::keeps`]).
    #[must_use]
    pub fn keeping(mut self, bytes: usize) -> Self {
        self.keeps = if self.retains() {
            u32::try_from(bytes).unwrap_or(u32::MAX)
        } else {
            0
        };
        self
    }

    /// A v1 entry, decoded as a live source does (tests and benches: the fingerprint
    /// is the hash of its encoding).
    pub fn v1(entry: v1::LogEntry) -> Self {
        let bytes = entry.encode_to_vec();
        Self::new(fingerprint(&bytes), Payload::decoded_v1(&entry)).keeping(bytes.len())
    }

    /// A v2 event (tests and benches: the fingerprint is the hash of its encoding).
    pub fn v2(event: v2::Event) -> Self {
        let bytes = event.encode_to_vec();
        Self::new(
            v2_fingerprint(&bytes),
            Payload::V2(Box::new(lean::v2::Event::of(&event))),
        )
        .keeping(bytes.len())
    }

    /// Whether its place in Skaffold's order matters to the fold (log events that are
    /// only counted, and messages that could not be decoded, go straight through).
    pub fn ordered(&self) -> bool {
        self.at.is_some() && self.retains()
    }
}

/// What a source hands to the fold, in order.
// Nearly every delivery is a message: boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Subscribed to Skaffold: a new stream begins (Skaffold's replay follows).
    Subscribed {
        /// 1 for the first subscription, +1 per reconnect.
        stream: u64,
    },
    /// A message of the current stream.
    Message(SourceMessage),
    /// The stream paused for the first time: Skaffold's replay has been delivered.
    Paused,
    /// Messages the stream held back for Skaffold's order when it broke (events that
    /// overtook a replay still on its way). They are in Skaffold's log, so a new
    /// stream to the same Skaffold replays them in order: the fold drops them once the
    /// next stream proves to come from the same process, and folds them when Skaffold
    /// turns out gone or replaced.
    HeldBack(Vec<SourceMessage>),
    /// The stream ended (Skaffold closed it, or it failed).
    Ended,
    /// A (re)connect attempt failed: Skaffold is gone, not just a stream.
    Unreachable,
}

impl Delivery {
    /// Received bytes it may keep alive (see [`SourceMessage::keeps`]).
    pub fn keeps(&self) -> u64 {
        match self {
            Delivery::Message(m) => u64::from(m.keeps),
            Delivery::HeldBack(messages) => messages.iter().map(|m| u64::from(m.keeps)).sum(),
            _ => 0,
        }
    }
}

/// Mixed into v2 fingerprints so a v1 and a v2 message can never look alike.
pub const V2_SALT: u64 = 0x5f32_5f32_5f32_5f32;

/// The fingerprint of a message: XXH3 (64 bits) of the bytes as received. Skaffold
/// sends a replayed event with the same bytes as the first time (gRPC: its protobuf
/// encoding; gateway: the same `protojson` output of the same process).
pub fn fingerprint(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// The fingerprint of a v2 message: [`fingerprint`] salted with [`V2_SALT`] (a v1
/// message's is unsalted).
pub fn v2_fingerprint(bytes: &[u8]) -> u64 {
    fingerprint(bytes) ^ V2_SALT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_auto_falls_back_to_v1_and_only_once_and_only_for_a_missing_or_unreadable_v2() {
        use supervisor::StreamError::{Failed, Incompatible, Missing};
        let missing = Missing("UNIMPLEMENTED".into());
        let mut chosen = None;
        assert!(!fall_back_to_v1(
            Api::Auto,
            &mut chosen,
            &Failed("reset".into())
        ));
        assert_eq!(chosen, None);
        assert!(fall_back_to_v1(Api::Auto, &mut chosen, &missing));
        assert_eq!(chosen, Some(Api::V1));
        assert!(!fall_back_to_v1(
            Api::Auto,
            &mut chosen,
            &Incompatible("old".into())
        ));
        let mut fixed = Some(Api::V2);
        assert!(!fall_back_to_v1(Api::V2, &mut fixed, &missing));
        assert_eq!(fixed, Some(Api::V2));
        let mut v2 = Some(Api::V2);
        assert!(fall_back_to_v1(
            Api::Auto,
            &mut v2,
            &Incompatible("old".into())
        ));
        assert_eq!(v2, Some(Api::V1));
    }

    #[test]
    fn deliveries_stay_small_they_are_moved_through_the_ordering_buffer_and_the_queue() {
        let size = std::mem::size_of::<Delivery>();
        assert!(size <= 160, "{size} bytes");
    }
}
