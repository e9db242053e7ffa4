//! CPU pinning, for cases where the load generator must not take the
//! servers' CPU: on a 2-core machine a generator offering four times the
//! gateway's peak from the same cores measures its own queueing, not the
//! gateway's. Every thread of a process is pinned (threads started later
//! inherit their creator's set).

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// Pins every thread of process `pid` to `cpus`.
pub(crate) fn pin_process(pid: u32, cpus: &[usize]) -> Result<(), String> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| format!("CPU {c}: {e}"))?;
    }
    pin_set(pid, &set)
}

fn pin_set(pid: u32, set: &CpuSet) -> Result<(), String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("threads of {pid}: {e}"))?;
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // A thread that ended since the listing is not an error.
        match sched_setaffinity(Pid::from_raw(tid), set) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("pin thread {tid} of {pid}: {e}")),
        }
    }
    Ok(())
}

/// This process pinned to some CPUs until dropped, then to its former set.
#[derive(Debug)]
pub(crate) struct SelfPinned {
    before: CpuSet,
}

impl SelfPinned {
    /// Pins every thread of this process to `cpus`.
    pub(crate) fn to(cpus: &[usize]) -> Result<SelfPinned, String> {
        let before = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("affinity: {e}"))?;
        pin_process(std::process::id(), cpus)?;
        Ok(SelfPinned { before })
    }
}

impl Drop for SelfPinned {
    fn drop(&mut self) {
        let _ = pin_set(std::process::id(), &self.before);
    }
}
