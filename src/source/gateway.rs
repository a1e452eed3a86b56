//! Subscribes to Skaffold's events through its HTTP gateway (`skaffold dev
//! --rpc-http-port 50052`, `--skaffold-http http://127.0.0.1:50052`), for setups where
//! only the gateway is reachable.
//!
//! `GET /v2/events` (or `/v1/events`) answers with newline-delimited JSON, one
//! `{"result": <message>}` per event, flushed per message; proto field names
//! (`task_id` stays snake_case), RFC 3339 timestamps, enums by name, zero values
//! omitted or emitted depending on the Skaffold version. A mid-stream error arrives as
//! a final `{"error": ...}` chunk, in either gateway shape (`grpc_code`/`http_code`
//! before Skaffold v1.33, a `google.rpc.Status` after): it ends the stream, and the
//! supervisor reconnects with the same backoff; Skaffold replays its log, which the
//! fold de-duplicates exactly as for gRPC: the fingerprint is the hash of the line as
//! received. Skaffold's gateway marshals every message with `protojson` (sorted map
//! keys, field order, whitespace fixed per Skaffold binary), so a replayed event comes
//! as the same bytes within one Skaffold process; a new process starts a new set.
//!
//! `--api auto` asks for `/v2/events` first; a 404/501, or an UNIMPLEMENTED error as the
//! first chunk, switches to `/v1/events` for good. Over JSON the v1.22–v1.25 v2 layout
//! decodes fine (only field numbers changed), so v2 works from Skaffold v1.22 here.

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::json::{GatewayChunk, parse_gateway_chunk, parse_json, payload_from_json};
use super::limits::{MAX_JSON_BYTES, TooBig};
use super::supervisor::{ConnectError, Connector, EventStream, StreamError};
use super::{Api, Payload, SourceMessage, fingerprint, v2_fingerprint};
use crate::core::InvalidEvent;
use crate::skaffold::gateway::{GatewayClient, RequestError};

/// gRPC code UNIMPLEMENTED, as a gateway error chunk carries it.
const UNIMPLEMENTED: i64 = 12;

/// Opens `/v1/events` or `/v2/events` streams.
#[derive(Debug)]
pub struct GatewayConnector {
    client: GatewayClient,
    api: Api,
    chosen: Option<Api>,
}

impl GatewayConnector {
    /// A connector using `client`.
    pub fn new(client: GatewayClient, api: Api) -> Self {
        Self {
            client,
            api,
            chosen: api.fixed(),
        }
    }

    async fn open(&self, api: Api) -> Result<http::Response<Incoming>, RequestError> {
        let path = if api == Api::V1 {
            "/v1/events"
        } else {
            "/v2/events"
        };
        self.client.get(path).await
    }
}

impl Connector for GatewayConnector {
    type Stream = GatewayStream;

    fn target(&self) -> String {
        format!("{} (api {})", self.client.base(), self.api.as_str())
    }

    async fn connect(&mut self) -> Result<GatewayStream, ConnectError> {
        let api = self.chosen.unwrap_or(Api::V2);
        let mut resp = self
            .open(api)
            .await
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        let mut api = api;
        let missing = matches!(
            resp.status(),
            StatusCode::NOT_FOUND | StatusCode::NOT_IMPLEMENTED
        );
        if missing && api == Api::V2 {
            if self.api == Api::V2 {
                return Err(ConnectError::ApiMissing(format!(
                    "Skaffold's gateway has no /v2/events (HTTP {}; Skaffold older than v1.22?): use --api v1 or --api auto",
                    resp.status()
                )));
            }
            tracing::info!(gateway = %self.client.base(), "Skaffold's gateway has no /v2/events (older than v1.22); using /v1/events (--api auto).");
            self.chosen = Some(Api::V1);
            api = Api::V1;
            resp = self
                .open(api)
                .await
                .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        }
        if resp.status() != StatusCode::OK {
            return Err(ConnectError::Unreachable(format!(
                "GET events: HTTP {}",
                resp.status()
            )));
        }
        if self.chosen.is_none() {
            tracing::info!(gateway = %self.client.base(), "Skaffold's gateway offers /v2/events; using it (--api auto).");
            self.chosen = Some(api);
        }
        Ok(GatewayStream {
            body: resp.into_body(),
            buf: LineBuffer::default(),
            api,
            first: true,
            done: false,
            skipping: None,
            skipped: None,
        })
    }

    fn stream_failed(&mut self, err: &StreamError) -> bool {
        let switched = super::fall_back_to_v1(self.api, &mut self.chosen, err);
        if switched {
            tracing::warn!(gateway = %self.client.base(), "Falling back to /v1/events (--api auto).");
        }
        switched
    }
}

