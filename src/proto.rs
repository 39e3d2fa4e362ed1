//! Generated protobuf messages and gRPC stubs for `certfed.v1`.
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("certfed.v1");
}

/// Descriptor set of every certfed proto file and its imports, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("certfed_descriptor");
