from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateTopicRequest(_message.Message):
    __slots__ = ("name", "lite", "ordered", "lite_idle_seconds", "max_attempts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LITE_FIELD_NUMBER: _ClassVar[int]
    ORDERED_FIELD_NUMBER: _ClassVar[int]
    LITE_IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    lite: bool
    ordered: bool
    lite_idle_seconds: float
    max_attempts: int
    def __init__(self, name: _Optional[str] = ..., lite: _Optional[bool] = ..., ordered: _Optional[bool] = ..., lite_idle_seconds: _Optional[float] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class CreateTopicResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("topic", "lite_topic", "body", "headers", "key")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    LITE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    topic: str
    lite_topic: str
    body: bytes
    headers: _containers.ScalarMap[str, str]
    key: str
    def __init__(self, topic: _Optional[str] = ..., lite_topic: _Optional[str] = ..., body: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., key: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    def __init__(self, message_id: _Optional[str] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("topic", "lite_topic", "message_id", "body", "headers", "key", "receipt", "attempt", "timestamp")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    LITE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    topic: str
    lite_topic: str
    message_id: str
    body: bytes
    headers: _containers.ScalarMap[str, str]
    key: str
    receipt: str
    attempt: int
    timestamp: float
    def __init__(self, topic: _Optional[str] = ..., lite_topic: _Optional[str] = ..., message_id: _Optional[str] = ..., body: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., key: _Optional[str] = ..., receipt: _Optional[str] = ..., attempt: _Optional[int] = ..., timestamp: _Optional[float] = ...) -> None: ...

class Deliveries(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class ReceiveRequest(_message.Message):
    __slots__ = ("topic", "group", "max_messages", "wait_seconds", "invisible_seconds")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INVISIBLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    group: str
    max_messages: int
    wait_seconds: float
    invisible_seconds: float
    def __init__(self, topic: _Optional[str] = ..., group: _Optional[str] = ..., max_messages: _Optional[int] = ..., wait_seconds: _Optional[float] = ..., invisible_seconds: _Optional[float] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: str
    def __init__(self, receipt: _Optional[str] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NackRequest(_message.Message):
    __slots__ = ("receipt", "delay_seconds")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    receipt: str
    delay_seconds: float
    def __init__(self, receipt: _Optional[str] = ..., delay_seconds: _Optional[float] = ...) -> None: ...

class NackResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("receipt", "seconds")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    receipt: str
    seconds: float
    def __init__(self, receipt: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class ExtendResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenClientRequest(_message.Message):
    __slots__ = ("client_id", "group", "topic")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    group: str
    topic: str
    def __init__(self, client_id: _Optional[str] = ..., group: _Optional[str] = ..., topic: _Optional[str] = ...) -> None: ...

class OpenClientResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CloseClientRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class CloseClientResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ChangeSubscriptionRequest(_message.Message):
    __slots__ = ("client_id", "action", "version", "names")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[ChangeSubscriptionRequest.Action]
        ADD: _ClassVar[ChangeSubscriptionRequest.Action]
        REMOVE: _ClassVar[ChangeSubscriptionRequest.Action]
        SYNC: _ClassVar[ChangeSubscriptionRequest.Action]
    ACTION_UNSPECIFIED: ChangeSubscriptionRequest.Action
    ADD: ChangeSubscriptionRequest.Action
    REMOVE: ChangeSubscriptionRequest.Action
    SYNC: ChangeSubscriptionRequest.Action
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    action: ChangeSubscriptionRequest.Action
    version: int
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, client_id: _Optional[str] = ..., action: _Optional[_Union[ChangeSubscriptionRequest.Action, str]] = ..., version: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class ChangeSubscriptionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PollRequest(_message.Message):
    __slots__ = ("client_id", "max_messages", "wait_seconds", "invisible_seconds")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INVISIBLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    max_messages: int
    wait_seconds: float
    invisible_seconds: float
    def __init__(self, client_id: _Optional[str] = ..., max_messages: _Optional[int] = ..., wait_seconds: _Optional[float] = ..., invisible_seconds: _Optional[float] = ...) -> None: ...

class KvPutRequest(_message.Message):
    __slots__ = ("table", "key", "value", "expect")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: str
    value: bytes
    expect: int
    def __init__(self, table: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., expect: _Optional[int] = ...) -> None: ...

class KvPutResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class KvGetRequest(_message.Message):
    __slots__ = ("table", "key")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: str
    def __init__(self, table: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class KvGetResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class KvReadRequest(_message.Message):
    __slots__ = ("table", "key")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: str
    def __init__(self, table: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class KvReadResponse(_message.Message):
    __slots__ = ("value", "version")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    version: int
    def __init__(self, value: _Optional[bytes] = ..., version: _Optional[int] = ...) -> None: ...

class KvDeleteRequest(_message.Message):
    __slots__ = ("table", "key", "expect")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECT_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: str
    expect: int
    def __init__(self, table: _Optional[str] = ..., key: _Optional[str] = ..., expect: _Optional[int] = ...) -> None: ...

class KvDeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class KvListRequest(_message.Message):
    __slots__ = ("table", "prefix")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    table: str
    prefix: str
    def __init__(self, table: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class KvItem(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class KvListResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[KvItem]
    def __init__(self, items: _Optional[_Iterable[_Union[KvItem, _Mapping]]] = ...) -> None: ...

class KvScanRequest(_message.Message):
    __slots__ = ("table", "prefix", "after", "limit")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    table: str
    prefix: str
    after: str
    limit: int
    def __init__(self, table: _Optional[str] = ..., prefix: _Optional[str] = ..., after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("ok", "topics", "lite_topics", "clients", "inflight", "max_message_bytes", "session_timeout", "problems", "housekeeping_failures")
    OK_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    LITE_TOPICS_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SESSION_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    HOUSEKEEPING_FAILURES_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    topics: int
    lite_topics: int
    clients: int
    inflight: int
    max_message_bytes: int
    session_timeout: float
    problems: _containers.RepeatedScalarFieldContainer[str]
    housekeeping_failures: int
    def __init__(self, ok: _Optional[bool] = ..., topics: _Optional[int] = ..., lite_topics: _Optional[int] = ..., clients: _Optional[int] = ..., inflight: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., session_timeout: _Optional[float] = ..., problems: _Optional[_Iterable[str]] = ..., housekeeping_failures: _Optional[int] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "error")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    error: bytes
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., error: _Optional[bytes] = ...) -> None: ...

class PublishManyRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PublishRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[PublishRequest, _Mapping]]] = ...) -> None: ...

class PublishResult(_message.Message):
    __slots__ = ("message_id", "error")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    error: ItemError
    def __init__(self, message_id: _Optional[str] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class PublishManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PublishResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PublishResult, _Mapping]]] = ...) -> None: ...

class AckManyRequest(_message.Message):
    __slots__ = ("receipts",)
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    receipts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, receipts: _Optional[_Iterable[str]] = ...) -> None: ...

class AckResult(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: ItemError
    def __init__(self, error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class AckManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AckResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AckResult, _Mapping]]] = ...) -> None: ...
