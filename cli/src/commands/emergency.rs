//! `orex emergency declare|vote|show|list|pledge|fulfil|close|watch`: shortage
//! cases of the emergency service from the command line, through the
//! gateway, with a coordinator's bundle (an analyst's may list, show and
//! watch). Tables for people; `--json` prints each answer in the proto3 JSON
//! mapping, one per line, for scripts. The words and helpers shared with
//! `orex stockpile` live here too.

use std::path::Path;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use orex_proto::common::v1::{Mineral, PrincipalRef};
use orex_proto::emergency::v1::*;
use prost_types::Timestamp;

use crate::CliError;
use crate::bundle::Connection;
use crate::commands::report::{ProtoEnum, parse_enum};

/// Emergency subcommands.
#[derive(Debug, Subcommand)]
pub enum EmergencyCommand {
    /// Declare a shortage: opens a case in VOTING status.
    Declare(DeclareArgs),
    /// Cast your member's vote (a bloc state votes for its bloc) on a case in VOTING status.
    Vote {
        /// The case id.
        case_id: String,
        /// approve or reject.
        choice: String,
        /// Why (up to 2000 characters).
        #[arg(long, default_value = "")]
        comment: String,
        /// Print the case as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one case: declaration, tally, votes, allocations, pledges, deliveries.
    Show {
        /// The case id.
        case_id: String,
        /// Print the case as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List cases, newest declaration first.
    List(ListArgs),
    /// Pledge a release from your member's stockpile toward an ACTIVE case.
    Pledge {
        /// The case id.
        case_id: String,
        /// Tonnes pledged.
        tonnes: f64,
        /// Note (up to 1000 characters).
        #[arg(long, default_value = "")]
        note: String,
        /// Print the pledge as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record a delivery against one of your member's pledges.
    Fulfil {
        /// The case id.
        case_id: String,
        /// The pledge delivered against.
        pledge_id: String,
        /// Tonnes delivered.
        tonnes: f64,
        /// When the delivery took place (RFC 3339, such as 2025-03-01T12:00:00Z); default: now.
        #[arg(long)]
        delivered_at: Option<String>,
        /// Evidence or note: shipment reference, warehouse (up to 1000 characters).
        #[arg(long, default_value = "")]
        note: String,
        /// Print the delivery record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Close an ACTIVE case your member declared: the coordinated response is over.
    Close {
        /// The case id.
        case_id: String,
        /// Why the response is over.
        #[arg(long)]
        reason: String,
        /// Print the case as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stream case events as they happen (Ctrl-C stops).
    Watch {
        /// Resume after this sequence (0 replays every event); default: from now.
        #[arg(long)]
        after: Option<u64>,
        /// Print each event as a JSON line.
        #[arg(long)]
        json: bool,
    },
}

/// What a coordinator declares.
#[derive(Debug, Args)]
pub struct DeclareArgs {
    /// The mineral in shortage (gallium, light-rare-earths, …).
    pub mineral: String,
    /// Estimated shortfall of supply to the partnership, in tonnes per month.
    #[arg(long)]
    pub shortfall: f64,
    /// Total stock release proposed, in tonnes (split among members on activation).
    #[arg(long)]
    pub release: f64,
    /// Why the shortage warrants a coordinated response.
    #[arg(long)]
    pub justification: String,
    /// Voting closes this many hours from now (at most the service's maximum, 168 by default).
    #[arg(long)]
    pub voting_hours: f64,
    /// Pledged releases should be delivered this many hours from now; default: no deadline.
    #[arg(long)]
    pub fulfil_by_hours: Option<f64>,
    /// Ids of sharing reports that document the shortage (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub link: Vec<String>,
    /// Print the case as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Filters of `orex emergency list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only cases in these statuses (voting, active, rejected, expired, closed; comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub status: Vec<String>,
    /// Only these minerals (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mineral: Vec<String>,
    /// Page size (1–500).
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Token from a previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Print the page as one JSON line (cases and next page token).
    #[arg(long)]
    pub json: bool,
}

impl ProtoEnum for CaseStatus {
    fn from_number(n: i32) -> Option<Self> {
        Self::try_from(n).ok()
    }
    fn name(&self) -> &'static str {
        self.as_str_name()
    }
}

impl ProtoEnum for VoteChoice {
    fn from_number(n: i32) -> Option<Self> {
        Self::try_from(n).ok()
    }
    fn name(&self) -> &'static str {
        self.as_str_name()
    }
}

/// Runs an emergency subcommand with the coordinator's (or analyst's) bundle in `bundle`.
pub async fn run(bundle: &Path, cmd: EmergencyCommand) -> Result<(), CliError> {
    // Mistyped words and unreadable times are reported before anything connects.
    let request = Request::of(&cmd)?;
    let mut client = Connection::open(bundle).await?.emergency();
    match (cmd, request) {
        (EmergencyCommand::Declare(a), Request::Declare(req)) => {
            let resp = client.declare_shortage(req).await?.into_inner();
            let case = resp.shortage_case.unwrap_or_default();
            if resp.replayed && !a.json {
                crate::outln!("already declared (same request id):");
            }
            show_case(&case, a.json)?;
        }
        (EmergencyCommand::Vote { json, .. }, Request::Vote(req)) => {
            let case = client
                .cast_vote(req)
                .await?
                .into_inner()
                .shortage_case
                .unwrap_or_default();
            if json {
                print_case_json(&case)?;
            } else {
                crate::outln!("case {} {}", case.id, status_word(case.status()));
                print_tally(&case.tally.unwrap_or_default());
            }
        }
        (EmergencyCommand::Show { json, .. }, Request::Show(req)) => {
            let case = client.get_case(req).await?.into_inner().shortage_case;
            show_case(&case.unwrap_or_default(), json)?;
        }
        (EmergencyCommand::List(a), Request::List(req)) => {
            let resp = client.list_cases(req).await?.into_inner();
            if a.json {
                crate::outln!(
                    "{}",
                    crate::json::line("orex.emergency.v1.ListCasesResponse", &resp)?
                );
            } else {
                print_cases(&resp.cases);
                if !resp.next_page_token.is_empty() {
                    crate::outln!("more: --page-token {}", resp.next_page_token);
                }
            }
        }
        (EmergencyCommand::Pledge { json, .. }, Request::Pledge(req)) => {
            let resp = client.pledge_release(req).await?.into_inner();
            let pledge = resp.pledge.unwrap_or_default();
            if json {
                crate::outln!(
                    "{}",
                    crate::json::line("orex.emergency.v1.Pledge", &pledge)?
                );
            } else {
                crate::outln!(
                    "pledge {}: {} pledges {} t toward case {}",
                    pledge.id,
                    pledge.member,
                    t(pledge.tonnes),
                    resp.shortage_case.as_ref().map_or("", |c| c.id.as_str())
                );
                print_progress(&resp.shortage_case.unwrap_or_default(), &pledge.member);
            }
        }
        (EmergencyCommand::Fulfil { json, .. }, Request::Fulfil(req)) => {
            let resp = client.record_fulfilment(req).await?.into_inner();
            let f = resp.fulfilment.unwrap_or_default();
            if json {
                crate::outln!("{}", crate::json::line("orex.emergency.v1.Fulfilment", &f)?);
            } else {
                let case = resp.shortage_case.unwrap_or_default();
                crate::outln!(
                    "delivery {}: {} delivered {} t against pledge {} at {}",
                    f.id,
                    f.member,
                    t(f.tonnes),
                    f.pledge_id,
                    when(f.delivered_at.as_ref())
                );
                if let Some(p) = case.pledges.iter().find(|p| p.id == f.pledge_id) {
                    crate::outln!(
                        "pledge {}: {} of {} t delivered",
                        p.id,
                        t(p.fulfilled_tonnes),
                        t(p.tonnes)
                    );
                }
                print_progress(&case, &f.member);
            }
        }
        (EmergencyCommand::Close { json, .. }, Request::Close(req)) => {
            let case = client.close_case(req).await?.into_inner().shortage_case;
            show_case(&case.unwrap_or_default(), json)?;
        }
        (EmergencyCommand::Watch { json, .. }, Request::Watch(req)) => {
            let stream = client.subscribe_case_events(req).await?.into_inner();
            if !json {
                crate::outln!("watching case events (Ctrl-C stops)");
            }
            let as_json = json.then_some("orex.emergency.v1.SubscribeCaseEventsResponse");
            crate::commands::watch(stream, as_json, print_event).await?;
        }
        _ => unreachable!("requests are built from their command"),
    }
    Ok(())
}

/// The request a command sends, built (and its words checked) first.
enum Request {
    Declare(DeclareShortageRequest),
    Vote(CastVoteRequest),
    Show(GetCaseRequest),
    List(ListCasesRequest),
    Pledge(PledgeReleaseRequest),
    Fulfil(RecordFulfilmentRequest),
    Close(CloseCaseRequest),
    Watch(SubscribeCaseEventsRequest),
}

impl Request {
    fn of(cmd: &EmergencyCommand) -> Result<Self, CliError> {
        Ok(match cmd {
            EmergencyCommand::Declare(a) => Request::Declare(DeclareShortageRequest {
                request_id: request_id(),
                declaration: Some(ShortageDeclaration {
                    mineral: mineral(&a.mineral)?,
                    shortfall_tonnes_per_month: a.shortfall,
                    total_release_tonnes: a.release,
                    justification: a.justification.clone(),
                    linked_report_ids: a.link.iter().map(|l| l.trim().to_owned()).collect(),
                    voting_deadline: Some(hours_from_now("--voting-hours", a.voting_hours)?),
                    fulfilment_deadline: a
                        .fulfil_by_hours
                        .map(|h| hours_from_now("--fulfil-by-hours", h))
                        .transpose()?,
                }),
            }),
            EmergencyCommand::Vote {
                case_id,
                choice,
                comment,
                ..
            } => Request::Vote(CastVoteRequest {
                request_id: request_id(),
                case_id: case_id.trim().to_owned(),
                choice: parse_enum("VOTE_CHOICE", choice, VoteChoice::from_str_name)? as i32,
                comment: comment.clone(),
            }),
            EmergencyCommand::Show { case_id, .. } => Request::Show(GetCaseRequest {
                case_id: case_id.trim().to_owned(),
            }),
            EmergencyCommand::List(a) => Request::List(ListCasesRequest {
                filter: Some(CaseFilter {
                    statuses: a
                        .status
                        .iter()
                        .map(|s| {
                            parse_enum("CASE_STATUS", s, CaseStatus::from_str_name)
                                .map(|s| s as i32)
                        })
                        .collect::<Result<_, _>>()?,
                    minerals: minerals(&a.mineral)?,
                    case_ids: vec![],
                }),
                page_size: a.page_size,
                page_token: a.page_token.clone(),
            }),
            EmergencyCommand::Pledge {
                case_id,
                tonnes,
                note,
                ..
            } => Request::Pledge(PledgeReleaseRequest {
                request_id: request_id(),
                case_id: case_id.trim().to_owned(),
                tonnes: *tonnes,
                note: note.clone(),
            }),
            EmergencyCommand::Fulfil {
                case_id,
                pledge_id,
                tonnes,
                delivered_at,
                note,
                ..
            } => Request::Fulfil(RecordFulfilmentRequest {
                request_id: request_id(),
                case_id: case_id.trim().to_owned(),
                pledge_id: pledge_id.trim().to_owned(),
                tonnes: *tonnes,
                delivered_at: delivered_at
                    .as_deref()
                    .map(|s| timestamp("--delivered-at", s))
                    .transpose()?,
                note: note.clone(),
            }),
            EmergencyCommand::Close {
                case_id, reason, ..
            } => Request::Close(CloseCaseRequest {
                request_id: request_id(),
                case_id: case_id.trim().to_owned(),
                reason: reason.clone(),
            }),
            EmergencyCommand::Watch { after, .. } => Request::Watch(SubscribeCaseEventsRequest {
                filter: None,
                after_sequence: *after,
            }),
        })
    }
}

/// A fresh idempotency key: each run of a command is a new request.
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `gallium` / `light-rare-earths` as the contract's number.
pub(crate) fn mineral(s: &str) -> Result<i32, CliError> {
    Ok(parse_enum("MINERAL", s, Mineral::from_str_name)? as i32)
}

/// Every word of a comma-separated `--mineral` list.
pub(crate) fn minerals(words: &[String]) -> Result<Vec<i32>, CliError> {
    words.iter().map(|m| mineral(m)).collect()
}

/// `gallium`, `light-rare-earths`: the words the CLI reads.
pub(crate) fn mineral_word(m: i32) -> String {
    orex_proto::names::mineral(Mineral::try_from(m).unwrap_or_default()).replace('_', "-")
}

/// An RFC 3339 time given with `flag` (a bare date means its midnight UTC).
pub(crate) fn timestamp(flag: &str, s: &str) -> Result<Timestamp, CliError> {
    s.trim().parse().map_err(|_| {
        CliError::Invalid(format!(
            "{flag} {s:?}: expected an RFC 3339 time such as 2025-03-01T12:00:00Z"
        ))
    })
}

/// Longest span `--…-hours` accepts: ten years (the service's own limits are far shorter).
const MAX_HOURS: f64 = 24.0 * 3650.0;

/// The instant `hours` from now, given with `flag`.
fn hours_from_now(flag: &str, hours: f64) -> Result<Timestamp, CliError> {
    // Checked here because a negative or endless span cannot become a time at all.
    if !(hours > 0.0 && hours <= MAX_HOURS) {
        return Err(CliError::Invalid(format!(
            "{flag} {hours}: expected a number of hours above 0 and at most {MAX_HOURS}"
        )));
    }
    Ok(Timestamp::from(
        SystemTime::now() + Duration::from_secs_f64(hours * 3600.0),
    ))
}

/// A time to the second, or `-` when unset.
pub(crate) fn when(ts: Option<&Timestamp>) -> String {
    ts.map_or_else(
        || "-".to_owned(),
        |ts| {
            Timestamp {
                seconds: ts.seconds,
                nanos: 0,
            }
            .to_string()
        },
    )
}

/// `US/cole`, or `-` when unset.
pub(crate) fn who(p: Option<&PrincipalRef>) -> String {
    p.map_or_else(|| "-".to_owned(), |p| format!("{}/{}", p.member, p.subject))
}

/// Tonnes with as many decimals as people need to read them.
pub(crate) fn t(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_owned()
}

fn status_word(s: CaseStatus) -> &'static str {
    s.as_str_name().trim_start_matches("CASE_STATUS_")
}

fn choice_word(c: VoteChoice) -> String {
    c.as_str_name()
        .trim_start_matches("VOTE_CHOICE_")
        .to_lowercase()
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// A case in full: as a JSON line, or for people.
fn show_case(case: &ShortageCase, json: bool) -> Result<(), CliError> {
    if json {
        print_case_json(case)
    } else {
        print_case(case);
        Ok(())
    }
}

fn print_case_json(case: &ShortageCase) -> Result<(), CliError> {
    crate::outln!(
        "{}",
        crate::json::line("orex.emergency.v1.ShortageCase", case)?
    );
    Ok(())
}

fn print_tally(tally: &VoteTally) {
    crate::outln!(
        "tally: {} approve, {} reject · pending: {} · eligible: {} · founding: {}",
        tally.approvals,
        tally.rejections,
        list_or_none(&tally.pending_voting_members),
        list_or_none(&tally.eligible_voting_members),
        list_or_none(&tally.founding_members)
    );
    let state = if tally.rule_met {
        "met"
    } else if tally.rule_still_possible {
        "not met yet, still possible"
    } else {
        "can no longer be met"
    };
    crate::outln!("rule: {} — {state}", tally.activation_rule);
}

/// Everything about one case, for people.
fn print_case(case: &ShortageCase) {
    let d = case.declaration.clone().unwrap_or_default();
    crate::outln!(
        "case {} · {} · {} (version {})",
        case.id,
        mineral_word(d.mineral),
        status_word(case.status()),
        case.version
    );
    crate::outln!(
        "declared by {} at {}: shortfall {} t/month, release {} t",
        who(case.declared_by.as_ref()),
        when(case.declared_at.as_ref()),
        t(d.shortfall_tonnes_per_month),
        t(d.total_release_tonnes)
    );
    crate::outln!("justification: {}", d.justification);
    crate::outln!(
        "voting until {} · deliveries by {}",
        when(d.voting_deadline.as_ref()),
        d.fulfilment_deadline
            .as_ref()
            .map_or_else(|| "no deadline".to_owned(), |f| when(Some(f)))
    );
    if !d.linked_report_ids.is_empty() {
        crate::outln!("linked reports: {}", d.linked_report_ids.join(", "));
    }
    print_tally(&case.tally.clone().unwrap_or_default());
    if !case.votes.is_empty() {
        crate::outln!("\nvotes:");
        for v in &case.votes {
            crate::outln!(
                "  {:<6} {:<7} by {} at {}{}",
                v.voting_member,
                choice_word(v.choice()),
                who(v.cast_by.as_ref()),
                when(v.cast_at.as_ref()),
                if v.comment.is_empty() {
                    String::new()
                } else {
                    format!(": {}", v.comment)
                }
            );
        }
    }
    if case.activated_at.is_some() {
        crate::outln!("\nactivated at {}", when(case.activated_at.as_ref()));
        crate::outln!(
            "  {:<6} {:>15} {:>7} {:>10} {:<6} {:>11} {:>9} {:>11}",
            "member",
            "consumption t/y",
            "share",
            "cap t",
            "capped",
            "allocated t",
            "pledged t",
            "delivered t"
        );
        for a in &case.allocations {
            crate::outln!(
                "  {:<6} {:>15} {:>7.4} {:>10} {:<6} {:>11} {:>9} {:>11}",
                a.member,
                t(a.consumption_tonnes_per_year),
                a.consumption_share,
                a.stockpile_cap_tonnes
                    .map_or_else(|| "withheld".to_owned(), t),
                if a.capped { "yes" } else { "" },
                t(a.allocated_tonnes),
                t(a.pledged_tonnes),
                t(a.fulfilled_tonnes)
            );
        }
        crate::outln!("unallocated: {} t", t(case.unallocated_tonnes));
        // The summary the coordinators close on: asked, promised, delivered.
        let sum = |f: fn(&orex_proto::emergency::v1::MemberAllocation) -> f64| {
            case.allocations.iter().map(f).sum::<f64>()
        };
        let release = case
            .declaration
            .as_ref()
            .map_or(0.0, |d| d.total_release_tonnes);
        crate::outln!(
            "total: {} t allocated of {} t · {} t pledged · {} t delivered",
            t(sum(|a| a.allocated_tonnes)),
            t(release),
            t(sum(|a| a.pledged_tonnes)),
            t(sum(|a| a.fulfilled_tonnes))
        );
    }
    if !case.pledges.is_empty() {
        crate::outln!("\npledges:");
        for p in &case.pledges {
            crate::outln!(
                "  {} {:<6} {} t ({} t delivered) by {} at {}{}",
                p.id,
                p.member,
                t(p.tonnes),
                t(p.fulfilled_tonnes),
                who(p.pledged_by.as_ref()),
                when(p.pledged_at.as_ref()),
                if p.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.note)
                }
            );
        }
    }
    if !case.fulfilments.is_empty() {
        crate::outln!("\ndeliveries:");
        for f in &case.fulfilments {
            crate::outln!(
                "  {} {:<6} {} t against pledge {}, delivered {}, recorded by {} at {}{}",
                f.id,
                f.member,
                t(f.tonnes),
                f.pledge_id,
                when(f.delivered_at.as_ref()),
                who(f.recorded_by.as_ref()),
                when(f.recorded_at.as_ref()),
                if f.note.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.note)
                }
            );
        }
    }
    if case.ended_at.is_some() {
        if case.status() == CaseStatus::Closed {
            crate::outln!(
                "\nclosed at {}: {}",
                when(case.ended_at.as_ref()),
                case.close_reason
            );
        } else {
            crate::outln!(
                "\nended {} at {}",
                status_word(case.status()),
                when(case.ended_at.as_ref())
            );
        }
    }
}

