"""The async client under concurrency, and overlap with ``submit``."""

from __future__ import annotations

import asyncio

import pytest
from helpers import AESTHETIC, TOLERANCE, red_ref, solid
from psr_server import PsrServer

from psr_reward_client import AsyncRewardClient, InvalidRequestError, RewardClient


def test_async_client_under_concurrency(server: PsrServer) -> None:
    ref = red_ref()
    calls = [[(k * 29 + i * 3) % 256 for i in range(24)] for k in range(6)]
    seen: list[str] = []

    async def on_response(response: object) -> None:
        seen.append(str(getattr(response, "status_code", "")))

    async def main() -> list[list[float | None]]:
        async with AsyncRewardClient(
            server.url, chunk_size=8, max_concurrency=3, event_hooks={"response": [on_response]}
        ) as client:
            await client.wait_until_ready(10)
            coros = [
                client.score(
                    [solid(v) for v in vs], "red", [[("red", ref)]] * len(vs), rewards=AESTHETIC
                )
                for vs in calls[:-1]
            ]
            task = client.submit(
                [solid(v) for v in calls[-1]], "red", [[("red", ref)]] * 24, rewards=AESTHETIC
            )
            assert isinstance(task, asyncio.Task)
            results = await asyncio.gather(*coros)
            with pytest.raises(InvalidRequestError):
                await client.score([solid(1)], "p", [[("red", ref)]], rewards={"nope": 1.0})
            return [r.rewards for r in results] + [(await task).rewards]

    got = asyncio.run(main())
    for vs, rewards in zip(calls, got, strict=True):
        assert rewards == pytest.approx([v / 255 for v in vs], abs=TOLERANCE)
    assert seen.count("200") >= 6 * 3


def test_async_client_is_usable_from_several_loops(server: PsrServer) -> None:
    client = AsyncRewardClient(server.url)
    ref = red_ref()
    first = asyncio.run(client.score([solid(50)], "red", [[("red", ref)]], rewards=AESTHETIC))
    second = asyncio.run(client.score([solid(50)], "red", [[("red", ref)]], rewards=AESTHETIC))
    assert first.rewards == second.rewards == pytest.approx([50 / 255], abs=TOLERANCE)


def test_sync_submit_overlaps_calls(server: PsrServer) -> None:
    ref = red_ref()
    with RewardClient(server.url, chunk_size=4) as client:
        futures = [
            client.submit(
                [solid(v + k) for v in range(0, 80, 10)],
                "red",
                [[("red", ref)]] * 8,
                rewards=AESTHETIC,
            )
            for k in range(3)
        ]
        for k, f in enumerate(futures):
            assert f.result(timeout=60).rewards == pytest.approx(
                [(v + k) / 255 for v in range(0, 80, 10)], abs=TOLERANCE
            )
