//! Generated gRPC types for `callcenter.agent.v1` and `callcenter.supervisor.v1`
//! (issue 6). The .proto files under `proto/callcenter/` are the documentation of
//! every message and field; this crate only includes what `build.rs` generated.

// Generated code: its doc comments are the .proto comments, and it is not ours to lint.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// The `callcenter` protobuf package tree.
pub mod callcenter {
    /// `callcenter.agent.*`
    pub mod agent {
        /// `callcenter.agent.v1`: the agent desktop API.
        pub mod v1 {
            tonic::include_proto!("callcenter.agent.v1");
        }
    }
    /// `callcenter.supervisor.*`
    pub mod supervisor {
        /// `callcenter.supervisor.v1`: the supervisor API.
        pub mod v1 {
            tonic::include_proto!("callcenter.supervisor.v1");
        }
    }
}

pub use callcenter::agent::v1 as agent;
pub use callcenter::supervisor::v1 as supervisor;

/// The encoded `FileDescriptorSet` of both packages, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/callcenter_descriptor.bin"));
