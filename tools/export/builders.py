"""The torch modules to export: each model (a Hugging Face checkpoint, or the same class
built from a small config with seeded random weights) wrapped so that its ONNX graph has
exactly the input and output names the Rust adapters read (src/models/)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import tiny_tokenizer

#: Hugging Face checkpoints of the real models (``--tiny`` builds the same classes instead).
CHECKPOINTS: dict[str, str] = {
    "grounding-dino": "IDEA-Research/grounding-dino-tiny",
    "dino-vits16": "facebook/dino-vits16",
    "dinov2-small": "facebook/dinov2-small",
    "clip-vision": "openai/clip-vit-base-patch32",
    "pickscore": "yuvalkirstain/PickScore_v1",
}
#: PickScore ships no tokenizer of its own: it uses the one of the CLIP it was tuned from.
PICKSCORE_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
MODEL_NAMES: tuple[str, ...] = tuple(CHECKPOINTS)


class DetectorGraph(nn.Module):
    """Grounding DINO, Hugging Face signature: five inputs -> ``logits``, ``pred_boxes``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(
            pixel_values=pixel_values,
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            pixel_mask=pixel_mask,
        )
        return out.logits, out.pred_boxes


class ClsEmbedding(nn.Module):
    """DINO ViT: the CLS token of ``last_hidden_state`` (already after the final LayerNorm)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state[:, 0]


class TokenStates(nn.Module):
    """DINOv2: the whole ``last_hidden_state`` [B,T,D]; the manifest pools token 0 (``cls``),
    so this export also exercises the adapter's pooling path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state


class ImageEmbeds(nn.Module):
    """CLIP vision tower with its projection: ``image_embeds`` [B,P]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).image_embeds


class PreferenceGraph(nn.Module):
    """CLIP-style preference model (PickScore / HPSv2 layout): ``logits_per_image`` [B,T] =
    logit_scale * cosine(image embeds, text embeds)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        out = self.model(
            pixel_values=pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
        )
        return out.logits_per_image


@dataclass
class Built:
    """One model ready to export: the wrapper, its tensor names, which dimensions are dynamic
    (``torch.export`` dims, keyed by input name), an example input (batch 2: size-1 dims would
    be specialised) and a tokenizer file to ship beside it, if any."""

    key: str
    module: nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, Any]]
    example: tuple[torch.Tensor, ...]
    tokenizer: Path | None = None
    #: Grounding DINO exported at one (height, width): the manifest squashes images to it.
    fixed_size: tuple[int, int] | None = None


def _eager(config: Any) -> Any:
    """Eager attention everywhere: the SDPA path's views do not survive ``torch.export``
    decomposition with symbolic image sizes."""
    config._attn_implementation = "eager"
    for sub in ("backbone_config", "text_config", "vision_config"):
        if getattr(config, sub, None) is not None:
            getattr(config, sub)._attn_implementation = "eager"
    return config


def _tiny_grounding_dino() -> nn.Module:
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        SwinConfig,
    )

    swin = SwinConfig(
        image_size=224,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 2, 2, 4],
        window_size=7,
        out_indices=[2, 3, 4],
    )
    bert = BertConfig(
        vocab_size=tiny_tokenizer.VOCAB_SIZE,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    config = GroundingDinoConfig(
        backbone_config=swin,
        text_config=bert,
        d_model=32,
        encoder_layers=1,
        # `decoder_layers` must be >= 2: with 1 the tied-weights check in post_init fails.
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=900,
    )
    return GroundingDinoForObjectDetection(_eager(config))


def _tiny_vit() -> nn.Module:
    from transformers import ViTConfig, ViTModel

    # dino_vits16's layout (qkv bias, LayerNorm eps 1e-6, GELU, CLS token, 16x16 patches)
    # at hidden size 48 and 2 blocks instead of 384 and 12.
    config = ViTConfig(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=192,
        image_size=224,
        patch_size=16,
        qkv_bias=True,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )
    return ViTModel(_eager(config), add_pooling_layer=False)


def _tiny_dinov2() -> nn.Module:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        mlp_ratio=4,
        patch_size=14,
        image_size=518,
    )
    return Dinov2Model(_eager(config))


def _tiny_clip_configs() -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, CLIPVisionConfig

    vision = CLIPVisionConfig(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=32,
        projection_dim=24,
    )
    text = CLIPTextConfig(
        vocab_size=tiny_tokenizer.VOCAB_SIZE,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=24,
        pad_token_id=0,
        bos_token_id=tiny_tokenizer.FIXED_IDS["[CLS]"],
        # The text embedding is read at the first [SEP] (the tiny tokenizer's end token).
        eos_token_id=tiny_tokenizer.FIXED_IDS["[SEP]"],
    )
    return vision, text


def _tiny_clip_vision() -> nn.Module:
    from transformers import CLIPVisionModelWithProjection

    vision, _ = _tiny_clip_configs()
    return CLIPVisionModelWithProjection(_eager(vision))


def _tiny_clip() -> nn.Module:
    from transformers import CLIPConfig, CLIPModel

    vision, text = _tiny_clip_configs()
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=24
    )
    return CLIPModel(_eager(config))


