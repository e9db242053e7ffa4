//! Deciding the vote on a shortage case, as `orex.emergency.v1` defines it
//! (`CastVote`, `Vote`, `VoteTally`, `CaseStatus`).
//!
//! Pure logic with plain inputs: no I/O, no clock, no protobuf or policy
//! types, so the rule is tested on its own and the service only maps inputs
//! in and errors out. The service's `CastVote` is expected to run:
//!
//! 1. the case must be in VOTING (else FAILED_PRECONDITION), and
//!    [`voting_closed`] must be false (else the case expires and the call
//!    fails with FAILED_PRECONDITION);
//! 2. the voting party is [`voting_member`] of the caller's member and its bloc;
//! 3. [`cast`] checks the vote and returns the [`Tally`] with it counted, or a
//!    [`VoteError`] (one variant per gRPC code, see its docs);
//! 4. the vote and, when [`Tally::outcome`] says so, the ACTIVATED or
//!    REJECTED event are stored in one write.
//!
//! The [`Electorate`] is fixed when the case is declared and stored with it
//! (`VoteTally.eligible_voting_members` and `founding_members`), so a member
//! added to the policy later votes on cases declared after it joined, never
//! on older ones, and the rule cannot change under a running vote by a policy
//! reload.
//!
//! The rule is monotone: an approval never hurts and a rejection never helps.
//! So "met" (no pending vote can undo it) and "still possible" (met if every
//! pending party approved) are exact, and the vote that meets the rule or
//! makes it impossible is decided on that very vote, not later.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::SystemTime;

/// A vote: the contract's `VoteChoice` without `UNSPECIFIED`, which the
/// service refuses with INVALID_ARGUMENT before it gets here. The contract has
/// no abstention; a party that does not vote stays pending until the case is
/// decided or expires, and counts against thresholds that are fractions of
/// the eligible parties (see [`Threshold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    /// In favour of activating the coordinated response.
    Approve,
    /// Against activating the coordinated response.
    Reject,
}

/// How many parties of one group (founding parties, or the other voting
/// parties) must approve. Thresholds count the group's *eligible* parties,
/// not the votes cast, so silence never passes for consent.
///
/// A group with no eligible party meets every threshold (there is nobody
/// whose approval is missing): a partnership of founding parties only, as at
/// its start, is decided by the founding parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// Every party of the group approves.
    All,
    /// More than half of the group's eligible parties approve
    /// (2 × approvals > eligible): 2 of 3, 3 of 4. A tie is not a majority.
    Majority,
    /// At least `numerator`/`denominator` of the group's eligible parties
    /// approve (approvals × denominator ≥ numerator × eligible). Unlike
    /// [`Threshold::Majority`], `1/2` passes on a tie.
    Fraction {
        /// Parts required, 1 to `denominator`.
        numerator: u32,
        /// Parts in the whole, at least 1.
        denominator: u32,
    },
    /// The group's approval is not required; its votes are still counted in
    /// the tally's approvals and rejections.
    None,
}

impl Threshold {
    /// The threshold a configuration or a stored case writes as `all`,
    /// `majority`, `none` or a fraction `n/d`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "all" => Threshold::All,
            "majority" => Threshold::Majority,
            "none" => Threshold::None,
            fraction => {
                let (n, d) = fraction.split_once('/')?;
                Threshold::Fraction {
                    numerator: n.trim().parse().ok()?,
                    denominator: d.trim().parse().ok()?,
                }
            }
        })
    }

    /// The word [`parse`](Self::parse) reads back.
    pub fn word(&self) -> String {
        match self {
            Threshold::All => "all".into(),
            Threshold::Majority => "majority".into(),
            Threshold::None => "none".into(),
            Threshold::Fraction {
                numerator,
                denominator,
            } => format!("{numerator}/{denominator}"),
        }
    }

    /// True when `approvals` of `eligible` parties meet the threshold.
    fn met(self, approvals: usize, eligible: usize) -> bool {
        // usize → u64 is lossless on every platform Rust supports, and u32 × u64
        // of electorate sizes cannot overflow.
        let (a, n) = (approvals as u64, eligible as u64);
        match self {
            Threshold::All => a == n,
            Threshold::Majority => n == 0 || 2 * a > n,
            Threshold::Fraction {
                numerator,
                denominator,
            } => a * u64::from(denominator) >= u64::from(numerator) * n,
            Threshold::None => true,
        }
    }

    /// The subject of a clause naming `parties` of this group, and whether it
    /// is plural ("every founding party" / "a majority of the founding
    /// parties"); `None` when the group's approval is not required.
    fn subject(self, party: &str, parties: &str) -> Option<(String, bool)> {
        match self {
            Threshold::All => Some((format!("every {party}"), false)),
            Threshold::Majority => Some((format!("a majority of the {parties}"), true)),
            Threshold::Fraction {
                numerator,
                denominator,
            } => Some((
                format!("at least {numerator}/{denominator} of the {parties}"),
                true,
            )),
            Threshold::None => None,
        }
    }

    fn validate(self, group: &'static str) -> Result<(), RuleError> {
        match self {
            Threshold::Fraction { denominator: 0, .. } => Err(RuleError::ZeroDenominator { group }),
            Threshold::Fraction {
                numerator,
                denominator,
            } if numerator == 0 || numerator > denominator => {
                Err(RuleError::FractionOutOfRange { group })
            }
            _ => Ok(()),
        }
    }
}

