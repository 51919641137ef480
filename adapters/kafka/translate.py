"""aiokafka's errors as the port's errors (adapters/errors.py), so callers never see a Kafka type."""

from __future__ import annotations

import contextlib

from aiokafka import errors as kafka_errors

from .. import errors

BACKEND = "kafka"


def port_error(exc: BaseException, *, size: int | None = None, limit: int | None = None,
               session_timeout: float | None = None) -> errors.BackendError:
    if isinstance(exc, errors.BackendError):
        return exc
    if isinstance(exc, (kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordTooLargeError,
                        kafka_errors.RecordListTooLargeError)) and limit is not None:
        return errors.MessageTooLargeError(size if size is not None else limit + 1, limit)
    if isinstance(exc, kafka_errors.InvalidSessionTimeoutError):
        return errors.InvalidRequestError("session_timeout", session_timeout, "the broker refuses it: it must lie "
                                          "within group.min.session.timeout.ms..group.max.session.timeout.ms")
    if isinstance(exc, kafka_errors.UnknownTopicOrPartitionError):
        return errors.NotFoundError("topic", str(exc))
    if isinstance(exc, (kafka_errors.InvalidTopicError, kafka_errors.PolicyViolationError,
                        kafka_errors.InvalidConfigurationError, kafka_errors.InvalidPartitionsError,
                        kafka_errors.InvalidReplicationFactorError)):
        return errors.InvalidRequestError("kafka request", type(exc).__name__, str(exc))
    if isinstance(exc, (kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError,
                        kafka_errors.NodeNotReadyError, kafka_errors.NoBrokersAvailable,
                        kafka_errors.ProducerClosed, kafka_errors.KafkaUnavailableError)):
        return errors.BackendUnavailableError(BACKEND, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, kafka_errors.KafkaError):
        if getattr(exc, "retriable", False):
            return errors.BackendUnavailableError(BACKEND, f"{type(exc).__name__}: {exc}")
        return errors.StorageError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return errors.BackendUnavailableError(BACKEND, f"{type(exc).__name__}: {exc}")
    raise exc


@contextlib.contextmanager
def translated(*, size: int | None = None, limit: int | None = None):
    """Re-raise aiokafka errors (and lost connections) as port errors; others pass through."""
    try:
        yield
    except errors.BackendError:
        raise
    except (kafka_errors.KafkaError, ConnectionError, TimeoutError, OSError) as exc:
        raise port_error(exc, size=size, limit=limit) from exc
