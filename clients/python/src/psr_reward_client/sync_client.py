"""``RewardClient``: the synchronous client (thread-safe; one per process is enough)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from . import _core
from ._core import Verdict
from .errors import (
    DeadlineExceededError,
    RewardClientError,
    ServerUnavailableError,
    TlsVerificationError,
    error_for,
)
from .images import EncodedImage, EncodeOptions, encode_image
from .replicas import Backoff, Replica, ReplicaSet
from .request import (
    CallOptions,
    ItemSubjects,
    Limits,
    PreparedItem,
    build_body,
    plan_chunks,
)
from .results import ItemResult, ScoreResult

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


class RewardClient:
    """Scores images on one or more psr-reward replicas over pooled keep-alive connections.

    ``score`` encodes the images on a thread pool, splits the batch into chunks within the
    server's ``/info`` limits (at most ``chunk_size`` items), sends up to ``max_concurrency``
    chunks at once to the replica with the fewest outstanding requests, and returns the
    results in input order. 429/503 (honouring ``Retry-After``) and connection errors are
    retried with jittered backoff until ``timeout`` (the call's overall deadline, also sent as
    ``timeout_ms``); every other error raises a typed :class:`RewardServerError`.
    ``event_hooks`` go to httpx as they are (request / response tracing); ``api_key`` (default
    ``$PSR_API_KEY``) is sent as ``Authorization: Bearer`` on every request; ``https://`` URLs
    are verified against the system roots plus ``ca_file`` (a private CA), never retried when
    the certificate is refused.
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
        self._replicas = ReplicaSet(_urls(base_url), backoff or Backoff())
        self._connect_timeout = connect_timeout
        pool = max_concurrency * len(self._replicas.replicas) + 4
        self._http = httpx.Client(
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            headers=auth_headers(headers, api_key),
            trust_env=trust_env,
            event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
            verify=_core.tls_context(ca_file, verify),
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
        self._http.close()

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def urls(self) -> list[str]:
        """The replicas' base URLs."""
        return [r.url for r in self._replicas.replicas]

    # -- readiness ------------------------------------------------------------------------
    def _probe(self, url: str, timeout: float) -> str | None:
        """None when ``GET /ready`` answers 200, else why not."""
        try:
            r = self._http.get(f"{url}/ready", timeout=timeout)
        except httpx.TransportError as e:
            return f"{type(e).__name__}: {e}"
        if r.status_code == 200:
            return None
        return f"{r.status_code} {r.text.strip()[:200]}"

    def wait_until_ready(self, timeout: float = 60.0, *, every: bool = False) -> None:
        """Blocks until a replica (``every``: all of them) answers ``GET /ready`` with 200;
        raises :class:`ServerUnavailableError` naming each replica's last answer otherwise."""
        deadline = time.monotonic() + timeout
        why: dict[str, str] = {}
        while True:
            for r in self._replicas.replicas:
                problem = self._probe(r.url, min(2.0, max(0.1, deadline - time.monotonic())))
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
            time.sleep(0.2)

    def info(self, timeout: float = 10.0) -> dict[str, Any]:
        """``GET /info`` of the first replica that answers."""
        last: BaseException | None = None
        for r in self._replicas.replicas:
            try:
                resp = self._http.get(f"{r.url}/info", timeout=timeout)
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
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        call = CallOptions(rewards, mode, options, priority)
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
                self._group, collected, group, encoding, call, deadline, limits, stop
            )
            for group in _core.count_groups(collected.n_items, limits, self.chunk_size)
        ]
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

    def submit(self, *args: Any, **kwargs: Any) -> cf.Future[ScoreResult]:
        """``score`` in the background: a future of its result (score step N while sampling
        step N+1)."""
        return self._submit_pool.submit(self.score, *args, **kwargs)

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
    ) -> tuple[list[ItemResult], list[Mapping[str, Any]]]:
        """Waits for a group's images, then sends it (in chunks within the byte limits)."""
        left = _core.remaining(deadline, None, "encoding")
        try:
            encoded = {k: encoding[k].result(timeout=left) for k in _core.slots_of(c, group)}
        except cf.TimeoutError as e:
            raise DeadlineExceededError("encoding: deadline passed") from e
        items = _core.prepared(c, group, encoded)
        results: list[ItemResult] = []
        responses: list[Mapping[str, Any]] = []
        for ch in plan_chunks(items, limits, self.chunk_size):
            res, resp = self._chunk(items[ch.start : ch.stop], call, deadline, limits, stop)
            results.extend(res)
            responses.extend(resp)
        return results, responses

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
            problem = self._probe(replica.url, min(2.0, left))
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
    ) -> tuple[list[ItemResult], list[Mapping[str, Any]]]:
        """Sends one chunk until it succeeds, fails for good, or the deadline passes."""
        last: BaseException | None = None
        inline = False
        variant = call.variant()
        while True:
            if stop.is_set():
                raise RewardClientError("cancelled: another chunk of the call failed")
            replica = self._acquire(deadline, last)
            try:
                left = _core.remaining(deadline, last, "scoring")
                known = (
                    {}
                    if inline
                    else self._replicas.known_refs(replica, _core.ref_pairs(items), variant)
                )
                body = build_body(items, call, known, _core.timeout_ms(left, limits.max_timeout_ms))
                try:
                    resp = self._http.post(
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
                a = self._chunk(items[:half], call, deadline, limits, stop)
                b = self._chunk(items[half:], call, deadline, limits, stop)
                return a[0] + b[0], a[1] + b[1]
            else:
                raise err