/// The activation rule, from the service's configuration. A case activates
/// when both groups meet their threshold *and* at least one party has
/// approved: a case is never activated by nobody, even where both groups are
/// empty or not required.
///
/// Expected configuration (a future `serde` derive with
/// `rename_all = "snake_case"` on [`Threshold`] and `deny_unknown_fields`
/// reads exactly this shape):
///
/// ```toml
/// [activation]
/// founding = "all"         # "all" | "majority" | "none" | { fraction = { numerator = 2, denominator = 3 } }
/// others = "majority"      # same choices; applies to the non-founding voting parties
/// ```
///
/// Both keys default to the values above ([`Rule::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// What the founding parties must do.
    pub founding: Threshold,
    /// What the other (non-founding) voting parties must do.
    pub others: Threshold,
}

impl Default for Rule {
    /// Every founding party approves and a majority of the others do
    /// (DESIGN.md, emergency-coordination).
    fn default() -> Self {
        Rule {
            founding: Threshold::All,
            others: Threshold::Majority,
        }
    }
}

impl Rule {
    /// Checks the configured rule, naming the offending key, so a bad
    /// configuration stops the service before it binds a port.
    pub fn validate(&self) -> Result<(), RuleError> {
        self.founding.validate("activation.founding")?;
        self.others.validate("activation.others")?;
        if self.founding == Threshold::None && self.others == Threshold::None {
            return Err(RuleError::RequiresNothing);
        }
        Ok(())
    }

    /// The rule in words, for `VoteTally.activation_rule`; the default reads
    /// "every founding party approves and a majority of the other voting
    /// parties do".
    pub fn describe(&self) -> String {
        let verb = |plural: bool, first: bool| match (first, plural) {
            (true, false) => "approves",
            (true, true) => "approve",
            (false, false) => "does",
            (false, true) => "do",
        };
        if self.founding == Threshold::All && self.others == Threshold::All {
            return "every voting party approves".to_owned();
        }
        let founding = self.founding.subject("founding party", "founding parties");
        // "other" needs the founding clause before it to refer to.
        let others = match founding {
            Some(_) => self
                .others
                .subject("other voting party", "other voting parties"),
            None => self
                .others
                .subject("non-founding voting party", "non-founding voting parties"),
        };
        match (founding, others) {
            (Some((f, fp)), Some((o, op))) => {
                format!("{f} {} and {o} {}", verb(fp, true), verb(op, false))
            }
            (Some((s, p)), None) | (None, Some((s, p))) => format!("{s} {}", verb(p, true)),
            // Refused by `validate`; worded for what `tally` does with it.
            (None, None) => "any voting party approves".to_owned(),
        }
    }
}

