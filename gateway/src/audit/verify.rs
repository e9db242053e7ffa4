//! Verification of a downloaded access log, trusting only the gateway's
//! public key: every hash recomputed, every link followed, every checkpoint's
//! signature and head checked. `orex audit verify` runs this.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use orex_proto::audit::v1::{AccessRecord, Checkpoint};

use super::log::{ZERO_HASH, checkpoint_payload, record_hash, rfc3339};

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Records checked.
    pub records: u64,
    /// Of which redacted (outside the auditor's scope: linked, not recomputed).
    pub redacted: u64,
    /// Checkpoints whose signature and head were checked.
    pub checkpoints: u64,
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
    /// A record's stored hash is not the hash of its contents.
    Hash {
        /// The record.
        index: u64,
    },
    /// A record does not point at the record before it.
    Link {
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
                "record {index} was changed: its hash does not match its contents"
            ),
            Problem::Link { index } => write!(
                f,
                "record {index} does not follow record {}: the chain is broken here",
                index.saturating_sub(1)
            ),
            Problem::Signature { log_size } => write!(
                f,
                "checkpoint at size {log_size} is not signed by the trusted key"
            ),
            Problem::Payload { log_size } => {
                write!(
                    f,
                    "checkpoint at size {log_size} signs different content than it shows"
                )
            }
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
        problem: None,
    };
    let mut prev = ZERO_HASH.to_owned();
    for (position, r) in records.iter().enumerate() {
        let position = position as u64;
        if r.index != position {
            v.problem = Some(Problem::Index {
                position,
                claimed: r.index,
            });
            return v;
        }
        if r.prev_hash != prev {
            v.problem = Some(Problem::Link { index: r.index });
            return v;
        }
        if r.redacted {
            v.redacted += 1;
        } else if record_hash(r) != r.hash {
            v.problem = Some(Problem::Hash { index: r.index });
            return v;
        }
        prev = r.hash.clone();
    }
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    for c in checkpoints {
        let signed_at = c.signed_at.as_ref().map(rfc3339).unwrap_or_default();
        let expected = checkpoint_payload(&c.log_id, c.log_size, &c.head_hash, &signed_at);
        if expected != c.signed_payload {
            v.problem = Some(Problem::Payload {
                log_size: c.log_size,
            });
            return v;
        }
        if key.verify(&c.signed_payload, &c.signature).is_err() {
            v.problem = Some(Problem::Signature {
                log_size: c.log_size,
            });
            return v;
        }
        let Some(head) = c
            .log_size
            .checked_sub(1)
            .and_then(|i| records.get(i as usize))
        else {
            if c.log_size == 0 && c.head_hash == ZERO_HASH {
                v.checkpoints += 1;
                continue;
            }
            v.problem = Some(Problem::Missing {
                log_size: c.log_size,
            });
            return v;
        };
        if head.hash != c.head_hash {
            v.problem = Some(Problem::Head {
                log_size: c.log_size,
            });
            return v;
        }
        v.checkpoints += 1;
    }
    v
}
