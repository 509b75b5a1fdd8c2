"""The gRPC transport (``grpc://``) against the real binary: the HTTP client's results, every
streamed item exactly once, cancelling a stream, the deadline, overload, bad inputs, API
keys, health and reflection."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from helpers import AESTHETIC, BLUE, BUSY_CONFIG, RED, hold_the_slot, red_ref, solid, square
from psr_server import FIXTURES, MANIFEST, PsrServer

from psr_reward_client import (
    AsyncRewardClient,
    DeadlineExceededError,
    InvalidRequestError,
    ItemResult,
    OverloadedError,
    RewardClient,
    ServerTimeoutError,
    UnauthorizedError,
    encode_image,
)
from psr_reward_client._grpc.stubs import load


def _scene(n: int) -> tuple[list[Any], list[str], list[Any]]:
    """``n`` items: red squares that are found (in three sizes) and blue ones that are not,
    one shared reference; prompts that differ per item."""
    shapes = [
        square(RED, (2, 2, 30, 30)),
        square(RED, (20, 20, 60, 60)),
        square(BLUE, (4, 4, 40, 40)),
        square(RED, (10, 4, 50, 40)),
    ]
    ref = red_ref(3)
    images = [shapes[i % len(shapes)] for i in range(n)]
    return images, [f"a square number {i}" for i in range(n)], [[("red", ref)]] * n


def test_grpc_results_equal_the_http_clients_for_the_same_inputs(server: PsrServer) -> None:
    images, prompts, subjects = _scene(20)  # more than the server's 16 items: two chunks
    variants: list[dict[str, Any]] = [
        {},
        {"mode": "robust", "options": {"matching": "assignment", "batching": "equal_shapes"}},
    ]
    for kwargs in variants:
        with RewardClient(server.url) as h, RewardClient(server.grpc_url) as g:
            want = h.score(images, prompts, subjects, **kwargs)
            got = g.score(images, prompts, subjects, **kwargs)
        assert [dict(r) for r in got.raw] == [dict(r) for r in want.raw]
        assert got.rewards == want.rewards
        assert [r.subjects for r in got] == [r.subjects for r in want]
        assert [r.component("aesthetic") for r in got] == [r.component("aesthetic") for r in want]
        assert [r["options"] for r in got.responses] == [r["options"] for r in want.responses]
        assert len(got.responses) == 2
    assert got.responses[0]["options"]["batching"] == "equal_shapes"  # robust's is padded
    # What the test compares is not trivially equal: found and missed subjects, distinct scores.
    assert {s.subjects[0].detected for s in got} == {True, False}
    assert len(set(got.rewards)) == 4


def test_stream_yields_every_index_exactly_once_with_the_scores_results(
    server: PsrServer,
) -> None:
    images, prompts, subjects = _scene(40)  # three chunks of at most 16 items
    with RewardClient(server.grpc_url, chunk_size=16) as g:
        whole = g.score(images, prompts, subjects)
        streamed = list(g.stream(images, prompts, subjects))
    assert sorted(i for i, _ in streamed) == list(range(40))
    by_index = dict(streamed)
    assert [by_index[i].raw for i in range(40)] == list(whole.raw)
    assert all(isinstance(r, ItemResult) for _, r in streamed)


def test_async_stream_and_score_over_grpc(server: PsrServer) -> None:
    images, prompts, subjects = _scene(18)

    async def run() -> tuple[list[Any], list[tuple[int, ItemResult]]]:
        async with AsyncRewardClient(server.grpc_url) as g:
            await g.wait_until_ready(10)
            whole = await g.score(images, prompts, subjects)
            streamed = [pair async for pair in g.stream(images, prompts, subjects)]
        return list(whole.raw), streamed

    whole, streamed = asyncio.run(run())
    assert sorted(i for i, _ in streamed) == list(range(18))
    assert [dict(streamed)[i].raw for i in range(18)] == whole
    with RewardClient(server.url) as h:
        assert [dict(r) for r in h.score(images, prompts, subjects).raw] == whole


def _slow_detector_manifest(folder: Path) -> Path:
    """The fixture manifest with a detector that waits 3 s for a batch to fill."""
    text = MANIFEST.read_text().replace("../tests/fixtures/generated/", f"{FIXTURES}/")
    text = text.replace(
        "batching = { max_batch_size = 8, max_queue_delay_ms = 2,",
        "batching = { max_batch_size = 64, max_queue_delay_ms = 3000,",
        1,
    )
    assert "max_queue_delay_ms = 3000" in text
    path = folder / "slow-detector.toml"
    path.write_text(text)
    return path


def _metric(server: PsrServer, name: str) -> float:
    """A sample of ``GET /metrics`` (0 when it has none yet)."""
    text = httpx.get(f"{server.url}/metrics", trust_env=False, timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


DETECTOR_QUEUE = 'psr_reward_queue_depth{model="fixture-detector"}'
DETECTOR_DROPPED = 'psr_reward_batcher_failures_total{model="fixture-detector",reason="dropped"}'
DETECTOR_ITEMS = 'psr_reward_inference_items_total{model="fixture-detector"}'


def test_leaving_a_stream_cancels_the_call_and_its_queued_work(
    start_server: type[PsrServer], tmp_path: Path
) -> None:
    server = start_server.start(extra_env={"PSR_MODELS": str(_slow_detector_manifest(tmp_path))})
    images, prompts, subjects = _scene(6)
    inferred = _metric(server, DETECTOR_ITEMS)  # the warm-up's

    async def run() -> None:
        async with AsyncRewardClient(server.grpc_url, timeout=60) as g:
            stream = g.stream(images, prompts, subjects)
            first = asyncio.ensure_future(stream.__anext__())
            deadline = time.monotonic() + 10
            while await asyncio.to_thread(_metric, server, DETECTOR_QUEUE) < 1:
                assert time.monotonic() < deadline, "the stream's work never queued"
                await asyncio.sleep(0.02)
            first.cancel()  # the caller gives up before any result (the batch waits 3 s)
            with contextlib.suppress(asyncio.CancelledError):
                await first
            await stream.aclose()

    asyncio.run(run())
    deadline = time.monotonic() + 5
    while _metric(server, DETECTOR_DROPPED) < 1:
        assert time.monotonic() < deadline, "the cancelled work was never dropped"
        time.sleep(0.05)
    time.sleep(3.5)  # past the detector's 3 s batch delay: nothing of the stream ran
    assert _metric(server, DETECTOR_ITEMS) == inferred
    assert _metric(server, DETECTOR_QUEUE) == 0


def test_the_servers_deadline_is_a_server_timeout_on_both_transports(
    start_server: type[PsrServer], tmp_path: Path
) -> None:
    server = start_server.start(
        "[limits]\nmax_timeout_ms = 300\ndefault_timeout_ms = 300\n",
        extra_env={"PSR_MODELS": str(_slow_detector_manifest(tmp_path))},
    )
    errors = []
    for url in (server.url, server.grpc_url):
        with RewardClient(url, timeout=30) as client:
            t0 = time.monotonic()
            with pytest.raises(ServerTimeoutError) as err:
                client.score([square(RED, (2, 2, 30, 30))], "red", [[("red", red_ref())]])
            assert time.monotonic() - t0 < 2.5, "answered at the deadline, not the batch"
        errors.append(err.value)
    http, rpc = errors
    assert (http.status, http.error_type, http.grpc_code) == (504, "timeout", None)
    assert (rpc.status, rpc.error_type, rpc.grpc_code) == (504, "timeout", "DEADLINE_EXCEEDED")


def test_resource_exhausted_is_retried_after_its_retry_info(
    start_server: type[PsrServer],
) -> None:
    server = start_server.start(BUSY_CONFIG)
    holder = hold_the_slot(server.url)  # the slot is the same for both edges
    try:
        with RewardClient(server.grpc_url) as client:
            client.limits()
            with pytest.raises(DeadlineExceededError) as err:
                client.score(
                    [solid(100)], "red", [[("red", red_ref())]], rewards=AESTHETIC, timeout=0.5
                )
            last = err.value.last_error
            assert isinstance(last, OverloadedError)
            assert (last.grpc_code, last.error_type, last.retry_after) == (
                "RESOURCE_EXHAUSTED",
                "overloaded",
                1.0,
            )
            release = threading.Timer(1.5, holder.close)
            release.start()
            t0 = time.monotonic()
            result = client.score(
                [solid(100)], "red", [[("red", red_ref())]], rewards=AESTHETIC, timeout=60
            )
            assert time.monotonic() - t0 >= 1.0  # waited its RetryInfo at least once
            release.join()
        assert result.rewards == pytest.approx([100 / 255], abs=1e-4)
    finally:
        holder.close()


def _reward_stub(server: PsrServer) -> tuple[grpc.Channel, Any, Any]:
    """A raw grpcio channel, ``RewardService`` stub and the generated messages."""
    stubs = load()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    return channel, stubs.rpc.RewardServiceStub(channel), stubs.pb


def _reason(e: grpc.RpcError) -> str:
    status = rpc_status.from_call(e)
    assert status is not None, e
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            assert info.domain == "psr-reward"
            return str(info.reason)
    raise AssertionError(f"no ErrorInfo in {status}")


def test_bad_inputs_have_the_right_codes_and_the_http_error_type(server: PsrServer) -> None:
    ref = encode_image(red_ref()).b64
    scene = encode_image(square(RED, (2, 2, 30, 30)))
    png = base64.b64decode(scene.b64)
    truncated = png[: len(png) // 2]
    max_items = 16  # SHARED_CONFIG
    channel, stub, pb = _reward_stub(server)

    def item(image: bytes) -> Any:
        return pb.RewardItem(
            image=image,
            prompt="red",
            subjects=[pb.Subject(name="red", reference_image=base64.b64decode(ref))],
        )

    def http_item(image: bytes) -> dict[str, Any]:
        b64 = base64.b64encode(image).decode()
        return {"image": b64, "prompt": "red", "subjects": [{"name": "red", "reference": ref}]}

    cases = {
        "empty bytes": [b""],
        "truncated image": [truncated],
        "too many items": [png] * (max_items + 1),
    }
    with channel:
        for what, images in cases.items():
            with pytest.raises(grpc.RpcError) as err:
                stub.Reward(pb.RewardRequest(items=[item(i) for i in images]), timeout=30)
            http = httpx.post(
                f"{server.url}/v1/reward",
                json={"items": [http_item(i) for i in images]},
                trust_env=False,
                timeout=30,
            )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
            assert 400 <= http.status_code < 500, (what, http.text)
            assert _reason(err.value) == http.json()["error_type"], what
    # The client maps them back: a truncated image is the HTTP client's InvalidRequestError.
    for url in (server.url, server.grpc_url):
        with RewardClient(url) as client, pytest.raises(InvalidRequestError) as e:
            client.score([truncated], "red", [[("red", red_ref())]])
        assert e.value.error_type == "invalid_image"
        assert e.value.grpc_code == (None if url == server.url else "INVALID_ARGUMENT")


def test_api_keys_travel_as_bearer_metadata(
    start_server: type[PsrServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "client-grpc-key-0123456789"
    server = start_server.start(
        '[auth]\nkeys_env = "PSR_CLIENT_TEST_KEYS"\n', extra_env={"PSR_CLIENT_TEST_KEYS": key}
    )
    monkeypatch.delenv("PSR_API_KEY", raising=False)
    with RewardClient(server.grpc_url) as client:
        client.wait_until_ready(10)  # health stays open
        with pytest.raises(UnauthorizedError) as err:
            client.score([solid(1)], "p", [[("red", red_ref())]], rewards=AESTHETIC)
    assert (err.value.grpc_code, err.value.error_type) == ("UNAUTHENTICATED", "unauthorized")
    with RewardClient(server.grpc_url, api_key=key) as client:
        result = client.score([solid(51)], "p", [[("red", red_ref())]], rewards=AESTHETIC)
    assert result.rewards == pytest.approx([0.2], abs=1e-4)


def test_health_answers_serving(server: PsrServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "psr_reward.v1.RewardService"):
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_and_describes_the_services(server: PsrServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        # `grpcurl list`: the raw ServerReflection stream.
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
        names = {s.name for s in answer.list_services_response.service}
        assert {"psr_reward.v1.RewardService", "grpc.health.v1.Health"} <= names
        # `grpcurl describe`: the service's descriptor through reflection.
        db = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(db)
        service = pool.FindServiceByName("psr_reward.v1.RewardService")
        methods = {m.name: m for m in service.methods}
        assert set(methods) == {"Reward", "StreamRewards", "Detect", "Embed", "Info"}
        assert methods["StreamRewards"].server_streaming
        assert methods["Reward"].input_type.full_name == "psr_reward.v1.RewardRequest"
