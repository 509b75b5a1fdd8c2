"""What one ``score`` call sends: items, chunks within the server's limits, JSON bodies.

Pure functions and small data types with no I/O, shared by the sync and the async client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .images import EncodedImage, ImageLike


@dataclass(frozen=True)
class Subject:
    """A subject of an item: its category ``name`` (the detector phrase) and its ``reference``
    image (any :data:`ImageLike`)."""

    name: str
    reference: ImageLike


#: A subject as given by the caller: a :class:`Subject`, ``(name, reference)`` or a mapping
#: with ``name`` and ``reference``.
SubjectLike = Subject | tuple[str, ImageLike] | Mapping[str, Any]


#: An item's subjects: a list of :data:`SubjectLike`, or one of them alone.
ItemSubjects = Sequence[SubjectLike] | SubjectLike


def as_subject(s: SubjectLike) -> Subject:
    """Normalises one subject."""
    if isinstance(s, Subject):
        return s
    if isinstance(s, Mapping):
        return Subject(str(s["name"]), s["reference"])
    name, ref = s
    return Subject(str(name), ref)


@dataclass(frozen=True)
class Limits:
    """The server's request limits the client chunks by (from ``GET /info``)."""

    max_items_per_request: int = 256
    max_body_bytes: int = 64 * 1024 * 1024
    max_request_pixels: int = 256 * 1024 * 1024
    max_timeout_ms: int = 600_000

    @staticmethod
    def from_info(info: Mapping[str, Any]) -> Limits:
        """Reads ``info["limits"]``; missing fields keep the server's documented defaults."""
        lim = info.get("limits") or {}
        d = Limits()
        return Limits(
            max_items_per_request=int(lim.get("max_items_per_request", d.max_items_per_request)),
            max_body_bytes=int(lim.get("max_body_bytes", d.max_body_bytes)),
            max_request_pixels=int(lim.get("max_request_pixels", d.max_request_pixels)),
            max_timeout_ms=int(lim.get("max_timeout_ms", d.max_timeout_ms)),
        )

    def tightest(self, other: Limits) -> Limits:
        """The smaller of each limit (several replicas may be configured differently)."""
        return Limits(
            min(self.max_items_per_request, other.max_items_per_request),
            min(self.max_body_bytes, other.max_body_bytes),
            min(self.max_request_pixels, other.max_request_pixels),
            min(self.max_timeout_ms, other.max_timeout_ms),
        )


@dataclass(frozen=True)
class PreparedSubject:
    """A subject with its reference encoded."""

    name: str
    reference: EncodedImage


@dataclass(frozen=True)
class PreparedItem:
    """One item with every image encoded, and its index in the call."""

    index: int
    image: EncodedImage
    prompt: str
    task: str | None
    subjects: tuple[PreparedSubject, ...]

    def wire_bytes(self) -> int:
        """Upper bound of the item's JSON size with every reference inline."""
        refs = sum(len(s.reference.b64) + len(s.name) * 6 + 48 for s in self.subjects)
        return len(self.image.b64) + len(self.prompt) * 6 + refs + 96


@dataclass(frozen=True)
class CallOptions:
    """The request-wide fields of a call (everything but the items)."""

    rewards: Mapping[str, float] | None = None
    mode: str | None = None
    options: Mapping[str, Any] | None = None
    priority: int | None = None

    def variant(self) -> str:
        """What, besides the hash and name, makes a cached reference entry distinct on the
        server (its mode and subject-consistency options)."""
        return json.dumps([self.mode, dict(self.options or {})], sort_keys=True)


def broadcast(value: Any, n: int, what: str) -> list[Any]:
    """``value`` per item: a str/None is repeated, a sequence must have ``n`` entries."""
    if value is None or isinstance(value, str):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{what}: {len(values)} given for {n} images")
    return values


def plan_chunks(items: Sequence[PreparedItem], limits: Limits, chunk_size: int) -> list[range]:
    """Consecutive index ranges, each within ``chunk_size`` items and the server's limits on
    items, body bytes (with references inline, 10 % margin) and decoded pixels (distinct
    images). An item over a limit on its own gets a chunk of its own (the server names it)."""
    cap = max(1, min(chunk_size, limits.max_items_per_request))
    body_cap = int(limits.max_body_bytes * 0.9) - 1024
    chunks: list[range] = []
    start, size, pixels = 0, 0, 0
    seen: set[str] = set()
    for i, item in enumerate(items):
        add_b = item.wire_bytes()
        add_px = _new_pixels(item, seen)
        n = i - start
        if n > 0 and (
            n >= cap or size + add_b > body_cap or pixels + add_px > limits.max_request_pixels
        ):
            chunks.append(range(start, i))
            start, size, pixels, seen = i, 0, 0, set()
            add_px = _new_pixels(item, seen)
        size += add_b
        pixels += add_px
        seen.update(e.digest for e in _images_of(item))
    if start < len(items):
        chunks.append(range(start, len(items)))
    return chunks


def _images_of(item: PreparedItem) -> list[EncodedImage]:
    return [item.image, *(s.reference for s in item.subjects)]


def _new_pixels(item: PreparedItem, seen: set[str]) -> int:
    """Pixels of the item's images not yet in ``seen`` (the server counts distinct images)."""
    fresh = {e.digest: e for e in _images_of(item) if e.digest not in seen}
    return sum(e.pixels for e in fresh.values())


def build_body(
    items: Sequence[PreparedItem],
    call: CallOptions,
    known: Mapping[str, str],
    timeout_ms: int | None,
) -> bytes:
    """The JSON body of one chunk. ``known`` maps a reference digest to the server hash to
    send as ``{"ref": hash}`` (references not in it go inline)."""
    out: list[dict[str, Any]] = []
    for it in items:
        subjects = []
        for s in it.subjects:
            h = known.get(s.reference.digest)
            ref: Any = {"ref": h} if h is not None else s.reference.b64
            subjects.append({"name": s.name, "reference": ref})
        entry: dict[str, Any] = {"image": it.image.b64, "prompt": it.prompt, "subjects": subjects}
        if it.task is not None:
            entry["task"] = it.task
        out.append(entry)
    body: dict[str, Any] = {"items": out}
    if call.rewards is not None:
        body["rewards"] = dict(call.rewards)
    if call.mode is not None:
        body["mode"] = call.mode
    if call.options is not None:
        body["options"] = dict(call.options)
    if call.priority is not None:
        body["priority"] = call.priority
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
