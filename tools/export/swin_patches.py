"""Branch-free padding for the Swin backbone, for the duration of an export.

``transformers``' Swin pads only when a size is not a multiple of the patch size, of 2
(patch merging) or of the window, and crops the window padding back only when it padded.
``torch.export`` resolves each such ``if`` for the example input and records it as an
assumption, so an export traced at 800x1024 silently breaks at 800x1067 (a Concat of 66 and
67 columns). Padding by ``(-size) % multiple`` and always cropping is the same computation
(zero padding, then a slice that is a no-op when nothing was padded) without the branches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def _pad_patches(
    self: Any, pixel_values: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    pad_w = (-width) % self.patch_size[1]
    pad_h = (-height) % self.patch_size[0]
    return nn.functional.pad(pixel_values, (0, pad_w, 0, pad_h))


def _pad_merge(
    self: Any, input_feature: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    return nn.functional.pad(input_feature, (0, 0, 0, width % 2, 0, height % 2))


def _pad_window(
    self: Any, hidden_states: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, tuple[int, ...]]:
    pad_right = (-width) % self.window_size
    pad_bottom = (-height) % self.window_size
    hidden_states = nn.functional.pad(
        hidden_states, (0, 0, 0, pad_right, 0, pad_bottom)
    )
    # The caller crops back to (height, width) when pad_values[3] or [5] is positive; saying
    # so unconditionally makes it always crop, which is exact either way.
    return hidden_states, (0, 0, 0, 1, 0, 1)


@contextlib.contextmanager
def branch_free_swin() -> Iterator[None]:
    """Swaps the three ``maybe_pad`` methods of transformers' Swin while the block runs."""
    from transformers.models.swin import modeling_swin as swin

    targets = (
        (swin.SwinPatchEmbeddings, _pad_patches),
        (swin.SwinPatchMerging, _pad_merge),
        (swin.SwinLayer, _pad_window),
    )
    saved = [(cls, cls.maybe_pad) for cls, _ in targets]
    for cls, fn in targets:
        cls.maybe_pad = fn  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, fn in saved:
            cls.maybe_pad = fn  # type: ignore[method-assign]
