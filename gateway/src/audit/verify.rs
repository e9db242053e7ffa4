//! Verification of a downloaded access log, trusting only the gateway's
//! public key: every content hash and chain link recomputed, every
//! checkpoint's signature, order and head checked. `orex audit verify` runs
//! this.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use orex_proto::audit::v1::{AccessRecord, Checkpoint};

use super::log::{ZERO_HASH, checkpoint_payload, content_hash, link_hash, redacted, rfc3339};

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Records checked.
    pub records: u64,
    /// Of which redacted (outside the auditor's scope: chain recomputed,
    /// contents not visible).
    pub redacted: u64,
    /// Checkpoints whose signature, order and head were checked.
    pub checkpoints: u64,
    /// Records after the newest checkpoint (not yet covered by a signature).
    pub unsigned: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// The first place where the log does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A record's index is not its position (one removed, added or moved).
    Index {
        /// Position in the download.
        position: u64,
        /// Index the record claims.
        claimed: u64,
    },
    /// A record's contents do not match its content hash.
    Hash {
        /// The record.
        index: u64,
    },
    /// A record does not point at the record before it, or its chain hash
    /// is not the hash of its link.
    Link {
        /// The record.
        index: u64,
    },
    /// A redacted copy carries contents (a redaction may only hide).
    Redaction {
        /// The record.
        index: u64,
    },
    /// A checkpoint's signature does not verify with the trusted key.
    Signature {
        /// The checkpoint's log size.
        log_size: u64,
    },
    /// A checkpoint's payload does not match its fields.
    Payload {
        /// The checkpoint's log size.
        log_size: u64,
    },
    /// Checkpoints are not strictly growing in size and time (a reset or
    /// forked log).
    Order {
        /// The checkpoint's log size.
        log_size: u64,
    },
    /// A signed head does not match the records.
    Head {
        /// The checkpoint's log size.
        log_size: u64,
    },
    /// A checkpoint covers more records than were downloaded.
    Missing {
        /// The checkpoint's log size.
        log_size: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Index { position, claimed } => write!(
                f,
                "record at position {position} claims index {claimed}: records were removed, inserted or reordered"
            ),
            Problem::Hash { index } => write!(
                f,
                "record {index} was changed: its contents do not match its hash"
            ),
            Problem::Link { index } => write!(
                f,
                "record {index} does not follow record {}: the chain is broken here",
                index.saturating_sub(1)
            ),
            Problem::Redaction { index } => {
                write!(f, "record {index} is marked redacted but carries contents")
            }
            Problem::Signature { log_size } => write!(
                f,
                "checkpoint at size {log_size} is not signed by the trusted key"
            ),
            Problem::Payload { log_size } => write!(
                f,
                "checkpoint at size {log_size} signs different content than it shows"
            ),
            Problem::Order { log_size } => write!(
                f,
                "checkpoint at size {log_size} does not follow the one before: the log was reset or forked"
            ),
            Problem::Head { log_size } => write!(
                f,
                "checkpoint at size {log_size} signed a different head: records before {log_size} were changed"
            ),
            Problem::Missing { log_size } => write!(
                f,
                "checkpoint at size {log_size} covers records that were not served: the log was truncated"
            ),
        }
    }
}

/// A checkpoint an auditor verified once and keeps, so a later download can
/// be checked against it: a gateway that truncates or rewrites its log and
/// deletes the checkpoints that would betray it still cannot reproduce this
/// head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptCheckpoint {
    /// The log's name.
    pub log_id: String,
    /// Records the checkpoint covered.
    pub log_size: u64,
    /// The hash of record `log_size - 1`.
    pub head_hash: String,
}

impl From<&Checkpoint> for KeptCheckpoint {
    fn from(c: &Checkpoint) -> Self {
        Self {
            log_id: c.log_id.clone(),
            log_size: c.log_size,
            head_hash: c.head_hash.clone(),
        }
    }
}

/// True when `records` (already verified as a chain) still hold the head
/// an auditor kept, and the served checkpoints are of the same log.
pub fn still_holds(
    records: &[AccessRecord],
    checkpoints: &[Checkpoint],
    kept: &KeptCheckpoint,
) -> bool {
    let same_log = checkpoints.iter().all(|c| c.log_id == kept.log_id);
    let head = kept
        .log_size
        .checked_sub(1)
        .and_then(|i| records.get(i as usize))
        .map(|r| r.hash.as_str());
    same_log && (kept.log_size == 0 || head == Some(kept.head_hash.as_str()))
}

/// True when a redacted copy holds nothing but its index and hashes.
fn is_bare(r: &AccessRecord) -> bool {
    *r == redacted(r)
}

