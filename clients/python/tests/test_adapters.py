"""Both adapters, called exactly the way their trainers call them."""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import BLUE, RED, red_ref, square
from psr_server import PsrServer, free_port

from psr_reward_client import (
    FlowGrpoScorer,
    RewardClient,
    ServerUnavailableError,
    trl_async_reward_func,
    trl_reward_func,
)

SC_POS = {"subject_consistency": 1.0, "position": 1.0}


def _scene(shift: int) -> Any:
    im = square(RED, (2 + shift, 2, 20 + shift, 20))
    im.paste(square(BLUE, (0, 0, 20, 20), size=22), (40, 4))
    return im


def _jpeg_size_scorer() -> Any:
    """A Flow-GRPO-style local scorer (like its jpeg_compressibility)."""
    import io

    from PIL import Image

    def _fn(images: Any, prompts: Any, metadata: Any) -> tuple[Any, dict[str, Any]]:
        sizes = []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=95)
            sizes.append(buf.tell() / 1000)
        return np.array(sizes), {}

    return _fn


def _multi_score(score_fns: dict[str, Any], score_dict: dict[str, float]) -> Any:
    """Flow-GRPO's multi_score combination, as its trainer uses it."""

    def _fn(
        images: Any, prompts: Any, metadata: Any, ref_images: Any = None, only_strict: bool = True
    ) -> Any:
        total_scores: list[float] = []
        score_details: dict[str, Any] = {}
        for score_name, weight in score_dict.items():
            scores, _rewards = score_fns[score_name](images, prompts, metadata)
            score_details[score_name] = scores
            weighted_scores = [weight * score for score in scores]
            if not total_scores:
                total_scores = weighted_scores
            else:
                total_scores = [t + w for t, w in zip(total_scores, weighted_scores, strict=True)]
        score_details["avg"] = total_scores
        return score_details, {}

    return _fn


def test_flow_grpo_scorer_in_multi_score_on_the_trainer_thread_pool(
    server: PsrServer, tmp_path: Path
) -> None:
    ref_red, ref_blue = tmp_path / "red.png", tmp_path / "blue.png"
    red_ref().save(ref_red)
    square(BLUE, (8, 8, 48, 48)).save(ref_blue)
    images = np.stack([np.asarray(_scene(k)) for k in range(4)])  # NHWC uint8
    prompts = ["a red square on the left of a blue square"] * 3 + ["a red square and a blue square"]
    metadata = [
        {
            "subjects": [
                {"name": "red", "reference": str(ref_red)},
                {"name": "blue", "reference": str(ref_blue)},
            ]
        }
    ] * 4
    scorer = FlowGrpoScorer(server.url, rewards=SC_POS)
    reward_fn = _multi_score(
        {"psr": scorer, "jpeg": _jpeg_size_scorer()}, {"psr": 1.0, "jpeg": 0.01}
    )
    with ThreadPoolExecutor(max_workers=8) as executor:
        futures = [
            executor.submit(reward_fn, images, prompts, metadata, only_strict=True)
            for _ in range(2)
        ]
        outputs = [f.result() for f in futures]

    with RewardClient(server.url) as client:
        direct = client.score(
            list(images),
            prompts,
            [[("red", str(ref_red)), ("blue", str(ref_blue))]] * 4,
            rewards=SC_POS,
        )
    want = [0.0 if r is None else r for r in direct.rewards]
    assert direct.rewards[-1] is None and all(r is not None for r in direct.rewards[:-1])
    jpeg = _jpeg_size_scorer()(images, prompts, metadata)[0]
    for details, _ in outputs:
        assert details["psr"] == pytest.approx(want)
        assert details["avg"] == pytest.approx(
            [w + 0.01 * j for w, j in zip(want, jpeg, strict=True)]
        )
    scores, info = scorer(images, prompts, metadata)
    assert scores == pytest.approx(want)
    assert info["null"] == [False] * 3 + [True]
    assert "position" in info["errors"][-1]
    assert info["components"]["position"][:3] == [1.0] * 3
    details, _ = scorer.reward_fn(images, prompts, metadata, only_strict=True)
    assert details["avg"] == pytest.approx(want) and "subject_consistency" in details


