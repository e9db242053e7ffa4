//! `orex report publish|get|list|watch|history`: the sharing API from the
//! command line, through the gateway, with a client bundle.

use std::path::Path;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use orex_proto::common::v1::{Marking, Mineral, PrincipalRef, Stage, TimeWindow};
use orex_proto::sharing::v1::*;
use prost_types::Timestamp;

use crate::CliError;
use crate::bundle::Connection;

/// Report subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Publish a new supply report.
    Publish(PublishArgs),
    /// Show one report (latest version unless --version).
    Get {
        /// The report id.
        id: String,
        /// A specific version.
        #[arg(long, default_value_t = 0)]
        version: u32,
    },
    /// List reports you may see, newest first.
    List(ListArgs),
    /// Show every version of a report.
    History {
        /// The report id.
        id: String,
    },
    /// Stream report events as they happen (Ctrl-C stops).
    Watch {
        /// Resume after this sequence (0 replays everything); default: from now.
        #[arg(long)]
        after: Option<u64>,
    },
}

/// Fields of a new report. Enum values are written as in the .proto without
/// the prefix, in any case: `--mineral gallium --stage refining`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Mineral (gallium, germanium, light-rare-earths, lithium, …).
    #[arg(long)]
    pub mineral: String,
    /// Value-chain stage (mining, refining, processing, manufacturing, transport).
    #[arg(long)]
    pub stage: String,
    /// Category (export-restriction, production-outage, logistics-disruption,
    /// price-dumping, demand-surge, sanction, other).
    #[arg(long)]
    pub category: String,
    /// Severity 1 (minor) to 5 (critical).
    #[arg(long)]
    pub severity: u32,
    /// Origin country as an ISO 3166-1 alpha-2 code (CN, CD, …); the service
    /// checks its form (two capital letters), not the ISO list.
    #[arg(long)]
    pub origin: String,
    /// TLP marking: clear, green, amber, amber-strict, red.
    #[arg(long)]
    pub marking: String,
    /// Recipient members for amber / amber-strict (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Recipient principals for red, as MEMBER/subject (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub to_principal: Vec<String>,
    /// Affected members (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub affected: Vec<String>,
    /// Volume impact in tonnes per month (negative: less supply).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub volume: f64,
    /// Summary text.
    #[arg(long)]
    pub summary: String,
    /// Idempotency key; a retry with the same key never publishes twice.
    #[arg(long)]
    pub request_id: Option<String>,
}

