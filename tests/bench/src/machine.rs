//! The header every run prints: the machine, the kernel and the commit
//! measured, so a result can be traced to what produced it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate lives in `tests/bench`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Number of CPUs available to this process.
pub(crate) fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".into())
}

fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown memory".into(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        )
}

/// `git rev-parse --short HEAD` of the workspace, marked `+dirty` when the
/// working tree has changes (the numbers then belong to uncommitted code).
pub(crate) fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{head}+dirty") } else { head }
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// The run's header lines.
pub(crate) fn header(mode: &str) -> String {
    format!(
        "orex-bench ({mode} mode)\nmachine: {} CPUs, {}, {} RAM, Linux {}\ncommit:  {}\nload:    127.0.0.1 only; every case bounded in requests and wall time",
        nproc(),
        cpu_model(),
        memory(),
        kernel(),
        commit()
    )
}
