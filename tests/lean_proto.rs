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
//!   decode does, and gives the lean view of the full message;
//! - the gRPC source's in-place reader of v1 (`source::v1_view`) agrees with prost's
//!   decode of the lean `LogEntry` on those messages and on many mutations of them
//!   (merged, repeated, unknown and grouped fields, bad keys, varints and lengths):
//!   it fails exactly when prost does and otherwise reads the same fields.

use std::path::Path;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

use skaffold_exporter::pb::{self, lean, v1, v2};
use skaffold_exporter::simulator::scenario::{Flavor, Script, Session};
use skaffold_exporter::source::v1_view;

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

// === the in-place v1 reader against prost ===

fn view_err(a: &Option<lean::v1::ActionableErr>) -> Option<v1_view::ActionableErr<'_>> {
    a.as_ref().map(|a| v1_view::ActionableErr {
        err_code: a.err_code,
        message: &a.message,
    })
}

/// The in-place view of what prost decoded.
fn view_of(e: &lean::v1::LogEntry) -> v1_view::LogEntry<'_> {
    v1_view::LogEntry {
        timestamp: e.timestamp,
        event: e.event.as_ref().map(|ev| v1_view::Event {
            event_type: ev.event_type.as_ref().map(member_view),
        }),
    }
}

fn member_view(t: &lean::v1::event::EventType) -> v1_view::EventType<'_> {
    use lean::v1::event::EventType as L;
    use v1_view::EventType as V;
    match t {
        L::MetaEvent(m) => V::MetaEvent(v1_view::MetaEvent { entry: &m.entry }),
        L::BuildEvent(b) => V::BuildEvent(v1_view::BuildEvent {
            artifact: &b.artifact,
            status: &b.status,
            err: &b.err,
            err_code: b.err_code,
            actionable_err: view_err(&b.actionable_err),
        }),
        L::DeployEvent(d) => V::DeployEvent(v1_view::DeployEvent {
            status: &d.status,
            err: &d.err,
            err_code: d.err_code,
            actionable_err: view_err(&d.actionable_err),
        }),
        L::PortEvent(p) => V::PortEvent(v1_view::PortEvent {
            local_port: p.local_port,
            namespace: &p.namespace,
            resource_type: &p.resource_type,
            resource_name: &p.resource_name,
        }),
        L::StatusCheckEvent(c) => V::StatusCheckEvent(v1_view::StatusCheckEvent {
            status: &c.status,
            err: &c.err,
            err_code: c.err_code,
            actionable_err: view_err(&c.actionable_err),
        }),
        L::ResourceStatusCheckEvent(r) => {
            V::ResourceStatusCheckEvent(v1_view::ResourceStatusCheckEvent {
                resource: &r.resource,
                status: &r.status,
                err: &r.err,
                status_code: r.status_code,
                actionable_err: view_err(&r.actionable_err),
            })
        }
        L::FileSyncEvent(f) => V::FileSyncEvent(v1_view::FileSyncEvent {
            file_count: f.file_count,
            image: &f.image,
            status: &f.status,
            err: &f.err,
            err_code: f.err_code,
            actionable_err: view_err(&f.actionable_err),
        }),
        L::DebuggingContainerEvent(_) => V::DebuggingContainerEvent,
        L::DevLoopEvent(d) => V::DevLoopEvent(v1_view::DevLoopEvent {
            iteration: d.iteration,
            status: &d.status,
            err: view_err(&d.err),
        }),
        L::TerminationEvent(t) => V::TerminationEvent(v1_view::TerminationEvent {
            status: &t.status,
            err: view_err(&t.err),
        }),
        L::TestEvent(t) => V::TestEvent(v1_view::TestEvent {
            status: &t.status,
            actionable_err: view_err(&t.actionable_err),
        }),
    }
}

/// Whether the in-place reader and prost agree on `bytes`; panics with both when not.
/// Returns whether they read a message.
fn agree(bytes: &[u8], what: &str) -> bool {
    let prost = lean::v1::LogEntry::decode(Bytes::copy_from_slice(bytes));
    let view = v1_view::read(bytes);
    match (&prost, &view) {
        (Ok(p), Ok(v)) => {
            assert_eq!(*v, view_of(p), "{what}: {bytes:02x?}");
            true
        }
        (Err(_), Err(_)) => false,
        _ => panic!("{what}: prost {prost:?}, in place {view:?}, bytes {bytes:02x?}"),
    }
}

/// A field's key.
fn key(number: u32, wire: u8) -> Vec<u8> {
    let mut k = Vec::new();
    prost::encoding::encode_varint(u64::from(number) << 3 | u64::from(wire), &mut k);
    k
}

