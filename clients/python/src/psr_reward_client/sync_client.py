"""``RewardClient``: the synchronous client (thread-safe; one per process is enough)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from . import _core
from ._core import Verdict
from ._transport import ConnectionFailed, Transport, scheme_of
from .errors import (
    DeadlineExceededError,
    RewardClientError,
    RewardServerError,
    ServerUnavailableError,
)
from .images import EncodedImage, EncodeOptions, encode_image
from .replicas import Backoff, Replica, ReplicaSet
from .request import CallOptions, ItemSubjects, Limits, PreparedItem, plan_chunks
from .results import ItemResult, ScoreResult

#: What a chunk's results are handed to as they come: the items and their results (and the
#: whole answer for a unary call).
Sink = Callable[[Sequence[PreparedItem], list[ItemResult], Mapping[str, Any] | None], None]

DEFAULT_URL = "http://127.0.0.1:8080"


def _urls(base_url: str | Sequence[str]) -> list[str]:
    return [base_url] if isinstance(base_url, str) else list(base_url)


def auth_headers(headers: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    """The client's headers: ``headers`` plus ``Authorization: Bearer`` with ``api_key``, or
    with ``$PSR_API_KEY`` when no key is given (the server's ``[auth]`` keys)."""
    out = dict(headers or {})
    key = api_key if api_key is not None else os.environ.get("PSR_API_KEY")
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


def transport_for(
    urls: Sequence[str],
    *,
    pool: int,
    headers: dict[str, str],
    trust_env: bool,
    event_hooks: Mapping[str, list[Callable[..., Any]]] | None,
    ca_file: str | os.PathLike[str] | None,
    verify: bool,
    connect_timeout: float,
) -> Transport:
    """The blocking transport the base URLs name: gRPC for ``grpc://`` / ``grpcs://``
    (imported only then: it needs the ``[grpc]`` extra), HTTP otherwise."""
    if scheme_of(urls) == "grpc":
        if event_hooks:
            raise ValueError("event_hooks are httpx hooks: HTTP base URLs only")
        from ._grpc.transport import GrpcSettings, GrpcTransport

        return GrpcTransport(
            GrpcSettings(headers=headers, trust_env=trust_env, ca_file=ca_file, verify=verify)
        )
    from ._http import HttpSettings, HttpTransport

    return HttpTransport(
        HttpSettings(
            pool=pool,
            headers=headers,
            trust_env=trust_env,
            event_hooks=event_hooks or {},
            verify=_core.tls_context(ca_file, verify),
            connect_timeout=connect_timeout,
        )
    )


class RewardClient:
    """Scores images on one or more psr-reward replicas, over HTTP (``http://``,
    ``https://``: pooled keep-alive connections, images as base64 JSON) or gRPC
    (``grpc://host:port``, ``grpcs://``: one HTTP/2 channel per replica, images as raw bytes;
    needs the ``[grpc]`` extra). Both give the same results and raise the same errors.

    ``score`` encodes the images on a thread pool, splits the batch into chunks within the
    server's ``/info`` limits (at most ``chunk_size`` items), sends up to ``max_concurrency``
    chunks at once to the replica with the fewest outstanding requests, and returns the
    results in input order; ``stream`` yields each item's result as soon as it is ready.
    429/503 (RESOURCE_EXHAUSTED/UNAVAILABLE, honouring ``Retry-After`` / ``RetryInfo``) and
    connection errors are retried with jittered backoff until ``timeout`` (the call's overall
    deadline, also sent as ``timeout_ms`` / the gRPC deadline); every other error raises a
    typed :class:`RewardServerError`. ``event_hooks`` go to httpx as they are (request /
    response tracing; HTTP only); ``api_key`` (default ``$PSR_API_KEY``) is sent as
    ``Authorization: Bearer`` on every request; TLS (``https://``, ``grpcs://``) is verified
    against the system roots plus ``ca_file`` (a private CA), never retried when the
    certificate is refused.
    """

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
        self.encode_options = encode or EncodeOptions()
        urls = _urls(base_url)
        self._replicas = ReplicaSet(urls, backoff or Backoff())
        self._transport = transport_for(
            urls,
            pool=max_concurrency * len(urls) + 4,
            headers=auth_headers(headers, api_key),
            trust_env=trust_env,
            event_hooks=event_hooks,
            ca_file=ca_file,
            verify=verify,
            connect_timeout=connect_timeout,
        )
        workers = encode_workers or min(8, os.cpu_count() or 1)
        self._encode_pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="psr-encode")
        self._request_pool = cf.ThreadPoolExecutor(max_concurrency, thread_name_prefix="psr-req")
        self._submit_pool = cf.ThreadPoolExecutor(4, thread_name_prefix="psr-submit")
        self._limits: Limits | None = None
        self._limits_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Closes the connections and the thread pools."""
        self._submit_pool.shutdown(wait=True)
        self._request_pool.shutdown(wait=True)
        self._encode_pool.shutdown(wait=True)
        self._transport.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def urls(self) -> list[str]:
        """The replicas' base URLs."""
        return [r.url for r in self._replicas.replicas]

    # -- readiness ------------------------------------------------------------------------
    def wait_until_ready(self, timeout: float = 60.0, *, every: bool = False) -> None:
        """Blocks until a replica (``every``: all of them) is ready (``GET /ready`` answers
        200; over gRPC, ``grpc.health.v1.Health`` answers SERVING); raises
        :class:`ServerUnavailableError` naming each replica's last answer otherwise."""
        deadline = time.monotonic() + timeout
        why: dict[str, str] = {}
        while True:
            for r in self._replicas.replicas:
                left = min(2.0, max(0.1, deadline - time.monotonic()))
                problem = self._transport.probe(r.url, left)
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
            time.sleep(0.2)

    def info(self, timeout: float = 10.0) -> dict[str, Any]:
        """``GET /info`` (over gRPC, ``Info``'s ``info_json``) of the first replica that
        answers."""
        last: BaseException | None = None
        for r in self._replicas.replicas:
            try:
                return self._transport.info(r.url, timeout)
            except ConnectionFailed as e:
                last = e
            except RewardServerError as e:
                if _core.verdict(e.status, e.error_type) is Verdict.FAIL:
                    raise  # 401, 404, ...: asking again cannot help
                last = e
        raise ServerUnavailableError(f"no replica answered GET /info: {last}")

    def limits(self, timeout: float = 10.0) -> Limits:
        """The server's request limits (read from ``/info`` once, then kept); retried while
        no replica answers, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._limits_lock:
            while self._limits is None:
                try:
                    self._limits = Limits.from_info(self.info(min(5.0, timeout)))
                except ServerUnavailableError as e:
                    if time.monotonic() + 0.2 >= deadline:
                        raise DeadlineExceededError("reading /info: deadline passed", e) from e
                    time.sleep(0.2)
            return self._limits

    # -- scoring --------------------------------------------------------------------------
    def score(
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
        """Rewards of ``images`` (a sequence, or a numpy NHWC / torch NCHW batch), one
        :class:`ItemResult` per image in order. ``subjects[i]`` lists image i's subjects as
        ``(name, reference)``; ``prompts`` and ``task`` are per image or one for all;
        ``rewards`` names the components and their weights (default: the server's)."""
        call = CallOptions(rewards, mode, options, priority)
        futures, stop = self._start(images, prompts, subjects, task, call, timeout, None)
        out: list[ItemResult] = []
        responses: list[Mapping[str, Any]] = []
        try:
            for f in futures:
                res, resp = f.result()
                out.extend(res)
                responses.extend(resp)
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise
        return ScoreResult(out, responses)

    def stream(
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
    ) -> Generator[tuple[int, ItemResult], None, None]:
        """``score``'s results as they finish: ``(index, ItemResult)`` pairs in completion
        order, every index of ``images`` exactly once (an item retried after an overload is
        not repeated). Over gRPC each item comes as soon as its models are done
        (``StreamRewards``); over HTTP each chunk's items come when its answer does. Leaving
        the loop early cancels the call (over gRPC, the server drops the items' queued
        work); an error is raised after the results already yielded."""
        call = CallOptions(rewards, mode, options, priority)
        done: queue.SimpleQueue[list[tuple[int, ItemResult]] | None] = queue.SimpleQueue()

        def sink(
            items: Sequence[PreparedItem],
            results: list[ItemResult],
            _resp: Mapping[str, Any] | None,
        ) -> None:
            done.put([(it.index, r) for it, r in zip(items, results, strict=True)])

        futures, stop = self._start(images, prompts, subjects, task, call, timeout, sink)
        for f in futures:
            f.add_done_callback(lambda _f: done.put(None))
        try:
            finished = 0
            while finished < len(futures):
                got = done.get()
                if got is None:
                    finished += 1
                    continue
                yield from got
            for f in futures:
                f.result()  # raises the first group's error, if one failed
        finally:
            stop.set()
            for f in futures:
                f.cancel()

    def submit(self, *args: Any, **kwargs: Any) -> cf.Future[ScoreResult]:
        """``score`` in the background: a future of its result (score step N while sampling
        step N+1)."""
        return self._submit_pool.submit(self.score, *args, **kwargs)

    def _start(
        self,
        images: Any,
        prompts: str | Sequence[str] | None,
        subjects: Sequence[ItemSubjects] | None,
        task: str | Sequence[str | None] | None,
        call: CallOptions,
        timeout: float | None,
        sink: Sink | None,
    ) -> tuple[list[cf.Future[tuple[list[ItemResult], list[Mapping[str, Any]]]]], threading.Event]:
        """Collects the inputs, starts encoding them and sends each group as soon as its
        images are ready (``sink``: stream each chunk's results into it as they come)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        collected = _core.collect(images, prompts, subjects, task)
        encoding: dict[int, cf.Future[EncodedImage]] = {}
        for k in _core.encode_order(collected):
            encoding[k] = self._encode_pool.submit(
                encode_image, collected.images[k], self.encode_options
            )
        limits = self.limits(max(0.0, deadline - time.monotonic()))
        stop = threading.Event()
        futures = [
            self._request_pool.submit(
                self._group, collected, group, encoding, call, deadline, limits, stop, sink
            )
            for group in _core.count_groups(collected.n_items, limits, self.chunk_size)
        ]
        return futures, stop

    # -- one chunk ------------------------------------------------------------------------
    def _group(
        self,
        c: _core.Collected,
        group: range,
        encoding: Mapping[int, cf.Future[EncodedImage]],
        call: CallOptions,
        deadline: float,
        limits: Limits,
        stop: threading.Event,
        sink: Sink | None,
    ) -> tuple[list[ItemResult], list[Mapping[str, Any]]]:
        """Waits for a group's images, then sends it (in chunks within the byte limits);
        its results in item order, or, with ``sink``, streamed into it."""
        left = _core.remaining(deadline, None, "encoding")
        try:
            encoded = {k: encoding[k].result(timeout=left) for k in _core.slots_of(c, group)}
        except cf.TimeoutError as e:
            raise DeadlineExceededError("encoding: deadline passed") from e
        items = _core.prepared(c, group, encoded)
        got = _core.Gathered()
        for ch in plan_chunks(items, limits, self.chunk_size):
            chunk = items[ch.start : ch.stop]
            self._chunk(chunk, call, deadline, limits, stop, sink or got.add, sink is not None)
        return got.results(), got.responses

    def _acquire(self, deadline: float, last: BaseException | None) -> Replica:
        """A healthy replica (probing one marked down), waiting while none is available."""
        while True:
            left = _core.remaining(deadline, last, "no replica available")
            replica, wait = self._replicas.acquire()
            if replica is None:
                if wait >= left:
                    raise DeadlineExceededError(
                        f"no replica available before the deadline ({self.urls})", last
                    )
                time.sleep(wait)
                continue
            if replica.healthy:
                return replica
            problem = self._transport.probe(replica.url, min(2.0, left))
            if problem is None:
                self._replicas.mark_ok(replica)
                return replica
            self._replicas.release(replica)
            self._replicas.mark_down(replica)
            last = ServerUnavailableError(f"{replica.url}: {problem}")

    def _chunk(
        self,
        items: list[PreparedItem],
        call: CallOptions,
        deadline: float,
        limits: Limits,
        stop: threading.Event,
        sink: Sink,
        stream: bool,
    ) -> None:
        """Sends one chunk until every item has its result, it fails for good, or the
        deadline passes; results go to ``sink`` as they come. After a retryable failure only
        the items still without a result are sent again (a stream may have delivered some)."""
        attempt = _core.Attempts(items, call, limits, stream)
        while attempt.pending:
            if stop.is_set():
                raise RewardClientError("cancelled: another chunk of the call failed")
            replica = self._acquire(deadline, attempt.last)
            halves: list[list[PreparedItem]] = []
            try:
                left = _core.remaining(deadline, attempt.last, "scoring")
                send = attempt.next_send(self._replicas, replica, left)
                parts = self._transport.send(replica.url, send)
                try:
                    for part in parts:
                        sink(*attempt.received(self._replicas, replica, part))
                        if stop.is_set():
                            raise RewardClientError("cancelled: the call was left")
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
                    parts.close()  # leaving a stream early cancels its call
            finally:
                self._replicas.release(replica)
            if halves:  # too large: each half on its own, once this attempt is released
                for half in halves:
                    self._chunk(half, call, deadline, limits, stop, sink, stream)
                return
            attempt.succeeded(self._replicas, replica)
