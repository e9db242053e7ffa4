//! Load shedding: bounds on the calls in flight at once, over all members and
//! per member. A call above either bound is refused at once with
//! RESOURCE_EXHAUSTED and a retry hint, instead of queueing behind the calls
//! already admitted — so admitted calls keep their latency under overload,
//! and one member's burst cannot take the whole gateway's capacity.
//!
//! Open streams are not counted here: they last long and are bounded by the
//! policy's `open_streams`.
//!
//! Shed calls are recorded, but not one record each: under overload that
//! would make the access log — the gateway's costliest step — do as much work
//! for refused calls as for admitted ones, and shedding would shed nothing.
//! Instead they are tallied per member, certificate and method, and the door
//! writes one DENY record per tally every [`SHED_RECORD_INTERVAL`] (and at
//! shutdown) with the count and the time span. Calls refused by a rate limit
//! are tallied the same way, for the same reason: a flood from one
//! certificate must not fill the log every member shares.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::LoadConfig;

/// The retry hint a shed call carries: long enough for in-flight calls to
/// finish, short enough that a retrying client loses little.
pub const RETRY_AFTER: Duration = Duration::from_millis(50);

/// How often tallies of shed calls become access records.
pub const SHED_RECORD_INTERVAL: Duration = Duration::from_secs(1);

/// Refused calls of one member, certificate and method since the last record.
#[derive(Debug, Clone)]
pub struct ShedTally {
    /// The certificate's member ("" if it names none).
    pub member: String,
    /// SHA-256 of the certificate, hex ("" if none was presented).
    pub certificate_fingerprint: String,
    /// The method called.
    pub method: String,
    /// How many calls were shed.
    pub count: u64,
    /// When the first was shed.
    pub first: std::time::SystemTime,
    /// When the last was shed.
    pub last: std::time::SystemTime,
    /// Why the last one was refused (a bound of `[load]`, a rate limit).
    pub refusal: crate::error::GatewayError,
}

type TallyKey = (String, String, String);

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
    shed: Mutex<HashMap<TallyKey, ShedTally>>,
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
            shed: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one call refused without a record of its own: shed, or over
    /// a rate limit.
    pub fn note_shed(
        &self,
        member: &str,
        certificate_fingerprint: &str,
        method: &str,
        refusal: crate::error::GatewayError,
    ) {
        // Every shed or rate-limited call passes here once: count it here
        // (the tallies become statuses again when they are recorded).
        match &refusal {
            crate::error::GatewayError::RateLimited { .. } => {
                orex_kit::metrics::global().rejected("rate_limited")
            }
            crate::error::GatewayError::Overloaded { .. } => {
                orex_kit::metrics::global().rejected("overloaded")
            }
            _ => {}
        }
        let now = std::time::SystemTime::now();
        let mut shed = self.shed.lock().unwrap_or_else(|e| e.into_inner());
        let key = (
            member.to_owned(),
            certificate_fingerprint.to_owned(),
            method.to_owned(),
        );
        let tally = shed.entry(key).or_insert_with(|| ShedTally {
            member: member.to_owned(),
            certificate_fingerprint: certificate_fingerprint.to_owned(),
            method: method.to_owned(),
            count: 0,
            first: now,
            last: now,
            refusal: refusal.clone(),
        });
        tally.count += 1;
        tally.last = now;
        tally.refusal = refusal;
    }

    /// The tallies since the last call, emptied.
    pub fn take_shed(&self) -> Vec<ShedTally> {
        let mut shed = self.shed.lock().unwrap_or_else(|e| e.into_inner());
        let mut tallies: Vec<ShedTally> = shed.drain().map(|(_, t)| t).collect();
        tallies.sort_by_key(|t| t.first);
        tallies
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
                        // Only counters nobody holds: a slot, or a caller
                        // that has cloned it and not yet counted itself in.
                        members.retain(|_, c| Arc::strong_count(c) > 1);
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
    fn shed_calls_are_tallied_per_member_certificate_and_method() {
        let load = in_flight(1, 1);
        let shed = |bound| crate::error::GatewayError::Overloaded { bound };
        for _ in 0..3 {
            load.note_shed("US", "aa", "/m/A", shed(Bound::Member(1)));
        }
        load.note_shed("US", "aa", "/m/B", shed(Bound::Total(1)));
        let tallies = load.take_shed();
        let counts: Vec<(&str, u64)> = tallies
            .iter()
            .map(|t| (t.method.as_str(), t.count))
            .collect();
        assert_eq!(counts.len(), 2);
        assert!(counts.contains(&("/m/A", 3)) && counts.contains(&("/m/B", 1)));
        assert!(load.take_shed().is_empty(), "taken once");
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
