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

pub use generated::proto as v1;
pub use generated::proto::enums;
pub use generated::proto::v2;

/// The encoded `FileDescriptorSet` of every proto in `proto/` (for JSON mapping).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/skaffold_descriptor.bin"));
