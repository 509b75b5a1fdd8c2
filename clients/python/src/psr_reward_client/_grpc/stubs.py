"""The generated ``psr_reward.v1`` messages and service stub, made from the proto on first use.

Nothing generated is committed: ``grpc_tools.protoc`` (the ``[grpc]`` extra's grpcio-tools)
compiles ``psr_reward/v1/reward.proto`` into a cache folder named after the proto's content
hash and the compiler's version, so an edited proto or a new grpcio-tools compiles afresh and
an unchanged one is compiled once per machine. The proto is found, in order: in
``$PSR_PROTO_DIR``; inside the installed package (wheels carry a copy, see pyproject.toml);
in the repository's ``proto/`` above an editable install. The cache folder is
``$PSR_CLIENT_CACHE_DIR``, else ``$XDG_CACHE_HOME/psr-reward-client``, else
``~/.cache/psr-reward-client``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The proto's path below its include root (its package path: ``psr_reward.v1``).
PROTO = Path("psr_reward/v1/reward.proto")

_lock = threading.Lock()
_loaded: Stubs | None = None


@dataclass(frozen=True)
class Stubs:
    """The generated modules: ``pb`` (``reward_pb2``, the messages) and ``rpc``
    (``reward_pb2_grpc``, ``RewardServiceStub``). Typed ``Any``: they are generated at run
    time, so there is nothing for a type checker to read."""

    pb: Any
    rpc: Any


def proto_root() -> Path:
    """The include root holding :data:`PROTO`."""
    here = Path(__file__).resolve()
    candidates = [Path(os.environ["PSR_PROTO_DIR"])] if os.environ.get("PSR_PROTO_DIR") else []
    candidates.append(here.parent / "proto")
    candidates.extend(p / "proto" for p in here.parents)
    for root in candidates:
        if (root / PROTO).is_file():
            return root
    raise FileNotFoundError(
        f"{PROTO} not found (set PSR_PROTO_DIR to the folder holding psr_reward/v1/)"
    )


def cache_root() -> Path:
    """Where compiled protos are kept."""
    if os.environ.get("PSR_CLIENT_CACHE_DIR"):
        return Path(os.environ["PSR_CLIENT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "psr-reward-client"


def _compile(root: Path, out: Path) -> None:
    """Runs protoc into a fresh folder, then renames it into place (atomic: a concurrent
    process either sees the whole output or compiles its own)."""
    from grpc_tools import protoc

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".protoc-", dir=out.parent))
    try:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{root}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                str(PROTO),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {root / PROTO} (exit {code})")
        for pkg in (tmp / PROTO.parts[0], tmp / PROTO.parent):
            (pkg / "__init__.py").touch()
        try:
            tmp.rename(out)
        except OSError:
            if not (out / PROTO.parent / "reward_pb2.py").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _import(out: Path) -> Stubs:
    """Imports the generated modules (their own imports name the proto package, so the
    folder is on ``sys.path`` while they load)."""
    sys.path.insert(0, str(out))
    try:
        pb = importlib.import_module("psr_reward.v1.reward_pb2")
        rpc = importlib.import_module("psr_reward.v1.reward_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return Stubs(pb, rpc)


def load() -> Stubs:
    """The generated modules, compiled if this proto and compiler have not been yet."""
    global _loaded
    with _lock:
        if _loaded is None:
            tools_version = importlib.metadata.version("grpcio-tools")
            root = proto_root()
            digest = hashlib.sha256((root / PROTO).read_bytes()).hexdigest()[:16]
            out = cache_root() / f"grpc-{digest}-{tools_version}"
            if not (out / PROTO.parent / "reward_pb2_grpc.py").is_file():
                _compile(root, out)
            _loaded = _import(out)
        return _loaded
