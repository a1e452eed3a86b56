//! Subscribes to Skaffold's `Events` stream over gRPC, API v1
//! (`proto.SkaffoldService`) or v2 (`proto.v2.SkaffoldV2Service`), and keeps
//! subscribing through [`super::supervisor::run`]: Skaffold may not be up yet, may restart,
//! or may exit.
//!
//! Messages are decoded here, in the reader task, so decoding runs beside the fold (a
//! v1 message inside the codec's decoder, where it lies in tonic's buffer; a v2 one
//! from a copy of its raw bytes): the fingerprint for replay de-duplication is the
//! hash of the bytes Skaffold sent, a message our proto cannot decode is counted
//! instead of ending the stream, and v2 log events are skipped before decoding (see
//! [`super::wire`]). A v1 message is read in place
//! (`source::v1_view`), becomes its domain event here and is dropped here: the event's
//! names are copies (see `core::Name`), so nothing the fold reads or frees points into
//! memory this task wrote and still writes.
//!
//! **v2 layout, decided once per stream.** Skaffold v1.22–v1.25 numbered some v2
//! messages differently. Which layout a stream has is decided from what identifies
//! the Skaffold behind it: its MetaEvent (the version in its text, else the shape of
//! its build metadata), which is the first event of Skaffold's log. Messages that
//! arrive before it (live events can overtake the replay) are held until then (at
//! most [`UNDECIDED_MAX`] of them, or a pause of `core::order::WINDOW`; without a
//! MetaEvent the current layout is assumed). The decision holds for the whole stream:
//! in a current-layout stream a message that does not fit is counted as invalid on
//! its own, and never changes how the rest is read.
//!
//! `--api auto` tries v2 first: UNIMPLEMENTED (Skaffold before v1.22) or a stream
//! decided to have the pre-v1.26 layout (before anything of it was folded) switch to
//! v1. The choice is kept for the life of the exporter, so one Skaffold process is
//! never read through both APIs (which would count twice). A v2 stream in the
//! pre-v1.26 layout is not dropped but read to its end (see [`super::supervisor`]).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Buf, BufMut as _, Bytes, BytesMut};
use futures_util::{FutureExt as _, Stream as _};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::transport::{Channel, Endpoint};

use super::limits::MAX_EVENT_BYTES;
use super::supervisor::{ConnectError, Connector, EventStream, StreamError};
use super::wire::{Layout, PeekError, check_v1, check_v2, meta_layout, peek_v2};
use super::{Api, Payload, SourceMessage, fingerprint, v2_fingerprint};
use crate::core::InvalidEvent;
use crate::core::order::WINDOW;
use crate::skaffold::RawCodec;
use crate::source::decode::timestamp_nanos;

/// Largest gRPC message read from Skaffold's stream. Messages over
/// `limits::MAX_EVENT_BYTES` (and up to this) are counted as invalid and the stream
/// goes on; a larger length prefix fails the stream (framing the exporter cannot
/// skip without reading it).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Most bytes of v2 messages held while a stream's layout is undecided.
pub const UNDECIDED_MAX_BYTES: usize = 2 * MAX_EVENT_BYTES;

/// Most v2 messages held while a stream's layout is undecided.
pub const UNDECIDED_MAX: usize = 64;

/// gRPC path of v1 `Events`.
pub const V1_EVENTS: &str = "/proto.SkaffoldService/Events";
/// gRPC path of v2 `Events`.
pub const V2_EVENTS: &str = "/proto.v2.SkaffoldV2Service/Events";

/// Opens `Events` streams on Skaffold's gRPC port.
#[derive(Debug)]
pub struct GrpcConnector {
    addr: String,
    api: Api,
    chosen: Option<Api>,
}

impl GrpcConnector {
    /// A connector for `addr` (`host:port`).
    pub fn new(addr: &str, api: Api) -> Self {
        Self {
            addr: addr.to_owned(),
            api,
            chosen: api.fixed(),
        }
    }

    /// The API in use (`None` while `auto` has not decided yet).
    pub fn chosen(&self) -> Option<Api> {
        self.chosen
    }
}

