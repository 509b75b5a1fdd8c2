"""TRL ``GRPOTrainer`` reward functions.

TRL calls ``reward_func(prompts=..., completions=..., completion_ids=..., **columns)`` with
every dataset column (but prompt/completion) as a keyword holding one value per completion,
plus ``trainer_state``; it converts None to NaN (abstain) and names the reward after
``reward_func.__name__``. ``async def`` reward functions run concurrently on TRL's own loop.

Here a completion is the generated image (or ``{"image": ...}``, or a conversational
completion with an image part); the columns ``subjects`` (or ``subject_names`` +
``references``) and ``task`` carry each row's subjects and PSRBench task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..async_client import AsyncRewardClient
from ..request import Subject
from ..results import ScoreResult
from ..sync_client import DEFAULT_URL, RewardClient
from ._common import column_rows, completion_image, prompt_text, subjects_of

RewardFunc = Callable[..., list[float | None]]
AsyncRewardFunc = Callable[..., Awaitable[list[float | None]]]


class ComponentLog:
    """The components of the last call, for logging (``wandb.log(fn.log.log_dict())``)."""

    def __init__(self) -> None:
        self.last: ScoreResult | None = None

    def values(self) -> dict[str, list[float | None]]:
        """Per component (and ``reward``) one value per completion of the last call."""
        return self.last.component_values() if self.last is not None else {}

    def log_dict(self, prefix: str = "psr/") -> dict[str, float]:
        """Means and null fractions of the last call (see :meth:`ScoreResult.log_dict`)."""
        return self.last.log_dict(prefix) if self.last is not None else {}


def _inputs(
    prompts: Sequence[Any], completions: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], list[str], list[list[Subject]], list[Any]]:
    n = len(completions)
    rows = column_rows(kwargs, n)
    images = [completion_image(c, f"completions[{i}]") for i, c in enumerate(completions)]
    subjects = [subjects_of(r, where=f"row {i} (dataset columns)") for i, r in enumerate(rows)]
    tasks = [r.get("task") for r in rows]
    return images, [prompt_text(p) for p in prompts], subjects, tasks


def _wait(urls: str | Sequence[str], timeout: float) -> None:
    with RewardClient(urls) as probe:
        probe.wait_until_ready(timeout)


def trl_reward_func(
    client: RewardClient | str | Sequence[str] = DEFAULT_URL,
    *,
    name: str = "psr_reward",
    rewards: Mapping[str, float] | None = None,
    ready_timeout: float = 60.0,
    timeout: float | None = None,
    **client_kwargs: Any,
) -> RewardFunc:
    """A sync TRL reward function returning ``list[float | None]`` (None where the server
    reported the reward as null). ``fn.log`` holds the last call's components."""
    c = client if isinstance(client, RewardClient) else RewardClient(client, **client_kwargs)
    c.wait_until_ready(ready_timeout)
    log = ComponentLog()

    def reward(
        prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        images, texts, subjects, tasks = _inputs(prompts, completions, kwargs)
        result = c.score(images, texts, subjects, task=tasks, rewards=rewards, timeout=timeout)
        log.last = result
        return result.rewards

    reward.__name__ = reward.__qualname__ = name
    reward.log = log  # type: ignore[attr-defined]
    reward.client = c  # type: ignore[attr-defined]
    return reward


def trl_async_reward_func(
    client: AsyncRewardClient | str | Sequence[str] = DEFAULT_URL,
    *,
    name: str = "psr_reward",
    rewards: Mapping[str, float] | None = None,
    ready_timeout: float = 60.0,
    timeout: float | None = None,
    **client_kwargs: Any,
) -> AsyncRewardFunc:
    """An ``async def`` TRL reward function (TRL gathers async reward functions on its own
    loop); otherwise as :func:`trl_reward_func`."""
    c = (
        client
        if isinstance(client, AsyncRewardClient)
        else AsyncRewardClient(client, **client_kwargs)
    )
    _wait(c.urls, ready_timeout)
    log = ComponentLog()

    async def reward(
        prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        images, texts, subjects, tasks = _inputs(prompts, completions, kwargs)
        result = await c.score(
            images, texts, subjects, task=tasks, rewards=rewards, timeout=timeout
        )
        log.last = result
        return result.rewards

    reward.__name__ = reward.__qualname__ = name
    reward.log = log  # type: ignore[attr-defined]
    reward.client = c  # type: ignore[attr-defined]
    return reward
