"""rocketmq.access_key / secret_key / secret_key_env / tls / tls_ca: what the settings loader and
the backend refuse, with the key named (no cluster needed)."""

import base64
import hmac

import pytest

from adapters.errors import InvalidRequestError
from adapters.rocketmq import RocketMQBackend
from adapters.rocketmq.credentials import Credentials
from gateway.settings import ConfigError, load

PREFIX = "TOPICBRIDGE_ROCKETMQ__"


def settings(**values: str) -> dict:
    return load(None, env={"TOPICBRIDGE_BACKEND": "rocketmq", **{PREFIX + k.upper(): v for k, v in values.items()}})


def test_an_access_key_with_its_secret_from_an_environment_variable_is_accepted():
    loaded = settings(access_key="tb", secret_key_env="RMQ_SECRET", tls_ca="/etc/ca.pem")["rocketmq"]
    assert (loaded["access_key"], loaded["secret_key_env"], loaded["tls_ca"], loaded["tls"]) == (
        "tb", "RMQ_SECRET", "/etc/ca.pem", False)


@pytest.mark.parametrize(("values", "key", "reason"), [
    ({"access_key": "tb"}, "rocketmq", "'secret_key' is a required property"),
    ({"secret_key": "s"}, "rocketmq", "'access_key' is a dependency of 'secret_key'"),
    ({"secret_key_env": "X"}, "rocketmq", "'access_key' is a dependency of 'secret_key_env'"),
    ({"access_key": "tb", "secret_key": "s", "secret_key_env": "X"}, "rocketmq", "does not allow 'X'"),
    ({"access_key": "t b", "secret_key": "s"}, "rocketmq.access_key", "does not match"),
    ({"access_key": "tb", "secret_key_env": "1-bad"}, "rocketmq.secret_key_env", "does not match"),
    ({"tls": "perhaps"}, "rocketmq.tls", "is not a boolean"),
])
def test_malformed_credential_and_tls_settings_are_refused_by_the_loader(values, key, reason):
    with pytest.raises(ConfigError) as caught:
        settings(**values)
    assert caught.value.key == key and reason in caught.value.reason


def test_a_secret_reference_to_an_unset_variable_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.delenv("TB_NO_SUCH_SECRET", raising=False)
    with pytest.raises(InvalidRequestError) as caught:
        RocketMQBackend("127.0.0.1:1", access_key="tb", secret_key_env="TB_NO_SUCH_SECRET")
    assert caught.value.field == "rocketmq.secret_key_env" and caught.value.value == "TB_NO_SUCH_SECRET"


def test_a_tls_ca_that_is_not_a_pem_certificate_is_refused(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(InvalidRequestError, match="not a PEM certificate"):
        RocketMQBackend("127.0.0.1:1", tls_ca=str(bogus))
    with pytest.raises(InvalidRequestError, match="cannot read the CA file"):
        RocketMQBackend("127.0.0.1:1", tls_ca=str(tmp_path / "missing.pem"))


def test_signatures_are_hmac_sha1_of_the_date_for_grpc_and_of_sorted_fields_plus_body_for_remoting():
    creds = Credentials("ak", "sk")
    assert creds.authorization("20261207T100000Z") == (
        "MQv2-HMAC-SHA1 Credential=ak, SignedHeaders=x-mq-date-time, "
        "Signature=" + hmac.new(b"sk", b"20261207T100000Z", "sha1").hexdigest().upper())
    signed = creds.sign_remoting({"topic": "t", "b": "2"}, b"BODY")
    # Java's TreeMap order: "AccessKey" < "b" < "topic" (upper case sorts first).
    expected = hmac.new(b"sk", b"ak" + b"2" + b"t" + b"BODY", "sha1").digest()
    assert signed["AccessKey"] == "ak" and signed["Signature"] == base64.b64encode(expected).decode()
    assert "sk" not in repr(creds)
