"""Flow-GRPO: a scorer ``fn(images, prompts, metadata) -> (scores, info)``.

Flow-GRPO's ``multi_score`` calls each scorer as ``scores, _ = fn(images, prompts, metadata)``
and combines ``[weight * s for s in scores]``; the trainer runs the whole reward function on
a thread pool (``executor.submit(reward_fn, images, prompts, prompt_metadata, only_strict=True)``)
while it samples. Images arrive as a torch NCHW float tensor in [0, 1] or a numpy NHWC uint8
array; ``metadata[i]`` carries image i's subjects and references (see ``subjects_of``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..results import ScoreResult
from ..sync_client import DEFAULT_URL, RewardClient
from ._common import subjects_of


class FlowGrpoScorer:
    """A Flow-GRPO scorer backed by psr-reward. Thread-safe; waits for the server at
    construction (``ready_timeout``). Items whose reward is null score ``null_score`` (their
    count is in ``info["null"]``, their reasons in ``info["errors"]``)."""

    __name__ = "psr_reward"

    def __init__(
        self,
        client: RewardClient | str | Sequence[str] = DEFAULT_URL,
        *,
        rewards: Mapping[str, float] | None = None,
        null_score: float = 0.0,
        ready_timeout: float = 60.0,
        timeout: float | None = None,
        mode: str | None = None,
        options: Mapping[str, Any] | None = None,
        **client_kwargs: Any,
    ) -> None:
        self.client = (
            client if isinstance(client, RewardClient) else RewardClient(client, **client_kwargs)
        )
        self.rewards = rewards
        self.null_score = null_score
        self.timeout = timeout
        self.mode = mode
        self.options = options
        self._lock = threading.Lock()
        #: The last call's result (for logging its components).
        self.last_result: ScoreResult | None = None
        self.client.wait_until_ready(ready_timeout)

    def score(self, images: Any, prompts: Sequence[str], metadata: Sequence[Any]) -> ScoreResult:
        """The full typed result for Flow-GRPO-shaped inputs."""
        subjects = [subjects_of(m, where=f"metadata[{i}]") for i, m in enumerate(metadata)]
        tasks = [m.get("task") if isinstance(m, Mapping) else None for m in metadata]
        result = self.client.score(
            images,
            list(prompts),
            subjects,
            task=tasks,
            rewards=self.rewards,
            timeout=self.timeout,
            mode=self.mode,
            options=self.options,
        )
        with self._lock:
            self.last_result = result
        return result

    def __call__(
        self, images: Any, prompts: Sequence[str], metadata: Sequence[Any], *_: Any, **__: Any
    ) -> tuple[list[float], dict[str, Any]]:
        """``(scores, info)``: one float per image; ``info`` has the per-component lists
        (``components``), a null flag per image (``null``) and each item's ``errors``."""
        result = self.score(images, prompts, metadata)
        return self._scores(result), self._info(result)

    def reward_fn(
        self,
        images: Any,
        prompts: Sequence[str],
        metadata: Sequence[Any],
        ref_images: Any = None,
        only_strict: bool = True,
    ) -> tuple[dict[str, list[float]], dict[str, Any]]:
        """A whole Flow-GRPO ``reward_fn`` (what ``multi_score`` returns): ``{"psr": scores,
        <component>: scores, "avg": scores}`` and ``{}``."""
        del ref_images, only_strict
        result = self.score(images, prompts, metadata)
        scores = self._scores(result)
        details: dict[str, list[float]] = {"psr": scores}
        for name, values in result.component_values().items():
            if name != "reward":
                details[name] = [math.nan if v is None else v for v in values]
        details["avg"] = scores
        return details, {}

    def _scores(self, result: ScoreResult) -> list[float]:
        return [self.null_score if r is None else r for r in result.rewards]

    @staticmethod
    def _info(result: ScoreResult) -> dict[str, Any]:
        return {
            "components": result.component_values(),
            "null": [r is None for r in result.rewards],
            "errors": [dict(r.errors) for r in result],
        }


def flow_grpo_scorer(base_url: str | Sequence[str] = DEFAULT_URL, **kwargs: Any) -> FlowGrpoScorer:
    """Shorthand for :class:`FlowGrpoScorer` (``score_functions["psr"] = lambda:
    flow_grpo_scorer(url)`` in Flow-GRPO's ``multi_score``)."""
    return FlowGrpoScorer(base_url, **kwargs)
