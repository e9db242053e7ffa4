//! Every request a member can send, decoded from arbitrary bytes and, if it
//! decodes, validated exactly as the service validates it before looking
//! anything up (`orex_sharing::validate::*_request`,
//! `orex_risk::validate::*_request`, `orex_emergency::validate::*`; the
//! audit requests are decoded). The first byte picks the method. Never a
//! panic: bad input is an INVALID_ARGUMENT naming the field.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use orex_membership::Partnership;
use orex_emergency::validate as emergency_validate;
use orex_proto::audit::v1 as audit;
use orex_proto::emergency::v1 as emergency;
use orex_proto::risk::v1 as risk;
use orex_proto::sharing::v1 as sharing;
use orex_risk::validate as risk_validate;
use orex_sharing::validate;
use prost::Message;

const POLICY: &str = r#"
[[members]]
code = "US"
name = "United States"
kind = "state"
founding = true
[[members]]
code = "EU"
name = "European Union"
kind = "bloc"
founding = true
[[members]]
code = "DE"
name = "Germany"
kind = "state"
bloc = "EU"
"#;

static PARTNERSHIP: LazyLock<Partnership> =
    LazyLock::new(|| Partnership::parse(POLICY, std::path::Path::new(".")).expect("policy"));

fn decoded<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, bytes)) = data.split_first() else {
        return;
    };
    let p = &*PARTNERSHIP;
    match method % 28 {
        0 => {
            if let Some(r) = decoded::<sharing::PublishReportRequest>(bytes) {
                let _ = validate::publish_request(&r, p);
            }
        }
        1 => {
            if let Some(r) = decoded::<sharing::AmendReportRequest>(bytes) {
                let _ = validate::amend_request(&r, p);
            }
        }
        2 => {
            if let Some(r) = decoded::<sharing::ResolveReportRequest>(bytes) {
                let _ = validate::resolve_request(&r);
            }
        }
        3 => {
            if let Some(r) = decoded::<sharing::RetractReportRequest>(bytes) {
                let _ = validate::retract_request(&r);
            }
        }
        4 => {
            if let Some(r) = decoded::<sharing::GetReportRequest>(bytes) {
                let _ = validate::get_request(&r);
            }
        }
        5 => {
            if let Some(r) = decoded::<sharing::ListReportsRequest>(bytes) {
                let _ = validate::list_request(&r);
            }
        }
        6 => {
            if let Some(r) = decoded::<sharing::ListReportVersionsRequest>(bytes) {
                let _ = validate::versions_request(&r);
            }
        }
        7 => {
            if let Some(r) = decoded::<sharing::SubscribeReportsRequest>(bytes) {
                let _ = validate::subscribe_request(&r);
            }
        }
        8 => {
            let _ = decoded::<audit::QueryAccessRecordsRequest>(bytes);
        }
        9 => {
            let _ = decoded::<audit::GetRecordRangeRequest>(bytes);
        }
        10 => {
            let _ = decoded::<audit::ListCheckpointsRequest>(bytes);
        }
        11 => {
            let _ = decoded::<audit::GetLatestCheckpointRequest>(bytes);
        }
        12 => {
            if let Some(r) = decoded::<risk::GetSupplyRiskRequest>(bytes) {
                let _ = risk_validate::get_supply_risk_request(&r, p);
            }
        }
        13 => {
            if let Some(r) = decoded::<risk::ListSupplyRisksRequest>(bytes) {
                let _ = risk_validate::list_supply_risks_request(&r, p);
            }
        }
        14 => {
            if let Some(r) = decoded::<risk::RunScenarioRequest>(bytes) {
                let _ = risk_validate::run_scenario_request(&r, p);
            }
        }
        15 => {
            if let Some(r) = decoded::<risk::GetReferencePriceRequest>(bytes) {
                let _ = risk_validate::reference_price_request(&r);
            }
        }
        16 => {
            if let Some(r) = decoded::<risk::SubscribeRiskAlertsRequest>(bytes) {
                let _ = risk_validate::subscribe_request(&r);
            }
        }
        17 => {
            let _ = decoded::<risk::GetReferenceDataVersionRequest>(bytes);
        }
        18 => {
            if let Some(r) = decoded::<emergency::ReportStockpileRequest>(bytes) {
                let _ = emergency_validate::report_stockpile(&r, p);
            }
        }
        19 => {
            if let Some(r) = decoded::<emergency::ListStockpilesRequest>(bytes) {
                let _ = emergency_validate::list_stockpiles(&r, p);
            }
        }
        20 => {
            if let Some(r) = decoded::<emergency::DeclareShortageRequest>(bytes) {
                let _ = emergency_validate::declare(&r);
                if let Some(d) = &r.declaration {
                    let now = orex_kit::fields::now_nanos();
                    let _ = emergency_validate::voting_deadline(d, now, 168);
                }
            }
        }
        21 => {
            if let Some(r) = decoded::<emergency::CastVoteRequest>(bytes) {
                let _ = emergency_validate::cast_vote(&r);
            }
        }
        22 => {
            if let Some(r) = decoded::<emergency::GetCaseRequest>(bytes) {
                let _ = emergency_validate::get_case(&r);
            }
        }
        23 => {
            if let Some(r) = decoded::<emergency::ListCasesRequest>(bytes) {
                let _ = emergency_validate::list_cases(&r);
            }
        }
        24 => {
            if let Some(r) = decoded::<emergency::PledgeReleaseRequest>(bytes) {
                let _ = emergency_validate::pledge(&r);
            }
        }
        25 => {
            if let Some(r) = decoded::<emergency::RecordFulfilmentRequest>(bytes) {
                let _ = emergency_validate::fulfil(&r);
            }
        }
        26 => {
            if let Some(r) = decoded::<emergency::CloseCaseRequest>(bytes) {
                let _ = emergency_validate::close(&r);
            }
        }
        _ => {
            if let Some(r) = decoded::<emergency::SubscribeCaseEventsRequest>(bytes) {
                let _ = emergency_validate::subscribe(&r);
            }
        }
    }
});
