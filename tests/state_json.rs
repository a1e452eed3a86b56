//! `/v1/state` and the gateway's event chunks, against what Skaffold's HTTP gateway
//! really writes: `server/server.go` marshals with grpc-gateway's `runtime.JSONPb`,
//! i.e. Go's protojson with `UseProtoNames` and `EmitUnpopulated`.
//!
//! The expected documents in `tests/golden/protojson/` are protojson's own output:
//! `tools/protojson` (Go, the protobuf module version Skaffold v2.24.0 pins) renders
//! each case from Skaffold's vendored protos (`tests/fixtures/skaffold-proto`).
//! `goldens_are_what_protojson_writes` rebuilds that tool and checks (or, with
//! UPDATE_GOLDEN=1, rewrites) them; it needs `go` and is skipped without it, except
//! under CI. The other tests compare our JSON with the goldens as whole documents,
//! so a missing key, an extra key or a different value anywhere fails.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use serde_json::Value;
use skaffold_exporter::pb::enums::{BuildType, BuilderType, ClusterType, DeployerType, StatusCode};
use skaffold_exporter::pb::{v1, v2};
use skaffold_exporter::source::json::{message_to_json, state_json_from_bytes};

/// One message to render: golden name, full message name, encoded bytes.
struct Case {
    name: &'static str,
    message: &'static str,
    bytes: Vec<u8>,
}

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

fn port(local: i32, kind: &str, name: &str, target: Option<i32>) -> v1::PortEvent {
    v1::PortEvent {
        local_port: local,
        remote_port: target.unwrap_or(0),
        namespace: "default".into(),
        resource_type: kind.into(),
        resource_name: name.into(),
        address: "127.0.0.1".into(),
        target_port: target.map(|t| v1::IntOrString {
            r#type: 0,
            int_val: t,
            str_val: String::new(),
        }),
        ..Default::default()
    }
}

/// The State Skaffold holds during `skaffold dev` of its microservices example after
/// the first loop (`event/event.go`: `emptyState`, `initializeMetadata`; Skaffold
/// never sets `metadata.test` and adds a debugging container only under `debug`).
fn skaffold_dev_state() -> v1::State {
    v1::State {
        build_state: Some(v1::BuildState {
            artifacts: [
                ("leeroy-web".to_string(), "Complete".to_string()),
                ("leeroy-app".to_string(), "Complete".to_string()),
            ]
            .into(),
            auto_trigger: true,
            status_code: StatusCode::Ok as i32,
        }),
        deploy_state: Some(v1::DeployState {
            status: "Complete".into(),
            auto_trigger: true,
            status_code: StatusCode::Ok as i32,
        }),
        forwarded_ports: [
            (9000, port(9000, "service", "leeroy-web", Some(8080))),
            (9001, port(9001, "service", "leeroy-app", Some(50051))),
        ]
        .into(),
        status_check_state: Some(v1::StatusCheckState {
            status: "Succeeded".into(),
            resources: [
                ("deployment/leeroy-web".to_string(), "Succeeded".to_string()),
                ("deployment/leeroy-app".to_string(), "Succeeded".to_string()),
            ]
            .into(),
            status_code: StatusCode::StatuscheckSuccess as i32,
        }),
        file_sync_state: Some(v1::FileSyncState {
            status: "Not Started".into(),
            auto_trigger: true,
        }),
        debugging_containers: vec![],
        metadata: Some(v1::Metadata {
            build: Some(v1::BuildMetadata {
                number_of_artifacts: 2,
                builders: vec![v1::build_metadata::ImageBuilder {
                    r#type: BuilderType::Docker as i32,
                    count: 2,
                }],
                r#type: BuildType::Local as i32,
                additional: Default::default(),
            }),
            deploy: Some(v1::DeployMetadata {
                deployers: vec![v1::deploy_metadata::Deployer {
                    r#type: DeployerType::Kubectl as i32,
                    count: 1,
                }],
                cluster: ClusterType::Minikube as i32,
            }),
            test: None,
            additional: Default::default(),
        }),
        test_state: Some(v1::TestState {
            status: "Not Started".into(),
            status_code: StatusCode::Ok as i32,
        }),
    }
}

/// A simulated Skaffold after one dev loop (its `GetState` follows the events).
fn simulated_skaffold() -> skaffold_exporter::simulator::Simulator {
    use skaffold_exporter::simulator::scenario::Script;
    let mut s = Script::new();
    s.meta(0, "v2.16.1")
        .dev_loop(100, 0, "In Progress")
        .build(100, "web", "In Progress", StatusCode::Ok)
        .build(900, "web", "Complete", StatusCode::Ok)
        .deploy(100, "In Progress", StatusCode::Ok)
        .deploy(500, "Complete", StatusCode::Ok)
        .status_check(10, "Started", StatusCode::Ok)
        .resource(400, "deployment/web", "Succeeded", StatusCode::Ok)
        .status_check(10, "Succeeded", StatusCode::Ok)
        .port(20, 9000, "web")
        .dev_loop(10, 0, "Succeeded");
    let sim = skaffold_exporter::simulator::Simulator::new();
    for e in s.entries(1_700_000_000_000_000_000) {
        sim.emit(e);
    }
    sim
}

