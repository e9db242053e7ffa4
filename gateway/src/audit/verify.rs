//! Verification of the access log, trusting only the gateway's public key:
//! every content hash and chain link recomputed, every checkpoint's
//! signature, order and head checked. `orex audit verify` runs this.
//!
//! [`Verifier`] is fed the log page by page while it downloads and keeps only
//! what the next record needs: the running head hash, the checkpoints fed but
//! not yet reached, and counters. Its memory is the same for ten records or
//! ten million; the caller bounds it further by feeding checkpoints only as
//! far ahead as the records it is about to feed (one page of checkpoints is
//! plenty). [`verify`] is the same check over a log already in memory.

use std::collections::VecDeque;

use aws_lc_rs::digest::{Context, SHA256, digest};
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use orex_proto::audit::v1::{AccessRecord, Checkpoint};
use prost::Message;

use super::log::{ZERO_HASH, checkpoint_payload, rfc3339};

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
    /// The newest checkpoint that verified, to keep for the next run.
    pub newest: Option<KeptCheckpoint>,
    /// Whether the log still holds the checkpoint the auditor kept from an
    /// earlier run ([`Verifier::keeping`]); `None` when none was given.
    pub kept: Option<bool>,
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

/// A checkpoint fed after the records it covers, so its head can no longer
/// be compared. Only a caller that breaks [`Verifier::add_checkpoint`]'s
/// rule causes it, never the log: a served checkpoint out of order is
/// [`Problem::Order`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint at size {log_size} was fed after {verified} records had been verified")]
pub struct LateCheckpoint {
    /// The checkpoint's log size.
    pub log_size: u64,
    /// Records verified when it was fed.
    pub verified: u64,
}

/// What the next checkpoint must follow.
#[derive(Debug)]
struct Previous {
    log_size: u64,
    log_id: String,
    signed_at: Option<i64>,
}

/// Progress of the check against a kept checkpoint.
#[derive(Debug)]
struct KeptCheck {
    kept: KeptCheckpoint,
    /// Every checkpoint fed so far names the kept log.
    same_log: bool,
    /// Whether record `log_size - 1` had the kept head, once reached.
    head_matches: Option<bool>,
}

/// Verifies a log fed in order, page by page, in constant memory.
///
/// Feed every checkpoint (oldest first) before the records it covers: before
/// feeding records up to index `i`, feed the checkpoints up to the first
/// whose `log_size` exceeds `i + 1`, or all of them. Then call
/// [`finish`](Self::finish). Verification stops at the first problem; later
/// feeds are ignored.
#[derive(Debug)]
pub struct Verifier {
    public_key: Vec<u8>,
    /// Raw `hash` of the last record verified (zeros before record 0).
    head: [u8; 32],
    /// The same in lower-case hex, as records carry it.
    head_hex: [u8; 64],
    records: u64,
    redacted: u64,
    checkpoints: u64,
    /// Checkpoints whose signature and order verified and whose head record
    /// is not reached yet, oldest first.
    pending: VecDeque<Checkpoint>,
    previous: Option<Previous>,
    newest: Option<KeptCheckpoint>,
    kept: Option<KeptCheck>,
    problem: Option<Problem>,
    /// Reused buffer for a record's canonical encoding.
    scratch: Vec<u8>,
}

impl Verifier {
    /// A verifier trusting the raw Ed25519 `public_key`.
    pub fn new(public_key: &[u8]) -> Self {
        let mut head_hex = [0u8; 64];
        head_hex.copy_from_slice(ZERO_HASH.as_bytes());
        Self {
            public_key: public_key.to_vec(),
            head: [0; 32],
            head_hex,
            records: 0,
            redacted: 0,
            checkpoints: 0,
            pending: VecDeque::new(),
            previous: None,
            newest: None,
            kept: None,
            problem: None,
            scratch: Vec::new(),
        }
    }

    /// Also checks that the log still holds `kept`, a checkpoint verified on
    /// an earlier run: record `log_size - 1` must have its head, and every
    /// checkpoint must name its log. The answer is [`Verification::kept`].
    pub fn keeping(mut self, kept: KeptCheckpoint) -> Self {
        self.kept = Some(KeptCheck {
            kept,
            same_log: true,
            head_matches: None,
        });
        self
    }

    /// Records verified so far.
    pub fn verified(&self) -> u64 {
        self.records
    }

