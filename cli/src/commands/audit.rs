//! `orex audit query|verify|export`: the access log for auditors, through
//! the gateway, with an auditor's client bundle.
//!
//! Everything here pages: the gateway bounds every answer in bytes
//! ([`PAGE_BYTES`]), and `verify` streams the log through
//! [`Verifier`] with a few range requests in flight, so neither memory nor a
//! single message grows with the log. `export` writes each page as it
//! arrives.
//!
//! Gateway replicas each keep their own chain (their own log id). With
//! `--replicas` the commands read every replica's log at the replica's own
//! address ([`open_replicas`]): `query` merges the logs into one timeline,
//! `export` writes them one after the other, `verify` checks each on its
//! own against its own kept checkpoint; every record is labelled with its
//! log id and replica. Without it, they read the bundle's gateway as ever.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use orex_gateway::audit::log::{content_hash, link_hash};
use orex_gateway::audit::page::framed_len;
use orex_gateway::audit::verify::{KeptCheckpoint, Verification, Verifier};
use orex_gateway::audit::{CLIENT_DECODE_LIMIT, MAX_RANGE_RECORDS, PAGE_BYTES};
use orex_proto::audit::v1::{
    AccessDecision, AccessRecord, AccessRecordFilter, Checkpoint, GetLatestCheckpointRequest,
    GetRecordRangeRequest, GetRecordRangeResponse, ListCheckpointsRequest, ListCheckpointsResponse,
    QueryAccessRecordsRequest,
};
use orex_proto::common::v1::TimeWindow;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use crate::CliError;
use crate::bundle::{AuditClient, Connection};

/// Range requests kept in flight while a page is verified, so the gateway
/// reads and sends the next pages while this side hashes.
const IN_FLIGHT: usize = 4;

/// Records asked for in the first range request, before any size is known.
const FIRST_WINDOW: u64 = 1000;

/// How often a call refused for the member's rate limit is retried (after
/// the wait the gateway names) before giving up.
const RATE_LIMIT_RETRIES: u32 = 50;

/// The longest wait for a rate-limited retry, whatever the gateway says.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(10);

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
    /// Streams: memory stays flat whatever the log's size.
    Verify {
        /// The gateway's audit public key (PEM), obtained from the partnership.
        #[arg(long)]
        public_key: PathBuf,
        /// You audit the whole partnership: any redacted record is an error.
        #[arg(long)]
        expect_full_scope: bool,
        /// Where to keep the newest checkpoint you verified: the next run
        /// checks the log still holds it (catches truncation, or a rewrite
        /// that also deleted checkpoints), then updates it. Default: one
        /// file per log (id and signing key) under $OREX_STATE_DIR, else
        /// $XDG_STATE_HOME/orex/audit-verify, else
        /// ~/.local/state/orex/audit-verify. With --replicas, a folder: one
        /// file per replica's log in it.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Keep no state: check only what the log says about itself (a log
        /// that lost its tail and every checkpoint over it may then verify).
        #[arg(long, conflicts_with = "state")]
        no_state: bool,
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

/// Runs an audit subcommand with the bundle in `bundle`, at the bundle's
/// gateway.
pub async fn run(bundle: &Path, cmd: AuditCommand) -> Result<(), CliError> {
    run_on(bundle, &[], cmd).await
}

/// Runs an audit subcommand with the bundle in `bundle`: at the bundle's
/// gateway when `replicas` is empty, else at every gateway replica they name
/// (`--replicas`, see [`open_replicas`]), each replica's log on its own.
pub async fn run_on(bundle: &Path, replicas: &[String], cmd: AuditCommand) -> Result<(), CliError> {
    if !replicas.is_empty() {
        return run_on_replicas(bundle, replicas, cmd).await;
    }
    let client = Connection::open(bundle).await?.audit();
    match cmd {
        AuditCommand::Query {
            filter,
            json,
            limit,
        } => {
            let mut records = Vec::new();
            query(&client, filter.to_filter()?, limit, |page| {
                records.extend_from_slice(page);
                Ok(())
            })
            .await?;
            if json {
                let mut out = std::io::stdout().lock();
                for r in &records {
                    // A closed pipe (`| head`) just ends the output.
                    if writeln!(out, "{}", to_json(r)).is_err() {
                        break;
                    }
                }
            } else {
                print_table(records.iter().map(|r| (None, r)));
            }
        }
        AuditCommand::Export {
            filter,
            format,
            output,
        } => {
            let mut out = Export::start(format, open_output(output.as_deref())?, false)?;
            let exported = query(&client, filter.to_filter()?, usize::MAX, |page| {
                out.write(page, None)
            })
            .await?;
            out.finish()?;
            if let Some(path) = output {
                eprintln!("exported {exported} records to {}", path.display());
            }
        }
        AuditCommand::Verify {
            public_key,
            expect_full_scope,
            state,
            no_state,
        } => {
            let options = VerifyOptions::from_args(public_key, expect_full_scope, state, no_state);
            let key = read_public_key(&options.public_key)?;
            let verdict = verify_one(&client, &key, &options, progress_on_terminal()).await?;
            print_verdict(&verdict);
            if verdict.failure.is_some() {
                return Err(CliError::Invalid("the access log does not verify".into()));
            }
        }
    }
    Ok(())
}

/// The export's destination: `path`, or standard output.
fn open_output(path: Option<&Path>) -> Result<std::io::BufWriter<Box<dyn Write>>, CliError> {
    let out: Box<dyn Write> = match path {
        Some(path) => Box::new(std::fs::File::create(path).map_err(|source| CliError::Io {
            path: path.to_owned(),
            source,
        })?),
        None => Box::new(std::io::stdout()),
    };
    Ok(std::io::BufWriter::new(out))
}

/// What `verify` checks besides the log itself, and where it keeps state.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The gateway's audit public key (PEM).
    pub public_key: PathBuf,
    /// Any redacted record is a failure.
    pub expect_full_scope: bool,
    /// Where the newest verified checkpoint is kept.
    pub state: StateChoice,
}

impl VerifyOptions {
    /// The options of `orex audit verify`'s arguments.
    fn from_args(
        public_key: PathBuf,
        expect_full_scope: bool,
        state: Option<PathBuf>,
        no_state: bool,
    ) -> Self {
        Self {
            public_key,
            expect_full_scope,
            state: match (no_state, state) {
                (true, _) => StateChoice::Nowhere,
                (false, Some(path)) => StateChoice::File(path),
                (false, None) => StateChoice::Folder(None),
            },
        }
    }
}

