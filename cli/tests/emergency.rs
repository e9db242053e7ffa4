//! `orex stockpile` and `orex emergency` against a real stack: a shortage
//! from stockpile reports through bloc voting, allocation, a pledge and its
//! delivery to closure, all from the command line; tables for people,
//! `--json` in the proto3 JSON mapping for scripts; mistyped words refused
//! before anything connects, bad values refused by the service naming the
//! field.
//!
//! The dev policy's voting parties: US and EU (founding), JP. Default rule:
//! every founding party and a majority of the others (here: JP) approve.

use std::io::BufRead;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use orex_e2e::Stack;
use serde_json::Value;

/// Runs `orex GROUP --bundle <bundle> REST…` (GROUP is `args[0]`).
fn orex_with(bundle: &std::path::Path, args: &[&str]) -> Output {
    tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_orex"))
            .arg(args[0])
            .arg("--bundle")
            .arg(bundle)
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .expect("run orex")
    })
}

fn orex(stack: &Stack, bundle: &str, args: &[&str]) -> Output {
    orex_with(&stack.bundle(bundle), args)
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

/// The standard error of a command that must have failed.
fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn json(text: &str) -> Value {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one answer, one line: {text}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The table row of `member` (rows start with the member code).
fn row<'a>(table: &'a str, member: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{member} ")))
        .unwrap_or_else(|| panic!("no row for {member}: {table}"))
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortage_runs_from_stockpile_reports_to_closure_on_the_command_line() {
    let stack = Stack::spawn().await;

    // The README's worked example: the US refuses, the EU holds 10 t
    // against 57 t/y (AMBER, to the US), JP 50 t against 19 t/y.
    let us = ok(&orex(
        &stack,
        "us-cole",
        &[
            "stockpile",
            "report",
            "gallium",
            "--refuse",
            "figures are classified under national law",
            "--legal-basis",
            "50 U.S.C. 98",
        ],
    ));
    assert!(us.contains("US gallium v1"), "{us}");
    assert!(
        us.contains("refused: figures are classified under national law"),
        "{us}"
    );
    assert!(us.contains("legal basis: 50 U.S.C. 98"), "{us}");
    let eu = ok(&orex(
        &stack,
        "eu-clara",
        &[
            "stockpile",
            "report",
            "gallium",
            "--stockpile",
            "10",
            "--consumption",
            "57",
            "--net-imports",
            "57",
            "--as-of",
            "2025-01-01T00:00:00Z",
            "--marking",
            "amber",
            "--to",
            "us",
        ],
    ));
    assert!(eu.contains("as of 2025-01-01T00:00:00Z"), "{eu}");
    assert!(eu.contains("TLP:AMBER to US"), "{eu}");
    // 10 t ÷ (57 t/y ÷ 365): 64.0 days, for imports as for consumption; 17.5 % of a year.
    assert!(
        eu.contains(
            "coverage: 64.0 days of cover · 64.0 days of net imports · 17.5% of annual consumption"
        ),
        "{eu}"
    );
    let jp = json(&ok(&orex(
        &stack,
        "jp-chika",
        &[
            "stockpile",
            "report",
            "light-rare-earths",
            "--stockpile",
            "5",
            "--consumption",
            "100",
            "--net-imports",
            "-20",
            "--json",
        ],
    )));
    assert_eq!(jp["member"], "JP");
    assert_eq!(
        jp["content"]["marking"], "MARKING_GREEN",
        "green by default"
    );
    assert!(jp.get("daysOfNetImports").is_none(), "a net exporter: {jp}");
    ok(&orex(
        &stack,
        "jp-chika",
        &[
            "stockpile",
            "report",
            "gallium",
            "--stockpile",
            "50",
            "--consumption",
            "19",
            "--net-imports",
            "19",
        ],
    ));

    // A US analyst sees the EU's figures (the US is a recipient), a JP
    // analyst sees only that the EU reported; both see the aggregate.
    let table = ok(&orex(
        &stack,
        "us-ana",
        &["stockpile", "list", "--mineral", "gallium"],
    ));
    assert!(
        table.lines().next().unwrap().contains("days cover"),
        "{table}"
    );
    assert!(
        row(&table, "US").contains("refused: figures are classified"),
        "{table}"
    );
    assert!(row(&table, "EU").contains("AMBER to US"), "{table}");
    assert!(
        row(&table, "JP").contains("960.5"),
        "50 t ÷ (19 t/y ÷ 365): {table}"
    );
    // The aggregate sums only figures every member may see: JP's 50 t.
    assert!(
        table.contains(
            "partnership gallium: 50 t held by 1 member(s) with figures every member sees, 1 restricted (not summed), 1 refusing"
        ),
        "{table}"
    );
    let theirs = ok(&orex(&stack, "jp-aiko", &["stockpile", "list"]));
    assert!(row(&theirs, "EU").contains("restricted"), "{theirs}");
    assert!(theirs.contains("partnership gallium: 50 t"), "{theirs}");
    let page = json(&ok(&orex(
        &stack,
        "us-ana",
        &["stockpile", "list", "--member", "eu,jp", "--json"],
    )));
    let stockpiles = page["stockpiles"].as_array().unwrap();
    assert_eq!(
        stockpiles.len(),
        3,
        "EU gallium, JP gallium and rare earths"
    );
    let aggregates = page["aggregates"].as_array().unwrap();
    assert_eq!(
        aggregates.len(),
        2,
        "the member filter narrows no aggregate"
    );
    let gallium = aggregates
        .iter()
        .find(|a| a["mineral"] == "MINERAL_GALLIUM")
        .unwrap();
    assert_eq!(gallium["membersWithFigures"], 1);
    assert_eq!(gallium["membersRestricted"], 1);
    assert_eq!(gallium["membersRefusing"], 1);
    close(gallium["stockpileTonnes"].as_f64().unwrap(), 50.0);

    // Restricted figures never reach a case every member sees: the EU
    // shares its figures with everyone before the declaration.
    ok(&orex(
        &stack,
        "eu-clara",
        &[
            "stockpile",
            "report",
            "gallium",
            "--stockpile",
            "10",
            "--consumption",
            "57",
            "--net-imports",
            "57",
            "--marking",
            "green",
        ],
    ));

    // The declaration, then the vote: the US and the EU, then JP, whose
    // approval meets the rule.
    let case = json(&ok(&orex(
        &stack,
        "us-cole",
        &[
            "emergency",
            "declare",
            "gallium",
            "--shortfall",
            "12",
            "--release",
            "40",
            "--justification",
            "Chinese export licensing has halted primary gallium shipments",
            "--voting-hours",
            "1",
            "--fulfil-by-hours",
            "48",
            "--json",
        ],
    )));
    assert_eq!(case["status"], "CASE_STATUS_VOTING");
    assert!(
        case["declaration"]["fulfilmentDeadline"].is_string(),
        "{case}"
    );
    let id = case["id"].as_str().unwrap().to_owned();
    let voted = ok(&orex(
        &stack,
        "us-cole",
        &[
            "emergency",
            "vote",
            &id,
            "approve",
            "--comment",
            "we can release",
        ],
    ));
    assert!(voted.contains(&format!("case {id} VOTING")), "{voted}");
    assert!(voted.contains("pending: EU, JP"), "{voted}");
    let voted = ok(&orex(
        &stack,
        "eu-clara",
        &["emergency", "vote", &id, "APPROVE"],
    ));
    assert!(voted.contains("still possible"), "{voted}");
    let voted = ok(&orex(
        &stack,
        "jp-chika",
        &["emergency", "vote", &id, "approve"],
    ));
    assert!(voted.contains(&format!("case {id} ACTIVE")), "{voted}");
    assert!(
        voted.contains("3 approve, 0 reject · pending: none"),
        "{voted}"
    );
    assert!(voted.contains("— met"), "{voted}");

    // The allocation: shares 0.2 / 0.6 / 0.2 of 40 t; the EU is capped at
    // its 10 t, and its 14 t go to the US (uncapped: withheld) and JP.
    let shown = ok(&orex(&stack, "us-ana", &["emergency", "show", &id]));
    assert!(shown.contains("activated at"), "{shown}");
    assert!(shown.contains("rule: every founding party"), "{shown}");
    assert_eq!(
        cells_of(&shown, "US"),
        ["US", "19", "0.2000", "withheld", "15", "0", "0"]
    );
    assert_eq!(
        cells_of(&shown, "EU"),
        ["EU", "57", "0.6000", "10", "yes", "10", "0", "0"]
    );
    assert_eq!(
        cells_of(&shown, "JP"),
        ["JP", "19", "0.2000", "50", "15", "0", "0"]
    );
    assert!(shown.contains("unallocated: 0 t"), "{shown}");
    assert!(
        shown.contains("we can release"),
        "the vote's comment: {shown}"
    );

    let listed = ok(&orex(
        &stack,
        "eu-erik",
        &[
            "emergency",
            "list",
            "--status",
            "voting,active",
            "--mineral",
            "gallium",
        ],
    ));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("ACTIVE")),
        "{listed}"
    );
    let none = ok(&orex(
        &stack,
        "eu-erik",
        &["emergency", "list", "--status", "closed"],
    ));
    assert!(none.contains("(no cases match)"), "{none}");
    let page = json(&ok(&orex(
        &stack,
        "eu-erik",
        &["emergency", "list", "--json"],
    )));
    assert_eq!(page["cases"][0]["id"], id.as_str());

    // JP pledges its 15 t and delivers 10.
    let pledged = ok(&orex(
        &stack,
        "jp-chika",
        &[
            "emergency",
            "pledge",
            &id,
            "15",
            "--note",
            "from the JOGMEC reserve",
        ],
    ));
    let pledge = pledged
        .strip_prefix("pledge ")
        .and_then(|s| s.split(':').next())
        .unwrap_or_else(|| panic!("a pledge id: {pledged}"))
        .to_owned();
    assert!(pledged.contains("JP pledges 15 t"), "{pledged}");
    let delivered = ok(&orex(
        &stack,
        "jp-chika",
        &[
            "emergency",
            "fulfil",
            &id,
            &pledge,
            "10",
            "--delivered-at",
            "2025-02-01T08:00:00Z",
            "--note",
            "shipment JP-001",
        ],
    ));
    assert!(delivered.contains("delivered 10 t"), "{delivered}");
    assert!(delivered.contains("at 2025-02-01T08:00:00Z"), "{delivered}");
    assert!(delivered.contains("10 of 15 t delivered"), "{delivered}");
    assert!(
        delivered.contains("JP: allocated 15 t, pledged 15 t, delivered 10 t"),
        "{delivered}"
    );
    let shown = ok(&orex(&stack, "us-cole", &["emergency", "show", &id]));
    assert_eq!(
        cells_of(&shown, "JP"),
        ["JP", "19", "0.2000", "50", "15", "15", "10"]
    );
    assert!(shown.contains("shipment JP-001"), "{shown}");

    // Only the declaring member closes.
    let err = failed(&orex(
        &stack,
        "jp-chika",
        &["emergency", "close", &id, "--reason", "done"],
    ));
    assert!(err.contains("PermissionDenied"), "{err}");
    let closed = ok(&orex(
        &stack,
        "us-cole",
        &["emergency", "close", &id, "--reason", "supply restored"],
    ));
    assert!(closed.contains("CLOSED"), "{closed}");
    assert!(closed.contains(": supply restored"), "{closed}");
    let case = json(&ok(&orex(
        &stack,
        "jp-aiko",
        &["emergency", "show", &id, "--json"],
    )));
    assert_eq!(case["status"], "CASE_STATUS_CLOSED");
    assert_eq!(case["fulfilments"][0]["tonnes"], 10.0);

    // Every event, replayed from the start: declared, three votes,
    // activated, pledged, delivered, closed.
    let mut watch = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_orex"))
            .args(["emergency", "--bundle"])
            .arg(stack.bundle("us-ana"))
            .args(["watch", "--after", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run orex")
    });
    let stdout = watch.stdout.take().unwrap();
    let reading = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .take(9)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    });
    // Bounded: a missing event fails the test instead of hanging it.
    let lines = tokio::time::timeout(Duration::from_secs(20), reading).await;
    let _ = watch.kill();
    let _ = watch.wait();
    let lines = lines.expect("every event within 20 s").unwrap();
    assert!(lines[0].starts_with("watching"), "{lines:?}");
    let kinds: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "declared",
            "vote-cast",
            "vote-cast",
            "vote-cast",
            "activated",
            "release-pledged",
            "fulfilment-recorded",
            "closed"
        ],
        "{lines:?}"
    );
    assert!(
        lines[1].contains(&id) && lines[1].contains("by US/cole"),
        "{lines:?}"
    );
    assert!(lines[8].contains("CLOSED gallium by US/cole"), "{lines:?}");
    stack.stop().await;
}

