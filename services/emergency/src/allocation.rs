//! Splitting a coordinated stock release among members, as `orex.emergency.v1`
//! defines it (`MemberAllocation`, `ShortageCase.allocations` and
//! `ShortageCase.unallocated_tonnes`).
//!
//! Pure arithmetic with plain inputs: no I/O, no protobuf or reference-data
//! types, so the rule is tested on its own. On activation the service builds
//! one [`Claim`] per member from its latest stockpile report for the case's
//! mineral (consumption and stockpile from disclosed figures; consumption from
//! the shared reference data and no cap when the member refused to disclose),
//! calls [`allocate`] with the declared `total_release_tonnes`, and copies the
//! [`Split`] into the case.
//!
//! # The rule
//!
//! The contract: each member gets its share of consumption of the total,
//! capped by its stockpile; what caps cut is redistributed among the uncapped
//! members in proportion to consumption, until the total is placed or every
//! member is at its cap. That has exactly one outcome: one level λ (tonnes
//! asked per tonne of annual consumption) with every member at
//! `min(λ × consumption, cap)`, λ as high as placing the total needs, or
//! every member at its cap when the caps together hold less than the total.
//!
//! [`allocate`] reaches it in rounds: split what the capped members do not
//! take among the others by consumption, cap every member whose amount
//! exceeds its cap, repeat until a round caps nobody. Capping a member raises
//! the level for the rest (it keeps less than its proportional amount), so a
//! member capped in one round would exceed its cap in every later round too:
//! caps are never undone, and there is at most one round per member plus one.
//!
//! # Members that withheld their figures
//!
//! Such a member has no cap: `stockpile_cap_tonnes` is unset "in which case
//! its allocation is its uncapped consumption share". We read that as the
//! proportional rule with no cap applied (the rule every uncapped member
//! follows, redistribution included), not as a frozen `share × total`, so a
//! withholding member absorbs what caps cut from others:
//!
//! - the contract redistributes what caps cut "among uncapped members", and a
//!   member without a cap is one (its `capped` is always false);
//! - `unallocated_tonnes` is what could not be placed "because every member
//!   reached its stockpile cap"; a member without a cap never reaches one, so
//!   with such a member in the split nothing is left unallocated, which holds
//!   only if it takes the remainder;
//! - a frozen share would push the redistributed burden onto the members that
//!   disclosed, rewarding refusal to disclose.
//!
//! When no cap binds, the usual case, both readings give `share × total`. An
//! allocation is a request, not an obligation: a withholding member asked for
//! more than it holds pledges what it can, and the pledges show the gap.
//!
//! # Members without consumption
//!
//! A member with no known consumption (a withholding member the reference data
//! has no figure for: pass 0) has share 0 and is asked for nothing, since the
//! rule is proportional to consumption and gives no basis for anything else.
//! It stays in the list with `capped` false (its cap did not limit it), so the
//! case shows every member that reported. If no member has consumption there
//! is nothing to split by, and the whole total is unallocated: the one case
//! where `unallocated_tonnes` is positive although not every member is at its
//! cap.
//!
//! # Order and precision
//!
//! Allocations come sorted by member code (byte order), whatever the order of
//! the claims: the split is a function of the set of reports, not of the
//! store's iteration order, down to the last bit of every float (sums are
//! taken in that order), and it lists members as `ListStockpiles` does.
//!
//! A capped member's allocation is exactly its cap and no allocation exceeds
//! its cap. Allocations plus `unallocated_tonnes` equal the total up to
//! rounding, a few ulps per member.

use std::fmt;

/// One member's claim on a release: what the split is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Member code (ISO 3166-1 alpha-2 or bloc code); non-empty, unique
    /// within one call.
    pub member: String,
    /// Consumption of the mineral in tonnes per year, from the member's
    /// figures or, when it withheld them, from reference data; finite and
    /// 0 or more, 0 when unknown.
    pub consumption_tonnes_per_year: f64,
    /// The member's stockpile in tonnes, finite and 0 or more; `None` when the
    /// member withheld its figures, which leaves it uncapped.
    pub cap_tonnes: Option<f64>,
}

