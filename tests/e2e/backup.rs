//! `orex admin backup|restore` against running servers: a backup taken
//! while members publish holds every confirmed write and restores to a store
//! the service runs on; a gateway's backup restores to an access log that
//! verifies; only the listed admin workload may take one, and it may do
//! nothing else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use orex_cli::commands::admin;
use orex_e2e::{Stack, content, publish, publish_request, within};
use orex_kit::status::{Reason, reason_of};
use orex_proto::admin::v1::BackupRequest;
use orex_proto::admin::v1::admin_service_client::AdminServiceClient;
use orex_proto::audit::v1::AccessDecision;
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{GetReportRequest, SubscribeReportsRequest};

/// A stack whose sharing service and gateway admit the workload `backup`
/// to their admin service (the risk service does not).
async fn stack() -> Stack {
    Stack::spawn_configured(|layout| {
        for file in ["sharing.toml", "gateway.toml"] {
            let path = layout.config(file);
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str("\n[ops]\nadmin_workloads = [\"backup\"]\n");
            std::fs::write(&path, text).unwrap();
        }
    })
    .await
}

/// A folder with the `backup` workload's certificate, key and the CA.
fn backup_identity(stack: &Stack, dir: &Path) -> PathBuf {
    let tls = dir.join("backup-tls");
    std::fs::create_dir_all(&tls).unwrap();
    let issued = stack.layout.ca().unwrap().workload("backup").unwrap();
    std::fs::copy(stack.layout.ca_cert(), tls.join("ca.pem")).unwrap();
    std::fs::write(tls.join("cert.pem"), issued.cert_pem).unwrap();
    std::fs::write(tls.join("key.pem"), issued.key_pem).unwrap();
    std::fs::set_permissions(tls.join("key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_members_publish_restores_every_confirmed_report() {
    let mut stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = admin::tls_files(&backup_identity(&stack, dir.path()));
    let mut us = stack.client("us-alice").await;
    let mut confirmed = Vec::new();
    for _ in 0..20 {
        confirmed.push(publish(&mut us, content(Marking::Green, &[], &[])).await.id);
    }
    // Members keep publishing while the backup is taken.
    let publishing = {
        let mut c = stack.client("us-alice").await;
        tokio::spawn(async move {
            for _ in 0..50 {
                c.publish_report(publish_request(content(Marking::Green, &[], &[])))
                    .await
                    .unwrap();
            }
        })
    };
    let file = dir.path().join("sharing.backup");
    let summary = admin::backup(
        &format!("https://{}", stack.sharing_addr),
        "sharing",
        &tls,
        &file,
    )
    .await
    .expect("backup of the sharing service");
    publishing.await.unwrap();
    assert!(summary.entries > 0);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Restore into a new folder and run the service on it.
    let restored = dir.path().join("restored");
    orex_kit::backup::restore(&file, &restored).unwrap();
    stack.stop_sharing().await;
    let live = stack.layout.data("sharing");
    std::fs::rename(&live, dir.path().join("replaced")).unwrap();
    std::fs::rename(&restored, &live).unwrap();
    stack.restart_sharing().await;

    let mut reader = stack.client("us-alice").await;
    for id in &confirmed {
        within(
            10,
            reader.get_report(GetReportRequest {
                report_id: id.clone(),
                version: 0,
            }),
        )
        .await
        .unwrap_or_else(|s| panic!("report {id} confirmed before the backup is missing: {s:?}"));
    }
    // The event log came back whole: sequences 1..=n without a gap, and
    // every event's report is readable (no half-applied batch).
    let mut events = reader
        .subscribe_reports(SubscribeReportsRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let mut expected = 1;
    while expected <= confirmed.len() as u64 {
        let event = within(10, events.next()).await.unwrap().unwrap();
        assert_eq!(event.sequence, expected, "a gap in the restored event log");
        expected += 1;
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_gateway_backup_restores_to_an_access_log_that_verifies() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = admin::tls_files(&backup_identity(&stack, dir.path()));
    let mut us = stack.client("us-alice").await;
    for _ in 0..5 {
        publish(&mut us, content(Marking::Green, &[], &[])).await;
    }
    stack.audit_log().checkpoint().await.unwrap();
    let file = dir.path().join("gateway.backup");
    admin::backup(
        &format!("https://{}", stack.gateway_addr),
        "gateway",
        &tls,
        &file,
    )
    .await
    .expect("backup of the gateway's access log");
    // The backup is itself in the log, as ALLOW for the admin workload.
    let log = stack.audit_log();
    let all = log.range(0, log.size()).unwrap();
    let backup_record = all
        .iter()
        .find(|r| r.method == "/orex.admin.v1.AdminService/Backup")
        .expect("the backup call is in the access log");
    assert_eq!(backup_record.decision(), AccessDecision::Allow);
    assert_eq!(backup_record.reason, "admin workload backup");
    let restored = dir.path().join("restored");
    orex_kit::backup::restore(&file, &restored).unwrap();
    let records = admin::verify_restored_log(&restored, &stack.layout.audit_keys().1)
        .expect("the restored log verifies");
    assert!(records >= 5, "{records}");

    // A log altered after the backup no longer verifies.
    let other = dir.path().join("altered");
    orex_kit::backup::restore(&file, &other).unwrap();
    {
        let db = sled::open(&other).unwrap();
        let tree = db.open_tree("audit_records").unwrap();
        let (key, _) = tree.first().unwrap().unwrap();
        tree.remove(key).unwrap();
        db.flush().unwrap();
    }
    let err = admin::verify_restored_log(&other, &stack.layout.audit_keys().1).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    stack.stop().await;
}

#[tokio::test]
async fn only_the_listed_admin_workload_takes_backups_and_it_can_do_nothing_else() {
    let stack = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let backup_tls = backup_identity(&stack, dir.path());
    let backup_cert = (
        std::fs::read_to_string(backup_tls.join("cert.pem")).unwrap(),
        std::fs::read_to_string(backup_tls.join("key.pem")).unwrap(),
    );

    // A member's certificate at the gateway's admin service; the gateway's
    // own workload certificate at the sharing service's; the backup
    // workload where it is not listed (risk).
    for (addr, name, identity) in [
        (
            stack.gateway_addr,
            "gateway",
            stack.bundle_identity("us-alice"),
        ),
        (
            stack.sharing_addr,
            "sharing",
            stack.workload_identity("gateway"),
        ),
        (stack.risk_addr, "risk", backup_cert.clone()),
    ] {
        let channel = stack.channel(addr, name, Some(identity)).await.unwrap();
        let refused = AdminServiceClient::new(channel)
            .backup(BackupRequest {})
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::PermissionDenied,
            "{name}: {refused:?}"
        );
        assert_eq!(
            reason_of(&refused),
            Some(Reason::WorkloadNotAllowed),
            "{name}"
        );
    }
    // The gateway recorded the member's attempt as DENY.
    let log = stack.audit_log();
    let denied = log
        .range(0, log.size())
        .unwrap()
        .into_iter()
        .filter(|r| r.method == "/orex.admin.v1.AdminService/Backup")
        .collect::<Vec<_>>();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0].decision(), AccessDecision::Deny);
    assert_eq!(denied[0].member, "US");

    // The backup workload at the sharing API, which it may not call.
    let channel = stack
        .channel(stack.sharing_addr, "sharing", Some(backup_cert))
        .await
        .unwrap();
    let refused =
        orex_proto::sharing::v1::sharing_service_client::SharingServiceClient::new(channel)
            .get_report(GetReportRequest {
                report_id: uuid::Uuid::new_v4().to_string(),
                version: 0,
            })
            .await
            .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // An existing output file is never overwritten.
    let taken = dir.path().join("taken");
    std::fs::write(&taken, b"keep").unwrap();
    let err = admin::backup(
        &format!("https://{}", stack.sharing_addr),
        "sharing",
        &admin::tls_files(&backup_tls),
        &taken,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"keep");
    stack.stop().await;
}
