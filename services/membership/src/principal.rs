//! An authenticated caller: a person or system of one member, with roles.

use std::fmt;
use std::str::FromStr;

use orex_proto::common::v1::PrincipalRef;

/// What a principal may do (DESIGN.md, "Principals and roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Publishes and amends reports.
    Reporter,
    /// Reads and subscribes.
    Reader,
    /// Runs risk queries and scenarios.
    Analyst,
    /// Manages stockpiles, declarations, votes and pledges.
    Coordinator,
    /// Reads access logs (never report contents unless also a reader).
    Auditor,
    /// Administers the partnership.
    Admin,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 6] = [
        Role::Reporter,
        Role::Reader,
        Role::Analyst,
        Role::Coordinator,
        Role::Auditor,
        Role::Admin,
    ];

    /// The lower-case name used in tokens and policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Reader => "reader",
            Role::Analyst => "analyst",
            Role::Coordinator => "coordinator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// A caller whose certificate and token have been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The member named by the client certificate (and matched by the token issuer).
    pub member: String,
    /// The token subject.
    pub subject: String,
    /// Roles granted by the token.
    pub roles: Vec<Role>,
}

impl Principal {
    /// True when the principal holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The principal as it appears in records (`member` + `subject`).
    pub fn as_ref(&self) -> PrincipalRef {
        PrincipalRef {
            member: self.member.clone(),
            subject: self.subject.clone(),
        }
    }

    /// True when `r` names this principal.
    pub fn is(&self, r: &PrincipalRef) -> bool {
        r.member == self.member && r.subject == self.subject
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.member, self.subject)
    }
}