/// The allocation row of `member` in `show`'s output, as cells.
fn cells_of(shown: &str, member: &str) -> Vec<String> {
    let (_, allocations) = shown
        .split_once("\nactivated at")
        .unwrap_or_else(|| panic!("no allocations: {shown}"));
    row(allocations, member)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_words_are_refused_before_connecting_and_bad_values_by_field() {
    // No bundle at this path: a command that got as far as connecting would
    // fail on the bundle instead.
    let nowhere = std::path::Path::new("/nonexistent/orex-bundle");
    let refusals: [(&[&str], &[&str]); 8] = [
        (
            &["stockpile", "report", "unobtainium", "--refuse", "no"],
            &["unknown mineral", "gallium", "light-rare-earths"],
        ),
        (
            &[
                "stockpile",
                "report",
                "gallium",
                "--refuse",
                "no",
                "--marking",
                "purple",
            ],
            &["unknown marking", "amber-strict"],
        ),
        (
            &[
                "stockpile",
                "report",
                "gallium",
                "--refuse",
                "no",
                "--as-of",
                "yesterday",
            ],
            &["--as-of", "RFC 3339"],
        ),
        (
            &["stockpile", "list", "--mineral", "gallium,tin-foil"],
            &["unknown mineral \"tin-foil\""],
        ),
        (
            &[
                "emergency",
                "vote",
                "0190b7f0-0000-7000-8000-000000000000",
                "maybe",
            ],
            &["maybe", "approve, reject"],
        ),
        (
            &["emergency", "list", "--status", "voting,pending"],
            &["pending", "voting, active, rejected, expired, closed"],
        ),
        (
            &[
                "emergency",
                "declare",
                "gallium",
                "--shortfall",
                "1",
                "--release",
                "1",
                "--justification",
                "x",
                "--voting-hours",
                "0",
            ],
            &["--voting-hours"],
        ),
        (
            &[
                "emergency",
                "fulfil",
                "c",
                "p",
                "1",
                "--delivered-at",
                "soon",
            ],
            &["--delivered-at"],
        ),
    ];
    for (args, words) in refusals {
        let err = failed(&orex_with(nowhere, args));
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} in {err}");
        }
        assert!(!err.contains("bundle.toml"), "{args:?} connected: {err}");
    }
    // Figures and a refusal at once, or half the figures: clap says no.
    for args in [
        &[
            "stockpile",
            "report",
            "gallium",
            "--refuse",
            "no",
            "--stockpile",
            "1",
        ][..],
        &["stockpile", "report", "gallium", "--stockpile", "1"][..],
        &["stockpile", "report", "gallium"][..],
    ] {
        failed(&orex_with(nowhere, args));
    }

    let stack = Stack::spawn().await;
    let err = failed(&orex(
        &stack,
        "us-cole",
        &[
            "emergency",
            "declare",
            "gallium",
            "--shortfall",
            "12",
            "--release",
            "0",
            "--justification",
            "a shortage",
            "--voting-hours",
            "1",
        ],
    ));
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(err.contains("declaration.total_release_tonnes"), "{err}");
    let err = failed(&orex(
        &stack,
        "us-cole",
        &[
            "emergency",
            "declare",
            "gallium",
            "--shortfall",
            "12",
            "--release",
            "40",
            "--justification",
            "a shortage",
            "--voting-hours",
            "1000",
        ],
    ));
    assert!(err.contains("declaration.voting_deadline"), "{err}");
    let err = failed(&orex(
        &stack,
        "us-cole",
        &[
            "stockpile",
            "report",
            "gallium",
            "--refuse",
            "no",
            "--marking",
            "red",
        ],
    ));
    assert!(err.contains("content.marking"), "{err}");
    let err = failed(&orex(
        &stack,
        "us-cole",
        &["emergency", "pledge", "not-a-case", "1"],
    ));
    assert!(err.contains("case_id"), "{err}");
    // An analyst reads, but declares nothing.
    let err = failed(&orex(
        &stack,
        "us-ana",
        &[
            "emergency",
            "declare",
            "gallium",
            "--shortfall",
            "12",
            "--release",
            "40",
            "--justification",
            "a shortage",
            "--voting-hours",
            "1",
        ],
    ));
    assert!(err.contains("PermissionDenied"), "{err}");
    let listed = ok(&orex(&stack, "us-ana", &["emergency", "list"]));
    assert!(
        listed.contains("(no cases match)"),
        "nothing was declared: {listed}"
    );
    let listed = ok(&orex(&stack, "us-ana", &["stockpile", "list"]));
    assert!(
        listed.contains("(no stockpiles match)"),
        "nothing was stored: {listed}"
    );
    stack.stop().await;
}