/// Where `verify` keeps the newest checkpoint it verified.
#[derive(Debug, Clone)]
pub enum StateChoice {
    /// Nowhere (`--no-state`).
    Nowhere,
    /// In this file (`--state FILE`, one gateway).
    File(PathBuf),
    /// One file per log, named by its id and key, in this folder (`--state
    /// DIR` with `--replicas`) or, with `None`, in the default state folder.
    Folder(Option<PathBuf>),
}

/// The verdict on one log.
#[derive(Debug)]
pub struct Verdict {
    /// What the verifier found.
    pub verification: Verification,
    /// Why the log does not count as verified (`BROKEN: …`, `NOT VERIFIED:
    /// …`); `None` when it does.
    pub failure: Option<String>,
    /// Where its newest checkpoint was kept for the next run, and its size.
    pub kept_in: Option<(PathBuf, u64)>,
}

/// Verifies the log `client` reaches: streams it through the verifier
/// ([`verify_log`]), checks it against the checkpoint kept from the last run
/// (per `options.state`), and keeps the newest one for the next run when it
/// verifies. Prints nothing.
pub async fn verify_one(
    client: &AuditClient,
    key: &[u8],
    options: &VerifyOptions,
    progress: impl FnMut(u64),
) -> Result<Verdict, CliError> {
    let state = match &options.state {
        StateChoice::Nowhere => None,
        StateChoice::File(path) => Some(path.clone()),
        StateChoice::Folder(dir) => {
            default_state_file(client, &options.public_key, dir.as_deref()).await?
        }
    };
    let kept: Option<KeptCheckpoint> = match &state {
        Some(path) if path.exists() => Some(
            serde_json::from_slice(&crate::error::read(path)?).map_err(|e| {
                CliError::Invalid(format!("{}: not a kept checkpoint: {e}", path.display()))
            })?,
        ),
        _ => None,
    };
    let v = verify_log(client, key, kept.clone(), progress).await?;
    let failure = if let Some(p) = &v.problem {
        Some(format!("BROKEN: {p}"))
    } else if v.checkpoints == 0 && v.records > 0 {
        Some("NOT VERIFIED: no signed checkpoint covers the log yet; verify again after the next checkpoint".into())
    } else if options.expect_full_scope && v.redacted > 0 {
        Some(format!(
            "NOT VERIFIED: {} records were redacted although you expect the full scope",
            v.redacted
        ))
    } else {
        kept.as_ref()
            .filter(|_| v.kept == Some(false))
            .map(|k| format!(
                "BROKEN: the log no longer holds the checkpoint you kept (log {}, size {}, head {}): it was truncated or rewritten",
                k.log_id, k.log_size, k.head_hash
            ))
    };
    let mut kept_in = None;
    if let (None, Some(path), Some(newest)) = (&failure, state, &v.newest) {
        let text = serde_json::to_vec_pretty(newest)
            .map_err(|e| CliError::Invalid(format!("kept checkpoint: {e}")))?;
        crate::error::write(&path, &text, false)?;
        kept_in = Some((path, newest.log_size));
    }
    Ok(Verdict {
        verification: v,
        failure,
        kept_in,
    })
}

/// Prints a verdict as `orex audit verify` always has: the counts, where
/// the checkpoint was kept (stderr), then OK or why not.
fn print_verdict(verdict: &Verdict) {
    report(&verdict.verification);
    if let Some((path, size)) = &verdict.kept_in {
        eprintln!(
            "kept checkpoint of {size} records in {} for the next run",
            path.display()
        );
    }
    match &verdict.failure {
        None => crate::outln!("OK: every hash, link and signature verifies"),
        Some(why) => crate::outln!("{why}"),
    }
}

/// The default file keeping the newest verified checkpoint of the log this
/// gateway serves: one per log, a log being its id and the key that signs
/// it (named from the id, with a hash of both — a fresh dev stack reusing
/// the id `orex-gateway/dev` has a new key, so it is a new log, not a
/// truncated one), in `folder` or else the state folder. `None` while the
/// log has no checkpoint (there is nothing to keep yet).
async fn default_state_file(
    client: &AuditClient,
    public_key: &std::path::Path,
    folder: Option<&Path>,
) -> Result<Option<PathBuf>, CliError> {
    let latest = match client
        .clone()
        .get_latest_checkpoint(GetLatestCheckpointRequest {})
        .await
    {
        Ok(r) => r.into_inner().checkpoint,
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => return Err(s.into()),
    };
    let Some(latest) = latest else {
        return Ok(None);
    };
    let dir = match folder {
        Some(dir) => dir.to_owned(),
        None => state_dir().ok_or_else(|| {
            CliError::Invalid(
                "no folder to keep the verified checkpoint in: set OREX_STATE_DIR (or HOME), or pass --state FILE or --no-state".into(),
            )
        })?,
    };
    let key = crate::error::read(public_key)?;
    Ok(Some(dir.join(state_file_name(&latest.log_id, &key))))
}

/// `$OREX_STATE_DIR`, `$XDG_STATE_HOME/orex/audit-verify` or
/// `~/.local/state/orex/audit-verify`.
fn state_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("OREX_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("orex/audit-verify")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/orex/audit-verify")))
}

/// `orex-gateway_dev-1a2b3c4d5e6f7a8b.json` for log id `orex-gateway/dev`
/// (the hash covers the id and the trusted key's file).
fn state_file_name(log_id: &str, key: &[u8]) -> String {
    use sha2::Digest as _;
    let plain: String = log_id
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut h = sha2::Sha256::new();
    h.update((log_id.len() as u64).to_be_bytes());
    h.update(log_id.as_bytes());
    h.update(key);
    let hash = hex::encode(&h.finalize()[..8]);
    format!("{plain}-{hash}.json")
}

/// A progress line on standard error, at most once a second, when it is a
/// terminal (a large log takes a while).
fn progress_on_terminal() -> impl FnMut(u64) {
    use std::io::IsTerminal as _;
    let terminal = std::io::stderr().is_terminal();
    let mut last = std::time::Instant::now();
    move |records| {
        if terminal && last.elapsed() >= Duration::from_secs(1) {
            last = std::time::Instant::now();
            eprintln!("verified {records} records…");
        }
    }
}

