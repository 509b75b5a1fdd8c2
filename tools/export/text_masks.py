"""Grounding DINO's text-mask helper rewritten with ONNX-exportable ops.

``transformers``' ``generate_masks_with_special_tokens_and_transfer_map`` builds the text
self-attention mask and position ids with ``torch.isin`` and ``torch.cummax``/``cummin``,
which the ONNX exporters cannot translate (runtime-notes.md). This module computes the same
two tensors with comparisons and ``amax``/``amin`` over a ``[B, L, L]`` grid (L <= 256), and
``check_equivalence`` proves the equality on many id sequences before every export.
"""

from __future__ import annotations

import torch


def masks_plain_ops(
    input_ids: torch.Tensor, special_tokens: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as ``generate_masks_with_special_tokens_and_transfer_map``: tokens
    sharing the next special token (not in the first or last column) attend to each other,
    position ids count from the previous special token; everything else attends to itself
    only with position 0."""
    seq_len = input_ids.shape[1]
    special = (input_ids.unsqueeze(-1) == special_tokens.view(1, 1, -1)).any(-1)
    idx = torch.arange(seq_len, device=input_ids.device)
    row = idx.view(1, seq_len, 1)
    col = idx.view(1, 1, seq_len)
    special_col = special.unsqueeze(1)
    prev_special = torch.where(
        special_col & (col < row), col, torch.full_like(col, -1)
    ).amax(-1)
    next_special = torch.where(
        special_col & (col >= row), col, torch.full_like(col, seq_len)
    ).amin(-1)
    valid = (
        (next_special != 0) & (next_special != seq_len - 1) & (next_special != seq_len)
    )
    attention = (
        next_special.unsqueeze(2) == next_special.unsqueeze(1)
    ) & valid.unsqueeze(1)
    # Identity as a comparison: ONNX Runtime has no bool EyeLike kernel.
    attention = attention | (row == col)
    position_ids = torch.where(valid, idx.view(1, seq_len) - prev_special - 1, 0)
    return attention, position_ids.clamp(min=0).to(torch.long)


def check_equivalence(
    reference: object, special_tokens: list[int], trials: int = 300
) -> int:
    """Compares ``masks_plain_ops`` with ``reference`` (the transformers helper) on seeded
    random id sequences mixing special, ordinary and padding ids; returns how many were
    compared, raises on the first difference."""
    gen = torch.Generator().manual_seed(1234)
    alphabet = torch.tensor([*special_tokens, 5, 6, 0])
    specials = torch.tensor(special_tokens)
    for _ in range(trials):
        length = int(torch.randint(1, 20, (1,), generator=gen))
        ids = alphabet[torch.randint(0, len(alphabet), (3, length), generator=gen)]
        want_mask, want_pos = reference(ids, specials)  # type: ignore[operator]
        got_mask, got_pos = masks_plain_ops(ids, specials)
        if not (torch.equal(want_mask, got_mask) and torch.equal(want_pos, got_pos)):
            raise AssertionError(f"text masks differ for input ids {ids.tolist()}")
    return trials
