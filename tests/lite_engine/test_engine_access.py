"""Who may call `topicbridge engine`: TLS (and mutual TLS) with certificates made here, a bearer
token checked on every call, and no unauthenticated engine on a host other machines can reach."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import subprocess
import sys

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters import errors
from adapters.base import Message
from adapters.lite_remote import RemoteLiteBackend
from lite_engine.access import Access, bearer
from lite_engine.proto import engine_pb2 as pb
from lite_engine.proto import engine_pb2_grpc as pb_grpc
from lite_engine.service import serve
from tests.lite_engine.engine_process import ROOT, EngineProcess
from tests.spawned import TOPICBRIDGE, clean_env

TOKEN = "engine-token-0123456789"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, issuer_key, issuer: x509.Name | None, *, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer or _name(subject))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key, cert.public_bytes(serialization.Encoding.PEM), pem_key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_pem, _ = _issue("test ca", None, None, ca=True)
    ca_name = _name("test ca")
    files = {"ca": ca_pem}
    _, files["server_cert"], files["server_key"] = _issue("engine", ca_key, ca_name)
    _, files["client_cert"], files["client_key"] = _issue("gateway", ca_key, ca_name)
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(data)
    (folder / "token").write_text(TOKEN + "\n")
    (folder / "wrong-token").write_text("not-the-token\n")
    paths["token"], paths["wrong_token"] = folder / "token", folder / "wrong-token"
    return {k: str(v) for k, v in paths.items()}, files


@pytest.fixture
async def serving(make_engine):
    """`await serving(access)` -> the target of an engine in this process behind that access."""
    servers = []

    async def start(access: Access) -> str:
        server, port = await serve(await make_engine(), access=access)
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(1)


@pytest.fixture
async def connect():
    opened = []

    async def start(target: str, **options) -> RemoteLiteBackend:
        b = RemoteLiteBackend(target, connect_timeout=2.0, **options)
        opened.append(b)
        await b.start()
        return b

    yield start
    for b in opened:
        await b.close()


async def _round_trip(backend: RemoteLiteBackend) -> None:
    consumer = await backend.lite_consumer("replies", "gateway")
    await consumer.subscribe(["r1"])
    await backend.publish("replies", Message(b"hello"), lite_topic="r1")
    [d] = await consumer.poll(wait=5)
    await d.ack()
    assert d.body == b"hello"


async def test_calls_without_the_token_are_unauthenticated_and_with_it_are_served(serving, connect, pki):
    paths, _ = pki
    target = await serving(Access(token=TOKEN))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.LiteEngineStub(channel)
        for metadata in (None, bearer("not-the-token"), (("authorization", TOKEN),)):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.Health(pb.HealthRequest(), timeout=5, metadata=metadata)
            assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stream = stub.PollStream()
        await stream.write(pb.PollRequest(client_id="c", max_messages=1))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stream.read()
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (await stub.Health(pb.HealthRequest(), timeout=5, metadata=bearer(TOKEN))).ok
    with pytest.raises(errors.BackendError, match="UNAUTHENTICATED"):
        await connect(target, token_file=paths["wrong_token"])
    await _round_trip(await connect(target, token_file=paths["token"]))


async def test_a_tls_engine_serves_a_client_that_trusts_its_ca_and_refuses_plaintext(serving, connect, pki):
    paths, pem = pki
    target = await serving(Access(cert=pem["server_cert"], key=pem["server_key"]))
    await _round_trip(await connect(target, tls_ca=paths["ca"]))
    with pytest.raises(errors.BackendUnavailableError):
        await connect(target)


async def test_mutual_tls_refuses_a_client_without_a_certificate(serving, connect, pki):
    paths, pem = pki
    target = await serving(Access(cert=pem["server_cert"], key=pem["server_key"], client_ca=pem["ca"]))
    with pytest.raises(errors.BackendUnavailableError):
        await connect(target, tls_ca=paths["ca"])
    await _round_trip(await connect(target, tls_ca=paths["ca"], tls_cert=paths["client_cert"],
                                    tls_key=paths["client_key"]))


def test_an_engine_on_a_non_loopback_host_without_a_token_refuses_to_start():
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "engine", "--host", "0.0.0.0", "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "without a token" in done.stderr


async def test_an_engine_process_with_tls_and_a_token_serves_on_every_interface(tmp_path, connect, pki):
    paths, _ = pki
    proc = EngineProcess(None, host="0.0.0.0", extra_args=[
        "--tls-cert", paths["server_cert"], "--tls-key", paths["server_key"], "--token-file", paths["token"]])
    try:
        proc.start()
        backend = await connect(f"127.0.0.1:{proc.port}", tls_ca=paths["ca"], token_file=paths["token"])
        await _round_trip(backend)
    finally:
        proc.kill()


@pytest.mark.parametrize("options, field", [
    ({"tls_ca": "/nonexistent/ca.pem"}, "lite.tls_ca"),
    ({"tls_cert": "/nonexistent/cert.pem"}, "lite.tls_key"),
    ({"token_file": "/nonexistent/token"}, "lite.token_file"),
])
def test_an_unreadable_or_incomplete_security_setting_names_itself(options, field):
    with pytest.raises(errors.InvalidRequestError) as failed:
        RemoteLiteBackend("127.0.0.1:1", **options)
    assert failed.value.field == field


async def test_the_gateway_settings_reach_an_engine_with_tls_and_a_token(serving, pki, tmp_path):
    from adapters.factory import open_backend
    from gateway import settings

    paths, pem = pki
    target = await serving(Access(cert=pem["server_cert"], key=pem["server_key"], token=TOKEN))
    (tmp_path / "config.toml").write_text(
        f'[lite]\nmode = "remote"\ntarget = "{target}"\ntls_ca = "{paths["ca"]}"\ntoken_file = "{paths["token"]}"\n')
    backend = open_backend(settings.load(tmp_path / "config.toml", env={}))
    await backend.start()
    try:
        await _round_trip(backend)
    finally:
        await backend.close()


# ---------------------------------------------------------------- the embedded engine's lite.listen face

def _embedded(tmp_path, lite: str):
    from adapters.factory import open_backend
    from gateway import settings
    (tmp_path / "config.toml").write_text(f"[lite]\ndata_dir = \"{tmp_path / 'engine'}\"\n{lite}")
    return open_backend(settings.load(tmp_path / "config.toml", env={}))


@contextlib.asynccontextmanager
async def _listening(tmp_path, lite: str):
    """A started embedded engine built from `lite` settings; yields the address it listens on."""
    embedded = _embedded(tmp_path, lite)
    await embedded.start()
    try:
        yield embedded.listening
    finally:
        await embedded.close()


async def test_a_gateways_embedded_engine_serves_listen_with_tls_and_a_token_and_refuses_calls_without_it(
        tmp_path, connect, pki):
    paths, _ = pki
    async with _listening(tmp_path, f'listen = "127.0.0.1:0"\nlisten_tls_cert = "{paths["server_cert"]}"\n'
                                    f'listen_tls_key = "{paths["server_key"]}"\n'
                                    f'listen_token_file = "{paths["token"]}"\n') as target:
        with pytest.raises(errors.BackendError, match="UNAUTHENTICATED"):
            await connect(target, tls_ca=paths["ca"], token_file=paths["wrong_token"])
        with pytest.raises(errors.BackendError):
            await connect(target, token_file=paths["token"])      # plaintext to a TLS face
        await _round_trip(await connect(target, tls_ca=paths["ca"], token_file=paths["token"]))


async def test_mutual_tls_on_listen_refuses_a_worker_without_a_certificate(tmp_path, connect, pki):
    paths, _ = pki
    async with _listening(tmp_path, f'listen = "127.0.0.1:0"\nlisten_tls_cert = "{paths["server_cert"]}"\n'
                                    f'listen_tls_key = "{paths["server_key"]}"\n'
                                    f'listen_tls_client_ca = "{paths["ca"]}"\n') as target:
        with pytest.raises(errors.BackendError):
            await connect(target, tls_ca=paths["ca"])
        await _round_trip(await connect(target, tls_ca=paths["ca"], tls_cert=paths["client_cert"],
                                        tls_key=paths["client_key"]))


@pytest.mark.parametrize("lite, field", [
    ('listen = "0.0.0.0:0"\n', "lite.listen"),
    ('listen = "0.0.0.0:0"\nlisten_token_file = "/nonexistent/token"\n', "lite.listen_token_file"),
    ('listen_tls_cert = "/nonexistent/cert.pem"\n', "lite.listen_tls_key"),
    ('listen_tls_client_ca = "/nonexistent/ca.pem"\n', "lite.listen_tls_client_ca"),
])
def test_an_exposed_listen_without_a_token_or_a_bad_listen_file_names_its_setting(tmp_path, lite, field):
    with pytest.raises(errors.InvalidRequestError) as failed:
        _embedded(tmp_path, lite)
    assert failed.value.field == field


def test_a_gateway_listening_on_every_interface_without_a_token_refuses_to_start(tmp_path):
    env = clean_env(lite__listen="0.0.0.0:0", lite__data_dir=str(tmp_path / "engine"))
    done = subprocess.run([*TOPICBRIDGE, "serve", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "lite.listen" in done.stderr and "without a token" in done.stderr
