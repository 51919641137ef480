"""Kafka consumer groups used for coordination, not for fetching: who in a lite group delivers
which lite topic (`LiteMembership`), and which reply partitions an instance names its new reply
channels after (`Owners`).

**Lite group membership.** Every lite client joins the Kafka group ``<group>@<parent>`` with
the custom assignor below and fetches nothing through it (except a client whose group is named
after its own client id, as the gateway names its clients: it is alone by construction). Kafka gives what the port needs:
liveness (a member silent past the session timeout is removed and the group rebalances) and a
leader that sees every member's metadata. The assignor hands out *holds* instead of partitions:

* a group with one member (the normal case: each gateway instance, each re-attach) is told
  ``SOLE``: it delivers every lite topic it subscribes to and never sends its InterestSet;
* in a group with several members, each member's metadata carries its InterestSet as 64-bit
  name digests with a "held" bit; the leader gives each lite topic to one member subscribed to
  it (the current holder if it still subscribes, else the one holding fewest), and each member
  delivers only what it holds. A member that has never shared its InterestSet is told
  ``RESEND`` and re-joins with it at once. Members of a shared group re-join whenever their
  InterestSet changes, so subscribing there costs a rebalance (a few heartbeats).

Metadata layout (member -> leader), big-endian:
``u8 version=1 | u8 flags (1: interest included) | u32 n | n x (u64 digest, u8 held)``.
Assignment (leader -> member): ``u8 version=1 | u8 flags (1: SOLE, 2: RESEND) | u32 members |
u32 n | n x u64 digest held``.

Between "rebalance started" (revoke) and the new assignment a member holds nothing, so no two
members of a group ever deliver the same lite topic in the same generation.

**Owners.** Gateway instances that want their reply channels on partitions only they read join
``tb.owners@<parent>`` (round-robin over the reply topic's partitions) and mint lite topic names
that hash onto their partitions (see replies.py). Ownership only steers naming; delivery never
depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from . import names
from .cluster import Cluster
from .translate import port_error, translated

log = logging.getLogger("topicbridge.kafka")

VERSION = 1
F_INTEREST = 1
F_SOLE, F_RESEND = 1, 2
# A member that fetches nothing would leave its group after max.poll.interval, and aiokafka
# parks a fatal coordination error until the consumer polls: a no-op poll every WATCH seconds
# does both jobs.
MAX_POLL_INTERVAL_MS = 6 * 3600 * 1000
WATCH = 1.0


@dataclass(frozen=True)
class Holds:
    sole: bool = False
    resend: bool = False
    members: int = 0
    digests: frozenset[int] = frozenset()
    settled: bool = False       # False between a revoke and the next assignment


def encode_interest(interest: dict[int, bool] | None) -> bytes:
    if interest is None:
        return struct.pack(">BBI", VERSION, 0, 0)
    body = b"".join(struct.pack(">QB", digest, held) for digest, held in sorted(interest.items()))
    return struct.pack(">BBI", VERSION, F_INTEREST, len(interest)) + body


def decode_interest(data: bytes) -> dict[int, bool] | None:
    version, flags, n = struct.unpack_from(">BBI", data)
    if version != VERSION or not flags & F_INTEREST:
        return None
    return {d: bool(h) for d, h in struct.iter_unpack(">QB", data[6:6 + 9 * n])}


def encode_holds(holds: Holds) -> bytes:
    flags = (F_SOLE if holds.sole else 0) | (F_RESEND if holds.resend else 0)
    digests = sorted(holds.digests)
    return struct.pack(f">BBII{len(digests)}Q", VERSION, flags, holds.members, len(digests), *digests)


def decode_holds(data: bytes) -> Holds:
    version, flags, members, n = struct.unpack_from(">BBII", data)
    if version != VERSION:
        raise ValueError(f"unknown lite hold assignment version {version}")
    digests = frozenset(struct.unpack_from(f">{n}Q", data, 10))
    return Holds(bool(flags & F_SOLE), bool(flags & F_RESEND), members, digests, settled=True)


def assign_holds(members: dict[str, dict[int, bool] | None]) -> dict[str, Holds]:
    """The leader's decision. Pure: members' metadata in, each member's holds out."""
    count = len(members)
    if count == 1:
        [only] = members
        return {only: Holds(sole=True, members=1)}
    if any(interest is None for interest in members.values()):
        return {m: Holds(resend=True, members=count) for m in members}
    order = sorted(members)
    subscribers: dict[int, list[str]] = {}
    for member in order:
        for digest in members[member]:
            subscribers.setdefault(digest, []).append(member)
    held: dict[str, set[int]] = {m: set() for m in order}
    for digest, subs in sorted(subscribers.items()):
        keeper = next((m for m in subs if members[m][digest]), None)
        if keeper is None:
            keeper = min(subs, key=lambda m: len(held[m]))
        held[keeper].add(digest)
    return {m: Holds(members=count, digests=frozenset(held[m])) for m in order}