/// One message of the `Events` stream, as received.
#[derive(Debug, Clone)]
pub enum Frame {
    /// Its bytes.
    Message(Bytes),
    /// A v1 message, decoded where tonic received it (see [`EventDecoder`]).
    Decoded(SourceMessage),
    /// Over `limits::MAX_EVENT_BYTES`: only its size is kept.
    TooBig(usize),
}

/// Messages up to this size are copied into a shared chunk ([`CHUNK_BYTES`]); larger
/// ones into an allocation of their own, of their size.
pub const SHARED_MAX: usize = 1024;

/// Size of the chunks small messages are copied into: what a small message (and the
/// names sliced out of it) may keep alive, and what it counts as keeping.
pub const CHUNK_BYTES: usize = 8 * 1024;

/// Reads an `Events` stream's messages of `api`: v2 ones as raw bytes, v1 ones decoded
/// (both in the reader task, see the module docs); a message over
/// `limits::MAX_EVENT_BYTES` is dropped at once.
#[derive(Debug, Clone, Copy)]
pub struct EventCodec {
    api: Api,
}

impl Codec for EventCodec {
    type Encode = Bytes;
    type Decode = Frame;
    type Encoder = RawCodec;
    type Decoder = EventDecoder;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> EventDecoder {
        EventDecoder::for_api(self.api)
    }
}

/// Copies each v2 message out of tonic's receive buffer, so that what a decoded v2
/// event keeps alive (its message: its lean payload's strings are slices of it) is
/// known: its own bytes, and for a small message at most one [`CHUNK_BYTES`] chunk
/// shared with its neighbours. Sliced out of tonic's buffer instead, a small event
/// received right after a large message could keep that message's whole buffer
/// alive, and events leave the ordering buffer out of arrival order.
///
/// A v1 message is neither copied nor sliced: it is read in place in tonic's buffer
/// into its domain event, which owns copies of its names ([`decode_v1_raw`]), so
/// nothing keeps tonic's buffer, which is reused for the whole stream.
#[derive(Debug)]
pub struct EventDecoder {
    /// Where small messages are copied; each is split off as it is complete.
    chunk: BytesMut,
    /// Whether messages are v1 ones, decoded in place.
    v1: bool,
}

impl EventDecoder {
    /// A decoder for the messages of `api`.
    pub fn for_api(api: Api) -> Self {
        Self {
            chunk: BytesMut::new(),
            v1: api == Api::V1,
        }
    }

    /// The next `n` bytes of `src` (one message) as a frame.
    fn frame(&mut self, src: &mut impl Buf, n: usize) -> Frame {
        if n > MAX_EVENT_BYTES {
            src.advance(n);
            return Frame::TooBig(n);
        }
        if self.v1 {
            // tonic's buffer is contiguous: the message is in its first chunk.
            if src.chunk().len() >= n {
                let m = decode_v1_raw(&src.chunk()[..n]);
                src.advance(n);
                return Frame::Decoded(m);
            }
            return Frame::Decoded(decode_v1_raw(&src.copy_to_bytes(n)));
        }
        let message = src.take(n);
        if n > SHARED_MAX {
            let mut own = BytesMut::with_capacity(n);
            own.put(message);
            return Frame::Message(own.freeze());
        }
        if self.chunk.capacity() - self.chunk.len() < n {
            self.chunk = BytesMut::with_capacity(CHUNK_BYTES);
        }
        self.chunk.put(message);
        Frame::Message(self.chunk.split().freeze())
    }
}

impl Decoder for EventDecoder {
    type Item = Frame;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Frame>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(self.frame(src, n)))
    }
}

