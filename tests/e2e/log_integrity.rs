//! A gateway whose access log lost its tail, or changed under a signed
//! checkpoint, refuses to start (fail closed) until an operator restores the
//! store — or, accepting the loss, moves the witness aside.
//!
//! The damage is made the way sled's recovery makes it: a record corrupted
//! on disk loses that record, every later one and every checkpoint (sled
//! keeps the longest intact prefix of its log). The test removes exactly
//! those from the stopped gateway's store.

use orex_e2e::Stack;
use orex_proto::sharing::v1::ListReportsRequest;

/// Makes some access records and stops the gateway (which signs a last
/// checkpoint over them, also into the witness).
async fn log_some_calls(stack: &mut Stack, calls: usize) -> u64 {
    let mut client = stack.client("us-alice").await;
    for _ in 0..calls {
        client
            .list_reports(ListReportsRequest::default())
            .await
            .unwrap();
    }
    let size = stack.audit_log().size();
    stack.stop_gateway().await;
    size
}

fn gateway_store(stack: &Stack) -> sled::Db {
    sled::open(stack.layout.data("gateway")).expect("open the stopped gateway's store")
}

async fn refused_start(stack: &mut Stack, says: &str) {
    let err = match stack.try_start_gateway().await {
        Ok(()) => panic!("the gateway started on a damaged log"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("integrity check failed"), "{err}");
    assert!(err.contains(says), "{err}");
}

#[tokio::test]
async fn a_log_that_lost_its_tail_is_refused_until_the_witness_is_moved_aside() {
    let mut stack = Stack::spawn().await;
    let size = log_some_calls(&mut stack, 10).await;
    assert!(size >= 20, "{size}");
    stack.lose_audit_tail(7);
    refused_start(&mut stack, &format!("records 7..{size} are lost")).await;
    // Refused every time, not only once.
    refused_start(&mut stack, "are lost").await;

    // The operator accepts the loss: the old witness is kept for the
    // auditors, a new one starts; the gateway serves again, and the log
    // goes on from where the store is.
    stack.discard_audit_witness();
    stack.start_gateway().await;
    assert_eq!(stack.audit_log().size(), 7);
    let mut client = stack.client("us-alice").await;
    client
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn a_record_changed_under_a_signed_checkpoint_is_refused() {
    let mut stack = Stack::spawn().await;
    let size = log_some_calls(&mut stack, 5).await;
    // Replace the newest record with the one before it: same length of log,
    // different head.
    {
        let db = gateway_store(&stack);
        let records = db.open_tree("audit_records").unwrap();
        let older = records.get((size - 1).to_be_bytes()).unwrap().unwrap();
        records.insert(size.to_be_bytes(), older).unwrap();
        db.flush().unwrap();
    }
    refused_start(&mut stack, &format!("record {} differs", size - 1)).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_deleted_store_is_refused_while_its_witness_remains() {
    let mut stack = Stack::spawn().await;
    log_some_calls(&mut stack, 3).await;
    std::fs::remove_dir_all(stack.layout.data("gateway")).unwrap();
    refused_start(&mut stack, "holds 0 records").await;
    stack.stop().await;
}

#[tokio::test]
async fn a_forged_witness_line_is_refused() {
    let mut stack = Stack::spawn().await;
    log_some_calls(&mut stack, 3).await;
    let witness = stack.audit_witness();
    let mut text = std::fs::read_to_string(&witness).unwrap();
    // A line with a valid checksum but not signed by this gateway.
    let other = text.lines().last().unwrap().to_owned();
    let (body, _) = other.split_once(' ').unwrap();
    let mut bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // the signature's last byte
    let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let sum: String = sha256_hex(body.as_bytes());
    text.push_str(&format!("{body} {sum}\n"));
    std::fs::write(&witness, text).unwrap();
    refused_start(&mut stack, "not signed by this gateway's key").await;
    stack.stop().await;
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