/// One member's part of a [`Split`]: the computed fields of the contract's
/// `MemberAllocation` (pledges and fulfilments are tracked elsewhere).
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Member code, as in the [`Claim`].
    pub member: String,
    /// Consumption used for the split, as in the [`Claim`].
    pub consumption_tonnes_per_year: f64,
    /// The member's share of all claimants' consumption, 0 to 1; the shares
    /// sum to 1 unless no member has consumption (then all are 0).
    pub consumption_share: f64,
    /// The member's stockpile cap, as in the [`Claim`].
    pub cap_tonnes: Option<f64>,
    /// True when the cap limited the allocation; the allocation then equals
    /// the cap exactly. Never true without a cap.
    pub capped: bool,
    /// Tonnes the member is asked to release; 0 or more, at most the cap.
    pub allocated_tonnes: f64,
}

/// How a total release is split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// One allocation per claim, sorted by member code.
    pub allocations: Vec<Allocation>,
    /// Tonnes of the total that no member could take: every member with
    /// consumption is at its cap, or no member has consumption. 0 or more.
    pub unallocated_tonnes: f64,
}

/// Why [`allocate`] refused its input. The contract's validation of reports,
/// declarations and reference data keeps every such value out, so for the
/// service this is a bug of its own (INTERNAL), never the voter's fault.
#[derive(Debug, Clone, PartialEq)]
pub enum AllocationError {
    /// The total release is negative, infinite or NaN.
    Total {
        /// The value given.
        value: f64,
    },
    /// A claim has an empty member code.
    EmptyMember,
    /// Two claims name the same member.
    DuplicateMember {
        /// The member code.
        member: String,
    },
    /// A consumption is negative, infinite or NaN.
    Consumption {
        /// The member code.
        member: String,
        /// The value given.
        value: f64,
    },
    /// A cap is negative, infinite or NaN.
    Cap {
        /// The member code.
        member: String,
        /// The value given.
        value: f64,
    },
}

impl fmt::Display for AllocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocationError::Total { value } => {
                write!(f, "total release must be finite and 0 or more, got {value}")
            }
            AllocationError::EmptyMember => f.write_str("a claim has an empty member code"),
            AllocationError::DuplicateMember { member } => {
                write!(f, "member {member} has more than one claim")
            }
            AllocationError::Consumption { member, value } => write!(
                f,
                "consumption of member {member} must be finite and 0 or more, got {value}"
            ),
            AllocationError::Cap { member, value } => write!(
                f,
                "stockpile cap of member {member} must be finite and 0 or more, got {value}"
            ),
        }
    }
}

impl std::error::Error for AllocationError {}

