//! `orex audit query|verify|export`: the access log for auditors, through
//! the gateway, with an auditor's client bundle.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use orex_gateway::audit::log::{content_hash, link_hash};
use orex_gateway::audit::verify::{KeptCheckpoint, Verification, still_holds, verify};
use orex_proto::audit::v1::{
    AccessDecision, AccessRecord, AccessRecordFilter, Checkpoint, GetRecordRangeRequest,
    ListCheckpointsRequest, QueryAccessRecordsRequest,
};
use orex_proto::common::v1::TimeWindow;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use crate::CliError;
use crate::bundle::{AuditClient, Connection};

/// Audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Query access records (a table, or JSON lines with --json).
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Most records to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Download the whole log and its checkpoints and verify the hash chain
    /// and the signatures locally, trusting only the gateway's public key.
    Verify {
        /// The gateway's audit public key (PEM), obtained from the partnership.
        #[arg(long)]
        public_key: PathBuf,
        /// You audit the whole partnership: any redacted record is an error.
        #[arg(long)]
        expect_full_scope: bool,
        /// A file keeping the newest checkpoint you verified: the next run
        /// checks the log still holds it (catches truncation or a rewrite
        /// that also deleted checkpoints), then updates it.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Export matching records for an auditor's own tools.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// Record filters shared by query and export.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only this member.
    #[arg(long)]
    pub member: Option<String>,
    /// Only this token subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Only this method (`/orex.sharing.v1.SharingService/GetReport`).
    #[arg(long)]
    pub method: Option<String>,
    /// Only records naming this resource id.
    #[arg(long)]
    pub resource: Option<String>,
    /// Only allowed or denied calls.
    #[arg(long, value_enum)]
    pub decision: Option<Decision>,
    /// Only records at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

/// A decision filter.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Decision {
    /// Allowed calls.
    Allow,
    /// Denied calls.
    Deny,
}

impl FilterArgs {
    fn to_filter(&self) -> Result<AccessRecordFilter, CliError> {
        let time = |s: &Option<String>, flag: &str| {
            s.as_deref()
                .map(|t| {
                    t.parse::<prost_types::Timestamp>().map_err(|_| {
                        CliError::Invalid(format!(
                            "--{flag} {t}: expected RFC 3339, like 2026-11-26T08:00:00Z"
                        ))
                    })
                })
                .transpose()
        };
        let (start, end) = (time(&self.since, "since")?, time(&self.until, "until")?);
        Ok(AccessRecordFilter {
            member: self.member.clone().unwrap_or_default(),
            subject: self.subject.clone().unwrap_or_default(),
            method: self.method.clone().unwrap_or_default(),
            resource_id: self.resource.clone().unwrap_or_default(),
            decision: match self.decision {
                Some(Decision::Allow) => AccessDecision::Allow as i32,
                Some(Decision::Deny) => AccessDecision::Deny as i32,
                None => 0,
            },
            time_window: (start.is_some() || end.is_some()).then_some(TimeWindow { start, end }),
            kind: 0,
        })
    }
}

