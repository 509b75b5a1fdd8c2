"""A small WordPiece tokenizer in the ``bert-base-uncased`` layout for random-config models.

Grounding DINO's text-mask helper (``transformers`` ``SPECIAL_TOKENS``) hard-codes the
``bert-base-uncased`` ids of [CLS] 101, [SEP] 102, "." 1012 and "?" 1029, so the tiny
vocabulary keeps those ids (and [PAD] 0, [UNK] 100, [MASK] 103); the other ids hold a few
real words and ``[unusedN]`` fillers. Built with the ``tokenizers`` library and saved as
``tokenizer.json``, which the Rust ``tokenizers`` crate loads unchanged.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

#: bert-base-uncased ids the models rely on.
FIXED_IDS: dict[str, int] = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    ".": 1012,
    "?": 1029,
}
#: Words placed at ids 1..len(WORDS) (captions and prompts of the fixtures use them).
WORDS: tuple[str, ...] = (
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "and",
    "with",
    "photo",
    "cat",
    "dog",
    "crab",
    "red",
    "green",
    "blue",
    "yellow",
    "square",
    "circle",
    "shape",
    "box",
    "left",
    "right",
    "above",
    "below",
    ",",
    "##s",
)
#: Vocabulary size: the largest fixed id plus one.
VOCAB_SIZE = 1030


def vocabulary() -> dict[str, int]:
    """Token -> id for every id in ``0..VOCAB_SIZE``."""
    by_id: dict[int, str] = {i: t for t, i in FIXED_IDS.items()}
    for offset, word in enumerate(WORDS, start=1):
        by_id[offset] = word
    for i in range(VOCAB_SIZE):
        by_id.setdefault(i, f"[unused{i}]")
    return {token: i for i, token in by_id.items()}


def build_tokenizer() -> Tokenizer:
    """The BERT pipeline: lowercasing normaliser, BERT pre-tokeniser, WordPiece, and the
    ``[CLS] $A [SEP]`` template."""
    tok = Tokenizer(
        WordPiece(vocabulary(), unk_token="[UNK]", continuing_subword_prefix="##")
    )
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", FIXED_IDS["[CLS]"]), ("[SEP]", FIXED_IDS["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.add_special_tokens(specials)
    return tok


def write_tokenizer(path: Path) -> Tokenizer:
    """Builds the tokenizer and saves it as ``tokenizer.json`` at ``path``."""
    tok = build_tokenizer()
    tok.save(str(path), pretty=True)
    return tok
