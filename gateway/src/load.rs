//! Load shedding: bounds on the calls in flight at once, over all members and
//! per member. A call above either bound is refused at once with
//! RESOURCE_EXHAUSTED and a retry hint, instead of queueing behind the calls
//! already admitted — so admitted calls keep their latency under overload,
//! and one member's burst cannot take the whole gateway's capacity.
//!
//! Open streams are not counted here: they last long and are bounded by the
//! policy's `open_streams`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::LoadConfig;

/// The retry hint a shed call carries: long enough for in-flight calls to
/// finish, short enough that a retrying client loses little.
pub const RETRY_AFTER: Duration = Duration::from_millis(50);

/// Which bound refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The gateway's total.
    Total(u32),
    /// The member's own.
    Member(u32),
}

/// Counts calls in flight.
#[derive(Debug)]
pub struct InFlight {
    config: LoadConfig,
    total: Arc<AtomicU32>,
    members: Mutex<HashMap<String, Arc<AtomicU32>>>,
}

/// Held while an admitted call is in flight; dropping it frees its place.
#[derive(Debug)]
pub struct Slot {
    total: Arc<AtomicU32>,
    member: Arc<AtomicU32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.member.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one place in `counter` unless it already holds `cap`.
fn take(counter: &AtomicU32, cap: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok()
}

impl InFlight {
    /// Counters bounded by `config`.
    pub fn new(config: LoadConfig) -> Self {
        Self {
            config,
            total: Arc::new(AtomicU32::new(0)),
            members: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one more call of `member` (its certificate's member, or a
    /// per-certificate key for other certificates), or says which bound is full.
    pub fn admit(&self, member: &str) -> Result<Slot, Bound> {
        let counter = {
            let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
            match members.get(member) {
                Some(c) => c.clone(),
                None => {
                    // Forget idle keys so certificates that come and go do
                    // not grow the map without bound.
                    if members.len() >= 10_000 {
                        members.retain(|_, c| c.load(Ordering::Acquire) > 0);
                    }
                    members
                        .entry(member.to_owned())
                        .or_insert_with(|| Arc::new(AtomicU32::new(0)))
                        .clone()
                }
            }
        };
        if !take(&counter, self.config.max_in_flight_per_member) {
            return Err(Bound::Member(self.config.max_in_flight_per_member));
        }
        if !take(&self.total, self.config.max_in_flight) {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err(Bound::Total(self.config.max_in_flight));
        }
        Ok(Slot {
            total: self.total.clone(),
            member: counter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(total: u32, per_member: u32) -> InFlight {
        InFlight::new(LoadConfig {
            max_in_flight: total,
            max_in_flight_per_member: per_member,
        })
    }

    #[test]
    fn a_member_over_its_bound_is_refused_while_others_are_admitted() {
        let load = in_flight(10, 2);
        let a1 = load.admit("US").unwrap();
        let _a2 = load.admit("US").unwrap();
        assert_eq!(load.admit("US").unwrap_err(), Bound::Member(2));
        let _b = load.admit("JP").expect("another member still gets in");
        drop(a1);
        load.admit("US").expect("a finished call frees its place");
    }

    #[test]
    fn the_total_bound_holds_over_all_members() {
        let load = in_flight(3, 2);
        let _held: Vec<Slot> = ["US", "US", "JP"]
            .iter()
            .map(|m| load.admit(m).unwrap())
            .collect();
        assert_eq!(load.admit("DE").unwrap_err(), Bound::Total(3));
        // A refusal by the total does not keep the member's place.
        assert_eq!(
            load.members.lock().unwrap()["DE"].load(Ordering::Acquire),
            0
        );
    }
}