def test_flow_grpo_scorer_takes_torch_tensors(server: PsrServer) -> None:
    torch = pytest.importorskip("torch")
    arr = np.stack([np.asarray(_scene(k)) for k in range(2)])
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0  # NCHW in [0, 1]
    metadata = [{"subjects": ["red"], "references": [red_ref()]}] * 2
    scorer = FlowGrpoScorer(server.url, rewards={"subject_consistency": 1.0})
    scores, _ = scorer(images, ["a red square"] * 2, metadata)
    with RewardClient(server.url) as client:
        want = client.score(
            list(arr),
            "a red square",
            [[("red", red_ref())]] * 2,
            rewards={"subject_consistency": 1.0},
        )
    assert scores == pytest.approx(want.rewards)


def _trl_inputs() -> tuple[list[Any], list[Any], dict[str, Any]]:
    prompts: list[Any] = ["a red square on the left of a blue square"] * 3 + [
        [{"role": "user", "content": [{"type": "text", "text": "a red square and a blue square"}]}]
    ]
    conversational = [{"role": "assistant", "content": [{"type": "image", "image": _scene(3)}]}]
    completions: list[Any] = [
        _scene(0),
        {"image": _scene(1)},
        np.asarray(_scene(2)),
        conversational,
    ]
    subjects = [
        [
            {"name": "red", "reference": red_ref()},
            {"name": "blue", "reference": square(BLUE, (8, 8, 48, 48))},
        ]
    ] * 4
    columns = {
        "subjects": subjects,
        "task": ["position"] * 4,
        "trainer_state": object(),
        "completion_ids": [[1, 2]] * 4,
    }
    return prompts, completions, columns


def _expected(server: PsrServer) -> list[float | None]:
    prompts, _completions, columns = _trl_inputs()
    with RewardClient(server.url) as client:
        images = [_scene(k) for k in range(4)]
        texts = [prompts[0]] * 3 + ["a red square and a blue square"]
        subj = [[(s["name"], s["reference"]) for s in row] for row in columns["subjects"]]
        return client.score(images, texts, subj, task=columns["task"], rewards=SC_POS).rewards


def test_trl_sync_reward_func(server: PsrServer) -> None:
    fn = trl_reward_func(server.url, rewards=SC_POS)
    assert fn.__name__ == "psr_reward"
    prompts, completions, columns = _trl_inputs()
    out = fn(prompts=prompts, completions=completions, **columns)
    want = _expected(server)
    assert out == pytest.approx(want)
    assert out[-1] is None and all(isinstance(x, float) for x in out[:-1])
    values = fn.log.values()  # type: ignore[attr-defined]
    assert values["position"] == [1.0, 1.0, 1.0, None]
    assert fn.log.log_dict()["psr/position_null_frac"] == pytest.approx(0.25)  # type: ignore[attr-defined]


def test_trl_async_reward_func_on_the_trainers_own_loop(server: PsrServer) -> None:
    fn = trl_async_reward_func(server.url, rewards=SC_POS, name="psr_async")
    assert inspect.iscoroutinefunction(fn) and fn.__name__ == "psr_async"
    prompts, completions, columns = _trl_inputs()
    # TRL runs async reward functions on an event loop in a thread of its own, gathered.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def gathered() -> list[list[float | None]]:
            return list(
                await asyncio.gather(
                    fn(prompts=prompts, completions=completions, **columns),
                    fn(prompts=prompts, completions=completions, **columns),
                )
            )

        outs = asyncio.run_coroutine_threadsafe(gathered(), loop).result(timeout=60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
    want = _expected(server)
    for out in outs:
        assert out == pytest.approx(want)


def test_adapters_wait_for_the_server_with_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnavailableError, match="make run"):
        trl_reward_func(url, ready_timeout=0.3)
    with pytest.raises(ServerUnavailableError, match=url):
        FlowGrpoScorer(url, ready_timeout=0.3)
