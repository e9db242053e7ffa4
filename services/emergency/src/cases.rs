//! The shortage case state machine: each function takes a case as stored
//! and returns the events a call appends (the case as of each), or why the
//! call is not allowed in the case's status. Pure: no clock, no store — the
//! store runs these inside its transaction, the tests on their own.
//!
//! ```text
//! DeclareShortage ─▶ VOTING ──vote meets the rule──▶ ACTIVE ──CloseCase──▶ CLOSED
//!                      │ └─vote makes it impossible─▶ REJECTED
//!                      └──deadline passes──────────▶ EXPIRED
//! ```

use orex_proto::common::v1::{Mineral, PrincipalRef};
use orex_proto::emergency::v1::{
    CaseEventKind, CaseStatus, Fulfilment, MemberAllocation, Pledge, ShortageCase,
    ShortageDeclaration, Stockpile, Vote, VoteChoice, VoteTally,
};
use orex_reference::ReferenceData;
use prost_types::Timestamp;

use crate::allocation::{Claim, allocate};
use crate::error::EmergencyError;
use crate::stockpile::figures;
use crate::voting::{self, Choice, Electorate, Outcome, Rule, VoteError};

type Result<T> = std::result::Result<T, EmergencyError>;

/// The events one call appends.
pub type Events = Vec<(CaseEventKind, ShortageCase)>;

fn refuse(c: &ShortageCase, needs: &str) -> EmergencyError {
    EmergencyError::case_status(
        &c.id,
        format!(
            "case {} is {}; {needs}",
            c.id,
            c.status().as_str_name().trim_start_matches("CASE_STATUS_")
        ),
    )
}

fn stepped(mut c: ShortageCase, kind: CaseEventKind, events: &mut Events) -> ShortageCase {
    c.version += 1;
    events.push((kind, c.clone()));
    c
}

/// The rule `c` was declared under (kept in its tally), so a configuration
/// changed since never applies to a running vote; `configured` only for a
/// case stored before cases kept their rule.
fn rule_of(c: &ShortageCase, configured: &Rule) -> Rule {
    let t = c.tally.as_ref();
    let kept = |w: Option<&String>| w.and_then(|w| crate::voting::Threshold::parse(w));
    match (
        kept(t.map(|t| &t.founding_threshold)),
        kept(t.map(|t| &t.others_threshold)),
    ) {
        (Some(founding), Some(others)) => Rule { founding, others },
        _ => *configured,
    }
}

/// The tally of `c`'s votes under its rule, as the contract shows it.
fn tally_of(c: &ShortageCase, configured: &Rule) -> Result<(VoteTally, Outcome)> {
    let rule = &rule_of(c, configured);
    let stored = c.tally.clone().unwrap_or_default();
    let electorate = Electorate::from_eligible(
        stored.eligible_voting_members.clone(),
        stored.founding_members,
    )
    .map_err(|e| EmergencyError::Internal(format!("stored electorate: {e}")))?;
    let votes = choices(c);
    let t = voting::tally(rule, &electorate, &votes)
        .map_err(|e| EmergencyError::Internal(format!("stored votes: {e}")))?;
    Ok((tally_message(rule, &electorate, &t), t.outcome()))
}

fn tally_message(rule: &Rule, electorate: &Electorate, t: &voting::Tally) -> VoteTally {
    VoteTally {
        eligible_voting_members: electorate.eligible(),
        founding_members: electorate.founding().to_vec(),
        approvals: t.approvals,
        rejections: t.rejections,
        pending_voting_members: t.pending.clone(),
        activation_rule: rule.describe(),
        rule_met: t.rule_met,
        rule_still_possible: t.still_possible,
        founding_threshold: rule.founding.word(),
        others_threshold: rule.others.word(),
    }
}

fn choices(c: &ShortageCase) -> Vec<(String, Choice)> {
    c.votes
        .iter()
        .map(|v| {
            let choice = if v.choice() == VoteChoice::Approve {
                Choice::Approve
            } else {
                Choice::Reject
            };
            (v.voting_member.clone(), choice)
        })
        .collect()
}

