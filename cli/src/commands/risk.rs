//! `orex risk list|show|scenario|price|watch|data`: the risk API from the
//! command line, through the gateway, with an analyst's bundle. Tables for
//! people; `--json` prints each answer in the proto3 JSON mapping, one per
//! line, for scripts.

use std::path::Path;

use clap::{Args, Subcommand};
use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::risk::v1::*;

use crate::CliError;
use crate::bundle::Connection;
use crate::commands::report::parse_enum;

/// Risk subcommands.
#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// List supply-risk scores, highest first.
    List(ListArgs),
    /// Show one score with every component of the formula.
    Show {
        /// The mineral (gallium, light-rare-earths, …).
        mineral: String,
        /// The stage; default: the bottleneck (the stage with the highest score).
        #[arg(long)]
        stage: Option<String>,
        /// Whose point of view (member code); default: your member.
        #[arg(long)]
        member: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What a supply cut would do to each member (nothing is stored).
    Scenario(ScenarioArgs),
    /// The reference price of a mineral and its dumping threshold.
    Price {
        /// The mineral.
        mineral: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stream risk alerts as they happen (Ctrl-C stops).
    Watch {
        /// Resume after this sequence (0 replays every alert); default: from now.
        #[arg(long)]
        after: Option<u64>,
        /// Only alerts about these members' scores (comma-separated).
        #[arg(long, value_delimiter = ',')]
        member: Vec<String>,
        /// Print each alert as a JSON line.
        #[arg(long)]
        json: bool,
    },
    /// The reference data in force: version, digest and sources.
    Data {
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Filters of `orex risk list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these minerals (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mineral: Vec<String>,
    /// Only these stages (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub stage: Vec<String>,
    /// From these members' points of view (comma-separated); default: yours.
    #[arg(long, value_delimiter = ',')]
    pub member: Vec<String>,
    /// Only scores at or above their threshold.
    #[arg(long)]
    pub above_threshold: bool,
    /// Only scores of at least this value.
    #[arg(long, default_value_t = 0.0)]
    pub min: f64,
    /// Page size (1–500).
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// Token from a previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Print each score as a JSON line.
    #[arg(long)]
    pub json: bool,
}

/// A hypothetical supply cut.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// The country that cuts (ISO 3166-1 alpha-2, such as CN).
    #[arg(long)]
    pub origin: String,
    /// The mineral cut.
    #[arg(long)]
    pub mineral: String,
    /// The stage cut.
    #[arg(long)]
    pub stage: String,
    /// Fraction of the country's output cut, above 0 and at most 1.
    #[arg(long)]
    pub cut: f64,
    /// How long the cut lasts, in days (1–3650).
    #[arg(long)]
    pub days: u32,
    /// Only these members (comma-separated); default: every member.
    #[arg(long, value_delimiter = ',')]
    pub member: Vec<String>,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

fn mineral(s: &str) -> Result<i32, CliError> {
    Ok(parse_enum("MINERAL", s, Mineral::from_str_name)? as i32)
}

fn stage(s: &str) -> Result<i32, CliError> {
    Ok(parse_enum("STAGE", s, Stage::from_str_name)? as i32)
}

fn upper(v: &[String]) -> Vec<String> {
    v.iter().map(|m| m.trim().to_uppercase()).collect()
}

/// `gallium`, `light-rare-earths`: the words the CLI reads.
fn mineral_word(m: i32) -> String {
    orex_proto::names::mineral(Mineral::try_from(m).unwrap_or_default()).replace('_', "-")
}

fn stage_word(s: i32) -> String {
    orex_proto::names::stage(Stage::try_from(s).unwrap_or_default()).replace('_', "-")
}

/// Runs a risk subcommand with the analyst bundle in `bundle`.
pub async fn run(bundle: &Path, cmd: RiskCommand) -> Result<(), CliError> {
    // Mistyped words are reported before anything connects.
    let request = Request::of(&cmd)?;
    let mut client = Connection::open(bundle).await?.risk();
    match (cmd, request) {
        (RiskCommand::List(a), Request::List(req)) => {
            let resp = client.list_supply_risks(req).await?.into_inner();
            if a.json {
                for s in &resp.supply_risks {
                    crate::outln!("{}", crate::json::line("orex.risk.v1.SupplyRisk", s)?);
                }
            } else {
                print_list(&resp.supply_risks);
            }
            if !resp.next_page_token.is_empty() && !a.json {
                crate::outln!("more: --page-token {}", resp.next_page_token);
            }
        }
        (RiskCommand::Show { json, .. }, Request::Show(req)) => {
            let s = client
                .get_supply_risk(req)
                .await?
                .into_inner()
                .supply_risk
                .unwrap_or_default();
            if json {
                crate::outln!("{}", crate::json::line("orex.risk.v1.SupplyRisk", &s)?);
            } else {
                print_score(&s);
            }
        }
        (RiskCommand::Scenario(a), Request::Scenario(req)) => {
            let r = client
                .run_scenario(req)
                .await?
                .into_inner()
                .result
                .unwrap_or_default();
            if a.json {
                crate::outln!("{}", crate::json::line("orex.risk.v1.ScenarioResult", &r)?);
            } else {
                print_scenario(&r);
            }
        }
        (RiskCommand::Price { json, .. }, Request::Price(req)) => {
            let p = client
                .get_reference_price(req)
                .await?
                .into_inner()
                .price
                .unwrap_or_default();
            if json {
                crate::outln!("{}", crate::json::line("orex.risk.v1.ReferencePrice", &p)?);
            } else {
                print_price(&p);
            }
        }
        (RiskCommand::Watch { json, .. }, Request::Watch(req)) => {
            let stream = client.subscribe_risk_alerts(req).await?.into_inner();
            if !json {
                crate::outln!("watching risk alerts (Ctrl-C stops)");
            }
            let as_json = json.then_some("orex.risk.v1.SubscribeRiskAlertsResponse");
            crate::commands::watch(stream, as_json, print_alert).await?;
        }
        (RiskCommand::Data { json }, Request::Data) => {
            let v = client
                .get_reference_data_version(GetReferenceDataVersionRequest {})
                .await?
                .into_inner()
                .reference_data
                .unwrap_or_default();
            if json {
                crate::outln!(
                    "{}",
                    crate::json::line("orex.risk.v1.ReferenceDataVersion", &v)?
                );
            } else {
                print_data(&v);
            }
        }
        _ => unreachable!("requests are built from their command"),
    }
    Ok(())
}

/// The request a command sends, built (and its words checked) first.
enum Request {
    List(ListSupplyRisksRequest),
    Show(GetSupplyRiskRequest),
    Scenario(RunScenarioRequest),
    Price(GetReferencePriceRequest),
    Watch(SubscribeRiskAlertsRequest),
    Data,
}

impl Request {
    fn of(cmd: &RiskCommand) -> Result<Self, CliError> {
        Ok(match cmd {
            RiskCommand::List(a) => Request::List(ListSupplyRisksRequest {
                filter: Some(SupplyRiskFilter {
                    minerals: a
                        .mineral
                        .iter()
                        .map(|m| mineral(m))
                        .collect::<Result<_, _>>()?,
                    stages: a.stage.iter().map(|s| stage(s)).collect::<Result<_, _>>()?,
                    members: upper(&a.member),
                    min_supply_risk: a.min,
                    above_threshold_only: a.above_threshold,
                }),
                page_size: a.page_size,
                page_token: a.page_token.clone(),
            }),
            RiskCommand::Show {
                mineral: m,
                stage: s,
                member,
                ..
            } => Request::Show(GetSupplyRiskRequest {
                mineral: mineral(m)?,
                stage: s.as_deref().map(stage).transpose()?.unwrap_or_default(),
                member: member.as_deref().unwrap_or("").trim().to_uppercase(),
            }),
            RiskCommand::Scenario(a) => Request::Scenario(RunScenarioRequest {
                scenario: Some(Scenario {
                    origin_country: a.origin.trim().to_uppercase(),
                    mineral: mineral(&a.mineral)?,
                    stage: stage(&a.stage)?,
                    cut_fraction: a.cut,
                    duration_days: a.days,
                    start_time: None,
                }),
                members: upper(&a.member),
            }),
            RiskCommand::Price { mineral: m, .. } => Request::Price(GetReferencePriceRequest {
                mineral: mineral(m)?,
            }),
            RiskCommand::Watch { after, member, .. } => {
                Request::Watch(SubscribeRiskAlertsRequest {
                    filter: Some(RiskAlertFilter {
                        members: upper(member),
                        ..Default::default()
                    }),
                    after_sequence: *after,
                })
            }
            RiskCommand::Data { .. } => Request::Data,
        })
    }
}

fn high(s: &SupplyRisk) -> &'static str {
    if s.above_threshold { "HIGH" } else { "" }
}

fn print_list(scores: &[SupplyRisk]) {
    if scores.is_empty() {
        crate::outln!("(no scores match)");
        return;
    }
    crate::outln!(
        "{:>7} {:>9} {:<5} {:<18} {:<11} {:<6} {:<16} {:>5}",
        "SR",
        "baseline",
        "",
        "mineral",
        "stage",
        "member",
        "largest outside",
        "live"
    );
    for s in scores {
        let largest = s
            .largest_supplier
            .as_ref()
            .filter(|l| !l.country.is_empty())
            .map(|l| {
                format!(
                    "{} {:.2}{}",
                    l.country,
                    l.share,
                    if l.exceeds_ceiling { " >cap" } else { "" }
                )
            })
            .unwrap_or_else(|| "-".into());
        crate::outln!(
            "{:>7.3} {:>9.3} {:<5} {:<18} {:<11} {:<6} {:<16} {:>5}",
            s.supply_risk,
            s.baseline_supply_risk,
            high(s),
            mineral_word(s.mineral),
            stage_word(s.stage),
            s.member,
            largest,
            s.applied_disruptions.len()
        );
    }
}

fn print_concentration(title: &str, c: &Concentration) {
    crate::outln!(
        "\n{title}: HHI {:.4}, HHI_WGI {:.4} (Σ share² × WGI × t)",
        c.hhi,
        c.hhi_wgi
    );
    crate::outln!(
        "  {:<7} {:>7} {:>9} {:>6} {:>5} {:>8}  {:<7}  sources",
        "country",
        "share",
        "baseline",
        "WGI",
        "t",
        "term",
        "partner"
    );
    for x in &c.countries {
        crate::outln!(
            "  {:<7} {:>7.4} {:>9.4} {:>6.2} {:>5.2} {:>8.4}  {:<7}  {}",
            x.country,
            x.share,
            x.baseline_share,
            x.governance_score,
            x.trade_restriction_factor,
            x.hhi_wgi_contribution,
            if x.partner_member { "yes" } else { "" },
            x.source_ids.join(",")
        );
    }
}

fn print_score(s: &SupplyRisk) {
    crate::outln!(
        "{} · {} · {}'s point of view (sourcing figures of {}) · reference data {}",
        mineral_word(s.mineral),
        stage_word(s.stage),
        s.member,
        s.sourcing_member,
        s.reference_data_version
    );
    crate::outln!("{}", s.formula);
    crate::outln!(
        "SR {:.4} {} (threshold {}); from reference data alone {:.4}",
        s.supply_risk,
        if s.above_threshold {
            "HIGH: at or above"
        } else {
            "below"
        },
        s.threshold,
        s.baseline_supply_risk
    );
    crate::outln!(
        "import reliance IR {:.4} · substitution index SI {:.4} · end-of-life recycling input rate {:.4}",
        s.import_reliance,
        s.substitution_index,
        s.end_of_life_recycling_input_rate
    );
    if let Some(l) = &s.largest_supplier {
        if l.country.is_empty() {
            crate::outln!("every supplier is a partner (ceiling {})", l.ceiling);
        } else {
            crate::outln!(
                "largest supplier outside the partnership: {} {:.4} (ceiling {}{})",
                l.country,
                l.share,
                l.ceiling,
                if l.exceeds_ceiling { ": EXCEEDED" } else { "" }
            );
        }
    }
    if let Some(g) = &s.global_supply {
        print_concentration("global supply (GS)", g);
    }
    if let Some(m) = &s.member_sourcing {
        print_concentration(&format!("sourcing of {}", s.sourcing_member), m);
    }
    if s.applied_disruptions.is_empty() {
        crate::outln!("\nno live disruption applies");
    } else {
        crate::outln!("\nlive disruptions (CLEAR and GREEN reports):");
        for d in &s.applied_disruptions {
            crate::outln!(
                "  {} v{} {} {}, severity {}, {:+} t/month",
                d.report_id,
                d.report_version,
                d.origin_country,
                if d.export_restriction {
                    "export restriction"
                } else {
                    "production outage"
                },
                d.severity,
                d.volume_impact_tonnes_per_month
            );
        }
    }
    if !s.estimates.is_empty() {
        crate::outln!("estimates: {}", s.estimates.join("; "));
    }
    crate::outln!("sources: {}", s.source_ids.join(", "));
}

fn print_scenario(r: &ScenarioResult) {
    let sc = r.scenario.clone().unwrap_or_default();
    crate::outln!(
        "{} cuts {:.0}% of {} ({}) for {} days · reference data {}",
        sc.origin_country,
        sc.cut_fraction * 100.0,
        mineral_word(sc.mineral),
        stage_word(sc.stage),
        sc.duration_days,
        r.reference_data_version
    );
    crate::outln!(
        "world supply lost: {:.1} t ({:.2}% of the stage's output)",
        r.global_shortfall_tonnes,
        r.global_shortfall_fraction * 100.0
    );
    if let (Some(b), Some(a)) = (r.supply_risk_before, r.supply_risk_after) {
        crate::outln!("your supply risk: {b:.4} now, {a:.4} with the cut");
    }
    crate::outln!(
        "\n{:<6} {:>14} {:>9} {:>11} {:>12}  stockpile",
        "member",
        "consumption t/y",
        "exposure",
        "short t/day",
        "short t"
    );
    for m in &r.member_impacts {
        let stockpile = match m.stockpile_availability() {
            StockpileAvailability::Reported => format!(
                "{:.1} t, {} days of cover",
                m.stockpile_tonnes.unwrap_or_default(),
                m.days_of_cover
                    .map_or_else(|| "-".to_owned(), |d| format!("{d:.0}"))
            ),
            StockpileAvailability::Withheld => "withheld".into(),
            StockpileAvailability::Unavailable => "unavailable".into(),
            _ => "not reported".into(),
        };
        let consumption = if m.consumption_known {
            format!("{:.1}", m.consumption_tonnes_per_year)
        } else {
            "unknown".into()
        };
        crate::outln!(
            "{:<6} {:>14} {:>9.4} {:>11.3} {:>12.1}  {}",
            m.member,
            consumption,
            m.exposure_fraction,
            m.shortfall_tonnes_per_day,
            m.shortfall_tonnes,
            stockpile
        );
    }
    if !r.stockpiles_note.is_empty() {
        crate::outln!("stockpiles unavailable: {}", r.stockpiles_note);
    }
}

fn print_price(p: &ReferencePrice) {
    crate::outln!(
        "{}: {:.2} USD/t ({})",
        mineral_word(p.mineral),
        p.usd_per_tonne,
        p.product_form
    );
    crate::outln!(
        "dumping below {:.2} USD/t (margin {:.0}%)",
        p.dumping_threshold_usd_per_tonne,
        p.dumping_margin * 100.0
    );
    crate::outln!("basis: {}", p.basis);
    crate::outln!(
        "sources: {} · reference data {}",
        p.source_ids.join(", "),
        p.reference_data_version
    );
}

fn print_alert(ev: &SubscribeRiskAlertsResponse) {
    let a = ev.alert.clone().unwrap_or_default();
    let kind = a
        .kind()
        .as_str_name()
        .trim_start_matches("RISK_ALERT_KIND_")
        .to_lowercase()
        .replace('_', "-");
    match &a.detail {
        Some(risk_alert::Detail::ThresholdCrossing(c)) => {
            let s = c.supply_risk.clone().unwrap_or_default();
            let cause = if c.cause_report_ids.is_empty() {
                "reference data update".to_owned()
            } else {
                format!("report {}", c.cause_report_ids.join(","))
            };
            crate::outln!(
                "#{} {kind} {} {} {}: SR {:.4} → {:.4} (threshold {}) · {cause}",
                ev.sequence,
                mineral_word(a.mineral),
                stage_word(a.stage),
                a.member,
                c.previous_supply_risk,
                s.supply_risk,
                s.threshold
            );
        }
        Some(risk_alert::Detail::PriceDumping(p)) => crate::outln!(
            "#{} {kind} {}: {:.2} USD/t observed in {} ({:.0}% below reference) · report {}",
            ev.sequence,
            mineral_word(p.mineral),
            p.observed_usd_per_tonne,
            p.origin_country,
            p.discount * 100.0,
            p.report_id
        ),
        None => crate::outln!("#{} {kind}", ev.sequence),
    }
}

fn print_data(v: &ReferenceDataVersion) {
    crate::outln!("reference data {} (sha256 {})", v.version, v.content_sha256);
    if let Some(p) = &v.published_at {
        crate::outln!("published {p}");
    }
    if let Some(l) = &v.loaded_at {
        crate::outln!("loaded    {l}");
    }
    crate::outln!("sources:");
    for s in &v.sources {
        crate::outln!("  {:<20} {} — {} ({})", s.id, s.title, s.publisher, s.year);
    }
}
