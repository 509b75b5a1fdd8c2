"""The HTTP+JSON transport (``POST /v1/reward``, ``GET /info``, ``GET /ready``) over httpx,
blocking and asyncio. Streaming is not an HTTP route: a streamed chunk comes back whole."""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

import httpx

from . import _core
from ._transport import ConnectionFailed, Part, Send, whole_answer
from .errors import TlsVerificationError, error_for
from .request import build_body


def _error(resp: httpx.Response, url: str) -> Exception:
    return error_for(
        resp.status_code,
        resp.text,
        request_id=resp.headers.get("x-request-id"),
        url=url,
        retry_after=_core.retry_after_seconds(resp.headers.get("retry-after")),
    )


def _failed(e: httpx.TransportError, url: str) -> Exception:
    """The error a connection failure becomes."""
    if _core.tls_failure(e):
        return TlsVerificationError(f"{url}: {e} (ca_file=?)")
    return ConnectionFailed(e, timed_out=isinstance(e, httpx.TimeoutException))


def _problem(r: httpx.Response) -> str | None:
    return None if r.status_code == 200 else f"{r.status_code} {r.text.strip()[:200]}"


class HttpSettings:
    """What both HTTP transports build their httpx client from."""

    def __init__(
        self,
        *,
        pool: int,
        headers: Mapping[str, str],
        trust_env: bool,
        event_hooks: Mapping[str, list[Callable[..., Any]]],
        verify: ssl.SSLContext | bool,
        connect_timeout: float,
    ) -> None:
        self.limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        self.headers = dict(headers)
        self.trust_env = trust_env
        self.event_hooks = {k: list(v) for k, v in event_hooks.items()}
        self.verify = verify
        self.connect_timeout = connect_timeout

    def timeout(self, left: float) -> httpx.Timeout:
        """The httpx timeout of an attempt with ``left`` seconds."""
        return httpx.Timeout(left, connect=min(left, self.connect_timeout))


class HttpTransport:
    """Blocking HTTP: one pooled keep-alive httpx client for every replica."""

    def __init__(self, s: HttpSettings) -> None:
        self._s = s
        self._http = httpx.Client(
            limits=s.limits,
            headers=s.headers,
            trust_env=s.trust_env,
            event_hooks=s.event_hooks,
            verify=s.verify,
        )

    def probe(self, url: str, timeout: float) -> str | None:
        """``GET /ready``."""
        try:
            return _problem(self._http.get(f"{url}/ready", timeout=timeout))
        except httpx.TransportError as e:
            return f"{type(e).__name__}: {e}"

    def info(self, url: str, timeout: float) -> dict[str, Any]:
        """``GET /info``."""
        try:
            resp = self._http.get(f"{url}/info", timeout=timeout)
        except httpx.TransportError as e:
            raise _failed(e, url) from e
        if resp.status_code != 200:
            raise _error(resp, url)
        body: dict[str, Any] = resp.json()
        return body

    def send(self, url: str, attempt: Send) -> Generator[Part, None, None]:
        """``POST /v1/reward`` with the chunk."""
        body = build_body(attempt.items, attempt.call, attempt.known, attempt.timeout_ms)
        try:
            resp = self._http.post(
                f"{url}/v1/reward",
                content=body,
                headers={"content-type": "application/json"},
                timeout=self._s.timeout(attempt.left),
            )
        except httpx.TransportError as e:
            raise _failed(e, url) from e
        if resp.status_code != 200:
            raise _error(resp, url)
        yield whole_answer(resp.json(), len(attempt.items), url)

    def close(self) -> None:
        """Closes the pool."""
        self._http.close()


class AsyncHttpTransport:
    """asyncio HTTP: one httpx.AsyncClient (per event loop, as the client keeps them)."""

    def __init__(self, s: HttpSettings, run_cpu: Callable[..., Any]) -> None:
        self._s = s
        #: ``run_cpu(fn, *args)`` awaits ``fn`` on the client's encoding pool (JSON bodies of
        #: large chunks take milliseconds to build; not on the event loop).
        self._run_cpu = run_cpu
        self._http = httpx.AsyncClient(
            limits=s.limits,
            headers=s.headers,
            trust_env=s.trust_env,
            event_hooks=s.event_hooks,
            verify=s.verify,
        )

    async def probe(self, url: str, timeout: float) -> str | None:
        """``GET /ready``."""
        try:
            return _problem(await self._http.get(f"{url}/ready", timeout=timeout))
        except httpx.TransportError as e:
            return f"{type(e).__name__}: {e}"

    async def info(self, url: str, timeout: float) -> dict[str, Any]:
        """``GET /info``."""
        try:
            resp = await self._http.get(f"{url}/info", timeout=timeout)
        except httpx.TransportError as e:
            raise _failed(e, url) from e
        if resp.status_code != 200:
            raise _error(resp, url)
        body: dict[str, Any] = resp.json()
        return body

    async def send(self, url: str, attempt: Send) -> AsyncGenerator[Part, None]:
        """``POST /v1/reward`` with the chunk."""
        a = attempt
        body = await self._run_cpu(build_body, a.items, a.call, a.known, a.timeout_ms)
        try:
            resp = await self._http.post(
                f"{url}/v1/reward",
                content=body,
                headers={"content-type": "application/json"},
                timeout=self._s.timeout(a.left),
            )
        except httpx.TransportError as e:
            raise _failed(e, url) from e
        if resp.status_code != 200:
            raise _error(resp, url)
        yield whole_answer(resp.json(), len(a.items), url)

    async def aclose(self) -> None:
        """Closes the pool."""
        await self._http.aclose()
