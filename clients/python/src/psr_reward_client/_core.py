"""What the sync and async clients share, over either transport: input collection, a chunk's
attempts (the verdict on each answer, the references learned from it, the items still
pending), and parsing of ``Retry-After``."""

from __future__ import annotations

import email.utils
import enum
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._transport import Part, Send
from .errors import (
    DeadlineExceededError,
    RewardClientError,
    RewardServerError,
    ServerUnavailableError,
)
from .images import EncodedImage, ImageLike, as_image_list
from .replicas import Replica, ReplicaSet
from .request import (
    CallOptions,
    ItemSubjects,
    Limits,
    PreparedItem,
    PreparedSubject,
    Subject,
    as_subject,
    broadcast,
)
from .results import ItemResult

#: Statuses and ``error_type``s that mean "this request is too big: split it".
_SPLIT_TYPES = {"payload_too_large", "too_many_pixels", "request_too_large"}


class Verdict(enum.Enum):
    """What to do with one answer."""

    OK = "ok"
    BUSY = "busy"  # 429: retry after Retry-After, maybe elsewhere
    DOWN = "down"  # 503: replica not ready or draining: retry elsewhere or later
    RESEND = "resend"  # 422 unknown_reference: resend the references inline
    SPLIT = "split"  # too large: split the chunk in two
    FAIL = "fail"  # anything else: raise


def verdict(status: int, error_type: str | None) -> Verdict:
    """Classifies an answer: only 429 and 503 are retried (never 500)."""
    if status == 200:
        return Verdict.OK
    if status == 429:
        return Verdict.BUSY
    if status == 503:
        return Verdict.DOWN
    if error_type == "unknown_reference":
        return Verdict.RESEND
    if error_type in _SPLIT_TYPES:
        return Verdict.SPLIT
    return Verdict.FAIL


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Collected:
    """A call's inputs, flattened: the images to encode (generated first, then each distinct
    reference once) and, per item, its prompt, task and (name, reference slot) pairs."""

    images: list[ImageLike]
    n_items: int
    prompts: list[str]
    tasks: list[str | None]
    subjects: list[list[tuple[str, int]]]


def collect(
    images: Any,
    prompts: str | Sequence[str] | None,
    subjects: Sequence[ItemSubjects] | None,
    task: str | Sequence[str | None] | None,
) -> Collected:
    """Validates and flattens the arguments of ``score``; each distinct reference object (or
    path) is encoded once however many items share it (a GRPO group shares its references)."""
    gen = as_image_list(images)
    n = len(gen)
    if n == 0:
        raise ValueError("no images to score")
    ps = [p or "" for p in broadcast(prompts, n, "prompts")]
    ts = broadcast(task, n, "task")
    if subjects is None:
        raise ValueError("subjects: each image needs 1 or more subjects (name, reference)")
    subs = list(subjects)
    if len(subs) != n:
        raise ValueError(f"subjects: {len(subs)} given for {n} images")
    todo: list[ImageLike] = list(gen)
    slot: dict[Any, int] = {}
    per_item: list[list[tuple[str, int]]] = []
    for entry in subs:
        item_subjects: list[Any] = [entry] if _one_subject(entry) else list(entry)  # type: ignore[arg-type]
        pairs = []
        for s in item_subjects:
            sub = as_subject(s)
            ref = sub.reference
            key: Any = ("path", os.fspath(ref)) if isinstance(ref, (str, os.PathLike)) else id(ref)
            if key not in slot:
                slot[key] = len(todo)
                todo.append(ref)
            pairs.append((sub.name, slot[key]))
        per_item.append(pairs)
    return Collected(todo, n, ps, ts, per_item)


def encode_order(c: Collected) -> list[int]:
    """The order to encode ``c.images`` in: references first (few, and every chunk needs
    them), then the generated images in item order, so the first chunk is ready first."""
    return list(range(c.n_items, len(c.images))) + list(range(c.n_items))


def slots_of(c: Collected, items: range) -> list[int]:
    """The ``c.images`` slots the items of ``items`` need (their image and references)."""
    return [*items, *(k for i in items for _, k in c.subjects[i])]


def _one_subject(x: Any) -> bool:
    """Whether an item's entry is a single subject rather than a list of them."""
    return isinstance(x, (Subject, Mapping)) or (
        isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
    )


def prepared(c: Collected, items: range, encoded: Mapping[int, EncodedImage]) -> list[PreparedItem]:
    """The items ``items`` of ``c`` once their images are encoded (``encoded``: by slot)."""
    return [
        PreparedItem(
            index=i,
            image=encoded[i],
            prompt=c.prompts[i],
            task=c.tasks[i],
            subjects=tuple(PreparedSubject(name, encoded[k]) for name, k in c.subjects[i]),
        )
        for i in items
    ]


def count_groups(n: int, limits: Limits, chunk_size: int) -> list[range]:
    """Item ranges of at most ``chunk_size`` (and the server's item limit); each is encoded
    and sent as soon as its images are ready (split further if over the byte/pixel limits)."""
    cap = max(1, min(chunk_size, limits.max_items_per_request))
    return [range(s, min(s + cap, n)) for s in range(0, n, cap)]


def ref_pairs(items: Sequence[PreparedItem]) -> list[tuple[str, str]]:
    """``(digest, name)`` of every reference of a chunk."""
    return [(s.reference.digest, s.name) for it in items for s in it.subjects]


def learned(
    items: Sequence[PreparedItem], results: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, str]]:
    """``(digest, name, server hash)`` for every reference the server reported a hash for."""
    out = []
    for it, res in zip(items, results, strict=True):
        sc = (res.get("components") or {}).get("subject_consistency") or {}
        for s, rep in zip(it.subjects, sc.get("subjects") or [], strict=False):
            h = rep.get("reference") if isinstance(rep, Mapping) else None
            if isinstance(h, str):
                out.append((s.reference.digest, s.name, h))
    return out


