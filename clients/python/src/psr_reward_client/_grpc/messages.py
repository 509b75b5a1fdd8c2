"""A chunk as a ``psr_reward.v1.RewardRequest``, and the service's messages back as the HTTP
API's JSON shapes, so one result type (:class:`~psr_reward_client.results.ItemResult`), one
reference bookkeeping and one test of "equal to the server's answer" serve both transports.

The mapping follows the proto's comments: enum values are the JSON strings upper-cased behind
the enum's prefix (``FALLBACK_NOT_DETECTED`` is ``"not_detected"``, ``*_UNSPECIFIED`` is
null), a ``PixelBox`` is ``[x1, y1, x2, y2]``, an unset message or ``optional`` field is the
JSON's absent or null, and empty ``fallback_mode`` strings are null.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from ..request import CallOptions, PreparedItem

#: Request-option fields that are enums, with their value prefixes.
_OPTION_ENUMS = {
    "alpha": "ALPHA_RULE_",
    "matching": "MATCHING_",
    "detection": "DETECTION_RULE_",
    "batching": "DETECTOR_BATCHING_",
}


def _enum_value(pb: Any, prefix: str, text: str, field: str) -> int:
    """The number of a JSON enum string (``"assignment"`` -> ``MATCHING_ASSIGNMENT``)."""
    name = prefix + str(text).upper()
    try:
        return int(getattr(pb, name))
    except AttributeError:
        raise ValueError(f"{field}: unknown value {text!r}") from None


def _enum_text(pb: Any, enum: str, prefix: str, value: int) -> str | None:
    """The JSON string of an enum number; None for its ``*_UNSPECIFIED``."""
    name: str = getattr(pb, enum).Name(value)
    return None if name.endswith("_UNSPECIFIED") else name.removeprefix(prefix).lower()


def request(
    pb: Any, items: Sequence[PreparedItem], call: CallOptions, known: Mapping[str, str]
) -> Any:
    """The ``RewardRequest`` of a chunk; ``known`` maps a reference digest to the server hash
    sent as ``reference_hash`` instead of the image (as the HTTP body's ``{"ref": hash}``).

    The client keeps encoded images as base64 (the HTTP form); decoding it here costs about
    a millisecond per megabyte, far less than encoding the image did."""
    msg = pb.RewardRequest()
    for it in items:
        item = msg.items.add(image=base64.b64decode(it.image.b64), prompt=it.prompt)
        if it.task is not None:
            item.task = it.task
        for s in it.subjects:
            h = known.get(s.reference.digest)
            if h is not None:
                item.subjects.add(name=s.name, reference_hash=h)
            else:
                item.subjects.add(name=s.name, reference_image=base64.b64decode(s.reference.b64))
    if call.rewards is not None:
        msg.rewards.update({str(k): float(v) for k, v in call.rewards.items()})
    if call.mode is not None:
        msg.mode = _enum_value(pb, "MODE_", call.mode, "mode")
    if call.options is not None:
        _set_options(pb, msg.options, call.options)
    if call.priority is not None:
        msg.priority = call.priority
    return msg


def _set_options(pb: Any, out: Any, options: Mapping[str, Any]) -> None:
    for key, value in options.items():
        if key == "clamp_boxes":
            out.clamp_boxes = bool(value)
        elif key in _OPTION_ENUMS:
            setattr(out, key, _enum_value(pb, _OPTION_ENUMS[key], value, f"options.{key}"))
        else:
            known = ", ".join(["clamp_boxes", *_OPTION_ENUMS])
            raise ValueError(f"options.{key}: not an option over gRPC ({known})")


def stream_request(pb: Any, unary: Any) -> Any:
    """The ``StreamRewardsRequest`` with the fields of a ``RewardRequest``."""
    msg = pb.StreamRewardsRequest()
    msg.MergeFromString(unary.SerializeToString())  # the same fields, numbers and types
    return msg


def _opt(msg: Any, field: str) -> Any:
    """An ``optional`` field's value, None when unset."""
    return getattr(msg, field) if msg.HasField(field) else None


def _box(msg: Any, field: str) -> list[int] | None:
    if not msg.HasField(field):
        return None
    b = getattr(msg, field)
    return [int(b.x1), int(b.y1), int(b.x2), int(b.y2)]


def _subject(pb: Any, s: Any) -> dict[str, Any]:
    out = {
        "name": s.name,
        "similarity": s.similarity,
        "detected": s.detected,
        "box": _box(s, "box"),
        "fallback": _enum_text(pb, "Fallback", "FALLBACK_", s.fallback),
        "fallback_mode": s.fallback_mode or None,
        "reference_detected": s.reference_detected,
        "reference_box": _box(s, "reference_box"),
        "reference_fallback": _enum_text(pb, "Fallback", "FALLBACK_", s.reference_fallback),
        "reference_fallback_mode": s.reference_fallback_mode or None,
        "reference": s.reference,
    }
    if s.HasField("copy_paste"):  # a server older than the proto's field omits it
        out["copy_paste"] = {
            "score": _opt(s.copy_paste, "score"),
            "suspected": s.copy_paste.suspected,
        }
    return out


def _components(pb: Any, c: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.HasField("subject_consistency"):
        sc = c.subject_consistency
        out["subject_consistency"] = {
            "score": sc.score,
            "raw": sc.raw,
            "subjects": [_subject(pb, s) for s in sc.subjects],
        }
    if c.HasField("semantic_alignment"):
        sa = c.semantic_alignment
        entry = {
            "score": _opt(sa, "score"),
            "raw": _opt(sa, "raw"),
            "parsed": sa.parsed,
            "substituted": sa.substituted,
            "out_of_range": sa.out_of_range,
            "dropped": sa.dropped,
            "template": sa.template,
            "template_hash": sa.template_hash,
        }
        if sa.HasField("answer"):
            entry["answer"] = sa.answer
        out["semantic_alignment"] = entry
    if c.HasField("aesthetic"):
        a = c.aesthetic
        out["aesthetic"] = {"score": a.score, "raw": a.raw, "source": a.source}
    if c.HasField("position"):
        p = c.position
        entry = {"score": _opt(p, "score"), "raw": _opt(p, "raw"), "relation": _opt(p, "relation")}
        if p.HasField("reason"):
            entry["reason"] = p.reason
        out["position"] = entry
    return out


def item_result(pb: Any, r: Any) -> dict[str, Any]:
    """One ``ItemReward`` as the HTTP answer's ``results[i]``."""
    out = {
        "reward": _opt(r, "reward"),
        "components": _components(pb, r.components),
        "errors": dict(sorted(r.errors.items())),
    }
    if r.HasField("copy_paste_penalty"):
        out["copy_paste_penalty"] = r.copy_paste_penalty
    return out


def options(pb: Any, o: Any) -> dict[str, Any]:
    """The ``SubjectConsistencyOptions`` in force as the answer's ``options``."""
    return {
        "clamp_boxes": o.clamp_boxes,
        "alpha": _enum_text(pb, "AlphaRule", "ALPHA_RULE_", o.alpha),
        "matching": _enum_text(pb, "Matching", "MATCHING_", o.matching),
        "detection": _enum_text(pb, "DetectionRule", "DETECTION_RULE_", o.detection),
        "batching": _enum_text(pb, "DetectorBatching", "DETECTOR_BATCHING_", o.batching),
    }


def response(pb: Any, resp: Any) -> dict[str, Any]:
    """A ``RewardResponse`` as the HTTP answer (``results``, ``options``, ``timing``)."""
    t = resp.timing
    return {
        "results": [item_result(pb, r) for r in resp.results],
        "options": options(pb, resp.options),
        "timing": {
            "total_ms": t.total_ms,
            "decode_ms": t.decode_ms,
            "detection_ms": t.detection_ms,
            "embedding_ms": t.embedding_ms,
        },
    }
