//! `--json` output: any orex message in the canonical proto3 JSON mapping
//! (lowerCamelCase names, enum names, RFC 3339 timestamps), the same a
//! client in any language gets from its own protobuf library, built from
//! the descriptor set compiled into `orex_proto`.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::CliError;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(orex_proto::FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set decodes")
    })
}

/// `message` (of protobuf type `full_name`, such as
/// `orex.risk.v1.SupplyRisk`) as one line of JSON.
pub fn line<M: prost::Message>(full_name: &str, message: &M) -> Result<String, CliError> {
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| CliError::Invalid(format!("no message type {full_name}")))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| CliError::Invalid(format!("{full_name}: {e}")))?;
    serde_json::to_string(&dynamic).map_err(|e| CliError::Invalid(format!("{full_name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_print_in_the_proto3_json_mapping() {
        let s = orex_proto::risk::v1::SupplierDependence {
            country: "CN".into(),
            share: 0.7,
            ceiling: 0.65,
            exceeds_ceiling: true,
        };
        let text = line("orex.risk.v1.SupplierDependence", &s).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["exceedsCeiling"], true);
        assert_eq!(v["country"], "CN");
        let alert = orex_proto::risk::v1::RiskAlert {
            kind: orex_proto::risk::v1::RiskAlertKind::PriceDumping as i32,
            ..Default::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&line("orex.risk.v1.RiskAlert", &alert).unwrap()).unwrap();
        assert_eq!(v["kind"], "RISK_ALERT_KIND_PRICE_DUMPING");
    }
}
