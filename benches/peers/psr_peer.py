"""The Python peer of `benches/reward.rs`: the PSR evaluation scripts' subject consistency
(github wang-shulei/PSR, eval/suject-consistency) served by FastAPI, as trainers run it today.

Per request and per subject, at batch size 1 and with no cache: Grounding DINO on the
generated image and on the reference with the caption "<name>." (the first query whose best
token score passes 0.35 gives the box; none -> the whole image), crop both, embed both, cosine;
the reward is the mean over subjects (../shared/docs/psr-reference.md steps 1-8). Models,
tokenizer and preprocessing come from the same manifest psr-reward serves, so both compute the
same reward (the bench checks it). It answers psr-reward's `POST /v1/reward` shape, reduced to
`{"results": [{"reward": float, "similarities": [float]}]}`.

    .venv/bin/python benches/peers/psr_peer.py --manifest models/default.toml --port 8101
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from PIL import Image
from preprocess import Preprocess, decode, load_manifest
from pydantic import BaseModel
from tokenizers import Tokenizer


class Subject(BaseModel):
    name: str
    reference: str


class Item(BaseModel):
    image: str
    subjects: list[Subject]


class RewardRequest(BaseModel):
    items: list[Item]


class PsrScorer:
    """The scripts' computation, one model call per detection and per embedding."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        det, emb = manifest["detector"], manifest["embedder"]
        cpu = ["CPUExecutionProvider"]
        self.detector = ort.InferenceSession(det["path"], providers=cpu)
        self.embedder = ort.InferenceSession(emb["path"], providers=cpu)
        self.tokenizer = Tokenizer.from_file(det["tokenizer"])
        self.det_pre = Preprocess.from_section(det)
        self.emb_pre = Preprocess.from_section(emb)
        self.emb_io = (
            emb.get("input", "pixel_values"),
            emb.get("output", "embeddings"),
        )
        self.threshold = float(det.get("box_threshold", 0.35))

    def box(
        self, img: Image.Image, name: str
    ) -> tuple[float, float, float, float] | None:
        """The first query's box whose max token sigmoid passes the threshold, in pixels."""
        caption = name.strip().lower()
        caption = caption if caption.endswith(".") else caption + "."
        ids = np.asarray([self.tokenizer.encode(caption).ids], dtype=np.int64)
        pixels = self.det_pre.tensor(img)[None]
        logits, boxes = self.detector.run(
            ["logits", "pred_boxes"],
            {
                "pixel_values": pixels,
                "input_ids": ids,
                "token_type_ids": np.zeros_like(ids),
                "attention_mask": np.ones_like(ids),
                "pixel_mask": np.ones(
                    pixels.shape[:1] + pixels.shape[2:], dtype=np.int64
                ),
            },
        )
        scores = 1.0 / (1.0 + np.exp(-logits[0].max(axis=1)))
        kept = np.nonzero(scores > self.threshold)[0]
        if len(kept) == 0:
            return None
        # Scale to pixels, then cxcywh -> xyxy (torchvision's box_convert), in float32.
        width, height = img.size
        cx, cy, w, h = boxes[0, kept[0]] * np.asarray(
            [width, height, width, height], np.float32
        )
        half = np.float32(0.5)
        return (
            float(cx - half * w),
            float(cy - half * h),
            float(cx + half * w),
            float(cy + half * h),
        )

    def crop(self, img: Image.Image, name: str) -> Image.Image:
        """The subject's crop; the whole image when not detected, not RGB, or degenerate."""
        if img.mode != "RGB":
            return img
        box = self.box(img, name)
        if box is None:
            return img
        x0, y0, x1, y1 = (int(v) for v in box)  # the scripts truncate with int()
        return img if x1 <= x0 or y1 <= y0 else img.crop((x0, y0, x1, y1))

    def embed(self, img: Image.Image) -> np.ndarray:
        """The embedder's output for one image, at batch size 1."""
        input_name, output_name = self.emb_io
        (out,) = self.embedder.run(
            [output_name], {input_name: self.emb_pre.tensor(img)[None]}
        )
        return np.asarray(out[0], dtype=np.float64)

    def similarity(
        self, generated: Image.Image, reference: Image.Image, name: str
    ) -> float:
        a = self.embed(self.crop(generated, name))
        b = self.embed(self.crop(reference, name))
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def build_app(manifest: Path) -> FastAPI:
    """The app serving the manifest's detector and embedder."""
    scorer = PsrScorer(load_manifest(manifest))
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/reward")
    def reward(req: RewardRequest) -> dict[str, list[dict[str, Any]]]:
        results = []
        for item in req.items:
            generated = decode(item.image)
            sims = [
                scorer.similarity(generated, decode(s.reference), s.name)
                for s in item.subjects
            ]
            results.append({"reward": float(np.mean(sims)), "similarities": sims})
        return {"results": results}

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
