"""The evaluation wing: few-shot metrics, the evaluation loop, and feature reuse across episodes."""

from .feature_reuse import QueryGroups, SupportCache, score_grouped
from .loop import evaluate, evaluate_seeds, score_episodes, with_episodes
from .metrics import (
    STAT_FIELDS,
    FewShotMeter,
    FoldResult,
    MultiSeedResult,
    episode_stats,
    format_table,
)

__all__ = [
    "STAT_FIELDS",
    "FewShotMeter",
    "FoldResult",
    "MultiSeedResult",
    "QueryGroups",
    "SupportCache",
    "episode_stats",
    "evaluate",
    "evaluate_seeds",
    "format_table",
    "score_episodes",
    "score_grouped",
    "with_episodes",
]
