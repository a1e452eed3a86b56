//! Generated protobuf types for Skaffold's API (compiled by `build.rs`): `v1`
//! (`package proto`), `v2` (`package proto.v2`, the v1.26+ layout) and the shared
//! `enums` (`package proto.enums`).
//!
//! Only the source decoders, the simulator and the servers touch these types; the
//! core works on [`crate::core::Event`].
#![allow(missing_docs, clippy::all, clippy::pedantic)]

mod generated {
    pub mod proto {
        tonic::include_proto!("proto");
        pub mod enums {
            tonic::include_proto!("proto.enums");
        }
        pub mod v2 {
            tonic::include_proto!("proto.v2");
        }
    }
}

/// The lean subsets of Skaffold's event messages (`proto/lean/`): only the fields the
/// fold reads, Skaffold's strings as `bytes::Bytes` slices of the received message.
/// The gRPC source decodes v2 into them; v1 it reads in place with the same fields
/// (`source::v1_view`), checked against the lean v1 decode by `tests/lean_proto.rs`.
pub mod lean {
    pub mod v1 {
        tonic::include_proto!("lean.v1");
    }
    pub mod v2 {
        tonic::include_proto!("lean.v2");
    }
}

impl lean::v1::LogEntry {
    /// The lean view of a full entry, by re-encoding it (tests).
    pub fn of(entry: &v1::LogEntry) -> Self {
        use prost::Message as _;
        Self::decode(bytes::Bytes::from(entry.encode_to_vec()))
            .expect("the lean LogEntry is a wire-compatible subset (tests/lean_proto.rs)")
    }
}

impl lean::v2::Event {
    /// The lean view of a full event, by re-encoding it (files, tests).
    pub fn of(event: &v2::Event) -> Self {
        use prost::Message as _;
        Self::decode(bytes::Bytes::from(event.encode_to_vec()))
            .expect("the lean Event is a wire-compatible subset (tests/lean_proto.rs)")
    }
}

pub use generated::proto as v1;
pub use generated::proto::enums;
pub use generated::proto::v2;

/// The encoded `FileDescriptorSet` of every proto in `proto/` (for JSON mapping).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/skaffold_descriptor.bin"));
