//! `orex risk` against a real stack: tables for people (the formula with its
//! numbers), `--json` in the proto3 JSON mapping for scripts, and mistyped
//! words refused before anything connects.

use std::process::{Command, Output, Stdio};

use orex_e2e::{Stack, publish};
use orex_proto::common::v1::{Marking, Mineral, Stage};
use orex_proto::sharing::v1::{Category, ReportContent};
use serde_json::Value;

fn orex(stack: &Stack, bundle: &str, args: &[&str]) -> Output {
    let bundle = stack.bundle(bundle);
    tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_orex"))
            .args(["risk", "--bundle", bundle.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run orex")
    })
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_commands_print_tables_and_json() {
    let stack = Stack::spawn().await;

    let show = ok(&orex(&stack, "us-ana", &["show", "gallium"]));
    assert!(
        show.contains("SR = ("),
        "the formula with its numbers: {show}"
    );
    assert!(show.contains("global supply (GS)"), "{show}");
    assert!(show.contains("sourcing of US"), "{show}");

    let json = json_lines(&ok(&orex(&stack, "us-ana", &["show", "gallium", "--json"])));
    assert_eq!(json.len(), 1);
    let s = &json[0];
    assert_eq!(s["member"], "US");
    assert_eq!(s["mineral"], "MINERAL_GALLIUM");
    assert!(s["supplyRisk"].as_f64().unwrap() > 0.0);
    assert!(s["globalSupply"]["countries"].as_array().unwrap().len() > 1);

    let list = json_lines(&ok(&orex(
        &stack,
        "us-ana",
        &["list", "--member", "us,eu", "--page-size", "500", "--json"],
    )));
    assert!(list.len() > 10);
    let scores: Vec<f64> = list
        .iter()
        .map(|s| s["supplyRisk"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "highest first");
    let table = ok(&orex(&stack, "us-ana", &["list"]));
    assert!(table.lines().next().unwrap().contains("SR"), "{table}");

    let scenario = json_lines(&ok(&orex(
        &stack,
        "us-ana",
        &[
            "scenario",
            "--origin",
            "cn",
            "--mineral",
            "gallium",
            "--stage",
            "processing",
            "--cut",
            "0.5",
            "--days",
            "30",
            "--json",
        ],
    )));
    let impacts = scenario[0]["memberImpacts"].as_array().unwrap();
    assert_eq!(impacts.len(), 5, "every demo member");
    for m in impacts {
        let f = |k: &str| m[k].as_f64().unwrap_or(0.0);
        let expected = f("consumptionTonnesPerYear") / 365.0 * f("exposureFraction") * 0.5 * 30.0;
        assert!((f("shortfallTonnes") - expected).abs() < 1e-9, "{m}");
    }
    let us = impacts.iter().find(|m| m["member"] == "US").unwrap();
    assert!(us["shortfallTonnes"].as_f64().unwrap() > 0.0, "{us}");

    let price = ok(&orex(&stack, "us-ana", &["price", "antimony"]));
    assert!(price.contains("dumping below"), "{price}");
    let data = json_lines(&ok(&orex(&stack, "us-ana", &["data", "--json"])));
    assert_eq!(data[0]["contentSha256"].as_str().unwrap().len(), 64);

    // An alert, replayed from the start as JSON lines: a GREEN export
    // restriction that lifts the EU's tungsten refining score over 1.
    let mut alice = stack.client("us-alice").await;
    let report = publish(
        &mut alice,
        ReportContent {
            mineral: Mineral::Tungsten as i32,
            stage: Stage::Refining as i32,
            category: Category::ExportRestriction as i32,
            severity: 5,
            volume_impact_tonnes_per_month: 0.0,
            ..orex_e2e::content(Marking::Green, &[], &[])
        },
    )
    .await;
    let mut watch = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_orex"))
            .args(["risk", "--bundle"])
            .arg(stack.bundle("eu-erik"))
            .args(["watch", "--after", "0", "--member", "EU", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run orex")
    });
    let stdout = watch.stdout.take().unwrap();
    let reading = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    });
    // Bounded: a missing alert fails the test instead of hanging it.
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), reading).await;
    let _ = watch.kill();
    let _ = watch.wait();
    let first = first.expect("an alert within 20 s").unwrap();
    let alert: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(alert["alert"]["kind"], "RISK_ALERT_KIND_THRESHOLD_EXCEEDED");
    assert_eq!(
        alert["alert"]["thresholdCrossing"]["causeReportIds"][0],
        report.id
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_words_and_bad_values_are_refused_clearly() {
    let stack = Stack::spawn().await;
    let out = orex(&stack, "us-ana", &["show", "unobtainium"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown mineral") && err.contains("gallium"),
        "{err}"
    );
    let out = orex(
        &stack,
        "us-ana",
        &[
            "scenario",
            "--origin",
            "CN",
            "--mineral",
            "gallium",
            "--stage",
            "processing",
            "--cut",
            "1.5",
            "--days",
            "30",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scenario.cut_fraction"), "{err}");
    // A reporter is no analyst.
    let out = orex(&stack, "us-alice", &["show", "gallium"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("analyst"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.stop().await;
}
