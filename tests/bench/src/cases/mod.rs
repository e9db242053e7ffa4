//! The benchmark cases, one module each, and what they share in a run.

use std::sync::Mutex;
use std::time::Duration;

use clap::ValueEnum;

use crate::report::Outcome;

pub(crate) mod delivery;
pub(crate) mod fanout;
pub(crate) mod get;
pub(crate) mod half;
pub(crate) mod idle;
pub(crate) mod memory;
pub(crate) mod overload;
pub(crate) mod publish;
pub(crate) mod slow_readers;
pub(crate) mod verify;

/// A case, by its command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Case {
    /// Publish → delivery to one subscriber (gateway vs direct).
    Delivery,
    /// 200 subscribers, 100 reports/s.
    Fanout,
    /// 1,000 subscribers, 50 reports/s.
    #[value(name = "fanout-1000")]
    Fanout1000,
    /// Other members' latency with and without 100 never-reading streams.
    SlowReaders,
    /// GetReport throughput, gateway vs direct, concurrency 64 and 1.
    Get,
    /// Added latency at half the gateway's peak (open loop).
    LatencyAtHalf,
    /// 4× the gateway's peak offered (open loop) vs at peak.
    Overload,
    /// Durable publishing, gateway vs direct vs raw sled.
    Publish,
    /// `orex audit verify` on a large log.
    Verify,
    /// Gateway RSS per idle subscriber (separate processes).
    IdleSubscribers,
    /// Gateway RSS after many calls vs after few (separate processes).
    Memory,
}

impl Case {
    /// Every case, in the order `all` runs them.
    pub(crate) const ALL: [Case; 11] = [
        Case::Delivery,
        Case::Fanout,
        Case::Fanout1000,
        Case::SlowReaders,
        Case::Get,
        Case::LatencyAtHalf,
        Case::Overload,
        Case::Publish,
        Case::Verify,
        Case::IdleSubscribers,
        Case::Memory,
    ];

    /// The command-line name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Case::Delivery => "delivery",
            Case::Fanout => "fanout",
            Case::Fanout1000 => "fanout-1000",
            Case::SlowReaders => "slow-readers",
            Case::Get => "get",
            Case::LatencyAtHalf => "latency-at-half",
            Case::Overload => "overload",
            Case::Publish => "publish",
            Case::Verify => "verify",
            Case::IdleSubscribers => "idle-subscribers",
            Case::Memory => "memory",
        }
    }

    /// The hard wall-time cap: past it the case is abandoned and fails.
    pub(crate) fn cap(self, quick: bool) -> Duration {
        let (full, quick_s) = match self {
            Case::Delivery => (180, 20),
            Case::Fanout => (150, 20),
            Case::Fanout1000 => (240, 30),
            Case::SlowReaders => (240, 30),
            Case::Get => (150, 20),
            Case::LatencyAtHalf => (150, 20),
            Case::Overload => (180, 20),
            Case::Publish => (150, 20),
            Case::Verify => (900, 40),
            Case::IdleSubscribers => (300, 40),
            Case::Memory => (900, 40),
        };
        Duration::from_secs(if quick { quick_s } else { full })
    }

    /// Whether the case runs the release server binaries as child processes.
    pub(crate) fn needs_binaries(self) -> bool {
        matches!(
            self,
            Case::Overload | Case::Verify | Case::IdleSubscribers | Case::Memory
        )
    }

    /// Runs the case.
    pub(crate) async fn run(self, ctx: &Ctx) -> Outcome {
        match self {
            Case::Delivery => delivery::run(ctx).await,
            Case::Fanout => fanout::run(ctx, fanout::Shape::FANOUT).await,
            Case::Fanout1000 => fanout::run(ctx, fanout::Shape::FANOUT_1000).await,
            Case::SlowReaders => slow_readers::run(ctx).await,
            Case::Get => get::run(ctx).await,
            Case::LatencyAtHalf => half::run(ctx).await,
            Case::Overload => overload::run(ctx).await,
            Case::Publish => publish::run(ctx).await,
            Case::Verify => verify::run(ctx).await,
            Case::IdleSubscribers => idle::run(ctx).await,
            Case::Memory => memory::run(ctx).await,
        }
    }
}

/// What cases share within one run.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Tiny counts and correctness checks only.
    pub(crate) quick: bool,
    /// Where the release binaries are (cases that need them).
    pub(crate) bins: Option<crate::procs::Binaries>,
    /// The gateway's GetReport peak (calls/s at concurrency 64), once a case
    /// has measured it; later cases reuse it instead of measuring again.
    pub(crate) gateway_peak: Mutex<Option<Peak>>,
}

/// The gateway's peak as a closed loop found it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peak {
    /// Successful calls per second.
    pub(crate) rate: f64,
    /// p99 latency at that rate.
    pub(crate) p99: Duration,
}

impl Ctx {
    /// Picks the quick or the full value.
    pub(crate) fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }
}
