//! The emergency service end to end, through the gateway: stockpiles with
//! their markings and the partnership aggregate, a shortage from
//! declaration through bloc voting, activation with its allocation,
//! pledges and deliveries to closure; rejection, expiry (also across a
//! restart), idempotent retries, every invalid transition and bad input.
//!
//! The dev policy's voting parties: US and EU (founding), JP; DE and FR
//! vote through the EU. Default rule: every founding party and a majority
//! of the others (here: JP) approve.

use orex_e2e::{Stack, within};
use orex_kit::status::{Reason, reason_of};
use orex_proto::common::v1::{Marking, Mineral};
use orex_proto::emergency::v1::*;
use prost_types::Timestamp;
use tonic::Code;

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn ts(offset_secs: i64) -> Timestamp {
    let mut t = Timestamp::from(std::time::SystemTime::now());
    t.seconds += offset_secs;
    t
}

fn figures(stockpile: f64, consumption: f64, net_imports: f64) -> stockpile_content::Disclosure {
    stockpile_content::Disclosure::Figures(StockpileFigures {
        stockpile_tonnes: stockpile,
        consumption_tonnes_per_year: consumption,
        net_imports_tonnes_per_year: net_imports,
    })
}

fn refusal() -> stockpile_content::Disclosure {
    stockpile_content::Disclosure::Refusal(DisclosureRefusal {
        reason: "figures are classified under national law".into(),
        legal_basis: "Regulation (EU) 2024/1252 Art. 22".into(),
    })
}

fn content(
    disclosure: stockpile_content::Disclosure,
    marking: Marking,
    to: &[&str],
) -> StockpileContent {
    StockpileContent {
        mineral: Mineral::Gallium as i32,
        as_of: Some(ts(-86_400)),
        disclosure: Some(disclosure),
        marking: marking as i32,
        recipient_members: to.iter().map(|m| m.to_string()).collect(),
    }
}

async fn report(stack: &Stack, bundle: &str, c: StockpileContent) -> Stockpile {
    stack
        .emergency_client(bundle)
        .await
        .report_stockpile(ReportStockpileRequest {
            request_id: rid(),
            content: Some(c),
        })
        .await
        .unwrap_or_else(|s| panic!("{bundle} reports: {s:?}"))
        .into_inner()
        .stockpile
        .unwrap()
}

