"""The admin path: topics and consumer groups created over RocketMQ's remoting protocol.

The gRPC proxy cannot create LITE topics nor groups bound to a lite parent, so the backend does
what `mqadmin updateTopic` / `updateSubGroup -c <cluster>` do: ask the name server for the
cluster's master brokers, then send each master the same request the tool sends. No JVM is
started; one request takes about a millisecond on loopback.

`Admin` is the port the backend uses; `RemotingAdmin(namesrv)` implements it. Anything else with
the same methods will do (e.g. a wrapper around `mqadmin` for a locked-down cluster).

Wire format of one remoting frame, big-endian, as written by `_frame`::

    int32  length          bytes that follow this field
    int32  header length   high byte: serialisation (0 = JSON), low 3 bytes: header size
    bytes  header          JSON {"code", "language", "version", "opaque", "flag", "remark", "extFields"}
    bytes  body            optional; JSON for group configs, cluster info and topic configs

A response repeats the request's `opaque` and sets bit 0 of `flag`; `code` 0 is success. The
Java side writes maps with integer keys unquoted (`{0:"host:port"}`), which `_loads` repairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import struct
import time
from typing import Protocol

from .. import errors
from .credentials import Credentials, CredentialsError

BACKEND = "rocketmq"

# org.apache.rocketmq.remoting.protocol.RequestCode
QUERY_CONSUMER_OFFSET = 14
UPDATE_AND_CREATE_TOPIC = 17
GET_BROKER_CLUSTER_INFO = 106
UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200
DELETE_SUBSCRIPTIONGROUP = 207
GET_TOPIC_CONFIG = 351
GET_SUBSCRIPTIONGROUP_CONFIG = 352
# org.apache.rocketmq.remoting.protocol.ResponseCode
SUCCESS = 0
NO_PERMISSION = 16
SUBSCRIPTION_GROUP_NOT_EXIST = 26

_VERSION = 513          # MQVersion.Version.V5_5_0.ordinal(): what mqadmin 5.5.0 sends
_RESPONSE_FLAG = 1
PERM_READ_WRITE = 6
_CLUSTER_TTL = 30.0
_UNQUOTED_INT_KEY = re.compile(r'([{,]\s*)(-?\d+)(\s*:)')
_NEW_GROUP = {"consumeEnable": True, "consumeFromMinEnable": True, "consumeBroadcastEnable": True,
              "retryQueueNums": 1, "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1,
              "notifyConsumerIdsChangedEnable": True, "retryMaxTimes": 16}


class Admin(Protocol):
    """Creates what the gRPC proxy cannot. Every method is idempotent; names are full names
    (namespace included)."""

    async def create_topic(self, name: str, *, message_type: str, order: bool = False, queues: int = 8,
                           read_queues: int | None = None, perm: int = PERM_READ_WRITE,
                           attributes: dict[str, str] | None = None) -> None: ...

    async def create_group(self, name: str, *, max_retry: int | None = None,
                           attributes: dict[str, str] | None = None) -> None:
        """Create the group, or update it: `max_retry` only when given, `attributes` merged."""

    async def delete_group(self, name: str) -> None: ...
    async def topic_config(self, name: str) -> dict | None: ...
    async def has_offset(self, group: str, topic: str) -> bool: ...
    async def close(self) -> None: ...


class AdminError(errors.BackendError):
    def __init__(self, request: str, code: int, remark: str) -> None:
        self.request, self.code, self.remark = request, code, remark
        super().__init__(f"rocketmq admin {request} failed: code {code}: {remark}")


def _offset(header: dict) -> int | None:
    try:
        return int((header.get("extFields") or {}).get("offset"))
    except (TypeError, ValueError):
        return None


def _loads(raw: bytes) -> object:
    return json.loads(_UNQUOTED_INT_KEY.sub(r'\1"\2"\3', raw.decode("utf-8", "replace")))


def _frame(code: int, opaque: int, ext: dict[str, str], body: bytes) -> bytes:
    header = json.dumps({"code": code, "language": "PYTHON", "version": _VERSION, "opaque": opaque,
                         "flag": 0, "remark": None, "extFields": ext,
                         "serializeTypeCurrentRPC": "JSON"}).encode()
    return struct.pack(">ii", 4 + len(header) + len(body), len(header)) + header + body


class _Link:
    """One TCP connection to a name server or broker; requests matched to responses by opaque."""

    def __init__(self, address: str, timeout: float, credentials: Credentials | None = None) -> None:
        self.address = address
        self.timeout = timeout
        self.credentials = credentials
        self._opaque = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._connecting = asyncio.Lock()

    async def call(self, code: int, ext: dict[str, object] | None = None, body: bytes = b"") -> tuple[dict, bytes]:
        writer = await self._connect()
        opaque = next(self._opaque)
        reply = asyncio.get_running_loop().create_future()
        self._waiting[opaque] = reply
        fields = {k: str(v) for k, v in (ext or {}).items()}
        if self.credentials is not None:
            fields = self.credentials.sign_remoting(fields, body)
        try:
            writer.write(_frame(code, opaque, fields, body))
            await writer.drain()
            return await asyncio.wait_for(reply, self.timeout)
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise errors.BackendUnavailableError(BACKEND, f"admin request to {self.address} failed: {exc!r}") from exc
        finally:
            self._waiting.pop(opaque, None)

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            host, port = self.address.rsplit(":", 1)
            try:
                reader, self._writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), self.timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                raise errors.BackendUnavailableError(BACKEND, f"cannot reach {self.address}: {exc!r}") from exc
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                length, header_length = struct.unpack(">ii", await reader.readexactly(8))
                header_length &= 0xFFFFFF
                header = _loads(await reader.readexactly(header_length))
                body = await reader.readexactly(length - 4 - header_length)
                if not header.get("flag", 0) & _RESPONSE_FLAG:
                    continue   # a request from the server (e.g. a broker notification): not ours
                reply = self._waiting.get(header.get("opaque"))
                if reply is not None and not reply.done():
                    reply.set_result((header, body))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            # The peer went away (e.g. a broker restart): the next call connects again.
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            for reply in self._waiting.values():
                if not reply.done():
                    reply.set_exception(ConnectionError(f"connection to {self.address} closed: {exc!r}"))

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None


class RemotingAdmin:
    """`Admin` over the remoting protocol: name server `namesrv` ("host:port"), cluster `cluster`."""

    def __init__(self, namesrv: str, cluster: str = "DefaultCluster", *, timeout: float = 10.0,
                 credentials: Credentials | None = None) -> None:
        self.namesrv = namesrv
        self.cluster = cluster
        self.timeout = timeout
        self.credentials = credentials
        self._links: dict[str, _Link] = {}
        self._masters: list[str] = []
        self._masters_at = float("-inf")

    async def create_topic(self, name: str, *, message_type: str, order: bool = False, queues: int = 8,
                           read_queues: int | None = None, perm: int = PERM_READ_WRITE,
                           attributes: dict[str, str] | None = None) -> None:
        attrs = {"message.type": message_type, **(attributes or {})}
        ext = {"topic": name, "defaultTopic": "TBW102", "readQueueNums": read_queues or queues,
               "writeQueueNums": queues, "perm": perm, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0,
               "order": str(bool(order)).lower(), "attributes": ",".join(f"+{k}={v}" for k, v in attrs.items())}
        for broker in await self._master_brokers():
            await self._expect(broker, UPDATE_AND_CREATE_TOPIC, f"updateTopic {name}", ext)

    async def create_group(self, name: str, *, max_retry: int | None = None,
                           attributes: dict[str, str] | None = None) -> None:
        attributes = attributes or {}
        for broker in await self._master_brokers():
            header, body = await self._call(broker, GET_SUBSCRIPTIONGROUP_CONFIG, f"getSubGroup {name}", {"group": name})
            existing = _loads(body) if header.get("code") == SUCCESS and body else None
            if existing is not None and max_retry in (None, existing.get("retryMaxTimes")) and all(
                    (existing.get("attributes") or {}).get(k) == v for k, v in attributes.items()):
                continue   # nothing to change
            config = existing or {"groupName": name, **_NEW_GROUP}
            if max_retry is not None:
                config["retryMaxTimes"] = max_retry
            config["attributes"] = {f"+{k}": v for k, v in attributes.items()}   # merged by the broker
            await self._expect(broker, UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, f"updateSubGroup {name}", {},
                               json.dumps(config).encode())

    async def delete_group(self, name: str) -> None:
        for broker in await self._master_brokers():
            header, _ = await self._call(broker, DELETE_SUBSCRIPTIONGROUP, f"deleteSubGroup {name}",
                                         {"groupName": name, "cleanOffset": "true"})
            if header.get("code") not in (SUCCESS, SUBSCRIPTION_GROUP_NOT_EXIST):
                raise AdminError(f"deleteSubGroup {name}", header.get("code"), header.get("remark") or "")

    async def topic_config(self, name: str) -> dict | None:
        """The topic's config on the first master that has it (`order`, `attributes`, ...)."""
        for broker in await self._master_brokers():
            header, body = await self._call(broker, GET_TOPIC_CONFIG, f"topicConfig {name}", {"topic": name})
            if header.get("code") == SUCCESS and body:
                data = _loads(body)
                return data.get("topicConfig", data) if isinstance(data, dict) else None
        return None

    async def has_offset(self, group: str, topic: str) -> bool:
        """Whether `group` has read past the start of queue 0 of `topic` (a lite topic's LMQ).
        Offset 0 counts as none: reading from the minimum is then the same, and the broker answers
        0 for a group without an offset when it cannot tell the queue's first message is in
        memory (always, with RocksDB consume queues), which would start the group at the end."""
        for broker in await self._master_brokers():
            header, _ = await self._call(
                broker, QUERY_CONSUMER_OFFSET, f"queryOffset {group}",
                {"consumerGroup": group, "topic": topic, "queueId": 0, "setZeroIfNotFound": "false"})
            if header.get("code") == SUCCESS and _offset(header) != 0:
                return True
        return False

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close() for link in links))

    # ------------------------------------------------------------------------------------------

    def _link(self, address: str) -> _Link:
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = _Link(address, self.timeout, self.credentials)
        return link

    async def _call(self, address: str, code: int, what: str, ext: dict | None = None,
                    body: bytes = b"") -> tuple[dict, bytes]:
        """One request; NO_PERMISSION (bad credentials, or an ACL without the right) raises
        instead of reading as "absent"."""
        header, reply = await self._link(address).call(code, ext, body)
        if header.get("code") == NO_PERMISSION:
            who = self.credentials.access_key if self.credentials else None
            raise CredentialsError(who, f"admin {what} at {address}: {header.get('remark') or ''}")
        return header, reply

    async def _expect(self, broker: str, code: int, what: str, ext: dict, body: bytes = b"") -> None:
        header, _ = await self._call(broker, code, what, ext, body)
        if header.get("code") != SUCCESS:
            raise AdminError(what, header.get("code"), header.get("remark") or "")

    async def _master_brokers(self) -> list[str]:
        if self._masters and time.monotonic() - self._masters_at < _CLUSTER_TTL:
            return self._masters
        header, body = await self._call(self.namesrv, GET_BROKER_CLUSTER_INFO, "clusterList")
        if header.get("code") != SUCCESS or not body:
            raise AdminError("clusterList", header.get("code"), header.get("remark") or "")
        info = _loads(body)
        names = info.get("clusterAddrTable", {}).get(self.cluster) or []
        brokers = info.get("brokerAddrTable", {})
        masters = [brokers[n]["brokerAddrs"]["0"] for n in sorted(names)
                   if "0" in brokers.get(n, {}).get("brokerAddrs", {})]
        if not masters:
            raise errors.BackendUnavailableError(
                BACKEND, f"name server {self.namesrv} knows no master broker in cluster {self.cluster!r}")
        self._masters, self._masters_at = masters, time.monotonic()
        return masters
