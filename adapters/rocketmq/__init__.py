"""The RocketMQ backend: Apache RocketMQ 5.5+ (LiteTopic, RIP-83) through its gRPC proxy.

    README.md     running on an existing cluster: what to create, with the mqadmin commands
    backend.py    RocketMQBackend, the Backend port; how each promise maps (module docstring)
    consumers.py  group consumers (capability topics) and lite consumers (reply channels)
    receiving.py  what both share: long-poll receive, hand-over, invisibility, leases, settling
    table.py      tables as changelog lite topics replayed into memory
    client.py     the gRPC channel, client sessions: settings, telemetry, heartbeats, reconnect
    admin.py      topic and group creation over the remoting protocol (what mqadmin does)
    credentials.py  ACL 2.0 signing of gRPC and remoting requests; TLS channel credentials
    names.py      port names -> RocketMQ names, validated before anything is sent
    protocol.py   the gRPC stubs, loaded without `rocketmq/__init__` (which would create
                  ~/logs/rocketmq_python), and RocketMQ status codes -> port errors

asyncio-native: grpc.aio with the stubs of PyPI `rocketmq-python-client`; no thread per call and
no import of the `rocketmq` package itself, so nothing is written under the user's home.
"""

from .admin import Admin, RemotingAdmin
from .backend import RocketMQBackend

__all__ = ["Admin", "RemotingAdmin", "RocketMQBackend"]
