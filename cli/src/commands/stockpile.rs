//! `orex stockpile report|list`: members' stockpiles of critical minerals,
//! kept by the emergency service, from the command line through the gateway.
//! Reporting takes a coordinator's bundle; listing an analyst's too. Tables
//! for people; `--json` prints each answer in the proto3 JSON mapping, one
//! per line, for scripts.

use std::path::Path;
use std::time::SystemTime;

use clap::{ArgGroup, Args, Subcommand};
use orex_proto::common::v1::Marking;
use orex_proto::emergency::v1::*;
use prost_types::Timestamp;

use crate::CliError;
use crate::bundle::Connection;
use crate::commands::emergency::{
    mineral, mineral_word, minerals, request_id, t, timestamp, when, who,
};
use crate::commands::report::parse_enum;

/// Stockpile subcommands.
#[derive(Debug, Subcommand)]
pub enum StockpileCommand {
    /// Report your member's stockpile of one mineral, or refuse to disclose
    /// it; replaces your member's previous report for that mineral.
    Report(ReportArgs),
    /// The latest report of each member per mineral, and the partnership aggregate.
    List(ListArgs),
}

/// A stockpile report: figures, or a reasoned refusal.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("disclosure").required(true).args(["stockpile", "refuse"])))]
pub struct ReportArgs {
    /// The mineral (gallium, light-rare-earths, …).
    pub mineral: String,
    /// Tonnes held in the stockpile.
    #[arg(long, requires_all = ["consumption", "net_imports"])]
    pub stockpile: Option<f64>,
    /// Your member's consumption, in tonnes per year.
    #[arg(long, requires = "stockpile")]
    pub consumption: Option<f64>,
    /// Your member's net imports, in tonnes per year (negative for a net exporter).
    #[arg(long, requires = "stockpile", allow_hyphen_values = true)]
    pub net_imports: Option<f64>,
    /// Refuse to disclose the figures, for this reason.
    #[arg(long, conflicts_with_all = ["stockpile", "consumption", "net_imports"])]
    pub refuse: Option<String>,
    /// The legal basis of a refusal (such as "Regulation (EU) 2024/1252 Art. 22").
    #[arg(long, requires = "refuse")]
    pub legal_basis: Option<String>,
    /// The date the figures describe (RFC 3339); default: now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Who may see the figures: clear, green, amber, amber-strict.
    #[arg(long, default_value = "green")]
    pub marking: String,
    /// Members that may see amber / amber-strict figures (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Print the stored report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Filters of `orex stockpile list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these minerals (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mineral: Vec<String>,
    /// Only these members (comma-separated; the aggregate still counts everyone).
    #[arg(long, value_delimiter = ',')]
    pub member: Vec<String>,
    /// Page size (1–500).
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Token from a previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Print the page as one JSON line (stockpiles, aggregates, next page token).
    #[arg(long)]
    pub json: bool,
}

/// Runs a stockpile subcommand with the coordinator's (or analyst's) bundle in `bundle`.
pub async fn run(bundle: &Path, cmd: StockpileCommand) -> Result<(), CliError> {
    // Mistyped words and unreadable times are reported before anything connects.
    let request = Request::of(&cmd)?;
    let mut client = Connection::open(bundle).await?.emergency();
    match (cmd, request) {
        (StockpileCommand::Report(a), Request::Report(req)) => {
            let resp = client.report_stockpile(req).await?.into_inner();
            let s = resp.stockpile.unwrap_or_default();
            if a.json {
                crate::outln!("{}", crate::json::line("orex.emergency.v1.Stockpile", &s)?);
            } else {
                if resp.replayed {
                    crate::outln!("already reported (same request id):");
                }
                print_stockpile(&s);
            }
        }
        (StockpileCommand::List(a), Request::List(req)) => {
            let resp = client.list_stockpiles(req).await?.into_inner();
            if a.json {
                crate::outln!(
                    "{}",
                    crate::json::line("orex.emergency.v1.ListStockpilesResponse", &resp)?
                );
            } else {
                print_list(&resp.stockpiles);
                for agg in &resp.aggregates {
                    print_aggregate(agg);
                }
                if !resp.next_page_token.is_empty() {
                    crate::outln!("more: --page-token {}", resp.next_page_token);
                }
            }
        }
        _ => unreachable!("requests are built from their command"),
    }
    Ok(())
}

/// The request a command sends, built (and its words checked) first.
enum Request {
    Report(ReportStockpileRequest),
    List(ListStockpilesRequest),
}

