"""The adapter on a broker whose client listener speaks TLS (SSL, the broker's certificate signed
by a CA made in the test): every client it creates verifies the broker against `ssl_cafile`; a
client trusting another CA, or one speaking plaintext, cannot start and says so."""

import asyncio

import pytest

from adapters.errors import BackendError, InvalidRequestError
from adapters.kafka import KafkaBackend
from deploy.kafka import FAST_START, BrokerUnavailable, KafkaBroker, Tls
from tests.certs import make_certificates

from .support import backend_settings, round_trip_through_every_client, skip_or_fail

STEP = 60


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory):
    certs = make_certificates(tmp_path_factory.mktemp("kafka-certs"))
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-tls"), jvm_options=FAST_START,
                         tls=Tls(certs["cert"], certs["key"], certs["ca"]))
    try:
        broker.start()
    except BrokerUnavailable as exc:
        skip_or_fail(exc)
    yield broker, certs
    broker.stop()


async def test_every_client_of_the_adapter_verifies_the_broker_and_a_task_makes_its_round_trip(tls_kafka):
    broker, certs = tls_kafka
    backend = KafkaBackend(broker.bootstrap, **backend_settings(), security_protocol="SSL",
                           ssl_cafile=str(certs["ca"]))
    async with asyncio.timeout(STEP):
        await backend.start()
    await round_trip_through_every_client(backend, STEP)


async def test_a_client_trusting_another_ca_cannot_start_and_is_told_to_check_its_ca(tls_kafka, tmp_path):
    broker, _ = tls_kafka
    stranger = make_certificates(tmp_path / "other-ca")
    backend = KafkaBackend(broker.bootstrap, **backend_settings(request_timeout=5), security_protocol="SSL",
                           ssl_cafile=str(stranger["ca"]))
    async with asyncio.timeout(STEP):
        with pytest.raises(InvalidRequestError) as refused:
            await backend.start()
    assert "certificate did not verify" in str(refused.value) and "ssl_cafile" in str(refused.value)


async def test_a_plaintext_client_cannot_start_on_a_tls_listener_and_is_told_about_security_protocol(tls_kafka):
    broker, _ = tls_kafka
    backend = KafkaBackend(broker.bootstrap, **backend_settings(request_timeout=5))
    async with asyncio.timeout(STEP):
        with pytest.raises(BackendError) as refused:
            await backend.start()
    assert "security_protocol" in str(refused.value)


def test_broker_tls_files_make_a_pem_key_store_and_an_ssl_listener(tmp_path):
    from deploy.kafka import _client_listener_properties, _tls_properties

    certs = make_certificates(tmp_path / "certs")
    tls = Tls(certs["cert"], certs["key"], certs["ca"])
    listener = _client_listener_properties(9092, 9093, {}, tls)
    assert listener["listeners"].startswith("SSL://127.0.0.1:9092,")
    assert _client_listener_properties(9092, 9093, {"u": "p"}, tls)["inter.broker.listener.name"] == "SASL_SSL"
    store = _tls_properties(tmp_path, tls)
    keystore = (tmp_path / "keystore.pem").read_text()
    assert store["ssl.keystore.type"] == "PEM" and "PRIVATE KEY" in keystore and "CERTIFICATE" in keystore
    assert (tmp_path / "keystore.pem").stat().st_mode & 0o077 == 0