/// `member`'s allocation after a pledge or delivery, when it is a voting
/// party (a bloc state's pledges count toward its bloc's row: `show` has it).
fn print_progress(case: &ShortageCase, member: &str) {
    if let Some(a) = case.allocations.iter().find(|a| a.member == member) {
        crate::outln!(
            "{}: allocated {} t, pledged {} t, delivered {} t",
            a.member,
            t(a.allocated_tonnes),
            t(a.pledged_tonnes),
            t(a.fulfilled_tonnes)
        );
    }
}

fn print_cases(cases: &[ShortageCase]) {
    if cases.is_empty() {
        crate::outln!("(no cases match)");
        return;
    }
    crate::outln!(
        "{:<36} {:<8} {:<18} {:>10} {:>9} {:<20} {}",
        "case",
        "status",
        "mineral",
        "release t",
        "yes/no",
        "pending",
        "declared"
    );
    for c in cases {
        let d = c.declaration.clone().unwrap_or_default();
        let tally = c.tally.clone().unwrap_or_default();
        crate::outln!(
            "{:<36} {:<8} {:<18} {:>10} {:>9} {:<20} {}",
            c.id,
            status_word(c.status()),
            mineral_word(d.mineral),
            t(d.total_release_tonnes),
            format!("{}/{}", tally.approvals, tally.rejections),
            if tally.pending_voting_members.is_empty() {
                "-".to_owned()
            } else {
                tally.pending_voting_members.join(",")
            },
            when(c.declared_at.as_ref())
        );
    }
}