/// A new case in VOTING, with its electorate fixed now.
pub fn declare(
    id: &str,
    declaration: ShortageDeclaration,
    by: PrincipalRef,
    at: Timestamp,
    electorate: &Electorate,
    rule: &Rule,
) -> Result<Events> {
    let t = voting::tally(rule, electorate, &[])
        .map_err(|e| EmergencyError::Internal(format!("empty tally: {e}")))?;
    let case = ShortageCase {
        id: id.to_owned(),
        status: CaseStatus::Voting as i32,
        declaration: Some(declaration),
        declared_by: Some(by),
        declared_at: Some(at),
        tally: Some(tally_message(rule, electorate, &t)),
        version: 0,
        ..Default::default()
    };
    let mut events = Events::new();
    stepped(case, CaseEventKind::Declared, &mut events);
    Ok(events)
}

/// True when `c`'s voting deadline has passed at `now`.
pub fn voting_closed(c: &ShortageCase, now: &Timestamp) -> bool {
    let deadline = c
        .declaration
        .as_ref()
        .and_then(|d| d.voting_deadline)
        .unwrap_or_default();
    orex_kit::fields::nanos(now) >= orex_kit::fields::nanos(&deadline)
}

/// What an activation needs beyond the case.
pub struct Split<'a> {
    /// A voting party's latest stockpile report of the case's mineral.
    pub stockpile_of: &'a dyn Fn(&str) -> Result<Option<Stockpile>>,
    /// Consumption for parties that withheld figures.
    pub reference: &'a ReferenceData,
}

impl std::fmt::Debug for Split<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("reference", &self.reference.version)
            .finish_non_exhaustive()
    }
}

/// One vote as cast.
#[derive(Debug, Clone)]
pub struct Ballot {
    /// The voting party (the caster's bloc, for a bloc state).
    pub voting_member: String,
    /// APPROVE or REJECT (never UNSPECIFIED: validated before).
    pub choice: VoteChoice,
    /// The caster's explanation.
    pub comment: String,
    /// The principal casting it.
    pub by: PrincipalRef,
    /// When.
    pub at: Timestamp,
}

/// The vote of `ballot.voting_member`; the case becomes ACTIVE (with
/// allocations) or REJECTED on the vote that decides it, under the rule the
/// case was declared with (`configured` only for older cases).
pub fn vote(
    c: ShortageCase,
    ballot: &Ballot,
    configured: &Rule,
    split: &Split<'_>,
) -> Result<Events> {
    let rule = &rule_of(&c, configured);
    let Ballot {
        voting_member,
        choice,
        comment,
        by,
        at,
    } = ballot.clone();
    let voting_member = voting_member.as_str();
    if c.status() != CaseStatus::Voting {
        return Err(refuse(&c, "votes are taken only while it is VOTING"));
    }
    if voting_closed(&c, &at) {
        return Err(refuse(
            &c,
            "its voting deadline has passed; the case expires",
        ));
    }
    let stored = c.tally.clone().unwrap_or_default();
    let electorate =
        Electorate::from_eligible(stored.eligible_voting_members, stored.founding_members)
            .map_err(|e| EmergencyError::Internal(format!("stored electorate: {e}")))?;
    let ballot = if choice == VoteChoice::Approve {
        Choice::Approve
    } else {
        Choice::Reject
    };
    let t = voting::cast(rule, &electorate, &choices(&c), voting_member, ballot).map_err(
        |e| match e {
            VoteError::AlreadyVoted { voter } => EmergencyError::AlreadyVoted(format!(
                "{voter} already voted on case {}; a voting member votes once",
                c.id
            )),
            VoteError::NotEligible { voter } => EmergencyError::PermissionDenied(
                orex_kit::status::Reason::NotEligibleToVote,
                format!(
                    "{voter} is not among the voting members of case {} (fixed when it was declared)",
                    c.id
                ),
            ),
            VoteError::Decided { .. } => refuse(&c, "its vote is already decided"),
        },
    )?;
    let mut events = Events::new();
    let mut next = c;
    next.votes.push(Vote {
        voting_member: voting_member.to_owned(),
        choice: choice as i32,
        comment,
        cast_by: Some(by),
        cast_at: Some(at),
    });
    next.tally = Some(tally_message(rule, &electorate, &t));
    let mut next = stepped(next, CaseEventKind::VoteCast, &mut events);
    match t.outcome() {
        Outcome::Pending => {}
        Outcome::Activate => {
            let mineral = next
                .declaration
                .as_ref()
                .and_then(|d| Mineral::try_from(d.mineral).ok())
                .unwrap_or_default();
            let total = next
                .declaration
                .as_ref()
                .map_or(0.0, |d| d.total_release_tonnes);
            let (allocations, unallocated) = allocations(&electorate, mineral, total, split)?;
            next.status = CaseStatus::Active as i32;
            next.activated_at = Some(at);
            next.allocations = allocations;
            next.unallocated_tonnes = unallocated;
            stepped(next, CaseEventKind::Activated, &mut events);
        }
        Outcome::Reject => {
            next.status = CaseStatus::Rejected as i32;
            next.ended_at = Some(at);
            stepped(next, CaseEventKind::Rejected, &mut events);
        }
    }
    Ok(events)
}

