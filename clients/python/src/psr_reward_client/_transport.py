"""What a client needs from the wire, whatever the wire is: HTTP+JSON (``http://``,
``https://``) or gRPC (``grpc://``).

The clients own everything else (collecting and encoding the inputs, chunking within the
server's limits, replica choice, the retry rules, references sent by hash once the server has
seen them, typed results), so both transports share that code and behave the same. A
transport turns one chunk into one request and the answer back into the HTTP API's JSON
shapes (what :class:`~psr_reward_client.results.ItemResult` reads), and every failure into
one of three things: a typed :class:`~psr_reward_client.errors.RewardServerError` (the server
answered), :class:`ConnectionFailed` (it could not be reached: try elsewhere or later) or
:class:`~psr_reward_client.errors.TlsVerificationError`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .request import CallOptions, PreparedItem


class ConnectionFailed(Exception):
    """The replica could not be reached (refused, reset, DNS): the clients mark it down and
    retry elsewhere or after a backoff. ``timed_out``: the attempt ran out of time."""

    def __init__(self, cause: BaseException, *, timed_out: bool = False) -> None:
        self.cause = cause
        self.timed_out = timed_out
        super().__init__(f"{type(cause).__name__}: {cause}")


@dataclass(frozen=True)
class Part:
    """Results of some items of a chunk, as soon as the transport has them: their
    ``positions`` in the chunk, each item's JSON (``raw``) and, for a whole answer, the
    answer itself (``response``: its ``options`` and ``timing``; None for a streamed item)."""

    positions: Sequence[int]
    raw: Sequence[Mapping[str, Any]]
    response: Mapping[str, Any] | None


@dataclass(frozen=True)
class Send:
    """One attempt at a chunk: its items, the call's options, the references to send by hash
    (reference digest -> server hash), the ``timeout_ms`` the server is told and the seconds
    the client waits (``left``). ``stream``: ask for each item's result as it is ready."""

    items: Sequence[PreparedItem]
    call: CallOptions
    known: Mapping[str, str]
    timeout_ms: int
    left: float
    stream: bool = False


class Transport(Protocol):
    """The blocking transport of :class:`~psr_reward_client.RewardClient`."""

    def probe(self, url: str, timeout: float) -> str | None:
        """None when the replica is ready, else why not (never raises)."""

    def info(self, url: str, timeout: float) -> dict[str, Any]:
        """The replica's ``GET /info`` document."""

    def send(self, url: str, attempt: Send) -> Generator[Part, None, None]:
        """The chunk's results: one :class:`Part` for a whole answer, or one per item as
        they finish when ``attempt.stream`` and the transport can stream; raises when the
        answer is an error (after the parts already yielded)."""

    def close(self) -> None:
        """Closes the connections."""


class AsyncTransport(Protocol):
    """The asyncio transport of :class:`~psr_reward_client.AsyncRewardClient` (one per event
    loop: connections belong to the loop that opened them)."""

    async def probe(self, url: str, timeout: float) -> str | None:
        """See :meth:`Transport.probe`."""

    async def info(self, url: str, timeout: float) -> dict[str, Any]:
        """See :meth:`Transport.info`."""

    def send(self, url: str, attempt: Send) -> AsyncGenerator[Part, None]:
        """See :meth:`Transport.send`."""

    async def aclose(self) -> None:
        """Closes the connections."""


def whole_answer(payload: Mapping[str, Any], n: int, url: str) -> Part:
    """The one :class:`Part` of a unary answer; checks the server answered for every item."""
    raw = payload.get("results")
    if not isinstance(raw, list) or len(raw) != n:
        got = len(raw) if isinstance(raw, list) else "no"
        raise ValueError(f"{url}: answer has {got} results for {n} items")
    return Part(range(n), raw, payload)


def scheme_of(urls: Sequence[str]) -> str:
    """``"grpc"`` or ``"http"``: which transport the base URLs ask for (one for all)."""
    kinds = {"grpc" if u.startswith(("grpc://", "grpcs://")) else "http" for u in urls}
    if len(kinds) != 1:
        raise ValueError(f"base URLs mix gRPC and HTTP replicas: {list(urls)}")
    return kinds.pop()
