//! `orex admin backup|restore`: operators' backups of a server's store (a
//! service's, or a gateway replica's access log).
//!
//! `backup` calls the server's admin service over mutual TLS with a workload
//! certificate the server lists in `[ops] admin_workloads`, checks the file
//! as it arrives (count and SHA-256), and only then moves it into place.
//! `restore` runs with the service stopped: it checks the whole file before
//! writing a new store folder, and for a gateway's store verifies the
//! restored access log against the auditors' public key.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use futures::StreamExt;
use orex_kit::backup::Summary;
use orex_kit::tls::TlsFiles;
use orex_kit::transport::Dialer;
use orex_proto::admin::v1::BackupRequest;
use orex_proto::admin::v1::admin_service_client::AdminServiceClient;

use crate::CliError;

/// `orex admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Take a consistent backup of a running server's store into a file.
    Backup {
        /// The server's mutual-TLS address (`https://sharing.orex.svc:7101`).
        #[arg(long)]
        address: String,
        /// The DNS name its certificate must carry (`sharing`).
        #[arg(long)]
        server_name: String,
        /// Folder with `ca.pem`, `cert.pem` and `key.pem` of a workload the
        /// server lists in `[ops] admin_workloads`; in Kubernetes the
        /// cert-manager secret's `ca.crt`, `tls.crt`, `tls.key` are used
        /// when present.
        #[arg(long, env = "OREX_ADMIN_TLS")]
        tls: PathBuf,
        /// The backup file to write (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a new store folder (the service stopped).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The store folder to create (must not exist, or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// For a gateway's store: the auditors' public key (PEM); the
        /// restored access log must verify against it.
        #[arg(long)]
        audit_key: Option<PathBuf>,
    },
    /// Check a backup file without restoring it.
    Check {
        /// The backup file.
        #[arg(long)]
        file: PathBuf,
    },
}

/// Runs one admin command.
pub async fn run(cmd: AdminCommand) -> Result<(), CliError> {
    match cmd {
        AdminCommand::Backup {
            address,
            server_name,
            tls,
            out,
        } => {
            let summary = backup(&address, &server_name, &tls_files(&tls), &out).await?;
            crate::outln!(
                "backed up {} entries ({}) from {} into {}",
                summary.entries,
                describe(&summary),
                summary.header.server,
                out.display()
            );
            crate::outln!("sha256 {}", summary.sha256);
            Ok(())
        }
        AdminCommand::Restore {
            from,
            data_dir,
            audit_key,
        } => {
            // A gateway's log must verify before the store is put in place.
            let mut verified = None;
            let summary = match &audit_key {
                Some(key) => orex_kit::backup::restore_checked(&from, &data_dir, |db| {
                    let records = verify_log_in(db, key)
                        .map_err(|e| orex_kit::KitError::Backup(e.to_string()))?;
                    verified = Some(records);
                    Ok(())
                })?,
                None => orex_kit::backup::restore(&from, &data_dir)?,
            };
            crate::outln!(
                "restored {} entries ({}) of {} taken at {} into {}",
                summary.entries,
                describe(&summary),
                summary.header.server,
                summary.header.taken_at,
                data_dir.display()
            );
            if let Some(records) = verified {
                crate::outln!("the restored access log verifies: {records} records");
            }
            Ok(())
        }
        AdminCommand::Check { file } => {
            let f = std::fs::File::open(&file).map_err(|source| CliError::Io {
                path: file.clone(),
                source,
            })?;
            let summary = orex_kit::backup::read(f, |_| Ok(()))?;
            crate::outln!(
                "{}: intact, {} entries ({}) of {} taken at {}, sha256 {}",
                file.display(),
                summary.entries,
                describe(&summary),
                summary.header.server,
                summary.header.taken_at,
                summary.sha256
            );
            Ok(())
        }
    }
}

fn describe(summary: &Summary) -> String {
    summary
        .trees
        .iter()
        .map(|(tree, n)| format!("{tree}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The TLS files in `dir`: cert-manager's names when present, else ours.
pub fn tls_files(dir: &Path) -> TlsFiles {
    if dir.join("tls.crt").exists() {
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    } else {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// Streams a backup from the server at `address` into `out`, checking it as
/// it arrives; the file appears only once it is whole and intact.
pub async fn backup(
    address: &str,
    server_name: &str,
    tls: &TlsFiles,
    out: &Path,
) -> Result<Summary, CliError> {
    if out.exists() {
        return Err(CliError::Invalid(format!(
            "{} exists; choose a new file",
            out.display()
        )));
    }
    let tls = tls.load()?;
    let channel = Dialer::new(address, server_name, &tls)?.connect().await?;
    let mut stream = AdminServiceClient::new(channel)
        .backup(BackupRequest {})
        .await?
        .into_inner();
    let mut partial_name = out.as_os_str().to_owned();
    partial_name.push(".partial");
    let partial = PathBuf::from(partial_name);
    let io = |source| CliError::Io {
        path: partial.clone(),
        source,
    };
    let result = async {
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // A backup holds the whole store.
            file.mode(0o600);
        }
        let mut file = file.open(&partial).map_err(io)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?.data).map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        let f = std::fs::File::open(&partial).map_err(io)?;
        let summary = orex_kit::backup::read(f, |_| Ok(()))?;
        std::fs::rename(&partial, out).map_err(io)?;
        Ok(summary)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Verifies the access log in a restored gateway store against the
/// auditors' public key; returns its length.
pub fn verify_restored_log(data_dir: &Path, public_key: &Path) -> Result<u64, CliError> {
    let db = sled::open(data_dir).map_err(orex_kit::KitError::from)?;
    verify_log_in(&db, public_key)
}

/// Verifies the access log in an open gateway store; returns its length.
pub fn verify_log_in(db: &sled::Db, public_key: &Path) -> Result<u64, CliError> {
    use orex_proto::audit::v1::{AccessRecord, Checkpoint};
    let key = crate::commands::audit::read_public_key(public_key)?;
    let read_tree = |name: &str| -> Result<Vec<sled::IVec>, CliError> {
        let tree = db.open_tree(name).map_err(orex_kit::KitError::from)?;
        tree.iter()
            .values()
            .map(|v| v.map_err(|e| CliError::Kit(e.into())))
            .collect()
    };
    let records = read_tree("audit_records")?
        .iter()
        .map(|v| orex_kit::store::decode_value::<AccessRecord>(v))
        .collect::<Result<Vec<_>, _>>()?;
    let checkpoints = read_tree("audit_checkpoints")?
        .iter()
        .map(|v| orex_kit::store::decode_value::<Checkpoint>(v))
        .collect::<Result<Vec<_>, _>>()?;
    if records.is_empty() && checkpoints.is_empty() {
        return Err(CliError::Invalid(
            "the restored store holds no access log: is it a gateway's backup?".into(),
        ));
    }
    let verification = orex_gateway::audit::verify::verify(&records, &checkpoints, &key);
    if let Some(problem) = verification.problem {
        return Err(CliError::Invalid(format!(
            "the restored access log does not verify: {problem:?}"
        )));
    }
    Ok(records.len() as u64)
}
