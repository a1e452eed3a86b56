//! The lean event messages (`proto/lean/`, what the gRPC source decodes) against
//! Skaffold's full ones (`proto/skaffold/`):
//!
//! - every lean field is Skaffold's field of the same number and name, with a wire-
//!   compatible type (`bytes` for `string`, `int32` for an enum), the same
//!   cardinality and in the same oneof; every lean message is the full message of
//!   the same name;
//! - the lean `Event` oneofs have every member of Skaffold's (a member left out
//!   would decode as an empty event);
//! - on every gRPC message we have (real Skaffold's captures, the simulator's
//!   sessions in both APIs), decoding the bytes as lean succeeds exactly when the full
//!   decode does, and gives the lean view of the full message.

use std::path::Path;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

use skaffold_exporter::pb::{self, lean, v1, v2};
use skaffold_exporter::simulator::scenario::{Flavor, Script, Session};

mod support;

fn pool() -> DescriptorPool {
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptor set")
}

/// The full message a lean one stands for.
fn full_name(lean: &str) -> String {
    if let Some(rest) = lean.strip_prefix("lean.v1.") {
        format!("proto.{rest}")
    } else if let Some(rest) = lean.strip_prefix("lean.v2.") {
        format!("proto.v2.{rest}")
    } else {
        lean.to_owned()
    }
}

/// What is wrong with `lean` as a subset of its full message (empty when nothing).
fn mismatches(pool: &DescriptorPool, lean: &MessageDescriptor) -> Vec<String> {
    let name = lean.full_name();
    match pool.get_message_by_name(&full_name(name)) {
        Some(full) => subset_errors(lean, &full),
        None => vec![format!("{name}: no full message {}", full_name(name))],
    }
}

/// What is wrong with `lean` as a wire-compatible subset of `full`.
fn subset_errors(lean: &MessageDescriptor, full: &MessageDescriptor) -> Vec<String> {
    let name = lean.full_name();
    let mut out = Vec::new();
    for f in lean.fields() {
        let at = format!("{name}.{} = {}", f.name(), f.number());
        let Some(g) = full.get_field(f.number()) else {
            out.push(format!(
                "{at}: no such field number in {}",
                full.full_name()
            ));
            continue;
        };
        if g.name() != f.name() {
            out.push(format!(
                "{at}: Skaffold's field {} is {}",
                g.number(),
                g.name()
            ));
        }
        let compatible = match (f.kind(), g.kind()) {
            (Kind::Bytes, Kind::String | Kind::Bytes) => true,
            (Kind::Int32, Kind::Int32 | Kind::Enum(_)) => true,
            (Kind::Message(a), Kind::Message(b)) => full_name(a.full_name()) == b.full_name(),
            (a, b) => a == b,
        };
        if !compatible {
            out.push(format!(
                "{at}: {:?} is not wire-compatible with {:?}",
                f.kind(),
                g.kind()
            ));
        }
        if f.cardinality() != g.cardinality() {
            out.push(format!("{at}: cardinality differs"));
        }
        let oneof = |o: Option<prost_reflect::OneofDescriptor>| o.map(|o| o.name().to_owned());
        if oneof(f.containing_oneof()) != oneof(g.containing_oneof()) {
            out.push(format!("{at}: not in the same oneof"));
        }
    }
    for o in lean.oneofs() {
        let lean_members: Vec<u32> = o.fields().map(|f| f.number()).collect();
        for g in full.oneofs().filter(|g| g.name() == o.name()) {
            for m in g.fields() {
                if !lean_members.contains(&m.number()) {
                    out.push(format!("{name}.{}: member {} missing", o.name(), m.name()));
                }
            }
        }
    }
    out
}

