//! Skaffold's JSON shapes → protobuf messages, through `prost-reflect` and the
//! descriptor set compiled from `proto/` (so the JSON mapping is the standard
//! protobuf one: proto or lowerCamel names, enums by name or number, RFC 3339
//! timestamps, int32 map keys as strings, `null` for unset messages).
//!
//! Covers the HTTP gateway (`{"result": ...}` / `{"error": ...}` chunks) and the
//! `--event-log-file` lines (bare messages), and renders `State` back to the gateway's
//! JSON for `/v1/state`.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::core::InvalidEvent;
use crate::pb::{self, enums::StatusCode, v1};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptor set built by build.rs")
    })
}

/// One line or record of a gateway stream.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayChunk {
    /// A message (`{"result": ...}`).
    Result(Value),
    /// The stream ended with an error (either gateway error shape).
    Error {
        /// gRPC code (`grpc_code` in gateway v1, `code` in v2).
        code: i64,
        /// Message.
        message: String,
    },
}

/// Splits a gateway chunk into its result or error.
pub fn parse_gateway_chunk(value: Value) -> Result<GatewayChunk, InvalidEvent> {
    let Value::Object(mut obj) = value else {
        return Err(InvalidEvent::Undecodable("chunk is not an object".into()));
    };
    if let Some(result) = obj.remove("result") {
        return Ok(GatewayChunk::Result(result));
    }
    if let Some(err) = obj.remove("error") {
        let code = err
            .get("grpc_code")
            .or_else(|| err.get("code"))
            .and_then(Value::as_i64)
            .unwrap_or(2);
        let message = match err.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => err.to_string(),
        };
        return Ok(GatewayChunk::Error { code, message });
    }
    Err(InvalidEvent::Undecodable(
        "chunk has neither result nor error".into(),
    ))
}

/// Decodes a v1 `LogEntry` from its JSON form (gateway or event log file).
pub fn log_entry_from_json(value: Value) -> Result<v1::LogEntry, InvalidEvent> {
    message_from_json("proto.LogEntry", value)
}

fn message_from_json<M: Message + Default>(name: &str, value: Value) -> Result<M, InvalidEvent> {
    let desc = pool()
        .get_message_by_name(name)
        .expect("message is in the descriptor set");
    let opts = DeserializeOptions::new().deny_unknown_fields(false);
    let dm = match DynamicMessage::deserialize_with_options(desc.clone(), value.clone(), &opts) {
        Ok(dm) => dm,
        Err(first) => {
            // A StatusCode / SuggestionCode name newer than our enum: decode it as 0
            // (reported as UNKNOWN) rather than losing the whole event.
            let mut value = value;
            if !scrub_unknown_enum_names(&mut value) {
                return Err(InvalidEvent::Undecodable(first.to_string()));
            }
            DynamicMessage::deserialize_with_options(desc, value, &opts)
                .map_err(|e| InvalidEvent::Undecodable(e.to_string()))?
        }
    };
    dm.transcode_to::<M>()
        .map_err(|e| InvalidEvent::Undecodable(e.to_string()))
}

/// Replaces unknown status/suggestion code names with 0. Returns whether it changed
/// anything.
fn scrub_unknown_enum_names(value: &mut Value) -> bool {
    let mut changed = false;
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                let is_code = matches!(k.as_str(), "errCode" | "statusCode" | "suggestionCode");
                if is_code && let Value::String(s) = v {
                    let known = if k == "suggestionCode" {
                        pb::enums::SuggestionCode::from_str_name(s).is_some()
                    } else {
                        StatusCode::from_str_name(s).is_some()
                    };
                    if !known {
                        *v = Value::from(0);
                        changed = true;
                    }
                } else {
                    changed |= scrub_unknown_enum_names(v);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                changed |= scrub_unknown_enum_names(v);
            }
        }
        _ => {}
    }
    changed
}

/// Renders an encoded v1 `State` as the HTTP gateway does (proto field names, every
/// field emitted, enums by name, RFC 3339 timestamps). Fields newer than our proto
/// cannot be named and are left out of the JSON (the gRPC passthrough keeps them).
pub fn state_json_from_bytes(bytes: &[u8]) -> Result<Value, InvalidEvent> {
    let desc = pool()
        .get_message_by_name("proto.State")
        .expect("State is in the descriptor set");
    let dm = DynamicMessage::decode(desc, bytes)
        .map_err(|e| InvalidEvent::Undecodable(e.to_string()))?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    dm.serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| InvalidEvent::Undecodable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_gateway_log_entry_with_nulls_and_nanosecond_timestamps() {
        let v = json!({
            "timestamp": "2019-10-16T18:26:11.385251549Z",
            "event": {"buildEvent": {"artifact": "a", "status": "In Progress", "actionableErr": null}},
            "entry": "Build started for artifact a"
        });
        let e = log_entry_from_json(v).unwrap();
        let ts = e.timestamp.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1_571_250_371, 385_251_549));
        match e.event.unwrap().event_type.unwrap() {
            v1::event::EventType::BuildEvent(b) => assert_eq!(b.status, "In Progress"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_status_code_name_decodes_as_zero() {
        let v = json!({
            "timestamp": "2021-01-01T00:00:00Z",
            "event": {"deployEvent": {"status": "Failed", "errCode": "DEPLOY_FROM_THE_FUTURE"}}
        });
        let e = log_entry_from_json(v).unwrap();
        match e.event.unwrap().event_type.unwrap() {
            v1::event::EventType::DeployEvent(d) => assert_eq!(d.err_code, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_both_gateway_error_shapes() {
        let v1 = json!({"error": {"grpc_code": 13, "http_code": 500, "message": "boom", "http_status": "x", "details": []}});
        let v2 = json!({"error": {"code": 14, "message": "gone", "details": []}});
        assert_eq!(
            parse_gateway_chunk(v1).unwrap(),
            GatewayChunk::Error {
                code: 13,
                message: "boom".into()
            }
        );
        assert_eq!(
            parse_gateway_chunk(v2).unwrap(),
            GatewayChunk::Error {
                code: 14,
                message: "gone".into()
            }
        );
    }

    #[test]
    fn renders_state_like_the_gateway() {
        let state = v1::State {
            forwarded_ports: [(
                9000,
                v1::PortEvent {
                    local_port: 9000,
                    resource_name: "web".into(),
                    ..Default::default()
                },
            )]
            .into(),
            build_state: Some(v1::BuildState {
                artifacts: [("app".to_string(), "Complete".to_string())].into(),
                auto_trigger: true,
                status_code: StatusCode::BuildSuccess as i32,
            }),
            ..Default::default()
        };
        let v = state_json_from_bytes(&state.encode_to_vec()).unwrap();
        assert_eq!(v["buildState"]["statusCode"], "BUILD_SUCCESS");
        assert_eq!(v["buildState"]["artifacts"]["app"], "Complete");
        assert_eq!(v["forwardedPorts"]["9000"]["resourceName"], "web");
        assert_eq!(v["deployState"], Value::Null);
    }
}