class Attempts:
    """One chunk's way to its results, whatever the transport: which items still wait for
    one, whether references go by hash or inline, and the rule for each failure (the same
    verdicts for an HTTP status and for the gRPC status it maps to). Items a stream already
    delivered are never sent again."""

    def __init__(
        self, items: Sequence[PreparedItem], call: CallOptions, limits: Limits, stream: bool
    ) -> None:
        self.pending = list(items)
        self.call = call
        self.limits = limits
        self.stream = stream
        #: What the last attempt met (reported with a passed deadline).
        self.last: BaseException | None = None
        self._inline = False
        self._variant = call.variant()
        self._sent: list[PreparedItem] = []
        self._done: set[int] = set()

    def next_send(self, replicas: ReplicaSet, replica: Replica, left: float) -> Send:
        """The next attempt on ``replica`` with ``left`` seconds: the pending items, with the
        references it holds sent by hash (none after it forgot one)."""
        self._sent = [it for it in self.pending if it.index not in self._done]
        known = (
            {}
            if self._inline
            else replicas.known_refs(replica, ref_pairs(self._sent), self._variant)
        )
        ms = timeout_ms(left, self.limits.max_timeout_ms)
        return Send(self._sent, self.call, known, ms, left, self.stream)

    def received(
        self, replicas: ReplicaSet, replica: Replica, part: Part
    ) -> tuple[list[PreparedItem], list[ItemResult], Mapping[str, Any] | None]:
        """Typed results of a part, the references it taught, and the items it answers."""
        items = [self._sent[p] for p in part.positions]
        twice = [it.index for it in items if it.index in self._done]
        if twice:
            raise ValueError(f"{replica.url}: items {twice} answered twice")
        replicas.learn(replica, learned(items, part.raw), self._variant)
        self._done.update(it.index for it in items)
        return items, [ItemResult.from_json(r) for r in part.raw], part.response

    def lost(self, replicas: ReplicaSet, replica: Replica, e: BaseException) -> None:
        """The connection failed: the replica is down for a while; retry the rest."""
        replicas.mark_down(replica)
        self.last = e
        self._drop_done()

    def failed(
        self, replicas: ReplicaSet, replica: Replica, err: RewardServerError
    ) -> list[list[PreparedItem]]:
        """The server answered ``err``: returns the two halves to send on their own when
        the chunk is too large, [] to retry (busy, down, or with references inline), and
        raises ``err`` when retrying cannot help."""
        self._drop_done()
        self.last = err
        v = verdict(err.status, err.error_type)
        if v is Verdict.BUSY:
            replicas.mark_busy(replica, err.retry_after)
        elif v is Verdict.DOWN:
            replicas.mark_down(replica, err.retry_after)
        elif v is Verdict.RESEND and not self._inline:
            replicas.forget(replica, [d for d, _ in ref_pairs(self.pending)])
            self._inline = True
        elif v is Verdict.SPLIT and len(self.pending) > 1:
            half = len(self.pending) // 2
            return [self.pending[:half], self.pending[half:]]
        else:
            raise err
        return []

    def succeeded(self, replicas: ReplicaSet, replica: Replica) -> None:
        """The attempt ended well; every item sent must have had its result."""
        replicas.mark_ok(replica)
        self._drop_done()
        if self.pending:
            missing = [it.index for it in self.pending]
            raise RewardClientError(f"{replica.url}: no result for items {missing}")

    def _drop_done(self) -> None:
        self.pending = [it for it in self.pending if it.index not in self._done]


class Gathered:
    """A group's results as its chunks answer, for ``score`` (in item order)."""

    def __init__(self) -> None:
        self._by_index: dict[int, ItemResult] = {}
        self.responses: list[Mapping[str, Any]] = []

    def add(
        self,
        items: Sequence[PreparedItem],
        results: list[ItemResult],
        response: Mapping[str, Any] | None,
    ) -> None:
        """The sink of a chunk's parts."""
        for it, r in zip(items, results, strict=True):
            self._by_index[it.index] = r
        if response is not None:
            self.responses.append(response)

    def results(self) -> list[ItemResult]:
        """The results in item order."""
        return [self._by_index[i] for i in sorted(self._by_index)]


def not_ready(timeout: float, why: Mapping[str, str]) -> ServerUnavailableError:
    """What ``wait_until_ready`` raises: each replica's last answer."""
    detail = "; ".join(f"{u}: {w}" for u, w in why.items())
    return ServerUnavailableError(
        f"psr-reward not ready after {timeout:.0f} s ({detail}); is the server "
        "running (`make run`) and are the base URLs right?"
    )


def remaining(deadline: float, last_error: BaseException | None, what: str) -> float:
    """Seconds left before ``deadline``; raises :class:`DeadlineExceededError` when none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceededError(f"{what}: deadline passed", last_error)
    return left


def tls_failure(e: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate error behind a connection error, if that is what it is (not worth
    retrying: the next handshake meets the same certificate)."""
    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def tls_context(ca_file: str | os.PathLike[str] | None, verify: bool) -> ssl.SSLContext | bool:
    """httpx's ``verify``: the system roots plus ``ca_file`` (a private CA), or no checks."""
    if ca_file is not None:
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(cafile=os.fspath(ca_file))
        return ctx
    return verify


def timeout_ms(left: float, max_timeout_ms: int) -> int:
    """The ``timeout_ms`` to send: what is left of the call's deadline, within the server's max."""
    return max(1, min(int(left * 1000), max_timeout_ms))
