"""What starting a bridge costs: its connection pools (one per 8 connections of its concurrency)
share the gateway's one TLS client context instead of loading the CA bundle twice each."""

from a2a.types import a2a_pb2

from gateway.http.outbound import AddressPolicy, guarded_client, tls_context

from .remote_agents import running_agent
from .test_bridge import events_of, gw, user_message  # noqa: F401  (gw: the fixture)


async def test_guarded_clients_share_one_tls_context_that_verifies_certificates():
    clients = [guarded_client(AddressPolicy()) for _ in range(3)]
    try:
        contexts = {id(c._transport._pool._ssl_context) for c in clients}
        assert contexts == {id(tls_context())}
        assert tls_context().check_hostname and tls_context().verify_mode.name == "CERT_REQUIRED"
    finally:
        for client in clients:
            await client.aclose()


async def test_a_bridges_pools_share_the_tls_context_and_still_reach_the_agent(gw):
    async with running_agent(streaming=False) as agent:
        capability = await gw.bridges.register(agent.card_url)
        _, bridge = gw.bridges.running[capability.name]
        assert len(bridge._https) > 1
        assert {id(http._transport._pool._ssl_context) for http in bridge._https} == {id(tls_context())}
        task, watch = await gw.tasks.submit(capability.name, user_message("a short memo"))
        await events_of(watch)
    assert (await gw.tasks.get(task.id)).status.state == a2a_pb2.TASK_STATE_COMPLETED
