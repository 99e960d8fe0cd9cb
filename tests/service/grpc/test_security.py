"""TLS, mutual TLS and bearer tokens: what is refused, what stays open."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from pydantic import SecretStr

from digitnet.service.api._generated import oip_pb2 as oip
from digitnet.service.client.digit_client import DigitClient, RemoteError, health_status
from digitnet.service.client.settings import ClientSettings
from digitnet.service.contract.errors import ConfigurationError

from ...conftest import GOLDEN
from ..certs import make_pki
from ..conftest import running_server

IMAGE = (GOLDEN / "8_mnist.png").read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls(pki: Path) -> None:
    with running_server(tls_cert=pki / "server.pem", tls_key=pki / "server.key") as server:
        with DigitClient(server.address, settings=ClientSettings(tls_ca=pki / "ca.pem")) as client:
            assert client.classify(IMAGE).label == 8
        no_retry = ClientSettings(retry_seconds=0)  # refused for good: no point in waiting for it to change
        with DigitClient(server.address, timeout=2, attempts=2, settings=no_retry) as plaintext, pytest.raises(RemoteError, match="UNAVAILABLE"):
            plaintext.classify(IMAGE)
        assert health_status(server.address, settings=ClientSettings(tls_ca=pki / "ca.pem"))[0] == "SERVING"


def test_mutual_tls(pki: Path, tmp_path: Path) -> None:
    with running_server(tls_cert=pki / "server.pem", tls_key=pki / "server.key", tls_client_ca=pki / "ca.pem") as server:
        with_cert = ClientSettings(tls_ca=pki / "ca.pem", tls_client_cert=pki / "client.pem", tls_client_key=pki / "client.key")
        with DigitClient(server.address, settings=with_cert) as client:
            assert client.classify(IMAGE).label == 8
        with DigitClient(server.address, timeout=2, attempts=2, settings=ClientSettings(tls_ca=pki / "ca.pem", retry_seconds=0)) as no_cert:
            with pytest.raises(RemoteError, match="UNAVAILABLE"):
                no_cert.classify(IMAGE)
        other = make_pki(tmp_path, ca_name="someone else's CA")  # a client certificate from a CA the server does not trust
        stranger = ClientSettings(tls_ca=pki / "ca.pem", tls_client_cert=other / "client.pem", tls_client_key=other / "client.key", retry_seconds=0)
        with DigitClient(server.address, timeout=2, attempts=2, settings=stranger) as client, pytest.raises(RemoteError, match="UNAVAILABLE"):
            client.classify(IMAGE)


def test_bearer_token() -> None:
    with running_server(token=SecretStr("s3cret")) as server:
        for token, works in ((None, False), ("wrong", False), ("s3cret", True)):
            settings = ClientSettings(token=SecretStr(token) if token else None)
            with DigitClient(server.address, settings=settings) as client:
                if works:
                    assert client.classify(IMAGE).label == 8
                else:
                    with pytest.raises(RemoteError, match="UNAUTHENTICATED: missing or wrong bearer token"):
                        client.classify(IMAGE)
        assert health_status(server.address)[0] == "SERVING"  # health checks stay open
        with grpc.insecure_channel(server.address) as channel:
            ready = channel.unary_unary("/inference.GRPCInferenceService/ServerReady", lambda m: b"", oip.ServerReadyResponse.FromString)
            assert ready(b"").ready  # OIP liveness and readiness stay open too (Kubernetes probes)
            metadata = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata", oip.ModelMetadataRequest.SerializeToString, lambda b: b)
            with pytest.raises(grpc.RpcError) as caught:  # the rest of the OIP is guarded
                metadata(oip.ModelMetadataRequest(name="digitnet"))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_token_is_checked_before_the_request_is_read() -> None:
    # An unauthenticated 10 MB request must cost the server neither that memory nor its parsing: the
    # request of a refused call is never read (30 such requests of 60 MB once took a server to 3.45 GB).
    parsed: list[int] = []

    def probe(server: grpc.aio.Server) -> None:
        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return b"%d" % len(request)

        def deserialize(data: bytes) -> bytes:
            parsed.append(len(data))
            return data

        handler = grpc.unary_unary_rpc_method_handler(echo, request_deserializer=deserialize)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Probe", {"Echo": handler}),))

    with running_server(probe, token=SecretStr("s3cret"), max_message_bytes=12_000_000) as server:
        with grpc.insecure_channel(server.address) as channel:
            call = channel.unary_unary("/test.Probe/Echo")
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(grpc.RpcError) as caught:
                    call(bytes(10_000_000), metadata=metadata, timeout=10)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert parsed == [], "the server read the request of a call it refused"
            assert call(bytes(10_000_000), metadata=(("authorization", "Bearer s3cret"),), timeout=10) == b"10000000"
            assert parsed == [10_000_000]


def test_tls_misconfiguration_is_a_clear_error(pki: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs both --tls-cert and --tls-key"):
        with running_server(tls_cert=pki / "server.pem"):
            pass
    with pytest.raises(ConfigurationError, match="cannot read TLS file"):
        with running_server(tls_cert=pki / "missing.pem", tls_key=pki / "server.key"):
            pass


def test_two_authorization_entries_are_refused_whichever_comes_first_on_both_transports() -> None:
    from digitnet.service.api._generated import digitnet_pb2 as pb
    from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc

    with running_server(token=SecretStr("s3cret"), http=True) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DigitClassifierStub(channel)
        for entries in (["Bearer s3cret", "Bearer wrong"], ["Bearer wrong", "Bearer s3cret"]):
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=[("authorization", value) for value in entries])
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert _raw_status(server, entries) == 401  # raw: HTTP clients keep one header per name
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=[("authorization", "Bearer s3cret")]).parameters == 13_002
        assert _raw_status(server, ["Bearer s3cret"]) == 200


def _raw_status(server: object, authorizations: list[str]) -> int:
    import socket

    port = server.http.port  # type: ignore[attr-defined]
    headers = "".join(f"Authorization: {value}\r\n" for value in authorizations)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(f"GET /v2/models/digitnet HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        return int(connection.recv(64).split()[1])


def test_a_remote_error_carries_the_servers_status_as_its_code() -> None:
    with running_server(token=SecretStr("s3cret")) as server, DigitClient(server.address) as client:
        with pytest.raises(RemoteError) as caught:
            client.classify(IMAGE)
    assert caught.value.status == caught.value.code == "UNAUTHENTICATED"
