"""gRPC statuses back into the client's typed errors: the proto header's table read right to
left. ``ErrorInfo.reason`` is the HTTP API's ``error_type`` and ``RetryInfo`` its
``Retry-After``, so the error class, the retry rule and the split rule are the HTTP ones."""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from .._transport import ConnectionFailed
from ..errors import server_error

#: The HTTP status an ``error_type`` is answered with where the gRPC code alone is ambiguous
#: (INVALID_ARGUMENT covers 400, 413 and 422; NOT_FOUND a 404 route and a 422 reference).
_BY_REASON = {
    "unknown_reference": 422,
    "request_too_large": 422,
    "payload_too_large": 413,
    "image_too_large": 413,
    "too_many_pixels": 413,
    "model_not_loaded": 404,
    "unauthorized": 401,
}

#: The HTTP status of each gRPC code otherwise. OUT_OF_RANGE is what tonic answers for a
#: message over the server's decoding limit (413 on HTTP: the client splits the chunk).
_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 413,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 404,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

#: Codes that mean something else without the service's ``ErrorInfo``: tonic answers a
#: message over the server's decoding limit with RESOURCE_EXHAUSTED or OUT_OF_RANGE (413 on
#: HTTP: split the chunk, not the 429 overload that is retried as it is).
_PLAIN_STATUS = {grpc.StatusCode.RESOURCE_EXHAUSTED: 413}

#: ``error_type``s for codes that come without an ``ErrorInfo`` (from tonic or a proxy).
_PLAIN_TYPES = {413: "payload_too_large"}


def _details(e: Any) -> tuple[str | None, float | None]:
    """``(ErrorInfo.reason, RetryInfo delay in seconds)`` of a failed call, None where absent."""
    try:
        status = rpc_status.from_call(e)
    except ValueError:  # the details disagree with the call's own code or message
        return None, None
    reason: str | None = None
    retry: float | None = None
    for d in status.details if status is not None else []:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            reason = info.reason
        elif d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            ri = error_details_pb2.RetryInfo()
            d.Unpack(ri)
            retry = ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
    return reason, retry


def error_of(e: Any, url: str) -> Exception:
    """The exception a failed call (a ``grpc.RpcError``) becomes: a typed
    :class:`~psr_reward_client.errors.RewardServerError` when the service answered, or
    :class:`ConnectionFailed` when the call never reached it (UNAVAILABLE, or the client's own
    DEADLINE_EXCEEDED or CANCELLED, without the service's ``ErrorInfo``)."""
    code: grpc.StatusCode = e.code()
    reason, retry = _details(e)
    if reason is None and code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    ):
        return ConnectionFailed(e, timed_out=code is grpc.StatusCode.DEADLINE_EXCEEDED)
    if reason is None:
        status = _PLAIN_STATUS.get(code) or _BY_CODE.get(code, 500)
    else:
        status = _BY_REASON.get(reason) or _BY_CODE.get(code, 500)
    error_type = reason or _PLAIN_TYPES.get(status) or f"grpc_{code.name.lower()}"
    return server_error(
        status,
        error_type,
        e.details() or "",
        url=url,
        retry_after=retry,
        grpc_code=code.name,
    )