/// Each voting party's share of `total`: by its reported consumption
/// capped by its reported stockpile (CLEAR or GREEN figures), or — when it
/// withheld its figures, restricted them, or reported none — by the
/// reference data's consumption, uncapped
/// (`allocation.rs` says why an uncapped party absorbs what caps cut).
fn allocations(
    electorate: &Electorate,
    mineral: Mineral,
    total: f64,
    split: &Split<'_>,
) -> Result<(Vec<MemberAllocation>, f64)> {
    let mut claims = Vec::new();
    for member in electorate.eligible() {
        let reported = (split.stockpile_of)(&member)?;
        // A case is seen by every member, and a cap or a consumption share
        // gives the figures away: only figures every member may see count;
        // restricted ones are treated as withheld.
        let usable = reported.as_ref().filter(|s| {
            s.content
                .as_ref()
                .is_some_and(|c| orex_membership::partnership_wide(c.marking()))
        });
        let claim = match usable.and_then(figures) {
            Some(f) => Claim {
                member,
                consumption_tonnes_per_year: f.consumption_tonnes_per_year,
                cap_tonnes: Some(f.stockpile_tonnes),
            },
            None => Claim {
                consumption_tonnes_per_year: split
                    .reference
                    .consumption
                    .get(&(member.clone(), mineral))
                    .map_or(0.0, |c| c.tonnes_per_year),
                member,
                cap_tonnes: None,
            },
        };
        claims.push(claim);
    }
    let split = allocate(total, &claims)
        .map_err(|e| EmergencyError::Internal(format!("allocation: {e}")))?;
    let allocations = split
        .allocations
        .into_iter()
        .map(|a| MemberAllocation {
            member: a.member,
            consumption_tonnes_per_year: a.consumption_tonnes_per_year,
            consumption_share: a.consumption_share,
            stockpile_cap_tonnes: a.cap_tonnes,
            capped: a.capped,
            allocated_tonnes: a.allocated_tonnes,
            pledged_tonnes: 0.0,
            fulfilled_tonnes: 0.0,
        })
        .collect();
    Ok((allocations, split.unallocated_tonnes))
}

/// The allocation a member's pledges count toward: its voting party's.
fn allocation_of<'a>(
    c: &'a mut ShortageCase,
    voting_member: &str,
) -> Option<&'a mut MemberAllocation> {
    c.allocations.iter_mut().find(|a| a.member == voting_member)
}

/// A pledge by `by`'s member (counted toward `voting_member`'s allocation).
pub fn pledge(
    c: ShortageCase,
    pledge_id: &str,
    voting_member: &str,
    tonnes: f64,
    note: &str,
    by: PrincipalRef,
    at: Timestamp,
) -> Result<(Events, Pledge)> {
    if c.status() != CaseStatus::Active {
        return Err(refuse(&c, "pledges are made only while it is ACTIVE"));
    }
    let p = Pledge {
        id: pledge_id.to_owned(),
        member: by.member.clone(),
        tonnes,
        fulfilled_tonnes: 0.0,
        note: note.to_owned(),
        pledged_by: Some(by),
        pledged_at: Some(at),
    };
    let mut next = c;
    next.pledges.push(p.clone());
    if let Some(a) = allocation_of(&mut next, voting_member) {
        a.pledged_tonnes += tonnes;
    }
    let mut events = Events::new();
    stepped(next, CaseEventKind::ReleasePledged, &mut events);
    Ok((events, p))
}