fn print_event(ev: &SubscribeCaseEventsResponse) {
    let kind = ev
        .kind()
        .as_str_name()
        .trim_start_matches("CASE_EVENT_KIND_")
        .to_lowercase()
        .replace('_', "-");
    let case = ev.shortage_case.clone().unwrap_or_default();
    let mineral = case
        .declaration
        .as_ref()
        .map_or_else(String::new, |d| mineral_word(d.mineral));
    crate::outln!(
        "#{} {kind} {} {} {} by {} at {}",
        ev.sequence,
        case.id,
        status_word(case.status()),
        mineral,
        ev.actor
            .as_ref()
            .map_or_else(|| "the service".to_owned(), |a| who(Some(a))),
        when(ev.occurred_at.as_ref())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonnes_read_without_trailing_zeros() {
        assert_eq!(t(40.0), "40");
        assert_eq!(t(14.5), "14.5");
        assert_eq!(t(1.0 / 3.0), "0.333");
        assert_eq!(t(0.0), "0");
    }

    #[test]
    fn hours_must_make_a_time() {
        assert!(hours_from_now("--voting-hours", 24.0).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12] {
            let e = hours_from_now("--voting-hours", bad).unwrap_err();
            assert!(e.to_string().contains("--voting-hours"), "{e}");
        }
    }

    #[test]
    fn times_are_rfc_3339() {
        let ts = timestamp("--as-of", "2025-03-01T12:00:00Z").unwrap();
        assert_eq!(when(Some(&ts)), "2025-03-01T12:00:00Z");
        let e = timestamp("--as-of", "yesterday").unwrap_err();
        assert!(e.to_string().contains("--as-of"), "{e}");
    }
}