/// Filters for `orex report list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this mineral.
    #[arg(long)]
    pub mineral: Option<String>,
    /// Only this category.
    #[arg(long)]
    pub category: Option<String>,
    /// Only reports of at least this severity.
    #[arg(long, default_value_t = 0)]
    pub min_severity: u32,
    /// Page size (1–500).
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Token from a previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// Runs a report subcommand with the bundle in `bundle`.
pub async fn run(bundle: &Path, cmd: ReportCommand) -> Result<(), CliError> {
    // Mistyped words are reported before anything connects.
    let content = match &cmd {
        ReportCommand::Publish(a) => Some(content_from(a)?),
        _ => None,
    };
    let conn = Connection::open(bundle).await?;
    let mut client = conn.sharing();
    match cmd {
        ReportCommand::Publish(a) => {
            let req = PublishReportRequest {
                request_id: a
                    .request_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                content,
            };
            let resp = client.publish_report(req).await?.into_inner();
            let r = resp.report.unwrap_or_default();
            if resp.replayed {
                crate::outln!("already published (same request id):");
            }
            print_report(&r);
        }
        ReportCommand::Get { id, version } => {
            let r = client
                .get_report(GetReportRequest {
                    report_id: id,
                    version,
                })
                .await?
                .into_inner()
                .report
                .unwrap_or_default();
            print_report(&r);
        }
        ReportCommand::List(a) => {
            let filter = ReportFilter {
                minerals: a
                    .mineral
                    .as_deref()
                    .map(|m| {
                        parse_enum("MINERAL", m, Mineral::from_str_name).map(|v| vec![v as i32])
                    })
                    .transpose()?
                    .unwrap_or_default(),
                categories: a
                    .category
                    .as_deref()
                    .map(|c| {
                        parse_enum("CATEGORY", c, Category::from_str_name).map(|v| vec![v as i32])
                    })
                    .transpose()?
                    .unwrap_or_default(),
                min_severity: a.min_severity,
                ..Default::default()
            };
            let resp = client
                .list_reports(ListReportsRequest {
                    filter: Some(filter),
                    page_size: a.page_size,
                    page_token: a.page_token,
                })
                .await?
                .into_inner();
            if resp.reports.is_empty() {
                crate::outln!("(no reports visible to you)");
            }
            for r in &resp.reports {
                print_report(r);
            }
            if !resp.next_page_token.is_empty() {
                crate::outln!("more: --page-token {}", resp.next_page_token);
            }
        }
        ReportCommand::History { id } => {
            let resp = client
                .list_report_versions(ListReportVersionsRequest {
                    report_id: id,
                    page_size: 500,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            for r in &resp.reports {
                print_report(r);
            }
        }
        ReportCommand::Watch { after } => {
            let stream = client
                .subscribe_reports(SubscribeReportsRequest {
                    filter: None,
                    after_sequence: after,
                })
                .await?
                .into_inner();
            crate::outln!("watching (Ctrl-C stops)");
            crate::commands::watch(stream, None, |ev: &SubscribeReportsResponse| {
                crate::out!(
                    "#{} {:<10} ",
                    ev.sequence,
                    ev.kind()
                        .as_str_name()
                        .trim_start_matches("REPORT_EVENT_KIND_")
                );
                print_report(&ev.report.clone().unwrap_or_default());
            })
            .await?;
        }
    }
    Ok(())
}

fn content_from(a: &PublishArgs) -> Result<ReportContent, CliError> {
    let recipient_principals = a
        .to_principal
        .iter()
        .map(|p| {
            p.split_once('/')
                .map(|(m, s)| PrincipalRef {
                    member: m.to_owned(),
                    subject: s.to_owned(),
                })
                .ok_or_else(|| {
                    CliError::Invalid(format!("--to-principal {p}: expected MEMBER/subject"))
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(ReportContent {
        mineral: parse_enum("MINERAL", &a.mineral, Mineral::from_str_name)? as i32,
        stage: parse_enum("STAGE", &a.stage, Stage::from_str_name)? as i32,
        category: parse_enum("CATEGORY", &a.category, Category::from_str_name)? as i32,
        severity: a.severity,
        origin_country: a.origin.to_uppercase(),
        affected_members: a.affected.iter().map(|m| m.to_uppercase()).collect(),
        volume_impact_tonnes_per_month: a.volume,
        observed_price: None,
        effective_window: Some(TimeWindow {
            start: Some(Timestamp::from(SystemTime::now())),
            end: None,
        }),
        summary: a.summary.clone(),
        marking: parse_enum("MARKING", &a.marking, Marking::from_str_name)? as i32,
        recipient_members: a.to.iter().map(|m| m.to_uppercase()).collect(),
        recipient_principals,
    })
}

/// Parses `gallium` / `amber-strict` as `MINERAL_GALLIUM` / `MARKING_AMBER_STRICT`.
pub(crate) fn parse_enum<E: ProtoEnum>(
    prefix: &str,
    s: &str,
    from: fn(&str) -> Option<E>,
) -> Result<E, CliError> {
    let name = format!(
        "{prefix}_{}",
        s.trim().to_uppercase().replace(['-', ' ', '+'], "_")
    );
    from(&name)
        .filter(|e| e.name() != format!("{prefix}_UNSPECIFIED"))
        .ok_or_else(|| {
            let choices: Vec<String> = (1..128)
                .filter_map(E::from_number)
                .map(|e| {
                    strip(e.name(), &format!("{prefix}_"))
                        .to_lowercase()
                        .replace('_', "-")
                })
                .collect();
            CliError::Invalid(format!(
                "unknown {} {s:?}; choose one of: {}",
                prefix.to_lowercase(),
                choices.join(", ")
            ))
        })
}

/// The generated protobuf enums the CLI parses from words.
pub(crate) trait ProtoEnum: Sized {
    fn from_number(n: i32) -> Option<Self>;
    fn name(&self) -> &'static str;
}

macro_rules! proto_enum {
    ($($t:ty),*) => {$(
        impl ProtoEnum for $t {
            fn from_number(n: i32) -> Option<Self> {
                Self::try_from(n).ok()
            }
            fn name(&self) -> &'static str {
                self.as_str_name()
            }
        }
    )*};
}

proto_enum!(
    Mineral,
    Stage,
    Category,
    Marking,
    orex_proto::risk::v1::RiskAlertKind
);

fn strip<'a>(s: &'a str, prefix: &str) -> &'a str {
    s.strip_prefix(prefix).unwrap_or(s)
}

/// One report on one line (plus its summary).
pub fn print_report(r: &Report) {
    let c = r.content.clone().unwrap_or_default();
    let marking = strip(c.marking().as_str_name(), "MARKING_").to_owned();
    let audience = match c.marking() {
        Marking::Amber | Marking::AmberStrict => format!(" to {}", c.recipient_members.join(",")),
        Marking::Red => format!(
            " to {}",
            c.recipient_principals
                .iter()
                .map(|p| format!("{}/{}", p.member, p.subject))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => String::new(),
    };
    let author = r.author.clone().unwrap_or_default();
    crate::outln!(
        "{} v{} {} TLP:{}{} {}/{} {} severity {} origin {} by {}/{}{}",
        r.id,
        r.version,
        strip(r.status().as_str_name(), "REPORT_STATUS_"),
        marking,
        audience,
        strip(c.mineral().as_str_name(), "MINERAL_"),
        strip(c.stage().as_str_name(), "STAGE_"),
        strip(c.category().as_str_name(), "CATEGORY_"),
        c.severity,
        c.origin_country,
        author.member,
        author.subject,
        if r.breaches_no_export_ban {
            "  [BREACH: export ban by a partner]"
        } else {
            ""
        }
    );
    crate::outln!("    {}", c.summary);
}
