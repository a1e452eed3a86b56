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

use serde_json::Value;

use super::json::{GatewayChunk, detect_api, parse_gateway_chunk, payload_from_json};
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
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    Some(match serde_json::from_str::<Value>(line) {
        Ok(v) => item_from_value(v, hint),
        Err(e) => Item::Message {
            api: hint.unwrap_or(Api::V1),
            payload: Payload::Invalid(InvalidEvent::Undecodable(format!("not JSON: {e}"))),
        },
    })
}

/// The records of a whole JSON document: a `records` array, an array, or one
/// message or chunk.
pub fn records_of_document(doc: Value) -> Vec<Value> {
    match doc {
        Value::Array(items) => items,
        Value::Object(mut o) if o.get("records").is_some_and(Value::is_array) => {
            match o.remove("records") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        other => vec![other],
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
        assert_eq!(records_of_document(json!({"records": [1, 2]})).len(), 2);
        assert_eq!(records_of_document(json!([1, 2, 3])).len(), 3);
        assert_eq!(records_of_document(json!({"event": {}})).len(), 1);
        assert_eq!(hint_from_name("/tmp/events.json.v2"), Some(Api::V2));
        assert_eq!(hint_from_name("events.json"), None);
    }
}