/// A delivery against pledge `pledge_id` of `by`'s member.
#[allow(clippy::too_many_arguments)]
pub fn fulfil(
    c: ShortageCase,
    fulfilment_id: &str,
    pledge_id: &str,
    voting_member: &str,
    tonnes: f64,
    delivered_at: Timestamp,
    note: &str,
    by: PrincipalRef,
    at: Timestamp,
) -> Result<(Events, Fulfilment)> {
    if c.status() != CaseStatus::Active {
        return Err(refuse(
            &c,
            "deliveries are recorded only while it is ACTIVE",
        ));
    }
    let mut next = c;
    let Some(p) = next.pledges.iter_mut().find(|p| p.id == pledge_id) else {
        return Err(EmergencyError::NotFound(format!("pledge {pledge_id}")));
    };
    if p.member != by.member {
        return Err(EmergencyError::PermissionDenied(
            orex_kit::status::Reason::NotOwnMember,
            format!(
                "pledge {pledge_id} is {}'s; only its member records deliveries against it",
                p.member
            ),
        ));
    }
    // A small tolerance: tonnages are decimals a client may have summed.
    if p.fulfilled_tonnes + tonnes > p.tonnes * (1.0 + 1e-9) {
        return Err(EmergencyError::PledgeExceeded {
            subject: format!("pledge/{pledge_id}"),
            message: format!(
                "pledge {pledge_id} is for {} t and {} t are delivered; {tonnes} t more would exceed it",
                p.tonnes, p.fulfilled_tonnes
            ),
        });
    }
    p.fulfilled_tonnes += tonnes;
    let f = Fulfilment {
        id: fulfilment_id.to_owned(),
        pledge_id: pledge_id.to_owned(),
        member: by.member.clone(),
        tonnes,
        delivered_at: Some(delivered_at),
        note: note.to_owned(),
        recorded_by: Some(by),
        recorded_at: Some(at),
    };
    next.fulfilments.push(f.clone());
    if let Some(a) = allocation_of(&mut next, voting_member) {
        a.fulfilled_tonnes += tonnes;
    }
    let mut events = Events::new();
    stepped(next, CaseEventKind::FulfilmentRecorded, &mut events);
    Ok((events, f))
}

/// Closes an ACTIVE case; only the declaring member may.
pub fn close(c: ShortageCase, reason: &str, by: &PrincipalRef, at: Timestamp) -> Result<Events> {
    if c.status() != CaseStatus::Active {
        return Err(refuse(&c, "only an ACTIVE case can be closed"));
    }
    let declarer = c
        .declared_by
        .as_ref()
        .map(|p| p.member.clone())
        .unwrap_or_default();
    if declarer != by.member {
        return Err(EmergencyError::PermissionDenied(
            orex_kit::status::Reason::NotOwnMember,
            format!(
                "case {} was declared by {declarer}; only its coordinators close it",
                c.id
            ),
        ));
    }
    let mut next = c;
    next.status = CaseStatus::Closed as i32;
    next.ended_at = Some(at);
    next.close_reason = reason.to_owned();
    let mut events = Events::new();
    stepped(next, CaseEventKind::Closed, &mut events);
    Ok(events)
}

