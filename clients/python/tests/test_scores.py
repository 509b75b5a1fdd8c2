"""Scores equal the server's JSON; chunking within /info limits keeps the order."""

from __future__ import annotations

import httpx
import pytest
from helpers import AESTHETIC, BLUE, RED, TOLERANCE, Recorder, red_ref, solid, square
from psr_server import PsrServer

from psr_reward_client import EncodeOptions, InvalidRequestError, RewardClient, encode_image


def test_scores_equal_the_servers_json(server: PsrServer) -> None:
    images = [
        square(RED, (2, 2, 30, 30)),
        square(RED, (20, 20, 60, 60)),
        square(BLUE, (4, 4, 40, 40)),
    ]
    ref = red_ref(3)
    prompts = ["a red square", "a big red square", "a blue square"]
    opts = EncodeOptions()
    b64 = [encode_image(im, opts).b64 for im in images]
    ref_b64 = encode_image(ref, opts).b64
    body = {
        "items": [
            {"image": b, "prompt": p, "subjects": [{"name": "red", "reference": ref_b64}]}
            for b, p in zip(b64, prompts, strict=True)
        ]
    }
    direct = httpx.post(f"{server.url}/v1/reward", json=body, timeout=60, trust_env=False)
    assert direct.status_code == 200, direct.text
    expected = direct.json()["results"]

    with RewardClient(server.url) as client:
        result = client.score(images, prompts, [[("red", ref)]] * 3)

    assert result.raw == expected
    for item, want in zip(result, expected, strict=True):
        assert item.reward == want["reward"]
        for name, comp in want["components"].items():
            assert item.component(name) == comp["score"]
        assert (
            item.subjects[0].similarity
            == want["components"]["subject_consistency"]["subjects"][0]["similarity"]
        )
    # The blue square has no red subject: detected only where the server says so.
    assert [s.subjects[0].detected for s in result] == [
        r["components"]["subject_consistency"]["subjects"][0]["detected"] for r in expected
    ]
    assert result.responses[0]["options"] == direct.json()["options"]


def test_hundreds_of_items_are_chunked_within_info_limits_and_kept_in_order(
    server: PsrServer,
) -> None:
    n = 300
    values = [(i * 37) % 256 for i in range(n)]
    rec = Recorder()
    ref = red_ref()
    with RewardClient(
        server.url, chunk_size=64, max_concurrency=4, event_hooks=rec.hooks()
    ) as client:
        assert client.limits().max_items_per_request == 16  # from /info
        result = client.score(
            [solid(v) for v in values], "red", [[("red", ref)]] * n, rewards=AESTHETIC
        )
    assert len(result) == n
    for v, item in zip(values, result, strict=True):
        assert item.reward == pytest.approx(v / 255, abs=TOLERANCE)
    posts = rec.posts()
    assert all(p.status == 200 for p in posts)
    sizes = [len(p.body["items"]) for p in posts if p.body]
    assert max(sizes) == 16 and sum(sizes) == n and len(posts) == 19
    assert len(result.responses) == 19


def test_a_4xx_is_raised_typed_and_never_retried(server: PsrServer) -> None:
    rec = Recorder()
    with (
        RewardClient(server.url, event_hooks=rec.hooks()) as client,
        pytest.raises(InvalidRequestError) as err,
    ):
        client.score([solid(9)], "x", [[("red", red_ref())]], rewards={"nope": 1.0})
    assert err.value.status == 422
    assert err.value.error_type == "invalid_request"
    assert "rewards.nope" in err.value.message
    assert err.value.request_id
    assert len(rec.posts()) == 1


def test_mismatched_arguments_fail_before_any_request(server: PsrServer) -> None:
    with RewardClient(server.url) as client:
        with pytest.raises(ValueError, match="prompts: 1 given for 2 images"):
            client.score([solid(1), solid(2)], ["one"], [[("red", red_ref())]] * 2)
        with pytest.raises(ValueError, match="subjects"):
            client.score([solid(1)], "p", None)


def test_a_chunk_over_the_in_flight_budget_is_split(start_server: type[PsrServer]) -> None:
    # The server's in-flight estimate for an aesthetic-only item here is about 0.61 MB (its
    # 40x32 pixels and one 224x224 f32 aesthetic tensor; the shared reference 16 kB): a
    # chunk of four (2.45 MB) never fits in 2 MB, two or three do.
    server = start_server.start(
        "[limits]\nmax_inflight_bytes = 2000000\n"
        "max_request_pixels = 100000\nmax_image_pixels = 10000\n"
    )
    rec = Recorder()
    values = [10, 60, 110, 160, 210, 250]
    with RewardClient(server.url, chunk_size=4, event_hooks=rec.hooks()) as client:
        result = client.score(
            [solid(v) for v in values], "red", [[("red", red_ref())]] * 6, rewards=AESTHETIC
        )
    assert result.rewards == pytest.approx([v / 255 for v in values], abs=TOLERANCE)
    statuses = [p.status for p in rec.posts()]
    assert 422 in statuses
    split = [len(p.body["items"]) for p in rec.posts() if p.status == 200 and p.body]
    assert sum(split) == 6 and max(split) < 4