#[test]
fn every_lean_field_is_skaffolds_field_and_every_event_kind_is_there() {
    let pool = pool();
    let lean: Vec<MessageDescriptor> = pool
        .all_messages()
        .filter(|m| m.package_name().starts_with("lean."))
        .collect();
    assert!(
        lean.len() > 20,
        "the lean messages are in the descriptor set"
    );
    let wrong: Vec<String> = lean.iter().flat_map(|m| mismatches(&pool, m)).collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The check itself catches what it is for.
    let msg = |n: &str| pool.get_message_by_name(n).expect(n);
    // Another name at the same number (TaskEvent's `task` is field 2, BuildSubtask's
    // `task_id`), and a string where Skaffold has an int32 (`iteration` = 4 vs `step`).
    let wrong = subset_errors(
        &msg("lean.v2.TaskEvent"),
        &msg("proto.v2.BuildSubtaskEvent"),
    );
    assert!(
        wrong
            .iter()
            .any(|w| w.contains("task = 2: Skaffold's field 2 is task_id")),
        "{wrong:?}"
    );
    assert!(
        wrong.iter().any(|w| w.contains("not wire-compatible")),
        "{wrong:?}"
    );
    // A oneof member missing: v1's Event has 11 kinds, v2's 16.
    let wrong = subset_errors(&msg("lean.v1.Event"), &msg("proto.v2.Event"));
    assert!(wrong.iter().any(|w| w.contains("member")), "{wrong:?}");
}

fn script(flavor: Flavor, steps: usize) -> Script {
    let mut s = Script::new();
    for script in Session::new(flavor, 11) {
        if s.steps.len() >= steps {
            break;
        }
        s.steps.extend(script.steps);
    }
    s
}

const START: i64 = 1_700_000_000_000_000_000;

fn check_v1(frames: &[Vec<u8>]) -> usize {
    let mut decoded = 0;
    for f in frames {
        let full = v1::LogEntry::decode(&f[..]);
        let lean = lean::v1::LogEntry::decode(Bytes::from(f.clone()));
        match (full, lean) {
            (Ok(full), Ok(lean)) => {
                assert_eq!(lean, lean::v1::LogEntry::of(&full));
                decoded += 1;
            }
            (Err(_), Err(_)) => {}
            (full, lean) => panic!("full {full:?} vs lean {lean:?}"),
        }
    }
    decoded
}

fn check_v2(frames: &[Vec<u8>]) -> usize {
    let mut decoded = 0;
    for f in frames {
        let full = v2::Event::decode(&f[..]);
        let lean = lean::v2::Event::decode(Bytes::from(f.clone()));
        match (full, lean) {
            (Ok(full), Ok(lean)) => {
                assert_eq!(lean, lean::v2::Event::of(&full));
                decoded += 1;
            }
            (Err(_), Err(_)) => {}
            (full, lean) => panic!("full {full:?} vs lean {lean:?}"),
        }
    }
    decoded
}

#[test]
fn real_skaffold_messages_decode_the_same_lean_as_full() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let v1_frames = support::capture_frames(&dir.join("v1.grpc.bin"));
    let v2_frames = support::capture_frames(&dir.join("v2.grpc.bin"));
    assert!(
        v1_frames.len() > 40 && v2_frames.len() > 40,
        "the captures are there"
    );
    assert_eq!(
        check_v1(&v1_frames),
        v1_frames.len(),
        "every real v1 message decodes"
    );
    assert_eq!(
        check_v2(&v2_frames),
        v2_frames.len(),
        "every real v2 message decodes"
    );
}

#[test]
fn simulated_sessions_decode_the_same_lean_as_full() {
    for flavor in [Flavor::Normal, Flavor::DeployFailures] {
        let s = script(flavor, 3000);
        let v1: Vec<Vec<u8>> = s
            .entries(START)
            .iter()
            .map(Message::encode_to_vec)
            .collect();
        let v2: Vec<Vec<u8>> = s
            .events_v2(START)
            .iter()
            .map(Message::encode_to_vec)
            .collect();
        assert_eq!(check_v1(&v1), v1.len());
        assert_eq!(check_v2(&v2), v2.len());
    }
}
