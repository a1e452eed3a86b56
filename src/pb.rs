//! Generated protobuf types for Skaffold's API (compiled by `build.rs`).
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
    }
}

pub use generated::proto as v1;
pub use generated::proto::enums;

/// The encoded `FileDescriptorSet` of every proto in `proto/` (for JSON mapping).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/skaffold_descriptor.bin"));