def _pretrained(key: str) -> nn.Module:
    import transformers

    classes = {
        "grounding-dino": transformers.GroundingDinoForObjectDetection,
        "dino-vits16": transformers.ViTModel,
        "dinov2-small": transformers.Dinov2Model,
        "clip-vision": transformers.CLIPVisionModelWithProjection,
        "pickscore": transformers.CLIPModel,
    }
    kwargs: dict[str, Any] = {"attn_implementation": "eager"}
    if key == "dino-vits16":
        kwargs["add_pooling_layer"] = False
    model: nn.Module = classes[key].from_pretrained(CHECKPOINTS[key], **kwargs)
    return model


TINY: dict[str, Callable[[], nn.Module]] = {
    "grounding-dino": _tiny_grounding_dino,
    "dino-vits16": _tiny_vit,
    "dinov2-small": _tiny_dinov2,
    "clip-vision": _tiny_clip_vision,
    "pickscore": _tiny_clip,
}


def save_tokenizer(key: str, tiny: bool, path: Path) -> Path:
    """Writes the model's ``tokenizer.json`` to ``path``: the checkpoint's own fast
    tokenizer, or the tiny WordPiece one."""
    if tiny:
        tiny_tokenizer.write_tokenizer(path)
        return path
    from transformers import AutoTokenizer

    source = PICKSCORE_TOKENIZER if key == "pickscore" else CHECKPOINTS[key]
    AutoTokenizer.from_pretrained(source).backend_tokenizer.save(str(path))
    return path


def _image_batch(size: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(7)),)


def build(
    key: str,
    tiny: bool,
    seed: int,
    out_dir: Path,
    detector_size: tuple[int, int] | None = None,
) -> Built:
    """The module of ``key`` (one of ``MODEL_NAMES``) in eval mode, wrapped, with its
    example input and dynamic dimensions; ``tiny`` builds it from a small config with
    weights drawn from ``seed``. ``detector_size`` (height, width) fixes Grounding DINO's
    input size (batch and text length stay dynamic); ``None`` keeps it dynamic."""
    from torch.export import Dim

    torch.manual_seed(seed)
    model = (TINY[key]() if tiny else _pretrained(key)).eval()
    batch = Dim("batch", min=1, max=256)
    if key == "grounding-dino":
        # At least 256: smaller images make Swin's last stage no wider than its window, a
        # different code path (window shrinks to the feature map).
        dims: dict[int, Any] = {0: batch}
        size = detector_size or (800, 1024)
        if detector_size is None:
            dims[2] = Dim("height", min=256, max=4096)
            dims[3] = Dim("width", min=256, max=4096)
        text = Dim("text", min=2, max=256)
        ids = torch.tensor([[101, 10, 1012, 102], [101, 12, 1012, 102]])
        example = (
            torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(7)),
            ids,
            torch.zeros_like(ids),
            torch.ones_like(ids),
            torch.ones(2, *size, dtype=torch.long),
        )
        text_dims = {0: batch, 1: text}
        mask_dims = {i - 1 if i > 0 else 0: d for i, d in dims.items()}
        return Built(
            key=key,
            module=DetectorGraph(model).eval(),
            inputs=(
                "pixel_values",
                "input_ids",
                "token_type_ids",
                "attention_mask",
                "pixel_mask",
            ),
            outputs=("logits", "pred_boxes"),
            dynamic={
                "pixel_values": dims,
                "input_ids": text_dims,
                "token_type_ids": text_dims,
                "attention_mask": text_dims,
                "pixel_mask": mask_dims,
            },
            example=example,
            fixed_size=detector_size,
            tokenizer=save_tokenizer(key, tiny, out_dir / "tokenizer.json"),
        )
    if key == "pickscore":
        texts, text_len = Dim("texts", min=1, max=256), Dim("text_len", min=2, max=77)
        ids = torch.tensor([[101, 9, 102, 0], [101, 10, 12, 102]])
        return Built(
            key=key,
            module=PreferenceGraph(model).eval(),
            inputs=("pixel_values", "input_ids", "attention_mask"),
            outputs=("logits_per_image",),
            dynamic={
                "pixel_values": {0: batch},
                "input_ids": {0: texts, 1: text_len},
                "attention_mask": {0: texts, 1: text_len},
            },
            example=(*_image_batch(224), ids, (ids != 0).long()),
            tokenizer=save_tokenizer(key, tiny, out_dir / "clip_tokenizer.json"),
        )
    wrappers: dict[str, tuple[Callable[[nn.Module], nn.Module], str]] = {
        "dino-vits16": (ClsEmbedding, "embeddings"),
        "dinov2-small": (TokenStates, "last_hidden_state"),
        "clip-vision": (ImageEmbeds, "image_embeds"),
    }
    wrap, output = wrappers[key]
    return Built(
        key=key,
        module=wrap(model).eval(),
        inputs=("pixel_values",),
        outputs=(output,),
        dynamic={"pixel_values": {0: batch}},
        example=_image_batch(224),
    )
