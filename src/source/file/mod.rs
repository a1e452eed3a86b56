//! Event log files and HTTP-gateway captures, record by record.
//!
//! What `skaffold-exporter replay` reads, detected per input and per record:
//!
//! - `--event-log-file` output (Skaffold v1.18+, written at exit, appended across
//!   runs): JSON Lines of bare v1 `LogEntry`s; since v1.32 also `<file>.v2` with bare
//!   v2 `Event`s (lowerCamel names such as `taskId`).
//! - HTTP-gateway captures: `{"result": ...}` lines (an `{"error": ...}` line is where
//!   the stream broke), a JSON array of such chunks or of bare messages, or a
//!   document with a `records` array (the captured fixtures' layout).
//!
//! A bare message is v1 when it nests its event under `event` (`LogEntry`), v2 when
//! a v2 oneof member sits at the top level; a `.v2` file name is used as the hint
//! when a record shows neither. `State` snapshots found among the records (captures
//! of `/v1/state`) are reported and not folded.
//!
//! [`input`] opens the inputs (files, stdin) and reads them record by record, with
//! `--follow`.

pub mod input;

use std::io::{self, BufRead};

use serde::Deserializer as _;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::json::{GatewayChunk, detect_api, parse_gateway_chunk, parse_json, payload_from_json};
use super::limits::{MAX_JSON_BYTES, TooBig};
use super::{Api, Payload};
use crate::core::InvalidEvent;

/// One record of an input.
// Items are handed over one at a time, never stored in bulk: no need to box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A message to fold (`Payload::Invalid` when it could not be decoded).
    Message {
        /// Which API it belongs to.
        api: Api,
        /// The message.
        payload: Payload,
    },
    /// A gateway error chunk: the captured stream ended here.
    StreamEnded {
        /// gRPC code.
        code: i64,
        /// Message.
        message: String,
    },
    /// A record that is not an event (e.g. a `/v1/state` snapshot).
    NotAnEvent(&'static str),
}

const STATE_KEYS: [&str; 6] = [
    "buildState",
    "deployState",
    "forwardedPorts",
    "statusCheckState",
    "fileSyncState",
    "testState",
];

/// Classifies one JSON record; `hint` is the API of the input when known (`.v2`).
pub fn item_from_value(value: Value, hint: Option<Api>) -> Item {
    let value = match &value {
        Value::Object(o) if o.contains_key("result") || o.contains_key("error") => {
            match parse_gateway_chunk(value) {
                Ok(GatewayChunk::Result(v)) => v,
                Ok(GatewayChunk::Error { code, message }) => {
                    return Item::StreamEnded { code, message };
                }
                Err(e) => {
                    return Item::Message {
                        api: hint.unwrap_or(Api::V1),
                        payload: Payload::Invalid(e),
                    };
                }
            }
        }
        _ => value,
    };
    let Value::Object(obj) = &value else {
        return Item::Message {
            api: hint.unwrap_or(Api::V1),
            payload: Payload::Invalid(InvalidEvent::Undecodable(
                "record is not a JSON object".into(),
            )),
        };
    };
    let api = match detect_api(&value).or(hint) {
        Some(api) => api,
        None if STATE_KEYS.iter().any(|k| obj.contains_key(*k)) => {
            return Item::NotAnEvent("a Skaffold State snapshot (GET /v1/state), not an event");
        }
        None => {
            return Item::Message {
                api: Api::V1,
                payload: Payload::Invalid(InvalidEvent::Undecodable(
                    "neither a v1 LogEntry (no \"event\") nor a v2 Event (no event member)".into(),
                )),
            };
        }
    };
    Item::Message {
        api,
        payload: payload_from_json(api, value),
    }
}

/// Parses one JSON line; `None` for a blank line.
pub fn item_from_line(line: &str, hint: Option<Api>) -> Option<Item> {
    item_from_bytes(line.as_bytes(), hint)
}

/// Parses one JSON line or record as read (bytes: invalid UTF-8 is a malformed
/// record, not the end of the input); `None` for a blank line. A record over the
/// limits of `source::limits` is malformed without being parsed.
pub fn item_from_bytes(line: &[u8], hint: Option<Api>) -> Option<Item> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return None;
    }
    Some(match parse_json(line) {
        Ok(v) => item_from_value(v, hint),
        Err(e) => malformed(hint, e),
    })
}

/// A record that could not be read.
pub fn malformed(hint: Option<Api>, e: InvalidEvent) -> Item {
    Item::Message {
        api: hint.unwrap_or(Api::V1),
        payload: Payload::Invalid(e),
    }
}

/// A line over [`MAX_JSON_BYTES`], skipped unread.
pub fn oversize_line(hint: Option<Api>, bytes: u64) -> Item {
    let n = usize::try_from(bytes).unwrap_or(usize::MAX);
    malformed(
        hint,
        InvalidEvent::Undecodable(format!(
            "line too long: {}",
            TooBig::Bytes(n, MAX_JSON_BYTES)
        )),
    )
}

/// What [`LineReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A whole line (with its newline) was appended to the buffer.
    Line,
    /// A line longer than the reader's limit ended: it was dropped as it was read
    /// (its size in bytes); the buffer is empty.
    TooLong(u64),
    /// No more bytes for now: the buffer holds the start of a line, if any (at the
    /// end of the input, its last line without a newline).
    End,
}