class _HoldAssignor:
    """aiokafka assignor protocol (name, metadata, assign, on_assignment), one per member."""

    name = "tb-lite-holds"
    version = VERSION

    def __init__(self, membership: "LiteMembership") -> None:
        self._membership = membership

    def metadata(self, topics) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(VERSION, sorted(topics), encode_interest(self._membership.metadata()))

    def assign(self, cluster, members) -> dict[str, ConsumerProtocolMemberAssignment]:
        decided = assign_holds({m: decode_interest(meta.user_data) for m, meta in members.items()})
        return {m: ConsumerProtocolMemberAssignment(VERSION, [], encode_holds(h)) for m, h in decided.items()}

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self._membership.assigned(decode_holds(assignment.user_data))


class LiteMembership:
    """One lite client's seat in ``<group>@<parent>``.

    `interest` returns the client's InterestSet digests with their held bits; `changed(holds)`
    is called on every revoke (holds with settled=False) and every new assignment.
    """

    def __init__(self, cluster: Cluster, parent: str, group: str, interest: Callable[[], dict[int, bool]],
                 changed: Callable[[Holds], None]) -> None:
        self._cluster = cluster
        self._parent = parent
        self._group_id = names.kafka_group(group, parent)
        self._interest = interest
        self._changed = changed
        self._share = False          # include the InterestSet in the metadata (the group is shared)
        self.holds = Holds()
        self._assignments = 0
        self._next: asyncio.Future | None = None
        self._consumer = None
        self._watcher: asyncio.Task | None = None
        self.failure: Exception | None = None

    async def start(self) -> None:
        self._consumer = self._cluster.consumer(
            group=self._group_id, purpose="lite-member", partition_assignment_strategy=(_HoldAssignor(self),),
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS)
        with translated():
            await self._consumer.start()
            self._consumer.subscribe([self._parent], listener=_Revoke(self))
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        await self.next_assignment(0)

    async def close(self, *, leave: bool = True) -> None:
        """Leave the group (its holds move at once), or with leave=False vanish like a crashed
        process: stop heartbeating and let the session time out."""
        await _stop(self._consumer, self._watcher, leave=leave)
        if self._next is not None and not self._next.done():
            self._next.cancel()

    def metadata(self) -> dict[int, bool] | None:
        return self._interest() if self._share else None

    # Caller: the assignor's on_assignment (inside aiokafka's coordinator task).
    def assigned(self, holds: Holds) -> None:
        self._share = not holds.sole
        self.holds = holds
        self._assignments += 1
        if holds.resend:
            self._consumer._coordinator.request_rejoin()
        else:
            self._changed(holds)
            if self._next is not None and not self._next.done():
                self._next.set_result(None)

    # Caller: the rebalance listener, before re-joining.
    def revoked(self) -> None:
        self.holds = Holds(members=self.holds.members)
        self._changed(self.holds)

    async def rejoin(self) -> None:
        """Re-join so the leader sees a changed InterestSet; wait (bounded) for the outcome."""
        if self._consumer is None or self.holds.sole:
            return
        seen = self._assignments
        self._consumer._coordinator.request_rejoin()
        await self.next_assignment(seen)

    async def next_assignment(self, seen: int) -> None:
        """Wait (bounded) for an assignment newer than the `seen`-th; raise a fatal group error."""
        s = self._cluster.settings
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(s.session_timeout + s.request_timeout):
                while self._assignments <= seen or not self.holds.settled or self.holds.resend:
                    if self.failure is not None:
                        raise port_error(self.failure, session_timeout=self._cluster.settings.session_timeout)
                    self._next = asyncio.get_running_loop().create_future()
                    await self._next
            return
        log.warning("lite group %s: no assignment yet; delivery waits for it", self._group_id)

    async def _watch(self) -> None:
        self.failure = await _watch(self._consumer, self._group_id)
        if self._next is not None and not self._next.done():
            self._next.set_result(None)


