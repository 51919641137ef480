"""Who the adapter is to an ACL-enabled RocketMQ 5 cluster, and how it proves it.

RocketMQ 5 authentication (ACL 2.0) knows users by access key (the username) and secret key
(the password). Both wire protocols sign with HMAC-SHA1 keyed by the secret, but over
different content:

* gRPC (the proxy): the value of the `x-mq-date-time` header, sent as
  ``authorization: MQv2-HMAC-SHA1 Credential=<ak>, SignedHeaders=x-mq-date-time, Signature=<hex>``.
  The server reads the user from the first `/`-separated part of Credential and the signature
  as hex (`DefaultAuthenticationContextBuilder.build(Metadata, ...)` in rocketmq-auth 5.5.0).
* remoting (name server, broker admin): the request's ext fields, `AccessKey` included, values
  concatenated in key order, followed by the body; sent base64-encoded in the `Signature`
  ext field (`build(RemotingCommand)` with `AclUtils.combineRequestContent`).

A wrong key pair is not a transient condition: it surfaces as `CredentialsError`, which the
gateway's start does not retry.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from .. import errors

ALGORITHM = "MQv2-HMAC-SHA1"
SIGNED_HEADERS = "x-mq-date-time"


class CredentialsError(errors.BackendError):
    """The cluster refused who we said we were (`reason` is its own words), or the settings
    that say it are unusable."""

    def __init__(self, access_key: str | None, reason: str) -> None:
        self.access_key = access_key
        self.reason = reason
        who = f"access key {access_key!r}" if access_key else "the request"
        super().__init__(f"RocketMQ refused {who}: {reason}")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)

    def _mac(self, content: bytes) -> bytes:
        return hmac.new(self.secret_key.encode(), content, hashlib.sha1).digest()

    def authorization(self, date_time: str) -> str:
        """The gRPC `authorization` header for a request whose `x-mq-date-time` is `date_time`."""
        return _authorization(self.access_key, self.secret_key, date_time)

    def sign_remoting(self, ext: dict[str, str], body: bytes) -> dict[str, str]:
        """`ext` plus the `AccessKey` and `Signature` fields of a signed remoting request."""
        signed = {**ext, "AccessKey": self.access_key}
        content = "".join(signed[key] for key in sorted(signed)).encode() + body
        return {**signed, "Signature": base64.b64encode(self._mac(content)).decode()}


@functools.lru_cache(maxsize=8)
def _authorization(access_key: str, secret_key: str, date_time: str) -> str:
    # The date has a resolution of one second: every call within it carries the same header.
    signature = hmac.new(secret_key.encode(), date_time.encode(), hashlib.sha1).hexdigest().upper()
    return f"{ALGORITHM} Credential={access_key}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}"


def from_settings(access_key: str | None, secret_key: str | None,
                  secret_key_env: str | None) -> Credentials | None:
    """The credentials the settings name, or None for a cluster without authentication.

    `secret_key_env` names an environment variable holding the secret, so that the secret
    need not sit in a config file; it is read once, here."""
    if secret_key is not None and secret_key_env is not None:
        raise errors.InvalidRequestError("rocketmq.secret_key_env", secret_key_env,
                                         "give the secret either inline (secret_key) or by reference, not both")
    if secret_key_env is not None:
        secret_key = os.environ.get(secret_key_env)
        if not secret_key:
            raise errors.InvalidRequestError("rocketmq.secret_key_env", secret_key_env,
                                             "names an environment variable that is unset or empty")
    if access_key is None:
        if secret_key is not None:
            raise errors.InvalidRequestError("rocketmq.access_key", None, "a secret key needs its access key")
        return None
    if not access_key or any(c.isspace() or c in ",/" for c in access_key):
        raise errors.InvalidRequestError("rocketmq.access_key", access_key,
                                         "must be non-empty, without whitespace, ',' or '/'")
    if not secret_key:
        raise errors.InvalidRequestError("rocketmq.secret_key", None,
                                         "an access key needs its secret (secret_key or secret_key_env)")
    return Credentials(access_key, secret_key)


def channel_credentials(tls: bool, tls_ca: str | None) -> grpc.ChannelCredentials | None:
    """TLS to the proxy: verified against `tls_ca` (a PEM file) or the system's roots; None for
    plaintext. A `tls_ca` alone turns TLS on."""
    if tls_ca is None:
        return grpc.ssl_channel_credentials() if tls else None
    try:
        roots = Path(tls_ca).read_bytes()
    except OSError as exc:
        raise errors.InvalidRequestError("rocketmq.tls_ca", tls_ca, f"cannot read the CA file: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in roots:
        raise errors.InvalidRequestError("rocketmq.tls_ca", tls_ca, "is not a PEM certificate file")
    return grpc.ssl_channel_credentials(root_certificates=roots)
