//! `orex.audit.v1.AuditService`, served by the gateway from its own log.
//!
//! Partnership auditors (named in the policy) see every record; any other
//! auditor sees records of its own member's principals and records of calls
//! that touched its member's reports. Records hold access metadata only,
//! never report contents. Out-of-scope records in a range download are
//! redacted to their index and hashes, so the chain still verifies.
//!
//! Every answer is bounded in encoded bytes
//! ([`PAGE_BYTES`](crate::audit::page::PAGE_BYTES)) as well as in count. The
//! budget never cuts an answer to nothing: the first item always goes in, so
//! paging always makes progress.

use std::sync::Arc;

use orex_kit::page_token::PageTokens;
use orex_membership::{Partnership, Principal};
use orex_proto::audit::v1::audit_service_server::AuditService;
use orex_proto::audit::v1::*;
use tonic::{Code, Request, Response, Status};

use crate::audit::log::redacted;
use crate::audit::page::{MAX_RANGE_RECORDS, Page, Scan};
use crate::door::{Door, Pass};
use crate::error::GatewayError;

const SERVICE: &str = "/orex.audit.v1.AuditService/";
/// Most records one query inspects, matching or not: a query has no index,
/// so this bounds the work of one call (its page may be short, even empty,
/// with a next-page token).
const MAX_SCAN: u64 = 20_000;

/// The audit API.
#[derive(Debug, Clone)]
pub struct AuditApi {
    door: Door,
    tokens: Arc<PageTokens>,
}

impl AuditApi {
    /// Serves the log behind `door`.
    pub fn new(door: Door, tokens: Arc<PageTokens>) -> Self {
        Self { door, tokens }
    }

    async fn admitted<T>(&self, name: &str, req: &Request<T>) -> Result<Pass, Status> {
        self.door
            .admit(req, &format!("{SERVICE}{name}"), vec![])
            .await
    }
}

/// True when `who` may read `record` in full.
pub fn in_scope(partnership: &Partnership, who: &Principal, record: &AccessRecord) -> bool {
    partnership.is_partnership_auditor(who)
        || record.member == who.member
        || record.resource_owner_members.contains(&who.member)
}

fn matches(f: &AccessRecordFilter, r: &AccessRecord) -> bool {
    let nanos =
        |t: &prost_types::Timestamp| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let in_window = f.time_window.as_ref().is_none_or(|w| {
        let Some(t) = r.time.as_ref().map(nanos) else {
            return false;
        };
        w.start.as_ref().is_none_or(|s| t >= nanos(s))
            && w.end.as_ref().is_none_or(|e| t < nanos(e))
    });
    (f.member.is_empty() || f.member == r.member)
        && (f.subject.is_empty() || f.subject == r.subject)
        && (f.method.is_empty() || f.method == r.method)
        && (f.resource_id.is_empty() || r.resource_ids.contains(&f.resource_id))
        && (f.decision == 0 || f.decision == r.decision)
        && (f.kind == 0 || f.kind == r.kind)
        && in_window
}

/// Page tokens are bound to the method, the caller and the query.
fn context(method: &str, who: &Principal, what: &[u8]) -> Vec<u8> {
    orex_kit::page_token::context(&[
        b"v1",
        method.as_bytes(),
        who.member.as_bytes(),
        who.subject.as_bytes(),
        what,
    ])
}

/// The access log could not be read: auditors get UNAVAILABLE, and the
/// operator a log line saying what failed — a store sled cannot read is
/// damaged, and only the operator can restore it.
fn unreadable(e: impl std::fmt::Display) -> GatewayError {
    tracing::error!(
        error = %e,
        "the access log cannot be read: its store may be damaged; run `orex audit verify` and restore the store from a backup if it fails"
    );
    GatewayError::AuditRead
}

fn page_size(requested: u32, default: u32, max: u32) -> Result<u64, GatewayError> {
    match requested {
        0 => Ok(u64::from(default)),
        n if n <= max => Ok(u64::from(n)),
        n => Err(GatewayError::InvalidArgument(format!(
            "page_size: must be at most {max}, got {n}"
        ))),
    }
}