async fn open(channel: Channel, api: Api) -> Result<tonic::Streaming<Frame>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_FRAME_BYTES);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = if api == Api::V1 { V1_EVENTS } else { V2_EVENTS };
    // The request is google.protobuf.Empty: zero bytes.
    let req = tonic::Request::new(Bytes::new());
    Ok(grpc
        .server_streaming(req, PathAndQuery::from_static(path), EventCodec { api })
        .await?
        .into_inner())
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl Connector for GrpcConnector {
    type Stream = GrpcStream;

    fn target(&self) -> String {
        format!("grpc://{} (api {})", self.addr, self.api.as_str())
    }

    async fn connect(&mut self) -> Result<GrpcStream, ConnectError> {
        let unreachable = ConnectError::Unreachable;
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // No HTTP/2 keep-alive pings: grpc-go servers (Skaffold) answer pings more
            // frequent than every 5 minutes with GOAWAY, which would cut the stream.
            .connect()
            .await
            .map_err(|e| {
                unreachable(format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                ))
            })?;
        let api = self.chosen.unwrap_or(Api::V2);
        match open(channel.clone(), api).await {
            Ok(inner) => {
                if self.chosen.is_none() {
                    tracing::info!(addr = %self.addr, "Skaffold offers event API v2; using it (--api auto).");
                    self.chosen = Some(api);
                }
                Ok(GrpcStream::new(inner, api))
            }
            Err(status) if status.code() == tonic::Code::Unimplemented && api == Api::V2 => {
                if self.api == Api::V2 {
                    return Err(ConnectError::ApiMissing(format!(
                        "Skaffold at {} does not offer event API v2 ({}; Skaffold older than v1.22?): use --api v1 or --api auto",
                        self.addr,
                        describe(&status)
                    )));
                }
                tracing::info!(addr = %self.addr, "Skaffold does not offer event API v2 (older than v1.22); using v1 (--api auto).");
                self.chosen = Some(Api::V1);
                let inner = open(channel, Api::V1)
                    .await
                    .map_err(|s| unreachable(describe(&s)))?;
                Ok(GrpcStream::new(inner, Api::V1))
            }
            Err(status) => Err(unreachable(describe(&status))),
        }
    }

    fn stream_failed(&mut self, err: &StreamError) -> bool {
        let switched = super::fall_back_to_v1(self.api, &mut self.chosen, err);
        if switched {
            tracing::warn!(addr = %self.addr, "Falling back to event API v1 (--api auto).");
        }
        switched
    }
}

/// An open `Events` stream, v1 or v2.
#[derive(Debug)]
pub struct GrpcStream {
    inner: tonic::Streaming<Frame>,
    api: Api,
    layout: LayoutState,
    /// Messages received while the layout was undecided, in order.
    held: VecDeque<Frame>,
    /// Their bytes.
    held_bytes: usize,
    /// How the stream ended, when it did while messages were still held.
    end: Option<Result<(), StreamError>>,
}

/// Where a v2 stream's layout decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayoutState {
    Undecided,
    Current,
    Old,
}

impl GrpcStream {
    fn new(inner: tonic::Streaming<Frame>, api: Api) -> Self {
        Self {
            inner,
            api,
            layout: if api == Api::V1 {
                LayoutState::Current
            } else {
                LayoutState::Undecided
            },
            held: VecDeque::new(),
            held_bytes: 0,
            end: None,
        }
    }

    async fn message(&mut self) -> Result<Option<Frame>, StreamError> {
        self.inner
            .message()
            .await
            .map_err(|status| StreamError::Failed(describe(&status)))
    }

    /// Reads until the layout is decided; `Err` when it is the pre-v1.26 one.
    async fn decide(&mut self) -> Result<(), StreamError> {
        while self.layout == LayoutState::Undecided {
            let next = if self.held.is_empty() {
                self.message().await
            } else {
                match tokio::time::timeout(WINDOW, self.message()).await {
                    Ok(r) => r,
                    // A pause without a MetaEvent: nothing identifies the stream.
                    Err(_) => {
                        self.layout = LayoutState::Current;
                        break;
                    }
                }
            };
            let frame = match next {
                Ok(Some(f)) => f,
                end => {
                    self.layout = LayoutState::Current;
                    self.end = Some(end.map(|_| ()));
                    break;
                }
            };
            let layout = match &frame {
                Frame::Message(bytes) => {
                    self.held_bytes += bytes.len();
                    meta_layout(bytes)
                }
                Frame::TooBig(_) | Frame::Decoded(_) => None,
            };
            match layout {
                Some(Layout::Old(why)) => {
                    self.layout = LayoutState::Old;
                    return Err(StreamError::Incompatible(
                        PeekError::OldLayout(why).to_string(),
                    ));
                }
                Some(Layout::Current) => self.layout = LayoutState::Current,
                None if self.held.len() + 1 >= UNDECIDED_MAX
                    || self.held_bytes > UNDECIDED_MAX_BYTES =>
                {
                    self.layout = LayoutState::Current;
                }
                None => {}
            }
            self.held.push_back(frame);
        }
        Ok(())
    }
}

