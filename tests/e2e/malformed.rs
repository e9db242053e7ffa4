//! Requests whose bytes are not a valid message — sent raw, as a broken or
//! hostile client would — are the client's fault: INVALID_ARGUMENT with the
//! `MALFORMED_REQUEST` reason (RESOURCE_EXHAUSTED `REQUEST_TOO_LARGE` over the
//! size limit), recorded in the access log with the caller's member, at the
//! gateway and at a service alike; and nothing else is disturbed.

use bytes::{Buf, BufMut};
use orex_e2e::{Stack, TokenParams};
use orex_kit::status::{Reason, reason_of};
use orex_proto::audit::v1::AccessDecision;
use orex_proto::sharing::v1::GetReportRequest;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Sends bytes as they are and ignores answers' bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

/// us-alice's connection to the gateway.
async fn alice_at_the_gateway(stack: &Stack) -> Channel {
    stack
        .channel(
            stack.gateway_addr,
            "gateway",
            Some(stack.bundle_identity("us-alice")),
        )
        .await
        .unwrap()
}

async fn send_raw(channel: &Channel, token: Option<&str>, bytes: Vec<u8>) -> Result<(), Status> {
    send_raw_with(channel, token, &[], bytes).await
}

async fn send_raw_with(
    channel: &Channel,
    token: Option<&str>,
    metadata: &[(&'static str, &str)],
    bytes: Vec<u8>,
) -> Result<(), Status> {
    send_to(channel, GET_REPORT, token, metadata, bytes).await
}

const GET_REPORT: &str = "/orex.sharing.v1.SharingService/GetReport";

async fn send_to(
    channel: &Channel,
    path: &'static str,
    token: Option<&str>,
    metadata: &[(&'static str, &str)],
    bytes: Vec<u8>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone()).max_encoding_message_size(usize::MAX);
    grpc.ready().await.unwrap();
    let mut req = tonic::Request::new(bytes);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    grpc.unary(req, PathAndQuery::from_static(path), RawCodec)
        .await
        .map(|_| ())
}

/// Each kind of bytes a broken client can send, and what it is.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let mut nested = Vec::new();
    // Field 2, wire type 3 (start group), 100,000 deep: past prost's limit.
    nested.resize(100_000, 0x13);
    vec![
        ("invalid UTF-8 in report_id", vec![0x0a, 0x02, 0xff, 0xfe]),
        ("a length past the end", vec![0x0a, 0x10, b'a']),
        ("an invalid wire type", vec![0x0f, 0x01]),
        (
            "random bytes",
            vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37, 0x99, 0x42],
        ),
        ("100,000 nested groups", nested),
    ]
}

#[tokio::test]
async fn undecodable_requests_at_the_gateway_are_invalid_argument_and_recorded() {
    let stack = Stack::spawn().await;
    let ch = alice_at_the_gateway(&stack).await;
    let token = stack.token(TokenParams::of("us-alice"));
    for (what, bytes) in malformed() {
        let status = send_raw(&ch, Some(&token), bytes).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(
            reason_of(&status),
            Some(Reason::MalformedRequest),
            "{what}: {status:?}"
        );
        assert!(
            status
                .message()
                .starts_with("the request is not a valid message"),
            "{what}: {status:?}"
        );
    }
    // Over the 4 MiB limit: RESOURCE_EXHAUSTED, not OUT_OF_RANGE.
    let big = {
        let mut b = vec![0x0a];
        let len = 5 * 1024 * 1024u32;
        let mut v = len;
        while v >= 0x80 {
            b.push((v as u8) | 0x80);
            v >>= 7;
        }
        b.push(v as u8);
        b.resize(b.len() + len as usize, b'a');
        b
    };
    let status = send_raw(&ch, Some(&token), big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        reason_of(&status),
        Some(Reason::RequestTooLarge),
        "{status:?}"
    );

    // Every one is in the access log, with the caller's member and certificate.
    let log = stack.audit_log();
    let records: Vec<_> = log
        .range(0, log.size())
        .unwrap()
        .into_iter()
        .filter(|r| r.decision() == AccessDecision::Deny && r.method.ends_with("/GetReport"))
        .collect();
    let invalid = records
        .iter()
        .filter(|r| r.grpc_status_code == Some(Code::InvalidArgument as u32))
        .count();
    let large = records
        .iter()
        .filter(|r| r.grpc_status_code == Some(Code::ResourceExhausted as u32))
        .count();
    assert_eq!((invalid, large), (malformed().len(), 1), "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.member == "US" && r.certificate_fingerprint.len() == 64),
        "{records:?}"
    );

    // Nothing else is disturbed: the same connection serves a good call.
    let mut client = stack.client("us-alice").await;
    let status = client
        .get_report(GetReportRequest {
            report_id: uuid::Uuid::new_v4().to_string(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // An empty message is a valid GetReportRequest without a report_id:
    // the handler's INVALID_ARGUMENT, naming the field.
    let status = send_raw(&ch, Some(&token), Vec::new()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason_of(&status), Some(Reason::InvalidField), "{status:?}");
    let bad = tonic_types::StatusExt::get_details_bad_request(&status).unwrap();
    assert_eq!(bad.field_violations[0].field, "report_id");
    stack.stop().await;
}

#[tokio::test]
async fn undecodable_requests_at_a_service_are_invalid_argument_too() {
    let stack = Stack::spawn().await;
    let ch = stack
        .channel(
            stack.sharing_addr,
            "sharing",
            Some(stack.workload_identity("gateway")),
        )
        .await
        .unwrap();
    // As the gateway forwards a member's call.
    let principal = [
        ("x-orex-member", "US"),
        ("x-orex-subject", "alice"),
        ("x-orex-roles", "reader"),
    ];
    for (what, bytes) in malformed() {
        let status = send_raw_with(&ch, None, &principal, bytes)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(
            reason_of(&status),
            Some(Reason::MalformedRequest),
            "{what}: {status:?}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_method_not_served_is_refused_with_its_reason_and_recorded() {
    // The emergency service is in the contract, but this gateway has no
    // backend for it.
    let stack = Stack::spawn_configured(|l| {
        let path = l.config("gateway.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text
            .find("[backends.emergency]")
            .expect("an emergency backend");
        let end = start + text[start..].find("server_name").unwrap();
        let end = end + text[end..].find('\n').unwrap() + 1;
        std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
    })
    .await;
    let ch = alice_at_the_gateway(&stack).await;
    let token = stack.token(TokenParams::of("us-alice"));
    let path = "/orex.emergency.v1.EmergencyService/GetCase";
    let status = send_to(&ch, path, Some(&token), &[], Vec::new())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(
        reason_of(&status),
        Some(Reason::MethodNotServed),
        "{status:?}"
    );
    let log = stack.audit_log();
    let recorded = log
        .range(0, log.size())
        .unwrap()
        .into_iter()
        .any(|r| r.method == path && r.member == "US" && r.decision() == AccessDecision::Deny);
    assert!(recorded, "the refused call is in the access log");
    stack.stop().await;
}
