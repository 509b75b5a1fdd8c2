"""Retries: 429 with Retry-After is retried, the deadline is honoured, nothing retries forever."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from helpers import AESTHETIC, BLUE, RED, Recorder, red_ref, solid, square
from psr_server import PsrServer, free_port

from psr_reward_client import (
    DeadlineExceededError,
    OverloadedError,
    RewardClient,
    ServerUnavailableError,
    UnauthorizedError,
)

#: One request at a time: a second concurrent one is answered 429 with Retry-After.
BUSY_CONFIG = "[limits]\nmax_concurrent_requests = 1\n"


def _slow_body() -> dict[str, object]:
    """A request that keeps the only slot busy for a few seconds (detection per subject)."""
    from psr_reward_client import encode_image

    refs = [encode_image(red_ref(k)).b64 for k in range(4)]
    items = []
    for i in range(8):
        img = square(RED, (i, 2, 20 + i, 22))
        img.paste(square(BLUE, (0, 0, 20, 20), size=24), (36, 36))
        items.append(
            {
                "image": encode_image(img).b64,
                "subjects": [
                    {"name": c, "reference": r}
                    for c, r in zip(["red", "blue", "red", "blue"], refs, strict=True)
                ],
            }
        )
    return {"items": items}


def _in_flight(url: str) -> int:
    return int(httpx.get(f"{url}/info", trust_env=False).json()["in_flight"]["requests"])


def test_429_is_retried_after_retry_after_and_the_deadline_is_honoured(
    start_server: type[PsrServer],
) -> None:
    server = start_server.start(BUSY_CONFIG)
    body = _slow_body()
    done: dict[str, int] = {}

    def occupy() -> None:
        done["status"] = httpx.post(
            f"{server.url}/v1/reward", json=body, timeout=120, trust_env=False
        ).status_code

    t = threading.Thread(target=occupy)
    t.start()
    try:
        while _in_flight(server.url) < 1:
            assert t.is_alive(), "the slow request finished before it was seen in flight"
            time.sleep(0.01)

        rec = Recorder()
        with RewardClient(server.url, event_hooks=rec.hooks()) as client:
            client.limits()
            # Deadline shorter than Retry-After: fails at once with the 429 as the cause.
            t0 = time.monotonic()
            with pytest.raises(DeadlineExceededError) as err:
                client.score(
                    [solid(100)], "red", [[("red", red_ref())]], rewards=AESTHETIC, timeout=0.5
                )
            assert time.monotonic() - t0 < 0.6
            assert isinstance(err.value.last_error, OverloadedError)
            assert err.value.last_error.error_type == "overloaded"
            assert t.is_alive()

            rec.clear()
            t0 = time.monotonic()
            result = client.score(
                [solid(100)], "red", [[("red", red_ref())]], rewards=AESTHETIC, timeout=60
            )
            elapsed = time.monotonic() - t0
        statuses = [p.status for p in rec.posts()]
        assert statuses[0] == 429 and statuses[-1] == 200 and set(statuses) == {429, 200}
        assert rec.posts()[0].retry_after is not None
        waited = (len(statuses) - 1) * float(rec.posts()[0].retry_after or 0)
        assert elapsed >= waited  # each retry waited its Retry-After
        assert result.rewards == pytest.approx([100 / 255], abs=1e-4)
    finally:
        t.join()
    assert done["status"] == 200


def test_a_server_that_is_not_up_fails_within_the_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with RewardClient(url, timeout=1.0) as client:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            client.score([solid(1)], "p", [[("red", red_ref())]])
        assert time.monotonic() - t0 < 2.0
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailableError, match="make run") as err:
            client.wait_until_ready(0.5)
        assert url in str(err.value)
        assert time.monotonic() - t0 < 1.5


def test_api_keys(start_server: type[PsrServer], monkeypatch: pytest.MonkeyPatch) -> None:
    key = "client-test-key-0123456789"
    server = start_server.start(
        '[auth]\nkeys_env = "PSR_CLIENT_TEST_KEYS"\n', extra_env={"PSR_CLIENT_TEST_KEYS": key}
    )
    monkeypatch.delenv("PSR_API_KEY", raising=False)
    rec = Recorder()
    with RewardClient(server.url, event_hooks=rec.hooks()) as client:
        client.wait_until_ready(10)  # /ready stays open
        with pytest.raises(UnauthorizedError) as err:
            client.score([solid(1)], "p", [[("red", red_ref())]], rewards=AESTHETIC)
    assert err.value.status == 401 and err.value.error_type == "unauthorized"
    # The first call reads /info: refused once, never retried.
    assert [(s.path, s.status) for s in rec.seen if s.path != "/ready"] == [("/info", 401)]
    with RewardClient(server.url, api_key=key) as client:
        assert client.score(
            [solid(51)], "p", [[("red", red_ref())]], rewards=AESTHETIC
        ).rewards == pytest.approx([0.2], abs=1e-4)
    monkeypatch.setenv("PSR_API_KEY", key)
    with RewardClient(server.url) as client:
        assert client.score(
            [solid(51)], "p", [[("red", red_ref())]], rewards=AESTHETIC
        ).rewards == pytest.approx([0.2], abs=1e-4)