/// Expires a VOTING case whose deadline passed by `now`; nothing when it is
/// no longer VOTING or not yet due (the caller's view was stale).
pub fn expire(c: ShortageCase, now: Timestamp, rule: &Rule) -> Result<Events> {
    if c.status() != CaseStatus::Voting || !voting_closed(&c, &now) {
        return Ok(Events::new());
    }
    let (tally, _) = tally_of(&c, rule)?;
    let mut next = c;
    next.tally = Some(tally);
    next.status = CaseStatus::Expired as i32;
    next.ended_at = Some(now);
    let mut events = Events::new();
    stepped(next, CaseEventKind::Expired, &mut events);
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(member: &str) -> PrincipalRef {
        PrincipalRef {
            member: member.into(),
            subject: "coordinator".into(),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    fn reference() -> ReferenceData {
        ReferenceData::parse(orex_reference::SHIPPED.as_bytes()).unwrap()
    }

    /// A case declared at t=0 with its deadline at t=100.
    fn declared() -> ShortageCase {
        let electorate =
            Electorate::new(vec!["EU".into(), "US".into()], vec!["JP".into()]).unwrap();
        let declaration = ShortageDeclaration {
            mineral: Mineral::Gallium as i32,
            total_release_tonnes: 30.0,
            voting_deadline: Some(at(100)),
            ..Default::default()
        };
        let events = declare(
            "c1",
            declaration,
            who("US"),
            at(0),
            &electorate,
            &Rule::default(),
        )
        .unwrap();
        events.last().unwrap().1.clone()
    }

    fn ballot(member: &str, choice: VoteChoice, t: i64) -> Ballot {
        Ballot {
            voting_member: member.into(),
            choice,
            comment: String::new(),
            by: who(member),
            at: at(t),
        }
    }

    fn cast(c: ShortageCase, member: &str, choice: VoteChoice, t: i64) -> Result<Events> {
        let data = reference();
        // Nobody reported: every party is uncapped with reference consumption.
        let none = |_: &str| -> Result<Option<Stockpile>> { Ok(None) };
        let split = Split {
            stockpile_of: &none,
            reference: &data,
        };
        vote(c, &ballot(member, choice, t), &Rule::default(), &split)
    }

    fn active() -> ShortageCase {
        let mut c = declared();
        for m in ["US", "EU", "JP"] {
            c = cast(c, m, VoteChoice::Approve, 10)
                .unwrap()
                .pop()
                .unwrap()
                .1;
        }
        assert_eq!(c.status(), CaseStatus::Active);
        c
    }

    fn conflict(r: Result<impl std::fmt::Debug>, status: &str) {
        match r {
            Err(EmergencyError::CaseStatus { subject, message }) => {
                assert_eq!(subject, "case/c1");
                assert!(message.contains(status), "{message}");
            }
            other => panic!("expected a status conflict naming {status}, got {other:?}"),
        }
    }

    #[test]
    fn the_deciding_vote_activates_with_the_allocation_in_the_same_call() {
        let c = declared();
        assert_eq!((c.status(), c.version), (CaseStatus::Voting, 1));
        let c = cast(c, "US", VoteChoice::Approve, 10)
            .unwrap()
            .pop()
            .unwrap()
            .1;
        let c = cast(c, "EU", VoteChoice::Approve, 10)
            .unwrap()
            .pop()
            .unwrap()
            .1;
        assert_eq!(c.status(), CaseStatus::Voting, "JP's majority is missing");
        let events = cast(c, "JP", VoteChoice::Approve, 10).unwrap();
        let kinds: Vec<_> = events.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [CaseEventKind::VoteCast, CaseEventKind::Activated]);
        let c = &events[1].1;
        assert_eq!((c.version, c.activated_at), (5, Some(at(10))));
        // Only the US has reference consumption for gallium (19 t/y):
        // it takes all 30 t, uncapped; EU and JP are listed with nothing.
        let us = c.allocations.iter().find(|a| a.member == "US").unwrap();
        assert!((us.allocated_tonnes - 30.0).abs() < 1e-9);
        assert_eq!(us.stockpile_cap_tonnes, None);
        assert_eq!(c.allocations.len(), 3);
        assert!((c.unallocated_tonnes).abs() < 1e-9);
    }

    #[test]
    fn a_founding_rejection_rejects_and_a_second_vote_is_refused() {
        let c = cast(declared(), "EU", VoteChoice::Reject, 10).unwrap();
        let c = &c.last().unwrap().1;
        assert_eq!(c.status(), CaseStatus::Rejected);
        assert_eq!(c.ended_at, Some(at(10)));
        let c = cast(declared(), "JP", VoteChoice::Approve, 10)
            .unwrap()
            .pop()
            .unwrap()
            .1;
        assert!(matches!(
            cast(c, "JP", VoteChoice::Reject, 11),
            Err(EmergencyError::AlreadyVoted(_))
        ));
        assert!(matches!(
            cast(declared(), "KR", VoteChoice::Approve, 10),
            Err(EmergencyError::PermissionDenied(
                orex_kit::status::Reason::NotEligibleToVote,
                _
            ))
        ));
    }

    #[test]
    fn every_transition_not_allowed_in_a_status_names_the_status() {
        // VOTING: no pledge, delivery or closure; no vote at the deadline.
        conflict(
            pledge(declared(), "p", "US", 1.0, "", who("US"), at(1)),
            "VOTING",
        );
        conflict(
            fulfil(declared(), "f", "p", "US", 1.0, at(1), "", who("US"), at(1)),
            "VOTING",
        );
        conflict(close(declared(), "r", &who("US"), at(1)), "VOTING");
        conflict(cast(declared(), "US", VoteChoice::Approve, 100), "VOTING");
        // ACTIVE: no vote.
        conflict(cast(active(), "US", VoteChoice::Approve, 11), "ACTIVE");
        // Terminal statuses: nothing.
        let rejected = cast(declared(), "US", VoteChoice::Reject, 10)
            .unwrap()
            .pop()
            .unwrap()
            .1;
        let expired = expire(declared(), at(100), &Rule::default())
            .unwrap()
            .pop()
            .unwrap()
            .1;
        let closed = close(active(), "done", &who("US"), at(20))
            .unwrap()
            .pop()
            .unwrap()
            .1;
        for (c, name) in [
            (rejected, "REJECTED"),
            (expired, "EXPIRED"),
            (closed, "CLOSED"),
        ] {
            conflict(cast(c.clone(), "JP", VoteChoice::Approve, 11), name);
            conflict(
                pledge(c.clone(), "p", "JP", 1.0, "", who("JP"), at(30)),
                name,
            );
            conflict(close(c.clone(), "again", &who("US"), at(30)), name);
            // Expiry of a case that is no longer voting changes nothing.
            assert!(expire(c, at(1000), &Rule::default()).unwrap().is_empty());
        }
    }

    #[test]
    fn a_running_vote_keeps_the_rule_it_was_declared_under() {
        let c = declared();
        let t = c.tally.clone().unwrap();
        assert_eq!(
            (t.founding_threshold.as_str(), t.others_threshold.as_str()),
            ("all", "majority")
        );
        // The configuration now asks everyone; this case still needs only
        // JP's majority after both founding parties.
        let everyone = Rule {
            founding: crate::voting::Threshold::All,
            others: crate::voting::Threshold::All,
        };
        let data = reference();
        let none = |_: &str| -> Result<Option<Stockpile>> { Ok(None) };
        let split = Split {
            stockpile_of: &none,
            reference: &data,
        };
        let mut c = c;
        for m in ["US", "EU", "JP"] {
            c = vote(c, &ballot(m, VoteChoice::Approve, 10), &everyone, &split)
                .unwrap()
                .pop()
                .unwrap()
                .1;
        }
        assert_eq!(c.status(), CaseStatus::Active);
        assert_eq!(c.tally.unwrap().others_threshold, "majority");
    }

    #[test]
    fn expiry_waits_for_the_deadline() {
        assert!(
            expire(declared(), at(99), &Rule::default())
                .unwrap()
                .is_empty()
        );
        let e = expire(declared(), at(100), &Rule::default()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, CaseEventKind::Expired);
        assert_eq!(e[0].1.status(), CaseStatus::Expired);
    }

    #[test]
    fn pledges_and_deliveries_count_toward_the_voting_party() {
        let c = active();
        // DE pledges toward the EU's allocation.
        let (events, p) = pledge(c, "p1", "EU", 4.0, "", who("DE"), at(20)).unwrap();
        assert_eq!(p.member, "DE");
        let c = events.last().unwrap().1.clone();
        let eu = c.allocations.iter().find(|a| a.member == "EU").unwrap();
        assert!((eu.pledged_tonnes - 4.0).abs() < 1e-12);
        // Only DE records deliveries against it, and no more than pledged.
        assert!(matches!(
            fulfil(
                c.clone(),
                "f0",
                "p1",
                "EU",
                1.0,
                at(21),
                "",
                who("FR"),
                at(21)
            ),
            Err(EmergencyError::PermissionDenied(
                orex_kit::status::Reason::NotOwnMember,
                _
            ))
        ));
        let (events, _) = fulfil(c, "f1", "p1", "EU", 3.0, at(21), "", who("DE"), at(21)).unwrap();
        let c = events.last().unwrap().1.clone();
        assert!(matches!(
            fulfil(
                c.clone(),
                "f2",
                "p1",
                "EU",
                1.5,
                at(22),
                "",
                who("DE"),
                at(22)
            ),
            Err(EmergencyError::PledgeExceeded { .. })
        ));
        assert!(matches!(
            fulfil(c, "f3", "nope", "EU", 1.0, at(22), "", who("DE"), at(22)),
            Err(EmergencyError::NotFound(_))
        ));
    }
}
