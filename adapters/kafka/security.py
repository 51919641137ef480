"""How the adapter's Kafka clients authenticate and encrypt: the `kafka` settings
security_protocol, sasl_mechanism, sasl_username / sasl_password and ssl_cafile / ssl_certfile /
ssl_keyfile, checked once and turned into the options every aiokafka client gets (the
producer, the admin client and every consumer the adapter creates: cluster.py builds them all).
"""

from __future__ import annotations

import ssl

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn
from aiokafka.helpers import create_ssl_context

from .. import errors

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def client_options(security_protocol: str = "PLAINTEXT", sasl_mechanism: str | None = None,
                   sasl_username: str | None = None, sasl_password: str | None = None,
                   ssl_cafile: str | None = None, ssl_certfile: str | None = None,
                   ssl_keyfile: str | None = None) -> dict:
    """aiokafka keyword arguments for these settings; ValueError names a wrong one."""
    if security_protocol not in PROTOCOLS:
        raise ValueError(f"security_protocol must be one of {', '.join(PROTOCOLS)}, got {security_protocol!r}")
    sasl, tls = security_protocol.startswith("SASL_"), security_protocol.endswith("SSL")
    options: dict = {"security_protocol": security_protocol}
    if sasl:
        if sasl_mechanism not in MECHANISMS:
            raise ValueError(f"sasl_mechanism must be one of {', '.join(MECHANISMS)} with {security_protocol}, "
                             f"got {sasl_mechanism!r}")
        if not sasl_username or sasl_password is None:
            raise ValueError(f"sasl_username and sasl_password are required with {security_protocol}")
        options.update(sasl_mechanism=sasl_mechanism, sasl_plain_username=sasl_username,
                       sasl_plain_password=sasl_password)
    elif sasl_mechanism is not None or sasl_username is not None or sasl_password is not None:
        raise ValueError(f"sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL, "
                         f"got {security_protocol!r}")
    files = {"ssl_cafile": ssl_cafile, "ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
    if tls:
        if ssl_keyfile is not None and ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile")
        try:
            options["ssl_context"] = create_ssl_context(cafile=ssl_cafile, certfile=ssl_certfile,
                                                        keyfile=ssl_keyfile)
        except OSError as exc:
            raise ValueError(f"cannot load the TLS files {_given(files)}: {exc}") from exc
    elif any(v is not None for v in files.values()):
        raise ValueError(f"ssl_* settings need security_protocol SSL or SASL_SSL, got {security_protocol!r}")
    return options


def _given(files: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in files.items() if v is not None) or "(system defaults)"


async def refusal(bootstrap_servers: str, options: dict, request_timeout: float) -> errors.BackendError | None:
    """Why the broker refused a client that could not start, when this side can tell.

    aiokafka reports a refused SASL login, a broker certificate that does not verify and a
    plaintext client on a TLS listener all as "Unable to bootstrap"; one connection made here
    gets the real answer. None when that connection works or fails for another reason."""
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=int(request_timeout * 1000), **options)
    except (kafka_errors.SaslAuthenticationFailed, kafka_errors.AuthenticationFailedError,
            kafka_errors.UnsupportedSaslMechanismError, kafka_errors.IllegalSaslStateError) as exc:
        return errors.InvalidRequestError(
            "kafka SASL login", options["sasl_plain_username"],
            f"the broker refused it ({options['sasl_mechanism']}): {exc}; check sasl_username, sasl_password "
            "and sasl_mechanism")
    except ssl.SSLCertVerificationError as exc:
        return errors.InvalidRequestError(
            "kafka TLS", f"{host}:{port}",
            f"the broker's certificate did not verify ({exc.verify_message}); check ssl_cafile")
    except ssl.SSLError as exc:
        return errors.BackendUnavailableError("kafka", f"TLS handshake with {host}:{port} failed: {exc}; "
                                                       "check security_protocol and the ssl_* files")
    except kafka_errors.KafkaConnectionError as exc:
        if options.get("security_protocol", "PLAINTEXT") != "PLAINTEXT" or "closed" not in str(exc):
            return None
        return errors.BackendUnavailableError(
            "kafka", f"{host}:{port} closed the connection during the first request ({exc}); if its "
                     "listener wants TLS or SASL, set security_protocol (now PLAINTEXT)")
    except (OSError, ValueError, kafka_errors.KafkaError, TimeoutError):
        return None           # not something this side can name: the original error stands
    conn.close()
    return None
