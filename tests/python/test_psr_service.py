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
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import psr_reference as ref
import psr_scenes as scenes
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PSR_BINARY") or REPO / "target" / "debug" / "psr-reward")
ORT_LIBRARY = Path(
    os.environ.get("PSR_ORT_LIBRARY") or REPO / ".deps" / "libonnxruntime.so"
)
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 120.0
TOLERANCE = 1e-4

pytestmark = [
    pytest.mark.skipif(
        not BINARY.is_file(),
        reason=(
            f"psr-reward binary not found at {BINARY}: build it with `cargo build` "
            "(or point PSR_BINARY at one)"
        ),
    ),
    pytest.mark.skipif(
        not (ref.fixtures_dir() / "detector.onnx").is_file(),
        reason=f"fixture models missing in {ref.fixtures_dir()}: run `make fixtures`",
    ),
]

# Local requests must never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> int:
    """Status code of ``GET url`` (0 when the connection fails)."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """``POST url`` with a JSON body; the status and the decoded (or raw) answer."""
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _OPENER.open(req, timeout=REQUEST_TIMEOUT_S) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", errors="replace")
    except OSError as e:  # refused, reset, broken pipe (e.g. 404 before the body)
        return 0, f"connection failed: {e}"


def _log_tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:]


@pytest.fixture(scope="session")
def service() -> Iterator[str]:
    """Base URL of a ``psr-reward serve`` process on the fixture models."""
    manifest = manifest_path()
    check_manifest(manifest)
    port = free_port()
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        PSR_HOST="127.0.0.1",
        PSR_MODELS=str(manifest),
        PSR_ORT_LIBRARY=str(ORT_LIBRARY),
    )
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="psr-service-") as tmp:
        log = Path(tmp) / "service.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BINARY), "serve"],
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while http_get(f"{base}/ready") != 200:
                if proc.poll() is not None:
                    pytest.fail(
                        f"psr-reward exited with {proc.returncode} before /ready:\n"
                        + _log_tail(log)
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"psr-reward not ready after {READY_TIMEOUT_S:.0f} s:\n"
                        + _log_tail(log)
                    )
                time.sleep(0.2)
            yield base
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# ----------------------------------------------------------------------- requests


def b64_png(img: Image.Image) -> str:
    """Base64 of the image's PNG encoding."""
    return base64.b64encode(scenes.png_bytes(img)).decode("ascii")


def request_item(case: scenes.Case) -> dict[str, Any]:
    """The request item of one scene."""
    return {
        "image": base64.b64encode(case.image_bytes()).decode("ascii"),
        "prompt": case.prompt,
        "subjects": [
            {"name": name, "reference": b64_png(img)}
            for name, img in zip(case.categories, case.refs, strict=True)
        ],
    }


@cache
def expected(index: int) -> ref.ConsistencyResult:
    """The reference result of scene ``index``."""
    case = scenes.cases()[index]
    return ref.subject_consistency(case.image, case.refs, case.categories)


def reward(base: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``POST /v1/reward`` in psr mode; the results, after checking the status."""
    status, body = post_json(f"{base}/v1/reward", {"items": items, "mode": "psr"})
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
    assert abs(sc["score"] - want.score) <= TOLERANCE, (
        f"{name}: score {sc['score']} != reference {want.score}"
    )
    assert abs(result["reward"] - want.score) <= TOLERANCE, (
        f"{name}: reward {result['reward']} != score {want.score}"
    )
    assert len(sc["subjects"]) == len(want.subjects), f"{name}: {sc['subjects']}"
    for k, (got, exp) in enumerate(zip(sc["subjects"], want.subjects, strict=True)):
        where = f"{name} subject {k} ({exp.name})"
        actual = {
            "name": got["name"],
            "detected": got["detected"],
            "box": got["box"],
            "fallback": got["fallback"],
            "reference_detected": got["reference_detected"],
            "reference_box": got["reference_box"],
            "reference_fallback": got["reference_fallback"],
        }
        wanted = {
            "name": exp.name,
            "detected": exp.detected,
            "box": _box(exp.box),
            "fallback": exp.fallback,
            "reference_detected": exp.reference_detected,
            "reference_box": _box(exp.reference_box),
            "reference_fallback": exp.reference_fallback,
        }
        assert actual == wanted, f"{where}: service {actual} != reference {wanted}"
        assert abs(got["similarity"] - exp.similarity) <= TOLERANCE, (
            f"{where}: similarity {got['similarity']} != reference {exp.similarity}"
        )
        assert isinstance(got["reference"], str), where
        assert re.fullmatch(r"[0-9a-f]+", got["reference"]), (
            f"{where}: reference hash {got['reference']!r} is not hex"
        )


# -------------------------------------------------------------------------- tests

CASE_IDS = [c.name for c in scenes.cases()]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_scene_matches_reference(service: str, index: int) -> None:
    case = scenes.cases()[index]
    (result,) = reward(service, [request_item(case)])
    assert_matches(case.name, result, expected(index))


def test_all_scenes_in_one_request_match_reference(service: str) -> None:
    cases = scenes.cases()
    results = reward(service, [request_item(c) for c in cases])
    hashes: dict[bytes, str] = {}
    for index, (case, result) in enumerate(zip(cases, results, strict=True)):
        assert_matches(case.name, result, expected(index))
        subjects = result["components"]["subject_consistency"]["subjects"]
        for img, got in zip(case.refs, subjects, strict=True):
            hashes.setdefault(scenes.png_bytes(img), got["reference"])
            assert hashes[scenes.png_bytes(img)] == got["reference"], case.name
    # Distinct reference images have distinct hashes.
    assert len(set(hashes.values())) == len(hashes)