    /// The first problem found so far.
    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    /// Checks a checkpoint's payload, signature and order now, and its head
    /// when the record it covers last is fed (at once if that is the last
    /// record fed already).
    pub fn add_checkpoint(&mut self, c: Checkpoint) -> Result<(), LateCheckpoint> {
        if self.problem.is_some() {
            return Ok(());
        }
        let signed_at = c.signed_at.as_ref().map(rfc3339).unwrap_or_default();
        let expected = checkpoint_payload(&c.log_id, c.log_size, &c.head_hash, &signed_at);
        let key = UnparsedPublicKey::new(&ED25519, &self.public_key);
        let out_of_order = self.previous.as_ref().is_some_and(|p| {
            p.log_size >= c.log_size
                || p.log_id != c.log_id
                || p.signed_at > c.signed_at.map(|t| t.seconds)
        });
        let log_size = c.log_size;
        if expected != c.signed_payload {
            self.problem = Some(Problem::Payload { log_size });
        } else if key.verify(&c.signed_payload, &c.signature).is_err() {
            self.problem = Some(Problem::Signature { log_size });
        } else if out_of_order {
            self.problem = Some(Problem::Order { log_size });
        }
        if self.problem.is_some() {
            return Ok(());
        }
        self.previous = Some(Previous {
            log_size,
            log_id: c.log_id.clone(),
            signed_at: c.signed_at.map(|t| t.seconds),
        });
        if let Some(k) = &mut self.kept {
            k.same_log &= c.log_id == k.kept.log_id;
        }
        if log_size == 0 {
            // Covers nothing: its head must be the empty log's.
            let matches = c.head_hash == ZERO_HASH;
            self.problem = self.settle(matches, c).err();
        } else if log_size == self.records {
            let matches = c.head_hash.as_bytes() == self.head_hex;
            self.problem = self.settle(matches, c).err();
        } else if log_size < self.records {
            return Err(LateCheckpoint {
                log_size,
                verified: self.records,
            });
        } else {
            self.pending.push_back(c);
        }
        Ok(())
    }

    /// Verifies the next records, in order (the first fed is index 0).
    pub fn add_records(&mut self, records: impl IntoIterator<Item = AccessRecord>) {
        for record in records {
            if self.problem.is_some() {
                return;
            }
            if let Err(problem) = self.add_record(record) {
                self.problem = Some(problem);
            }
        }
    }

    fn add_record(&mut self, mut r: AccessRecord) -> Result<(), Problem> {
        let position = self.records;
        if r.index != position {
            return Err(Problem::Index {
                position,
                claimed: r.index,
            });
        }
        let index = r.index;
        // Taking the chain fields out leaves exactly what `content_hash`
        // covers, without copying the record.
        let prev_hash = std::mem::take(&mut r.prev_hash);
        let hash = std::mem::take(&mut r.hash);
        let content_hex = std::mem::take(&mut r.content_hash);
        let redacted = std::mem::replace(&mut r.redacted, false);
        let mut content = [0u8; 32];
        if redacted {
            let bare = AccessRecord {
                index,
                ..Default::default()
            };
            if r != bare {
                return Err(Problem::Redaction { index });
            }
            // Taken as served: only its link can be checked.
            hex::decode_to_slice(&content_hex, &mut content)
                .map_err(|_| Problem::Link { index })?;
        } else {
            self.scratch.clear();
            r.encode(&mut self.scratch)
                .expect("a Vec grows as needed, so encoding cannot run out of space");
            content.copy_from_slice(digest(&SHA256, &self.scratch).as_ref());
            if !hex_equals(&content, &content_hex) {
                return Err(Problem::Hash { index });
            }
        }
        if prev_hash.as_bytes() != self.head_hex {
            return Err(Problem::Link { index });
        }
        let mut link = Context::new(&SHA256);
        link.update(&self.head);
        link.update(&content);
        let mut next = [0u8; 32];
        next.copy_from_slice(link.finish().as_ref());
        if !hex_equals(&next, &hash) {
            return Err(Problem::Link { index });
        }
        self.head = next;
        self.head_hex.copy_from_slice(hash.as_bytes());
        self.records += 1;
        self.redacted += u64::from(redacted);
        if let Some(k) = &mut self.kept
            && k.kept.log_size == self.records
        {
            k.head_matches = Some(hash == k.kept.head_hash);
        }
        while self
            .pending
            .front()
            .is_some_and(|c| c.log_size == self.records)
        {
            let c = self.pending.pop_front().expect("just looked");
            let matches = c.head_hash.as_bytes() == self.head_hex;
            self.settle(matches, c)?;
        }
        Ok(())
    }

    /// Counts a checkpoint whose head matched the records.
    fn settle(&mut self, head_matches: bool, c: Checkpoint) -> Result<(), Problem> {
        if !head_matches {
            return Err(Problem::Head {
                log_size: c.log_size,
            });
        }
        self.checkpoints += 1;
        self.newest = Some(KeptCheckpoint::from(&c));
        Ok(())
    }

