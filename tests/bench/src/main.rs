//! `orex-bench`: the benchmark tool of issue 6.
//!
//! `cargo run --release -p orex-bench -- <case>… [--quick]` or `-- all
//! [--quick]`. Every case runs the real gateway and sharing service on
//! 127.0.0.1 (real mutual TLS, real sled) and prints absolute figures next
//! to a baseline measured in the same run, with the ratio and the issue's
//! target. Load is bounded in count and wall time; each case also has a hard
//! cap. `--quick` runs tiny counts and checks the answers (every delivery
//! exactly once, the expected statuses); the exit code is non-zero only for
//! a wrong answer or a case that did not finish — never for a timing.
//! See BENCHMARKS.md at the workspace root.

mod cases;
mod compat;
mod load;
mod machine;
mod pin;
mod procs;
mod report;
mod stack;
mod stats;
mod subs;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::{Parser, ValueEnum};

use crate::cases::{Case, Ctx};
use crate::report::Outcome;

/// Benchmarks of the orex gateway and sharing service on this machine.
#[derive(Debug, Parser)]
#[command(about, long_about = None)]
struct Args {
    /// Cases to run, or `all`: delivery, fanout, fanout-1000, slow-readers,
    /// get, latency-at-half, overload, publish, verify, idle-subscribers,
    /// memory.
    #[arg(required = true)]
    cases: Vec<String>,
    /// Tiny counts; checks that every case runs and answers correctly.
    #[arg(long)]
    quick: bool,
    /// Also print the results as a Markdown table.
    #[arg(long)]
    markdown: bool,
}

fn selected(names: &[String]) -> Result<Vec<Case>, String> {
    let mut out = Vec::new();
    for n in names {
        if n == "all" {
            out.extend(Case::ALL);
        } else {
            out.push(Case::from_str(n, true).map_err(|_| {
                let known: Vec<&str> = Case::ALL.iter().map(|c| c.name()).collect();
                format!("unknown case {n}; cases: all, {}", known.join(", "))
            })?);
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let cases = match selected(&args.cases) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("orex-bench: {e}");
            return ExitCode::from(2);
        }
    };
    orex_kit::install_crypto_provider();
    if std::env::var_os("RUST_LOG").is_some() {
        orex_kit::telemetry::init();
    }
    // A thousand subscribers on their own connections, both ends in or
    // under this process, need a few thousand descriptors.
    match rlimit::increase_nofile_limit(65_536) {
        Ok(n) if n < 8_192 => eprintln!(
            "orex-bench: open-file limit is {n}; the 1,000-connection cases may fail (ulimit -n 65536)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("orex-bench: could not raise the open-file limit: {e}"),
    }
    println!(
        "{}",
        machine::header(if args.quick { "quick" } else { "full" })
    );
    let mut failures = Vec::new();
    let bins = if cases.iter().any(|c| c.needs_binaries()) {
        let t = Instant::now();
        match procs::Binaries::prepare() {
            Ok(b) => {
                println!(
                    "binaries: {} (checked/built in {:.1} s, not counted in any case)",
                    b.dir.display(),
                    t.elapsed().as_secs_f64()
                );
                Some(b)
            }
            Err(e) => {
                failures.push(format!("release binaries: {e}"));
                None
            }
        }
    } else {
        None
    };
    let ctx = Arc::new(Ctx {
        quick: args.quick,
        bins,
        gateway_peak: Mutex::new(None),
    });
    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for case in cases {
        println!("\n== {} ==", case.name());
        println!("{}", report::header());
        let t = Instant::now();
        let cap = case.cap(args.quick);
        let task = {
            let ctx = ctx.clone();
            tokio::spawn(async move { case.run(&ctx).await })
        };
        let abort = task.abort_handle();
        let outcome = match tokio::time::timeout(cap, task).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                let mut o = Outcome::new(case.name());
                o.fail(format!("the case panicked: {e}"));
                o
            }
            Err(_) => {
                abort.abort();
                let mut o = Outcome::new(case.name());
                o.fail(format!("did not finish within its cap of {cap:?}"));
                o
            }
        };
        print!("{}", outcome.text());
        println!(
            "{:<16} took {:.1} s",
            case.name(),
            t.elapsed().as_secs_f64()
        );
        failures.extend(
            outcome
                .failures()
                .iter()
                .map(|f| format!("{}: {f}", case.name())),
        );
        outcomes.push(outcome);
    }
    if outcomes.len() > 1 {
        println!("\n== summary ==\n{}", report::header());
        for o in &outcomes {
            print!("{}", o.text());
        }
    }
    if args.markdown {
        println!("\n{}", report::MARKDOWN_HEADER);
        for o in &outcomes {
            print!("{}", o.markdown());
        }
    }
    println!(
        "\ntotal: {:.1} s for {} case(s)",
        started.elapsed().as_secs_f64(),
        outcomes.len()
    );
    if failures.is_empty() {
        println!("all answers correct");
        ExitCode::SUCCESS
    } else {
        println!("{} correctness failure(s):", failures.len());
        for f in &failures {
            println!("  {f}");
        }
        ExitCode::FAILURE
    }
}
