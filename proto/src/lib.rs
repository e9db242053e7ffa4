//! The orex gRPC contract, generated from `proto/orex/**/*.proto`.
//!
//! Each module mirrors one protobuf package (`orex.sharing.v1` is
//! [`sharing::v1`]). [`FILE_DESCRIPTOR_SET`] is what every server registers for
//! gRPC server reflection.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

pub mod codec;

/// The encoded `FileDescriptorSet` of every orex .proto file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/orex_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("orex.common.v1");
    }
}

pub mod sharing {
    pub mod v1 {
        tonic::include_proto!("orex.sharing.v1");
    }
}

pub mod risk {
    pub mod v1 {
        tonic::include_proto!("orex.risk.v1");
    }
}

pub mod emergency {
    pub mod v1 {
        tonic::include_proto!("orex.emergency.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("orex.audit.v1");
    }
}