/// A received message of `api`'s stream (of the current layout, for v2), decoded. A
/// decoded v2 message of at most [`SHARED_MAX`] bytes keeps its chunk alive: it
/// counts as keeping [`CHUNK_BYTES`]. A v1 message is dropped where it was decoded:
/// its event keeps only copies of parts of it (see [`decode_raw`]).
fn decode_frame(api: Api, frame: Frame) -> SourceMessage {
    match frame {
        Frame::Message(bytes) if api != Api::V1 && bytes.len() <= SHARED_MAX => {
            decode_raw(api, bytes).keeping(CHUNK_BYTES)
        }
        Frame::Message(bytes) => decode_raw(api, bytes),
        Frame::Decoded(m) => m,
        Frame::TooBig(n) => SourceMessage::new(
            0,
            Payload::Invalid(InvalidEvent::Undecodable(format!(
                "message too large: {}",
                super::limits::TooBig::Bytes(n, MAX_EVENT_BYTES)
            ))),
        ),
    }
}

/// [`decode_raw`] for a v1 message, read where it lies: v1 needs no per-run state to
/// decode, so it becomes its domain event here.
pub fn decode_v1_raw(bytes: &[u8]) -> SourceMessage {
    let payload = match check_v1(bytes) {
        Err(e) => too_big(e),
        Ok(()) => Payload::decoded_v1_bytes(bytes),
    };
    SourceMessage::new(fingerprint(bytes), payload).keeping(bytes.len())
}

fn too_big(e: super::limits::TooBig) -> Payload {
    Payload::Invalid(InvalidEvent::Undecodable(format!("message too large: {e}")))
}

/// Decodes one raw message of `api`'s stream (of the current layout, for v2). A v1
/// entry is read in place (`source::v1_view`: its strings are views of `bytes`) into
/// its domain event (names copied, see `core::Name`) and the message is dropped here.
/// A v2 event is decoded into its lean message (`proto/lean/`: its strings are slices
/// of `bytes`, not copies) and handed on; taking the message by value, not a clone,
/// saves a reference count increment and decrement per message on the chunk it shares
/// with its neighbours (see [`EventDecoder`]).
pub fn decode_raw(api: Api, bytes: Bytes) -> SourceMessage {
    if api == Api::V1 {
        return decode_v1_raw(&bytes);
    }
    let len = bytes.len();
    let fingerprint = v2_fingerprint(&bytes);
    let (at, payload) = match peek_v2(&bytes) {
        Ok(super::wire::Peek::SkipLog(kind)) => (None, Payload::SkippedLog(kind)),
        Ok(super::wire::Peek::Decode) => {
            match check_v2(&bytes).map(|()| super::spare::decode(bytes)) {
                Err(e) => (None, too_big(e)),
                Ok(Ok(ev)) => (timestamp_nanos(ev.timestamp.as_ref()).ok(), Payload::V2(ev)),
                Ok(Err(e)) => (
                    None,
                    Payload::Invalid(InvalidEvent::Undecodable(e.to_string())),
                ),
            }
        }
        Err(e) => (
            None,
            Payload::Invalid(InvalidEvent::Undecodable(e.to_string())),
        ),
    };
    SourceMessage {
        fingerprint,
        at,
        keeps: 0,
        payload,
    }
    .keeping(len)
}

impl EventStream for GrpcStream {
    async fn next(&mut self) -> Result<Option<SourceMessage>, StreamError> {
        self.decide().await?;
        let frame = match self.held.pop_front() {
            Some(f) => f,
            None => match self.end.take() {
                Some(end) => return end.map(|()| None),
                None => match self.message().await? {
                    Some(b) => b,
                    None => return Ok(None),
                },
            },
        };
        if self.layout == LayoutState::Old {
            // Only counted (see `supervisor::drain`).
            return Ok(Some(SourceMessage::new(
                0,
                Payload::Invalid(InvalidEvent::Undecodable("pre-v1.26 layout".into())),
            )));
        }
        Ok(Some(decode_frame(self.api, frame)))
    }

