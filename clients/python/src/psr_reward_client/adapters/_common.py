"""Reading subjects, tasks and images out of what trainers pass around."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..request import Subject


def subjects_of(row: Any, *, where: str) -> list[Subject]:
    """A row's subjects: ``subjects`` as ``[{"name", "reference"}]`` / ``[(name, ref)]``, or
    ``subjects`` (or ``subject_names``) as names with a parallel ``references`` list."""
    if not isinstance(row, Mapping):
        raise TypeError(f"{where}: expected a dict with 'subjects', got {type(row).__name__}")
    subs = row.get("subjects")
    if subs is None:
        subs = row.get("subject_names")
    if subs is None:
        raise ValueError(f"{where}: no 'subjects' (list of {{'name', 'reference'}})")
    if isinstance(subs, (str, Mapping)):
        subs = [subs]
    refs = row.get("references")
    if refs is not None and not isinstance(refs, (list, tuple)):
        refs = [refs]
    out: list[Subject] = []
    for k, s in enumerate(subs):
        if isinstance(s, str):
            if refs is None or k >= len(refs):
                raise ValueError(f"{where}: subject {s!r} has no entry in 'references'")
            out.append(Subject(s, refs[k]))
        elif isinstance(s, Mapping):
            out.append(Subject(str(s["name"]), s["reference"]))
        else:
            name, ref = s
            out.append(Subject(str(name), ref))
    return out


def column_rows(kwargs: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """TRL passes dataset columns as ``name=[value per completion]``: one dict per row."""
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for key in ("subjects", "subject_names", "references", "task"):
        values = kwargs.get(key)
        if values is None:
            continue
        if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != n:
            raise ValueError(f"column {key!r}: expected one value per completion ({n})")
        for row, v in zip(rows, values, strict=True):
            row[key] = v
    return rows


def prompt_text(prompt: Any) -> str:
    """A prompt as text: a string, or the text parts of a conversation's user turns."""
    if isinstance(prompt, str):
        return prompt
    parts: list[str] = []
    for msg in prompt if isinstance(prompt, Sequence) else [prompt]:
        if not isinstance(msg, Mapping) or msg.get("role", "user") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, Sequence):
            parts.extend(
                str(c.get("text", ""))
                for c in content
                if isinstance(c, Mapping) and c.get("type") == "text"
            )
    return " ".join(p for p in parts if p)


def completion_image(c: Any, where: str) -> Any:
    """The image of a completion: the object itself, ``{"image": ...}``, or the first image
    part of a conversational completion (``[{"role", "content": [{"type": "image"}]}]``)."""
    if isinstance(c, Mapping):
        if "image" in c:
            return c["image"]
        c = [c]
    if isinstance(c, list) and c and isinstance(c[0], Mapping):
        for msg in c:
            content = msg.get("content")
            if isinstance(content, Sequence) and not isinstance(content, str):
                for part in content:
                    if isinstance(part, Mapping) and part.get("type") == "image":
                        return part.get("image")
        raise ValueError(f"{where}: no image part in the completion")
    return c