/// The audit client with a decode limit matching the gateway's byte budget
/// (with headroom for a single record over it, which is served alone).
fn limited(client: &AuditClient) -> AuditClient {
    client
        .clone()
        .max_decoding_message_size(CLIENT_DECODE_LIMIT)
}

/// The wait a RESOURCE_EXHAUSTED status names in `retry-after-ms`, if any.
fn retry_after(status: &Status) -> Option<Duration> {
    let ms: u64 = status
        .metadata()
        .get("retry-after-ms")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_millis(ms).min(LONGEST_RETRY_WAIT))
}

/// Runs `call`, and again after the named wait while the member's rate
/// limit refuses it: a large log takes more calls than a burst allows.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut retries = 0;
    loop {
        match call().await {
            Ok(answer) => return Ok(answer.into_inner()),
            Err(status) if status.code() == Code::ResourceExhausted => match retry_after(&status) {
                Some(wait) if retries < RATE_LIMIT_RETRIES => {
                    retries += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(status),
            },
            Err(status) => return Err(status),
        }
    }
}

/// Queries records page by page, checks each one's own hashes (so what is
/// printed is what the chain commits to; `verify` checks the chain itself),
/// and hands each page to `each`, up to `limit` records in all. Returns how
/// many were handed over.
async fn query(
    client: &AuditClient,
    filter: AccessRecordFilter,
    limit: usize,
    mut each: impl FnMut(&[AccessRecord]) -> Result<(), CliError>,
) -> Result<usize, CliError> {
    let client = limited(client);
    let mut handed = 0;
    let mut token = String::new();
    loop {
        let page = patiently(|| {
            let (mut client, request) = (
                client.clone(),
                QueryAccessRecordsRequest {
                    filter: Some(filter.clone()),
                    page_size: 1000,
                    page_token: token.clone(),
                },
            );
            async move { client.query_access_records(request).await }
        })
        .await?;
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
        let take = page.records.len().min(limit - handed);
        each(&page.records[..take])?;
        handed += take;
        if handed >= limit || page.next_page_token.is_empty() {
            return Ok(handed);
        }
        token = page.next_page_token;
    }
}

/// Downloads and verifies the whole log as it arrives, trusting only the raw
/// Ed25519 `public_key`, and (with `kept`) checks that it still holds a
/// checkpoint kept from an earlier run. `progress` hears the number of
/// records verified after each page.
///
/// Memory stays flat: a few pages in flight (each within the gateway's byte
/// budget), one page of checkpoints, and the verifier's running head. The
/// checkpoints checked are those up to the newest one when the run starts;
/// every record they cover must be served, so a truncated log fails.
pub async fn verify_log(
    client: &AuditClient,
    public_key: &[u8],
    kept: Option<KeptCheckpoint>,
    mut progress: impl FnMut(u64),
) -> Result<Verification, CliError> {
    let client = limited(client);
    let mut verifier = Verifier::new(public_key);
    if let Some(kept) = kept {
        verifier = verifier.keeping(kept);
    }
    // The newest checkpoint first: it fixes which checkpoints count, and the
    // records are then read up to a size at least its own.
    let mut checkpoints = CheckpointFeed::open(client.clone()).await?;
    let mut pages = RecordPages::open(client).await?;
    while let Some(page) = pages.next().await? {
        let through = verifier.verified() + page.len() as u64;
        checkpoints.feed_through(&mut verifier, through).await?;
        // Hashing is the CPU-heavy part: off the async workers, so the
        // answers in flight are decoded meanwhile.
        verifier = tokio::task::spawn_blocking(move || {
            verifier.add_records(page);
            verifier
        })
        .await
        .map_err(|e| CliError::Invalid(format!("verification stopped: {e}")))?;
        progress(verifier.verified());
        if verifier.problem().is_some() {
            break;
        }
    }
    // A checkpoint beyond the records served means the log was truncated.
    let through = verifier.verified() + 1;
    checkpoints.feed_through(&mut verifier, through).await?;
    Ok(verifier.finish())
}

