"""Prints, per reference mode, how far the service's ``psr`` similarities are from Pillow's.

Usage (from the repository root, the binary built, fixtures generated)::

    PSR_FIXTURES_DIR=tests/fixtures/generated PSR_MODELS=models/fixtures.toml \\
        python tests/python/measure_psr_modes.py

Sends every scene of ``psr_scenes`` and ``psr_mode_scenes`` to ``POST /v1/reward``
(``mode: "psr"``) and prints a Markdown table of the largest absolute difference between
the service's and the Python reference's similarities per scene, with the reference
image's mode: the figures behind the README's "Known differences".
"""

from __future__ import annotations

import psr_reference as ref
import test_psr_service as t
from service import running_service


def main() -> None:
    """Measure and print the table."""
    manifest = t.manifest_path()
    t.check_manifest(manifest)
    cases = t.service_cases()
    with running_service(manifest) as base:
        results = t.reward(base, [t.request_item(c) for c in cases])
    print("| scene | reference modes | largest similarity difference |")
    print("|---|---|---|")
    for case, result in zip(cases, results, strict=True):
        want = ref.subject_consistency(case.image, case.refs, case.categories)
        got = result["components"]["subject_consistency"]["subjects"]
        diff = max(
            abs(g["similarity"] - w.similarity)
            for g, w in zip(got, want.subjects, strict=True)
        )
        modes = ", ".join(r.mode for r in case.refs)
        print(f"| {case.name} | {modes} | {diff:.2g} |")


if __name__ == "__main__":
    main()
