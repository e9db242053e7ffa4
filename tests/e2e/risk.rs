//! The risk service through the gateway, as analysts call it: the door
//! (role, records), scores with every component, lists, scenarios, prices,
//! the reference data version in every answer, and every bad input answered
//! INVALID_ARGUMENT or NOT_FOUND with nothing changed.

use orex_e2e::Stack;
use orex_kit::status::{Reason, reason_of};
use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::risk::v1::*;
use orex_risk::reference::ReferenceData;
use tonic::Code;

fn shipped() -> ReferenceData {
    ReferenceData::parse(orex_cli::devstack::SHIPPED_REFERENCE_DATA.as_bytes()).unwrap()
}

fn supply_risk(mineral: Mineral, stage: Stage, member: &str) -> GetSupplyRiskRequest {
    GetSupplyRiskRequest {
        mineral: mineral as i32,
        stage: stage as i32,
        member: member.into(),
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[tokio::test]
async fn an_analyst_gets_a_score_with_every_component_and_the_door_records_it() {
    let stack = Stack::spawn().await;
    let data = shipped();
    let mut ana = stack.risk_client("us-ana").await;
    let s = ana
        .get_supply_risk(supply_risk(Mineral::Gallium, Stage::Unspecified, ""))
        .await
        .unwrap()
        .into_inner()
        .supply_risk
        .unwrap();
    assert_eq!(s.member, "US", "the caller's member by default");
    assert_eq!(s.reference_data_version, data.version);
    assert_ne!(
        s.stage,
        Stage::Unspecified as i32,
        "the bottleneck stage is named"
    );
    // The bottleneck is the highest of the stages with figures.
    for (m, stage) in data.supply.keys() {
        if *m != Mineral::Gallium {
            continue;
        }
        if let Ok(other) = ana
            .get_supply_risk(supply_risk(Mineral::Gallium, *stage, ""))
            .await
        {
            assert!(other.into_inner().supply_risk.unwrap().supply_risk <= s.supply_risk);
        }
    }
    // Every component is there and recomputes the score.
    let g = s.global_supply.as_ref().unwrap();
    let m = s.member_sourcing.as_ref().unwrap();
    let sum = |c: &Concentration| {
        c.countries
            .iter()
            .map(|x| x.share * x.share * x.governance_score * x.trade_restriction_factor)
            .sum::<f64>()
    };
    close(g.hhi_wgi, sum(g));
    close(m.hhi_wgi, sum(m));
    let ir = s.import_reliance;
    close(
        s.supply_risk,
        (g.hhi_wgi * ir / 2.0 + m.hhi_wgi * (1.0 - ir / 2.0))
            * (1.0 - s.end_of_life_recycling_input_rate)
            * s.substitution_index,
    );
    assert!(s.formula.starts_with("SR = "), "{}", s.formula);
    assert!(!s.source_ids.is_empty());
    assert!(
        s.estimates
            .iter()
            .any(|e| e.starts_with("governance_score of")),
        "the shipped governance scores are derived, and the answer says so: {:?}",
        s.estimates
    );
    assert_eq!(s.threshold, 1.0);
    assert_eq!(s.largest_supplier.as_ref().unwrap().ceiling, 0.65);

    // A reporter without the analyst role is refused, and both calls are recorded.
    let mut alice = orex_cli::bundle::Connection::open(&stack.bundle("us-alice"))
        .await
        .unwrap()
        .risk();
    let err = alice
        .get_supply_risk(supply_risk(Mineral::Gallium, Stage::Unspecified, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let log = stack.audit_log();
    let records = log.range(0, log.size()).unwrap();
    let method = "/orex.risk.v1.RiskService/GetSupplyRisk";
    assert!(records.iter().any(|r| r.method == method
        && r.subject == "ana"
        && r.resource_ids == ["mineral:gallium"]));
    assert!(
        records
            .iter()
            .any(|r| r.method == method && r.subject == "alice")
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_bloc_state_without_figures_of_its_own_is_scored_with_its_blocs() {
    let stack = Stack::spawn().await;
    let data = shipped();
    let Some((mineral, stage)) = data
        .sourcing
        .keys()
        .find(|(member, m, s)| {
            member == "EU" && !data.sourcing.contains_key(&("DE".to_owned(), *m, *s))
        })
        .map(|(_, m, s)| (*m, *s))
    else {
        panic!("the shipped data has EU sourcing without a DE entry");
    };
    let mut dana = stack.risk_client("de-dana").await;
    let de = dana
        .get_supply_risk(supply_risk(mineral, stage, ""))
        .await
        .unwrap()
        .into_inner()
        .supply_risk
        .unwrap();
    let eu = dana
        .get_supply_risk(supply_risk(mineral, stage, "EU"))
        .await
        .unwrap()
        .into_inner()
        .supply_risk
        .unwrap();
    assert_eq!(
        (de.member.as_str(), de.sourcing_member.as_str()),
        ("DE", "EU")
    );
    close(de.supply_risk, eu.supply_risk);
    stack.stop().await;
}

#[tokio::test]
async fn lists_page_through_every_score_highest_first() {
    let stack = Stack::spawn().await;
    let mut ana = stack.risk_client("us-ana").await;
    let filter = SupplyRiskFilter {
        members: vec!["US".into(), "EU".into()],
        ..Default::default()
    };
    let all = ana
        .list_supply_risks(ListSupplyRisksRequest {
            filter: Some(filter.clone()),
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(all.next_page_token.is_empty());
    assert!(all.supply_risks.len() > 10, "{}", all.supply_risks.len());
    assert!(
        all.supply_risks
            .windows(2)
            .all(|w| w[0].supply_risk >= w[1].supply_risk)
    );
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = ana
            .list_supply_risks(ListSupplyRisksRequest {
                filter: Some(filter.clone()),
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.supply_risks.len() <= 3);
        paged.extend(page.supply_risks);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let key = |s: &SupplyRisk| {
        (
            s.mineral,
            s.stage,
            s.member.clone(),
            s.supply_risk.to_bits(),
        )
    };
    assert_eq!(
        paged.iter().map(key).collect::<Vec<_>>(),
        all.supply_risks.iter().map(key).collect::<Vec<_>>()
    );
    // Above-threshold only.
    let high = ana
        .list_supply_risks(ListSupplyRisksRequest {
            filter: Some(SupplyRiskFilter {
                above_threshold_only: true,
                ..filter.clone()
            }),
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(high.supply_risks.iter().all(|s| s.above_threshold));
    assert_eq!(
        high.supply_risks.len(),
        all.supply_risks
            .iter()
            .filter(|s| s.above_threshold)
            .count()
    );
    // A token is bound to its filter and to its caller.
    let first = ana
        .list_supply_risks(ListSupplyRisksRequest {
            filter: Some(filter.clone()),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let err = ana
        .list_supply_risks(ListSupplyRisksRequest {
            filter: None,
            page_size: 1,
            page_token: first.next_page_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&err), Some(Reason::PageTokenInvalid));
    let mut erik = stack.risk_client("eu-erik").await;
    let err = erik
        .list_supply_risks(ListSupplyRisksRequest {
            filter: Some(filter),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason_of(&err), Some(Reason::PageTokenInvalid));
    stack.stop().await;
}

#[tokio::test]
async fn a_scenario_reports_shortfalls_and_no_stockpile_is_guessed() {
    let stack = Stack::spawn().await;
    let data = shipped();
    let (mineral, stage) = (Mineral::Gallium, Stage::Processing);
    let supply = data
        .supply
        .get(&(mineral, stage))
        .expect("shipped gallium processing supply");
    let world = supply.world_tonnes_per_year.expect("world output");
    let cn = supply
        .shares
        .iter()
        .find(|s| s.country == "CN")
        .unwrap()
        .share;
    let mut ana = stack.risk_client("us-ana").await;
    let scenario = Scenario {
        origin_country: "CN".into(),
        mineral: mineral as i32,
        stage: stage as i32,
        cut_fraction: 0.5,
        duration_days: 30,
        start_time: None,
    };
    let r = ana
        .run_scenario(RunScenarioRequest {
            scenario: Some(scenario.clone()),
            members: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    close(r.global_shortfall_fraction, cn * 0.5);
    close(r.global_shortfall_tonnes, world * cn * 0.5 * 30.0 / 365.0);
    assert_eq!(r.reference_data_version, data.version);
    assert!(r.scenario.unwrap().start_time.is_some(), "filled in");
    let members: Vec<&str> = r.member_impacts.iter().map(|m| m.member.as_str()).collect();
    for code in ["US", "EU", "DE", "FR", "JP"] {
        assert!(members.contains(&code), "every member: {members:?}");
    }
    assert!(
        r.member_impacts
            .windows(2)
            .all(|w| w[0].shortfall_tonnes >= w[1].shortfall_tonnes)
    );
    for m in &r.member_impacts {
        assert_eq!(
            m.stockpile_availability,
            StockpileAvailability::NotReported as i32
        );
        assert!(m.stockpile_tonnes.is_none() && m.days_of_cover.is_none());
        close(
            m.shortfall_tonnes_per_day,
            m.consumption_tonnes_per_year / 365.0 * m.exposure_fraction * 0.5,
        );
        close(m.shortfall_tonnes, m.shortfall_tonnes_per_day * 30.0);
        assert_eq!(
            m.consumption_known,
            data.consumption.contains_key(&(m.member.clone(), mineral))
        );
    }
    let now = ana
        .get_supply_risk(supply_risk(mineral, stage, ""))
        .await
        .unwrap()
        .into_inner()
        .supply_risk
        .unwrap();
    close(r.supply_risk_before.unwrap(), now.supply_risk);
    assert!(r.supply_risk_after.is_some());
    stack.stop().await;
}

#[tokio::test]
async fn reference_prices_give_their_dumping_threshold() {
    let stack = Stack::spawn().await;
    let data = shipped();
    let mut ana = stack.risk_client("eu-erik").await;
    let p = ana
        .get_reference_price(GetReferencePriceRequest {
            mineral: Mineral::Antimony as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .price
        .unwrap();
    let shipped = &data.prices[&Mineral::Antimony];
    close(p.usd_per_tonne, shipped.usd_per_tonne);
    close(
        p.dumping_threshold_usd_per_tonne,
        shipped.usd_per_tonne * (1.0 - shipped.dumping_margin),
    );
    assert_eq!(p.reference_data_version, data.version);
    assert!(!p.basis.is_empty() && !p.source_ids.is_empty());
    stack.stop().await;
}

/// Every bad input a caller can send: a clear status naming the field, and
/// nothing changes (the next good call answers as before).
#[tokio::test]
async fn every_bad_input_is_refused_by_name() {
    let stack = Stack::spawn().await;
    let mut ana = stack.risk_client("us-ana").await;
    let good = supply_risk(Mineral::Gallium, Stage::Processing, "");
    let before = ana
        .get_supply_risk(good.clone())
        .await
        .unwrap()
        .into_inner();

    let invalid = |code: Code, field: &str, err: tonic::Status| {
        assert_eq!(err.code(), code, "{field}: {err:?}");
        if code == Code::InvalidArgument {
            assert!(err.message().contains(field), "{field}: {}", err.message());
        }
    };
    for (req, field) in [
        (
            supply_risk(Mineral::Unspecified, Stage::Processing, ""),
            "mineral",
        ),
        (
            GetSupplyRiskRequest {
                mineral: 999,
                ..good.clone()
            },
            "mineral",
        ),
        (
            GetSupplyRiskRequest {
                stage: 77,
                ..good.clone()
            },
            "stage",
        ),
        (
            supply_risk(Mineral::Gallium, Stage::Processing, "XX"),
            "member",
        ),
        (
            supply_risk(Mineral::Gallium, Stage::Processing, "us"),
            "member",
        ),
    ] {
        invalid(
            Code::InvalidArgument,
            field,
            ana.get_supply_risk(req).await.unwrap_err(),
        );
    }
    // Known mineral, no reference figures: NOT_FOUND as the contract says.
    let err = ana
        .get_supply_risk(supply_risk(Mineral::CokingCoal, Stage::Unspecified, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = ana
        .get_reference_price(GetReferencePriceRequest {
            mineral: Mineral::CokingCoal as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let scenario = Scenario {
        origin_country: "CN".into(),
        mineral: Mineral::Gallium as i32,
        stage: Stage::Processing as i32,
        cut_fraction: 0.5,
        duration_days: 30,
        start_time: None,
    };
    for (s, members, field) in [
        (
            Scenario {
                cut_fraction: 0.0,
                ..scenario.clone()
            },
            vec![],
            "scenario.cut_fraction",
        ),
        (
            Scenario {
                cut_fraction: 1.5,
                ..scenario.clone()
            },
            vec![],
            "scenario.cut_fraction",
        ),
        (
            Scenario {
                cut_fraction: f64::NAN,
                ..scenario.clone()
            },
            vec![],
            "scenario.cut_fraction",
        ),
        (
            Scenario {
                duration_days: 0,
                ..scenario.clone()
            },
            vec![],
            "scenario.duration_days",
        ),
        (
            Scenario {
                duration_days: 3651,
                ..scenario.clone()
            },
            vec![],
            "scenario.duration_days",
        ),
        (
            Scenario {
                origin_country: "China".into(),
                ..scenario.clone()
            },
            vec![],
            "scenario.origin_country",
        ),
        (
            Scenario {
                stage: Stage::Unspecified as i32,
                ..scenario.clone()
            },
            vec![],
            "scenario.stage",
        ),
        (scenario.clone(), vec!["ZZ".to_owned()], "members[0]"),
    ] {
        let err = ana
            .run_scenario(RunScenarioRequest {
                scenario: Some(s),
                members,
            })
            .await
            .unwrap_err();
        invalid(Code::InvalidArgument, field, err);
    }
    let err = ana
        .run_scenario(RunScenarioRequest {
            scenario: None,
            members: vec![],
        })
        .await
        .unwrap_err();
    invalid(Code::InvalidArgument, "scenario", err);
    for (req, field) in [
        (
            ListSupplyRisksRequest {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListSupplyRisksRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListSupplyRisksRequest {
                filter: Some(SupplyRiskFilter {
                    min_supply_risk: -1.0,
                    ..Default::default()
                }),
                ..Default::default()
            },
            "filter.min_supply_risk",
        ),
        (
            ListSupplyRisksRequest {
                filter: Some(SupplyRiskFilter {
                    members: vec!["US".into(), "Mars".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            "filter.members[1]",
        ),
    ] {
        invalid(
            Code::InvalidArgument,
            field,
            ana.list_supply_risks(req).await.unwrap_err(),
        );
    }
    let after = ana.get_supply_risk(good).await.unwrap().into_inner();
    let (mut b, mut a) = (before.supply_risk.unwrap(), after.supply_risk.unwrap());
    b.computed_at = None;
    a.computed_at = None;
    assert_eq!(a, b, "nothing changed");
    stack.stop().await;
}

/// The reference data file is reloaded without a restart, the version in
/// force is in every answer, and a malformed file is refused with the old
/// version kept.
#[tokio::test]
async fn a_changed_reference_file_is_applied_and_a_malformed_one_refused() {
    let stack = Stack::spawn().await;
    let mut ana = stack.risk_client("us-ana").await;
    let path = stack.layout.config("reference.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let data = shipped();
    let old = format!("version = \"{}\"", data.version);
    assert!(text.contains(&old));
    std::fs::write(&path, text.replacen(&old, "version = \"e2e.2\"", 1)).unwrap();
    stack.reload_reference_data().unwrap();
    let v = ana
        .get_reference_data_version(GetReferenceDataVersionRequest {})
        .await
        .unwrap()
        .into_inner()
        .reference_data
        .unwrap();
    assert_eq!(v.version, "e2e.2");
    let s = ana
        .get_supply_risk(supply_risk(Mineral::Gallium, Stage::Unspecified, ""))
        .await
        .unwrap()
        .into_inner()
        .supply_risk
        .unwrap();
    assert_eq!(s.reference_data_version, "e2e.2");

    std::fs::write(&path, "version = \"e2e.3\"\nthis is not toml").unwrap();
    let err = stack.reload_reference_data().unwrap_err();
    assert!(err.to_string().contains("reference data"), "{err}");
    let v = ana
        .get_reference_data_version(GetReferenceDataVersionRequest {})
        .await
        .unwrap()
        .into_inner()
        .reference_data
        .unwrap();
    assert_eq!(v.version, "e2e.2", "the old version stays in force");
    stack.stop().await;
}
