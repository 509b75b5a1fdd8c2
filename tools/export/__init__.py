"""Model export for psr-reward: Hugging Face checkpoints (or the same architectures built
from small configs with seeded random weights) to ONNX with the tensor names the Rust
adapters expect (src/models/), verified against PyTorch, plus a manifest the service loads.

Entry point: ``tools/export_models.py``. Modules: ``tiny_tokenizer`` (WordPiece tokenizer
for the random-config models), ``text_masks`` (Grounding DINO's text-mask helper in plain
ONNX-exportable ops), ``builders`` (the torch modules and their wrappers), ``onnx_io``
(export, fp16 conversion, ONNX-vs-PyTorch checks), ``preprocess`` (the service's image
preprocessing in Pillow), ``reference`` (PyTorch reference outputs for the Rust tests) and
``manifest`` (TOML writer).
"""
