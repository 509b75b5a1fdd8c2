"""``psr-reward eval`` as a user runs it: the real binary on the generated mini-PSRBench
of ``mini_psrbench.py`` (seven subsets, known answers, one missing image, one judge answer
the scripts drop), fixture models and the loopback judge.

Checked: the table (in process, and through ``--url`` against ``serve``), a run killed
with SIGKILL and resumed gives the uninterrupted report, two result sets side by side, the
HTML report in headless Chromium (every sample rendered, sortable worst first), and bad
inputs as clear errors naming file and entry.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import headless_chrome, needs_browser, screenshot
from mini_psrbench import Bench, Judge, entry, make_bench, running_judge, write_results
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from service import BINARY, ORT_LIBRARY, REPO, binary_missing, running_service

MANIFEST = REPO / "models" / "fixtures.toml"
RUN_TIMEOUT_S = 300

pytestmark = [
    binary_missing,
    pytest.mark.skipif(
        not (REPO / "tests" / "fixtures" / "generated" / "detector.onnx").is_file(),
        reason="fixture models missing: run `make fixtures`",
    ),
]


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    with running_judge() as server:
        yield server


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, judge: Judge) -> Bench:
    return make_bench(
        tmp_path_factory.mktemp("psrbench"), f"http://127.0.0.1:{judge.server_port}"
    )


# --- running the command ------------------------------------------------------------


def eval_command(bench: Bench, out: Path, *extra: str) -> list[str]:
    return [
        str(BINARY),
        "eval",
        "--data-root",
        str(bench.root),
        "--models",
        str(MANIFEST),
        "--config",
        str(bench.config),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def eval_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PSR_ORT_LIBRARY"] = str(ORT_LIBRARY)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    return env


def run_eval(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        check=False,
        env=eval_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def finished(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def uninterrupted(bench: Bench) -> Path:
    """The report of one whole run (concurrency 4)."""
    out = bench.root / "report-whole"
    finished(
        run_eval(
            eval_command(
                bench, out, "--results", str(bench.results), "--concurrency", "4"
            )
        )
    )
    return out


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


# --- the tests ----------------------------------------------------------------------


def test_the_table_equals_the_hand_computed_values(
    bench: Bench, uninterrupted: Path
) -> None:
    summary = summary_of(uninterrupted)
    (only,) = summary["sets"]
    got = {s["subset"]: s for s in only["subsets"]}
    assert list(got) == list(bench.expected)
    for subset, (
        sc,
        al,
        ae,
        samples,
        scored,
        missing,
        dropped,
    ) in bench.expected.items():
        s = got[subset]
        assert (
            s["samples"],
            s["scored"],
            s["missing_image"],
            s["alignment_dropped"],
        ) == (
            samples,
            scored,
            missing,
            dropped,
        ), subset
        assert s["subject_consistency"]["mean"] == pytest.approx(sc, abs=1e-4), subset
        assert s["alignment"]["mean"] == pytest.approx(al, abs=1e-6), subset
        # Resampling the squares' edges moves the chroma a little.
        assert s["aesthetic"]["mean"] == pytest.approx(ae, abs=5e-3), subset
    overall = only["overall"]
    assert overall["subject_consistency"] == pytest.approx(
        sum(e[0] for e in bench.expected.values()) / 7, abs=1e-4
    )
    assert overall["alignment"] == pytest.approx(0.65, abs=1e-6)
    (problem,) = summary["problems"]
    assert problem["kind"] == "missing image" and "missing.png" in problem["detail"]
    table = (uninterrupted / "table.md").read_text()
    assert "| Action | 0.667 | 0.900 |" in table, table
    assert "missing.png" in table
    csv = (uninterrupted / "table.csv").read_text().splitlines()
    assert len(csv) == 1 + 7 + 1


def journal_lines(out: Path) -> int:
    journal = out / "samples.jsonl"
    if not journal.is_file():
        return 0
    return journal.read_bytes().count(b"\n")


def test_a_killed_run_resumes_to_the_uninterrupted_report(
    bench: Bench, judge: Judge, uninterrupted: Path
) -> None:
    out = bench.root / "report-killed"
    cmd = eval_command(
        bench, out, "--results", str(bench.results), "--concurrency", "1"
    )
    judge.delay_s = 0.3
    try:
        proc = subprocess.Popen(
            cmd, env=eval_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # The header and four samples are on disk: kill it mid-run, with no warning.
        while journal_lines(out) < 5 and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never wrote its journal"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, "the run ended before the kill"
    finally:
        judge.delay_s = 0.0
    kept = journal_lines(out) - 1
    assert 4 <= kept < 14 and not (out / "summary.json").exists()

    stdout = finished(run_eval(cmd))
    reused = re.search(
        r"scored (\d+) samples .*; (\d+) reused from the journal", stdout
    )
    assert reused, stdout
    assert (int(reused.group(1)), int(reused.group(2))) == (14 - kept, kept)
    assert summary_of(out)["sets"] == summary_of(uninterrupted)["sets"]
    for name in ("table.md", "table.csv"):
        assert (out / name).read_text() == (uninterrupted / name).read_text(), name


def test_url_mode_gives_the_in_process_table(bench: Bench, uninterrupted: Path) -> None:
    out = bench.root / "report-url"
    with running_service(MANIFEST, bench.config) as base:
        finished(
            run_eval(
                eval_command(bench, out, "--results", str(bench.results), "--url", base)
            )
        )
    assert summary_of(out)["sets"] == summary_of(uninterrupted)["sets"]
    assert summary_of(out)["components"] == summary_of(uninterrupted)["components"]


def test_two_result_sets_side_by_side(bench: Bench) -> None:
    two = ["red", "blue"]
    yellow = bench.root / "images" / "yellow.png"
    pair = "a red square and a blue square JUDGE=3"
    write_results(
        bench.root / "results-yellow",
        {
            "Action": [entry(pair, two, yellow)],
            "Position": [
                entry("a red square to the left of a blue square", two, yellow)
            ],
        },
    )
    out = bench.root / "report-compare"
    finished(
        run_eval(
            eval_command(
                bench,
                out,
                "--results",
                f"fixture={bench.results}",
                "--results",
                f"yellow={bench.root / 'results-yellow'}",
                "--subsets",
                "action,position",
            )
        )
    )
    sets = {
        s["name"]: {x["subset"]: x for x in s["subsets"]}
        for s in summary_of(out)["sets"]
    }
    assert sets["yellow"]["Action"]["subject_consistency"]["mean"] == pytest.approx(
        1 / 3, abs=1e-4
    )
    assert sets["yellow"]["Action"]["alignment"]["mean"] == pytest.approx(0.3)
    assert sets["yellow"]["Position"]["alignment"]["mean"] == 0.0
    assert sets["fixture"]["Action"]["alignment"]["mean"] == pytest.approx(0.9)
    table = (out / "table.md").read_text()
    assert "| Subset | SC · fixture | SC · yellow | Alignment · fixture |" in table, (
        table
    )
    assert "| Position | 0.667 | 0.333 | 0.500 | 0.000 |" in table, table
    html = (out / "report.html").read_text()
    assert html.count("class=set>") >= 2 * 3


@needs_browser
def test_the_html_report_renders_every_sample_in_chromium(uninterrupted: Path) -> None:
    with headless_chrome() as browser:
        browser.get((uninterrupted / "report.html").as_uri())
        body = browser.find_element(By.TAG_NAME, "body")
        samples = int(body.get_attribute("data-samples") or "0")
        assert samples == 15
        WebDriverWait(browser, 30).until(
            lambda _: body.get_attribute("data-rendered") == "15"
        )
        cards = browser.find_elements(By.CSS_SELECTOR, ".sample")
        assert len(cards) == 15
        assert all(c.get_attribute("data-rendered") == "1" for c in cards)
        for img in browser.find_elements(By.CSS_SELECTOR, ".sample img"):
            size = browser.execute_script(
                "return [arguments[0].naturalWidth, arguments[0].clientWidth]", img
            )
            assert size[0] > 0 and size[1] > 0, img.get_attribute("alt")
        screenshot(browser, "eval-report.png")

        # Worst subject consistency first: the yellow samples (1/3), none of the 1.0s.
        Select(browser.find_element(By.ID, "sort")).select_by_value("sc-0")
        Select(browser.find_element(By.ID, "dir")).select_by_value("asc")
        order = [
            float(c.get_attribute("data-sc-0") or "nan")
            for c in browser.find_elements(By.CSS_SELECTOR, "#samples > .sample")
        ]
        scored = [v for v in order if not math.isnan(v)]
        assert scored == sorted(scored) and scored[0] == pytest.approx(1 / 3, abs=1e-4)
        screenshot(browser, "eval-report-worst-first.png")


def bad_input(bench: Bench, tmp: Path, case: str) -> tuple[list[str], str]:
    """A command with one bad input, and the text its error must contain."""
    results = tmp / "results"
    results.mkdir()
    good = entry("a red square", ["red"], bench.root / "images" / "two.png")
    if case == "missing data root":
        cmd = eval_command(bench, tmp / "out", "--results", str(bench.results))
        cmd[cmd.index("--data-root") + 1] = str(tmp / "nowhere")
        return cmd, f"{tmp / 'nowhere'}: the data root is not a folder"
    if case == "malformed json":
        (results / "Action.json").write_text('[{"instruction": "a red square",')
        return eval_command(
            bench, tmp / "out", "--results", str(results / "Action.json")
        ), "Action.json"
    broken = dict(good)
    if case == "no categories":
        del broken["category1"]
    elif case == "absolute reference":
        broken["input_path"] = [str(bench.root / "subjects" / "red.png")]
    elif case == "reference leaving the root":
        broken["input_path"] = ["../subjects/red.png"]
    (results / "Action.json").write_text(json.dumps([good, broken]))
    return eval_command(
        bench, tmp / "out", "--results", str(results / "Action.json")
    ), "Action.json: entry 1"


@pytest.mark.parametrize(
    "case",
    [
        "missing data root",
        "malformed json",
        "no categories",
        "absolute reference",
        "reference leaving the root",
    ],
)
def test_bad_inputs_are_errors_naming_file_and_entry(
    bench: Bench, tmp_path: Path, case: str
) -> None:
    cmd, names = bad_input(bench, tmp_path, case)
    proc = run_eval(cmd)
    assert proc.returncode == 1, f"{case}: exit {proc.returncode}\n{proc.stderr}"
    assert names in proc.stderr, proc.stderr
    assert "panicked" not in proc.stderr
    assert not (tmp_path / "out" / "summary.json").exists()
