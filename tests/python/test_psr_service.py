"""The service's PSR subject-consistency reward against the Python reference.

Starts the real ``psr-reward serve`` binary on the fixture model set, sends every
scene of ``psr_scenes`` to ``POST /v1/reward`` with ``mode: "psr"`` (one request
per scene, then all scenes in one request) and compares each result with
``psr_reference.subject_consistency``: score, reward and every similarity within
1e-4, boxes exactly, detected / fallback flags exactly.

Environment: ``PSR_BINARY`` (default ``target/debug/psr-reward``), ``PSR_MODELS``
(default ``models/fixtures.toml``, else ``models/default.toml``; it must serve the
fixture detector and embedder), ``PSR_ORT_LIBRARY`` (default
``.deps/libonnxruntime.so``), ``PSR_FIXTURES_DIR`` (the models the reference runs).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import psr_mode_scenes as mode_scenes
import psr_reference as ref
import psr_scenes as scenes
import pytest
from service import BINARY, REPO, binary_missing, post_json, running_service

TOLERANCE = 1e-4

pytestmark = [
    binary_missing,
    pytest.mark.skipif(
        not (ref.fixtures_dir() / "detector.onnx").is_file(),
        reason=f"fixture models missing in {ref.fixtures_dir()}: run `make fixtures`",
    ),
]


def manifest_path() -> Path:
    """``$PSR_MODELS``, else the fixture model set, else ``models/default.toml``."""
    given = os.environ.get("PSR_MODELS")
    if given:
        return Path(given).resolve()
    fixtures = REPO / "models" / "fixtures.toml"
    return fixtures if fixtures.is_file() else REPO / "models" / "default.toml"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_manifest(manifest: Path) -> None:
    """Fails unless the manifest serves the models the reference runs.

    The detector and embedder files must be byte-identical to the reference's, and
    the embedder must use the DINO preprocessing (Resize 256 bicubic, CenterCrop
    224, ImageNet statistics) that ``psr_reference.embed_input`` implements.
    """
    with open(manifest, "rb") as f:
        config = tomllib.load(f)
    problems = []
    for section, name in (("detector", "detector.onnx"), ("embedder", "embedder.onnx")):
        entry = config.get(section, {})
        served = (manifest.parent / entry.get("path", "<none>")).resolve()
        mine = ref.fixtures_dir() / name
        if not served.is_file() or _sha256(served) != _sha256(mine):
            problems.append(f"[{section}] path {served} is not the fixture {mine}")
    pre = config.get("embedder", {}).get("preprocess", {})
    want = {"rule": "center_crop", "short_side": 256, "crop": 224}
    if (
        pre.get("resize") != want
        or pre.get("filter") != "bicubic"
        or pre.get("normalize") != "imagenet"
    ):
        problems.append(f"[embedder] preprocess {pre} is not the DINO preprocessing")
    if problems:
        pytest.fail(
            f"model manifest {manifest} does not serve the reference's models "
            f"(set PSR_MODELS=models/fixtures.toml): " + "; ".join(problems)
        )


@pytest.fixture(scope="session")
def service() -> Iterator[str]:
    """Base URL of a ``psr-reward serve`` process on the fixture models."""
    manifest = manifest_path()
    check_manifest(manifest)
    with running_service(manifest) as base:
        yield base


# ----------------------------------------------------------------------- requests


def b64(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def request_item(case: scenes.Case) -> dict[str, Any]:
    """The request item of one scene."""
    return {
        "image": b64(case.image_bytes()),
        "prompt": case.prompt,
        "subjects": [
            {"name": name, "reference": b64(data)}
            for name, data in zip(case.categories, case.reference_bytes(), strict=True)
        ],
    }


@cache
def expected(index: int) -> ref.ConsistencyResult:
    """The reference result of scene ``index``."""
    case = service_cases()[index]
    return ref.subject_consistency(case.image, case.refs, case.categories)


def reward(base: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``POST /v1/reward`` in psr mode; the results, after checking the status."""
    status, body = post_json(
        f"{base}/v1/reward",
        {"items": items, "mode": "psr", "rewards": {"subject_consistency": 1.0}},
    )
    assert status == 200, (
        f"POST /v1/reward answered {status}: {str(body)[:2000]} "
        f"(is {BINARY} built from a tree that serves /v1/reward?)"
    )
    assert isinstance(body, dict) and isinstance(body.get("results"), list), body
    assert len(body["results"]) == len(items), body
    return body["results"]