/// Why a configured [`Rule`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// Both groups are `"none"`: one stray approval would activate a case,
    /// which is almost certainly a configuration mistake.
    RequiresNothing,
    /// A fraction with denominator 0.
    ZeroDenominator {
        /// The configuration key (`activation.others`).
        group: &'static str,
    },
    /// A fraction of 0 (write `"none"`) or above 1 (could never be met).
    FractionOutOfRange {
        /// The configuration key (`activation.others`).
        group: &'static str,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::RequiresNothing => f.write_str(
                "activation: founding and others are both \"none\"; at least one group's approval must be required",
            ),
            RuleError::ZeroDenominator { group } => {
                write!(f, "{group}: fraction denominator must be at least 1")
            }
            RuleError::FractionOutOfRange { group } => write!(
                f,
                "{group}: fraction numerator must be 1 to denominator (write \"none\" for no requirement)"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

/// One member of the partnership as the policy describes it, for
/// [`Electorate::from_members`]. The caller passes the members that take
/// part at declaration (the service: the active ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMember<'a> {
    /// Member code (`US`, `EU`, `DE`).
    pub code: &'a str,
    /// The bloc a state belongs to, if any; such a state does not vote on
    /// its own.
    pub bloc: Option<&'a str>,
    /// True for a founding party of the partnership.
    pub founding: bool,
}

/// The parties entitled to vote on one case, fixed when it is declared: each
/// bloc once (never its states) and each state outside a bloc, split into
/// founding parties and the others. Codes are kept sorted, so every list
/// derived from it is in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Electorate {
    founding: Vec<String>,
    others: Vec<String>,
}

impl Electorate {
    /// An electorate from its two groups. Refuses an empty electorate (no
    /// one could ever vote), an empty code, and a code listed twice (within
    /// or across groups: a party votes once).
    pub fn new(founding: Vec<String>, others: Vec<String>) -> Result<Self, ElectorateError> {
        let mut seen = BTreeSet::new();
        for code in founding.iter().chain(&others) {
            if code.is_empty() {
                return Err(ElectorateError::EmptyCode);
            }
            if !seen.insert(code.as_str()) {
                return Err(ElectorateError::Duplicate { code: code.clone() });
            }
        }
        if seen.is_empty() {
            return Err(ElectorateError::Empty);
        }
        let (mut founding, mut others) = (founding, others);
        founding.sort();
        others.sort();
        Ok(Electorate { founding, others })
    }

    /// The electorate at declaration, from the policy's members: a state that
    /// belongs to a bloc is represented by its bloc (contract: "blocs once,
    /// not their states"), so it is left out, and its own `founding` flag is
    /// ignored; only the bloc's counts.
    pub fn from_members<'a>(
        members: impl IntoIterator<Item = PolicyMember<'a>>,
    ) -> Result<Self, ElectorateError> {
        let (mut founding, mut others) = (Vec::new(), Vec::new());
        for m in members.into_iter().filter(|m| m.bloc.is_none()) {
            let group = if m.founding {
                &mut founding
            } else {
                &mut others
            };
            group.push(m.code.to_owned());
        }
        Self::new(founding, others)
    }

    /// The electorate as a stored case lists it (`VoteTally`'s
    /// `eligible_voting_members` and `founding_members`); every founding
    /// party must be eligible.
    pub fn from_eligible(
        eligible: Vec<String>,
        founding: Vec<String>,
    ) -> Result<Self, ElectorateError> {
        if let Some(code) = founding.iter().find(|f| !eligible.contains(f)) {
            return Err(ElectorateError::FoundingNotEligible { code: code.clone() });
        }
        let others = eligible
            .into_iter()
            .filter(|e| !founding.contains(e))
            .collect();
        Self::new(founding, others)
    }

    /// The founding parties, sorted by code.
    pub fn founding(&self) -> &[String] {
        &self.founding
    }

    /// The other voting parties, sorted by code.
    pub fn others(&self) -> &[String] {
        &self.others
    }

    /// Every party entitled to vote, sorted by code
    /// (`VoteTally.eligible_voting_members`).
    pub fn eligible(&self) -> Vec<String> {
        let mut all: Vec<String> = self.founding.iter().chain(&self.others).cloned().collect();
        all.sort();
        all
    }

    /// True when `code` may vote on this case.
    pub fn is_eligible(&self, code: &str) -> bool {
        self.founding.iter().chain(&self.others).any(|c| c == code)
    }
}

/// Why an [`Electorate`] could not be formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectorateError {
    /// No party could vote; the service should refuse the declaration
    /// (FAILED_PRECONDITION) rather than open a case nobody can decide.
    Empty,
    /// A party with an empty code.
    EmptyCode,
    /// A party listed twice.
    Duplicate {
        /// The repeated code.
        code: String,
    },
    /// A founding party missing from the eligible parties (a stored case
    /// that contradicts itself).
    FoundingNotEligible {
        /// The founding party's code.
        code: String,
    },
}

