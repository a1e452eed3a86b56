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
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, SerializeOptions,
};
use serde_json::Value;

use crate::core::InvalidEvent;
use crate::pb::{self, lean, v1, v2};
use crate::source::decode_v2::is_sync_line;
use crate::source::wire::LogKind;
use crate::source::{Api, Payload};

/// The descriptors of Skaffold's protos (v1 and v2), compiled by build.rs.
pub(crate) fn pool() -> &'static DescriptorPool {
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

/// Parses one JSON line or record, refusing (before parsing) one over the limits of
/// `source::limits` (size, values, nesting).
pub fn parse_json(bytes: &[u8]) -> Result<Value, InvalidEvent> {
    crate::source::limits::check_json(bytes)
        .map_err(|e| InvalidEvent::Undecodable(format!("too large: {e}")))?;
    serde_json::from_slice(bytes).map_err(|e| InvalidEvent::Undecodable(format!("not JSON: {e}")))
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

/// Decodes a v2 `Event` from its JSON form: proto names (`task_id`, gateway) or
/// lowerCamel names (`taskId`, `--event-log-file`'s `.v2` file) alike.
pub fn event_v2_from_json(value: Value) -> Result<v2::Event, InvalidEvent> {
    message_from_json("proto.v2.Event", value)
}

/// The oneof members of a v2 `Event`, as JSON keys (proto names = lowerCamel here).
const V2_KEYS: [&str; 16] = [
    "metaEvent",
    "skaffoldLogEvent",
    "applicationLogEvent",
    "taskEvent",
    "buildSubtaskEvent",
    "deploySubtaskEvent",
    "portEvent",
    "statusCheckSubtaskEvent",
    "fileSyncEvent",
    "debuggingContainerEvent",
    "terminationEvent",
    "testEvent",
    "renderEvent",
    "verifyEvent",
    "cloudRunReadyEvent",
    "execEvent",
];

/// Which API a bare JSON message belongs to: a v1 `LogEntry` nests its event under
/// `event`; a v2 `Event` has its oneof member at the top level. `None` when neither.
pub fn detect_api(value: &Value) -> Option<Api> {
    let obj = value.as_object()?;
    if obj.contains_key("event") || obj.contains_key("entry") {
        return Some(Api::V1);
    }
    V2_KEYS
        .iter()
        .any(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .then_some(Api::V2)
}

/// A v2 log event that can be skipped without decoding (every Skaffold log line but
/// the `Syncing N files for IMAGE` one, coloured or not, and every application log
/// line).
pub fn v2_skippable_log(value: &Value) -> Option<LogKind> {
    let obj = value.as_object()?;
    if obj.get("applicationLogEvent").is_some_and(|v| !v.is_null()) {
        return Some(LogKind::Application);
    }
    let log = obj.get("skaffoldLogEvent").filter(|v| !v.is_null())?;
    let is_sync = log
        .get("message")
        .and_then(Value::as_str)
        .is_some_and(|m| is_sync_line(m.as_bytes()));
    (!is_sync).then_some(LogKind::Skaffold)
}

/// Decodes a bare JSON message of `api` (v1 `LogEntry` or v2 `Event`) into what the
/// fold takes; v2 log events are skipped before the (costly) protobuf mapping.
pub fn payload_from_json(api: Api, value: Value) -> Payload {
    if api == Api::V1 {
        return match log_entry_from_json(value) {
            Ok(e) => Payload::V1(Box::new(e)),
            Err(e) => Payload::Invalid(e),
        };
    }
    if let Some(kind) = v2_skippable_log(&value) {
        return Payload::SkippedLog(kind);
    }
    match message_from_json::<lean::v2::Event>("proto.v2.Event", value) {
        Ok(e) => Payload::V2(Box::new(e)),
        Err(e) => Payload::Invalid(e),
    }
}

fn message_from_json<M: Message + Default>(name: &str, value: Value) -> Result<M, InvalidEvent> {
    let desc = pool()
        .get_message_by_name(name)
        .expect("message is in the descriptor set");
    let opts = DeserializeOptions::new().deny_unknown_fields(false);
    let dm = match DynamicMessage::deserialize_with_options(desc.clone(), value.clone(), &opts) {
        Ok(dm) => dm,
        Err(first) => {
            // An enum name newer than our proto (a StatusCode, a BuilderType in the
            // metadata, a LogLevel...): decode it as 0 (UNKNOWN_...) rather than losing
            // the whole event.
            let mut value = value;
            if !scrub_unknown_enum_names(&desc, &mut value) {
                return Err(InvalidEvent::Undecodable(first.to_string()));
            }
            DynamicMessage::deserialize_with_options(desc, value, &opts)
                .map_err(|e| InvalidEvent::Undecodable(e.to_string()))?
        }
    };
    dm.transcode_to::<M>()
        .map_err(|e| InvalidEvent::Undecodable(e.to_string()))
}

/// Replaces, in `value` (the JSON of a `desc` message), every string of an enum-typed
/// field that names no value of its enum with 0, wherever the field is: singular,
/// repeated, a map's values, in nested messages; under its proto or its lowerCamel
/// JSON name. Returns whether it changed anything.
pub fn scrub_unknown_enum_names(desc: &MessageDescriptor, value: &mut Value) -> bool {
    let Value::Object(obj) = value else {
        return false;
    };
    let mut changed = false;
    for (key, v) in obj.iter_mut() {
        let Some(field) = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
        else {
            continue;
        };
        if field.is_map() {
            let (Kind::Message(entry), Value::Object(map)) = (field.kind(), v) else {
                continue;
            };
            let kind = entry.map_entry_value_field().kind();
            for item in map.values_mut() {
                changed |= scrub_value(&kind, item);
            }
        } else if field.is_list() {
            let Value::Array(items) = v else {
                continue;
            };
            let kind = field.kind();
            for item in items {
                changed |= scrub_value(&kind, item);
            }
        } else {
            changed |= scrub_value(&field.kind(), v);
        }
    }
    changed
}

/// One value of a field of `kind` (see [`scrub_unknown_enum_names`]). The
/// well-known types (`google.protobuf.*`) have JSON forms of their own and are left
/// alone.
fn scrub_value(kind: &Kind, v: &mut Value) -> bool {
    match kind {
        Kind::Enum(e) if !e.full_name().starts_with("google.protobuf.") => match v {
            Value::String(name) if e.get_value_by_name(name).is_none() => {
                *v = Value::from(0);
                true
            }
            _ => false,
        },
        Kind::Message(m) if !m.full_name().starts_with("google.protobuf.") => {
            scrub_unknown_enum_names(m, v)
        }
        _ => false,
    }
}

/// Renders an encoded message (`full_name`, e.g. `proto.v2.Event`) as JSON: with
/// `proto_names` and `emit_defaults` as Skaffold's HTTP gateway does since v1.33
/// (protojson with `UseProtoNames` and `EmitUnpopulated`: `task_id`, every field
/// present, unset messages as `null`); with neither as `--event-log-file` does
/// (jsonpb: lowerCamel `taskId`, zero values and unset messages left out). Enums by
/// name (by number when newer than our proto), 64-bit integers as strings, RFC 3339
/// timestamps.
pub fn message_to_json(
    full_name: &str,
    bytes: &[u8],
    proto_names: bool,
    emit_defaults: bool,
) -> Result<Value, InvalidEvent> {
    let desc = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| InvalidEvent::Undecodable(format!("unknown message {full_name}")))?;
    let dm = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|e| InvalidEvent::Undecodable(e.to_string()))?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(proto_names)
        .skip_default_fields(!emit_defaults);
    let mut json = dm
        .serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| InvalidEvent::Undecodable(e.to_string()))?;
    if emit_defaults {
        null_unset_messages(&desc, &mut json, proto_names);
    }
    Ok(json)
}