    /// Polls the stream once, without a future around it: `next` is an async fn whose
    /// state (200 bytes) was built and moved for every message of a burst.
    fn ready(&mut self) -> Option<Result<Option<SourceMessage>, StreamError>> {
        if self.layout != LayoutState::Current || !self.held.is_empty() || self.end.is_some() {
            return self.next().now_or_never();
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut self.inner).poll_next(&mut cx) {
            std::task::Poll::Pending => None,
            std::task::Poll::Ready(None) => Some(Ok(None)),
            std::task::Poll::Ready(Some(Err(status))) => {
                Some(Err(StreamError::Failed(describe(&status))))
            }
            std::task::Poll::Ready(Some(Ok(frame))) => {
                Some(Ok(Some(decode_frame(self.api, frame))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::simulator::scenario::Script;

    /// Frames `messages` one by one, as tonic hands them to the decoder.
    fn decode_all(messages: &[&[u8]]) -> Vec<Bytes> {
        let mut d = EventDecoder::for_api(Api::V2);
        messages
            .iter()
            .map(|m| {
                let mut src: &[u8] = m;
                match d.frame(&mut src, m.len()) {
                    Frame::Message(b) => b,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn messages_are_copied_out_small_ones_into_shared_chunks_large_ones_on_their_own() {
        let small = [7u8; 100];
        let large = vec![9u8; SHARED_MAX + 1];
        let got = decode_all(&[&small, &small, &large, &small]);
        assert_eq!(got[0].as_ref(), small);
        assert_eq!(got[2].as_ref(), large.as_slice());
        // Consecutive small messages share a chunk; a large one does not.
        let gap = got[1].as_ptr() as usize - got[0].as_ptr() as usize;
        assert_eq!(gap, small.len());
        let chunk = got[0].as_ptr() as usize..got[0].as_ptr() as usize + CHUNK_BYTES;
        assert!(!chunk.contains(&(got[2].as_ptr() as usize)));
        assert!(chunk.contains(&(got[3].as_ptr() as usize)));
        // A full chunk is left to its messages; the next one starts a new chunk.
        let many: Vec<&[u8]> = vec![&small; CHUNK_BYTES / small.len() + 1];
        let got = decode_all(&many);
        let first = got[0].as_ptr() as usize;
        assert!(got.iter().all(|b| b.as_ref() == small));
        assert!(!(first..first + CHUNK_BYTES).contains(&(got[got.len() - 1].as_ptr() as usize)));
    }

    #[test]
    fn v2_messages_are_copies_never_slices_of_the_receive_buffer_whatever_their_size() {
        let mut d = EventDecoder::for_api(Api::V2);
        for n in [0, 1, SHARED_MAX, SHARED_MAX + 1, MAX_EVENT_BYTES] {
            // What tonic hands over: a view of its own buffer.
            let mut tonics = BytesMut::from(vec![n as u8; n + 3].as_slice());
            let range = tonics.as_ptr() as usize..tonics.as_ptr() as usize + n + 3;
            let frame = d.frame(&mut tonics, n);
            let Frame::Message(b) = frame else {
                panic!("{n} bytes: {frame:?}");
            };
            assert_eq!(b.len(), n);
            assert!(b.iter().all(|&x| x == n as u8));
            assert!(
                n == 0 || !range.contains(&(b.as_ptr() as usize)),
                "{n} bytes: a slice"
            );
            assert_eq!(tonics.len(), 3, "{n} bytes taken, no more");
        }
    }

    #[test]
    fn v1_messages_are_decoded_in_the_receive_buffer() {
        let mut d = EventDecoder::for_api(Api::V1);
        let entry = Script::new()
            .dev_loop(0, 0, "In Progress")
            .entries(1_700_000_000_000_000_000)
            .remove(0)
            .encode_to_vec();
        for junk in [vec![], vec![0xff; SHARED_MAX + 1]] {
            let message = [entry.as_slice(), &junk].concat();
            let n = message.len();
            let mut tonics = BytesMut::from([message.as_slice(), b"abc"].concat().as_slice());
            let Frame::Decoded(m) = d.frame(&mut tonics, n) else {
                panic!("{n} bytes");
            };
            assert_eq!(
                m,
                decode_raw(Api::V1, Bytes::from(message.clone())),
                "as decode_raw"
            );
            assert_eq!(matches!(m.payload, Payload::Invalid(_)), !junk.is_empty());
            assert_eq!(tonics.as_ref(), b"abc", "{n} bytes taken, no more");
            // A buffer in pieces (tonic's is contiguous): the message is copied out
            // first, with the same result.
            let (head, tail) = message.split_at(n / 2);
            let tail = [tail, b"abc"].concat();
            let mut pieces = head.chain(tail.as_slice());
            let Frame::Decoded(copied) = d.frame(&mut pieces, n) else {
                panic!("{n} bytes in pieces");
            };
            assert_eq!(copied, m);
            assert_eq!(pieces.remaining(), 3, "{n} bytes taken, no more");
        }
        let mut over = BytesMut::from(vec![0u8; MAX_EVENT_BYTES + 1].as_slice());
        assert!(matches!(
            d.frame(&mut over, MAX_EVENT_BYTES + 1),
            Frame::TooBig(_)
        ));
    }

    #[test]
    fn a_small_v2_event_keeps_its_chunk_a_large_one_and_any_v1_event_its_size() {
        let v1 = |err: usize| {
            let mut e = Script::new()
                .dev_loop(0, 0, "In Progress")
                .entries(1_700_000_000_000_000_000)
                .remove(0);
            e.entry = "x".repeat(err);
            Bytes::from(e.encode_to_vec())
        };
        let v2 = |n: usize| {
            use crate::pb::v2;
            let e = v2::Event {
                timestamp: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                event_type: Some(v2::event::EventType::BuildSubtaskEvent(
                    v2::BuildSubtaskEvent {
                        id: "x".repeat(n),
                        task_id: "Build-1".into(),
                        artifact: "web".into(),
                        step: "Build".into(),
                        status: "InProgress".into(),
                        ..Default::default()
                    },
                )),
            };
            Bytes::from(e.encode_to_vec())
        };
        // v2: decoded in the fold from a view of the message, which a small one shares
        // with its neighbours in a chunk.
        let small = v2(10);
        let m = decode_frame(Api::V2, Frame::Message(small.clone()));
        assert!(small.len() <= SHARED_MAX);
        assert!(m.retains(), "{m:?}");
        assert_eq!(m.keeps as usize, CHUNK_BYTES);
        let large = v2(2 * CHUNK_BYTES);
        let m = decode_frame(Api::V2, Frame::Message(large.clone()));
        assert_eq!(m.keeps as usize, large.len());
        // v1: decoded where it lies in the receive buffer, as tonic hands it over; its
        // event owns copies of parts of it, no more than its size.
        let mut d = EventDecoder::for_api(Api::V1);
        let mut v1_frame = |message: &[u8]| {
            let mut src = BytesMut::from(message);
            decode_frame(Api::V1, d.frame(&mut src, message.len()))
        };
        for message in [v1(10), v1(2 * CHUNK_BYTES)] {
            let m = v1_frame(&message);
            assert!(m.retains(), "{m:?}");
            assert_eq!(m.keeps as usize, message.len());
        }
        let junk = v1_frame(b"\xff");
        assert_eq!(junk.keeps, 0, "undecodable: keeps nothing");
        assert_eq!(decode_frame(Api::V1, Frame::TooBig(5 << 20)).keeps, 0);
    }

    #[test]
    fn a_message_over_the_limit_is_skipped_with_its_size() {
        let mut d = EventDecoder::for_api(Api::V2);
        let big = vec![0u8; MAX_EVENT_BYTES + 1];
        let mut src: &[u8] = &big;
        assert!(matches!(
            d.frame(&mut src, big.len()),
            Frame::TooBig(n) if n == MAX_EVENT_BYTES + 1
        ));
        assert!(src.is_empty(), "skipped");
    }
}
