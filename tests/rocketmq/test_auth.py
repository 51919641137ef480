"""Credentials (ACL 2.0) and TLS against a real RocketMQ 5.5 cluster started with both on.

One cluster for the module (started here, not the session's shared one): authentication and
authorization on in broker and proxy, the initial super user `tbadmin`, and the proxy's gRPC
port enforcing TLS with a certificate signed by a CA made in the test. Every gRPC request the
adapter makes is signed (HMAC-SHA1 over x-mq-date-time), every admin (remoting) request too.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from a2a.types import a2a_pb2

from adapters.base import Message
from adapters.errors import BackendUnavailableError
from adapters.factory import open_backend
from adapters.rocketmq import RocketMQBackend
from adapters.rocketmq.credentials import CredentialsError
from deploy.rocketmq import BrokerUnavailable, ClusterError, RocketMQCluster
from gateway.backend_start import start_backend
from tests.contract.helpers import capability, lite_parent, poll_until, receive_until
from tests.gateway.a2a_servers import a2a_client, collect, send_request
from tests.gateway.mcp_support import agents_on, card, wait_until
from tests.gateway.mcp_support import settings as lite_gateway_settings
from tests.gateway.serving import running_gateway

from tests.certs import make_certificates
from .cluster import skip_or_fail

USER, PASSWORD = "tbadmin", "s3cret-Pass-0"
WAIT = 90.0


@pytest.fixture(scope="module")
def secured():
    """(cluster, CA file) of a cluster with authentication and TLS on."""
    workdir = Path(tempfile.mkdtemp(prefix="tb-rocketmq-auth-"))
    certs = make_certificates(workdir / "certs")
    cluster = RocketMQCluster(workdir / "run", auth=(USER, PASSWORD), tls=(certs["cert"], certs["key"]))
    try:
        cluster.start(timeout=300)
    except BrokerUnavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        skip_or_fail(f"RocketMQ cannot run here: {exc}")
    except ClusterError as exc:
        pytest.fail(f"the RocketMQ cluster with authentication did not start: {exc}")
    yield cluster, str(certs["ca"])
    cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def rocketmq_settings(secured, **overrides) -> dict:
    cluster, ca = secured
    return {"endpoint": cluster.endpoint, "admin": cluster.namesrv_addr, "queues": 2,
            "access_key": USER, "secret_key": PASSWORD, "tls_ca": ca, **overrides}


@contextlib.asynccontextmanager
async def started(settings: dict):
    backend = RocketMQBackend(**settings)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


async def test_signed_requests_over_tls_publish_and_receive_on_lite_and_group_topics(secured):
    async with started(rocketmq_settings(secured)) as backend:
        parent, topic = await lite_parent(backend), await capability(backend)
        lite = await backend.lite_consumer(parent, "gw")
        await lite.subscribe(["task-1"])
        await backend.publish(parent, Message(b"reply"), lite_topic="task-1")
        [reply] = await poll_until(lite, 1, timeout=WAIT)
        assert reply.body == b"reply"
        await reply.ack()
        group = await backend.group_consumer(topic, "workers")
        await backend.publish(topic, Message(b"task"))
        [task] = await receive_until(group, 1, timeout=WAIT)
        assert task.body == b"task"
        await task.ack()


async def test_a2a_round_trip_through_a_gateway_with_the_secret_from_an_environment_variable(secured, monkeypatch):
    monkeypatch.setenv("TB_TEST_RMQ_SECRET", PASSWORD)
    backend_settings = {"backend": "rocketmq", "rocketmq": rocketmq_settings(
        secured, secret_key=None, secret_key_env="TB_TEST_RMQ_SECRET")}
    config = copy.deepcopy(lite_gateway_settings(mcp_call_wait_seconds=WAIT))
    config.pop("lite")
    config.update(copy.deepcopy(backend_settings))
    name = f"echo-{uuid.uuid4().hex[:10]}"

    async def echo(agents, task):
        await task.complete(f"echo: {task.text}")

    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.timeout(WAIT):
            gw = await stack.enter_async_context(running_gateway(config))
            worker_backend = open_backend(backend_settings)
            await worker_backend.start()
            stack.push_async_callback(worker_backend.close)
            agents = await stack.enter_async_context(agents_on(worker_backend))
            await agents.serve(name, echo, card=card("Echo", "Repeats what it is told."))

            async def known():
                return await gw.gateway.registry.get(name) is not None
            await wait_until(known, timeout=WAIT)
        async with a2a_client(gw.base, name) as client:
            events = await collect(client.send_message(send_request("hello secured broker")), timeout=WAIT)
    task = events[-1].task
    assert task.status.state == a2a_pb2.TASK_STATE_COMPLETED, task
    texts = [p.text for a in task.artifacts for p in a.parts] + [p.text for p in task.status.message.parts]
    assert "echo: hello secured broker" in texts


async def test_a_wrong_secret_fails_the_start_once_with_an_error_naming_the_access_key(secured):
    backend = RocketMQBackend(**rocketmq_settings(secured, secret_key="not-the-secret"))
    async with asyncio.timeout(WAIT):   # not retried: the gateway's start loop gives up at once
        with pytest.raises(CredentialsError) as caught:
            await start_backend(backend, timeout=WAIT)
    await backend.close()
    assert caught.value.access_key == USER
    assert "check signature failed" in str(caught.value) and repr(USER) in str(caught.value)


async def test_no_credentials_on_a_cluster_that_requires_them_is_refused_at_start(secured):
    backend = RocketMQBackend(**rocketmq_settings(secured, access_key=None, secret_key=None))
    with pytest.raises(CredentialsError, match="username cannot be null"):
        await backend.start()
    await backend.close()


async def test_admin_requests_without_credentials_are_refused_by_the_broker_not_read_as_absent(secured):
    from adapters.rocketmq import RemotingAdmin

    cluster, _ = secured
    admin = RemotingAdmin(cluster.namesrv_addr)
    try:
        with pytest.raises(CredentialsError, match="topicConfig"):
            await admin.topic_config("tb-anything")
    finally:
        await admin.close()


async def test_a_plaintext_client_cannot_reach_a_proxy_that_enforces_tls(secured):
    backend = RocketMQBackend(**rocketmq_settings(secured, tls_ca=None, connect_timeout=3.0))
    with pytest.raises(BackendUnavailableError, match="no RocketMQ proxy answered"):
        await backend.start()
    await backend.close()


async def test_a_user_without_grants_is_refused_with_the_missing_permission_named(secured):
    cluster, _ = secured
    user = f"tbnormal{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(cluster.admin, "createUser", "-c", "DefaultCluster", "-u", user, "-p", "pw-123456",
                            "-t", "Normal", expect="create user to")
    async with started(rocketmq_settings(secured)) as owner:   # the super user makes the topic
        topic = await capability(owner)
    backend = RocketMQBackend(**rocketmq_settings(secured, admin=None, access_key=user, secret_key="pw-123456"))
    try:
        await backend.start()   # authenticated: the key pair is right
        with pytest.raises(CredentialsError) as caught:
            await backend.publish(topic, Message(b"not allowed"))
    finally:
        await backend.close()
    assert caught.value.access_key == user or caught.value.access_key is None
    assert "permission" in str(caught.value).lower() and topic in str(caught.value), str(caught.value)