/// Runs an audit subcommand with the bundle in `bundle`.
pub async fn run(bundle: &Path, cmd: AuditCommand) -> Result<(), CliError> {
    let mut client = Connection::open(bundle).await?.audit();
    match cmd {
        AuditCommand::Query {
            filter,
            json,
            limit,
        } => {
            let records = query(&mut client, filter.to_filter()?, limit).await?;
            if json {
                let mut out = std::io::stdout().lock();
                for r in &records {
                    // A closed pipe (`| head`) just ends the output.
                    if writeln!(out, "{}", to_json(r)).is_err() {
                        break;
                    }
                }
            } else {
                print_table(&records);
            }
        }
        AuditCommand::Export {
            filter,
            format,
            output,
        } => {
            let records = query(&mut client, filter.to_filter()?, usize::MAX).await?;
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(path) => {
                    Box::new(std::fs::File::create(path).map_err(|source| CliError::Io {
                        path: path.clone(),
                        source,
                    })?)
                }
                None => Box::new(std::io::stdout()),
            };
            let io = |e: std::io::Error| CliError::Invalid(format!("writing the export: {e}"));
            match format {
                ExportFormat::Jsonl => {
                    for r in &records {
                        writeln!(out, "{}", to_json(r)).map_err(io)?;
                    }
                }
                ExportFormat::Csv => write_csv(&mut out, &records)?,
            }
            out.flush().map_err(io)?;
            if let Some(path) = output {
                eprintln!("exported {} records to {}", records.len(), path.display());
            }
        }
        AuditCommand::Verify {
            public_key,
            expect_full_scope,
            state,
        } => {
            let kept: Option<KeptCheckpoint> = match &state {
                Some(path) if path.exists() => Some(
                    serde_json::from_slice(&crate::error::read(path)?).map_err(|e| {
                        CliError::Invalid(format!("{}: not a kept checkpoint: {e}", path.display()))
                    })?,
                ),
                _ => None,
            };
            let key = read_public_key(&public_key)?;
            let (records, checkpoints) = download(&mut client).await?;
            let v = verify(&records, &checkpoints, &key);
            report(&v);
            let failure = if let Some(p) = &v.problem {
                Some(format!("BROKEN: {p}"))
            } else if v.checkpoints == 0 && v.records > 0 {
                Some("NOT VERIFIED: no signed checkpoint covers the log yet; verify again after the next checkpoint".into())
            } else if expect_full_scope && v.redacted > 0 {
                Some(format!(
                    "NOT VERIFIED: {} records were redacted although you expect the full scope",
                    v.redacted
                ))
            } else {
                kept.as_ref()
                    .filter(|k| !still_holds(&records, &checkpoints, k))
                    .map(|k| format!(
                        "BROKEN: the log no longer holds the checkpoint you kept (log {}, size {}, head {}): it was truncated or rewritten",
                        k.log_id, k.log_size, k.head_hash
                    ))
            };
            if let (None, Some(path), Some(newest)) = (&failure, &state, checkpoints.last()) {
                let text = serde_json::to_vec_pretty(&KeptCheckpoint::from(newest))
                    .map_err(|e| CliError::Invalid(format!("kept checkpoint: {e}")))?;
                crate::error::write(path, &text, false)?;
            }
            match failure {
                None => println!("OK: every hash, link and signature verifies"),
                Some(why) => {
                    println!("{why}");
                    return Err(CliError::Invalid("the access log does not verify".into()));
                }
            }
        }
    }
    Ok(())
}

/// Queries records and checks each one's own hashes, so what is printed is
/// what the chain commits to (`verify` checks the chain itself).
async fn query(
    client: &mut AuditClient,
    filter: AccessRecordFilter,
    limit: usize,
) -> Result<Vec<AccessRecord>, CliError> {
    let mut records = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .query_access_records(QueryAccessRecordsRequest {
                filter: Some(filter.clone()),
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        for r in &page.records {
            let intact = content_hash(r) == r.content_hash
                && link_hash(&r.prev_hash, &r.content_hash).as_deref() == Some(r.hash.as_str());
            if !intact {
                return Err(CliError::Invalid(format!(
                    "record {} does not match its hashes: the log was tampered with; run `orex audit verify`",
                    r.index
                )));
            }
        }
        records.extend(page.records);
        if records.len() >= limit || page.next_page_token.is_empty() {
            records.truncate(limit);
            return Ok(records);
        }
        token = page.next_page_token;
    }
}

/// Downloads every record (in ranges of 1000) and every checkpoint.
pub async fn download(
    client: &mut AuditClient,
) -> Result<(Vec<AccessRecord>, Vec<Checkpoint>), CliError> {
    // Checkpoints first: every record they cover must then be served.
    let mut checkpoints = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_checkpoints(ListCheckpointsRequest {
                time_window: None,
                page_size: 1000,
                page_token: token,
            })
            .await?
            .into_inner();
        checkpoints.extend(page.checkpoints);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Our own calls are audited too, so the log grows while we read it: read
    // up to the size the first answer reports.
    let mut records = Vec::new();
    let mut target = None;
    loop {
        let start = records.len() as u64;
        if target.is_some_and(|t| start >= t) {
            break;
        }
        let page = match client
            .get_record_range(GetRecordRangeRequest {
                start_index: start,
                end_index: start + 1000,
            })
            .await
        {
            Ok(p) => p.into_inner(),
            // Past the end: an empty log, or exactly at the size we aimed for.
            Err(s) if s.code() == tonic::Code::OutOfRange && target.is_none() => break,
            Err(s) => return Err(s.into()),
        };
        if page.records.is_empty() {
            return Err(CliError::Invalid(format!(
                "the gateway served no records from index {start} although the log has {}",
                page.log_size
            )));
        }
        let goal = *target.get_or_insert(page.log_size);
        records.extend(page.records);
        records.truncate(usize::try_from(goal).unwrap_or(usize::MAX));
    }
    Ok((records, checkpoints))
}

/// Reads an Ed25519 public key (SPKI PEM) as its raw 32 bytes.
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, CliError> {
    // SubjectPublicKeyInfo for Ed25519: this fixed prefix, then the key.
    const ED25519_SPKI_PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    let pem = crate::error::read(path)?;
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(&pem)
        .map_err(|e| CliError::Invalid(format!("{}: not a PEM public key: {e}", path.display())))?;
    let der = spki.as_ref();
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) if key.len() == 32 => Ok(key.to_vec()),
        _ => Err(CliError::Invalid(format!(
            "{}: not an Ed25519 public key",
            path.display()
        ))),
    }
}

