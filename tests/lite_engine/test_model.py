"""A hypothesis state machine drives the engine and a tiny reference model side by side.

The model knows, per group and per stream (a lite topic or the capability topic), which offsets
are acked and which are in flight, and per client which lite topics it subscribes to. After
every step the engine must agree: nothing acked or in flight is handed out again, only
subscribed topics are delivered, and draining every client of a group delivers exactly what the
model says is deliverable -- no ready event may be lost, whatever happened before (timeouts,
clients going silent, restarts).
"""

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lite_engine import Engine, EngineConfig

LITES = ["a", "b", "c"]
CLIENTS = {"c1": "g", "c2": "g", "c3": "h"}   # c1 and c2 share group g's cursors
INVISIBLE = 10.0
SESSION = 30.0


class EngineVsModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="tb-model-"))
        self.now = 1000.0
        self.engine = None
        self.streams: dict[str, list[bytes]] = {"tasks": []}   # "tasks" or lite name -> bodies
        self.acked: dict[tuple, set[int]] = {}                  # (group, stream) -> acked offsets
        self.inflight: dict[str, tuple] = {}                    # receipt -> (group, stream, offset, client)
        self.interest: dict[str, set[str]] = {}
        self.version = 0

    # ---- plumbing

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def start_engine(self):
        config = EngineConfig(data_dir=self.dir, fsync="never", tick=3600, session_timeout=SESSION,
                              default_invisible=INVISIBLE, max_attempts=1000)
        self.engine = self.run(Engine(config, clock=lambda: self.now).start())
        self.interest = {}
        for cid, group in CLIENTS.items():
            self.engine.open_client(cid, group=group, topic="reply")
            self.interest[cid] = set()

    def teardown(self):
        if self.engine is not None:
            self.run(self.engine.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def offset_of(self, stream, body):
        return self.streams[stream].index(body)

    def record(self, deliveries, group, client):
        for d in deliveries:
            stream = d.lite_topic or "tasks"
            offset = self.offset_of(stream, d.body)
            assert offset not in self.acked.get((group, stream), set()), "acked message delivered again"
            assert all(v[:3] != (group, stream, offset) for v in self.inflight.values()), \
                "message delivered twice while in flight"
            if client is not None:
                assert d.lite_topic in self.interest[client], "delivered a topic the client does not want"
            self.inflight[d.receipt] = (group, stream, offset, client)

    def deliverable(self, group):
        """(stream, offset) pairs the model says group `group` can still receive."""
        wanted = {t for c, g in CLIENTS.items() if g == group for t in self.interest[c]}
        busy = {(s, o) for g, s, o, _ in self.inflight.values() if g == group}
        return {(s, o) for s in wanted for o in range(len(self.streams.get(s, [])))
                if o not in self.acked.get((group, s), set()) and (s, o) not in busy}

    # ---- rules

    @initialize()
    def boot(self):
        self.start_engine()
        self.run(self.engine.receive("tasks", "w"))   # the worker group exists from the start

    @rule(lite=st.sampled_from(LITES), data=st.binary(max_size=8))
    def publish_lite(self, lite, data):
        body = b"%s-%d-" % (lite.encode(), len(self.streams.get(lite, []))) + data
        self.run(self.engine.publish("reply", body, lite=lite))
        self.streams.setdefault(lite, []).append(body)

    @rule()
    def publish_task(self):
        body = b"task-%d" % len(self.streams["tasks"])
        self.run(self.engine.publish("tasks", body))
        self.streams["tasks"].append(body)

    @rule(client=st.sampled_from(sorted(CLIENTS)), names=st.sets(st.sampled_from(LITES), max_size=3),
          how=st.sampled_from(["subscribe", "unsubscribe", "sync"]))
    def change_interest(self, client, names, how):
        self.version += 1
        getattr(self.engine, how)(client, names, self.version)
        mine = self.interest[client]
        if how == "subscribe":
            mine |= names
        elif how == "unsubscribe":
            mine -= names
        else:
            mine.clear()
            mine |= names

    @rule(client=st.sampled_from(sorted(CLIENTS)), n=st.integers(1, 5))
    def poll(self, client, n):
        got = self.run(self.engine.poll(client, max_messages=n))
        assert len(got) <= n
        self.record(got, CLIENTS[client], client)

    @rule(n=st.integers(1, 3))
    def receive(self, n):
        self.record(self.run(self.engine.receive("tasks", "w", max_messages=n)), "w", None)

    @precondition(lambda self: self.inflight)
    @rule(pick=st.integers(0, 1000), nack=st.booleans())
    def settle(self, pick, nack):
        receipt = sorted(self.inflight)[pick % len(self.inflight)]
        group, stream, offset, _ = self.inflight.pop(receipt)
        if nack:
            self.engine.nack(receipt)
        else:
            self.engine.ack(receipt)
            self.acked.setdefault((group, stream), set()).add(offset)

    @rule()
    def invisibility_passes(self):
        self.now += INVISIBLE + 1
        self.engine.run_timers()
        self.inflight.clear()
        for cid in CLIENTS:                       # clients heartbeat meanwhile
            self.engine.heartbeat(cid)

    @rule(client=st.sampled_from(sorted(CLIENTS)))
    def client_goes_silent(self, client):
        self.now += SESSION + 1
        for other in CLIENTS:
            if other != client:
                self.engine.heartbeat(other)
        self.engine.run_timers()   # also expires every invisibility deadline
        self.inflight.clear()
        self.engine.open_client(client, group=CLIENTS[client], topic="reply")
        self.interest[client] = set()

    @rule()
    def restart(self):
        self.run(self.engine.close())
        self.inflight.clear()
        self.start_engine()
        self.record(self.run(self.engine.receive("tasks", "w")), "w", None)

    # ---- invariants

    @invariant()
    def draining_delivers_exactly_what_is_deliverable(self):
        if self.engine is None:
            return
        for group in ("g", "h"):
            expected = self.deliverable(group)
            got = set()
            for _ in range(len(expected) + 3):
                batch = []
                for cid in (c for c, g in CLIENTS.items() if g == group):
                    polled = self.run(self.engine.poll(cid, max_messages=64))
                    self.record(polled, group, cid)
                    batch += polled
                got |= {(d.lite_topic, self.offset_of(d.lite_topic, d.body)) for d in batch}
                if not batch:
                    break
            assert got == expected, f"group {group}: delivered {sorted(got)}, model expects {sorted(expected)}"
        pending = {(s, o) for s in ["tasks"] for o in range(len(self.streams["tasks"]))
                   if o not in self.acked.get(("w", "tasks"), set())
                   and all(v[:3] != ("w", "tasks", o) for v in self.inflight.values())}
        got = self.run(self.engine.receive("tasks", "w", max_messages=1024))
        self.record(got, "w", None)
        assert {("tasks", self.offset_of("tasks", d.body)) for d in got} == pending


TestEngineVsModel = EngineVsModel.TestCase
TestEngineVsModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
