"""The adapter on a broker whose client listener wants a SASL login (SASL_PLAINTEXT): every
client it creates logs in (PLAIN or SCRAM-SHA-512), and refused credentials fail the start
with the broker's reason."""

import asyncio

import pytest

from adapters.errors import BackendError, InvalidRequestError
from adapters.kafka import KafkaBackend
from deploy.kafka import FAST_START, BrokerUnavailable, KafkaBroker

from .support import backend_settings, round_trip_through_every_client, skip_or_fail

USERS = {"alice": "alice-secret"}
STEP = 60


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory):
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-sasl"), jvm_options=FAST_START, sasl_users=USERS)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        skip_or_fail(exc)
    yield broker
    broker.stop()


def sasl_backend(broker, mechanism: str, password: str, **overrides) -> KafkaBackend:
    return KafkaBackend(broker.bootstrap, **backend_settings(**overrides), security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism=mechanism, sasl_username="alice", sasl_password=password)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
async def test_every_client_of_the_adapter_logs_in_and_a_task_makes_its_round_trip(sasl_kafka, mechanism):
    backend = sasl_backend(sasl_kafka, mechanism, USERS["alice"])
    async with asyncio.timeout(STEP):
        await backend.start()
    await round_trip_through_every_client(backend, STEP)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
async def test_a_wrong_password_fails_the_start_naming_the_refused_login(sasl_kafka, mechanism):
    backend = sasl_backend(sasl_kafka, mechanism, "not-the-password", request_timeout=10)
    async with asyncio.timeout(STEP):
        with pytest.raises(InvalidRequestError) as refused:
            await backend.start()
    message = str(refused.value)
    assert "SASL login" in message and "alice" in message and mechanism in message
    assert "not-the-password" not in message


async def test_a_client_without_a_login_cannot_start_on_a_sasl_listener(sasl_kafka):
    backend = KafkaBackend(sasl_kafka.bootstrap, **backend_settings(request_timeout=5))
    async with asyncio.timeout(STEP):
        with pytest.raises(BackendError):
            await backend.start()


def test_sasl_settings_without_a_mechanism_or_login_are_refused_before_any_connection():
    with pytest.raises(ValueError, match="sasl_mechanism"):
        KafkaBackend("127.0.0.1:1", security_protocol="SASL_PLAINTEXT", sasl_username="a", sasl_password="b")
    with pytest.raises(ValueError, match="sasl_username"):
        KafkaBackend("127.0.0.1:1", security_protocol="SASL_SSL", sasl_mechanism="PLAIN")
    with pytest.raises(ValueError, match="security_protocol"):
        KafkaBackend("127.0.0.1:1", sasl_mechanism="PLAIN")
    with pytest.raises(ValueError, match="security_protocol must be one of"):
        KafkaBackend("127.0.0.1:1", security_protocol="TLS")
    with pytest.raises(ValueError, match="TLS files"):
        KafkaBackend("127.0.0.1:1", security_protocol="SSL", ssl_cafile="/nonexistent/ca.pem")
