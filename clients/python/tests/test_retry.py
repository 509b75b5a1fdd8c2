"""Retries: 429 with Retry-After is retried, the deadline is honoured, nothing retries forever."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import AESTHETIC, BUSY_CONFIG, Recorder, hold_the_slot, red_ref, solid
from psr_server import PsrServer, free_port

from psr_reward_client import (
    DeadlineExceededError,
    OverloadedError,
    RewardClient,
    ServerUnavailableError,
    UnauthorizedError,
)


def test_429_is_retried_after_retry_after_and_the_deadline_is_honoured(
    start_server: type[PsrServer],
) -> None:
    server = start_server.start(BUSY_CONFIG)
    holder = hold_the_slot(server.url)
    try:
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

            # The slot frees 1.5 s into the next call: it is retried after Retry-After and
            # succeeds.
            rec.clear()
            release = threading.Timer(1.5, holder.close)
            release.start()
            t0 = time.monotonic()
            result = client.score(
                [solid(100)], "red", [[("red", red_ref())]], rewards=AESTHETIC, timeout=60
            )
            elapsed = time.monotonic() - t0
            release.join()
        statuses = [p.status for p in rec.posts()]
        assert statuses[0] == 429 and statuses[-1] == 200 and set(statuses) == {429, 200}
        assert rec.posts()[0].retry_after is not None
        waited = (len(statuses) - 1) * float(rec.posts()[0].retry_after or 0)
        assert elapsed >= waited  # each retry waited its Retry-After
        assert result.rewards == pytest.approx([100 / 255], abs=1e-4)
    finally:
        holder.close()


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