/// Downloads every record and every checkpoint into memory, for a small log
/// (tests). `orex audit verify` streams with [`verify_log`] instead.
pub async fn download(
    client: &mut AuditClient,
) -> Result<(Vec<AccessRecord>, Vec<Checkpoint>), CliError> {
    let client = limited(client);
    // Checkpoints first: every record they cover must then be served.
    let mut checkpoints = Vec::new();
    let mut token = String::new();
    loop {
        let page = list_checkpoints(&client, &token).await?;
        checkpoints.extend(page.checkpoints);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut records = Vec::new();
    let mut pages = RecordPages::open(client).await?;
    while let Some(page) = pages.next().await? {
        records.extend(page);
    }
    Ok((records, checkpoints))
}

/// One page of checkpoints, oldest first, from `token` on.
async fn list_checkpoints(
    client: &AuditClient,
    token: &str,
) -> Result<ListCheckpointsResponse, Status> {
    patiently(|| {
        let (mut client, request) = (
            client.clone(),
            ListCheckpointsRequest {
                time_window: None,
                page_size: 1000,
                page_token: token.to_owned(),
            },
        );
        async move { client.list_checkpoints(request).await }
    })
    .await
}

/// The checkpoints a verification checks, fetched a page at a time as the
/// records reach them: those listed below the newest checkpoint at the
/// start, then that newest one itself. Pinning it first means a gateway that
/// shrinks its log cannot shed the checkpoint that covers the lost records,
/// and checkpoints signed while the run reads (our own calls are recorded)
/// are not expected to be covered.
#[derive(Debug)]
struct CheckpointFeed {
    client: AuditClient,
    /// The newest checkpoint at the start; `None` before the first one.
    pinned: Option<Checkpoint>,
    listed: VecDeque<Checkpoint>,
    /// The next page token; `None` once the listing is done.
    token: Option<String>,
    /// `log_size` of the last checkpoint fed.
    fed_through: u64,
}

impl CheckpointFeed {
    async fn open(client: AuditClient) -> Result<Self, CliError> {
        let pinned = latest_checkpoint(&client).await?;
        Ok(Self {
            client,
            token: pinned.as_ref().map(|_| String::new()),
            pinned,
            listed: VecDeque::new(),
            fed_through: 0,
        })
    }

    async fn next(&mut self) -> Result<Option<Checkpoint>, CliError> {
        let Some(pinned_size) = self.pinned.as_ref().map(|c| c.log_size) else {
            return Ok(None);
        };
        loop {
            if let Some(c) = self.listed.pop_front() {
                if c.log_size < pinned_size {
                    return Ok(Some(c));
                }
                // The pinned copy stands for it and ends the feed.
                self.listed.clear();
                self.token = None;
                continue;
            }
            let Some(token) = self.token.take() else {
                return Ok(self.pinned.take());
            };
            let page = list_checkpoints(&self.client, &token).await?;
            self.listed = page.checkpoints.into();
            self.token = Some(page.next_page_token).filter(|t| !t.is_empty());
        }
    }

    /// Feeds `verifier` every checkpoint up to the first that covers more
    /// than `through` records (or all), before the records up to `through`.
    async fn feed_through(
        &mut self,
        verifier: &mut Verifier,
        through: u64,
    ) -> Result<(), CliError> {
        while self.fed_through < through {
            let Some(c) = self.next().await? else {
                return Ok(());
            };
            self.fed_through = c.log_size;
            verifier
                .add_checkpoint(c)
                .map_err(|e| CliError::Invalid(format!("verification: {e}")))?;
        }
        Ok(())
    }
}

/// A range request on its way.
#[derive(Debug)]
struct InFlight {
    start: u64,
    end: u64,
    answer: JoinHandle<Result<GetRecordRangeResponse, Status>>,
}

/// The whole log as range answers, in order, with [`IN_FLIGHT`] requests
/// ahead. An answer cut short by the byte budget is completed by a request
/// for the rest of its range before the next range is handed out.
#[derive(Debug)]
struct RecordPages {
    client: AuditClient,
    /// Records to read: the log size of the first answer. Our own calls are
    /// recorded too, so the log grows while we read it.
    target: u64,
    /// Start of the first range not yet requested.
    issued: u64,
    /// Records per request: as many as fit the byte budget at the size of
    /// the records seen last.
    window: u64,
    in_flight: VecDeque<InFlight>,
}

impl Drop for RecordPages {
    fn drop(&mut self) {
        // Stopped early (a problem found, an error): nobody reads these.
        for request in &self.in_flight {
            request.answer.abort();
        }
    }
}

impl RecordPages {
    async fn open(client: AuditClient) -> Result<Self, CliError> {
        let mut pages = Self {
            client,
            target: 0,
            issued: 0,
            window: FIRST_WINDOW,
            in_flight: VecDeque::new(),
        };
        let first = pages.request(0, FIRST_WINDOW);
        match first.answer.await {
            Ok(Ok(answer)) => {
                pages.target = answer.log_size;
                pages.issued = FIRST_WINDOW.min(answer.log_size);
                pages.in_flight.push_back(InFlight {
                    end: pages.issued,
                    answer: tokio::spawn(async move { Ok(answer) }),
                    ..first
                });
            }
            // Nothing at index 0: the log is empty.
            Ok(Err(s)) if s.code() == Code::OutOfRange => {}
            Ok(Err(s)) => return Err(s.into()),
            Err(e) => return Err(CliError::Invalid(format!("range download stopped: {e}"))),
        }
        Ok(pages)
    }

    fn request(&self, start: u64, end: u64) -> InFlight {
        let client = self.client.clone();
        let answer = tokio::spawn(async move {
            patiently(|| {
                let mut client = client.clone();
                async move {
                    client
                        .get_record_range(GetRecordRangeRequest {
                            start_index: start,
                            end_index: end,
                        })
                        .await
                }
            })
            .await
        });
        InFlight { start, end, answer }
    }

    /// Requests further ranges until [`IN_FLIGHT`] are on their way.
    fn fill(&mut self) {
        while self.in_flight.len() < IN_FLIGHT && self.issued < self.target {
            let end = self.target.min(self.issued + self.window);
            let next = self.request(self.issued, end);
            self.in_flight.push_back(next);
            self.issued = end;
        }
    }

    /// The next records in index order, or `None` after the last.
    async fn next(&mut self) -> Result<Option<Vec<AccessRecord>>, CliError> {
        self.fill();
        let Some(InFlight { start, end, answer }) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        let answer = answer
            .await
            .map_err(|e| CliError::Invalid(format!("range download stopped: {e}")))??;
        let mut records = answer.records;
        records.truncate(usize::try_from(end - start).unwrap_or(usize::MAX));
        if records.is_empty() {
            return Err(CliError::Invalid(format!(
                "the gateway served no records from index {start} although the log has {}",
                answer.log_size
            )));
        }
        let served_to = start + records.len() as u64;
        if served_to < end {
            let rest = self.request(served_to, end);
            self.in_flight.push_front(rest);
        }
        let bytes: usize = records.iter().map(framed_len).sum();
        let average = (bytes / records.len()).max(1) as u64;
        // Aim a little under the budget so most answers come whole.
        self.window = (PAGE_BYTES as u64 * 9 / 10 / average).clamp(1, MAX_RANGE_RECORDS);
        self.fill();
        Ok(Some(records))
    }
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
    crate::outln!(
        "checked {} records ({} redacted: outside your scope, chain recomputed across them) and {} signed checkpoints; {} records after the newest checkpoint are not yet signed",
        v.records,
        v.redacted,
        v.checkpoints,
        v.unsigned
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

/// The log and replica a record came from, on each exported line or row
/// with `--replicas`.
#[derive(Debug, Clone)]
struct RecordLabel {
    log_id: Option<String>,
    replica: SocketAddr,
}

/// A record as a JSON object with its `log_id` and `replica`.
fn labelled_json(r: &AccessRecord, label: &RecordLabel) -> serde_json::Value {
    let mut v = to_json(r);
    v["log_id"] = json!(label.log_id);
    v["replica"] = json!(label.replica.to_string());
    v
}

/// An export being written page by page.
enum Export<W: std::io::Write> {
    Jsonl(W),
    // Boxed: the CSV writer's buffers make it far larger than the other.
    Csv(Box<csv::Writer<W>>),
}

impl<W: std::io::Write> Export<W> {
    /// Starts an export in `format` (CSV writes its header row now, with
    /// `log_id` and `replica` first when `labelled`).
    fn start(format: ExportFormat, out: W, labelled: bool) -> Result<Self, CliError> {
        match format {
            ExportFormat::Jsonl => Ok(Export::Jsonl(out)),
            ExportFormat::Csv => {
                let mut w = csv::Writer::from_writer(out);
                let labels: &[&str] = if labelled {
                    &["log_id", "replica"]
                } else {
                    &[]
                };
                w.write_record(labels.iter().chain(&[
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
                ]))
                .map_err(csv_error)?;
                Ok(Export::Csv(Box::new(w)))
            }
        }
    }

    /// Writes one page of records, each with `label` if given (as the
    /// export was started: labelled or not).
    fn write(
        &mut self,
        records: &[AccessRecord],
        label: Option<&RecordLabel>,
    ) -> Result<(), CliError> {
        match self {
            Export::Jsonl(out) => {
                for r in records {
                    let line = match label {
                        Some(label) => labelled_json(r, label),
                        None => to_json(r),
                    };
                    writeln!(out, "{line}").map_err(export_error)?;
                }
            }
            Export::Csv(w) => {
                let labels: Vec<String> = label
                    .map(|l| vec![l.log_id.clone().unwrap_or_default(), l.replica.to_string()])
                    .unwrap_or_default();
                for r in records {
                    w.write_record(
                        labels.iter().cloned().chain([
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
                        ]),
                    )
                    .map_err(csv_error)?;
                }
            }
        }
        Ok(())
    }

    /// Flushes everything written.
    fn finish(self) -> Result<(), CliError> {
        match self {
            Export::Jsonl(mut out) => out.flush().map_err(export_error),
            Export::Csv(mut w) => w.flush().map_err(export_error),
        }
    }
}

fn csv_error(e: csv::Error) -> CliError {
    if let csv::ErrorKind::Io(io) = e.kind()
        && io.kind() == std::io::ErrorKind::BrokenPipe
    {
        crate::output::exit_on_write_error(io);
    }
    CliError::Invalid(format!("writing CSV: {e}"))
}

/// A failed write of the export; on stdout whose reader has gone (`| head`)
/// the command ends quietly (a file cannot fail that way).
fn export_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        crate::output::exit_on_write_error(&e);
    }
    CliError::Invalid(format!("writing the export: {e}"))
}

/// Prints records as a table; rows labelled with their log (`--replicas`)
/// get a first column naming it.
fn print_table<'a>(rows: impl IntoIterator<Item = (Option<String>, &'a AccessRecord)>) {
    let rows: Vec<(Option<String>, &AccessRecord)> = rows.into_iter().collect();
    if rows.is_empty() {
        crate::outln!("(no access records in your scope match)");
        return;
    }
    // The log column, as wide as the longest log name, when there is one.
    let log_width = rows
        .iter()
        .filter_map(|(log, _)| log.as_ref().map(|l| l.chars().count().max(3)))
        .max();
    let log_cell = |log: &str| match log_width {
        Some(w) => format!("{log:<w$}  "),
        None => String::new(),
    };
    crate::outln!(
        "{}{:>6}  {:<20}  {:<8}  {:<5}  {:<16}  {:<45}  {:<6}  reason",
        log_cell("log"),
        "index",
        "time",
        "kind",
        "dec",
        "principal",
        "method",
        "status"
    );
    for (log, r) in rows {
        let time = r
            .time
            .as_ref()
            .map(|t| {
                let mut s = t.to_string();
                s.truncate(19);
                s
            })
            .unwrap_or_default();
        crate::outln!(
            "{}{:>6}  {:<20}  {:<8}  {:<5}  {:<16}  {:<45}  {:<6}  {}",
            log_cell(log.as_deref().unwrap_or_default()),
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

// ---------------------------------------------------------------------------
// Every gateway replica: `--replicas`.
//
// Each gateway replica keeps its own chain (its own log id, one signing key
// for all), so an auditor covers the partnership's access only by reading
// every replica's log. The member Service balances connections over the
// replicas, so the CLI goes to each replica's own address instead (in
// Kubernetes the headless Service `gateway-replicas` resolves to all of
// them), presenting the bundle's certificate and token and checking the
// bundle's `server_name` on every replica's certificate.

/// One gateway replica's access log, reached at its own address.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Where the log answered: one address, or several when the same log
    /// answered at each (a name resolving to a replica's IPv4 and IPv6
    /// addresses, say).
    pub addresses: Vec<SocketAddr>,
    /// The log's id, from its newest checkpoint; `None` before the first.
    pub log_id: Option<String>,
    /// An audit client to the first address.
    pub client: AuditClient,
}

impl Replica {
    /// The address it is read at.
    pub fn address(&self) -> SocketAddr {
        self.addresses[0]
    }

    /// The log's name for people: its id, or (before its first checkpoint)
    /// a note saying it has none.
    pub fn log_name(&self) -> String {
        self.log_id
            .clone()
            .unwrap_or_else(|| "(no checkpoint yet)".into())
    }

    /// `orex-gateway/gateway-0 at 10.0.0.5:7100`.
    pub fn label(&self) -> String {
        let mut label = format!("{} at {}", self.log_name(), self.address());
        if self.addresses.len() > 1 {
            let also: Vec<String> = self.addresses[1..].iter().map(|a| a.to_string()).collect();
            label.push_str(&format!(" (also at {})", also.join(", ")));
        }
        label
    }
}

/// The replicas `--replicas` named: the logs reached, and the addresses
/// that could not be read (and why).
#[derive(Debug)]
pub struct Replicas {
    /// One entry per log, ordered by log id, then address.
    pub reached: Vec<Replica>,
    /// Addresses that did not answer, or refused.
    pub unreachable: Vec<(SocketAddr, CliError)>,
}

impl Replicas {
    /// Every log, or an error naming each address that could not be read:
    /// a query or export missing a replica would look complete.
    fn all(self) -> Result<Vec<Replica>, CliError> {
        if self.unreachable.is_empty() {
            return Ok(self.reached);
        }
        let why: Vec<String> = self
            .unreachable
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect();
        Err(CliError::Invalid(format!(
            "cannot read every gateway replica's log: {}",
            why.join("; ")
        )))
    }
}

/// Resolves `--replicas` values (`HOST:PORT`) to addresses, in order,
/// without repeats. A name stands for every address it resolves to.
pub async fn resolve_replicas(targets: &[String]) -> Result<Vec<SocketAddr>, CliError> {
    let mut addresses = Vec::new();
    for target in targets {
        let bad = |why: String| {
            CliError::Invalid(format!(
                "--replicas {target}: {why}; expected HOST:PORT, like gateway-replicas.orex.svc:7100 or 10.0.0.5:7100"
            ))
        };
        if target.contains("://") {
            return Err(bad("a scheme is not part of it".into()));
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|e| bad(e.to_string()))?
            .collect();
        if found.is_empty() {
            return Err(bad("resolves to no address".into()));
        }
        for a in found {
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
    }
    Ok(addresses)
}

/// The bundle's identity, read once for every replica.
#[derive(Debug, Clone)]
struct Identity {
    server_name: String,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    token: crate::bundle::BearerToken,
}

impl Identity {
    fn read(bundle: &Path) -> Result<Self, CliError> {
        let file = crate::bundle::BundleFile::read(bundle)?;
        let token = crate::error::read(&bundle.join("token.jwt"))?;
        Ok(Self {
            server_name: file.server_name,
            ca: crate::error::read(&bundle.join("ca.pem"))?,
            cert: crate::error::read(&bundle.join("cert.pem"))?,
            key: crate::error::read(&bundle.join("key.pem"))?,
            token: crate::bundle::BearerToken::new(&String::from_utf8_lossy(&token))?,
        })
    }

    /// An audit client to the gateway replica at `address`, checking the
    /// bundle's `server_name` on its certificate.
    async fn connect(&self, address: SocketAddr) -> Result<AuditClient, CliError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(self.server_name.clone());
        let endpoint = Endpoint::from_shared(format!("https://{address}"))
            .map_err(|e| CliError::Invalid(format!("replica address {address}: {e}")))?;
        let channel = orex_kit::transport::dial(endpoint)
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(Connection {
            channel,
            token: self.token.clone(),
        }
        .audit())
    }
}

/// What one address said about its log.
#[derive(Debug)]
struct Probed<C> {
    address: SocketAddr,
    client: C,
    log_id: Option<String>,
    /// The hash of record 0, which tells one chain from another: it covers
    /// the first call's time to the nanosecond.
    first_hash: Option<String>,
}

/// The log's newest checkpoint (`None` before the first), asked patiently
/// (a rate-limited answer is retried when the gateway says).
async fn latest_checkpoint(client: &AuditClient) -> Result<Option<Checkpoint>, CliError> {
    match patiently(|| {
        let mut client = client.clone();
        async move {
            client
                .get_latest_checkpoint(GetLatestCheckpointRequest {})
                .await
        }
    })
    .await
    {
        Ok(latest) => Ok(latest.checkpoint),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// Asks the replica behind `client` for its newest checkpoint's log id and
/// its first record's hash (our own call is recorded first, so the log is
/// never empty by then).
async fn probe(client: &AuditClient) -> Result<(Option<String>, Option<String>), CliError> {
    let log_id = latest_checkpoint(client).await?.map(|c| c.log_id);
    let first_hash = match patiently(|| {
        let mut client = client.clone();
        async move {
            client
                .get_record_range(GetRecordRangeRequest {
                    start_index: 0,
                    end_index: 1,
                })
                .await
        }
    })
    .await
    {
        Ok(range) => range.records.first().map(|r| r.hash.clone()),
        Err(s) if s.code() == Code::OutOfRange => None,
        Err(s) => return Err(s.into()),
    };
    Ok((log_id, first_hash))
}

/// A log and every address it answered at.
type Grouped<C> = (Probed<C>, Vec<SocketAddr>);

/// One entry per log: addresses whose first records are the same record are
/// the same log (reached twice) and are read once. Two different logs
/// under one id are refused — the replicas were given the same
/// `audit.log_id`, and auditors could not tell their kept checkpoints apart.
fn group<C>(probed: Vec<Probed<C>>) -> Result<Vec<Grouped<C>>, CliError> {
    let mut logs: Vec<Grouped<C>> = Vec::new();
    for p in probed {
        if let Some((log, addresses)) = logs
            .iter_mut()
            .find(|(l, _)| l.first_hash.is_some() && l.first_hash == p.first_hash)
        {
            addresses.push(p.address);
            if log.log_id.is_none() {
                log.log_id = p.log_id;
            }
            continue;
        }
        if let Some((other, _)) = logs
            .iter()
            .find(|(l, _)| l.log_id.is_some() && l.log_id == p.log_id)
        {
            return Err(CliError::Invalid(format!(
                "the gateway replicas at {} and {} hold different logs under the same id {:?}: \
                 give every replica its own audit.log_id (OREX_GATEWAY__AUDIT__LOG_ID, \
                 orex-gateway/<pod name> in Kubernetes)",
                other.address,
                p.address,
                p.log_id.as_deref().unwrap_or_default()
            )));
        }
        let address = p.address;
        logs.push((p, vec![address]));
    }
    logs.sort_by(|(a, _), (b, _)| {
        (a.log_id.is_none(), &a.log_id, a.address).cmp(&(b.log_id.is_none(), &b.log_id, b.address))
    });
    // Again over the finished groups: an id learnt late (a first probe
    // before the log's first checkpoint) escaped the check above.
    if let Some(w) = logs
        .windows(2)
        .find(|w| w[0].0.log_id.is_some() && w[0].0.log_id == w[1].0.log_id)
    {
        return Err(CliError::Invalid(format!(
            "the gateway replicas at {} and {} hold different logs under the same id {:?}: \
             give every replica its own audit.log_id (OREX_GATEWAY__AUDIT__LOG_ID, \
             orex-gateway/<pod name> in Kubernetes)",
            w[0].0.address,
            w[1].0.address,
            w[0].0.log_id.as_deref().unwrap_or_default()
        )));
    }
    Ok(logs)
}

/// Connects to every address `targets` (`--replicas`) resolve to with the
/// bundle's certificate and token, and finds out which log each serves.
/// The same log at two addresses is one [`Replica`]; an address that does
/// not answer is listed in [`Replicas::unreachable`].
pub async fn open_replicas(bundle: &Path, targets: &[String]) -> Result<Replicas, CliError> {
    let addresses = resolve_replicas(targets).await?;
    let identity = Identity::read(bundle)?;
    let answers = futures::future::join_all(addresses.iter().map(|&address| {
        let identity = identity.clone();
        async move {
            let client = identity.connect(address).await?;
            let (log_id, first_hash) = probe(&client).await?;
            Ok::<_, CliError>(Probed {
                address,
                client,
                log_id,
                first_hash,
            })
        }
    }))
    .await;
    let mut probed = Vec::new();
    let mut unreachable = Vec::new();
    for (address, answer) in addresses.into_iter().zip(answers) {
        match answer {
            Ok(p) => probed.push(p),
            Err(e) => unreachable.push((address, e)),
        }
    }
    let reached = group(probed)?
        .into_iter()
        .map(|(p, addresses)| Replica {
            addresses,
            log_id: p.log_id,
            client: p.client,
        })
        .collect();
    Ok(Replicas {
        reached,
        unreachable,
    })
}

/// An access record and the replica whose log holds it.
#[derive(Debug, Clone)]
pub struct LabelledRecord {
    /// The log's id (`None` before its first checkpoint).
    pub log_id: Option<String>,
    /// The replica's address.
    pub replica: SocketAddr,
    /// The record, as its log holds it (its `index` counts in that log).
    pub record: AccessRecord,
}

impl LabelledRecord {
    fn log_name(&self) -> String {
        self.log_id
            .clone()
            .unwrap_or_else(|| format!("(no checkpoint yet) {}", self.replica))
    }
}

/// Queries every replica's log and merges the matches into one timeline:
/// oldest first by record time (ties by log id, then index), at most
/// `limit` in all — each log is asked for its first `limit` matches, which
/// hold the first `limit` of the merge. Any replica that fails fails the
/// query, naming it.
pub async fn query_replicas(
    replicas: &[Replica],
    filter: &AccessRecordFilter,
    limit: usize,
) -> Result<Vec<LabelledRecord>, CliError> {
    let per_log = futures::future::try_join_all(replicas.iter().map(|replica| async move {
        let mut records = Vec::new();
        query(&replica.client, filter.clone(), limit, |page| {
            records.extend(page.iter().map(|r| LabelledRecord {
                log_id: replica.log_id.clone(),
                replica: replica.address(),
                record: r.clone(),
            }));
            Ok(())
        })
        .await
        .map_err(|e| CliError::Invalid(format!("{}: {e}", replica.label())))?;
        Ok::<_, CliError>(records)
    }))
    .await?;
    let mut merged: Vec<LabelledRecord> = per_log.into_iter().flatten().collect();
    merged.sort_by(|a, b| {
        let time = |r: &LabelledRecord| {
            r.record
                .time
                .as_ref()
                .map_or((i64::MIN, i32::MIN), |t| (t.seconds, t.nanos))
        };
        time(a)
            .cmp(&time(b))
            .then_with(|| a.log_name().cmp(&b.log_name()))
            .then_with(|| a.record.index.cmp(&b.record.index))
    });
    merged.truncate(limit);
    Ok(merged)
}

/// Exports every replica's matching records to `out`, one log after the
/// other (ordered as [`Replicas::reached`]), each in its own index order and
/// page by page, every line or row labelled with its log id and replica.
/// Returns how many records each log gave.
pub async fn export_replicas<W: Write>(
    replicas: &[Replica],
    filter: &AccessRecordFilter,
    format: ExportFormat,
    out: W,
) -> Result<Vec<(String, usize)>, CliError> {
    let mut out = Export::start(format, out, true)?;
    let mut counts = Vec::new();
    for replica in replicas {
        let label = RecordLabel {
            log_id: replica.log_id.clone(),
            replica: replica.address(),
        };
        let exported = query(&replica.client, filter.clone(), usize::MAX, |page| {
            out.write(page, Some(&label))
        })
        .await
        .map_err(|e| CliError::Invalid(format!("{}: {e}", replica.label())))?;
        counts.push((replica.label(), exported));
    }
    out.finish()?;
    Ok(counts)
}

/// The verdict on one replica's log, or why it could not be read.
#[derive(Debug)]
pub struct ReplicaVerdict {
    /// The replica (`orex-gateway/gateway-0 at 10.0.0.5:7100`).
    pub label: String,
    /// The log's id, if the replica answered and has signed a checkpoint.
    pub log_id: Option<String>,
    /// The verdict, or the error that stopped the download.
    pub outcome: Result<Verdict, CliError>,
}

impl ReplicaVerdict {
    /// Why this log does not count as verified; `None` when it does.
    pub fn failure(&self) -> Option<String> {
        match &self.outcome {
            Ok(v) => v.failure.clone(),
            Err(e) => Some(format!("NOT VERIFIED: {e}")),
        }
    }
}

/// Verifies every replica's log on its own, one after the other: each
/// against its own kept checkpoint (one state file per log id and key in
/// the state folder), each verdict handed to `each` as it is reached. An
/// address that could not be read is a failed verdict of its own.
pub async fn verify_replicas(
    bundle: &Path,
    targets: &[String],
    options: &VerifyOptions,
    mut each: impl FnMut(&ReplicaVerdict),
) -> Result<Vec<ReplicaVerdict>, CliError> {
    let options = VerifyOptions {
        state: match &options.state {
            StateChoice::File(path) if path.is_file() => {
                return Err(CliError::Invalid(format!(
                    "--state {}: with --replicas, --state names a folder (one file per log in it), not a file",
                    path.display()
                )));
            }
            StateChoice::File(path) => StateChoice::Folder(Some(path.clone())),
            other => other.clone(),
        },
        ..options.clone()
    };
    let key = read_public_key(&options.public_key)?;
    let replicas = open_replicas(bundle, targets).await?;
    let mut verdicts = Vec::new();
    for replica in &replicas.reached {
        let verdict = ReplicaVerdict {
            label: replica.label(),
            log_id: replica.log_id.clone(),
            outcome: verify_one(&replica.client, &key, &options, progress_on_terminal()).await,
        };
        each(&verdict);
        verdicts.push(verdict);
    }
    for (address, error) in replicas.unreachable {
        let verdict = ReplicaVerdict {
            label: format!("the replica at {address}"),
            log_id: None,
            outcome: Err(error),
        };
        each(&verdict);
        verdicts.push(verdict);
    }
    // A log verified in an earlier run with this key that no address
    // reached now (a replica scaled down, evicted, not yet rescheduled:
    // DNS names only the pods that exist) fails too, so "all N verify"
    // never hides a log that went missing.
    if let StateChoice::Folder(dir) = &options.state {
        let reached: Vec<String> = verdicts.iter().filter_map(|v| v.log_id.clone()).collect();
        for log_id in kept_logs(dir.as_deref(), &options.public_key)? {
            if reached.contains(&log_id) {
                continue;
            }
            let verdict = ReplicaVerdict {
                label: format!("the log {log_id}"),
                log_id: Some(log_id.clone()),
                outcome: Err(CliError::Invalid(format!(
                    "the log {log_id}, verified in an earlier run with this key, was not reached: is its replica scaled down, evicted or being rescheduled? Reach it (scale it up, or name its pod, gateway-N.gateway-replicas…:7100), or move its state file aside if the log was retired"
                ))),
            };
            each(&verdict);
            verdicts.push(verdict);
        }
    }
    Ok(verdicts)
}

/// The ids of the logs whose checkpoints were kept in the state folder for
/// this public key (by file name, which hashes the id with the key file).
fn kept_logs(folder: Option<&Path>, public_key: &Path) -> Result<Vec<String>, CliError> {
    let Some(dir) = folder.map(Path::to_owned).or_else(state_dir) else {
        return Ok(Vec::new());
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let key = crate::error::read(public_key)?;
    let mut logs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(kept) = serde_json::from_slice::<KeptCheckpoint>(&bytes) else {
            continue;
        };
        if state_file_name(&kept.log_id, &key) == name {
            logs.push(kept.log_id);
        }
    }
    logs.sort();
    Ok(logs)
}

/// `orex audit … --replicas …`.
async fn run_on_replicas(
    bundle: &Path,
    targets: &[String],
    cmd: AuditCommand,
) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Query {
            filter,
            json,
            limit,
        } => {
            let filter = filter.to_filter()?;
            let replicas = open_replicas(bundle, targets).await?.all()?;
            let records = query_replicas(&replicas, &filter, limit).await?;
            if json {
                let mut out = std::io::stdout().lock();
                for r in &records {
                    let label = RecordLabel {
                        log_id: r.log_id.clone(),
                        replica: r.replica,
                    };
                    if writeln!(out, "{}", labelled_json(&r.record, &label)).is_err() {
                        break;
                    }
                }
            } else {
                print_table(records.iter().map(|r| (Some(r.log_name()), &r.record)));
            }
        }
        AuditCommand::Export {
            filter,
            format,
            output,
        } => {
            let filter = filter.to_filter()?;
            let replicas = open_replicas(bundle, targets).await?.all()?;
            let counts =
                export_replicas(&replicas, &filter, format, open_output(output.as_deref())?)
                    .await?;
            if let Some(path) = output {
                for (label, n) in counts {
                    eprintln!("exported {n} records of {label} to {}", path.display());
                }
            }
        }
        AuditCommand::Verify {
            public_key,
            expect_full_scope,
            state,
            no_state,
        } => {
            let options = VerifyOptions::from_args(public_key, expect_full_scope, state, no_state);
            let verdicts = verify_replicas(bundle, targets, &options, |v| {
                crate::outln!("log {}:", v.label);
                match &v.outcome {
                    Ok(verdict) => print_verdict(verdict),
                    Err(e) => crate::outln!("NOT VERIFIED: {e}"),
                }
            })
            .await?;
            let failed: Vec<&ReplicaVerdict> =
                verdicts.iter().filter(|v| v.failure().is_some()).collect();
            if verdicts.is_empty() {
                return Err(CliError::Invalid(
                    "--replicas named no gateway replica".into(),
                ));
            }
            if failed.is_empty() {
                crate::outln!(
                    "OK: all {} access logs verify, each on its own",
                    verdicts.len()
                );
            } else {
                let names: Vec<&str> = failed.iter().map(|v| v.label.as_str()).collect();
                crate::outln!(
                    "FAILED: {} of {} access logs do not verify: {}",
                    failed.len(),
                    verdicts.len(),
                    names.join("; ")
                );
                return Err(CliError::Invalid(format!(
                    "the access log of {} does not verify",
                    names.join("; and of ")
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed(port: u16, log_id: Option<&str>, first: Option<&str>) -> Probed<()> {
        Probed {
            address: SocketAddr::from(([10, 0, 0, 1], port)),
            client: (),
            log_id: log_id.map(str::to_owned),
            first_hash: first.map(str::to_owned),
        }
    }

    fn ports(logs: &[Grouped<()>]) -> Vec<Vec<u16>> {
        logs.iter()
            .map(|(_, a)| a.iter().map(|a| a.port()).collect())
            .collect()
    }

    #[test]
    fn one_log_at_two_addresses_is_read_once_and_logs_sort_by_id() {
        let logs = group(vec![
            probed(1, Some("orex-gateway/gateway-1"), Some("b")),
            probed(2, None, Some("a")),
            probed(3, Some("orex-gateway/gateway-0"), Some("a")),
            probed(4, None, Some("c")),
        ])
        .unwrap();
        // gateway-0 answered at 2 (before its first checkpoint was read) and 3.
        assert_eq!(ports(&logs), [vec![2, 3], vec![1], vec![4]]);
        assert_eq!(logs[0].0.log_id.as_deref(), Some("orex-gateway/gateway-0"));
        assert_eq!(logs[2].0.log_id, None, "unsigned logs last");
    }

    #[test]
    fn two_logs_under_one_id_are_refused_naming_both_addresses() {
        let err = group(vec![
            probed(1, Some("orex-gateway/k8s"), Some("a")),
            probed(2, Some("orex-gateway/k8s"), Some("b")),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("10.0.0.1:1 and 10.0.0.1:2"), "{err}");
        assert!(err.contains("audit.log_id"), "{err}");
    }

    #[test]
    fn an_id_learnt_late_is_checked_too() {
        // Log "a" is first probed before its first checkpoint, then again
        // with its id; log "b" already carries the same id.
        let err = group(vec![
            probed(1, None, Some("a")),
            probed(2, Some("orex-gateway/k8s"), Some("b")),
            probed(3, Some("orex-gateway/k8s"), Some("a")),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("audit.log_id"), "{err}");
    }

    #[tokio::test]
    async fn replicas_are_host_and_port_and_repeat_once() {
        let got = resolve_replicas(&[
            "127.0.0.1:7100".into(),
            "127.0.0.1:7101".into(),
            "127.0.0.1:7100".into(),
        ])
        .await
        .unwrap();
        assert_eq!(
            got,
            [
                SocketAddr::from(([127, 0, 0, 1], 7100)),
                SocketAddr::from(([127, 0, 0, 1], 7101))
            ]
        );
        for bad in ["gateway-replicas", "https://10.0.0.5:7100", "10.0.0.5"] {
            let err = resolve_replicas(&[bad.into()]).await.unwrap_err();
            assert!(
                err.to_string().contains("expected HOST:PORT"),
                "{bad}: {err}"
            );
        }
    }
}
