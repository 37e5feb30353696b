"""OTLP/gRPC per the spec: RetryInfo when overloaded, API keys, TLS, message size limit."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import threading

import grpc
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from infersight_collector.auth import ApiKeys
from infersight_collector.otlp_grpc import SERVICE, create_server
from infersight_collector.otlp_http import create_http_server
from infersight_collector.pipeline import Pipeline

from test_otlp_http import _decoded_one, _protobuf_of, json_request, rows

EXPORT = f"/{SERVICE}/Export"


def call(channel, payload: bytes, metadata=()):
    return channel.unary_unary(EXPORT, request_serializer=None,
                               response_deserializer=ExportTraceServiceResponse.FromString)(
        payload, timeout=10, metadata=metadata)


@pytest.fixture
def overloaded(store):
    """A real pipeline whose queue is full: not started, one batch waiting, room for one span."""
    pipeline = Pipeline(store, max_queued_spans=1)
    pipeline.submit(_decoded_one())
    yield pipeline
    with contextlib.suppress(RuntimeError):  # already started by the test
        pipeline.start()
    pipeline.stop()


def test_overloaded_answers_unavailable_with_retry_info_in_both_places(overloaded):
    server, port = create_server(overloaded, "127.0.0.1", 0)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, \
                pytest.raises(grpc.RpcError) as raised:
            call(channel, _protobuf_of(json_request()))
    finally:
        server.stop(None)
    error = raised.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "queue full" in error.details()
    trailers = dict(error.trailing_metadata())
    retry = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.ToTimedelta().total_seconds() > 0
    status = Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert status.message == error.details()
    detail = RetryInfo()
    assert status.details[0].Unpack(detail) and detail == retry


def test_python_exporter_waits_as_told_and_then_delivers(overloaded, store):
    server, port = create_server(overloaded, "127.0.0.1", 0)
    server.start()
    # Free the queue while the exporter waits for its retry: it must then succeed.
    threading.Timer(0.3, overloaded.start).start()
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True, timeout=20)
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("retried")
    span.end()
    try:
        assert exporter.export([span]) == SpanExportResult.SUCCESS
    finally:
        server.stop(None)
    assert "retried" in set(rows(store).SpanName)


KEYS = ApiKeys({"sk-alpha": "alpha", "sk-beta": "beta"})


def test_grpc_api_keys_stamp_the_project_and_refuse_bad_keys(store):
    pipeline = Pipeline(store).start()
    server, port = create_server(pipeline, "127.0.0.1", 0, api_keys=KEYS)
    server.start()
    body = json_request()
    body["resourceSpans"][0]["resource"]["attributes"].append(
        {"key": "infersight.project.id", "value": {"stringValue": "spoofed"}})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for metadata, fragment in (((), "missing API key"),
                                       ((("authorization", "Bearer sk-nope"),), "unknown API key"),
                                       ((("authorization", "Basic eA=="),), "Bearer <key>")):
                with pytest.raises(grpc.RpcError) as raised:
                    call(channel, _protobuf_of(body), metadata)
                assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert fragment in raised.value.details()
            call(channel, _protobuf_of(body), (("authorization", "Bearer sk-beta"),))
    finally:
        server.stop(None)
        pipeline.stop()
    got = rows(store)
    assert list(got.ProjectId) == ["beta"]


def test_message_size_limit_is_configurable(store):
    pipeline = Pipeline(store).start()
    server, port = create_server(pipeline, "127.0.0.1", 0, max_message_bytes=1024)
    server.start()
    body = json_request()
    body["resourceSpans"][0]["resource"]["attributes"].append(
        {"key": "padding", "value": {"stringValue": "x" * 2000}})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as raised:
                call(channel, _protobuf_of(body))
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            call(channel, _protobuf_of(json_request()))  # the next one fits
    finally:
        server.stop(None)
        pipeline.stop()
    assert len(rows(store)) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost / 127.0.0.1, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_on_both_listeners(store, certificate):
    cert, key = certificate
    pipeline = Pipeline(store).start()
    grpc_server, port = create_server(pipeline, "127.0.0.1", 0, tls=(cert, key), api_keys=KEYS)
    grpc_server.start()
    http_server = create_http_server(pipeline, "127.0.0.1", 0, tls=(cert, key), api_keys=KEYS)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    url = f"https://localhost:{http_server.server_address[1]}/v1/traces"
    try:
        trust = grpc.ssl_channel_credentials(root_certificates=open(cert, "rb").read())
        with grpc.secure_channel(f"localhost:{port}", trust) as channel:
            call(channel, _protobuf_of(json_request(name="over grpc tls")),
                 (("authorization", "Bearer sk-alpha"),))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain, \
                pytest.raises(grpc.RpcError):
            call(plain, _protobuf_of(json_request(name="plain")))
        reply = requests.post(url, json=json_request(name="over https", span_id="0102030405060708"),
                              headers={"Authorization": "Bearer sk-alpha"}, verify=cert, timeout=10)
        assert reply.status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(url.replace("https", "http"), json=json_request(), timeout=10)
        # the server survives a plaintext client and still serves TLS
        assert requests.post(url, json=json_request(name="again"), verify=cert, timeout=10,
                             headers={"Authorization": "Bearer sk-alpha"}).status_code == 200
    finally:
        grpc_server.stop(None)
        http_server.shutdown()
        http_server.server_close()
        pipeline.stop()
    got = rows(store)
    assert sorted(got.SpanName) == ["again", "over grpc tls", "over https"]
    assert set(got.ProjectId) == {"alpha"}
