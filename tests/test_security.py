"""TLS, mutual TLS, bearer tokens, the stream limit and a taken port, with certificates this
test makes with openssl and real gRPC connections on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import stream_frames
from grpc_health.v1 import health_pb2, health_pb2_grpc

import splitcast
from splitcast.cloud.options import ServeOptions
from splitcast.cloud.security import TlsFiles
from splitcast.edge.credentials import ClientSecurity
from splitcast.models.registry import build
from splitcast.v1 import splitcast_pb2 as pb
from splitcast.v1 import splitcast_pb2_grpc as pb_grpc
from splitcast.v1.auth import bearer

TOKEN = "s3cret-token-for-tests"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _authority(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}")  # fmt: skip
    return cert, key


def _signed(folder: Path, name: str, authority: tuple[Path, Path]) -> tuple[Path, Path]:
    key, request, cert = (folder / f"{name}.{s}" for s in ("key", "csr", "crt"))
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(request),
             "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", str(request), "-CA", str(authority[0]),
             "-CAkey", str(authority[1]), "-CAcreateserial", "-out", str(cert), "-days", "2",
             "-extfile", str(extensions))  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("pki")
    ours, theirs = _authority(folder, "our-ca"), _authority(folder, "other-ca")
    return {
        "ca": ours,
        "server": _signed(folder, "server", ours),
        "client": _signed(folder, "client", ours),
        "stranger": _signed(folder, "stranger", theirs),
    }


@pytest.fixture(scope="module")
def mtls_server(pki: dict[str, tuple[Path, Path]]) -> Iterator[splitcast.serve]:
    options = ServeOptions(tls=TlsFiles(*pki["server"], client_ca=pki["ca"][0]), token=TOKEN)
    with splitcast.serve(build("tiny"), options=options) as server:
        yield server


def _info(address: str, security: ClientSecurity) -> pb.ServerInfo:
    options = [("grpc.ssl_target_name_override", "localhost")] if security.tls else []
    with security.channel(address, options) as channel:
        stub = pb_grpc.SplitInferenceStub(channel)
        return stub.Info(pb.InfoRequest(), timeout=5, metadata=security.metadata)


def test_mutual_tls_with_the_right_token_streams(mtls_server, pki) -> None:
    security = ClientSecurity(True, pki["ca"][0], *pki["client"], token=TOKEN)
    assert _info(mtls_server.address, security).model_name == "tiny"
    with splitcast.EdgeClient(build("tiny"), server=mtls_server.address, security=security) as edge:
        results = stream_frames(edge)
    assert any(result.mode == "combined" for result in results)
    assert edge.stats.answers_received > 0


@pytest.mark.parametrize(
    "who",
    ["plaintext", "no client certificate", "certificate from another CA"],
)
def test_mutual_tls_refuses_clients_it_cannot_trust(mtls_server, pki, who: str) -> None:
    security = {
        "plaintext": ClientSecurity(token=TOKEN),
        "no client certificate": ClientSecurity(True, pki["ca"][0], token=TOKEN),
        "certificate from another CA": ClientSecurity(
            True, pki["ca"][0], *pki["stranger"], token=TOKEN
        ),
    }[who]
    with pytest.raises(grpc.RpcError) as refused:
        _info(mtls_server.address, security)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x"])
def test_a_missing_or_wrong_token_is_unauthenticated(mtls_server, pki, token) -> None:
    security = ClientSecurity(True, pki["ca"][0], *pki["client"], token=token)
    with pytest.raises(grpc.RpcError) as refused:
        _info(mtls_server.address, security)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2.HealthCheckRequest()  # health follows the same rule
    with (
        security.channel(mtls_server.address, []) as channel,
        pytest.raises(grpc.RpcError) as unhealthy,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health, timeout=5, metadata=security.metadata)
    assert unhealthy.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with (
        security.channel(mtls_server.address, []) as channel,
        pytest.raises(grpc.RpcError) as closed,
    ):
        list(pb_grpc.SplitInferenceStub(channel).Stream(iter(()), metadata=security.metadata))
    assert closed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert bearer(TOKEN) not in str(refused.value.details())


def test_tls_without_client_certificates_and_open_health(pki) -> None:
    options = ServeOptions(tls=TlsFiles(*pki["server"]), token=TOKEN, open_health=True)
    with splitcast.serve(build("tiny"), options=options) as server:
        anonymous = ClientSecurity(True, pki["ca"][0])
        with anonymous.channel(server.address, []) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert _info(server.address, ClientSecurity(True, pki["ca"][0], token=TOKEN))
        with pytest.raises(grpc.RpcError):
            _info(server.address, ClientSecurity(token=TOKEN))  # no plaintext beside TLS


def test_streams_beyond_the_limit_are_refused_while_the_others_stream() -> None:
    with splitcast.serve(build("tiny"), options=ServeOptions(max_streams=2)) as server:
        edges = [splitcast.EdgeClient(build("tiny"), server=server.address) for _ in range(2)]
        for edge in edges:
            edge.start()
            assert edge.wait_connected(30.0)
        with (
            grpc.insecure_channel(server.address) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            list(pb_grpc.SplitInferenceStub(channel).Stream(iter(())))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 2 streams" in refused.value.details()
        for edge in edges:
            before = edge.stats.answers_received
            results = stream_frames(edge, frames=10)
            assert edge.stats.answers_received > before
            assert any(result.mode == "combined" for result in results)
            edge.close()


def test_serve_on_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "splitcast", "serve", "--model", "tiny", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 60  # refused before loading a model
