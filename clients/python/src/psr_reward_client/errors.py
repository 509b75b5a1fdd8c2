"""Typed exceptions: every failure the client reports, with the server's ``error_type``.

The server answers every error as ``{"error": str, "error_type": snake_case}``; the client maps
the HTTP status to a class here and keeps both strings, so callers can branch on the class
(``except OverloadedError``) or on ``error_type`` (``e.error_type == "unknown_reference"``).
"""

from __future__ import annotations

import json
from typing import Any


class RewardClientError(Exception):
    """Base of every error this package raises."""


class RewardServerError(RewardClientError):
    """The server answered with an error status.

    ``status`` is the HTTP status, ``error_type`` the server's snake_case kind (``"http_<status>"``
    when the body was not the service's JSON), ``message`` its text, ``request_id`` the
    ``x-request-id`` of the answer (quote it when reporting a problem) and ``url`` the replica.
    Over gRPC, ``grpc_code`` is the status code's name (``"RESOURCE_EXHAUSTED"``),
    ``error_type`` the ``ErrorInfo.reason`` and ``status`` the HTTP status of the same error,
    so one ``except`` clause (and one retry rule) serves both transports.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        request_id: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
        grpc_code: str | None = None,
    ) -> None:
        self.status = status
        self.grpc_code = grpc_code
        self.error_type = error_type
        self.message = message
        self.request_id = request_id
        self.url = url
        self.retry_after = retry_after
        where = f" from {url}" if url else ""
        if grpc_code:
            where = f" ({grpc_code}){where}"
        rid = f", request {request_id}" if request_id else ""
        super().__init__(f"{status} {error_type}{where}{rid}: {message}")


class InvalidRequestError(RewardServerError):
    """400/404/405/415/422: the request itself is wrong; retrying cannot help."""


class UnauthorizedError(RewardServerError):
    """401 ``unauthorized`` / 403: no accepted API key (pass ``api_key=`` or set
    ``PSR_API_KEY``); never retried."""


class UnknownReferenceError(InvalidRequestError):
    """422 ``unknown_reference``: a ``{"ref": hash}`` the server no longer holds.

    The client resends the images by itself; this escapes only if the resend fails too.
    """


class PayloadTooLargeError(RewardServerError):
    """413 (``payload_too_large``, ``image_too_large``, ``too_many_pixels``) or 422
    ``request_too_large``: a single item is over the server's limits (larger batches are split).
    """


class OverloadedError(RewardServerError):
    """429 ``overloaded``: retried with ``Retry-After`` until the deadline."""


class NotReadyError(RewardServerError):
    """503 ``not_ready``: the replica is starting or draining; retried elsewhere or later."""


class ServerTimeoutError(RewardServerError):
    """504 ``timeout``: the server's deadline for the request (the client's) passed."""


class BackendError(RewardServerError):
    """500 and other 5xx: the model failed; not retried (a retry would most likely fail too)."""


class DeadlineExceededError(RewardClientError, TimeoutError):
    """The call's overall deadline passed; ``last_error`` says what the last attempt met."""

    def __init__(self, message: str, last_error: BaseException | None = None) -> None:
        self.last_error = last_error
        detail = f" (last error: {last_error})" if last_error is not None else ""
        super().__init__(message + detail)


class ServerUnavailableError(RewardClientError):
    """``wait_until_ready`` gave up: no replica answered ``GET /ready`` with 200 in time."""


class TlsVerificationError(RewardClientError):
    """An ``https://`` replica's certificate was refused (pass ``ca_file=`` for a private CA);
    never retried, the next handshake would meet the same certificate."""


#: Status -> class, for statuses whose class does not depend on ``error_type``.
_BY_STATUS: dict[int, type[RewardServerError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    403: UnauthorizedError,
    404: InvalidRequestError,
    405: InvalidRequestError,
    413: PayloadTooLargeError,
    415: InvalidRequestError,
    429: OverloadedError,
    503: NotReadyError,
    504: ServerTimeoutError,
}


def parse_error_body(text: str) -> tuple[str | None, str]:
    """``(error_type, message)`` of a service error body; ``(None, text)`` if it is not one."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        return None, text.strip()[:500]
    if isinstance(body, dict) and isinstance(body.get("error_type"), str):
        return body["error_type"], str(body.get("error", ""))
    return None, text.strip()[:500]


def error_for(
    status: int,
    text: str,
    *,
    request_id: str | None = None,
    url: str | None = None,
    retry_after: float | None = None,
) -> RewardServerError:
    """The typed exception for an error answer (status and body)."""
    kind, message = parse_error_body(text)
    return server_error(
        status,
        kind or f"http_{status}",
        message,
        request_id=request_id,
        url=url,
        retry_after=retry_after,
    )


def server_error(
    status: int,
    error_type: str,
    message: str,
    *,
    request_id: str | None = None,
    url: str | None = None,
    retry_after: float | None = None,
    grpc_code: str | None = None,
) -> RewardServerError:
    """The typed exception for an error of HTTP ``status`` and ``error_type`` (either edge)."""
    cls: type[RewardServerError]
    if error_type == "unknown_reference":
        cls = UnknownReferenceError
    elif error_type == "request_too_large":
        cls = PayloadTooLargeError
    elif status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif status == 422 or 400 <= status < 500:
        cls = InvalidRequestError
    else:
        cls = BackendError
    return cls(
        status,
        error_type,
        message,
        request_id=request_id,
        url=url,
        retry_after=retry_after,
        grpc_code=grpc_code,
    )
