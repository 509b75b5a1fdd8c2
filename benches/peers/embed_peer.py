"""The Python peer of `benches/serving.rs`: a plain FastAPI + Pillow + onnxruntime server.

What a research team writes today: one uvicorn process, each request answered on its own
(decode, preprocess, one `session.run` for that request's images), no batching across
callers. It speaks psr-reward's `POST /v1/embed` contract (`{"images": [b64]}` ->
`{"embeddings": [[float]]}`) so one load generator drives both.

    .venv/bin/python benches/peers/embed_peer.py --manifest M.toml --port 8100
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from preprocess import Preprocess, decode, load_manifest
from pydantic import BaseModel


class EmbedRequest(BaseModel):
    images: list[str]


def build_app(manifest: Path) -> FastAPI:
    """The app serving the manifest's embedder."""
    spec = load_manifest(manifest)["embedder"]
    session = ort.InferenceSession(spec["path"], providers=["CPUExecutionProvider"])
    pre = Preprocess.from_section(spec)
    input_name, output_name = (
        spec.get("input", "pixel_values"),
        spec.get("output", "embeddings"),
    )
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # A plain `def`: FastAPI runs it on its thread pool; onnxruntime releases the GIL.
    @app.post("/v1/embed")
    def embed(req: EmbedRequest) -> dict[str, list[list[float]]]:
        batch = np.stack([pre.tensor(decode(b)) for b in req.images])
        (out,) = session.run([output_name], {input_name: batch})
        return {"embeddings": out.tolist()}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(
        build_app(args.manifest), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