impl fmt::Display for ElectorateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElectorateError::Empty => f.write_str("no member is entitled to vote"),
            ElectorateError::EmptyCode => f.write_str("a voting member has an empty code"),
            ElectorateError::Duplicate { code } => {
                write!(f, "voting member {code} is listed more than once")
            }
            ElectorateError::FoundingNotEligible { code } => {
                write!(
                    f,
                    "founding party {code} is not among the eligible voting members"
                )
            }
        }
    }
}

impl std::error::Error for ElectorateError {}

/// What the votes decide, after each vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Neither met nor impossible yet: the case stays in VOTING (and
    /// expires if [`voting_closed`] before this changes).
    Pending,
    /// The rule is met: the case becomes ACTIVE.
    Activate,
    /// The rule can no longer be met: the case becomes REJECTED.
    Reject,
}

/// The state of the vote, as `VoteTally` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// APPROVE votes cast, founding and others together.
    pub approvals: u32,
    /// REJECT votes cast, founding and others together.
    pub rejections: u32,
    /// Eligible parties that have not voted, sorted by code.
    pub pending: Vec<String>,
    /// The votes cast already satisfy the rule (whatever the pending do).
    pub rule_met: bool,
    /// The rule can still be met if the pending parties approve; true
    /// whenever `rule_met` is.
    pub still_possible: bool,
}

impl Tally {
    /// What the tally decides: a met rule activates, an impossible one rejects.
    pub fn outcome(&self) -> Outcome {
        if self.rule_met {
            Outcome::Activate
        } else if !self.still_possible {
            Outcome::Reject
        } else {
            Outcome::Pending
        }
    }
}

/// Why a vote was refused. The service maps each variant to one gRPC code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteError {
    /// The voting party is not in the case's electorate: it joined after
    /// the case was declared, was not taking part then, or is unknown.
    /// PERMISSION_DENIED: the caller is identified and in the right state,
    /// but is not entitled to act on this case (the contract names no code
    /// for it).
    NotEligible {
        /// The voting party.
        voter: String,
    },
    /// The voting party has voted on this case already, possibly through
    /// another state of its bloc. ALREADY_EXISTS (contract, `CastVote`).
    AlreadyVoted {
        /// The voting party.
        voter: String,
    },
    /// The votes cast already decided the case, so it is no longer in
    /// VOTING. FAILED_PRECONDITION (contract, `EmergencyService`: a
    /// transition not allowed in the case's current status).
    Decided {
        /// What the earlier votes decided (never [`Outcome::Pending`]).
        outcome: Outcome,
    },
}

impl fmt::Display for VoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VoteError::NotEligible { voter } => write!(
                f,
                "{voter} is not entitled to vote on this case (the voting members were fixed when it was declared)"
            ),
            VoteError::AlreadyVoted { voter } => {
                write!(f, "{voter} has already voted on this case")
            }
            VoteError::Decided { outcome } => {
                let status = match outcome {
                    Outcome::Activate => "activated",
                    Outcome::Reject => "rejected",
                    Outcome::Pending => "still open",
                };
                write!(f, "the vote on this case is over: the case was {status}")
            }
        }
    }
}

impl std::error::Error for VoteError {}

/// The party that votes for a member: its bloc when it belongs to one (a
/// bloc votes once for all its states), otherwise the member itself
/// (contract, `Vote.voting_member`). A bloc state's coordinator therefore
/// casts its bloc's vote rather than being refused.
pub fn voting_member<'a>(member: &'a str, bloc: Option<&'a str>) -> &'a str {
    bloc.unwrap_or(member)
}

/// True when voting on a case with this deadline is over at `now`: the
/// contract says "voting closes at this instant", so a vote at the deadline
/// itself is too late. A case still [`Outcome::Pending`] then expires.
pub fn voting_closed(now: SystemTime, deadline: SystemTime) -> bool {
    now >= deadline
}

/// Counts `votes` (in the order cast) against the rule. Each vote is checked
/// as [`cast`] checks a new one, so stored votes that break the rules are
/// reported, never silently counted.
pub fn tally(
    rule: &Rule,
    electorate: &Electorate,
    votes: &[(String, Choice)],
) -> Result<Tally, VoteError> {
    let mut cast_so_far: BTreeMap<&str, Choice> = BTreeMap::new();
    for (voter, choice) in votes {
        check(rule, electorate, &cast_so_far, voter)?;
        cast_so_far.insert(voter.as_str(), *choice);
    }
    Ok(count(rule, electorate, &cast_so_far))
}

