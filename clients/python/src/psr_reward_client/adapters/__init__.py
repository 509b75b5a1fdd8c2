"""Drop-in reward functions for trainers: Flow-GRPO and TRL's GRPOTrainer."""

from .flow_grpo import FlowGrpoScorer, flow_grpo_scorer
from .trl import ComponentLog, trl_async_reward_func, trl_reward_func

__all__ = [
    "ComponentLog",
    "FlowGrpoScorer",
    "flow_grpo_scorer",
    "trl_async_reward_func",
    "trl_reward_func",
]