/// Encoded fields and framing that exercise protobuf's rules: unknown fields of every
/// wire type and groups (nested, unterminated, mismatched), known fields with the
/// wrong wire type, extreme varints and keys, lengths past the end.
fn pieces() -> Vec<Vec<u8>> {
    let mut p: Vec<Vec<u8>> = vec![
        [key(15, 0), vec![0x96, 0x01]].concat(),
        [key(15, 1), vec![0; 8]].concat(),
        [key(15, 5), vec![0; 4]].concat(),
        [key(15, 2), vec![3, b'a', b'b', b'c']].concat(),
        [key(15, 3), key(16, 0), vec![1], key(15, 4)].concat(),
        [key(15, 3), key(16, 3), key(16, 4), key(15, 4)].concat(),
        [key(15, 3), key(16, 0), vec![1]].concat(),
        [key(15, 3), key(16, 4)].concat(),
        key(15, 4),
        [key(1, 0), vec![5]].concat(),
        [key(2, 0), vec![5]].concat(),
        [key(2, 5), vec![0; 4]].concat(),
        [key(1, 2), vec![0]].concat(),
        [key(2, 2), vec![0]].concat(),
        [key(2, 2), vec![2, 0x12, 0]].concat(),
        [key(2, 2), vec![2, 0x42, 0]].concat(),
        [key(2, 2), vec![5, 0x12, 3, 0x0a, 1, b'x']].concat(),
        [key(2, 2), vec![4, 0x4a, 2, 0x08, 7]].concat(),
        [key(2, 2), vec![6, 0x4a, 4, 0x1a, 2, 0x08, 7]].concat(),
        [key(2, 2), vec![4, 0x12, 2, 0x20, 9]].concat(),
        [key(2, 2), vec![4, 0x12, 2, 0x22, 0]].concat(),
        [
            key(1, 2),
            vec![
                11, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ]
        .concat(),
        [
            key(1, 2),
            vec![
                11, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
        ]
        .concat(),
        [key(1, 2), vec![6, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f]].concat(),
        vec![0x80, 0x80, 0x80, 0x80, 0x10, 0],
        vec![0x00, 0],
        vec![0x07, 0],
        vec![0x06, 0],
        [key(2, 2), vec![0x7f]].concat(),
        [
            key(2, 2),
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ]
        .concat(),
    ];
    // Groups nested past prost's recursion limit, and just within it: at the top, and
    // inside Event -> BuildEvent -> ActionableErr (three levels down).
    let groups = |depth: usize| {
        let mut g = Vec::new();
        for _ in 0..depth {
            g.extend(key(15, 3));
        }
        for _ in 0..depth {
            g.extend(key(15, 4));
        }
        g
    };
    let framed = |number: u32, body: &[u8]| {
        let mut f = key(number, 2);
        prost::encoding::encode_varint(body.len() as u64, &mut f);
        f.extend_from_slice(body);
        f
    };
    for depth in [99, 100, 101] {
        p.push(groups(depth));
    }
    for depth in [96, 97, 98] {
        let err = framed(5, &groups(depth));
        p.push(framed(2, &framed(2, &err)));
    }
    p
}

#[test]
fn the_in_place_v1_reader_agrees_with_prost() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut messages = support::capture_frames(&dir.join("v1.grpc.bin"));
    for flavor in [Flavor::Normal, Flavor::DeployFailures] {
        messages.extend(
            script(flavor, 1500)
                .entries(START)
                .iter()
                .map(Message::encode_to_vec),
        );
    }
    let mut read = 0;
    for (i, m) in messages.iter().enumerate() {
        assert!(agree(m, &format!("message {i}")), "message {i} reads");
        read += 1;
    }
    assert!(read > 1000, "{read} messages");
    // Every piece alone, before and after a message, and between two messages (a
    // message given twice merges).
    let pieces = pieces();
    let (mut ok, mut failed) = (0, 0);
    for (j, piece) in pieces.iter().enumerate() {
        for m in messages.iter().step_by(97) {
            for bytes in [
                piece.clone(),
                [m.as_slice(), piece].concat(),
                [piece.as_slice(), m].concat(),
                [m.as_slice(), piece, m].concat(),
            ] {
                if agree(&bytes, &format!("piece {j}")) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    // Two different messages one after the other: their events merge or replace.
    for w in messages.windows(2).step_by(7) {
        agree(&[w[0].as_slice(), &w[1]].concat(), "two messages");
    }
    // Random mutations.
    let mut rng = fastrand::Rng::with_seed(0x5ca1_f01d);
    for round in 0..20_000 {
        let mut m = messages[rng.usize(0..messages.len())].clone();
        for _ in 0..rng.usize(1..=4) {
            let len = m.len();
            let at = rng.usize(0..=len);
            match rng.u8(0..6) {
                0 if len > 0 => m[at.min(len - 1)] ^= 1 << rng.u8(0..8),
                1 if len > 0 => m[at.min(len - 1)] = rng.u8(..),
                2 => m.truncate(at),
                3 => {
                    let p = &pieces[rng.usize(0..pieces.len())];
                    m.splice(at..at, p.iter().copied());
                }
                4 if len > 0 => {
                    let end = (at + rng.usize(1..=32)).min(len);
                    m.drain(at.min(end)..end);
                }
                _ => {
                    let other = &messages[rng.usize(0..messages.len())];
                    m.splice(at..at, other.iter().copied());
                }
            }
        }
        if agree(&m, &format!("mutation {round}")) {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    // Both outcomes were exercised, many times.
    assert!(ok > 2000 && failed > 2000, "read {ok}, failed {failed}");
}
