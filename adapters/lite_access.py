"""Who may reach a lite engine over gRPC, from the settings: the files a remote client presents
(`lite.tls_ca`, `lite.tls_cert`, `lite.tls_key`, `lite.token_file`) and the ones the embedded
engine serves its `lite.listen` face with (`lite.listen_tls_cert`, `lite.listen_tls_key`,
`lite.listen_tls_client_ca`, `lite.listen_token_file`; lite_engine/access.py checks calls).

Every problem is an InvalidRequestError naming its setting: an unreadable file, half a key pair,
a token that cannot travel in a header, or a face other hosts can reach without a token."""

from __future__ import annotations

import grpc

from lite_engine.access import Access, check_exposure

from . import errors


def read_setting(setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise errors.InvalidRequestError(setting, path, f"cannot read it: {exc.strerror}") from None


def read_token(setting: str, path: str | None) -> str | None:
    if path is None:
        return None
    token = read_setting(setting, path).decode("utf-8", "replace").strip()
    if not (token and all(33 <= ord(c) < 127 for c in token)):
        raise errors.InvalidRequestError(setting, path, "the token must be printable ASCII, not empty")
    return token


def client_credentials(ca: str | None, cert: str | None, key: str | None) -> grpc.ChannelCredentials | None:
    """TLS to a remote engine (None: plaintext); `cert` and `key` make it mutual."""
    if (cert is None) != (key is None):
        raise errors.InvalidRequestError("lite.tls_cert" if cert is None else "lite.tls_key", None,
                                         "mutual TLS needs both tls_cert and tls_key")
    if ca is None and cert is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=ca and read_setting("lite.tls_ca", ca),
                                        private_key=key and read_setting("lite.tls_key", key),
                                        certificate_chain=cert and read_setting("lite.tls_cert", cert))


def listen_access(listen: str, *, tls_cert: str | None = None, tls_key: str | None = None,
                  tls_client_ca: str | None = None, token_file: str | None = None) -> Access:
    """The embedded engine's face on `listen` (host:port): TLS, mutual TLS and a token, as
    `topicbridge engine` has them; a host other than loopback must have a token."""
    if (tls_cert is None) != (tls_key is None):
        raise errors.InvalidRequestError("lite.listen_tls_cert" if tls_cert is None else "lite.listen_tls_key",
                                         None, "TLS needs both listen_tls_cert and listen_tls_key")
    if tls_client_ca is not None and tls_cert is None:
        raise errors.InvalidRequestError("lite.listen_tls_client_ca", tls_client_ca,
                                         "mutual TLS needs listen_tls_cert and listen_tls_key too")
    access = Access(cert=tls_cert and read_setting("lite.listen_tls_cert", tls_cert),
                    key=tls_key and read_setting("lite.listen_tls_key", tls_key),
                    client_ca=tls_client_ca and read_setting("lite.listen_tls_client_ca", tls_client_ca),
                    token=read_token("lite.listen_token_file", token_file))
    host = listen.rpartition(":")[0].strip("[]")
    try:
        check_exposure(host, access)
    except ValueError as exc:
        raise errors.InvalidRequestError("lite.listen", listen,
                                         f"{exc}; set lite.listen_token_file, or listen on 127.0.0.1") from None
    return access