impl AuditApi {
    fn open_cursor(&self, ctx: &[u8], token: &str) -> Result<u64, GatewayError> {
        if token.is_empty() {
            return Ok(0);
        }
        self.tokens
            .open(ctx, token)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| {
                GatewayError::InvalidArgument(
                    "page_token: is not a token this service issued to you for this query".into(),
                )
            })
    }

    fn query(
        &self,
        pass: &Pass,
        req: &QueryAccessRecordsRequest,
    ) -> Result<QueryAccessRecordsResponse, GatewayError> {
        use prost::Message as _;
        let log = self.door.audit();
        let size = page_size(req.page_size, 100, 1000)?;
        let filter = req.filter.clone().unwrap_or_default();
        let ctx = context(
            "QueryAccessRecords",
            &pass.caller.principal,
            &filter.encode_to_vec(),
        );
        let start = self.open_cursor(&ctx, &req.page_token)?;
        let end = log.size();
        let mut page = Page::new(size);
        // The position to resume from: after every record inspected, except
        // one that matched but no longer fitted the page.
        let mut next = start;
        for item in Scan::new(log, start, end.min(start.saturating_add(MAX_SCAN))) {
            let (position, r) = item.map_err(unreadable)?;
            if in_scope(&pass.policy.partnership, &pass.caller.principal, &r)
                && matches(&filter, &r)
                && page.push(r).is_err()
            {
                break;
            }
            next = position + 1;
            if page.is_full() {
                break;
            }
        }
        let next_page_token = if next < end {
            self.tokens.seal(&ctx, &next.to_be_bytes())
        } else {
            String::new()
        };
        Ok(QueryAccessRecordsResponse {
            records: page.into_items(),
            next_page_token,
        })
    }

    fn range(
        &self,
        pass: &Pass,
        req: &GetRecordRangeRequest,
    ) -> Result<GetRecordRangeResponse, GatewayError> {
        let log = self.door.audit();
        let size = log.size();
        if req.start_index >= size {
            return Err(GatewayError::OutOfRange(format!(
                "start_index {} is not below the log size {size}",
                req.start_index
            )));
        }
        if req.end_index <= req.start_index || req.end_index - req.start_index > MAX_RANGE_RECORDS {
            return Err(GatewayError::InvalidArgument(format!(
                "end_index: must be greater than start_index and at most start_index + {MAX_RANGE_RECORDS}"
            )));
        }
        let mut page = Page::new(MAX_RANGE_RECORDS);
        for item in Scan::new(log, req.start_index, req.end_index.min(size)) {
            let (_, r) = item.map_err(unreadable)?;
            let r = if in_scope(&pass.policy.partnership, &pass.caller.principal, &r) {
                r
            } else {
                redacted(&r)
            };
            if page.push(r).is_err() {
                break;
            }
        }
        Ok(GetRecordRangeResponse {
            records: page.into_items(),
            log_size: size,
        })
    }

    fn checkpoints(
        &self,
        pass: &Pass,
        req: &ListCheckpointsRequest,
    ) -> Result<ListCheckpointsResponse, GatewayError> {
        use prost::Message as _;
        let size = page_size(req.page_size, 100, 1000)?;
        let ctx = context(
            "ListCheckpoints",
            &pass.caller.principal,
            &req.time_window.unwrap_or_default().encode_to_vec(),
        );
        let after = self.open_cursor(&ctx, &req.page_token)?;
        let nanos = |t: &prost_types::Timestamp| {
            i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
        };
        let mut page = Page::new(size);
        let mut last_size = None;
        let mut next_page_token = String::new();
        for c in self.door.audit().checkpoints_after(after) {
            let c = c.map_err(unreadable)?;
            let in_window = req.time_window.as_ref().is_none_or(|w| {
                let t = c.signed_at.as_ref().map(nanos).unwrap_or_default();
                w.start.as_ref().is_none_or(|s| t >= nanos(s))
                    && w.end.as_ref().is_none_or(|e| t < nanos(e))
            });
            if !in_window {
                continue;
            }
            let log_size = c.log_size;
            if page.push(c).is_err() {
                // A page holds at least one checkpoint, so there is a last.
                let last: u64 = last_size.expect("a full page is not empty");
                next_page_token = self.tokens.seal(&ctx, &last.to_be_bytes());
                break;
            }
            last_size = Some(log_size);
        }
        Ok(ListCheckpointsResponse {
            checkpoints: page.into_items(),
            next_page_token,
        })
    }
}

/// Runs `answer` for an admitted call and records its outcome.
async fn finish<T>(
    pass: Pass,
    answer: Result<T, GatewayError>,
    summary: impl FnOnce(&T) -> String,
) -> Result<Response<T>, Status> {
    match answer {
        Ok(resp) => {
            let reason = summary(&resp);
            pass.finish(Code::Ok, vec![], reason).await;
            Ok(Response::new(resp))
        }
        Err(e) => {
            let status = Status::from(e);
            pass.finish(status.code(), vec![], status.message().to_owned())
                .await;
            Err(status)
        }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn query_access_records(
        &self,
        req: Request<QueryAccessRecordsRequest>,
    ) -> Result<Response<QueryAccessRecordsResponse>, Status> {
        let pass = self.admitted("QueryAccessRecords", &req).await?;
        let answer = self.query(&pass, req.get_ref());
        finish(pass, answer, |r| {
            format!("returned {} records", r.records.len())
        })
        .await
    }

    async fn get_record_range(
        &self,
        req: Request<GetRecordRangeRequest>,
    ) -> Result<Response<GetRecordRangeResponse>, Status> {
        let pass = self.admitted("GetRecordRange", &req).await?;
        let answer = self.range(&pass, req.get_ref());
        finish(pass, answer, |r| {
            format!("returned {} records", r.records.len())
        })
        .await
    }

    async fn list_checkpoints(
        &self,
        req: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let pass = self.admitted("ListCheckpoints", &req).await?;
        let answer = self.checkpoints(&pass, req.get_ref());
        finish(pass, answer, |r| {
            format!("returned {} checkpoints", r.checkpoints.len())
        })
        .await
    }

    async fn get_latest_checkpoint(
        &self,
        req: Request<GetLatestCheckpointRequest>,
    ) -> Result<Response<GetLatestCheckpointResponse>, Status> {
        let pass = self.admitted("GetLatestCheckpoint", &req).await?;
        let log = self.door.audit();
        let answer = match log.latest_checkpoint() {
            Ok(Some(checkpoint)) => Ok(GetLatestCheckpointResponse {
                checkpoint: Some(checkpoint),
                log_size: log.size(),
            }),
            Ok(None) => Err(GatewayError::NotFound(
                "no checkpoint has been signed yet".into(),
            )),
            Err(e) => Err(unreadable(e)),
        };
        finish(pass, answer, |_| "returned the latest checkpoint".into()).await
    }
}
