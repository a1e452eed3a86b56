//! Our protos (`proto/skaffold/{v1,v2,enums}`, compiled by `build.rs`) against
//! Skaffold's own, vendored unchanged under `tests/fixtures/skaffold-proto/` (origin
//! in its README). Both are compiled and described as the same flat list of facts
//! (every enum value, every field with number, type, label, oneof and JSON name, every
//! reserved range, every RPC), so any drift shows as a named line: a StatusCode
//! Skaffold added and we lack, a field we miss, a field we invented.

use std::collections::BTreeSet;
use std::path::Path;

use prost_reflect::{Cardinality, DescriptorPool, Kind, MessageDescriptor};

const PACKAGES: [&str; 3] = ["proto", "proto.v2", "proto.enums"];

fn skaffold_pool() -> DescriptorPool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/skaffold-proto");
    let fds = protox::compile(
        [
            "enums/enums.proto",
            "v1/skaffold.proto",
            "v2/skaffold.proto",
        ],
        [root],
    )
    .expect("Skaffold's vendored protos compile");
    DescriptorPool::from_file_descriptor_set(fds).expect("a valid descriptor set")
}

fn our_pool() -> DescriptorPool {
    DescriptorPool::decode(skaffold_exporter::pb::FILE_DESCRIPTOR_SET).expect("build.rs output")
}

fn kind(k: &Kind) -> String {
    match k {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn describe_message(m: &MessageDescriptor, out: &mut BTreeSet<String>) {
    let name = m.full_name();
    out.insert(format!("message {name}"));
    for f in m.fields() {
        let label = if f.is_map() {
            "map".to_owned()
        } else {
            match f.cardinality() {
                Cardinality::Repeated => "repeated".to_owned(),
                Cardinality::Required => "required".to_owned(),
                Cardinality::Optional => "singular".to_owned(),
            }
        };
        let ty = if f.is_map() {
            let Kind::Message(entry) = f.kind() else {
                unreachable!("a map field has an entry message")
            };
            format!(
                "<{}, {}>",
                kind(&entry.map_entry_key_field().kind()),
                kind(&entry.map_entry_value_field().kind())
            )
        } else {
            kind(&f.kind())
        };
        let oneof = f
            .containing_oneof()
            .map(|o| format!(" in oneof {}", o.name()))
            .unwrap_or_default();
        out.insert(format!(
            "field {name}.{} = {} {label} {ty}{oneof} json={}",
            f.name(),
            f.number(),
            f.json_name()
        ));
    }
    for r in &m.descriptor_proto().reserved_range {
        out.insert(format!(
            "reserved {name} {}..{}",
            r.start.unwrap_or(0),
            r.end.unwrap_or(0)
        ));
    }
    for n in &m.descriptor_proto().reserved_name {
        out.insert(format!("reserved {name} {n}"));
    }
    for nested in m.child_messages() {
        if !nested.is_map_entry() {
            describe_message(&nested, out);
        }
    }
}

/// Everything about Skaffold's API packages in `pool`, one fact per line.
fn describe(pool: &DescriptorPool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in pool.all_messages() {
        let top_level = m.parent_message().is_none();
        if top_level && PACKAGES.contains(&m.package_name()) {
            describe_message(&m, &mut out);
        }
    }
    for e in pool.all_enums() {
        if !PACKAGES.contains(&e.package_name()) {
            continue;
        }
        out.insert(format!("enum {}", e.full_name()));
        for v in e.values() {
            out.insert(format!(
                "value {} {} = {}",
                e.full_name(),
                v.name(),
                v.number()
            ));
        }
    }
    for s in pool.services() {
        if !PACKAGES.contains(&s.package_name()) {
            continue;
        }
        for m in s.methods() {
            out.insert(format!(
                "rpc {}/{}({}{}) returns ({}{})",
                s.full_name(),
                m.name(),
                if m.is_client_streaming() {
                    "stream "
                } else {
                    ""
                },
                m.input().full_name(),
                if m.is_server_streaming() {
                    "stream "
                } else {
                    ""
                },
                m.output().full_name(),
            ));
        }
    }
    out
}

fn report(title: &str, lines: &BTreeSet<&String>) -> String {
    let mut s = format!("{title} ({}):\n", lines.len());
    for l in lines {
        s.push_str("  ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

#[test]
fn our_enums_have_every_value_of_skaffolds_enums() {
    let ours = describe(&our_pool());
    let theirs = describe(&skaffold_pool());
    let missing: BTreeSet<&String> = theirs
        .iter()
        .filter(|l| l.starts_with("enum ") || l.starts_with("value "))
        .filter(|l| !ours.contains(*l))
        .collect();
    assert!(
        missing.is_empty(),
        "{}",
        report(
            "enum values of Skaffold's proto missing from ours",
            &missing
        )
    );
    // The value the issue named, spelled out (Skaffold v2.17+).
    assert!(theirs.contains("value proto.enums.StatusCode RENDER_HELM_PLUGIN_ERR = 1410"));
}

#[test]
fn our_protos_describe_exactly_skaffolds_api() {
    let ours = describe(&our_pool());
    let theirs = describe(&skaffold_pool());
    assert!(
        theirs.len() > 500,
        "the description covers the whole API: {}",
        theirs.len()
    );
    let missing: BTreeSet<&String> = theirs.difference(&ours).collect();
    let extra: BTreeSet<&String> = ours.difference(&theirs).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}{}",
        report("in Skaffold's proto, not in ours", &missing),
        report("in ours, not in Skaffold's proto", &extra)
    );
}

#[test]
fn a_dropped_enum_value_or_a_renumbered_field_is_seen() {
    // The comparison can fail: our own descriptor set, with StatusCode 1410 dropped
    // and v2 TaskEvent.status moved from 5 to 99, describes exactly those differences.
    use prost::Message as _;
    let mut fds =
        prost_types::FileDescriptorSet::decode(skaffold_exporter::pb::FILE_DESCRIPTOR_SET).unwrap();
    for f in &mut fds.file {
        for e in f.enum_type.iter_mut().filter(|e| e.name() == "StatusCode") {
            e.value.retain(|v| v.name() != "RENDER_HELM_PLUGIN_ERR");
        }
        if f.package() != "proto.v2" {
            continue;
        }
        for m in f
            .message_type
            .iter_mut()
            .filter(|m| m.name() == "TaskEvent")
        {
            for field in m.field.iter_mut().filter(|x| x.name() == "status") {
                field.number = Some(99);
            }
        }
    }
    let mutated = describe(&DescriptorPool::from_file_descriptor_set(fds).unwrap());
    let ours = describe(&our_pool());
    let gone: Vec<&String> = ours.difference(&mutated).collect();
    let new: Vec<&String> = mutated.difference(&ours).collect();
    assert_eq!(
        gone,
        [
            "field proto.v2.TaskEvent.status = 5 singular string json=status",
            "value proto.enums.StatusCode RENDER_HELM_PLUGIN_ERR = 1410",
        ]
    );
    assert_eq!(
        new,
        ["field proto.v2.TaskEvent.status = 99 singular string json=status"]
    );
}