/// Checks a new vote by `voter` on a case with these earlier `votes` and
/// returns the tally with it counted; its [`Tally::outcome`] says whether
/// this vote activates or rejects the case.
pub fn cast(
    rule: &Rule,
    electorate: &Electorate,
    votes: &[(String, Choice)],
    voter: &str,
    choice: Choice,
) -> Result<Tally, VoteError> {
    let mut all = votes.to_vec();
    all.push((voter.to_owned(), choice));
    tally(rule, electorate, &all)
}

/// Refuses a vote by `voter` after the votes in `cast_so_far`, in the order
/// the service checks a call: state of the case, then who votes, then
/// whether it voted already.
fn check(
    rule: &Rule,
    electorate: &Electorate,
    cast_so_far: &BTreeMap<&str, Choice>,
    voter: &str,
) -> Result<(), VoteError> {
    let outcome = count(rule, electorate, cast_so_far).outcome();
    if outcome != Outcome::Pending {
        return Err(VoteError::Decided { outcome });
    }
    if !electorate.is_eligible(voter) {
        return Err(VoteError::NotEligible {
            voter: voter.to_owned(),
        });
    }
    if cast_so_far.contains_key(voter) {
        return Err(VoteError::AlreadyVoted {
            voter: voter.to_owned(),
        });
    }
    Ok(())
}

