"""The embedded lite engine of topicbridge: capability topics with consumer groups, lite topics
dispatched through InterestSets and ReadySets, and a durable commit log."""

from .config import EngineConfig, TopicConfig, dead_letter_topic
from .engine import Engine
from .errors import (ConflictError, DataDirLockedError, EngineClosedError, EngineError, InvalidArgumentError, InvalidNameError,
                     MessageTooLargeError, NotFoundError, QuotaExceededError, StorageError,
                     TopicKindError, UnknownClientError, UnknownReceiptError, UnknownTopicError)
from .stream import Delivery

__all__ = [
    "ConflictError", "DataDirLockedError", "Delivery", "Engine", "EngineClosedError", "EngineConfig", "EngineError", "InvalidArgumentError",
    "InvalidNameError", "MessageTooLargeError", "NotFoundError", "QuotaExceededError", "StorageError",
    "TopicConfig", "TopicKindError", "UnknownClientError", "UnknownReceiptError", "UnknownTopicError",
    "dead_letter_topic",
]