/// Verifies `records` (indices 0.. in order) against `checkpoints` with the
/// raw Ed25519 `public_key`.
pub fn verify(
    records: &[AccessRecord],
    checkpoints: &[Checkpoint],
    public_key: &[u8],
) -> Verification {
    let mut v = Verification {
        records: records.len() as u64,
        redacted: 0,
        checkpoints: 0,
        unsigned: records.len() as u64,
        problem: None,
    };
    let mut prev = ZERO_HASH.to_owned();
    for (position, r) in records.iter().enumerate() {
        let position = position as u64;
        let problem = if r.index != position {
            Some(Problem::Index {
                position,
                claimed: r.index,
            })
        } else if r.redacted && !is_bare(r) {
            Some(Problem::Redaction { index: r.index })
        } else if !r.redacted && content_hash(r) != r.content_hash {
            Some(Problem::Hash { index: r.index })
        } else if r.prev_hash != prev
            || link_hash(&r.prev_hash, &r.content_hash).as_deref() != Some(r.hash.as_str())
        {
            Some(Problem::Link { index: r.index })
        } else {
            None
        };
        if problem.is_some() {
            v.problem = problem;
            return v;
        }
        v.redacted += u64::from(r.redacted);
        prev = r.hash.clone();
    }
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    let mut last: Option<&Checkpoint> = None;
    for c in checkpoints {
        let signed_at = c.signed_at.as_ref().map(rfc3339).unwrap_or_default();
        let expected = checkpoint_payload(&c.log_id, c.log_size, &c.head_hash, &signed_at);
        let problem = if expected != c.signed_payload {
            Some(Problem::Payload {
                log_size: c.log_size,
            })
        } else if key.verify(&c.signed_payload, &c.signature).is_err() {
            Some(Problem::Signature {
                log_size: c.log_size,
            })
        } else if last.is_some_and(|l| {
            l.log_size >= c.log_size
                || l.log_id != c.log_id
                || l.signed_at.map(|t| t.seconds) > c.signed_at.map(|t| t.seconds)
        }) {
            Some(Problem::Order {
                log_size: c.log_size,
            })
        } else {
            match c.log_size.checked_sub(1).map(|i| records.get(i as usize)) {
                None if c.head_hash == ZERO_HASH => None,
                Some(Some(head)) if head.hash == c.head_hash => None,
                Some(Some(_)) | None => Some(Problem::Head {
                    log_size: c.log_size,
                }),
                Some(None) => Some(Problem::Missing {
                    log_size: c.log_size,
                }),
            }
        };
        if problem.is_some() {
            v.problem = problem;
            return v;
        }
        v.checkpoints += 1;
        v.unsigned = v.records.saturating_sub(c.log_size);
        last = Some(c);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::log::seal_record;

    fn chain(n: u64) -> Vec<AccessRecord> {
        let mut prev = ZERO_HASH.to_owned();
        (0..n)
            .map(|index| {
                let mut r = AccessRecord {
                    index,
                    member: if index % 2 == 0 { "US" } else { "JP" }.into(),
                    subject: format!("p{index}"),
                    prev_hash: prev.clone(),
                    ..Default::default()
                };
                seal_record(&mut r);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn a_kept_head_catches_a_truncated_or_rewritten_log() {
        let records = chain(5);
        let kept = KeptCheckpoint {
            log_id: "orex-gateway/test".into(),
            log_size: 4,
            head_hash: records[3].hash.clone(),
        };
        assert!(still_holds(&records, &[], &kept));
        assert!(!still_holds(&records[..3], &[], &kept), "truncated");
        let mut rewritten = chain(5);
        rewritten[3].reason = "rewritten".into();
        seal_record(&mut rewritten[3]);
        assert!(!still_holds(&rewritten, &[], &kept), "rewritten");
    }

    #[test]
    fn redacted_copies_still_verify() {
        let mut records = chain(5);
        records[1] = redacted(&records[1]);
        records[3] = redacted(&records[3]);
        let v = verify(&records, &[], &[0; 32]);
        assert_eq!(v.problem, None);
        assert_eq!(v.redacted, 2);
    }

    #[test]
    fn a_redacted_copy_with_invented_contents_is_caught() {
        let mut records = chain(3);
        let mut forged = redacted(&records[1]);
        forged.member = "DE".into();
        forged.reason = "invented".into();
        records[1] = forged;
        assert_eq!(
            verify(&records, &[], &[0; 32]).problem,
            Some(Problem::Redaction { index: 1 })
        );
    }

    #[test]
    fn a_rewritten_record_cannot_hide_behind_a_redacted_neighbour() {
        let mut records = chain(4);
        records[1].reason = "rewritten".into();
        seal_record(&mut records[1]);
        // The attacker points the redacted neighbour at the new hash.
        let mut next = redacted(&records[2]);
        next.prev_hash = records[1].hash.clone();
        records[2] = next;
        assert_eq!(
            verify(&records, &[], &[0; 32]).problem,
            Some(Problem::Link { index: 2 })
        );
    }
}
