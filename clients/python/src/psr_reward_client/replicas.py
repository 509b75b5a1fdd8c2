"""The replicas behind one client: least-outstanding-requests choice, health, backoff, and
which references each replica holds.

State only, behind one lock, with no I/O: the sync and async clients do the probing and the
waiting around it. A replica is *available* from ``available_at`` on; it is *healthy* unless
a connection error or 503 marked it down, in which case the next use first probes
``GET /ready``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class Replica:
    """One base URL and what the client knows about it."""

    url: str
    outstanding: int = 0
    healthy: bool = True
    available_at: float = 0.0
    failures: int = 0
    #: Reference digest -> (server hash, name, variant) entries this replica has answered for.
    known: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass(frozen=True)
class Backoff:
    """Jittered exponential backoff: ``base * 2**(n-1)`` capped at ``cap``, times a random
    factor in [0.5, 1.0]; ``Retry-After`` values are stretched by a factor in [1.0, 1.2]."""

    base: float = 0.1
    cap: float = 5.0

    def after_failure(self, failures: int) -> float:
        """Delay after the ``failures``-th consecutive failure."""
        step: float = self.base * 2.0 ** max(0, failures - 1)
        return min(self.cap, step) * random.uniform(0.5, 1.0)

    def retry_after(self, seconds: float) -> float:
        """Delay for a ``Retry-After`` of ``seconds``."""
        return seconds * random.uniform(1.0, 1.2)


class ReplicaSet:
    """The client's replicas; thread-safe, shared by every call of one client."""

    def __init__(self, urls: list[str], backoff: Backoff, max_refs: int = 65536) -> None:
        if not urls:
            raise ValueError("at least one base URL is needed")
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self.backoff = backoff
        self._lock = threading.Lock()
        self._next = 0
        #: Reference digest -> the hash the server reported for it (content hash, the same on
        #: every replica); bounded, least recently learned dropped first.
        self._hashes: OrderedDict[str, str] = OrderedDict()
        self._max_refs = max_refs

    def acquire(self) -> tuple[Replica | None, float]:
        """Takes the available replica with the fewest outstanding requests (ties: round
        robin) and counts a request on it; else ``(None, seconds until one is available)``."""
        now = time.monotonic()
        with self._lock:
            n = len(self.replicas)
            order = [self.replicas[(self._next + k) % n] for k in range(n)]
            ready = [r for r in order if r.available_at <= now]
            if not ready:
                return None, max(0.0, min(r.available_at for r in order) - now)
            best = min(ready, key=lambda r: r.outstanding)
            best.outstanding += 1
            self._next = (self.replicas.index(best) + 1) % n
            return best, 0.0

    def release(self, r: Replica) -> None:
        """Ends a request counted by :meth:`acquire`."""
        with self._lock:
            r.outstanding -= 1

    def mark_ok(self, r: Replica) -> None:
        """The replica answered: healthy again."""
        with self._lock:
            r.healthy, r.failures = True, 0

    def mark_down(self, r: Replica, retry_after: float | None = None) -> None:
        """Connection error, failed probe or 503: skip the replica for a backoff (or its
        ``Retry-After``), then probe it before use."""
        with self._lock:
            r.healthy = False
            r.failures += 1
            delay = (
                self.backoff.retry_after(retry_after)
                if retry_after is not None
                else self.backoff.after_failure(r.failures)
            )
            r.available_at = time.monotonic() + delay
            r.known.clear()  # a restarted replica holds no references

    def mark_busy(self, r: Replica, retry_after: float | None) -> None:
        """429: healthy but full; not used again before ``Retry-After`` (or a backoff)."""
        with self._lock:
            r.failures += 1
            delay = (
                self.backoff.retry_after(retry_after)
                if retry_after is not None
                else self.backoff.after_failure(r.failures)
            )
            r.available_at = max(r.available_at, time.monotonic() + delay)

    def known_refs(self, r: Replica, refs: list[tuple[str, str]], variant: str) -> dict[str, str]:
        """Of ``(digest, name)`` pairs, those ``r`` holds: digest -> server hash."""
        out: dict[str, str] = {}
        with self._lock:
            for digest, name in refs:
                h = self._hashes.get(digest)
                if h is not None and (h, name, variant) in r.known:
                    out[digest] = h
        return out

    def learn(self, r: Replica, entries: list[tuple[str, str, str]], variant: str) -> None:
        """``r`` answered for references ``(digest, name, server hash)``."""
        with self._lock:
            for digest, name, h in entries:
                self._hashes[digest] = h
                self._hashes.move_to_end(digest)
                r.known.add((h, name, variant))
            while len(self._hashes) > self._max_refs:
                self._hashes.popitem(last=False)

    def forget(self, r: Replica, digests: list[str]) -> None:
        """``r`` no longer holds these references (it answered ``unknown_reference``)."""
        with self._lock:
            hashes = {self._hashes[d] for d in digests if d in self._hashes}
            r.known = {k for k in r.known if k[0] not in hashes}