def _box(box: tuple[int, int, int, int] | None) -> list[int] | None:
    return None if box is None else list(box)


def assert_matches(
    name: str, result: dict[str, Any], want: ref.ConsistencyResult
) -> None:
    """One service result against the reference (see module docstring)."""
    assert result.get("errors") == {}, f"{name}: errors {result.get('errors')}"
    sc = result["components"]["subject_consistency"]
    assert len(sc["subjects"]) == len(want.subjects), f"{name}: {sc['subjects']}"
    for k, (got, exp) in enumerate(zip(sc["subjects"], want.subjects, strict=True)):
        where = f"{name} subject {k} ({exp.name})"
        actual = {
            "name": got["name"],
            "detected": got["detected"],
            "box": got["box"],
            "fallback": got["fallback"],
            "fallback_mode": got.get("fallback_mode"),
            "reference_detected": got["reference_detected"],
            "reference_box": got["reference_box"],
            "reference_fallback": got["reference_fallback"],
            "reference_fallback_mode": got.get("reference_fallback_mode"),
        }
        wanted = {
            "name": exp.name,
            "detected": exp.detected,
            "box": _box(exp.box),
            "fallback": exp.fallback,
            "fallback_mode": exp.fallback_mode,
            "reference_detected": exp.reference_detected,
            "reference_box": _box(exp.reference_box),
            "reference_fallback": exp.reference_fallback,
            "reference_fallback_mode": exp.reference_fallback_mode,
        }
        assert actual == wanted, f"{where}: service {actual} != reference {wanted}"
        assert abs(got["similarity"] - exp.similarity) <= TOLERANCE, (
            f"{where}: similarity {got['similarity']} != reference {exp.similarity}"
        )
        assert isinstance(got["reference"], str), where
        assert re.fullmatch(r"[0-9a-f]+", got["reference"]), (
            f"{where}: reference hash {got['reference']!r} is not hex"
        )
    assert abs(sc["score"] - want.score) <= TOLERANCE, (
        f"{name}: score {sc['score']} != reference {want.score}"
    )
    assert abs(result["reward"] - want.score) <= TOLERANCE, (
        f"{name}: reward {result['reward']} != score {want.score}"
    )


# -------------------------------------------------------------------------- tests


def service_cases() -> list[scenes.Case]:
    """The scenes the service must match: every scene, every reference mode."""
    return [*scenes.cases(), *mode_scenes.cases()]


CASE_IDS = [c.name for c in service_cases()]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_scene_matches_reference(service: str, index: int) -> None:
    case = service_cases()[index]
    (result,) = reward(service, [request_item(case)])
    assert_matches(case.name, result, expected(index))


def test_all_scenes_in_one_request_match_reference(service: str) -> None:
    cases = service_cases()
    results = reward(service, [request_item(c) for c in cases])
    hashes: dict[bytes, str] = {}
    mismatches = []
    for index, (case, result) in enumerate(zip(cases, results, strict=True)):
        try:
            assert_matches(case.name, result, expected(index))
        except AssertionError as e:  # report every item, not just the first
            mismatches.append(str(e).splitlines()[0])
        subjects = result["components"]["subject_consistency"]["subjects"]
        for data, got in zip(case.reference_bytes(), subjects, strict=True):
            hashes.setdefault(data, got["reference"])
            assert hashes[data] == got["reference"], case.name
    # Distinct reference images have distinct hashes.
    assert len(set(hashes.values())) == len(hashes)
    assert not mismatches, "\n".join(mismatches)
