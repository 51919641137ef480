"""The app wires its parts explicitly: building routes changes nothing, parts added through
Gateway.add_part run and close with the gateway, settings left out take the schema's defaults."""

from adapters.factory import engine_config
from adapters.lite import EmbeddedLiteBackend
from gateway import settings as config
from gateway.app import Gateway


class Part:
    def __init__(self, log: list, name: str) -> None:
        self.log, self.name = log, name

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def close(self) -> None:
        self.log.append(f"close {self.name}")


def memory_backend() -> EmbeddedLiteBackend:
    return EmbeddedLiteBackend(engine_config({"data_dir": None, "tick": 0.005}))


def test_building_routes_and_middleware_changes_nothing_on_the_gateway():
    gateway = Gateway({"gateway": {}}, memory_backend())
    hooks, parts = list(gateway.tasks.on_event), list(gateway._parts)
    for _ in range(2):
        gateway.routes()
        gateway.middleware()
    # the hooks are the ones Gateway.__init__ wired: admission's bookkeeping, then push delivery
    assert gateway.tasks.on_event == hooks == [gateway.tasks.admission.on_event, gateway.push.on_event]
    assert gateway._parts == parts


async def test_a_part_added_before_start_starts_with_the_gateway_and_closes_before_the_backend():
    log = []
    gateway = Gateway({"gateway": {}}, memory_backend())
    await gateway.add_part(Part(log, "early"))
    await gateway.start()
    await gateway.add_part(Part(log, "late"))
    assert log == ["start early", "start late"]
    await gateway.close()
    assert log[2:] == ["close late", "close early"]
    assert gateway.supervisor.loops == {}


def test_settings_left_out_take_the_schemas_defaults():
    gateway = Gateway({"gateway": {"a2a_wait_seconds": 12}}, memory_backend())
    defaults = config.schema()["properties"]["gateway"]["properties"]
    assert gateway.a2a.handler.blocking_wait == 12
    assert gateway.bridges.bridge_options["max_response_bytes"] == defaults["max_agent_response_bytes"]["default"]
    assert Gateway({}, memory_backend()).a2a.handler.blocking_wait == defaults["a2a_wait_seconds"]["default"]