    /// The verdict once everything was fed: a checkpoint whose records were
    /// never fed means the log was truncated below it.
    pub fn finish(mut self) -> Verification {
        if self.problem.is_none()
            && let Some(c) = self.pending.front()
        {
            self.problem = Some(Problem::Missing {
                log_size: c.log_size,
            });
        }
        let signed = self.newest.as_ref().map_or(0, |c| c.log_size);
        Verification {
            records: self.records,
            redacted: self.redacted,
            checkpoints: self.checkpoints,
            unsigned: self.records.saturating_sub(signed),
            problem: self.problem,
            newest: self.newest,
            kept: self
                .kept
                .map(|k| k.same_log && (k.kept.log_size == 0 || k.head_matches == Some(true))),
        }
    }
}

/// True when `hex` is the lower-case hex of `raw`, as the log writes hashes.
fn hex_equals(raw: &[u8; 32], hex: &str) -> bool {
    let mut expected = [0u8; 64];
    hex::encode_to_slice(raw, &mut expected).expect("64 bytes hold 32 in hex");
    expected == hex.as_bytes()
}

/// Verifies `records` (indices 0.. in order) against `checkpoints` with the
/// raw Ed25519 `public_key`, all in memory: for logs already downloaded.
/// `orex audit verify` streams through [`Verifier`] instead.
pub fn verify(
    records: &[AccessRecord],
    checkpoints: &[Checkpoint],
    public_key: &[u8],
) -> Verification {
    let mut v = Verifier::new(public_key);
    for c in checkpoints {
        // No record is fed yet, so no checkpoint can be late.
        let _ = v.add_checkpoint(c.clone());
    }
    v.add_records(records.iter().cloned());
    v.finish()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    use orex_proto::audit::v1::{AccessDecision, AccessRecordKind};

    use super::*;
    use crate::audit::log::{content_hash, redacted, seal_record};

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

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    /// A checkpoint of the first `size` records, signed as the gateway does.
    fn checkpoint(key: &Ed25519KeyPair, records: &[AccessRecord], size: u64) -> Checkpoint {
        let head_hash = match size {
            0 => ZERO_HASH.to_owned(),
            n => records[n as usize - 1].hash.clone(),
        };
        let signed_at = prost_types::Timestamp {
            seconds: 1_700_000_000 + size as i64,
            nanos: 0,
        };
        let payload =
            checkpoint_payload("orex-gateway/test", size, &head_hash, &rfc3339(&signed_at));
        Checkpoint {
            log_id: "orex-gateway/test".into(),
            log_size: size,
            head_hash,
            signed_at: Some(signed_at),
            key_id: "test".into(),
            signature: key.sign(&payload).as_ref().to_vec(),
            signed_payload: payload,
        }
    }

    /// Feeds `records` in pages of `page`, each checkpoint just before the
    /// page holding the record it covers last, as `orex audit verify` does.
    fn stream(
        key: &Ed25519KeyPair,
        records: &[AccessRecord],
        checkpoints: &[Checkpoint],
        page: usize,
        kept: Option<KeptCheckpoint>,
    ) -> Verification {
        let mut v = Verifier::new(key.public_key().as_ref());
        if let Some(kept) = kept {
            v = v.keeping(kept);
        }
        let mut fed = 0;
        for chunk in records.chunks(page) {
            let end = v.verified() + chunk.len() as u64;
            while fed < checkpoints.len() && (fed == 0 || checkpoints[fed - 1].log_size < end) {
                v.add_checkpoint(checkpoints[fed].clone()).unwrap();
                fed += 1;
            }
            v.add_records(chunk.to_vec());
        }
        for c in &checkpoints[fed..] {
            v.add_checkpoint(c.clone()).unwrap();
        }
        v.finish()
    }

    #[test]
    fn the_streaming_content_hash_is_the_logs() {
        let mut r = AccessRecord {
            index: 0,
            kind: AccessRecordKind::Outcome as i32,
            time: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 2,
            }),
            member: "US".into(),
            subject: "alice".into(),
            certificate_fingerprint: "ab".repeat(32),
            token_id: "jti".into(),
            method: "/orex.sharing.v1.SharingService/GetReport".into(),
            resource_ids: vec!["a".into(), "b".into()],
            decision: AccessDecision::Allow as i32,
            reason: "completed".into(),
            grpc_status_code: Some(0),
            duration: Some(prost_types::Duration {
                seconds: 0,
                nanos: 5,
            }),
            decision_index: Some(0),
            prev_hash: ZERO_HASH.into(),
            resource_owner_members: vec!["JP".into()],
            ..Default::default()
        };
        seal_record(&mut r);
        assert_eq!(r.content_hash, content_hash(&r));
        let v = verify(std::slice::from_ref(&r), &[], &[0; 32]);
        assert_eq!(v.problem, None, "the verifier recomputes the same hashes");
        let mut changed = r.clone();
        changed.resource_ids.pop();
        assert_eq!(
            verify(&[changed], &[], &[0; 32]).problem,
            Some(Problem::Hash { index: 0 })
        );
    }

    #[test]
    fn pages_of_any_size_give_the_same_verdict_as_the_whole_log() {
        let key = key();
        let records = chain(50);
        let checkpoints: Vec<Checkpoint> = [10, 20, 21, 45]
            .iter()
            .map(|&n| checkpoint(&key, &records, n))
            .collect();
        let whole = verify(&records, &checkpoints, key.public_key().as_ref());
        assert_eq!(whole.problem, None);
        assert_eq!(whole.checkpoints, 4);
        assert_eq!(whole.unsigned, 5);
        assert_eq!(whole.newest, Some(KeptCheckpoint::from(&checkpoints[3])));
        for page in [1, 3, 10, 20, 64] {
            assert_eq!(stream(&key, &records, &checkpoints, page, None), whole);
        }
    }

    #[test]
    fn a_checkpoint_beyond_the_served_records_means_truncation() {
        let key = key();
        let records = chain(30);
        let checkpoints = vec![
            checkpoint(&key, &records, 10),
            checkpoint(&key, &records, 30),
        ];
        let v = stream(&key, &records[..25], &checkpoints, 7, None);
        assert_eq!(v.problem, Some(Problem::Missing { log_size: 30 }));
        assert_eq!(v.checkpoints, 1);
    }

    #[test]
    fn a_rewritten_chain_is_caught_at_the_signed_head_in_a_later_page() {
        let key = key();
        let records = chain(30);
        let checkpoints = vec![checkpoint(&key, &records, 30)];
        let mut rewritten = records.clone();
        rewritten[3].reason = "rewritten".into();
        for i in 3..rewritten.len() {
            if i > 3 {
                rewritten[i].prev_hash = rewritten[i - 1].hash.clone();
            }
            seal_record(&mut rewritten[i]);
        }
        let v = stream(&key, &rewritten, &checkpoints, 4, None);
        assert_eq!(v.problem, Some(Problem::Head { log_size: 30 }));
    }

    #[test]
    fn a_checkpoint_fed_after_its_records_is_refused() {
        let key = key();
        let records = chain(10);
        let mut v = Verifier::new(key.public_key().as_ref());
        v.add_records(records.clone());
        assert_eq!(
            v.add_checkpoint(checkpoint(&key, &records, 5)),
            Err(LateCheckpoint {
                log_size: 5,
                verified: 10
            })
        );
        // One at exactly the records fed is still checked.
        let mut v = Verifier::new(key.public_key().as_ref());
        v.add_records(records.clone());
        v.add_checkpoint(checkpoint(&key, &records, 10)).unwrap();
        assert_eq!(v.finish().checkpoints, 1);
    }

    #[test]
    fn a_kept_head_catches_a_truncated_or_rewritten_log() {
        let key = key();
        let records = chain(5);
        let kept = KeptCheckpoint {
            log_id: "orex-gateway/test".into(),
            log_size: 4,
            head_hash: records[3].hash.clone(),
        };
        let checkpoints = vec![checkpoint(&key, &records, 5)];
        let holds =
            |records: &[AccessRecord], checkpoints: &[Checkpoint], kept: &KeptCheckpoint| {
                stream(&key, records, checkpoints, 2, Some(kept.clone())).kept
            };
        assert_eq!(holds(&records, &checkpoints, &kept), Some(true));
        assert_eq!(holds(&records[..3], &[], &kept), Some(false), "truncated");
        let mut rewritten = chain(5);
        rewritten[3].reason = "rewritten".into();
        seal_record(&mut rewritten[3]);
        rewritten[4].prev_hash = rewritten[3].hash.clone();
        seal_record(&mut rewritten[4]);
        assert_eq!(holds(&rewritten, &[], &kept), Some(false), "rewritten");
        let other_log = KeptCheckpoint {
            log_id: "orex-gateway/other".into(),
            ..kept.clone()
        };
        assert_eq!(
            holds(&records, &checkpoints, &other_log),
            Some(false),
            "another log"
        );
        assert_eq!(stream(&key, &records, &checkpoints, 2, None).kept, None);
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
