"""RocketMQ statuses -> port errors, and stubs that do not touch the user's home directory."""

import os
import subprocess
import sys

import grpc
import pytest

from adapters import errors
from adapters.rocketmq.admin import _loads
from adapters.rocketmq.protocol import pb, rpc_error, status_error


@pytest.mark.parametrize("code, error", [
    (pb.INVALID_RECEIPT_HANDLE, errors.UnknownReceiptError),
    (pb.ILLEGAL_LITE_TOPIC, errors.InvalidRequestError),
    (pb.MESSAGE_BODY_TOO_LARGE, errors.MessageTooLargeError),
    (pb.TOPIC_NOT_FOUND, errors.NotFoundError),
    (pb.LITE_SUBSCRIPTION_QUOTA_EXCEEDED, errors.QuotaExceededError),
    (pb.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, errors.ConflictError),
    (pb.TOO_MANY_REQUESTS, errors.BackendUnavailableError),
    (pb.PROXY_TIMEOUT, errors.BackendUnavailableError),
    (pb.ILLEGAL_MESSAGE_PROPERTY_KEY, errors.InvalidRequestError),
    (pb.NOT_IMPLEMENTED, errors.BackendError),
])
def test_each_status_code_becomes_the_matching_port_error(code, error):
    got = status_error(pb.Status(code=code, message="m"), "doing x", value="v", receipt="r", limit=3)
    assert type(got) is error


class _FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code, details):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_transport_failures_mean_retry_later_and_unknown_groups_are_not_found():
    assert isinstance(rpc_error(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down"), "x"),
                      errors.BackendUnavailableError)
    missing = rpc_error(_FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT,
                                      "process client telemetryCommand failed. group not found: gw|p"), "x")
    assert isinstance(missing, errors.NotFoundError) and missing.name == "gw|p"
    wrong = rpc_error(_FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "regular group cannot use LITE mode"), "x")
    assert isinstance(wrong, errors.ConflictError)


def test_remoting_json_with_unquoted_integer_keys_is_read():
    assert _loads(b'{"brokerAddrs":{0:"127.0.0.1:10911", 1:"h:2"}}') == {
        "brokerAddrs": {"0": "127.0.0.1:10911", "1": "h:2"}}


def test_importing_the_adapter_writes_nothing_under_home(tmp_path):
    code = "import adapters.rocketmq, adapters.rocketmq.protocol as p; assert p.pb.Code.OK == 20000"
    env = {**os.environ, "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.getcwd(), timeout=60)
    assert list(tmp_path.iterdir()) == []
