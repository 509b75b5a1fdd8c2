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
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _core
from ._core import Verdict
from ._transport import AsyncTransport, ConnectionFailed, scheme_of
from .errors import (
    DeadlineExceededError,
    RewardServerError,
    ServerUnavailableError,
)
from .images import EncodedImage, EncodeOptions, encode_image
from .replicas import Backoff, Replica, ReplicaSet
from .request import CallOptions, ItemSubjects, Limits, PreparedItem, plan_chunks
from .results import ItemResult, ScoreResult
from .sync_client import DEFAULT_URL, Sink, _urls, auth_headers


@dataclass
class _LoopState:
    transport: AsyncTransport
    gate: asyncio.Semaphore


class AsyncRewardClient:
    """Asyncio twin of :class:`RewardClient` (same arguments, same transports, same results
    and errors): ``await client.score(...)``; ``client.submit(...)`` returns an
    :class:`asyncio.Task`; ``async for index, result in client.stream(...)``.
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
        urls = _urls(base_url)
        self._grpc = scheme_of(urls) == "grpc"
        if self._grpc and event_hooks:
            raise ValueError("event_hooks are httpx hooks: HTTP base URLs only")
        self._replicas = ReplicaSet(urls, backoff or Backoff())
        self._connect_timeout = connect_timeout
        self._headers = auth_headers(headers, api_key)
        self._trust_env = trust_env
        self._hooks = {k: list(v) for k, v in (event_hooks or {}).items()}
        self._ca_file = ca_file
        self._verify = verify
        workers = encode_workers or min(8, os.cpu_count() or 1)
        self._encode_pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="psr-encode")
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._limits: Limits | None = None

    async def _run_cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the encoding pool (CPU work kept off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._encode_pool, fn, *args)

    def _open(self) -> AsyncTransport:
        """This loop's transport (gRPC: the ``[grpc]`` extra, imported only then)."""
        if self._grpc:
            from ._grpc.transport import AsyncGrpcTransport, GrpcSettings

            settings = GrpcSettings(
                headers=self._headers,
                trust_env=self._trust_env,
                ca_file=self._ca_file,
                verify=self._verify,
            )
            return AsyncGrpcTransport(settings, self._run_cpu)
        from ._http import AsyncHttpTransport, HttpSettings

        pool = self.max_concurrency * len(self._replicas.replicas) + 4
        return AsyncHttpTransport(
            HttpSettings(
                pool=pool,
                headers=self._headers,
                trust_env=self._trust_env,
                event_hooks=self._hooks,
                verify=_core.tls_context(self._ca_file, self._verify),
                connect_timeout=self._connect_timeout,
            ),
            self._run_cpu,
        )

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        st = self._loops.get(loop)
        if st is None:
            st = _LoopState(self._open(), asyncio.Semaphore(self.max_concurrency))
            self._loops[loop] = st
        return st

    async def aclose(self) -> None:
        """Closes this loop's connections and the encoding pool."""
        st = self._loops.pop(asyncio.get_running_loop(), None)
        if st is not None:
            await st.transport.aclose()
        self._encode_pool.shutdown(wait=False)

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def urls(self) -> list[str]:
        """The replicas' base URLs."""
        return [r.url for r in self._replicas.replicas]

    async def wait_until_ready(self, timeout: float = 60.0, *, every: bool = False) -> None:
        """See :meth:`RewardClient.wait_until_ready`."""
        deadline = time.monotonic() + timeout
        why: dict[str, str] = {}
        while True:
            for r in self._replicas.replicas:
                left = min(2.0, max(0.1, deadline - time.monotonic()))
                problem = await self._state().transport.probe(r.url, left)
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
                raise _core.not_ready(timeout, why)
            await asyncio.sleep(0.2)

    async def info(self, timeout: float = 10.0) -> dict[str, Any]:
        """See :meth:`RewardClient.info`."""
        last: BaseException | None = None
        for r in self._replicas.replicas:
            try:
                return await self._state().transport.info(r.url, timeout)
            except ConnectionFailed as e:
                last = e
            except RewardServerError as e:
                if _core.verdict(e.status, e.error_type) is Verdict.FAIL:
                    raise  # 401, 404, ...: asking again cannot help
                last = e
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
        call = CallOptions(rewards, mode, options, priority)
        tasks = await self._start(images, prompts, subjects, task, call, timeout, None)
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

    async def stream(
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
    ) -> AsyncGenerator[tuple[int, ItemResult], None]:
        """See :meth:`RewardClient.stream`: ``async for index, result in ...``."""
        call = CallOptions(rewards, mode, options, priority)
        done: asyncio.Queue[list[tuple[int, ItemResult]] | None] = asyncio.Queue()

        def sink(
            items: Sequence[PreparedItem],
            results: list[ItemResult],
            _resp: Mapping[str, Any] | None,
        ) -> None:
            done.put_nowait([(it.index, r) for it, r in zip(items, results, strict=True)])

        tasks = await self._start(images, prompts, subjects, task, call, timeout, sink)
        for t in tasks:
            t.add_done_callback(lambda _t: done.put_nowait(None))
        try:
            finished = 0
            while finished < len(tasks):
                got = await done.get()
                if got is None:
                    finished += 1
                    continue
                for pair in got:
                    yield pair
            for t in tasks:
                t.result()  # raises the first group's error, if one failed
        finally:
            for t in tasks:
                t.cancel()

    def submit(self, *args: Any, **kwargs: Any) -> asyncio.Task[ScoreResult]:
        """``score`` as a task on the running loop (score step N while sampling step N+1)."""
        return asyncio.ensure_future(self.score(*args, **kwargs))

    async def _start(
        self,
        images: Any,
        prompts: str | Sequence[str] | None,
        subjects: Sequence[ItemSubjects] | None,
        task: str | Sequence[str | None] | None,
        call: CallOptions,
        timeout: float | None,
        sink: Sink | None,
    ) -> list[asyncio.Task[tuple[list[ItemResult], list[Mapping[str, Any]]]]]:
        """See :meth:`RewardClient._start`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        collected = _core.collect(images, prompts, subjects, task)
        loop = asyncio.get_running_loop()
        encoding: dict[int, asyncio.Future[EncodedImage]] = {}
        for k in _core.encode_order(collected):
            encoding[k] = loop.run_in_executor(
                self._encode_pool, encode_image, collected.images[k], self.encode_options
            )
        limits = await self.limits(max(0.0, deadline - time.monotonic()))
        return [
            asyncio.ensure_future(
                self._group(collected, group, encoding, call, deadline, limits, sink)
            )
            for group in _core.count_groups(collected.n_items, limits, self.chunk_size)
        ]

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
            problem = await self._state().transport.probe(replica.url, min(2.0, left))
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
        sink: Sink | None,
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
        got = _core.Gathered()
        async with st.gate:
            for ch in plan_chunks(items, limits, self.chunk_size):
                chunk = items[ch.start : ch.stop]
                await self._send(
                    chunk, call, deadline, limits, st, sink or got.add, sink is not None
                )
        return got.results(), got.responses

    async def _send(
        self,
        items: list[PreparedItem],
        call: CallOptions,
        deadline: float,
        limits: Limits,
        st: _LoopState,
        sink: Sink,
        stream: bool,
    ) -> None:
        """See :meth:`RewardClient._chunk`."""
        attempt = _core.Attempts(items, call, limits, stream)
        while attempt.pending:
            replica = await self._acquire(deadline, attempt.last)
            halves: list[list[PreparedItem]] = []
            try:
                left = _core.remaining(deadline, attempt.last, "scoring")
                send = attempt.next_send(self._replicas, replica, left)
                parts = st.transport.send(replica.url, send)
                try:
                    async for part in parts:
                        sink(*attempt.received(self._replicas, replica, part))
                except ConnectionFailed as e:
                    if e.timed_out and time.monotonic() >= deadline:
                        raise DeadlineExceededError("scoring: deadline passed", e.cause) from e
                    attempt.lost(self._replicas, replica, e)
                    continue
                except RewardServerError as err:
                    halves = attempt.failed(self._replicas, replica, err)
                    if not halves:
                        continue
                finally:
                    await parts.aclose()  # leaving a stream early cancels its call
            finally:
                self._replicas.release(replica)
            if halves:  # too large: each half on its own, once this attempt is released
                for half in halves:
                    await self._send(half, call, deadline, limits, st, sink, stream)
                return
            attempt.succeeded(self._replicas, replica)
