"""RocketMQ 5 gRPC protocol: the stubs, the status codes, and what each failure means for the port.

The stubs ship in PyPI's `rocketmq-python-client` (`rocketmq.grpc_protocol`). Importing anything
under `rocketmq` normally runs the package's `__init__`, which imports the whole client and opens
`~/logs/rocketmq_python/rocketmq_client.log`. `load_stubs` imports only the generated modules,
with a bare placeholder standing in for the package, so nothing is written under the user's home
directory; a later real `import rocketmq` still works.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import grpc

from .. import errors
from .credentials import CredentialsError

BACKEND = "rocketmq"


def load_stubs() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    spec = importlib.util.find_spec("rocketmq")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the RocketMQ backend needs the gRPC stubs of `pip install rocketmq-python-client`")
    saved = sys.modules.get("rocketmq")
    if saved is None:
        placeholder = types.ModuleType("rocketmq")
        placeholder.__path__ = list(spec.submodule_search_locations)
        sys.modules["rocketmq"] = placeholder
    try:
        from rocketmq.grpc_protocol import definition_pb2, service_pb2, service_pb2_grpc
    finally:
        if saved is None:
            del sys.modules["rocketmq"]
    return definition_pb2, service_pb2, service_pb2_grpc


pb, rpc, rpc_grpc = load_stubs()

# Property names RocketMQ keeps for itself (MessageConst.PROPERTY_*): refused as header names on
# publish, and removed from received properties (the broker adds some, e.g. INNER_MULTI_DISPATCH).
SYSTEM_PROPERTIES = frozenset("""
    1ST_POP_TIME ARRIVE_TIME BORN_TIMESTAMP BUYER_ID CHECK_IMMUNITY_TIME_IN_SECONDS CLUSTER
    CONSUME_START_TIME CORRECTION_FLAG CORRELATION_ID DELAY DLQ_ORIGIN_MESSAGE_ID DLQ_ORIGIN_TOPIC
    EXTEND_UNIQ_INFO INNER_BASE INNER_MULTI_DISPATCH INNER_MULTI_QUEUE_OFFSET INNER_NUM INSTANCE_ID KEYS
    MAX_OFFSET MAX_RECONSUME_TIMES MIN_OFFSET MQ2_FLAG MSG_REGION MSG_TYPE ORIGIN_GROUP ORIGIN_MESSAGE_ID
    PGROUP POP_CK POP_CK_OFFSET PROPERTY_FORWARD_QUEUE_ID PUSH_REPLY_TIME REAL_QID REAL_TOPIC
    RECONSUME_TIME REDIRECT REPLY_TO_CLIENT RETRY_TOPIC TAGS TIMER_DELAY_LEVEL TIMER_DELAY_MS
    TIMER_DELAY_SEC TIMER_DELIVER_MS TIMER_DEL_UNIQKEY TIMER_DEQUEUE_MS TIMER_ENQUEUE_MS TIMER_OUT_MS
    TIMER_ROLL_LABEL TIMER_ROLL_TIMES TRACE_CONTEXT TRACE_ON TRANSACTION_CHECK_TIMES TRANSFER_FLAG
    TRANS_OFFSET TRAN_MSG TRAN_PREPARED_QUEUE_OFFSET TTL UNIQ_KEY WAIT _SYS_MSG_PRIORITY_ __BORNHOST
    __CRC32# __LITE_TOPIC __SHARDINGKEY __transactionId__
""".split())
SYSTEM_PROPERTY_PREFIXES = ("__RMQ.TRANSIENT.", "__tb.")


def is_system_property(name: str) -> bool:
    return name in SYSTEM_PROPERTIES or name.startswith(SYSTEM_PROPERTY_PREFIXES)


CLIENT_VERSION = "5.1.2"     # the rocketmq-python-client release whose stubs these are
Code = pb.Code
OK = pb.OK

# gRPC transport failures: the proxy is away, restarting or overloaded; the caller may retry.
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                       grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED})

_RECEIPT = {pb.INVALID_RECEIPT_HANDLE}
_NOT_FOUND = {pb.TOPIC_NOT_FOUND: "topic", pb.CONSUMER_GROUP_NOT_FOUND: "group", pb.NOT_FOUND: "resource"}
_QUOTA = {pb.LITE_SUBSCRIPTION_QUOTA_EXCEEDED: "lite_subscription_quota",
          pb.LITE_TOPIC_QUOTA_EXCEEDED: "lite_topic_quota"}
_CONFLICT = {pb.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, pb.PRECONDITION_FAILED}
_UNAVAILABLE = {pb.REQUEST_TIMEOUT, pb.TOO_MANY_REQUESTS, pb.INTERNAL_ERROR, pb.INTERNAL_SERVER_ERROR,
                pb.HA_NOT_AVAILABLE, pb.PROXY_TIMEOUT, pb.MASTER_PERSISTENCE_TIMEOUT,
                pb.SLAVE_PERSISTENCE_TIMEOUT, pb.FORBIDDEN}


def status_error(status, what: str, *, value: object = None, receipt: str = "",
                 limit: int = 0, access_key: str | None = None) -> errors.BackendError:
    """The port error for a non-OK RocketMQ `Status` answered to `what` (e.g. "send to 'x'").
    UNAUTHORIZED (bad or missing credentials) and a FORBIDDEN naming a permission (ACL) are
    `CredentialsError`s; other FORBIDDENs are load ("too many unacked messages")."""
    code, message = status.code, status.message
    detail = f"{what}: {pb.Code.Name(code) if code in pb.Code.values() else code} ({code}): {message}"
    if code in _RECEIPT:
        return errors.UnknownReceiptError(receipt)
    if code == pb.UNAUTHORIZED or (code == pb.FORBIDDEN and "permission" in message):
        return CredentialsError(access_key, f"{what}: {pb.Code.Name(code)} ({code}): {message}")
    if code == pb.ILLEGAL_LITE_TOPIC:
        return errors.InvalidRequestError("lite topic", value, message)
    if code in (pb.MESSAGE_BODY_TOO_LARGE, pb.PAYLOAD_TOO_LARGE):
        return errors.MessageTooLargeError(value if isinstance(value, int) else 0, limit)
    if code in _NOT_FOUND:
        return errors.NotFoundError(_NOT_FOUND[code], str(value))
    if code in _QUOTA:
        return errors.QuotaExceededError(_QUOTA[code], limit)
    if code in _CONFLICT:
        return errors.ConflictError(detail)
    if code in _UNAVAILABLE:
        return errors.BackendUnavailableError(BACKEND, detail)
    if 40000 <= code < 50000:
        return errors.InvalidRequestError("request", value, detail)
    return errors.BackendError(detail)


def rpc_error(exc: grpc.aio.AioRpcError, what: str) -> errors.BackendError:
    """The port error for a failed gRPC call."""
    code, details = exc.code(), exc.details() or ""
    if code in TRANSIENT:
        return errors.BackendUnavailableError(BACKEND, f"{what}: {code.name}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        if "group not found" in details:   # the proxy does not know the group (yet: it caches 20 s+)
            return errors.NotFoundError("group", details.rsplit("group not found: ", 1)[-1])
        return errors.ConflictError(f"{what}: {details}")
    return errors.BackendError(f"{what}: {code.name}: {details}")
