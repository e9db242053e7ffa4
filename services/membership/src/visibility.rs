//! FIRST TLP 2.0 visibility, as DESIGN.md defines it for the partnership.
//!
//! One function, [`Partnership::can_see`], answers "may this principal learn
//! that this record exists?". Gets, lists, histories and streams all call it,
//! so a hidden record is absent everywhere, not just in one path.

use orex_proto::common::v1::{Marking, PrincipalRef};

use crate::{Partnership, Principal};

/// Who a marked record is meant for.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    /// The record's TLP marking.
    pub marking: Marking,
    /// The principal that created the record.
    pub author: &'a PrincipalRef,
    /// Recipient members (AMBER, AMBER+STRICT).
    pub recipient_members: &'a [String],
    /// Recipient principals (RED).
    pub recipient_principals: &'a [PrincipalRef],
}

/// True when every member may see a record so marked (CLEAR or GREEN): the
/// only records a workload acting as itself (the risk service) may read, so
/// nothing it computes can reveal a restricted one.
pub fn partnership_wide(marking: Marking) -> bool {
    matches!(marking, Marking::Clear | Marking::Green)
}

impl Partnership {
    /// True when `viewer` may learn that a record with this audience exists.
    /// Suspended or unknown members see nothing; an unknown marking is
    /// visible to no one (fail closed).
    pub fn can_see(&self, viewer: &Principal, audience: &Audience<'_>) -> bool {
        if !self.is_active_member(&viewer.member) {
            return false;
        }
        let own_member = viewer.member == audience.author.member;
        match audience.marking {
            Marking::Clear | Marking::Green => true,
            Marking::Amber => {
                own_member
                    || audience.recipient_members.iter().any(|r| {
                        *r == viewer.member || self.bloc_of(&viewer.member) == Some(r.as_str())
                    })
            }
            Marking::AmberStrict => {
                own_member || audience.recipient_members.contains(&viewer.member)
            }
            Marking::Red => {
                viewer.is(audience.author)
                    || audience.recipient_principals.iter().any(|p| viewer.is(p))
            }
            Marking::Unspecified => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::Role;

    fn partnership() -> Partnership {
        Partnership::parse(
            r#"
            [[members]]
            code = "US"
            name = "United States"
            kind = "state"
            [[members]]
            code = "EU"
            name = "European Union"
            kind = "bloc"
            [[members]]
            code = "DE"
            name = "Germany"
            kind = "state"
            bloc = "EU"
            [[members]]
            code = "JP"
            name = "Japan"
            kind = "state"
            [[members]]
            code = "KR"
            name = "Korea"
            kind = "state"
            status = "suspended"
            "#,
            Path::new("."),
        )
        .unwrap()
    }

    fn who(member: &str, subject: &str) -> Principal {
        Principal {
            member: member.into(),
            subject: subject.into(),
            roles: vec![Role::Reader],
        }
    }

    fn author() -> PrincipalRef {
        PrincipalRef {
            member: "US".into(),
            subject: "alice".into(),
        }
    }

    #[test]
    fn amber_to_a_bloc_reaches_its_states_but_strict_does_not() {
        let p = partnership();
        let a = author();
        let eu = vec!["EU".to_string()];
        let amber = Audience {
            marking: Marking::Amber,
            author: &a,
            recipient_members: &eu,
            recipient_principals: &[],
        };
        assert!(p.can_see(&who("DE", "x"), &amber));
        assert!(p.can_see(&who("EU", "x"), &amber));
        assert!(p.can_see(&who("US", "bob"), &amber));
        assert!(!p.can_see(&who("JP", "x"), &amber));
        let strict = Audience {
            marking: Marking::AmberStrict,
            ..amber
        };
        assert!(!p.can_see(&who("DE", "x"), &strict));
        assert!(p.can_see(&who("EU", "x"), &strict));
    }

    #[test]
    fn red_reaches_named_principals_and_author_only() {
        let p = partnership();
        let a = author();
        let named = vec![PrincipalRef {
            member: "DE".into(),
            subject: "carol".into(),
        }];
        let red = Audience {
            marking: Marking::Red,
            author: &a,
            recipient_members: &[],
            recipient_principals: &named,
        };
        assert!(p.can_see(&who("US", "alice"), &red));
        assert!(p.can_see(&who("DE", "carol"), &red));
        assert!(!p.can_see(&who("US", "bob"), &red));
        assert!(!p.can_see(&who("DE", "dave"), &red));
    }

    #[test]
    fn suspended_members_and_unknown_markings_see_nothing() {
        let p = partnership();
        let a = author();
        let clear = Audience {
            marking: Marking::Clear,
            author: &a,
            recipient_members: &[],
            recipient_principals: &[],
        };
        assert!(!p.can_see(&who("KR", "x"), &clear));
        assert!(!p.can_see(&who("ZZ", "x"), &clear));
        let unknown = Audience {
            marking: Marking::Unspecified,
            ..clear
        };
        assert!(!p.can_see(&who("US", "alice"), &unknown));
    }
}