/// Reads lines of at most `max` bytes: a longer line is dropped as it is read, up to
/// its newline, so memory stays bounded whatever the input (`/dev/zero`). Lines are
/// bytes: whether they are UTF-8 is for the parser to say, line by line.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max: usize,
    /// Bytes of an over-long line dropped so far.
    skipping: Option<u64>,
}

impl<R: BufRead> LineReader<R> {
    /// A reader of lines of at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            skipping: None,
        }
    }

    /// Appends the rest of the current line to `buf` (see [`Read`]). Call again after
    /// `End` to go on when the input grows (`--follow`).
    pub fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<Read> {
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                return Ok(Read::End);
            }
            let (n, done) = match avail.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            match self.skipping.as_mut() {
                Some(skipped) => *skipped += n as u64,
                None if buf.len() + n > self.max => {
                    self.skipping = Some((buf.len() + n) as u64);
                    buf.clear();
                }
                None => buf.extend_from_slice(&avail[..n]),
            }
            self.inner.consume(n);
            if done {
                return Ok(match self.skipping.take() {
                    Some(skipped) => Read::TooLong(skipped),
                    None => Read::Line,
                });
            }
        }
    }

    /// The reader underneath (to read the rest of the input whole).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The size of an over-long line the input ended in, if it did (then forgotten).
    pub fn take_unfinished(&mut self) -> Option<u64> {
        self.skipping.take()
    }
}

/// Calls `f` with the bytes of each record of a JSON document, in order, one at a
/// time (never all of them parsed at once): the elements of a top-level array or of a
/// top-level `records` array, else the document itself. A document that is not JSON
/// is an error (records before the error were handed to `f`).
pub fn each_record(doc: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), serde_json::Error> {
    let text = doc.trim_ascii();
    if text.starts_with(b"{") {
        let mut de = serde_json::Deserializer::from_slice(text);
        let records = de.deserialize_map(RecordsMember)?;
        de.end()?;
        match records {
            Some(raw) if raw.get().starts_with('[') => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                de.deserialize_seq(EachElement(&mut f))?;
                de.end()
            }
            // One message.
            _ => {
                f(text);
                Ok(())
            }
        }
    } else if text.starts_with(b"[") {
        let mut de = serde_json::Deserializer::from_slice(text);
        de.deserialize_seq(EachElement(&mut f))?;
        de.end()
    } else {
        f(text);
        Ok(())
    }
}

/// The `records` member of an object, unparsed.
struct RecordsMember;

impl<'de> Visitor<'de> for RecordsMember {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut records = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "records" && records.is_none() {
                records = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(records)
    }
}

/// Hands each element of an array to the closure, unparsed.
struct EachElement<'f, F>(&'f mut F);

impl<'de, F: FnMut(&[u8])> Visitor<'de> for EachElement<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            (self.0)(raw.get().as_bytes());
        }
        Ok(())
    }
}

/// The API hint of an input from its name (`events.json.v2` → v2).
pub fn hint_from_name(name: &str) -> Option<Api> {
    name.ends_with(".v2").then_some(Api::V2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_every_shape_per_record() {
        let v1 = r#"{"timestamp":"2021-01-01T00:00:00Z","event":{"deployEvent":{"status":"In Progress"}},"entry":"Deploy started"}"#;
        assert!(matches!(
            item_from_line(v1, None),
            Some(Item::Message {
                api: Api::V1,
                payload: Payload::V1(_)
            })
        ));
        let v2 = r#"{"timestamp":"2022-01-01T00:00:00Z","taskEvent":{"id":"Exec-0","task":"Exec","status":"InProgress"}}"#;
        assert!(matches!(
            item_from_line(v2, None),
            Some(Item::Message {
                api: Api::V2,
                payload: Payload::V2(_)
            })
        ));
        let wrapped = format!(r#"{{"result":{v2}}}"#);
        assert!(matches!(
            item_from_line(&wrapped, None),
            Some(Item::Message { api: Api::V2, .. })
        ));
        let err = r#"{"error":{"code":14,"message":"gone"}}"#;
        assert_eq!(
            item_from_line(err, None),
            Some(Item::StreamEnded {
                code: 14,
                message: "gone".into()
            })
        );
        assert!(matches!(
            item_from_value(json!({"buildState": {}}), None),
            Item::NotAnEvent(_)
        ));
        assert_eq!(item_from_line("   ", None), None);
        assert!(matches!(
            item_from_line("{oops", None),
            Some(Item::Message {
                payload: Payload::Invalid(_),
                ..
            })
        ));
    }

    #[test]
    fn documents_yield_their_records() {
        let records = |doc: &str| {
            let mut out = Vec::new();
            let r = each_record(doc.as_bytes(), |b| {
                out.push(String::from_utf8(b.to_vec()).unwrap())
            });
            (out, r.is_ok())
        };
        assert_eq!(
            records(r#"{"x": {"records": 3}, "records": [1, {"a": [2]}]}"#),
            (vec!["1".to_owned(), r#"{"a": [2]}"#.to_owned()], true)
        );
        assert_eq!(records("[1, 2, 3]").0.len(), 3);
        assert_eq!(
            records(r#" {"event": {}} "#),
            (vec![r#"{"event": {}}"#.to_owned()], true)
        );
        // Broken: the records before the break are handed over.
        assert_eq!(records("[1, 2, oops").0, vec!["1", "2"]);
        assert!(!records("[1, 2, oops").1);
        assert_eq!(hint_from_name("/tmp/events.json.v2"), Some(Api::V2));
        assert_eq!(hint_from_name("events.json"), None);
    }
}
