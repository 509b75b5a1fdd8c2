"""Python client for the psr-reward service, with Flow-GRPO and TRL adapters.

>>> from psr_reward_client import RewardClient
>>> client = RewardClient("http://127.0.0.1:8080")
>>> result = client.score(images, prompts, [[("cat", "ref.png")]] * len(images))
>>> result.rewards
"""

from .adapters import (
    ComponentLog,
    FlowGrpoScorer,
    flow_grpo_scorer,
    trl_async_reward_func,
    trl_reward_func,
)
from .async_client import AsyncRewardClient
from .errors import (
    BackendError,
    DeadlineExceededError,
    InvalidRequestError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    RewardClientError,
    RewardServerError,
    ServerTimeoutError,
    ServerUnavailableError,
    TlsVerificationError,
    UnauthorizedError,
    UnknownReferenceError,
)
from .images import EncodedImage, EncodeOptions, encode_image
from .replicas import Backoff
from .request import Limits, Subject
from .results import ComponentScore, ItemResult, ScoreResult, SubjectScore
from .sync_client import RewardClient

__version__ = "0.1.0"

__all__ = [
    "AsyncRewardClient",
    "BackendError",
    "Backoff",
    "ComponentLog",
    "ComponentScore",
    "DeadlineExceededError",
    "EncodeOptions",
    "EncodedImage",
    "FlowGrpoScorer",
    "InvalidRequestError",
    "ItemResult",
    "Limits",
    "NotReadyError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RewardClient",
    "RewardClientError",
    "RewardServerError",
    "ScoreResult",
    "ServerTimeoutError",
    "ServerUnavailableError",
    "Subject",
    "SubjectScore",
    "TlsVerificationError",
    "UnauthorizedError",
    "UnknownReferenceError",
    "encode_image",
    "flow_grpo_scorer",
    "trl_async_reward_func",
    "trl_reward_func",
]
