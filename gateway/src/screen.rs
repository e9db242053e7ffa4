//! Data-level rules at the gateway: every report in every answer and every
//! streamed event passes the marking rules again before it leaves, so a
//! backend that errs cannot leak a report to a member who may not see it.

use orex_membership::{Audience, Partnership, Principal};
use orex_proto::sharing::v1::Report;

/// True when `who` may see `report` (this version's marking and recipients).
pub fn may_see(partnership: &Partnership, who: &Principal, report: &Report) -> bool {
    let Some(c) = &report.content else {
        return false;
    };
    let Some(author) = &report.author else {
        return false;
    };
    partnership.can_see(
        who,
        &Audience {
            marking: c.marking(),
            author,
            recipient_members: &c.recipient_members,
            recipient_principals: &c.recipient_principals,
        },
    )
}

/// The author member of a report, for the access record.
pub fn owner(report: &Report) -> Option<String> {
    report.author.as_ref().map(|a| a.member.clone())
}
