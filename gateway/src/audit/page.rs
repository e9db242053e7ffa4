//! Byte budgets for `AuditService` answers, and the chunked log reads that
//! fill them.
//!
//! A record's size depends on what the call named: a stream's OUTCOME lists up
//! to 1,000 report ids, so a page of 1,000 such records is ~40 MB, ten times
//! gRPC's default 4 MiB decode limit. Every answer therefore ends at
//! [`PAGE_BYTES`] of encoded protobuf, whatever its count limit, and always
//! holds at least one item so a client paging through the log always makes
//! progress. The log is read in chunks sized from the records already seen,
//! so the gateway never holds much more than one answer in memory either.

use std::collections::VecDeque;

use orex_proto::audit::v1::AccessRecord;
use prost::Message;

use super::{AuditError, AuditLog};

/// Most encoded bytes of one `AuditService` answer (1 MiB): a quarter of
/// gRPC's default 4 MiB decode limit, so any client decodes it with default
/// settings. An answer ends before the item that would cross it, except that
/// an answer always holds at least one item.
pub const PAGE_BYTES: usize = 1 << 20;

/// The decode limit `orex` sets on its audit client: the budget with
/// headroom, so that a single record larger than the budget (served alone;
/// none that the gateway writes comes near it) still decodes.
pub const CLIENT_DECODE_LIMIT: usize = 4 * PAGE_BYTES;

/// Most records one `GetRecordRange` call may ask for. The byte budget, not
/// this count, usually ends a page: ~1,500 full or ~4,800 redacted records
/// of today's typical size fit in [`PAGE_BYTES`].
pub const MAX_RANGE_RECORDS: u64 = 10_000;

/// Bytes of an answer kept for its fields other than the list (a page token,
/// the log size), so the whole answer stays within [`PAGE_BYTES`].
const RESERVED_BYTES: usize = 1024;

/// About how many bytes of records one chunked read of the log returns.
const CHUNK_BYTES: u64 = 256 * 1024;

/// Records in the first chunk, before any size is known.
const FIRST_CHUNK: u64 = 32;

/// Most records in one chunk, however small they are.
const MAX_CHUNK: u64 = 2048;

/// The bytes `item` adds to an answer's list: every list in the audit
/// answers is field 1, so a one-byte key, the length as a varint, then the
/// message. Clients use it to size their requests to the budget.
pub fn framed_len<T: Message>(item: &T) -> usize {
    prost::encoding::message::encoded_len(1, item)
}

/// An answer's list being filled under the byte budget.
#[derive(Debug)]
pub(crate) struct Page<T> {
    items: Vec<T>,
    bytes: usize,
    count_limit: usize,
}

impl<T: Message> Page<T> {
    /// An empty page of at most `count_limit` items and [`PAGE_BYTES`].
    pub(crate) fn new(count_limit: u64) -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
            count_limit: usize::try_from(count_limit).unwrap_or(usize::MAX),
        }
    }

    /// Adds `item` if it fits in count and bytes, or if the page is empty
    /// (progress is guaranteed even for an item over the budget). Gives the
    /// item back when the page is full.
    pub(crate) fn push(&mut self, item: T) -> Result<(), T> {
        let framed = framed_len(&item);
        let full = self.items.len() >= self.count_limit
            || (!self.items.is_empty() && self.bytes + framed > PAGE_BYTES - RESERVED_BYTES);
        if full {
            return Err(item);
        }
        self.bytes += framed;
        self.items.push(item);
        Ok(())
    }

    /// True when no further item can be added.
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() >= self.count_limit
    }

    /// The items, in the order added.
    pub(crate) fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// The records at positions `[start, end)` of the log, read in chunks of
/// about [`CHUNK_BYTES`]. Each comes with its position: the cursor to resume
/// from is the position after the last record used. Positions count records
/// as stored, not the index a record claims, so a tampered log (a record
/// removed or moved) can never make a scan go back or stall; `orex audit
/// verify` reports the tampering itself.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    log: &'a AuditLog,
    next: u64,
    end: u64,
    chunk: VecDeque<AccessRecord>,
    /// Records measured (a sample) and their encoded bytes.
    seen_records: u64,
    seen_bytes: u64,
    failed: bool,
}