async fn list(stack: &Stack, bundle: &str) -> ListStockpilesResponse {
    stack
        .emergency_client(bundle)
        .await
        .list_stockpiles(ListStockpilesRequest::default())
        .await
        .unwrap()
        .into_inner()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn declaration(deadline: Timestamp) -> ShortageDeclaration {
    ShortageDeclaration {
        mineral: Mineral::Gallium as i32,
        shortfall_tonnes_per_month: 12.0,
        total_release_tonnes: 40.0,
        justification: "Chinese export licensing has halted primary gallium shipments".into(),
        linked_report_ids: vec![],
        voting_deadline: Some(deadline),
        fulfilment_deadline: None,
    }
}

async fn declare(stack: &Stack, deadline: Timestamp) -> ShortageCase {
    stack
        .emergency_client("us-cole")
        .await
        .declare_shortage(DeclareShortageRequest {
            request_id: rid(),
            declaration: Some(declaration(deadline)),
        })
        .await
        .expect("declare")
        .into_inner()
        .shortage_case
        .unwrap()
}

async fn vote(
    stack: &Stack,
    bundle: &str,
    case: &str,
    choice: VoteChoice,
) -> Result<ShortageCase, tonic::Status> {
    stack
        .emergency_client(bundle)
        .await
        .cast_vote(CastVoteRequest {
            request_id: rid(),
            case_id: case.into(),
            choice: choice as i32,
            comment: String::new(),
        })
        .await
        .map(|r| r.into_inner().shortage_case.unwrap())
}

async fn get(stack: &Stack, bundle: &str, case: &str) -> ShortageCase {
    stack
        .emergency_client(bundle)
        .await
        .get_case(GetCaseRequest {
            case_id: case.into(),
        })
        .await
        .expect("get case")
        .into_inner()
        .shortage_case
        .unwrap()
}

fn refused(s: &tonic::Status, code: Code, reason: Reason) {
    assert_eq!(s.code(), code, "{s:?}");
    assert_eq!(reason_of(s), Some(reason), "{s:?}");
}

#[tokio::test]
async fn stockpile_figures_follow_their_marking_and_the_aggregate_counts_them_all() {
    let stack = Stack::spawn().await;
    let us = report(
        &stack,
        "us-cole",
        content(figures(73.0, 365.0, 146.0), Marking::Green, &[]),
    )
    .await;
    // 73 t against 365 t/y: 73 days, a fifth of a year; 182.5 days of net imports.
    assert_eq!((us.version, us.days_of_cover), (1, Some(73.0)));
    assert_eq!(us.share_of_annual_consumption, Some(0.2));
    assert_eq!(us.days_of_net_imports, Some(182.5));
    report(
        &stack,
        "eu-clara",
        content(figures(27.0, 365.0, 365.0), Marking::Amber, &["US"]),
    )
    .await;
    report(&stack, "jp-chika", content(refusal(), Marking::Green, &[])).await;

    // A US analyst sees the EU's AMBER figures (the US is a recipient)…
    let seen = list(&stack, "us-ana").await;
    let eu = seen.stockpiles.iter().find(|s| s.member == "EU").unwrap();
    assert!(!eu.figures_restricted);
    assert_eq!(eu.days_of_cover, Some(27.0));
    // …a JP analyst does not, but sees that the EU reported, and the refusal.
    let seen = list(&stack, "jp-aiko").await;
    let eu = seen.stockpiles.iter().find(|s| s.member == "EU").unwrap();
    assert!(eu.figures_restricted);
    let c = eu.content.as_ref().unwrap();
    assert!(c.disclosure.is_none() && c.recipient_members.is_empty());
    assert_eq!(eu.days_of_cover, None);
    let jp = seen.stockpiles.iter().find(|s| s.member == "JP").unwrap();
    assert!(matches!(
        jp.content.as_ref().unwrap().disclosure,
        Some(stockpile_content::Disclosure::Refusal(_))
    ));
    // AMBER means the reporting member itself, as for reports: a state of
    // the reporting bloc sees the figures only when named.
    let seen = list(&stack, "de-carl").await;
    assert!(
        seen.stockpiles
            .iter()
            .find(|s| s.member == "EU")
            .unwrap()
            .figures_restricted
    );

    // The aggregate, the same for everyone, sums only what everyone may
    // see (else JP could subtract the US's 73 t to learn the EU's): 73 t
    // against 365 t/y (73 days) and 146 t/y of net imports (182.5 days).
    for bundle in ["us-ana", "jp-aiko"] {
        let a = &list(&stack, bundle).await.aggregates;
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(
            (
                a[0].members_with_figures,
                a[0].members_refusing,
                a[0].members_restricted
            ),
            (1, 1, 1)
        );
        close(a[0].stockpile_tonnes, 73.0);
        close(a[0].days_of_cover.unwrap(), 73.0);
        close(a[0].days_of_net_imports.unwrap(), 182.5);
    }

    // A new report replaces the member's previous one for the mineral.
    let us2 = report(
        &stack,
        "us-cole",
        content(figures(80.0, 365.0, 146.0), Marking::Clear, &[]),
    )
    .await;
    assert_eq!(us2.version, 2);
    let seen = list(&stack, "us-ana").await;
    assert_eq!(
        seen.stockpiles.iter().filter(|s| s.member == "US").count(),
        1
    );
    stack.stop().await;
}

#[tokio::test]
async fn every_bad_stockpile_or_declaration_is_refused_by_name_and_nothing_is_stored() {
    let stack = Stack::spawn().await;
    let mut cole = stack.emergency_client("us-cole").await;
    let good = || content(figures(10.0, 100.0, 50.0), Marking::Green, &[]);
    let cases: Vec<(&str, StockpileContent)> = vec![
        (
            "content.marking",
            StockpileContent {
                marking: Marking::Red as i32,
                ..good()
            },
        ),
        (
            "content.marking",
            StockpileContent {
                marking: 0,
                ..good()
            },
        ),
        (
            "content.recipient_members",
            StockpileContent {
                marking: Marking::Amber as i32,
                ..good()
            },
        ),
        (
            "content.recipient_members[0]",
            StockpileContent {
                marking: Marking::Amber as i32,
                recipient_members: vec!["ZZ".into()],
                ..good()
            },
        ),
        (
            "content.recipient_members",
            StockpileContent {
                recipient_members: vec!["JP".into()],
                ..good()
            },
        ),
        (
            "content.disclosure",
            StockpileContent {
                disclosure: None,
                ..good()
            },
        ),
        (
            "content.mineral",
            StockpileContent {
                mineral: 0,
                ..good()
            },
        ),
        (
            "content.as_of",
            StockpileContent {
                as_of: Some(ts(3600)),
                ..good()
            },
        ),
        (
            "content.as_of",
            StockpileContent {
                as_of: None,
                ..good()
            },
        ),
        (
            "content.figures.stockpile_tonnes",
            StockpileContent {
                disclosure: Some(figures(-1.0, 100.0, 0.0)),
                ..good()
            },
        ),
        (
            "content.figures.consumption_tonnes_per_year",
            StockpileContent {
                disclosure: Some(figures(1.0, 0.0, 0.0)),
                ..good()
            },
        ),
        (
            "content.figures.net_imports_tonnes_per_year",
            StockpileContent {
                disclosure: Some(figures(1.0, 1.0, f64::NAN)),
                ..good()
            },
        ),
        (
            "content.refusal.reason",
            StockpileContent {
                disclosure: Some(stockpile_content::Disclosure::Refusal(
                    DisclosureRefusal::default(),
                )),
                ..good()
            },
        ),
    ];
    for (field, c) in cases {
        let s = cole
            .report_stockpile(ReportStockpileRequest {
                request_id: rid(),
                content: Some(c),
            })
            .await
            .unwrap_err();
        refused(&s, Code::InvalidArgument, Reason::InvalidField);
        assert!(s.message().starts_with(field), "{field}: {}", s.message());
    }
    assert!(list(&stack, "us-ana").await.stockpiles.is_empty());

    let bad: Vec<(&str, ShortageDeclaration)> = vec![
        ("declaration.voting_deadline", declaration(ts(-1))),
        ("declaration.voting_deadline", declaration(ts(169 * 3600))),
        (
            "declaration.mineral",
            ShortageDeclaration {
                mineral: 0,
                ..declaration(ts(3600))
            },
        ),
        (
            "declaration.total_release_tonnes",
            ShortageDeclaration {
                total_release_tonnes: 0.0,
                ..declaration(ts(3600))
            },
        ),
        (
            "declaration.shortfall_tonnes_per_month",
            ShortageDeclaration {
                shortfall_tonnes_per_month: f64::INFINITY,
                ..declaration(ts(3600))
            },
        ),
        (
            "declaration.justification",
            ShortageDeclaration {
                justification: " ".into(),
                ..declaration(ts(3600))
            },
        ),
        (
            "declaration.linked_report_ids[0]",
            ShortageDeclaration {
                linked_report_ids: vec!["nope".into()],
                ..declaration(ts(3600))
            },
        ),
        (
            "declaration.fulfilment_deadline",
            ShortageDeclaration {
                fulfilment_deadline: Some(ts(60)),
                ..declaration(ts(3600))
            },
        ),
    ];
    for (field, d) in bad {
        let s = cole
            .declare_shortage(DeclareShortageRequest {
                request_id: rid(),
                declaration: Some(d),
            })
            .await
            .unwrap_err();
        refused(&s, Code::InvalidArgument, Reason::InvalidField);
        assert!(s.message().starts_with(field), "{field}: {}", s.message());
    }
    let s = cole
        .declare_shortage(DeclareShortageRequest {
            request_id: "has space".into(),
            declaration: Some(declaration(ts(3600))),
        })
        .await
        .unwrap_err();
    refused(&s, Code::InvalidArgument, Reason::InvalidField);
    let s = cole
        .cast_vote(CastVoteRequest {
            request_id: rid(),
            case_id: "not-a-case".into(),
            choice: 1,
            comment: String::new(),
        })
        .await
        .unwrap_err();
    refused(&s, Code::InvalidArgument, Reason::InvalidField);
    let unknown = uuid::Uuid::now_v7().hyphenated().to_string();
    let s = vote(&stack, "us-cole", &unknown, VoteChoice::Approve)
        .await
        .unwrap_err();
    refused(&s, Code::NotFound, Reason::NotFound);
    let s = vote(&stack, "us-cole", &unknown, VoteChoice::Unspecified)
        .await
        .unwrap_err();
    refused(&s, Code::InvalidArgument, Reason::InvalidField);
    let none = stack
        .emergency_client("us-ana")
        .await
        .list_cases(ListCasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(none.cases.is_empty());
    // Analysts read; only coordinators act.
    let s = stack
        .emergency_client("us-ana")
        .await
        .declare_shortage(DeclareShortageRequest {
            request_id: rid(),
            declaration: Some(declaration(ts(3600))),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    stack.stop().await;
}

/// Allocation by hand: US withheld its figures, so its consumption is the
/// reference data's 19 t/y, uncapped; the EU holds 10 t against 57 t/y; JP
/// 50 t against 19 t/y. Shares 0.2 / 0.6 / 0.2 of 40 t: 8 / 24 / 8. The EU
/// is capped at 10; its 14 t go to the US and JP in proportion (equal):
/// 15 each.
#[tokio::test]
async fn a_shortage_from_declaration_through_bloc_voting_and_release_to_closure() {
    let mut stack = Stack::spawn().await;
    report(&stack, "us-cole", content(refusal(), Marking::Green, &[])).await;
    report(
        &stack,
        "eu-clara",
        content(figures(10.0, 57.0, 57.0), Marking::Green, &[]),
    )
    .await;
    report(
        &stack,
        "jp-chika",
        content(figures(50.0, 19.0, 19.0), Marking::Green, &[]),
    )
    .await;
    let case = declare(&stack, ts(3600)).await;
    assert_eq!(case.status(), CaseStatus::Voting);
    let tally = case.tally.clone().unwrap();
    assert_eq!(tally.eligible_voting_members, ["EU", "JP", "US"]);
    assert_eq!(tally.founding_members, ["EU", "US"]);
    assert_eq!(tally.pending_voting_members, ["EU", "JP", "US"]);

    // DE votes for the EU; the EU cannot vote again, through any state.
    let after = vote(&stack, "de-carl", &case.id, VoteChoice::Approve)
        .await
        .unwrap();
    assert_eq!(after.votes[0].voting_member, "EU");
    assert_eq!(after.votes[0].cast_by.as_ref().unwrap().member, "DE");
    let s = vote(&stack, "eu-clara", &case.id, VoteChoice::Approve)
        .await
        .unwrap_err();
    refused(&s, Code::AlreadyExists, Reason::AlreadyVoted);

    // A restart in the middle of the vote keeps it.
    stack.stop_emergency().await;
    stack.start_emergency().await;
    let after = vote(&stack, "us-cole", &case.id, VoteChoice::Approve)
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        CaseStatus::Voting,
        "JP's approval is still needed"
    );
    assert_eq!(after.tally.as_ref().unwrap().pending_voting_members, ["JP"]);
    let active = vote(&stack, "jp-chika", &case.id, VoteChoice::Approve)
        .await
        .unwrap();
    assert_eq!(active.status(), CaseStatus::Active);
    assert_eq!(active.version, 5, "declared, three votes, activated");
    let by = |m: &str| {
        active
            .allocations
            .iter()
            .find(|a| a.member == m)
            .unwrap()
            .clone()
    };
    let (us, eu, jp) = (by("US"), by("EU"), by("JP"));
    close(us.consumption_tonnes_per_year, 19.0);
    assert_eq!(us.stockpile_cap_tonnes, None);
    close(eu.consumption_share, 0.6);
    assert!(eu.capped);
    close(eu.allocated_tonnes, 10.0);
    close(us.allocated_tonnes, 15.0);
    close(jp.allocated_tonnes, 15.0);
    close(active.unallocated_tonnes, 0.0);

    // A vote on an active case, a second activation: refused with the status.
    let s = vote(&stack, "jp-chika", &case.id, VoteChoice::Reject)
        .await
        .unwrap_err();
    refused(&s, Code::FailedPrecondition, Reason::CaseStatusConflict);
    assert!(s.message().contains("ACTIVE"), "{}", s.message());

    // JP pledges 15 t and delivers 10 t, then 6 t more than it pledged.
    let mut chika = stack.emergency_client("jp-chika").await;
    let pledge_req = PledgeReleaseRequest {
        request_id: rid(),
        case_id: case.id.clone(),
        tonnes: 15.0,
        note: "from the JOGMEC stockpile".into(),
    };
    let pledged = chika
        .pledge_release(pledge_req.clone())
        .await
        .unwrap()
        .into_inner();
    let pledge = pledged.pledge.unwrap();
    // A retry with the same request id is the same pledge, not a second.
    let again = chika.pledge_release(pledge_req).await.unwrap().into_inner();
    assert_eq!(again.pledge.unwrap().id, pledge.id);
    let fulfil = |tonnes: f64| RecordFulfilmentRequest {
        request_id: rid(),
        case_id: case.id.clone(),
        pledge_id: pledge.id.clone(),
        tonnes,
        delivered_at: None,
        note: "shipment 1".into(),
    };
    let done = chika
        .record_fulfilment(fulfil(10.0))
        .await
        .unwrap()
        .into_inner();
    let c = done.shortage_case.unwrap();
    let jp = c.allocations.iter().find(|a| a.member == "JP").unwrap();
    close(jp.pledged_tonnes, 15.0);
    close(jp.fulfilled_tonnes, 10.0);
    let s = chika.record_fulfilment(fulfil(6.0)).await.unwrap_err();
    refused(&s, Code::FailedPrecondition, Reason::PledgeExceeded);
    let s = stack
        .emergency_client("us-cole")
        .await
        .record_fulfilment(fulfil(1.0))
        .await
        .unwrap_err();
    refused(&s, Code::PermissionDenied, Reason::NotOwnMember);

    // Only the declaring member closes.
    let closing = |reason: &str| CloseCaseRequest {
        request_id: rid(),
        case_id: case.id.clone(),
        reason: reason.into(),
    };
    let s = chika.close_case(closing("not ours")).await.unwrap_err();
    refused(&s, Code::PermissionDenied, Reason::NotOwnMember);
    let closed = stack
        .emergency_client("us-cole")
        .await
        .close_case(closing("supply restored"))
        .await
        .unwrap()
        .into_inner()
        .shortage_case
        .unwrap();
    assert_eq!(closed.status(), CaseStatus::Closed);
    assert!(closed.ended_at.is_some());
    let s = chika
        .pledge_release(PledgeReleaseRequest {
            request_id: rid(),
            case_id: case.id.clone(),
            tonnes: 1.0,
            note: String::new(),
        })
        .await
        .unwrap_err();
    refused(&s, Code::FailedPrecondition, Reason::CaseStatusConflict);

    // The event stream tells the whole story, in order, resumably.
    let mut events = stack
        .emergency_client("us-ana")
        .await
        .subscribe_case_events(SubscribeCaseEventsRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while kinds.last() != Some(&CaseEventKind::Closed) {
        let e = within(20, events.message()).await.unwrap().unwrap();
        kinds.push(e.kind());
    }
    use CaseEventKind::*;
    assert_eq!(
        kinds,
        [
            Declared,
            VoteCast,
            VoteCast,
            VoteCast,
            Activated,
            ReleasePledged,
            FulfilmentRecorded,
            Closed
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_founding_rejection_rejects_at_once_and_a_passed_deadline_expires_also_across_a_restart()
{
    let mut stack = Stack::spawn().await;
    let case = declare(&stack, ts(3600)).await;
    let rejected = vote(&stack, "us-cole", &case.id, VoteChoice::Reject)
        .await
        .unwrap();
    assert_eq!(rejected.status(), CaseStatus::Rejected);
    assert!(!rejected.tally.unwrap().rule_still_possible);
    let s = vote(&stack, "jp-chika", &case.id, VoteChoice::Approve)
        .await
        .unwrap_err();
    refused(&s, Code::FailedPrecondition, Reason::CaseStatusConflict);

    // A deadline that passes with nobody calling expires the case.
    let mut events = stack
        .emergency_client("us-ana")
        .await
        .subscribe_case_events(SubscribeCaseEventsRequest {
            filter: None,
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    let soon = declare(&stack, ts(2)).await;
    loop {
        let e = within(20, events.message()).await.unwrap().unwrap();
        if e.kind() == CaseEventKind::Expired {
            assert_eq!(e.shortage_case.unwrap().id, soon.id);
            assert!(e.actor.is_none(), "the service expires cases itself");
            break;
        }
    }

    // One that passes while the service is down expires when it starts.
    let later = declare(&stack, ts(2)).await;
    stack.stop_emergency().await;
    let deadline = later.declaration.unwrap().voting_deadline.unwrap();
    while Timestamp::from(std::time::SystemTime::now()).seconds <= deadline.seconds {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stack.start_emergency().await;
    let expired = within(20, async {
        loop {
            let c = get(&stack, "us-ana", &later.id).await;
            if c.status() == CaseStatus::Expired {
                break c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(expired.ended_at.is_some());
    let s = vote(&stack, "us-cole", &later.id, VoteChoice::Approve)
        .await
        .unwrap_err();
    refused(&s, Code::FailedPrecondition, Reason::CaseStatusConflict);
    stack.stop().await;
}

/// The risk service's scenarios read stockpiles from the emergency service
/// as the workload `risk`: figures every member may see count; a refusal
/// and figures marked for a narrower audience are WITHHELD (a scenario
/// never reveals them); no report is NOT_REPORTED; and with the emergency
/// service down, UNAVAILABLE with the reason — at once, not guessed.
#[tokio::test]
async fn risk_scenarios_use_the_stockpiles_every_member_may_see() {
    use orex_proto::common::v1::Stage;
    use orex_proto::risk::v1::{RunScenarioRequest, Scenario, StockpileAvailability};
    let mut stack = Stack::spawn().await;
    let us = report(
        &stack,
        "us-cole",
        content(figures(10.0, 19.0, 19.0), Marking::Green, &[]),
    )
    .await;
    report(
        &stack,
        "eu-clara",
        content(figures(99.0, 57.0, 57.0), Marking::Amber, &["US"]),
    )
    .await;
    report(&stack, "jp-chika", content(refusal(), Marking::Green, &[])).await;
    let scenario = || RunScenarioRequest {
        scenario: Some(Scenario {
            origin_country: "CN".into(),
            mineral: Mineral::Gallium as i32,
            stage: Stage::Processing as i32,
            cut_fraction: 0.5,
            duration_days: 90,
            start_time: None,
        }),
        members: vec!["US".into(), "EU".into(), "JP".into(), "FR".into()],
    };
    let r = stack
        .risk_client("us-ana")
        .await
        .run_scenario(scenario())
        .await
        .expect("scenario")
        .into_inner()
        .result
        .unwrap();
    let by = |m: &str| {
        r.member_impacts
            .iter()
            .find(|i| i.member == m)
            .unwrap()
            .clone()
    };
    let us_impact = by("US");
    assert_eq!(
        us_impact.stockpile_availability(),
        StockpileAvailability::Reported
    );
    assert_eq!(us_impact.stockpile_tonnes, Some(10.0));
    assert!(us_impact.shortfall_tonnes_per_day > 0.0);
    close(
        us_impact.days_of_cover.unwrap(),
        10.0 / us_impact.shortfall_tonnes_per_day,
    );
    close(
        us_impact.uncovered_shortfall_tonnes.unwrap(),
        (us_impact.shortfall_tonnes - 10.0).max(0.0),
    );
    for (m, a) in [
        ("EU", StockpileAvailability::Withheld),
        ("JP", StockpileAvailability::Withheld),
        ("FR", StockpileAvailability::NotReported),
    ] {
        let i = by(m);
        assert_eq!(i.stockpile_availability(), a, "{m}");
        assert!(i.stockpile_tonnes.is_none(), "{m}: no figure shown");
    }
    assert_eq!(r.stockpiles_as_of, us.reported_at);
    assert!(r.stockpiles_note.is_empty());

    stack.stop_emergency().await;
    let r = within(20, async {
        stack
            .risk_client("us-ana")
            .await
            .run_scenario(scenario())
            .await
            .expect("a scenario answers without stockpiles")
            .into_inner()
            .result
            .unwrap()
    })
    .await;
    assert!(
        r.member_impacts
            .iter()
            .all(|i| i.stockpile_availability() == StockpileAvailability::Unavailable)
    );
    assert!(
        r.stockpiles_note.contains("emergency service"),
        "{}",
        r.stockpiles_note
    );
    stack.start_emergency().await;
    stack.stop().await;
}

/// Directly at the emergency service, the workload `risk` may only list
/// stockpiles, sees figures only of CLEAR and GREEN reports, and speaks for
/// no member; the workload `sharing` may not call at all.
#[tokio::test]
async fn the_risk_workload_lists_only_what_every_member_may_see_and_nothing_else() {
    use orex_proto::emergency::v1::emergency_service_client::EmergencyServiceClient;
    let stack = Stack::spawn().await;
    report(
        &stack,
        "us-cole",
        content(figures(10.0, 19.0, 19.0), Marking::Green, &[]),
    )
    .await;
    report(
        &stack,
        "eu-clara",
        content(figures(99.0, 57.0, 57.0), Marking::AmberStrict, &["US"]),
    )
    .await;
    let (cert, key) = stack.workload_identity("risk");
    let ch = stack
        .channel(stack.emergency_addr, "emergency", Some((cert, key)))
        .await
        .unwrap();
    let mut risk = EmergencyServiceClient::new(ch);
    let listed = risk
        .list_stockpiles(ListStockpilesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let eu = listed.stockpiles.iter().find(|s| s.member == "EU").unwrap();
    assert!(eu.figures_restricted && eu.content.as_ref().unwrap().disclosure.is_none());
    let us = listed.stockpiles.iter().find(|s| s.member == "US").unwrap();
    assert!(!us.figures_restricted);
    // Anything else is refused, principal metadata or not.
    let mut req = tonic::Request::new(GetCaseRequest {
        case_id: uuid::Uuid::now_v7().hyphenated().to_string(),
    });
    req.metadata_mut()
        .insert("x-orex-member", "US".parse().unwrap());
    req.metadata_mut()
        .insert("x-orex-subject", "cole".parse().unwrap());
    req.metadata_mut()
        .insert("x-orex-roles", "coordinator".parse().unwrap());
    let s = risk.get_case(req).await.unwrap_err();
    refused(&s, Code::PermissionDenied, Reason::WorkloadNotAllowed);
    let s = risk
        .declare_shortage(DeclareShortageRequest {
            request_id: rid(),
            declaration: Some(declaration(ts(3600))),
        })
        .await
        .unwrap_err();
    refused(&s, Code::PermissionDenied, Reason::WorkloadNotAllowed);
    // A workload on neither list may not call at all.
    let (cert, key) = stack.workload_identity("sharing");
    let ch = stack
        .channel(stack.emergency_addr, "emergency", Some((cert, key)))
        .await
        .unwrap();
    let s = EmergencyServiceClient::new(ch)
        .list_stockpiles(ListStockpilesRequest::default())
        .await
        .unwrap_err();
    refused(&s, Code::PermissionDenied, Reason::WorkloadNotAllowed);
    stack.stop().await;
}

/// A declaration links sharing reports its declaring principal may see —
/// checked at the gateway as that principal — and only the declaring
/// member's principals receive the links.
#[tokio::test]
async fn linked_reports_must_be_visible_to_the_declarer_and_go_only_to_its_member() {
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    let green = orex_e2e::publish(&mut alice, orex_e2e::content(Marking::Green, &[], &[])).await;
    let us_only = orex_e2e::publish(
        &mut alice,
        orex_e2e::content(Marking::AmberStrict, &["US"], &[]),
    )
    .await;
    let with_links = |links: Vec<String>| DeclareShortageRequest {
        request_id: rid(),
        declaration: Some(ShortageDeclaration {
            linked_report_ids: links,
            ..declaration(ts(3600))
        }),
    };
    // JP may not link the US-only report: refused by name, nothing declared.
    let s = stack
        .emergency_client("jp-chika")
        .await
        .declare_shortage(with_links(vec![green.id.clone(), us_only.id.clone()]))
        .await
        .unwrap_err();
    refused(&s, Code::InvalidArgument, Reason::InvalidField);
    assert!(
        s.message().starts_with("declaration.linked_report_ids[1]"),
        "{}",
        s.message()
    );
    // The US coordinator (not a reader) may: visibility, not role, decides.
    let case = stack
        .emergency_client("us-cole")
        .await
        .declare_shortage(with_links(vec![green.id.clone(), us_only.id.clone()]))
        .await
        .unwrap()
        .into_inner()
        .shortage_case
        .unwrap();
    let links = |c: &ShortageCase| c.declaration.as_ref().unwrap().linked_report_ids.clone();
    assert_eq!(links(&case), [green.id.clone(), us_only.id.clone()]);
    assert_eq!(links(&get(&stack, "us-ana", &case.id).await).len(), 2);
    assert!(links(&get(&stack, "jp-aiko", &case.id).await).is_empty());
    // Nor in the answers to its own calls on the case.
    let voted = vote(&stack, "jp-chika", &case.id, VoteChoice::Approve)
        .await
        .unwrap();
    assert!(links(&voted).is_empty());
    let listed = stack
        .emergency_client("jp-aiko")
        .await
        .list_cases(ListCasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.cases.len(), 1);
    assert!(links(&listed.cases[0]).is_empty());
    stack.stop().await;
}

/// A member that joins by configuration votes on cases declared after it
/// joined, never on older ones; a declaration retried with its request id
/// is the same case.
#[tokio::test]
async fn a_member_that_joins_is_eligible_for_later_cases_only() {
    let stack = Stack::spawn().await;
    let before = declare(&stack, ts(3600)).await;
    assert!(
        !before
            .tally
            .unwrap()
            .eligible_voting_members
            .contains(&"KR".to_owned())
    );
    stack.edit_policy(|p| {
        format!("{p}\n[[members]]\ncode = \"KR\"\nname = \"Korea\"\nkind = \"state\"\n")
    });
    // The emergency service notices the new policy by itself (within 2 s).
    let later = within(20, async {
        loop {
            let c = declare(&stack, ts(3600)).await;
            if c.tally
                .as_ref()
                .unwrap()
                .eligible_voting_members
                .contains(&"KR".to_owned())
            {
                break c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(
        later.tally.unwrap().eligible_voting_members,
        ["EU", "JP", "KR", "US"]
    );
    let old = get(&stack, "us-ana", &before.id).await;
    assert_eq!(
        old.tally.unwrap().eligible_voting_members,
        ["EU", "JP", "US"]
    );

    let mut cole = stack.emergency_client("us-cole").await;
    let req = DeclareShortageRequest {
        request_id: rid(),
        declaration: Some(declaration(ts(3600))),
    };
    let first = cole
        .declare_shortage(req.clone())
        .await
        .unwrap()
        .into_inner();
    let again = cole.declare_shortage(req).await.unwrap().into_inner();
    assert!(!first.replayed && again.replayed);
    assert_eq!(first.shortage_case, again.shortage_case);
    // A retry after the deadline passed still gets the first answer.
    let soon = DeclareShortageRequest {
        request_id: rid(),
        declaration: Some(declaration(ts(1))),
    };
    let first = cole
        .declare_shortage(soon.clone())
        .await
        .unwrap()
        .into_inner();
    let case = first.shortage_case.unwrap();
    let deadline = case.declaration.as_ref().unwrap().voting_deadline.unwrap();
    while Timestamp::from(std::time::SystemTime::now()).seconds <= deadline.seconds {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let late = cole.declare_shortage(soon).await.unwrap().into_inner();
    assert!(late.replayed);
    assert_eq!(late.shortage_case.unwrap().id, case.id);
    stack.stop().await;
}

/// The case event stream resumes after the last sequence a client
/// processed, filters by status, and refuses a resume point beyond its end.
#[tokio::test]
async fn the_case_stream_resumes_filters_and_refuses_a_point_beyond_its_end() {
    let stack = Stack::spawn().await;
    let first = declare(&stack, ts(3600)).await;
    let second = declare(&stack, ts(3600)).await;
    vote(&stack, "us-cole", &second.id, VoteChoice::Reject)
        .await
        .unwrap();
    let subscribe = |filter: Option<CaseFilter>, after: Option<u64>| {
        let stack = &stack;
        async move {
            stack
                .emergency_client("us-ana")
                .await
                .subscribe_case_events(SubscribeCaseEventsRequest {
                    filter,
                    after_sequence: after,
                })
                .await
        }
    };
    let mut all = subscribe(None, Some(0)).await.unwrap().into_inner();
    let e1 = within(20, all.message()).await.unwrap().unwrap();
    assert_eq!(e1.shortage_case.as_ref().unwrap().id, first.id);
    // Reconnecting after e1 gives the rest, once, in order.
    let mut rest = subscribe(None, Some(e1.sequence))
        .await
        .unwrap()
        .into_inner();
    let e2 = within(20, rest.message()).await.unwrap().unwrap();
    assert_eq!(
        (e2.kind(), e2.shortage_case.unwrap().id),
        (CaseEventKind::Declared, second.id.clone())
    );
    assert!(e2.sequence > e1.sequence);
    // Only rejected cases: the rejection of the second, nothing of the first.
    let only_rejected = CaseFilter {
        statuses: vec![CaseStatus::Rejected as i32],
        ..Default::default()
    };
    let mut rejected = subscribe(Some(only_rejected), Some(0))
        .await
        .unwrap()
        .into_inner();
    let r = within(20, rejected.message()).await.unwrap().unwrap();
    assert_eq!(r.kind(), CaseEventKind::Rejected);
    assert_eq!(r.shortage_case.unwrap().id, second.id);
    let s = subscribe(None, Some(1_000_000)).await.unwrap_err();
    refused(&s, Code::OutOfRange, Reason::OutOfRange);
    stack.stop().await;
}

/// Bad input to the calls on an active case, and to the lists: refused by
/// field, and the case is unchanged.
#[tokio::test]
async fn bad_pledges_deliveries_closures_and_filters_are_refused_by_field() {
    let stack = Stack::spawn().await;
    let case = declare(&stack, ts(3600)).await;
    for b in ["us-cole", "de-carl", "jp-chika"] {
        vote(&stack, b, &case.id, VoteChoice::Approve)
            .await
            .unwrap();
    }
    let mut cole = stack.emergency_client("us-cole").await;
    let pledge = |tonnes: f64, note: &str| PledgeReleaseRequest {
        request_id: rid(),
        case_id: case.id.clone(),
        tonnes,
        note: note.into(),
    };
    for (field, req) in [
        ("tonnes", pledge(0.0, "")),
        ("tonnes", pledge(f64::NAN, "")),
        ("tonnes", pledge(2e9, "")),
        ("note", pledge(1.0, &"x".repeat(1001))),
        ("note", pledge(1.0, "bell\u{7}")),
        (
            "case_id",
            PledgeReleaseRequest {
                case_id: "x".into(),
                ..pledge(1.0, "")
            },
        ),
    ] {
        let s = cole.pledge_release(req).await.unwrap_err();
        refused(&s, Code::InvalidArgument, Reason::InvalidField);
        assert!(s.message().starts_with(field), "{field}: {}", s.message());
    }
    let p = cole
        .pledge_release(pledge(1.0, ""))
        .await
        .unwrap()
        .into_inner()
        .pledge
        .unwrap();
    let fulfil = |tonnes: f64, delivered_at: Option<Timestamp>| RecordFulfilmentRequest {
        request_id: rid(),
        case_id: case.id.clone(),
        pledge_id: p.id.clone(),
        tonnes,
        delivered_at,
        note: String::new(),
    };
    for (field, req) in [
        ("tonnes", fulfil(-1.0, None)),
        ("delivered_at", fulfil(1.0, Some(ts(3600)))),
        (
            "delivered_at",
            fulfil(
                1.0,
                Some(Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
            ),
        ),
        (
            "pledge_id",
            RecordFulfilmentRequest {
                pledge_id: "p".into(),
                ..fulfil(1.0, None)
            },
        ),
    ] {
        let s = cole.record_fulfilment(req).await.unwrap_err();
        refused(&s, Code::InvalidArgument, Reason::InvalidField);
        assert!(s.message().starts_with(field), "{field}: {}", s.message());
    }
    let s = cole
        .close_case(CloseCaseRequest {
            request_id: rid(),
            case_id: case.id.clone(),
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    refused(&s, Code::InvalidArgument, Reason::InvalidField);
    for filter in [
        CaseFilter {
            statuses: vec![99],
            ..Default::default()
        },
        CaseFilter {
            minerals: vec![0],
            ..Default::default()
        },
        CaseFilter {
            case_ids: vec!["nope".into()],
            ..Default::default()
        },
    ] {
        let s = cole
            .list_cases(ListCasesRequest {
                filter: Some(filter),
                ..Default::default()
            })
            .await
            .unwrap_err();
        refused(&s, Code::InvalidArgument, Reason::InvalidField);
    }
    let s = cole
        .list_stockpiles(ListStockpilesRequest {
            page_size: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&s, Code::InvalidArgument, Reason::InvalidField);
    let s = cole
        .list_stockpiles(ListStockpilesRequest {
            page_token: "forged".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&s, Code::InvalidArgument, Reason::PageTokenInvalid);
    // Nothing of it stuck: one pledge, no delivery, still ACTIVE.
    let c = get(&stack, "us-ana", &case.id).await;
    assert_eq!(
        (c.status(), c.pledges.len(), c.fulfilments.len()),
        (CaseStatus::Active, 1, 0)
    );
    stack.stop().await;
}

/// Lists page through everything: cases newest first, stockpiles by
/// mineral then member, and the aggregate only on the first page.
#[tokio::test]
async fn lists_page_through_cases_and_stockpiles() {
    let stack = Stack::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(declare(&stack, ts(3600)).await.id);
    }
    ids.reverse();
    let mut ana = stack.emergency_client("us-ana").await;
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = ana
            .list_cases(ListCasesRequest {
                filter: None,
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.cases.len() <= 2);
        seen.extend(page.cases.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "newest declaration first, each once");

    for (b, t) in [("us-cole", 1.0), ("eu-clara", 2.0), ("jp-chika", 3.0)] {
        report(
            &stack,
            b,
            content(figures(t, 10.0, 10.0), Marking::Green, &[]),
        )
        .await;
    }
    let first = ana
        .list_stockpiles(ListStockpilesRequest {
            filter: None,
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first
            .stockpiles
            .iter()
            .map(|s| s.member.as_str())
            .collect::<Vec<_>>(),
        ["EU", "JP"]
    );
    assert_eq!(first.aggregates.len(), 1);
    close(first.aggregates[0].stockpile_tonnes, 6.0);
    let second = ana
        .list_stockpiles(ListStockpilesRequest {
            filter: None,
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second
            .stockpiles
            .iter()
            .map(|s| s.member.as_str())
            .collect::<Vec<_>>(),
        ["US"]
    );
    assert!(second.aggregates.is_empty() && second.next_page_token.is_empty());
    stack.stop().await;
}

/// Emergency calls go through the same door as every other: each leaves its
/// decision and outcome records in the access log, naming the case, and a read
/// of another member's stockpile names that member as the owner (so its
/// auditors see who looked).
#[tokio::test]
async fn emergency_calls_are_in_the_access_log_with_their_cases_and_owners() {
    use orex_proto::audit::v1::AccessDecision;
    let stack = Stack::spawn().await;
    report(
        &stack,
        "eu-clara",
        content(figures(10.0, 57.0, 57.0), Marking::Green, &[]),
    )
    .await;
    let case = declare(&stack, ts(3600)).await;
    vote(&stack, "de-carl", &case.id, VoteChoice::Approve)
        .await
        .unwrap();
    list(&stack, "jp-aiko").await;
    let log = stack.audit_log();
    let records = log.range(0, log.size()).unwrap();
    let vote_path = "/orex.emergency.v1.EmergencyService/CastVote";
    let votes: Vec<_> = records.iter().filter(|r| r.method == vote_path).collect();
    assert!(votes.len() >= 2, "a decision and an outcome: {votes:?}");
    assert!(votes.iter().all(|r| r.member == "DE"
        && r.decision() == AccessDecision::Allow
        && r.resource_ids.contains(&format!("case:{}", case.id))));
    assert!(
        votes.iter().any(|r| r.grpc_status_code == Some(0)),
        "the outcome: OK"
    );
    let listed = records
        .iter()
        .find(|r| {
            r.method == "/orex.emergency.v1.EmergencyService/ListStockpiles"
                && r.member == "JP"
                && r.grpc_status_code.is_some()
        })
        .expect("the list's outcome");
    assert!(
        listed.resource_owner_members.contains(&"EU".to_owned()),
        "{listed:?}"
    );
    stack.stop().await;
}

/// Figures marked for a narrower audience never reach a shortage case,
/// which every member sees: the party counts as withheld (no cap, the
/// reference data's consumption), so neither its cap nor its share gives
/// them away.
#[tokio::test]
async fn restricted_figures_never_reach_a_case() {
    let stack = Stack::spawn().await;
    report(
        &stack,
        "us-cole",
        content(figures(2.0, 19.0, 19.0), Marking::AmberStrict, &["EU"]),
    )
    .await;
    report(
        &stack,
        "eu-clara",
        content(figures(10.0, 57.0, 57.0), Marking::Green, &[]),
    )
    .await;
    let case = declare(&stack, ts(3600)).await;
    for b in ["us-cole", "eu-clara"] {
        vote(&stack, b, &case.id, VoteChoice::Approve)
            .await
            .unwrap();
    }
    let active = vote(&stack, "jp-chika", &case.id, VoteChoice::Approve)
        .await
        .unwrap();
    assert_eq!(active.status(), CaseStatus::Active);
    let us = active
        .allocations
        .iter()
        .find(|a| a.member == "US")
        .unwrap();
    // The reference data's 19 t/y for the US, uncapped: nothing of its 2 t.
    assert_eq!(us.stockpile_cap_tonnes, None);
    assert!(!us.capped);
    close(us.consumption_tonnes_per_year, 19.0);
    // 40 t split 19 : 57 — US 10, EU 30 capped at its GREEN 10, the rest to the US.
    let eu = active
        .allocations
        .iter()
        .find(|a| a.member == "EU")
        .unwrap();
    assert!(eu.capped);
    close(eu.allocated_tonnes, 10.0);
    close(us.allocated_tonnes, 30.0);
    stack.stop().await;
}
