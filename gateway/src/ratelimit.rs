//! Per-member rate limits: one token bucket per member and class of method
//! (read, write, stream), sized by the policy in force. One member exhausting
//! its bucket never slows another. Buckets outlive policy reloads; a bucket
//! is replaced only when its member's rate for that class changes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use orex_membership::{MethodClass, Partnership, Rate};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Bucket = (Rate, Arc<DefaultDirectRateLimiter>);

/// Buckets kept before those of non-member certificates are dropped.
const MAX_BUCKETS: usize = 10_000;

/// Token buckets for every member, created on first use, and the count of
/// each member's open streams.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<(String, MethodClass), Bucket>>,
    streams: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    clock: DefaultClock,
}

/// Held while a stream is open; dropping it frees the member's slot.
#[derive(Debug)]
pub struct StreamSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// The class of a method, by its name.
pub fn class_of(method: &str) -> MethodClass {
    let name = method.rsplit('/').next().unwrap_or(method);
    if name.starts_with("Subscribe") {
        MethodClass::Stream
    } else if ["Get", "List", "Query", "Run"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        // `Run` is the risk service's RunScenario: it computes and stores nothing.
        MethodClass::Read
    } else {
        MethodClass::Write
    }
}

impl Limiter {
    /// Takes one call from `key`'s bucket for `class`, sized by the rates in
    /// `partnership`; `Err` carries how long to wait before retrying. `key`
    /// is a member code, or `cert:<fingerprint>` for a certificate without
    /// one; a key that is not a member of the partnership gets the
    /// `unidentified` rates, which are never unlimited.
    pub fn check(
        &self,
        partnership: &Partnership,
        key: &str,
        class: MethodClass,
    ) -> Result<(), Duration> {
        let limits = partnership.rate_limits();
        let rate = if partnership.member(key).is_some() {
            match limits.rate(key, class) {
                Some(rate) => rate,
                None => return Ok(()),
            }
        } else {
            limits.unidentified_rate(class)
        };
        let member = key;
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            // Certificates without a member come and go (each is a key):
            // past this many buckets theirs are forgotten, members' kept.
            if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&(member.to_owned(), class)) {
                buckets.retain(|(k, _), _| partnership.member(k).is_some());
            }
            let entry = buckets
                .entry((member.to_owned(), class))
                .or_insert_with(|| (rate, new_bucket(rate)));
            if entry.0 != rate {
                *entry = (rate, new_bucket(rate));
            }
            entry.1.clone()
        };
        bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

impl Limiter {
    /// Takes one of `member`'s open-stream slots, or says the cap.
    pub fn open_stream(&self, partnership: &Partnership, member: &str) -> Result<StreamSlot, u32> {
        let Some(cap) = partnership.rate_limits().open_streams(member) else {
            return Ok(StreamSlot(None));
        };
        let semaphore = {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let entry = streams
                .entry(member.to_owned())
                .or_insert_with(|| (cap, Arc::new(Semaphore::new(cap as usize))));
            // A changed cap starts a fresh count; streams open under the old
            // cap keep their slots until they end.
            if entry.0 != cap {
                *entry = (cap, Arc::new(Semaphore::new(cap as usize)));
            }
            entry.1.clone()
        };
        semaphore
            .try_acquire_owned()
            .map(|p| StreamSlot(Some(p)))
            .map_err(|_| cap)
    }
}

fn new_bucket(rate: Rate) -> Arc<DefaultDirectRateLimiter> {
    let per_minute = NonZeroU32::new(rate.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(
        Quota::per_minute(per_minute).allow_burst(burst),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_classified_by_verb() {
        assert_eq!(
            class_of("/orex.sharing.v1.SharingService/GetReport"),
            MethodClass::Read
        );
        assert_eq!(
            class_of("/orex.audit.v1.AuditService/QueryAccessRecords"),
            MethodClass::Read
        );
        assert_eq!(
            class_of("/orex.sharing.v1.SharingService/PublishReport"),
            MethodClass::Write
        );
        assert_eq!(
            class_of("/orex.sharing.v1.SharingService/SubscribeReports"),
            MethodClass::Stream
        );
    }
}