impl<'a> Scan<'a> {
    /// Scans `[start, end)` (clamped by the log to what is durable).
    pub(crate) fn new(log: &'a AuditLog, start: u64, end: u64) -> Self {
        Self {
            log,
            next: start,
            end,
            chunk: VecDeque::new(),
            seen_records: 0,
            seen_bytes: 0,
            failed: false,
        }
    }

    /// Records in the next chunk: as many as fill [`CHUNK_BYTES`] at the
    /// average size sampled so far.
    fn chunk_len(&self) -> u64 {
        let wanted = match self.seen_bytes.checked_div(self.seen_records) {
            Some(average) => CHUNK_BYTES / average.max(1),
            None => FIRST_CHUNK,
        };
        wanted.clamp(1, MAX_CHUNK).min(self.end - self.next)
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(u64, AccessRecord), AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.chunk.is_empty() {
            if self.next >= self.end {
                return None;
            }
            let start = self.next;
            match self.log.range(start, start + self.chunk_len()) {
                Ok(records) if records.is_empty() => return None,
                Ok(records) => self.chunk = records.into(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        let record = self.chunk.pop_front()?;
        let position = self.next;
        // A sample is enough to size chunks; measuring costs a walk of
        // the record.
        if position.is_multiple_of(8) || self.seen_records == 0 {
            self.seen_records += 1;
            self.seen_bytes += record.encoded_len() as u64;
        }
        self.next += 1;
        Some(Ok((position, record)))
    }
}

#[cfg(test)]
mod tests {
    use orex_proto::audit::v1::{AccessDecision, AccessRecordKind};

    use super::*;
    use crate::audit::log::seal_record;

    /// The largest record the gateway writes today: a stream's OUTCOME for
    /// the caller's member naming 1,000 delivered reports plus the request's
    /// own id, each at the 128-character limit above which ids are recorded
    /// as `sha256:<hex>` (71 characters), with the longest subject (256),
    /// token id (128) and a reason twice as long as the 512 bytes a status
    /// message is cut to.
    fn largest_possible_record() -> AccessRecord {
        let mut r = AccessRecord {
            index: u64::MAX,
            kind: AccessRecordKind::Outcome as i32,
            time: Some(prost_types::Timestamp {
                seconds: i64::MAX / 2,
                nanos: 999_999_999,
            }),
            member: "EU".into(),
            subject: "s".repeat(256),
            certificate_fingerprint: "f".repeat(64),
            token_id: "t".repeat(128),
            method: "/orex.sharing.v1.SharingService/SubscribeReports".into(),
            resource_ids: (0..1001).map(|i| format!("{i:0>128}")).collect(),
            decision: AccessDecision::Allow as i32,
            reason: "r".repeat(1024),
            grpc_status_code: Some(16),
            duration: Some(prost_types::Duration {
                seconds: i64::MAX / 2,
                nanos: 999_999_999,
            }),
            decision_index: Some(u64::MAX),
            prev_hash: super::super::log::ZERO_HASH.into(),
            resource_owner_members: vec!["EU".into()],
            ..Default::default()
        };
        seal_record(&mut r);
        r
    }

    #[test]
    fn the_largest_record_the_gateway_writes_fits_the_budget_many_times() {
        let bytes = largest_possible_record().encoded_len();
        assert!(bytes < PAGE_BYTES / 7, "{bytes} bytes");
    }

    #[test]
    fn a_page_ends_at_the_byte_budget_but_always_takes_one_item() {
        let big = largest_possible_record();
        let mut page = Page::new(1000);
        let mut added = 0;
        while page.push(big.clone()).is_ok() {
            added += 1;
        }
        assert!(added >= 7, "{added}");
        let encoded = orex_proto::audit::v1::GetRecordRangeResponse {
            records: page.into_items(),
            log_size: u64::MAX,
        }
        .encoded_len();
        assert!(encoded <= PAGE_BYTES, "{encoded}");

        let mut huge = big.clone();
        huge.resource_ids = vec!["x".repeat(2 * PAGE_BYTES)];
        let mut alone = Page::new(1000);
        assert!(alone.push(huge.clone()).is_ok(), "an empty page takes it");
        assert!(alone.push(big).is_err(), "and nothing after it");
    }

    #[test]
    fn a_page_also_ends_at_its_count() {
        let mut page = Page::new(2);
        assert!(page.push(AccessRecord::default()).is_ok());
        assert!(!page.is_full());
        assert!(page.push(AccessRecord::default()).is_ok());
        assert!(page.is_full());
        assert!(page.push(AccessRecord::default()).is_err());
    }
}