class _Revoke(ConsumerRebalanceListener):
    def __init__(self, membership: LiteMembership) -> None:
        self._membership = membership

    def on_partitions_revoked(self, revoked) -> None:
        self._membership.revoked()

    def on_partitions_assigned(self, assigned) -> None:
        pass


class Owners:
    """This instance's share of the reply topic's partitions, for naming new reply channels."""

    def __init__(self, cluster: Cluster, parent: str, changed: Callable[[frozenset[int]], None]) -> None:
        self._cluster = cluster
        self._parent = parent
        self._changed = changed
        self.partitions: frozenset[int] = frozenset()
        self.failure: Exception | None = None
        self._assigned = asyncio.Event()
        self._consumer = None
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        self._consumer = self._cluster.consumer(
            group=names.owners_group(self._parent), purpose="owner",
            partition_assignment_strategy=(RoundRobinPartitionAssignor,), max_poll_interval_ms=MAX_POLL_INTERVAL_MS)
        with translated():
            await self._consumer.start()
            self._consumer.subscribe([self._parent], listener=_Owned(self))
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        await self.settled()

    async def settled(self) -> frozenset[int]:
        """This instance's partitions, once no rebalance of the owner group is under way
        (bounded: after the wait, whatever it last had)."""
        s = self._cluster.settings
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(s.session_timeout + s.request_timeout):
                await self._assigned.wait()
        if self.failure is not None:
            raise port_error(self.failure, session_timeout=self._cluster.settings.session_timeout)
        return self.partitions

    async def close(self, *, leave: bool = True) -> None:
        await _stop(self._consumer, self._watcher, leave=leave)

    def rebalancing(self) -> None:
        self._assigned.clear()    # names minted now could land on a partition about to move

    def owned(self, assigned) -> None:
        # Nothing is fetched through this consumer: ownership is only a naming hint.
        self._consumer.pause(*assigned)
        self.partitions = frozenset(tp.partition for tp in assigned)
        self._assigned.set()
        self._changed(self.partitions)

    async def _watch(self) -> None:
        self.failure = await _watch(self._consumer, names.owners_group(self._parent))
        self._assigned.set()


async def _stop(consumer, watcher: asyncio.Task | None, *, leave: bool) -> None:
    if watcher is not None:
        watcher.cancel()
    if consumer is None:
        return
    if not leave:
        # aiokafka sends LeaveGroup on stop; a crashed process never does.
        async def _stay() -> None:
            pass
        consumer._coordinator._maybe_leave_group = _stay
    with contextlib.suppress(Exception):
        await consumer.stop()


async def _watch(consumer, group: str) -> Exception:
    """Poll a consumer that fetches nothing, until aiokafka reports a fatal group error."""
    while True:
        await asyncio.sleep(WATCH)
        try:
            await consumer.getmany(timeout_ms=0)
        except KafkaError as exc:
            if not exc.retriable:
                log.error("Kafka group %s failed: %s", group, exc)
                return exc
            log.warning("Kafka group %s: %s", group, exc)


class _Owned(ConsumerRebalanceListener):
    def __init__(self, owners: Owners) -> None:
        self._owners = owners

    def on_partitions_revoked(self, revoked) -> None:
        self._owners.rebalancing()

    def on_partitions_assigned(self, assigned) -> None:
        self._owners.owned(assigned)