impl Request {
    fn of(cmd: &StockpileCommand) -> Result<Self, CliError> {
        Ok(match cmd {
            StockpileCommand::Report(a) => {
                let disclosure = match (&a.refuse, a.stockpile) {
                    (Some(reason), _) => {
                        stockpile_content::Disclosure::Refusal(DisclosureRefusal {
                            reason: reason.clone(),
                            legal_basis: a.legal_basis.clone().unwrap_or_default(),
                        })
                    }
                    // clap requires the other two figures with --stockpile.
                    (None, stockpile) => stockpile_content::Disclosure::Figures(StockpileFigures {
                        stockpile_tonnes: stockpile.unwrap_or_default(),
                        consumption_tonnes_per_year: a.consumption.unwrap_or_default(),
                        net_imports_tonnes_per_year: a.net_imports.unwrap_or_default(),
                    }),
                };
                Request::Report(ReportStockpileRequest {
                    request_id: request_id(),
                    content: Some(StockpileContent {
                        mineral: mineral(&a.mineral)?,
                        as_of: Some(match &a.as_of {
                            Some(s) => timestamp("--as-of", s)?,
                            None => Timestamp::from(SystemTime::now()),
                        }),
                        disclosure: Some(disclosure),
                        marking: parse_enum("MARKING", &a.marking, Marking::from_str_name)? as i32,
                        recipient_members: upper(&a.to),
                    }),
                })
            }
            StockpileCommand::List(a) => Request::List(ListStockpilesRequest {
                filter: Some(StockpileFilter {
                    minerals: minerals(&a.mineral)?,
                    members: upper(&a.member),
                }),
                page_size: a.page_size,
                page_token: a.page_token.clone(),
            }),
        })
    }
}

fn upper(v: &[String]) -> Vec<String> {
    v.iter().map(|m| m.trim().to_uppercase()).collect()
}

fn marking_word(c: &StockpileContent) -> String {
    let marking = c
        .marking()
        .as_str_name()
        .trim_start_matches("MARKING_")
        .to_owned();
    if c.recipient_members.is_empty() {
        marking
    } else {
        format!("{marking} to {}", c.recipient_members.join(","))
    }
}

fn days(d: Option<f64>) -> String {
    d.map_or_else(|| "-".to_owned(), |d| format!("{d:.1}"))
}

/// One stored report with its coverage, for people.
fn print_stockpile(s: &Stockpile) {
    let c = s.content.clone().unwrap_or_default();
    crate::outln!(
        "{} {} v{} · as of {} · TLP:{} · reported by {} at {}",
        s.member,
        mineral_word(c.mineral),
        s.version,
        when(c.as_of.as_ref()),
        marking_word(&c),
        who(s.reported_by.as_ref()),
        when(s.reported_at.as_ref())
    );
    match &c.disclosure {
        Some(stockpile_content::Disclosure::Figures(f)) => {
            crate::outln!(
                "stockpile {} t · consumption {} t/y · net imports {} t/y",
                t(f.stockpile_tonnes),
                t(f.consumption_tonnes_per_year),
                t(f.net_imports_tonnes_per_year)
            );
            crate::outln!(
                "coverage: {} days of cover · {} days of net imports · {} of annual consumption",
                days(s.days_of_cover),
                days(s.days_of_net_imports),
                s.share_of_annual_consumption
                    .map_or_else(|| "-".to_owned(), |x| format!("{:.1}%", x * 100.0))
            );
        }
        Some(stockpile_content::Disclosure::Refusal(r)) => {
            crate::outln!("refused: {}", r.reason);
            if !r.legal_basis.is_empty() {
                crate::outln!("legal basis: {}", r.legal_basis);
            }
        }
        None if s.figures_restricted => crate::outln!("figures restricted to their audience"),
        None => {}
    }
}

fn print_list(stockpiles: &[Stockpile]) {
    if stockpiles.is_empty() {
        crate::outln!("(no stockpiles match)");
        return;
    }
    crate::outln!(
        "{:<6} {:<18} {:>3} {:>11} {:>10} {:>16}  {}",
        "member",
        "mineral",
        "v",
        "stockpile t",
        "days cover",
        "days net imports",
        "marking"
    );
    for s in stockpiles {
        let c = s.content.clone().unwrap_or_default();
        let head = format!(
            "{:<6} {:<18} {:>3}",
            s.member,
            mineral_word(c.mineral),
            s.version
        );
        match &c.disclosure {
            Some(stockpile_content::Disclosure::Figures(f)) => crate::outln!(
                "{head} {:>11} {:>10} {:>16}  {}",
                t(f.stockpile_tonnes),
                days(s.days_of_cover),
                days(s.days_of_net_imports),
                marking_word(&c)
            ),
            Some(stockpile_content::Disclosure::Refusal(r)) => {
                crate::outln!("{head} refused: {}", r.reason)
            }
            None => crate::outln!(
                "{head} {}",
                if s.figures_restricted {
                    "restricted"
                } else {
                    "-"
                }
            ),
        }
    }
}

fn print_aggregate(a: &StockpileAggregate) {
    crate::outln!(
        "partnership {}: {} t held by {} member(s) with figures every member sees, {} restricted (not summed), {} refusing · consumption {} t/y · net imports {} t/y · {} days of cover · {} days of net imports",
        mineral_word(a.mineral),
        t(a.stockpile_tonnes),
        a.members_with_figures,
        a.members_restricted,
        a.members_refusing,
        t(a.consumption_tonnes_per_year),
        t(a.net_imports_tonnes_per_year),
        days(a.days_of_cover),
        days(a.days_of_net_imports)
    );
}
