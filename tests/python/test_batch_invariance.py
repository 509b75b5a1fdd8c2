"""Batch invariance of the real-architecture exports (issue 19), without torch.

Runs ``tools/measure_batch_invariance.py`` on the committed tiny real-architecture exports
(``tests/fixtures/real_arch``: Grounding DINO, DINO ViT-S/16, DINOv2-S, CLIP vision,
a PickScore-style preference model; fp32 and fp16) and checks what ``psr`` mode relies
on: every export that a committed manifest lets the service batch (``max_batch_size``
above 1) gives, at every position of an equal-shape batch, its batch-size-1 result (logits
and embeddings within ``TOLERANCE``, no kept-box decision flipped). Caption padding, which
``psr`` mode never does, is measured and reported, not required to be neutral. The figures
are kept in ``target/test-artifacts/batch-invariance.json``. ``PSR_REAL_ARCH_DIR`` points
the test at another folder of exports (e.g. the full-size ones a user exported).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tomllib
from pathlib import Path

import pytest
from service import REPO

sys.path.insert(0, str(REPO / "tools"))
import measure_batch_invariance as measure

FOLDER = Path(
    os.environ.get("PSR_REAL_ARCH_DIR") or REPO / "tests" / "fixtures" / "real_arch"
)
ARTIFACT = REPO / "target" / "test-artifacts" / "batch-invariance.json"
#: Largest difference from batch size 1 accepted for an equal-shape batch (logits of the
#: detector, vectors of embedders and scorers). ONNX Runtime's CPU kernels compute each
#: batch item alone, so the measured differences are 0; the bound leaves room for other
#: providers' batched GEMMs.
TOLERANCE = 1e-4

pytestmark = pytest.mark.skipif(
    not any(FOLDER.glob("*.onnx")), reason=f"no real-architecture exports in {FOLDER}"
)


def batched_exports() -> dict[str, int]:
    """Export file stem -> max_batch_size, for every model a committed manifest serves."""
    out: dict[str, int] = {}
    for manifest in FOLDER.glob("*.toml"):
        for spec in tomllib.loads(manifest.read_text()).values():
            if isinstance(spec, dict) and "path" in spec:
                size = spec.get("batching", {}).get("max_batch_size", 16)
                out[Path(spec["path"]).stem] = int(size)
    return out


@pytest.fixture(scope="module")
def rows() -> list[measure.Row]:
    rows = measure.measure(FOLDER)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
    return rows


def test_every_family_is_measured(rows: list[measure.Row]) -> None:
    assert {r.family for r in rows} == {"detector", "embedder", "preference"}
    served = batched_exports()
    assert served, "no manifest in the real-architecture folder"
    assert set(served) <= {r.model for r in rows}


def test_batched_exports_equal_batch_size_one_at_every_position(
    rows: list[measure.Row],
) -> None:
    served = batched_exports()
    broken = [
        r
        for r in rows
        if served.get(r.model, 1) > 1
        and r.case.startswith("equal shapes")
        and (r.max_abs_diff > TOLERANCE or r.kept_flipped or r.first_kept_flipped)
    ]
    assert broken == [], "\n".join(f"{r.model}: {r.case}: {r}" for r in broken)


def test_caption_padding_is_measured_for_every_detector(
    rows: list[measure.Row],
) -> None:
    padded = [r for r in rows if r.case == "caption padded to a longer one"]
    detectors = {r.model for r in rows if r.family == "detector"}
    assert {r.model for r in padded} == detectors
    assert all(math.isfinite(r.max_abs_diff) for r in padded)
