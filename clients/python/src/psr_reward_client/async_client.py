"""``AsyncRewardClient``: the asyncio client, the same behaviour as :class:`RewardClient`.

Usable from any event loop (TRL runs async reward functions on a loop of its own): the
connection pool and the concurrency bound are kept per running loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from . import _core
from ._core import Verdict
from .errors import (
    DeadlineExceededError,
    ServerUnavailableError,
    TlsVerificationError,
    error_for,
)
from .images import EncodedImage, EncodeOptions, encode_image
from .replicas import Backoff, Replica, ReplicaSet
from .request import CallOptions, ItemSubjects, Limits, PreparedItem, build_body, plan_chunks
from .results import ItemResult, ScoreResult
from .sync_client import DEFAULT_URL, _urls, auth_headers


@dataclass
class _LoopState:
    http: httpx.AsyncClient
    gate: asyncio.Semaphore


class AsyncRewardClient:
    """Asyncio twin of :class:`RewardClient` (same arguments, same results and errors):
    ``await client.score(...)``; ``client.submit(...)`` returns an :class:`asyncio.Task`.
    ``event_hooks`` must hold ``async`` functions (httpx's rule for its async client)."""

    def __init__(
        self,
        base_url: str | Sequence[str] = DEFAULT_URL,
        *,
        timeout: float = 120.0,
        chunk_size: int = 32,
        max_concurrency: int = 8,
        encode: EncodeOptions | None = None,
        encode_workers: int | None = None,
        connect_timeout: float = 5.0,
        backoff: Backoff | None = None,
        headers: Mapping[str, str] | None = None,
        trust_env: bool = False,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
        api_key: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        verify: bool = True,
    ) -> None:
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self.encode_options = encode or EncodeOptions()
        self._replicas = ReplicaSet(_urls(base_url), backoff or Backoff())
        self._connect_timeout = connect_timeout
        self._headers = auth_headers(headers, api_key)
        self._trust_env = trust_env
        self._hooks = {k: list(v) for k, v in (event_hooks or {}).items()}
        self._verify = _core.tls_context(ca_file, verify)
        workers = encode_workers or min(8, os.cpu_count() or 1)
        self._encode_pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="psr-encode")
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._limits: Limits | None = None

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        st = self._loops.get(loop)
        if st is None:
            pool = self.max_concurrency * len(self._replicas.replicas) + 4
            http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
                headers=self._headers,
                trust_env=self._trust_env,
                event_hooks=self._hooks,
                verify=self._verify,
            )
            st = _LoopState(http, asyncio.Semaphore(self.max_concurrency))
            self._loops[loop] = st
        return st

    async def aclose(self) -> None:
        """Closes this loop's connections and the encoding pool."""
        st = self._loops.pop(asyncio.get_running_loop(), None)
        if st is not None:
            await st.http.aclose()
        self._encode_pool.shutdown(wait=False)

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def urls(self) -> list[str]:
        """The replicas' base URLs."""
        return [r.url for r in self._replicas.replicas]

    async def _probe(self, url: str, timeout: float) -> str | None:
        try:
            r = await self._state().http.get(f"{url}/ready", timeout=timeout)
        except httpx.TransportError as e:
            return f"{type(e).__name__}: {e}"
        return None if r.status_code == 200 else f"{r.status_code} {r.text.strip()[:200]}"

    async def wait_until_ready(self, timeout: float = 60.0, *, every: bool = False) -> None:
        """See :meth:`RewardClient.wait_until_ready`."""
        deadline = time.monotonic() + timeout
        why: dict[str, str] = {}
        while True:
            for r in self._replicas.replicas:
                problem = await self._probe(r.url, min(2.0, max(0.1, deadline - time.monotonic())))
                if problem is None:
                    why.pop(r.url, None)
                    self._replicas.mark_ok(r)
                    if not every:
                        return
                else:
                    why[r.url] = problem
            if every and not why:
                return
            if time.monotonic() >= deadline:
                detail = "; ".join(f"{u}: {w}" for u, w in why.items())
                raise ServerUnavailableError(
                    f"psr-reward not ready after {timeout:.0f} s ({detail}); is the server "
                    "running (`make run`) and are the base URLs right?"
                )
            await asyncio.sleep(0.2)

    async def info(self, timeout: float = 10.0) -> dict[str, Any]:
        """``GET /info`` of the first replica that answers."""
        last: BaseException | None = None
        for r in self._replicas.replicas:
            try:
                resp = await self._state().http.get(f"{r.url}/info", timeout=timeout)
            except httpx.TransportError as e:
                if _core.tls_failure(e):
                    raise TlsVerificationError(f"{r.url}: {e} (ca_file=?)") from e
                last = e
                continue
            if resp.status_code == 200:
                body: dict[str, Any] = resp.json()
                return body
            last = error_for(resp.status_code, resp.text, url=r.url)
            if _core.verdict(resp.status_code, last.error_type) is Verdict.FAIL:
                raise last  # 401, 404, ...: asking again cannot help
        raise ServerUnavailableError(f"no replica answered GET /info: {last}")

    async def limits(self, timeout: float = 10.0) -> Limits:
        """See :meth:`RewardClient.limits`."""
        deadline = time.monotonic() + timeout
        while self._limits is None:
            try:
                self._limits = Limits.from_info(await self.info(min(5.0, timeout)))
            except ServerUnavailableError as e:
                if time.monotonic() + 0.2 >= deadline:
                    raise DeadlineExceededError("reading /info: deadline passed", e) from e
                await asyncio.sleep(0.2)
        return self._limits

    async def score(
        self,
        images: Any,
        prompts: str | Sequence[str] | None = None,
        subjects: Sequence[ItemSubjects] | None = None,
        task: str | Sequence[str | None] | None = None,
        rewards: Mapping[str, float] | None = None,
        timeout: float | None = None,
        *,
        mode: str | None = None,
        options: Mapping[str, Any] | None = None,
        priority: int | None = None,
    ) -> ScoreResult:
        """See :meth:`RewardClient.score`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        call = CallOptions(rewards, mode, options, priority)
        collected = _core.collect(images, prompts, subjects, task)
        loop = asyncio.get_running_loop()
        encoding: dict[int, asyncio.Future[EncodedImage]] = {}
        for k in _core.encode_order(collected):
            encoding[k] = loop.run_in_executor(
                self._encode_pool, encode_image, collected.images[k], self.encode_options
            )
        limits = await self.limits(max(0.0, deadline - time.monotonic()))
        tasks = [
            asyncio.ensure_future(self._group(collected, group, encoding, call, deadline, limits))
            for group in _core.count_groups(collected.n_items, limits, self.chunk_size)
        ]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            raise
        out: list[ItemResult] = []
        responses: list[Mapping[str, Any]] = []
        for res, resp in parts:
            out.extend(res)
            responses.extend(resp)
        return ScoreResult(out, responses)

    def submit(self, *args: Any, **kwargs: Any) -> asyncio.Task[ScoreResult]:
        """``score`` as a task on the running loop (score step N while sampling step N+1)."""
        return asyncio.ensure_future(self.score(*args, **kwargs))

    async def _acquire(self, deadline: float, last: BaseException | None) -> Replica:
        while True:
            left = _core.remaining(deadline, last, "no replica available")
            replica, wait = self._replicas.acquire()
            if replica is None:
                if wait >= left:
                    raise DeadlineExceededError(
                        f"no replica available before the deadline ({self.urls})", last
                    )
                await asyncio.sleep(wait)
                continue
            if replica.healthy:
                return replica
            problem = await self._probe(replica.url, min(2.0, left))
            if problem is None:
                self._replicas.mark_ok(replica)
                return replica
            self._replicas.release(replica)
            self._replicas.mark_down(replica)
            last = ServerUnavailableError(f"{replica.url}: {problem}")

    async def _group(
        self,
        c: _core.Collected,
        group: range,
        encoding: Mapping[int, asyncio.Future[EncodedImage]],
        call: CallOptions,
        deadline: float,
        limits: Limits,
    ) -> tuple[list[ItemResult], list[Mapping[str, Any]]]:
        """Waits for a group's images, then sends it (in chunks within the byte limits)."""
        slots = _core.slots_of(c, group)
        left = _core.remaining(deadline, None, "encoding")
        try:
            done = await asyncio.wait_for(asyncio.gather(*(encoding[k] for k in slots)), left)
        except asyncio.TimeoutError as e:
            raise DeadlineExceededError("encoding: deadline passed") from e
        items = _core.prepared(c, group, dict(zip(slots, done, strict=True)))
        st = self._state()
        results: list[ItemResult] = []
        responses: list[Mapping[str, Any]] = []
        async with st.gate:
            for ch in plan_chunks(items, limits, self.chunk_size):
                res, resp = await self._send(items[ch.start : ch.stop], call, deadline, limits, st)
                results.extend(res)
                responses.extend(resp)
        return results, responses

    async def _send(
        self,
        items: list[PreparedItem],
        call: CallOptions,
        deadline: float,
        limits: Limits,
        st: _LoopState,
    ) -> tuple[list[ItemResult], list[Mapping[str, Any]]]:
        last: BaseException | None = None
        inline = False
        variant = call.variant()
        loop = asyncio.get_running_loop()
        while True:
            replica = await self._acquire(deadline, last)
            try:
                left = _core.remaining(deadline, last, "scoring")
                known = (
                    {}
                    if inline
                    else self._replicas.known_refs(replica, _core.ref_pairs(items), variant)
                )
                body = await loop.run_in_executor(
                    self._encode_pool,
                    build_body,
                    items,
                    call,
                    known,
                    _core.timeout_ms(left, limits.max_timeout_ms),
                )
                try:
                    resp = await st.http.post(
                        f"{replica.url}/v1/reward",
                        content=body,
                        headers={"content-type": "application/json"},
                        timeout=httpx.Timeout(left, connect=min(left, self._connect_timeout)),
                    )
                except httpx.TransportError as e:
                    if isinstance(e, httpx.TimeoutException) and time.monotonic() >= deadline:
                        raise DeadlineExceededError("scoring: deadline passed", e) from e
                    if _core.tls_failure(e):
                        raise TlsVerificationError(f"{replica.url}: {e} (ca_file=?)") from e
                    self._replicas.mark_down(replica)
                    last = e
                    continue
            finally:
                self._replicas.release(replica)
            if resp.status_code == 200:
                self._replicas.mark_ok(replica)
                payload = resp.json()
                results, raw = _core.parse_results(payload, len(items), replica.url)
                self._replicas.learn(replica, _core.learned(items, raw), variant)
                return results, [payload]
            err = error_for(
                resp.status_code,
                resp.text,
                request_id=resp.headers.get("x-request-id"),
                url=replica.url,
                retry_after=_core.retry_after_seconds(resp.headers.get("retry-after")),
            )
            v = _core.verdict(resp.status_code, err.error_type)
            last = err
            if v is Verdict.BUSY:
                self._replicas.mark_busy(replica, err.retry_after)
            elif v is Verdict.DOWN:
                self._replicas.mark_down(replica, err.retry_after)
            elif v is Verdict.RESEND and not inline:
                self._replicas.forget(replica, [d for d, _ in _core.ref_pairs(items)])
                inline = True
            elif v is Verdict.SPLIT and len(items) > 1:
                half = len(items) // 2
                a = await self._send(items[:half], call, deadline, limits, st)
                b = await self._send(items[half:], call, deadline, limits, st)
                return a[0] + b[0], a[1] + b[1]
            else:
                raise err
