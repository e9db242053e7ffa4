//! Which roles may call which RPCs, as the policy file's `[roles]` table
//! says, checked against the real API so a typo cannot silently grant or
//! deny.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use prost::Message;

use crate::{PolicyError, Role};

/// Every RPC of the orex contract, as `package.Service/Method`.
pub fn all_methods() -> &'static BTreeSet<String> {
    static METHODS: OnceLock<BTreeSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let fds = prost_types::FileDescriptorSet::decode(orex_proto::FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set decodes");
        let mut out = BTreeSet::new();
        for file in fds.file {
            let package = file.package.unwrap_or_default();
            if !package.starts_with("orex.") {
                continue;
            }
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    out.insert(format!(
                        "{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    ));
                }
            }
        }
        out
    })
}

/// Role → the methods it may call.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    grants: BTreeMap<Role, BTreeSet<String>>,
}

impl Permissions {
    /// Builds permissions from the policy's `[roles]` table. Entries are full
    /// method names (`orex.sharing.v1.SharingService/GetReport`) or a whole
    /// service (`orex.audit.v1.AuditService/*`). Unknown roles and methods
    /// are errors naming them.
    pub fn from_table(table: &BTreeMap<String, Vec<String>>) -> Result<Self, PolicyError> {
        let methods = all_methods();
        let mut grants = BTreeMap::new();
        for (role_name, entries) in table {
            let role: Role = role_name.parse().map_err(|_| {
                PolicyError::Invalid(format!(
                    "[roles]: unknown role {role_name:?} (roles: reporter, reader, analyst, coordinator, auditor, admin)"
                ))
            })?;
            let mut set = BTreeSet::new();
            for entry in entries {
                let matched: Vec<&String> = match entry.strip_suffix("/*") {
                    Some(service) => methods
                        .iter()
                        .filter(|m| m.split_once('/').is_some_and(|(s, _)| s == service))
                        .collect(),
                    None => methods.iter().filter(|m| *m == entry).collect(),
                };
                if matched.is_empty() {
                    return Err(PolicyError::Invalid(format!(
                        "[roles].{role_name}: unknown method {entry:?}"
                    )));
                }
                set.extend(matched.into_iter().cloned());
            }
            grants.insert(role, set);
        }
        Ok(Self { grants })
    }

    /// True when any of `roles` may call `method`.
    pub fn allows(&self, roles: &[Role], method: &str) -> bool {
        roles
            .iter()
            .any(|r| self.grants.get(r).is_some_and(|m| m.contains(method)))
    }

    /// The roles that may call `method`, for a refusal message.
    pub fn roles_for(&self, method: &str) -> Vec<Role> {
        self.grants
            .iter()
            .filter(|(_, m)| m.contains(method))
            .map(|(r, _)| *r)
            .collect()
    }

    /// True when no role may call anything.
    pub fn is_empty(&self) -> bool {
        self.grants.values().all(BTreeSet::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(r, m)| (r.to_string(), m.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn wildcards_expand_to_a_services_methods() {
        let p = Permissions::from_table(&table(&[("auditor", &["orex.audit.v1.AuditService/*"])]))
            .unwrap();
        assert!(p.allows(
            &[Role::Auditor],
            "orex.audit.v1.AuditService/QueryAccessRecords"
        ));
        assert!(!p.allows(
            &[Role::Reader],
            "orex.audit.v1.AuditService/QueryAccessRecords"
        ));
        assert!(!p.allows(&[Role::Auditor], "orex.sharing.v1.SharingService/GetReport"));
    }

    #[test]
    fn unknown_roles_and_methods_are_named() {
        let err = Permissions::from_table(&table(&[("superuser", &[])])).unwrap_err();
        assert!(err.to_string().contains("superuser"), "{err}");
        let err = Permissions::from_table(&table(&[(
            "reader",
            &["orex.sharing.v1.SharingService/GetReports"],
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("GetReports"), "{err}");
    }
}
