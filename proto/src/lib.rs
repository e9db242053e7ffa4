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

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("orex.admin.v1");
    }
}

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

/// Minerals and stages as files, records and people write them
/// (`light_rare_earths`, `refining`), and back: one spelling everywhere.
pub mod names {
    use crate::common::v1::{Mineral, Stage};

    /// `gallium`, `light_rare_earths`.
    pub fn mineral(m: Mineral) -> String {
        word(m.as_str_name(), "MINERAL_")
    }

    /// `refining`.
    pub fn stage(s: Stage) -> String {
        word(s.as_str_name(), "STAGE_")
    }

    /// The mineral named `name` (any case; `-` or `_` between words);
    /// never UNSPECIFIED.
    pub fn parse_mineral(name: &str) -> Option<Mineral> {
        Mineral::from_str_name(&format!("MINERAL_{}", upper(name)))
            .filter(|m| *m != Mineral::Unspecified)
    }

    /// The stage named `name` (any case); never UNSPECIFIED.
    pub fn parse_stage(name: &str) -> Option<Stage> {
        Stage::from_str_name(&format!("STAGE_{}", upper(name))).filter(|s| *s != Stage::Unspecified)
    }

    fn word(name: &str, prefix: &str) -> String {
        name.strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase()
    }

    fn upper(name: &str) -> String {
        name.trim().to_ascii_uppercase().replace('-', "_")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_round_trip() {
            assert_eq!(mineral(Mineral::LightRareEarths), "light_rare_earths");
            assert_eq!(
                parse_mineral("Light-Rare-Earths"),
                Some(Mineral::LightRareEarths)
            );
            assert_eq!(stage(Stage::Refining), "refining");
            assert_eq!(parse_stage("REFINING"), Some(Stage::Refining));
            assert_eq!(parse_mineral("unspecified"), None);
            assert_eq!(parse_stage("smelting"), None);
        }
    }
}
