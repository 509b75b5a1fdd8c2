"""Two replicas behind one client: one killed mid-run, every item still scored once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from helpers import AESTHETIC, TOLERANCE, Recorder, red_ref, solid
from psr_server import PsrServer

from psr_reward_client import Backoff, RewardClient


def test_one_replica_killed_mid_run(start_server: type[PsrServer]) -> None:
    a, b = start_server.start(), start_server.start()
    rec = Recorder()
    served_by_a = []

    def kill_a_after_its_first_answer(response: httpx.Response) -> None:
        url = response.request.url
        if url.port == a.port and url.path == "/v1/reward" and response.status_code == 200:
            served_by_a.append(1)
            if len(served_by_a) == 1:
                a.kill()

    hooks: dict[str, list[Callable[..., Any]]] = {"response": [rec, kill_a_after_its_first_answer]}
    values = list(range(0, 240, 5))
    ref = red_ref()
    with RewardClient(
        [a.url, b.url],
        chunk_size=4,
        max_concurrency=4,
        backoff=Backoff(base=0.05, cap=0.2),
        event_hooks=hooks,
    ) as client:
        result = client.score(
            [solid(v) for v in values], "red", [[("red", ref)]] * len(values), rewards=AESTHETIC
        )
        assert result.rewards == pytest.approx([v / 255 for v in values], abs=TOLERANCE)
        ok = [p for p in rec.posts() if p.status == 200]
        assert len(ok) == len(result.responses) == len(values) // 4  # each chunk scored once
        assert sum(len(r["results"]) for r in result.responses) == len(values)
        assert {p.url for p in ok} == {a.url, b.url}
        assert a.proc.poll() is not None

        # A is skipped while down (its health check fails) ...
        rec.clear()
        again = client.score(
            [solid(v) for v in values[:16]], "red", [[("red", ref)]] * 16, rewards=AESTHETIC
        )
        assert {p.url for p in rec.posts()} == {b.url}
        assert again.rewards == result.rewards[:16]

        # ... and used again once it is back.
        start_server.start(port=a.port)
        rec.clear()
        for _ in range(20):
            client.score(
                [solid(v) for v in values[:16]], "red", [[("red", ref)]] * 16, rewards=AESTHETIC
            )
            if a.url in {p.url for p in rec.posts()}:
                break
        assert a.url in {p.url for p in rec.posts()}