/// The tally of votes already known to come from distinct eligible parties.
fn count(rule: &Rule, electorate: &Electorate, cast_so_far: &BTreeMap<&str, Choice>) -> Tally {
    // (approvals, pending) in one group.
    let group = |codes: &[String]| {
        codes
            .iter()
            .fold((0, 0), |(a, p), c| match cast_so_far.get(c.as_str()) {
                Some(Choice::Approve) => (a + 1, p),
                Some(Choice::Reject) => (a, p),
                None => (a, p + 1),
            })
    };
    let (founding_a, founding_p) = group(&electorate.founding);
    let (others_a, others_p) = group(&electorate.others);
    let (nf, no) = (electorate.founding.len(), electorate.others.len());

    let approvals = founding_a + others_a;
    let rule_met =
        approvals > 0 && rule.founding.met(founding_a, nf) && rule.others.met(others_a, no);
    // Best case: every pending party approves.
    let still_possible = approvals + founding_p + others_p > 0
        && rule.founding.met(founding_a + founding_p, nf)
        && rule.others.met(others_a + others_p, no);

    let rejections = cast_so_far
        .values()
        .filter(|c| **c == Choice::Reject)
        .count();
    let pending = electorate
        .eligible()
        .into_iter()
        .filter(|c| !cast_so_far.contains_key(c.as_str()))
        .collect();
    Tally {
        approvals: u32::try_from(approvals).unwrap_or(u32::MAX),
        rejections: u32::try_from(rejections).unwrap_or(u32::MAX),
        pending,
        rule_met,
        still_possible,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use Choice::{Approve, Reject};

    fn codes(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| (*c).to_owned()).collect()
    }

    fn electorate(founding: &[&str], others: &[&str]) -> Electorate {
        Electorate::new(codes(founding), codes(others)).unwrap()
    }

    /// Casts `votes` one at a time, as calls would arrive, and returns the
    /// outcome after each.
    fn outcomes(rule: &Rule, e: &Electorate, votes: &[(&str, Choice)]) -> Vec<Outcome> {
        let mut cast_so_far = Vec::new();
        votes
            .iter()
            .map(|(voter, choice)| {
                let t = cast(rule, e, &cast_so_far, voter, *choice).unwrap();
                cast_so_far.push(((*voter).to_owned(), *choice));
                t.outcome()
            })
            .collect()
    }

    fn votes(list: &[(&str, Choice)]) -> Vec<(String, Choice)> {
        list.iter().map(|(v, c)| ((*v).to_owned(), *c)).collect()
    }

    #[test]
    fn default_rule_activates_on_the_vote_that_completes_founding_and_majority() {
        let e = electorate(&["US", "EU"], &["JP", "KR"]);
        let rule = Rule::default();
        // Of two others, a majority is both: one is only half.
        assert_eq!(
            outcomes(
                &rule,
                &e,
                &[
                    ("US", Approve),
                    ("JP", Approve),
                    ("EU", Approve),
                    ("KR", Approve)
                ]
            ),
            [
                Outcome::Pending,
                Outcome::Pending,
                Outcome::Pending,
                Outcome::Activate
            ]
        );
        let t = tally(
            &rule,
            &e,
            &votes(&[("US", Approve), ("JP", Approve), ("EU", Approve)]),
        )
        .unwrap();
        assert_eq!(
            t,
            Tally {
                approvals: 3,
                rejections: 0,
                pending: codes(&["KR"]),
                rule_met: false,
                still_possible: true,
            }
        );
    }

    #[test]
    fn a_founding_party_rejecting_rejects_at_once() {
        let e = electorate(&["US", "EU"], &["JP", "KR"]);
        let t = cast(&Rule::default(), &e, &[], "EU", Reject).unwrap();
        assert_eq!(t.outcome(), Outcome::Reject);
        assert!(!t.still_possible);
        assert_eq!(t.rejections, 1);
        assert_eq!(t.pending, codes(&["JP", "KR", "US"]));
    }

    #[test]
    fn majority_becoming_impossible_rejects_on_that_vote_not_later() {
        // Four others: a majority is three, so two rejections end it even
        // though the founding parties have not voted yet.
        let e = electorate(&["US", "EU"], &["AU", "IN", "JP", "KR"]);
        let got = outcomes(&Rule::default(), &e, &[("JP", Reject), ("KR", Reject)]);
        assert_eq!(got, [Outcome::Pending, Outcome::Reject]);
    }

    #[test]
    fn majority_met_before_everyone_voted_activates_at_once() {
        let e = electorate(&["US", "EU"], &["IN", "JP", "KR"]);
        let got = outcomes(
            &Rule::default(),
            &e,
            &[
                ("JP", Approve),
                ("KR", Approve),
                ("US", Approve),
                ("EU", Approve),
            ],
        );
        assert_eq!(got.last(), Some(&Outcome::Activate));
        let t = tally(
            &Rule::default(),
            &e,
            &votes(&[
                ("JP", Approve),
                ("KR", Approve),
                ("US", Approve),
                ("EU", Approve),
            ]),
        )
        .unwrap();
        assert_eq!(t.pending, codes(&["IN"]), "IN never had to vote");
        // A minority rejecting does not stop a met majority either.
        let got = outcomes(
            &Rule::default(),
            &e,
            &[
                ("IN", Reject),
                ("JP", Approve),
                ("US", Approve),
                ("KR", Approve),
                ("EU", Approve),
            ],
        );
        assert_eq!(got.last(), Some(&Outcome::Activate));
    }

    #[test]
    fn silence_is_not_approval_and_a_case_left_pending_expires_at_the_deadline() {
        // The contract has no ABSTAIN: a party that does not vote stays
        // pending. The majority is of eligible parties, not of votes cast, so
        // one approval out of one vote cast is not a majority of three.
        let e = electorate(&["US", "EU"], &["IN", "JP", "KR"]);
        let t = tally(
            &Rule::default(),
            &e,
            &votes(&[("US", Approve), ("EU", Approve), ("JP", Approve)]),
        )
        .unwrap();
        assert_eq!(t.outcome(), Outcome::Pending);
        assert_eq!(t.pending, codes(&["IN", "KR"]));
        // "Voting closes at this instant": at the deadline it is too late.
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(!voting_closed(deadline - Duration::from_nanos(1), deadline));
        assert!(voting_closed(deadline, deadline));
    }

    #[test]
    fn a_second_vote_is_already_voted_also_through_another_state_of_the_bloc() {
        let e = electorate(&["US", "EU"], &["JP", "KR"]);
        let earlier = votes(&[("JP", Approve)]);
        assert_eq!(
            cast(&Rule::default(), &e, &earlier, "JP", Reject),
            Err(VoteError::AlreadyVoted { voter: "JP".into() })
        );
        // DE and FR coordinators both cast the EU's vote.
        let earlier = votes(&[(voting_member("DE", Some("EU")), Approve)]);
        let again = voting_member("FR", Some("EU"));
        assert_eq!(
            cast(&Rule::default(), &e, &earlier, again, Approve),
            Err(VoteError::AlreadyVoted { voter: "EU".into() })
        );
        assert_eq!(voting_member("JP", None), "JP");
    }

    #[test]
    fn a_vote_after_the_case_is_decided_is_refused_as_wrong_state() {
        let e = electorate(&["US", "EU"], &["JP", "KR"]);
        let earlier = votes(&[("US", Reject)]);
        // Even a party that never voted, and even an ineligible one: the
        // case's state is checked first, as the service checks VOTING first.
        for voter in ["JP", "NZ"] {
            assert_eq!(
                cast(&Rule::default(), &e, &earlier, voter, Approve),
                Err(VoteError::Decided {
                    outcome: Outcome::Reject
                })
            );
        }
    }

    #[test]
    fn a_member_that_joined_after_declaration_votes_only_on_later_cases() {
        let policy = [
            PolicyMember {
                code: "US",
                bloc: None,
                founding: true,
            },
            PolicyMember {
                code: "EU",
                bloc: None,
                founding: true,
            },
            PolicyMember {
                code: "DE",
                bloc: Some("EU"),
                founding: false,
            },
            PolicyMember {
                code: "JP",
                bloc: None,
                founding: false,
            },
        ];
        let first_case = Electorate::from_members(policy).unwrap();
        // Bloc states are not voting parties: the EU stands for DE.
        assert_eq!(first_case.eligible(), codes(&["EU", "JP", "US"]));
        assert_eq!(first_case.founding(), codes(&["EU", "US"]));

        // NZ joins by configuration; the first case's electorate is stored.
        let nz = PolicyMember {
            code: "NZ",
            bloc: None,
            founding: false,
        };
        let later_case = Electorate::from_members(policy.into_iter().chain([nz])).unwrap();
        assert_eq!(
            cast(&Rule::default(), &first_case, &[], "NZ", Approve),
            Err(VoteError::NotEligible { voter: "NZ".into() })
        );
        assert!(cast(&Rule::default(), &later_case, &[], "NZ", Approve).is_ok());
        // A bloc state's own code is not a voting party: the service must
        // resolve it with `voting_member` first.
        assert_eq!(
            cast(&Rule::default(), &first_case, &[], "DE", Approve),
            Err(VoteError::NotEligible { voter: "DE".into() })
        );
    }

    #[test]
    fn with_no_other_parties_the_founding_parties_decide() {
        // "A majority of nobody" is vacuously met: the partnership's start,
        // US and EU only, must be able to activate a case.
        let e = electorate(&["US", "EU"], &[]);
        assert_eq!(
            outcomes(&Rule::default(), &e, &[("US", Approve), ("EU", Approve)]),
            [Outcome::Pending, Outcome::Activate]
        );
        assert_eq!(
            outcomes(&Rule::default(), &e, &[("US", Approve), ("EU", Reject)]),
            [Outcome::Pending, Outcome::Reject]
        );
    }

    #[test]
    fn a_case_never_activates_without_an_approval() {
        // Founding parties not required and no others: each group is
        // vacuously met, yet nothing is decided before someone approves.
        let rule = Rule {
            founding: Threshold::None,
            others: Threshold::Majority,
        };
        let e = electorate(&["US", "EU"], &[]);
        let t = tally(&rule, &e, &[]).unwrap();
        assert_eq!(t.outcome(), Outcome::Pending);
        assert!(!t.rule_met);
        assert_eq!(
            outcomes(&rule, &e, &[("US", Reject), ("EU", Reject)]),
            [Outcome::Pending, Outcome::Reject]
        );
        assert_eq!(
            outcomes(&rule, &e, &[("US", Reject), ("EU", Approve)]),
            [Outcome::Pending, Outcome::Activate]
        );
        assert_eq!(Electorate::new(vec![], vec![]), Err(ElectorateError::Empty));
    }

    #[test]
    fn a_rule_requiring_everyone_waits_for_the_last_approval_and_any_rejection_ends_it() {
        let rule = Rule {
            founding: Threshold::All,
            others: Threshold::All,
        };
        assert_eq!(rule.validate(), Ok(()));
        let e = electorate(&["US", "EU"], &["JP", "KR"]);
        assert_eq!(
            outcomes(
                &rule,
                &e,
                &[
                    ("US", Approve),
                    ("EU", Approve),
                    ("JP", Approve),
                    ("KR", Approve)
                ]
            ),
            [
                Outcome::Pending,
                Outcome::Pending,
                Outcome::Pending,
                Outcome::Activate
            ]
        );
        // With three others, one rejection leaves a majority possible under
        // the default rule; here it is a veto.
        let e = electorate(&["US", "EU"], &["IN", "JP", "KR"]);
        let one_no = [("US", Approve), ("KR", Reject)];
        assert_eq!(
            outcomes(&rule, &e, &one_no),
            [Outcome::Pending, Outcome::Reject]
        );
        assert_eq!(
            outcomes(&Rule::default(), &e, &one_no),
            [Outcome::Pending, Outcome::Pending]
        );
    }

    #[test]
    fn a_fraction_counts_eligible_parties_and_passes_on_a_tie_unlike_majority() {
        let e = electorate(&["US", "EU"], &["JP", "KR"]);
        let half = Rule {
            founding: Threshold::All,
            others: Threshold::Fraction {
                numerator: 1,
                denominator: 2,
            },
        };
        let one_of_two = votes(&[("US", Approve), ("EU", Approve), ("JP", Approve)]);
        assert_eq!(
            tally(&half, &e, &one_of_two).unwrap().outcome(),
            Outcome::Activate
        );
        assert_eq!(
            tally(&Rule::default(), &e, &one_of_two).unwrap().outcome(),
            Outcome::Pending
        );
        let two_thirds = Rule {
            founding: Threshold::All,
            others: Threshold::Fraction {
                numerator: 2,
                denominator: 3,
            },
        };
        let e = electorate(&["US", "EU"], &["IN", "JP", "KR"]);
        assert_eq!(
            outcomes(
                &two_thirds,
                &e,
                &[
                    ("US", Approve),
                    ("EU", Approve),
                    ("IN", Approve),
                    ("JP", Approve)
                ]
            )
            .last(),
            Some(&Outcome::Activate)
        );
        assert_eq!(
            outcomes(&two_thirds, &e, &[("IN", Reject), ("JP", Reject)]).last(),
            Some(&Outcome::Reject)
        );
    }

    #[test]
    fn nonsensical_rules_are_refused_naming_the_key() {
        let nothing = Rule {
            founding: Threshold::None,
            others: Threshold::None,
        };
        assert_eq!(nothing.validate(), Err(RuleError::RequiresNothing));
        let zero = Rule {
            founding: Threshold::All,
            others: Threshold::Fraction {
                numerator: 1,
                denominator: 0,
            },
        };
        let err = zero.validate().unwrap_err();
        assert!(err.to_string().starts_with("activation.others:"), "{err}");
        for numerator in [0, 4] {
            let rule = Rule {
                founding: Threshold::Fraction {
                    numerator,
                    denominator: 3,
                },
                others: Threshold::Majority,
            };
            assert_eq!(
                rule.validate(),
                Err(RuleError::FractionOutOfRange {
                    group: "activation.founding"
                })
            );
        }
        assert_eq!(Rule::default().validate(), Ok(()));
    }

    #[test]
    fn the_rule_is_worded_for_the_tally() {
        assert_eq!(
            Rule::default().describe(),
            "every founding party approves and a majority of the other voting parties do"
        );
        let cases = [
            (
                Threshold::All,
                Threshold::All,
                "every voting party approves",
            ),
            (
                Threshold::All,
                Threshold::None,
                "every founding party approves",
            ),
            (
                Threshold::None,
                Threshold::Majority,
                "a majority of the non-founding voting parties approve",
            ),
            (
                Threshold::Majority,
                Threshold::All,
                "a majority of the founding parties approve and every other voting party does",
            ),
            (
                Threshold::All,
                Threshold::Fraction {
                    numerator: 2,
                    denominator: 3,
                },
                "every founding party approves and at least 2/3 of the other voting parties do",
            ),
        ];
        for (founding, others, words) in cases {
            assert_eq!(Rule { founding, others }.describe(), words);
        }
    }

    #[test]
    fn a_stored_electorate_reads_back_and_refuses_contradictions() {
        let e = electorate(&["US", "EU"], &["JP"]);
        let back = Electorate::from_eligible(e.eligible(), e.founding().to_vec()).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            Electorate::from_eligible(codes(&["JP"]), codes(&["US"])),
            Err(ElectorateError::FoundingNotEligible { code: "US".into() })
        );
        assert_eq!(
            Electorate::new(codes(&["US"]), codes(&["US"])),
            Err(ElectorateError::Duplicate { code: "US".into() })
        );
    }
}