/// Splits `total_release_tonnes` among the claims, by consumption share,
/// capped by stockpiles, redistributing what caps cut (see the module docs for
/// the rule and its edge cases). A total of 0 allocates nothing to anyone;
/// with no claims the whole total is unallocated.
pub fn allocate(total_release_tonnes: f64, claims: &[Claim]) -> Result<Split, AllocationError> {
    let total = non_negative(total_release_tonnes).ok_or(AllocationError::Total {
        value: total_release_tonnes,
    })?;
    let mut claims: Vec<Claim> = claims
        .iter()
        .map(checked)
        .collect::<Result<_, AllocationError>>()?;
    claims.sort_by(|a, b| a.member.cmp(&b.member));
    if let Some(pair) = claims.windows(2).find(|p| p[0].member == p[1].member) {
        return Err(AllocationError::DuplicateMember {
            member: pair[0].member.clone(),
        });
    }

    // Shares do not depend on scale; dividing by the largest consumption first
    // keeps every weight within [0, 1], so no finite input overflows a sum.
    let largest = claims
        .iter()
        .map(|c| c.consumption_tonnes_per_year)
        .fold(0.0, f64::max);
    let weights: Vec<f64> = claims
        .iter()
        .map(|c| match largest {
            0.0 => 0.0,
            _ => c.consumption_tonnes_per_year / largest,
        })
        .collect();
    let total_weight: f64 = weights.iter().sum();

    let mut capped = vec![false; claims.len()];
    let mut allocated = vec![0.0; claims.len()];
    let unallocated = loop {
        let held_by_capped: f64 = claims
            .iter()
            .zip(&capped)
            .filter(|(_, capped)| **capped)
            .filter_map(|(c, _)| c.cap_tonnes)
            .sum();
        // Mathematically positive while some member is open (each capped
        // member keeps less than its amount of the round that capped it); the
        // clamp only absorbs rounding.
        let remaining = (total - held_by_capped).max(0.0);
        let open_weight: f64 = weights
            .iter()
            .zip(&capped)
            .filter(|(_, capped)| !**capped)
            .map(|(w, _)| w)
            .sum();
        if open_weight == 0.0 {
            // Nobody left who can take more: every member with consumption is
            // at its cap, or none has consumption.
            break remaining;
        }
        let mut capped_now = false;
        for (i, claim) in claims.iter().enumerate() {
            if capped[i] {
                continue;
            }
            // `remaining × (w / open)` rather than `(remaining / open) × w`:
            // the factor is at most 1, so nothing overflows however small the
            // open weight.
            let amount = remaining * (weights[i] / open_weight);
            match claim.cap_tonnes {
                Some(cap) if amount > cap => {
                    capped[i] = true;
                    allocated[i] = cap;
                    capped_now = true;
                }
                _ => allocated[i] = amount,
            }
        }
        if !capped_now {
            break 0.0;
        }
    };

    let allocations = claims
        .into_iter()
        .enumerate()
        .map(|(i, claim)| Allocation {
            consumption_share: match total_weight {
                0.0 => 0.0,
                _ => weights[i] / total_weight,
            },
            member: claim.member,
            consumption_tonnes_per_year: claim.consumption_tonnes_per_year,
            cap_tonnes: claim.cap_tonnes,
            capped: capped[i],
            allocated_tonnes: allocated[i],
        })
        .collect();
    Ok(Split {
        allocations,
        unallocated_tonnes: unallocated,
    })
}

/// The claim with its numbers checked, and `-0.0` made `0.0` so no output
/// prints as negative.
fn checked(claim: &Claim) -> Result<Claim, AllocationError> {
    if claim.member.is_empty() {
        return Err(AllocationError::EmptyMember);
    }
    let consumption = non_negative(claim.consumption_tonnes_per_year).ok_or_else(|| {
        AllocationError::Consumption {
            member: claim.member.clone(),
            value: claim.consumption_tonnes_per_year,
        }
    })?;
    let cap = match claim.cap_tonnes {
        None => None,
        Some(value) => Some(non_negative(value).ok_or_else(|| AllocationError::Cap {
            member: claim.member.clone(),
            value,
        })?),
    };
    Ok(Claim {
        member: claim.member.clone(),
        consumption_tonnes_per_year: consumption,
        cap_tonnes: cap,
    })
}