fn cases() -> Vec<Case> {
    let state = |name, s: v1::State| Case {
        name,
        message: "proto.State",
        bytes: s.encode_to_vec(),
    };
    let mut nested = v1::State {
        // A forward whose target port Skaffold did not resolve, a debugging container
        // with its ports map, metadata without a build section.
        forwarded_ports: [(5005, port(5005, "pod", "web-f6d56bcc5-6csgs", None))].into(),
        debugging_containers: vec![v1::DebuggingContainerEvent {
            status: "Started".into(),
            pod_name: "web-f6d56bcc5-6csgs".into(),
            container_name: "web".into(),
            namespace: "default".into(),
            artifact: "skaffold-jib".into(),
            runtime: "jvm".into(),
            working_dir: String::new(),
            debug_ports: [("jdwp".to_string(), 5005)].into(),
        }],
        metadata: Some(v1::Metadata {
            deploy: Some(v1::DeployMetadata::default()),
            additional: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    nested.file_sync_state = Some(v1::FileSyncState::default());
    let newer = v1::State {
        build_state: Some(v1::BuildState {
            artifacts: Default::default(),
            auto_trigger: false,
            status_code: StatusCode::RenderHelmPluginErr as i32,
        }),
        deploy_state: Some(v1::DeployState {
            status: "Failed".into(),
            auto_trigger: false,
            status_code: 99_999,
        }),
        metadata: Some(v1::Metadata {
            build: Some(v1::BuildMetadata {
                builders: vec![v1::build_metadata::ImageBuilder {
                    r#type: 99,
                    count: 1,
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let task = v2::Event {
        timestamp: ts(1_617_817_808, 970_854_000),
        event_type: Some(v2::event::EventType::TaskEvent(v2::TaskEvent {
            id: "DevLoop-1".into(),
            task: "DevLoop".into(),
            iteration: 1,
            status: "InProgress".into(),
            ..Default::default()
        })),
    };
    let build_failed = v1::LogEntry {
        timestamp: ts(1_571_250_372, 10_124_246),
        event: Some(v1::Event {
            event_type: Some(v1::event::EventType::BuildEvent(v1::BuildEvent {
                artifact: "gcr.io/k8s-skaffold/skaffold-example".into(),
                status: "Failed".into(),
                err: "docker build failed".into(),
                err_code: StatusCode::BuildUserError as i32,
                actionable_err: Some(v1::ActionableErr {
                    err_code: StatusCode::BuildUserError as i32,
                    message: "docker build failed".into(),
                    suggestions: vec![v1::Suggestion {
                        suggestion_code: 0,
                        action: "Check the Dockerfile".into(),
                    }],
                }),
                ..Default::default()
            })),
        }),
        entry: "Build failed for artifact gcr.io/k8s-skaffold/skaffold-example".into(),
    };
    vec![
        state("state-skaffold-dev", skaffold_dev_state()),
        state("state-empty", v1::State::default()),
        state("state-nested-unset", nested),
        state("state-newer-enums", newer),
        state("state-simulated-session", simulated_skaffold().state()),
        Case {
            name: "gateway-v2-task-event",
            message: "proto.v2.Event",
            bytes: task.encode_to_vec(),
        },
        Case {
            name: "gateway-v1-build-failed",
            message: "proto.LogEntry",
            bytes: build_failed.encode_to_vec(),
        },
    ]
}

/// Our rendering of a case: `/v1/state` for a State, a gateway chunk's `result` for
/// an event.
fn ours(case: &Case) -> Value {
    if case.message == "proto.State" {
        state_json_from_bytes(&case.bytes).unwrap()
    } else {
        message_to_json(case.message, &case.bytes, true, true).unwrap()
    }
}

fn golden_path(case: &Case) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/protojson")
        .join(format!("{}.json", case.name))
}

fn golden(case: &Case) -> Value {
    let path = golden_path(case);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with UPDATE_GOLDEN=1 cargo test --test state_json goldens_are_what_protojson_writes",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// Every difference between two JSON documents, one line per path.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeMap<&String, ()> = x.keys().chain(y.keys()).map(|k| (k, ())).collect();
            for k in keys.keys() {
                let p = format!("{path}.{k}");
                match (x.get(*k), y.get(*k)) {
                    (Some(va), Some(vb)) => differences(&p, va, vb, out),
                    (Some(_), None) => out.push(format!("{p}: only in ours")),
                    (None, Some(_)) => out.push(format!("{p}: missing from ours")),
                    (None, None) => unreachable!(),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{path}: ours {a}, protojson {b}")),
        _ => {}
    }
}

#[track_caller]
fn assert_same_document(name: &str, ours: &Value, expected: &Value) {
    let mut diff = Vec::new();
    differences("$", ours, expected, &mut diff);
    assert!(diff.is_empty(), "{name}:\n  {}", diff.join("\n  "));
    // The walk above is the diagnosis; equality of the whole documents is the verdict.
    assert_eq!(ours, expected, "{name}");
}

#[test]
fn our_gateway_json_is_protojsons_for_every_case() {
    for case in cases() {
        assert_same_document(case.name, &ours(&case), &golden(&case));
    }
}

#[test]
fn a_key_left_out_anywhere_is_a_failure() {
    // The comparison sees a missing `null` two levels down, and a missing zero.
    let case = &cases()[0];
    let expected = golden(case);
    for path in [["metadata", "test"], ["buildState", "autoTrigger"]] {
        let mut v = ours(case);
        v[path[0]].as_object_mut().unwrap().remove(path[1]).unwrap();
        let mut diff = Vec::new();
        differences("$", &v, &expected, &mut diff);
        assert_eq!(
            diff,
            [format!("$.{}.{}: missing from ours", path[0], path[1])]
        );
        assert_ne!(v, expected);
    }
}

#[test]
fn skaffolds_real_dev_state_has_a_null_test_metadata_and_every_zero() {
    // Spelled out for the case the issue names: Skaffold never sets metadata.test.
    let v = ours(&cases()[0]);
    assert_eq!(v["metadata"].get("test"), Some(&Value::Null));
    assert_eq!(v["debuggingContainers"], Value::Array(vec![]));
    assert_eq!(v["forwardedPorts"]["9000"]["podName"], Value::from(""));
    assert_eq!(
        v["forwardedPorts"]["9000"]["targetPort"],
        serde_json::json!({"type": 0, "intVal": 8080, "strVal": ""})
    );
}

#[test]
fn the_gateway_chunk_of_a_genuine_v1_35_1_capture_is_rendered_identically() {
    // Skaffold v1.35.1's own gateway output (issue #7081, vendored in
    // tests/fixtures/captured): decode it, render it back as the gateway does, and
    // the document is the same, key for key.
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(
            support::captured_dir().join("skaffold-issue-7081_v1.35.1_http-v2-portEvent.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let result = doc["records"][0]["result"].clone();
    let ev = skaffold_exporter::source::json::event_v2_from_json(result.clone()).unwrap();
    let back = message_to_json("proto.v2.Event", &ev.encode_to_vec(), true, true).unwrap();
    assert_same_document("issue 7081", &back, &result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_state_over_http_is_the_whole_protojson_document() {
    // GetState over real gRPC from the simulated Skaffold, /v1/state over real HTTP
    // from the exporter: the body is protojson's document, every key of it.
    let sim = simulated_skaffold();
    let (addr, _stop) = support::serve_skaffold(&sim).await;
    let exp = skaffold_exporter::app::start(support::settings(addr))
        .await
        .unwrap();
    let (status, ctype, body) = support::http_get(exp.http_addr, "/v1/state", None).await;
    exp.shutdown().await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let served: Value = serde_json::from_str(&body).unwrap();
    let case = cases()
        .into_iter()
        .find(|c| c.name == "state-simulated-session")
        .unwrap();
    assert_same_document("/v1/state", &served, &golden(&case));
}

/// Builds `tools/protojson` (Go) with scripts/build-tool.sh; `None` without `go`.
fn protojson_tool() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if std::process::Command::new("go")
        .arg("version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the protojson check: `go` is not on PATH"
        );
        eprintln!("skipped: no `go` on PATH to build tools/protojson");
        return None;
    }
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/build-tool.sh"))
        .args(["protojson", "github.com/skaffold-exporter/tools/protojson"])
        .output()
        .expect("run scripts/build-tool.sh");
    assert!(
        out.status.success(),
        "building tools/protojson failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()))
}

#[test]
fn goldens_are_what_protojson_writes() {
    let Some(tool) = protojson_tool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Skaffold's own protos (not ours) describe the messages for protojson.
    let fds = protox::compile(
        [
            "enums/enums.proto",
            "v1/skaffold.proto",
            "v2/skaffold.proto",
        ],
        [Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skaffold-proto")],
    )
    .unwrap();
    let descriptors = dir.path().join("skaffold.desc");
    std::fs::write(&descriptors, fds.encode_to_vec()).unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    for case in cases() {
        let mut child = std::process::Command::new(&tool)
            .arg(&descriptors)
            .arg(case.message)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(&case.bytes).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let protojson: Value = serde_json::from_slice(&out.stdout).unwrap();
        if update {
            let path = golden_path(&case);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = serde_json::to_string_pretty(&protojson).unwrap() + "\n";
            std::fs::write(path, text).unwrap();
            continue;
        }
        assert_same_document(case.name, &golden(&case), &protojson);
    }
}
