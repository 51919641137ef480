"""The one table: every error the gateway reports, and what each surface calls it.

The trees live where the errors are raised: `adapters.errors` (backends), `gateway.tasks.errors`
(tasks), `gateway.registry.cardfetch` (agent cards and outbound URLs), `gateway.http.errors`
(the guard's refusals, which carry their HTTP and gRPC status themselves because the HTTP layer
may not import this module). Here each class gets, explicitly, its

    HTTP status   the admin API, the A2A HTTP+JSON errors the gateway writes itself
    A2A error     the a2a-sdk error class (its JSON-RPC code and REST reason follow from the SDK)
    MCP code      the JSON-RPC error code of an MCP request
    gRPC status   the status name (A2A HTTP+JSON `error.status`, a future gRPC binding)

Protocol layers look errors up (`codes_of`, `a2a_error`, `mcp_error`); they never invent codes.
A class missing from the table falls back to its nearest listed base class, but the tests
require every class to be listed.

MCP defines no codes for a quota, a conflict or an outage, and the JSON-RPC server range
(-32000..-32099) is where MCP keeps adding its own (-32020, -32042, ...). The gateway's three
are application codes outside the reserved range that echo the HTTP status: -31409 conflict,
-31429 resource exhausted, -31503 unavailable (retry later). A not-found is INVALID_PARAMS, as
MCP itself answers an unknown tool or task.
"""

from __future__ import annotations

from dataclasses import dataclass

from a2a.utils.errors import (A2AError, InternalError, InvalidParamsError, InvalidRequestError as A2AInvalidRequest,
                              TaskNotCancelableError, TaskNotFoundError as A2ATaskNotFound,
                              UnsupportedOperationError)
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST

from adapters import errors as backend
from gateway.http import errors as http
from gateway.registry import cardfetch as card
from gateway.tasks import errors as task
from gateway.tasks.admission import CapabilityOverloadedError

MCP_CONFLICT = -31409
MCP_RESOURCE_EXHAUSTED = -31429
MCP_UNAVAILABLE = -31503


@dataclass(frozen=True)
class Codes:
    http: int
    a2a: type[A2AError]
    mcp: int
    grpc: str


_INTERNAL = Codes(500, InternalError, INTERNAL_ERROR, "INTERNAL")
_BAD_INPUT = Codes(400, InvalidParamsError, INVALID_PARAMS, "INVALID_ARGUMENT")
_NOT_FOUND = Codes(404, A2ATaskNotFound, INVALID_PARAMS, "NOT_FOUND")
_CONFLICT = Codes(409, InvalidParamsError, MCP_CONFLICT, "FAILED_PRECONDITION")
_EXHAUSTED = Codes(429, InternalError, MCP_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED")
_UNAVAILABLE = Codes(503, InternalError, MCP_UNAVAILABLE, "UNAVAILABLE")
_ENDED = Codes(409, UnsupportedOperationError, INVALID_PARAMS, "FAILED_PRECONDITION")


def _refused(cls: type[http.RequestRefusedError]) -> Codes:
    """The guard refuses a request as a whole: JSON-RPC Invalid Request on both JSON-RPC surfaces."""
    return Codes(cls.http_status, A2AInvalidRequest, INVALID_REQUEST, cls.grpc_status)


TABLE: dict[type[Exception], Codes] = {
    # backends
    backend.BackendError: _INTERNAL,
    backend.InvalidRequestError: _BAD_INPUT,
    backend.MessageTooLargeError: Codes(413, InvalidParamsError, INVALID_PARAMS, "INVALID_ARGUMENT"),
    backend.NotFoundError: _NOT_FOUND,
    backend.UnknownReceiptError: _NOT_FOUND,
    backend.UnknownClientError: _UNAVAILABLE,       # the gateway's own session with the engine lapsed
    backend.ConflictError: _CONFLICT,
    backend.QuotaExceededError: _EXHAUSTED,
    backend.BackendUnavailableError: _UNAVAILABLE,
    backend.StorageError: _INTERNAL,
    # tasks
    task.TaskError: _INTERNAL,
    task.TaskNotFoundError: _NOT_FOUND,
    task.UnknownCapabilityError: Codes(404, InvalidParamsError, INVALID_PARAMS, "NOT_FOUND"),
    task.NoLiveWorkerError: _UNAVAILABLE,          # nobody to take it now: retry later (registry/liveness.py)
    task.TaskTerminalError: _ENDED,
    task.TaskRunningError: _ENDED,
    task.ContextMismatchError: _BAD_INPUT,
    task.WrongCapabilityError: _BAD_INPUT,
    task.NotCancelableError: Codes(409, TaskNotCancelableError, INVALID_PARAMS, "FAILED_PRECONDITION"),
    task.SubscriberTooSlowError: _EXHAUSTED,
    CapabilityOverloadedError: _UNAVAILABLE,       # its workers lag: retry later (admission.py)
    # agent cards and outbound URLs: a URL the gateway may not or cannot reach is well-formed but
    # unprocessable (422); a bad card is the caller's bad input
    card.CardError: Codes(422, InvalidParamsError, INVALID_PARAMS, "FAILED_PRECONDITION"),
    card.InvalidCardError: _BAD_INPUT,
    card.RefusedURLError: Codes(422, InvalidParamsError, INVALID_PARAMS, "PERMISSION_DENIED"),
    card.UnreachableError: Codes(422, InvalidParamsError, MCP_UNAVAILABLE, "UNAVAILABLE"),
    # the guard's refusals
    **{cls: _refused(cls) for cls in (http.RequestRefusedError, http.UnauthorizedError, http.BodyTooLargeError,
                                      http.BodyTimeoutError, http.MalformedBodyError, http.ForbiddenError,
                                      http.RateLimitedError, http.OverloadedError, http.BackendDownError)},
}


_KNOWN = tuple(TABLE)


def codes_of(error: BaseException | type[BaseException]) -> Codes:
    """The codes of an error (or error class); anything outside the trees is internal."""
    cls = error if isinstance(error, type) else type(error)
    return next((TABLE[c] for c in cls.__mro__ if c in TABLE), _INTERNAL)


def error_data(error: BaseException) -> dict:
    """What an error carries, for a protocol error's `data`: its type, message and fields."""
    to_dict = getattr(error, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    fields = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    return {"type": type(error).__name__, "message": str(error), **fields}


def a2a_error(error: BaseException) -> A2AError:
    """The A2A error a protocol layer raises for `error`."""
    if isinstance(error, A2AError):
        return error
    if not isinstance(error, _KNOWN):
        return InternalError(message=f"{type(error).__name__}: {error}")
    return codes_of(error).a2a(message=str(error), data=error_data(error))


def mcp_error(error: BaseException, message: str | None = None) -> MCPError:
    """The MCP error for `error`; `message` replaces the error's own text (a wording the spec fixes)."""
    return MCPError(codes_of(error).mcp, message or str(error), data=error_data(error))
