"""Typed results of ``POST /v1/reward``, one per item, with the server's JSON kept alongside.

``ItemResult.raw`` is exactly the item's object from the server's answer; the typed fields are
read from it and never recomputed, so a score here always equals the server's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload


@dataclass(frozen=True)
class SubjectScore:
    """One subject of the subject-consistency component (see the README's HTTP API)."""

    name: str
    similarity: float | None
    detected: bool
    box: list[int] | None
    fallback: str | None
    reference_detected: bool
    reference_box: list[int] | None
    reference_fallback: str | None
    #: Content hash the server knows the reference by (what the client sends as ``{"ref"}``).
    reference: str | None
    #: With ``fallback == "non_rgb"``, the Pillow mode of the generated image ("RGBA", ...).
    fallback_mode: str | None = None
    #: With ``reference_fallback == "non_rgb"``, the Pillow mode of the reference.
    reference_fallback_mode: str | None = None

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> SubjectScore:
        """Reads one entry of ``components.subject_consistency.subjects``."""
        return SubjectScore(
            name=str(obj.get("name", "")),
            similarity=_opt_float(obj.get("similarity")),
            detected=bool(obj.get("detected", False)),
            box=obj.get("box"),
            fallback=obj.get("fallback"),
            reference_detected=bool(obj.get("reference_detected", False)),
            reference_box=obj.get("reference_box"),
            reference_fallback=obj.get("reference_fallback"),
            reference=obj.get("reference"),
            fallback_mode=obj.get("fallback_mode"),
            reference_fallback_mode=obj.get("reference_fallback_mode"),
        )


@dataclass(frozen=True)
class ComponentScore:
    """One reward component: its normalised ``score``, its ``raw`` value when the server gives
    one, and every other field of the component's JSON in ``details``."""

    name: str
    score: float | None
    raw: float | None
    details: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_json(name: str, obj: Mapping[str, Any]) -> ComponentScore:
        """Reads ``components[name]``."""
        details = {k: v for k, v in obj.items() if k not in ("score", "raw")}
        return ComponentScore(
            name, _opt_float(obj.get("score")), _opt_float(obj.get("raw")), details
        )


@dataclass(frozen=True)
class ItemResult:
    """The reward of one image: ``reward`` (None when the server reported it as null),
    ``components`` (None for a component that failed, with its reason in ``errors``),
    the subject details and the item's JSON as the server sent it (``raw``)."""

    reward: float | None
    components: Mapping[str, ComponentScore | None]
    errors: Mapping[str, str]
    subjects: Sequence[SubjectScore]
    raw: Mapping[str, Any]

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> ItemResult:
        """Reads one entry of the answer's ``results``."""
        comps: dict[str, ComponentScore | None] = {}
        for name, value in (obj.get("components") or {}).items():
            comps[name] = ComponentScore.from_json(name, value) if isinstance(value, dict) else None
        sc = obj.get("components", {}).get("subject_consistency")
        subjects = [SubjectScore.from_json(s) for s in (sc or {}).get("subjects", [])]
        errors = {str(k): str(v) for k, v in (obj.get("errors") or {}).items()}
        return ItemResult(_opt_float(obj.get("reward")), comps, errors, subjects, obj)

    def component(self, name: str) -> float | None:
        """The normalised score of component ``name`` (None when absent or failed)."""
        c = self.components.get(name)
        return c.score if c is not None else None


class ScoreResult(Sequence[ItemResult]):
    """The results of one ``score`` call, in the order of its images.

    ``responses`` holds each chunk's full answer (``options``, ``timing``) in chunk order.
    """

    def __init__(self, items: list[ItemResult], responses: list[Mapping[str, Any]]) -> None:
        self._items = items
        self.responses = responses

    @overload
    def __getitem__(self, i: int) -> ItemResult: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[ItemResult]: ...
    def __getitem__(self, i: int | slice) -> ItemResult | Sequence[ItemResult]:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ItemResult]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"ScoreResult({len(self._items)} items, rewards={self.rewards!r})"

    @property
    def rewards(self) -> list[float | None]:
        """Each item's reward; None where the server reported null."""
        return [r.reward for r in self._items]

    @property
    def raw(self) -> list[Mapping[str, Any]]:
        """Each item's JSON exactly as the server sent it."""
        return [r.raw for r in self._items]

    def component_names(self) -> list[str]:
        """Names of the components present in any item, in first-seen order."""
        names: dict[str, None] = {}
        for r in self._items:
            for n in r.components:
                names.setdefault(n, None)
        return list(names)

    def component_values(self) -> dict[str, list[float | None]]:
        """``{"reward": [...], component: [...], ...}``: one list per key, one value per item
        (None where null), ready for a logger's histogram or a DataFrame."""
        out: dict[str, list[float | None]] = {"reward": self.rewards}
        for n in self.component_names():
            out[n] = [r.component(n) for r in self._items]
        return out

    def log_dict(self, prefix: str = "psr/") -> dict[str, float]:
        """Scalar summaries for wandb / tensorboard: per key its mean over the items that scored
        and the fraction that came back null (``{prefix}{key}_null_frac``)."""
        out: dict[str, float] = {}
        for key, values in self.component_values().items():
            scored = [v for v in values if v is not None and math.isfinite(v)]
            out[f"{prefix}{key}"] = sum(scored) / len(scored) if scored else math.nan
            out[f"{prefix}{key}_null_frac"] = 1.0 - len(scored) / len(values) if values else 0.0
        return out


def _opt_float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