fn report(v: &Verification) {
    println!(
        "checked {} records ({} redacted: outside your scope, chain recomputed across them) and {} signed checkpoints; {} records after the newest checkpoint are not yet signed",
        v.records, v.redacted, v.checkpoints, v.unsigned
    );
}

fn decision(r: &AccessRecord) -> &'static str {
    match r.decision() {
        AccessDecision::Allow => "allow",
        AccessDecision::Deny => "deny",
        AccessDecision::Unspecified => "",
    }
}

fn kind(r: &AccessRecord) -> &'static str {
    match r.kind() {
        orex_proto::audit::v1::AccessRecordKind::Decision => "decision",
        orex_proto::audit::v1::AccessRecordKind::Outcome => "outcome",
        orex_proto::audit::v1::AccessRecordKind::Unspecified => "",
    }
}

fn duration_ms(r: &AccessRecord) -> Option<f64> {
    r.duration
        .as_ref()
        .map(|d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
}

/// One record as a JSON object.
pub fn to_json(r: &AccessRecord) -> serde_json::Value {
    json!({
        "index": r.index,
        "kind": kind(r),
        "time": r.time.as_ref().map(|t| t.to_string()),
        "member": r.member,
        "subject": r.subject,
        "certificate_fingerprint": r.certificate_fingerprint,
        "token_id": r.token_id,
        "method": r.method,
        "resource_ids": r.resource_ids,
        "resource_owner_members": r.resource_owner_members,
        "decision": decision(r),
        "reason": r.reason,
        "grpc_status_code": r.grpc_status_code,
        "duration_ms": duration_ms(r),
        "decision_index": r.decision_index,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
        "redacted": r.redacted,
    })
}

fn write_csv(out: &mut dyn std::io::Write, records: &[AccessRecord]) -> Result<(), CliError> {
    let mut w = csv::Writer::from_writer(out);
    let err = |e: csv::Error| CliError::Invalid(format!("writing CSV: {e}"));
    w.write_record([
        "index",
        "kind",
        "time",
        "member",
        "subject",
        "certificate_fingerprint",
        "token_id",
        "method",
        "resource_ids",
        "resource_owner_members",
        "decision",
        "reason",
        "grpc_status_code",
        "duration_ms",
        "decision_index",
        "prev_hash",
        "hash",
    ])
    .map_err(err)?;
    for r in records {
        w.write_record([
            r.index.to_string(),
            kind(r).to_owned(),
            r.time.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            r.member.clone(),
            r.subject.clone(),
            r.certificate_fingerprint.clone(),
            r.token_id.clone(),
            r.method.clone(),
            r.resource_ids.join(" "),
            r.resource_owner_members.join(" "),
            decision(r).to_owned(),
            r.reason.clone(),
            r.grpc_status_code
                .map(|c| c.to_string())
                .unwrap_or_default(),
            duration_ms(r)
                .map(|d| format!("{d:.3}"))
                .unwrap_or_default(),
            r.decision_index.map(|i| i.to_string()).unwrap_or_default(),
            r.prev_hash.clone(),
            r.hash.clone(),
        ])
        .map_err(err)?;
    }
    w.flush()
        .map_err(|e| CliError::Invalid(format!("writing CSV: {e}")))
}

fn print_table(records: &[AccessRecord]) {
    if records.is_empty() {
        println!("(no access records in your scope match)");
        return;
    }
    println!(
        "{:>6}  {:<20}  {:<8}  {:<5}  {:<16}  {:<45}  {:<6}  reason",
        "index", "time", "kind", "dec", "principal", "method", "status"
    );
    for r in records {
        let time = r
            .time
            .as_ref()
            .map(|t| {
                let mut s = t.to_string();
                s.truncate(19);
                s
            })
            .unwrap_or_default();
        println!(
            "{:>6}  {:<20}  {:<8}  {:<5}  {:<16}  {:<45}  {:<6}  {}",
            r.index,
            time,
            kind(r),
            decision(r),
            format!("{}/{}", r.member, r.subject),
            r.method,
            r.grpc_status_code
                .map(|c| c.to_string())
                .unwrap_or_default(),
            r.reason
        );
    }
}
