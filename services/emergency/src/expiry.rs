//! Expires cases whose voting deadline passes without the rule being met —
//! at the deadline, whether or not a call arrives then, and at start for a
//! deadline that passed while the service was down. One task per service.

use std::sync::Arc;
use std::time::Duration;

use orex_kit::Shutdown;
use orex_proto::emergency::v1::CaseStatus;
use tokio::sync::Notify;

use crate::service::Emergency;
use crate::store::EmergencyStore;

/// The longest sleep between scans, so a clock change cannot postpone an
/// expiry for long.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The wait before retrying after a failed expiry (the store may be
/// unavailable for a moment).
const RETRY: Duration = Duration::from_secs(1);

/// Runs until `shutdown`: expires every case due, sleeps until the next
/// deadline (or until a declaration wakes it), and again.
pub async fn run(
    service: Emergency,
    store: EmergencyStore,
    deadlines: Arc<Notify>,
    shutdown: Shutdown,
) {
    loop {
        let sleep = match expire_due(&service, &store).await {
            Ok(next) => next.unwrap_or(MAX_SLEEP).min(MAX_SLEEP),
            Err(e) => {
                tracing::error!(error = %e, "could not expire cases; retrying");
                RETRY
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = deadlines.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Expires every VOTING case whose deadline has passed; returns how long
/// until the next deadline, if any case is still voting.
async fn expire_due(
    service: &Emergency,
    store: &EmergencyStore,
) -> Result<Option<Duration>, crate::error::EmergencyError> {
    let now = orex_kit::fields::now_nanos();
    let mut next: Option<i128> = None;
    let mut failed = false;
    for id in store.case_ids_newest_first(None) {
        let id = id?;
        let Some(c) = store.case(&id)? else { continue };
        if c.status() != CaseStatus::Voting {
            continue;
        }
        let deadline = c
            .declaration
            .as_ref()
            .and_then(|d| d.voting_deadline.as_ref())
            .map(orex_kit::fields::nanos)
            .unwrap_or_default();
        if deadline <= now {
            // One case that cannot be expired now must not hold up the
            // others: it is tried again soon.
            match service.expire(&id).await {
                Ok(()) => tracing::info!(case = %id, "voting deadline passed: case expired"),
                Err(e) => {
                    tracing::error!(case = %id, error = %e, "could not expire a case; trying again");
                    failed = true;
                }
            }
        } else {
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
    }
    if failed {
        return Ok(Some(RETRY));
    }
    Ok(next.map(|n| {
        let nanos = u64::try_from(n - now).unwrap_or(u64::MAX);
        // Just past the deadline, so the case is due when the task wakes.
        Duration::from_nanos(nanos) + Duration::from_millis(1)
    }))
}