/// Renders an encoded v1 `State` as Skaffold's HTTP gateway renders `/v1/state`
/// (`server/server.go`: protojson with `UseProtoNames` and `EmitUnpopulated`). Every
/// key protojson writes is there: scalars at their zero value, unset messages as
/// `null` (`metadata.test`, which Skaffold never sets), empty maps and lists. Fields
/// newer than our proto cannot be named and are left out of the JSON (the gRPC
/// passthrough keeps them).
pub fn state_json_from_bytes(bytes: &[u8]) -> Result<Value, InvalidEvent> {
    message_to_json("proto.State", bytes, true, true)
}

/// Adds `null` for every singular message field that is unset and in no oneof,
/// wherever it is (nested messages, list elements, map values), as protojson's
/// `EmitUnpopulated` does; prost-reflect leaves such fields out. Fields of a oneof
/// (proto3 `optional` included) stay absent when unset, as in protojson. The
/// well-known types (`google.protobuf.*`) have JSON forms of their own and are not
/// entered.
fn null_unset_messages(desc: &MessageDescriptor, value: &mut Value, proto_names: bool) {
    let Value::Object(obj) = value else {
        return;
    };
    for field in desc.fields() {
        let Kind::Message(m) = field.kind() else {
            continue;
        };
        let key = if proto_names {
            field.name()
        } else {
            field.json_name()
        };
        let enter = |v: &mut Value, m: &MessageDescriptor| {
            if !m.full_name().starts_with("google.protobuf.") {
                null_unset_messages(m, v, proto_names);
            }
        };
        if field.is_map() {
            let Kind::Message(vm) = m.map_entry_value_field().kind() else {
                continue;
            };
            if let Some(Value::Object(map)) = obj.get_mut(key) {
                map.values_mut().for_each(|v| enter(v, &vm));
            }
        } else if field.is_list() {
            if let Some(Value::Array(items)) = obj.get_mut(key) {
                items.iter_mut().for_each(|v| enter(v, &m));
            }
        } else if let Some(v) = obj.get_mut(key) {
            enter(v, &m);
        } else if field.containing_oneof().is_none() {
            obj.insert(key.to_owned(), Value::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::enums::{BuilderType, ClusterType, DeployerType, StatusCode};
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
    fn unknown_enum_names_in_metadata_decode_as_zero_and_keep_the_event() {
        // A BuilderType (and deployer, cluster, renderer, tester type) newer than our
        // proto, in a v2 MetaEvent.
        {
            let v = json!({
                "timestamp": "2024-01-01T00:00:00Z",
                "metaEvent": {
                    "entry": "Starting Skaffold: &{Version:v2.99.0}",
                    "metadata": {
                        "runID": "r-1",
                        "build": {
                            "artifacts": [
                                {"type": "NIXPACKS", "name": "web"},
                                {"type": "DOCKER", "name": "db"}
                            ],
                            "type": "LOCAL"
                        },
                        "deploy": {"deployers": [{"type": "TIMOSHENKO", "count": 1}], "cluster": "MOON"},
                        "render": {"Renderers": [{"type": "JSONNET_PLUS", "count": 2}]},
                        "test": {"Testers": [{"type": "FUZZ", "count": 1}]}
                    }
                }
            });
            let ev = event_v2_from_json(v).unwrap();
            let Some(v2::event::EventType::MetaEvent(m)) = ev.event_type else {
                panic!("{ev:?}");
            };
            let md = m.metadata.unwrap();
            assert_eq!(md.run_id, "r-1");
            let b = md.build.unwrap();
            assert_eq!(
                b.artifacts[0].r#type,
                BuilderType::UnknownBuilderType as i32
            );
            assert_eq!(b.artifacts[0].name, "web");
            assert_eq!(b.artifacts[1].r#type, BuilderType::Docker as i32);
            let d = md.deploy.unwrap();
            assert_eq!(
                d.deployers[0].r#type,
                DeployerType::UnknownDeployerType as i32
            );
            assert_eq!(d.deployers[0].count, 1);
            assert_eq!(d.cluster, ClusterType::UnknownClusterType as i32);
            let r = &md.render.unwrap().renderers[0];
            assert_eq!((r.r#type, r.count), (0, 2));
            assert_eq!(md.test.unwrap().testers[0].r#type, 0);
        }
        // A v1 MetaEvent (builders are `ImageBuilder`s there).
        let v = json!({
            "timestamp": "2021-01-01T00:00:00Z",
            "event": {"metaEvent": {"entry": "Starting Skaffold", "metadata": {
                "build": {"numberOfArtifacts": 2, "builders": [{"type": "NIXPACKS", "count": 2}]}
            }}}
        });
        let e = log_entry_from_json(v).unwrap();
        let Some(v1::event::EventType::MetaEvent(m)) = e.event.unwrap().event_type else {
            panic!("not a meta event");
        };
        let b = m.metadata.unwrap().build.unwrap();
        assert_eq!((b.number_of_artifacts, b.builders[0].count), (2, 2));
        assert_eq!(b.builders[0].r#type, 0);
        // Anything else that is wrong still fails.
        let v = json!({"timestamp": "2021-01-01T00:00:00Z", "event": {"metaEvent": {"entry": 5}}});
        assert!(log_entry_from_json(v).is_err());
    }

    /// A schema with enums everywhere a field can be: singular, repeated, map values,
    /// nested messages (singular, repeated, map values).
    fn enum_test_schema() -> MessageDescriptor {
        use prost_types::field_descriptor_proto::{Label, Type};
        use prost_types::{
            DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
            FileDescriptorProto, MessageOptions,
        };
        let field = |name: &str, number: i32, label: Label, ty: Type, type_name: &str| {
            FieldDescriptorProto {
                name: Some(name.into()),
                number: Some(number),
                label: Some(label as i32),
                r#type: Some(ty as i32),
                type_name: (!type_name.is_empty()).then(|| type_name.into()),
                ..Default::default()
            }
        };
        let entry = |name: &str, value_ty: Type, value_name: &str| DescriptorProto {
            name: Some(name.into()),
            field: vec![
                field("key", 1, Label::Optional, Type::String, ""),
                field("value", 2, Label::Optional, value_ty, value_name),
            ],
            options: Some(MessageOptions {
                map_entry: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (o, r) = (Label::Optional, Label::Repeated);
        let file = FileDescriptorProto {
            name: Some("t.proto".into()),
            package: Some("t".into()),
            syntax: Some("proto3".into()),
            enum_type: vec![EnumDescriptorProto {
                name: Some("Color".into()),
                value: ["UNKNOWN_COLOR", "RED", "GREEN"]
                    .iter()
                    .zip(0..)
                    .map(|(n, i)| EnumValueDescriptorProto {
                        name: Some((*n).into()),
                        number: Some(i),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            message_type: vec![
                DescriptorProto {
                    name: Some("Inner".into()),
                    field: vec![field("tint_color", 1, o, Type::Enum, ".t.Color")],
                    ..Default::default()
                },
                DescriptorProto {
                    name: Some("Outer".into()),
                    field: vec![
                        field("one_color", 1, o, Type::Enum, ".t.Color"),
                        field("many_colors", 2, r, Type::Enum, ".t.Color"),
                        field(
                            "color_by_name",
                            3,
                            r,
                            Type::Message,
                            ".t.Outer.ColorByNameEntry",
                        ),
                        field("inner", 4, o, Type::Message, ".t.Inner"),
                        field("inners", 5, r, Type::Message, ".t.Inner"),
                        field(
                            "inner_by_name",
                            6,
                            r,
                            Type::Message,
                            ".t.Outer.InnerByNameEntry",
                        ),
                        field("created", 7, o, Type::Message, ".google.protobuf.Timestamp"),
                    ],
                    nested_type: vec![
                        entry("ColorByNameEntry", Type::Enum, ".t.Color"),
                        entry("InnerByNameEntry", Type::Message, ".t.Inner"),
                    ],
                    ..Default::default()
                },
            ],
            dependency: vec!["google/protobuf/timestamp.proto".into()],
            ..Default::default()
        };
        // Our pool has google/protobuf/timestamp.proto; a clone is changed alone.
        let mut pool = pool().clone();
        pool.add_file_descriptor_proto(file).unwrap();
        pool.get_message_by_name("t.Outer").unwrap()
    }

    #[test]
    fn unknown_enum_names_are_scrubbed_wherever_an_enum_field_is() {
        let desc = enum_test_schema();
        for names in [
            // lowerCamel JSON names.
            [
                "oneColor",
                "manyColors",
                "colorByName",
                "inner",
                "inners",
                "innerByName",
                "tintColor",
            ],
            // proto names.
            [
                "one_color",
                "many_colors",
                "color_by_name",
                "inner",
                "inners",
                "inner_by_name",
                "tint_color",
            ],
        ] {
            let [one, many, by_name, inner, inners, inner_by_name, tint] = names;
            let mut v = json!({
                one: "PURPLE",
                many: ["RED", "PURPLE", 2],
                by_name: {"a": "GREEN", "b": "PURPLE"},
                inner: {tint: "PURPLE"},
                inners: [{tint: "RED"}, {tint: "PURPLE"}, null],
                inner_by_name: {"x": {tint: "PURPLE"}, "y": {tint: "GREEN"}},
                "created": "2024-01-01T00:00:00Z",
                "unknownField": "PURPLE"
            });
            assert!(
                DynamicMessage::deserialize(desc.clone(), v.clone()).is_err(),
                "the schema rejects the unknown names"
            );
            assert!(scrub_unknown_enum_names(&desc, &mut v));
            assert_eq!(
                v,
                json!({
                    one: 0,
                    many: ["RED", 0, 2],
                    by_name: {"a": "GREEN", "b": 0},
                    inner: {tint: 0},
                    inners: [{tint: "RED"}, {tint: 0}, null],
                    inner_by_name: {"x": {tint: 0}, "y": {tint: "GREEN"}},
                    "created": "2024-01-01T00:00:00Z",
                    "unknownField": "PURPLE"
                }),
                "{names:?}"
            );
            // Nothing left to change.
            assert!(!scrub_unknown_enum_names(&desc, &mut v));
        }
    }

    #[test]
    fn decodes_v2_events_with_proto_or_lower_camel_names() {
        let gateway = json!({
            "timestamp": "2022-02-04T21:54:24.624180Z",
            "portEvent": {"id": "", "task_id": "PortForward-1", "localPort": 8080,
                "resourceType": "pod", "resourceName": "x",
                "targetPort": {"type": 0, "intVal": 8080, "strVal": ""}}
        });
        let file = json!({
            "timestamp": "2022-02-04T21:54:24Z",
            "taskEvent": {"id": "Exec-0", "task": "Exec", "description": "d", "status": "InProgress"}
        });
        assert_eq!(detect_api(&gateway), Some(Api::V2));
        match event_v2_from_json(gateway).unwrap().event_type.unwrap() {
            v2::event::EventType::PortEvent(p) => assert_eq!(p.task_id, "PortForward-1"),
            other => panic!("{other:?}"),
        }
        match event_v2_from_json(file).unwrap().event_type.unwrap() {
            v2::event::EventType::TaskEvent(t) => assert_eq!(t.task, "Exec"),
            other => panic!("{other:?}"),
        }
        let v1 = json!({"timestamp": "2021-01-01T00:00:00Z", "event": {"buildEvent": {}}});
        assert_eq!(detect_api(&v1), Some(Api::V1));
        assert_eq!(detect_api(&json!({"timestamp": "x"})), None);
    }

    #[test]
    fn v2_log_lines_are_skipped_before_mapping_except_syncs() {
        let log = |m: &str| json!({"timestamp": "2021-10-15T18:00:14Z", "skaffoldLogEvent": {"task_id": "DevLoop-0", "level": "INFO", "message": m}});
        assert_eq!(
            payload_from_json(Api::V2, log("Loaded defaults\n")),
            Payload::SkippedLog(LogKind::Skaffold)
        );
        assert!(matches!(
            payload_from_json(Api::V2, log("Syncing 2 files for web\n")),
            Payload::V2(_)
        ));
        // Coloured: `.v2` files and the gateway carry ESC as `\u001b`.
        let coloured: Value = serde_json::from_str(
            r#"{"timestamp": "2021-10-15T18:00:14Z", "skaffoldLogEvent": {"message": "\u001b[34mSyncing 2 files for web:v1\n\u001b[0m"}}"#,
        )
        .unwrap();
        assert!(matches!(
            payload_from_json(Api::V2, coloured),
            Payload::V2(_)
        ));
        assert_eq!(
            payload_from_json(Api::V2, log("\u{1b}[34mWatching for changes...\n\u{1b}[0m")),
            Payload::SkippedLog(LogKind::Skaffold)
        );
        let unknown_level = json!({"timestamp": "2021-10-15T18:00:14Z", "skaffoldLogEvent": {"level": "CHATTY", "message": "Syncing 1 files for a"}});
        assert!(matches!(
            payload_from_json(Api::V2, unknown_level),
            Payload::V2(_)
        ));
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
        // The whole document, compared as a whole: a key we leave out fails (indexing
        // a missing key with serde_json would yield Null and hide it). What protojson
        // writes with UseProtoNames + EmitUnpopulated (checked against Go's protojson
        // in tests/state_json.rs): zero scalars, `null` for unset messages at any depth,
        // `{}` / `[]` for empty maps and lists, int32 map keys as strings, enums by name
        // (by number when unknown).
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
            metadata: Some(v1::Metadata {
                build: Some(v1::BuildMetadata {
                    number_of_artifacts: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            test_state: Some(v1::TestState {
                status: "Not Started".into(),
                status_code: 99_999,
            }),
            ..Default::default()
        };
        let v = state_json_from_bytes(&state.encode_to_vec()).unwrap();
        let port = json!({
            "localPort": 9000, "remotePort": 0, "podName": "", "containerName": "",
            "namespace": "", "portName": "", "resourceType": "", "resourceName": "web",
            "address": "", "targetPort": null
        });
        assert_eq!(
            v,
            json!({
                "buildState": {
                    "artifacts": {"app": "Complete"},
                    "autoTrigger": true,
                    "statusCode": "BUILD_SUCCESS"
                },
                "deployState": null,
                "forwardedPorts": {"9000": port},
                "statusCheckState": null,
                "fileSyncState": null,
                "debuggingContainers": [],
                "metadata": {
                    "build": {
                        "numberOfArtifacts": 1,
                        "builders": [],
                        "type": "UNKNOWN_BUILD_TYPE",
                        "additional": {}
                    },
                    "deploy": null,
                    "test": null,
                    "additional": {}
                },
                "testState": {"status": "Not Started", "statusCode": 99999}
            })
        );
    }

    #[test]
    fn gateway_event_chunks_carry_null_for_unset_messages_but_not_for_unset_oneof_members() {
        // As Skaffold's gateway sent it in PR #5637's capture:
        // {"taskEvent": {..., "actionableErr": null}}, and no other event_type key.
        let ev = v2::Event {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_617_817_808,
                nanos: 970_854_000,
            }),
            event_type: Some(v2::event::EventType::TaskEvent(v2::TaskEvent {
                id: "DevLoop-1".into(),
                task: "DevLoop".into(),
                iteration: 1,
                status: "InProgress".into(),
                ..Default::default()
            })),
        };
        let gateway = message_to_json("proto.v2.Event", &ev.encode_to_vec(), true, true).unwrap();
        assert_eq!(
            gateway,
            json!({
                "timestamp": "2021-04-07T17:50:08.970854Z",
                "taskEvent": {
                    "id": "DevLoop-1", "task": "DevLoop", "description": "",
                    "iteration": 1, "status": "InProgress", "actionableErr": null
                }
            })
        );
        // The event log file (jsonpb, defaults omitted) has no nulls.
        let file = message_to_json("proto.v2.Event", &ev.encode_to_vec(), false, false).unwrap();
        assert_eq!(
            file,
            json!({
                "timestamp": "2021-04-07T17:50:08.970854Z",
                "taskEvent": {"id": "DevLoop-1", "task": "DevLoop", "iteration": 1, "status": "InProgress"}
            })
        );
    }
}