/// Bytes received but not yet split into lines. Remembers how far it has looked for
/// a newline, so a long line arriving in many frames is scanned once, not once per
/// frame.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: BytesMut,
    /// `buf[..scanned]` holds no newline.
    scanned: usize,
}

impl LineBuffer {
    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (with its `\n`), if one has arrived.
    pub fn take_line(&mut self) -> Option<Bytes> {
        match self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
            Some(i) => {
                let end = self.scanned + i + 1;
                self.scanned = 0;
                Some(self.buf.split_to(end).freeze())
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Everything left (the last line when the stream ended without a newline).
    pub fn take_rest(&mut self) -> BytesMut {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How far the buffer has been searched for a newline.
    pub fn scanned(&self) -> usize {
        self.scanned
    }
}

/// An open newline-delimited JSON event stream.
#[derive(Debug)]
pub struct GatewayStream {
    body: Incoming,
    buf: LineBuffer,
    api: Api,
    first: bool,
    done: bool,
    /// Bytes of a line over `limits::MAX_JSON_BYTES` dropped so far (its end not yet
    /// received).
    skipping: Option<usize>,
    /// A line over the limit ended: its size, to report before the lines after it.
    skipped: Option<usize>,
}

/// Decodes one line of a gateway stream of `api`; `Ok(None)` for a blank line.
/// `first` says whether it is the stream's first chunk (an UNIMPLEMENTED error there
/// means the API is missing, not that the stream broke).
pub fn decode_line(
    api: Api,
    line: &[u8],
    first: bool,
) -> Result<Option<SourceMessage>, StreamError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    let fp = if api == Api::V1 {
        fingerprint(line)
    } else {
        v2_fingerprint(line)
    };
    let invalid = |e: InvalidEvent| Ok(Some(SourceMessage::new(fp, Payload::Invalid(e))));
    let value: Value = match parse_json(line) {
        Ok(v) => v,
        Err(InvalidEvent::Undecodable(e)) => {
            return invalid(InvalidEvent::Undecodable(format!("gateway chunk: {e}")));
        }
        Err(e) => return invalid(e),
    };
    match parse_gateway_chunk(value) {
        Ok(GatewayChunk::Result(v)) => Ok(Some(
            SourceMessage::new(fp, payload_from_json(api, v).digest()).keeping(line.len()),
        )),
        Ok(GatewayChunk::Error { code, message }) => {
            let text = format!(
                "the gateway ended the stream with an error chunk (gRPC code {code}): {message}"
            );
            if first && code == UNIMPLEMENTED && api == Api::V2 {
                Err(StreamError::Missing(text))
            } else {
                Err(StreamError::Failed(text))
            }
        }
        Err(e) => invalid(e),
    }
}

impl GatewayStream {
    fn decode(&mut self, line: &[u8]) -> Result<Option<SourceMessage>, StreamError> {
        let r = decode_line(self.api, line, self.first);
        if matches!(r, Ok(Some(_)) | Err(_)) {
            self.first = false;
        }
        r
    }
}

impl EventStream for GatewayStream {
    async fn next(&mut self) -> Result<Option<SourceMessage>, StreamError> {
        loop {
            if let Some(n) = self.skipped.take() {
                // Counted, and the stream goes on.
                return Ok(Some(SourceMessage::new(
                    0,
                    Payload::Invalid(InvalidEvent::Undecodable(format!(
                        "gateway chunk too large: {}",
                        TooBig::Bytes(n, MAX_JSON_BYTES)
                    ))),
                )));
            }
            while let Some(line) = self.buf.take_line() {
                if let Some(r) = self.decode(&line)? {
                    return Ok(Some(r));
                }
            }
            if self.done {
                if let Some(n) = self.skipping.take() {
                    self.skipped = Some(n);
                    continue;
                }
                let rest = self.buf.take_rest();
                return match self.decode(&rest)? {
                    Some(r) => Ok(Some(r)),
                    None => Ok(None),
                };
            }
            if self.skipping.is_none() && self.buf.len() > MAX_JSON_BYTES {
                // Too long to decode: dropped up to its newline, never held.
                self.skipping = Some(self.buf.take_rest().len());
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            match self.skipping {
                                Some(skipped) => match chunk.iter().position(|b| *b == b'\n') {
                                    Some(i) => {
                                        self.skipping = None;
                                        self.skipped = Some(skipped + i + 1);
                                        self.buf.extend(&chunk[i + 1..]);
                                    }
                                    None => self.skipping = Some(skipped + n),
                                },
                                None => self.buf.extend(chunk),
                            }
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    return Err(StreamError::Failed(format!(
                        "reading the gateway stream: {e}"
                    )));
                }
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chunks_of_both_gateway_shapes_end_the_stream() {
        let v1 = br#"{"error":{"grpc_code":13,"http_code":500,"message":"transport: the stream is done","http_status":"Internal Server Error","details":[]}}"#;
        let v2 = br#"{"error":{"code":14,"message":"gone","details":[]}}"#;
        assert!(matches!(
            decode_line(Api::V2, v1, false),
            Err(StreamError::Failed(m)) if m.contains("code 13")
        ));
        assert!(matches!(
            decode_line(Api::V1, v2, true),
            Err(StreamError::Failed(m)) if m.contains("gone")
        ));
        let unimplemented =
            br#"{"error":{"code":12,"message":"unknown service proto.v2.SkaffoldV2Service"}}"#;
        assert!(matches!(
            decode_line(Api::V2, unimplemented, true),
            Err(StreamError::Missing(_))
        ));
    }

    #[test]
    fn the_fingerprint_is_the_hash_of_the_line_as_received() {
        let a = br#"{"result":{"timestamp":"2021-04-07T17:50:08.970854Z","taskEvent":{"id":"DevLoop-0","task":"DevLoop","iteration":0,"status":"InProgress","actionableErr":null}}}"#;
        let fa = decode_line(Api::V2, a, true).unwrap().unwrap();
        // Replayed by the same gateway: the same bytes (line ends aside).
        let again = [&a[..], b"\r\n"].concat();
        let fb = decode_line(Api::V2, &again, false).unwrap().unwrap();
        assert_eq!(fa.fingerprint, fb.fingerprint);
        assert_eq!(fa.fingerprint, v2_fingerprint(a));
        assert_eq!(fa.at, Some(1_617_817_808_970_854_000));
        assert!(matches!(fa.payload, Payload::V2(_)));
        // The same bytes over v1 never match a v2 message.
        let v1 = decode_line(Api::V1, a, true).unwrap().unwrap();
        assert_ne!(v1.fingerprint, fa.fingerprint);
        let b = br#"{"result": {"taskEvent": {"task":"DevLoop","id":"DevLoop-0","status":"InProgress","iteration":1,"actionableErr":null}, "timestamp":"2021-04-07T17:50:08.970854Z"}}"#;
        let fb = decode_line(Api::V2, b, true).unwrap().unwrap();
        assert_ne!(fa.fingerprint, fb.fingerprint);
        assert_eq!(decode_line(Api::V2, b"  \r", false), Ok(None));
        assert!(matches!(
            decode_line(Api::V2, b"{not json", false),
            Ok(Some(SourceMessage {
                payload: Payload::Invalid(_),
                ..
            }))
        ));
    }

    #[test]
    fn lines_split_across_frames_come_out_whole_and_are_scanned_once() {
        let mut b = LineBuffer::default();
        assert_eq!(b.take_line(), None);
        // One line in three frames, then two lines and half of a third in one frame.
        b.extend(b"{\"result\":");
        assert_eq!(b.take_line(), None);
        assert_eq!(b.scanned(), 10);
        b.extend(b"{\"a\":1}");
        assert_eq!(b.take_line(), None);
        assert_eq!(b.scanned(), 17, "only the new bytes are searched");
        b.extend(b"}\n{\"x\":2}\r\n{\"y\"");
        assert_eq!(
            b.take_line().as_deref(),
            Some(&b"{\"result\":{\"a\":1}}\n"[..])
        );
        assert_eq!(b.scanned(), 0);
        assert_eq!(b.take_line().as_deref(), Some(&b"{\"x\":2}\r\n"[..]));
        assert_eq!(b.take_line(), None);
        assert_eq!(b.scanned(), 4);
        // A newline as the very first byte of a frame.
        b.extend(b":3}");
        assert_eq!(b.take_line(), None);
        b.extend(b"\n\n");
        assert_eq!(b.take_line().as_deref(), Some(&b"{\"y\":3}\n"[..]));
        assert_eq!(b.take_line().as_deref(), Some(&b"\n"[..]));
        assert!(b.is_empty());
        // The stream ends without a newline: the rest is the last line.
        b.extend(b"{\"z\"");
        assert_eq!(b.take_line(), None);
        b.extend(b":4}");
        assert_eq!(b.take_line(), None);
        assert_eq!(b.len(), 7);
        assert_eq!(&b.take_rest()[..], b"{\"z\":4}");
        assert_eq!((b.len(), b.scanned()), (0, 0));
    }
}
