"""The images' build steps, run on this machine (no registry is reachable to build images).

``docker/check-runtime.sh`` lays out the runtime image's files in a temporary root with the
same scripts the Dockerfiles run (ONNX Runtime from the pinned wheel, the in-image config, the
HEALTHCHECK script), mounts the fixture models as the ``/models`` volume, starts the already
built binary from that layout with a clean environment, and probes it with the image's own
health check (``/health``, then ``/ready``; a 404 route must fail it), then stops it with
SIGTERM and expects a clean exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service import BINARY, REPO, binary_missing

FIXTURES = Path(
    os.environ.get("PSR_FIXTURES_DIR") or REPO / "tests" / "fixtures" / "generated"
)


@binary_missing
def test_runtime_layout_starts_and_passes_its_healthcheck() -> None:
    env = dict(os.environ)
    env["PIP"] = str(Path(sys.executable).parent / "pip")
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        [
            str(REPO / "docker" / "check-runtime.sh"),
            str(BINARY),
            str(FIXTURES),
            str(REPO / "models" / "fixtures.toml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    pinned = next(
        line.split("==", 1)[1].strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.startswith("onnxruntime==")
    )
    assert f"libonnxruntime.so.{pinned}" in done.stdout, done.stdout