fn non_negative(value: f64) -> Option<f64> {
    match value {
        0.0 => Some(0.0),
        v if v.is_finite() && v > 0.0 => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(member: &str, consumption: f64, cap: f64) -> Claim {
        Claim {
            member: member.to_owned(),
            consumption_tonnes_per_year: consumption,
            cap_tonnes: Some(cap),
        }
    }

    fn withheld(member: &str, consumption: f64) -> Claim {
        Claim {
            member: member.to_owned(),
            consumption_tonnes_per_year: consumption,
            cap_tonnes: None,
        }
    }

    /// `(member, allocated, capped)` per allocation, in output order.
    fn outcome(split: &Split) -> Vec<(&str, f64, bool)> {
        split
            .allocations
            .iter()
            .map(|a| (a.member.as_str(), a.allocated_tonnes, a.capped))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    #[track_caller]
    fn assert_outcome(split: &Split, expected: &[(&str, f64, bool)], unallocated: f64) {
        let got = outcome(split);
        let matches = got.len() == expected.len()
            && got
                .iter()
                .zip(expected)
                .all(|(g, e)| g.0 == e.0 && close(g.1, e.1) && g.2 == e.2);
        assert!(matches, "got {got:?}, expected {expected:?}");
        assert!(
            close(split.unallocated_tonnes, unallocated),
            "unallocated {} != {unallocated}",
            split.unallocated_tonnes
        );
    }

    #[test]
    fn without_binding_caps_the_split_follows_consumption_shares() {
        // Consumption 100 : 300 : 600 of 1000, shares 0.1, 0.3, 0.6.
        // 100 t → 10, 30, 60; caps of 1000 never bind.
        let split = allocate(
            100.0,
            &[
                claim("AU", 100.0, 1000.0),
                claim("DE", 300.0, 1000.0),
                claim("US", 600.0, 1000.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[
                ("AU", 10.0, false),
                ("DE", 30.0, false),
                ("US", 60.0, false),
            ],
            0.0,
        );
        let shares: Vec<f64> = split
            .allocations
            .iter()
            .map(|a| a.consumption_share)
            .collect();
        assert!(close(shares[0], 0.1) && close(shares[1], 0.3) && close(shares[2], 0.6));
    }

    #[test]
    fn what_a_cap_cuts_goes_to_the_others_by_consumption() {
        // Shares 0.1, 0.3, 0.6 of 100 t → 10, 30, 60. US holds only 40: capped,
        // 20 cut. AU and DE split the 20 as 100 : 300 → +5 and +15.
        // AU 15, DE 45, US 40; 15 + 45 + 40 = 100.
        let split = allocate(
            100.0,
            &[
                claim("AU", 100.0, 1000.0),
                claim("DE", 300.0, 1000.0),
                claim("US", 600.0, 40.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[("AU", 15.0, false), ("DE", 45.0, false), ("US", 40.0, true)],
            0.0,
        );
        // The share reported is of consumption, not of the release.
        assert!(close(split.allocations[2].consumption_share, 0.6));
    }

    #[test]
    fn redistribution_can_cap_a_second_member() {
        // Round 1: 10, 30, 60; US (cap 40) capped, DE (cap 40) fits at 30.
        // Round 2: 60 left for AU and DE as 100 : 300 → 15, 45; DE over 40, capped.
        // Round 3: 100 - 40 - 40 = 20 left, all to AU.
        // AU 20, DE 40, US 40.
        let split = allocate(
            100.0,
            &[
                claim("AU", 100.0, 1000.0),
                claim("DE", 300.0, 40.0),
                claim("US", 600.0, 40.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[("AU", 20.0, false), ("DE", 40.0, true), ("US", 40.0, true)],
            0.0,
        );
    }

    #[test]
    fn when_every_member_is_capped_the_rest_is_unallocated() {
        // Round 1: 10, 30, 60; DE (cap 20) and US (cap 50) capped, AU (cap 12) fits.
        // Round 2: 100 - 20 - 50 = 30 left, all AU's; over 12, capped.
        // AU 12, DE 20, US 50; 100 - 82 = 18 unallocated.
        let split = allocate(
            100.0,
            &[
                claim("AU", 100.0, 12.0),
                claim("DE", 300.0, 20.0),
                claim("US", 600.0, 50.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[("AU", 12.0, true), ("DE", 20.0, true), ("US", 50.0, true)],
            18.0,
        );
    }

    #[test]
    fn a_member_that_withheld_figures_absorbs_what_caps_cut() {
        // JP withheld (consumption 100 from reference data, no cap).
        // Round 1: 10, 30, 60; US (cap 40) capped, 20 cut.
        // Round 2: JP and DE split 60 as 100 : 300 → JP 15, DE 45.
        // JP takes 5 more than its plain share of 10, like any uncapped member.
        let split = allocate(
            100.0,
            &[
                claim("DE", 300.0, 1000.0),
                withheld("JP", 100.0),
                claim("US", 600.0, 40.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[("DE", 45.0, false), ("JP", 15.0, false), ("US", 40.0, true)],
            0.0,
        );
        assert_eq!(split.allocations[1].cap_tonnes, None);

        // With every disclosing member capped (DE at 10, US at 20), JP takes the
        // remaining 100 - 30 = 70 and nothing is unallocated: JP has no cap to reach.
        let split = allocate(
            100.0,
            &[
                claim("DE", 300.0, 10.0),
                withheld("JP", 100.0),
                claim("US", 600.0, 20.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[("DE", 10.0, true), ("JP", 70.0, false), ("US", 20.0, true)],
            0.0,
        );
    }

    #[test]
    fn a_zero_total_asks_nothing_of_anyone() {
        // 0 t: every amount is 0, which fits every cap, even a zero stockpile;
        // shares are still reported (0.1, 0.3, 0.6).
        let split = allocate(
            0.0,
            &[
                claim("AU", 100.0, 0.0),
                claim("DE", 300.0, 1000.0),
                withheld("US", 600.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[("AU", 0.0, false), ("DE", 0.0, false), ("US", 0.0, false)],
            0.0,
        );
        assert!(close(split.allocations[2].consumption_share, 0.6));
    }

    #[test]
    fn a_member_with_an_empty_stockpile_is_capped_at_zero() {
        // AU consumes 100 (share 0.1) but holds nothing: its 10 goes to DE and
        // US as 300 : 600 → DE 30 + 10/3 = 100/3, US 60 + 20/3 = 200/3.
        let split = allocate(
            100.0,
            &[
                claim("AU", 100.0, 0.0),
                claim("DE", 300.0, 1000.0),
                claim("US", 600.0, 1000.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[
                ("AU", 0.0, true),
                ("DE", 100.0 / 3.0, false),
                ("US", 200.0 / 3.0, false),
            ],
            0.0,
        );
        assert!(close(split.allocations[0].consumption_share, 0.1));
    }

    #[test]
    fn a_single_member_takes_all_it_holds() {
        // Share 1: the whole 100 if the stockpile holds it...
        let split = allocate(100.0, &[claim("US", 50.0, 500.0)]).unwrap();
        assert_outcome(&split, &[("US", 100.0, false)], 0.0);
        assert_eq!(split.allocations[0].consumption_share, 1.0);
        // ...else its 80 t, and 100 - 80 = 20 is unallocated.
        let split = allocate(100.0, &[claim("US", 50.0, 80.0)]).unwrap();
        assert_outcome(&split, &[("US", 80.0, true)], 20.0);
    }

    #[test]
    fn members_without_consumption_are_listed_but_asked_for_nothing() {
        // FR and JP (withheld, no reference figure) consume 0: share 0, nothing
        // asked, never capped. DE's cap of 30 cuts 70 that nobody else can take.
        let split = allocate(
            100.0,
            &[
                claim("DE", 300.0, 30.0),
                claim("FR", 0.0, 1000.0),
                withheld("JP", 0.0),
            ],
        )
        .unwrap();
        assert_outcome(
            &split,
            &[("DE", 30.0, true), ("FR", 0.0, false), ("JP", 0.0, false)],
            70.0,
        );
        assert_eq!(split.allocations[1].consumption_share, 0.0);

        // Nobody with consumption: nothing to split by, all 100 unallocated.
        let split = allocate(100.0, &[withheld("JP", 0.0)]).unwrap();
        assert_outcome(&split, &[("JP", 0.0, false)], 100.0);
        assert_eq!(split.allocations[0].consumption_share, 0.0);

        // No claims at all.
        let split = allocate(100.0, &[]).unwrap();
        assert!(split.allocations.is_empty());
        assert_eq!(split.unallocated_tonnes, 100.0);
    }

    #[test]
    fn allocations_are_sorted_by_member_whatever_the_input_order() {
        let claims = [
            claim("US", 600.0, 40.0),
            withheld("JP", 100.0),
            claim("DE", 300.0, 1000.0),
        ];
        let mut reversed = claims.clone();
        reversed.reverse();
        let split = allocate(100.0, &claims).unwrap();
        let members: Vec<&str> = split
            .allocations
            .iter()
            .map(|a| a.member.as_str())
            .collect();
        assert_eq!(members, ["DE", "JP", "US"]);
        assert_eq!(split, allocate(100.0, &reversed).unwrap());
    }

    #[test]
    fn nonsense_numbers_and_duplicate_members_are_refused() {
        let ok = claim("US", 600.0, 40.0);
        for total in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                allocate(total, std::slice::from_ref(&ok)),
                Err(AllocationError::Total { .. })
            ));
        }
        for consumption in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                allocate(1.0, &[claim("DE", consumption, 1.0)]),
                Err(AllocationError::Consumption { member, .. }) if member == "DE"
            ));
        }
        for cap in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                allocate(1.0, &[claim("DE", 1.0, cap)]),
                Err(AllocationError::Cap { member, .. }) if member == "DE"
            ));
        }
        assert_eq!(
            allocate(1.0, &[ok.clone(), withheld("US", 5.0)]),
            Err(AllocationError::DuplicateMember {
                member: "US".to_owned()
            })
        );
        assert_eq!(
            allocate(1.0, &[withheld("", 5.0)]),
            Err(AllocationError::EmptyMember)
        );
    }

    #[test]
    fn negative_zero_inputs_come_out_as_zero() {
        let split = allocate(-0.0, &[claim("US", -0.0, -0.0)]).unwrap();
        let a = &split.allocations[0];
        for v in [
            a.consumption_tonnes_per_year,
            a.consumption_share,
            a.allocated_tonnes,
            a.cap_tonnes.unwrap(),
            split.unallocated_tonnes,
        ] {
            assert!(v == 0.0 && v.is_sign_positive(), "{v:?}");
        }
    }

    /// xorshift64: deterministic, so a failure reproduces from its case number.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random case mixing every kind of member, with totals and caps on the
    /// same scale as the consumption shares so that caps bind about half the
    /// time and cascades and all-capped splits happen.
    fn random_case(rng: &mut Rng) -> (f64, Vec<Claim>) {
        let n = 1 + rng.below(8) as usize;
        let scale = 10f64.powi(rng.below(7) as i32);
        let mut claims: Vec<Claim> = (0..n)
            .map(|i| {
                let consumption = match rng.below(10) {
                    0 | 1 => 0.0,
                    _ => scale * (0.01 + rng.unit()),
                };
                let cap = match rng.below(20) {
                    0..=2 => None,
                    3 | 4 => Some(0.0),
                    _ => Some(consumption.max(scale) * 0.3 * rng.unit()),
                };
                Claim {
                    // Codes in a different order from the claims.
                    member: format!("M{}", (i * 7) % 11),
                    consumption_tonnes_per_year: consumption,
                    cap_tonnes: cap,
                }
            })
            .collect();
        let total_consumption: f64 = claims.iter().map(|c| c.consumption_tonnes_per_year).sum();
        let total = match rng.below(20) {
            0 => 0.0,
            1 => 1e9,
            _ => total_consumption.max(scale) * 0.3 * rng.unit(),
        };
        // Shuffle so input order never matches output order by accident.
        for i in (1..claims.len()).rev() {
            claims.swap(i, rng.below(i as u64 + 1) as usize);
        }
        (total, claims)
    }

    /// The contract's outcome found independently: bisect for the level λ
    /// where Σ min(λ × consumption, cap) reaches the total.
    fn reference_allocations(total: f64, claims: &[Claim]) -> Vec<(String, f64)> {
        let at = |level: f64| -> Vec<(String, f64)> {
            claims
                .iter()
                .map(|c| {
                    let amount = if c.consumption_tonnes_per_year == 0.0 {
                        0.0
                    } else {
                        (level * c.consumption_tonnes_per_year)
                            .min(c.cap_tonnes.unwrap_or(f64::MAX))
                    };
                    (c.member.clone(), amount)
                })
                .collect()
        };
        let placed = |level: f64| at(level).iter().map(|(_, a)| a).sum::<f64>();
        let (mut lo, mut hi) = (0.0, 1.0);
        while placed(hi) < total && hi < 1e300 {
            lo = hi;
            hi *= 2.0;
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if placed(mid) < total {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut result = at(hi);
        result.sort_by(|a, b| a.0.cmp(&b.0));
        result
    }

    #[test]
    fn random_splits_keep_every_promise_of_the_contract() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..500 {
            let (total, claims) = random_case(&mut rng);
            let split = allocate(total, &claims).unwrap();
            let tol = 1e-9 * total.max(1.0);
            let ctx = format!("case {case}: total {total}, claims {claims:?}, split {split:?}");

            // Same members, sorted; same split from any input order.
            let mut members: Vec<&str> = claims.iter().map(|c| c.member.as_str()).collect();
            members.sort();
            let got: Vec<&str> = split
                .allocations
                .iter()
                .map(|a| a.member.as_str())
                .collect();
            assert_eq!(got, members, "{ctx}");
            let mut rotated = claims.clone();
            rotated.rotate_left(1);
            assert_eq!(allocate(total, &rotated).unwrap(), split, "{ctx}");

            // Never negative; never above the cap; capped means exactly at cap.
            assert!(split.unallocated_tonnes >= 0.0, "{ctx}");
            for a in &split.allocations {
                assert!(a.allocated_tonnes >= 0.0, "{ctx}");
                assert!((0.0..=1.0).contains(&a.consumption_share), "{ctx}");
                if let Some(cap) = a.cap_tonnes {
                    assert!(a.allocated_tonnes <= cap, "{ctx}");
                }
                if a.capped {
                    assert_eq!(Some(a.allocated_tonnes), a.cap_tonnes, "{ctx}");
                }
                if a.consumption_tonnes_per_year == 0.0 {
                    assert!(!a.capped && a.allocated_tonnes == 0.0, "{ctx}");
                    assert_eq!(a.consumption_share, 0.0, "{ctx}");
                }
            }

            // Conservation.
            let placed: f64 = split.allocations.iter().map(|a| a.allocated_tonnes).sum();
            assert!(
                (placed + split.unallocated_tonnes - total).abs() <= tol,
                "{ctx}"
            );

            // Shares sum to 1 whenever anyone consumes.
            let shares: f64 = split.allocations.iter().map(|a| a.consumption_share).sum();
            let anyone_consumes = claims.iter().any(|c| c.consumption_tonnes_per_year > 0.0);
            assert!(!anyone_consumes || (shares - 1.0).abs() <= 1e-12, "{ctx}");

            // Uncapped members with consumption share one level λ; each capped
            // member's cap is below what λ would ask of it (the cap bound), and
            // something is unallocated only when no such uncapped member is left.
            let open: Vec<&Allocation> = split
                .allocations
                .iter()
                .filter(|a| !a.capped && a.consumption_tonnes_per_year > 0.0)
                .collect();
            if let Some(first) = open.first() {
                let level = first.allocated_tonnes / first.consumption_tonnes_per_year;
                for a in &open {
                    let expected = level * a.consumption_tonnes_per_year;
                    assert!((a.allocated_tonnes - expected).abs() <= tol, "{ctx}");
                }
                for a in split.allocations.iter().filter(|a| a.capped) {
                    assert!(
                        a.allocated_tonnes <= level * a.consumption_tonnes_per_year + tol,
                        "{ctx}"
                    );
                }
                assert_eq!(split.unallocated_tonnes, 0.0, "{ctx}");
            } else {
                let held: f64 = split
                    .allocations
                    .iter()
                    .filter(|a| a.capped)
                    .map(|a| a.allocated_tonnes)
                    .sum();
                assert!(held <= total + tol, "{ctx}");
            }
            for a in split.allocations.iter().filter(|a| a.cap_tonnes.is_none()) {
                assert!(!a.capped, "{ctx}");
            }

            // And the amounts are the ones the level rule defines.
            for (a, (member, expected)) in split
                .allocations
                .iter()
                .zip(reference_allocations(total, &claims))
            {
                assert_eq!(a.member, member, "{ctx}");
                assert!((a.allocated_tonnes - expected).abs() <= tol, "{ctx}");
            }
        }
    }
}
