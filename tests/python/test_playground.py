"""The playground at ``/``, in a real browser, against the real binary.

Starts ``psr-reward serve`` on ``models/default.toml`` (the models of ``make run``) with
API keys and a loopback OpenAI-compatible judge, opens ``/`` in Debian's headless
Chromium with no network but loopback, and uses the page as a user would: enters the key,
picks a generated image and two named references from disk, and scores. Asserts that:

* the page and its files load without a key, and the page's calls carry the key;
* the reward, every component and every similarity shown equal those of the same request
  posted to ``/v1/reward`` directly;
* the annotated image and every crop are shown (decoded by the browser, right sizes),
  and the judge's score and reasoning are shown;
* the Service tab lists the models of ``/info`` with their queue depth and batch sizes,
  and the reference cache's hit rate;
* no request of the page leaves 127.0.0.1.

Screenshots of both tabs are kept in ``target/test-artifacts/playground-*.png``.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import headless_chrome, needs_browser, screenshot
from mini_psrbench import running_judge, scene
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from service import REPO, binary_missing, running_service
from test_api_docs import off_machine, requested_urls

MANIFEST = REPO / "models" / "default.toml"
MBV2_ONNX = REPO / ".deps" / "mobilenetv2_embedder.onnx"
KEY = "playground-test-key-0123456789"
PROMPT = "a red square and a blue square JUDGE=7"
WAIT_S = 60

pytestmark = [
    binary_missing,
    needs_browser,
    pytest.mark.skipif(
        not MBV2_ONNX.is_file(), reason="run `make setup` (MobileNetV2)"
    ),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``psr-reward serve`` with API keys and the loopback judge."""
    tmp = tmp_path_factory.mktemp("playground")
    keys = tmp / "keys"
    keys.write_text(KEY + "\n")
    with running_judge() as judge:
        config = tmp / "config.toml"
        config.write_text(
            f'[auth]\nkeys_file = "{keys}"\n\n'
            f'[judge]\nbase_url = "http://127.0.0.1:{judge.server_port}/v1"\n'
            'model = "test-judge"\npolicy = { retries = 0 }\n'
        )
        with running_service(MANIFEST, config) as base:
            yield base


def call(
    url: str, body: dict[str, Any] | None = None, key: str | None = KEY
) -> tuple[int, Any]:
    """GET (or POST ``body``) with the key, never through a proxy; status and JSON/text."""
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {key}"} if key else {}),
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=60) as resp:
            raw = resp.read()
            is_json = resp.headers.get_content_type() == "application/json"
            return int(resp.status), json.loads(raw) if is_json else raw.decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def images(tmp: Path) -> tuple[Path, Path, Path]:
    """The generated image (red and blue squares) and the two references, as PNG files."""
    generated = tmp / "generated.png"
    scene(["red", "blue"]).save(generated)
    red = tmp / "red.png"
    scene(["red"]).crop((50, 50, 350, 350)).save(red)
    blue = tmp / "blue.png"
    scene(["blue"]).crop((50, 50, 350, 350)).save(blue)
    return generated, red, blue


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def shown(driver: webdriver.Chrome, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def fill_form(
    driver: webdriver.Chrome, generated: Path, refs: list[tuple[str, Path]]
) -> None:
    """Picks the files and names the subjects, as a user would."""
    driver.find_element(By.ID, "image-file").send_keys(str(generated))
    driver.find_element(By.ID, "prompt").send_keys(PROMPT)
    for _ in refs[1:]:
        driver.find_element(By.ID, "add-subject").click()
    rows = driver.find_elements(By.CSS_SELECTOR, "#subjects .subject")
    for row, (name, path) in zip(rows, refs, strict=True):
        row.find_element(By.CSS_SELECTOR, ".subject-name").send_keys(name)
        row.find_element(By.CSS_SELECTOR, ".subject-file").send_keys(str(path))


def test_the_page_loads_without_a_key_and_the_api_still_asks_for_one(
    service: str,
) -> None:
    for path in ("/", "/playground/app.js", "/playground/style.css"):
        status, _ = call(service + path, key=None)
        assert status == 200, path
    status, body = call(service + "/info", key=None)
    assert status == 401, body


def test_a_reward_in_the_browser_equals_the_api_and_shows_why(
    service: str, tmp_path: Path
) -> None:
    generated, red, blue = images(tmp_path)
    with headless_chrome(network_log=True) as driver:
        wait = WebDriverWait(driver, WAIT_S)
        driver.get(service + "/")
        key = driver.find_element(By.ID, "api-key")
        key.send_keys(KEY)
        driver.find_element(By.ID, "prompt").click()  # commits the key (change event)
        # The key unlocks /info: the served components get the default weights.
        # (Read in the page: the inputs are re-rendered when /info answers.)
        wait.until(
            lambda d: (
                d.execute_script(
                    "return document.getElementById('weight-aesthetic').value"
                )
                not in ("0", None)
            )
        )
        fill_form(driver, generated, [("red", red), ("blue", blue)])
        driver.find_element(By.ID, "score-button").click()
        wait.until(lambda d: d.find_element(By.ID, "reward-value").text.strip() != "")
        wait.until(
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('#result img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        screenshot(driver, "playground-score.png")

        weights = {
            name: float(
                driver.find_element(By.ID, f"weight-{name}").get_attribute("value") or 0
            )
            for name in (
                "subject_consistency",
                "semantic_alignment",
                "aesthetic",
                "position",
            )
        }
        weights = {k: v for k, v in weights.items() if v > 0}
        status, api = call(
            service + "/v1/reward",
            {
                "items": [
                    {
                        "image": b64(generated),
                        "prompt": PROMPT,
                        "subjects": [
                            {"name": "red", "reference": b64(red)},
                            {"name": "blue", "reference": b64(blue)},
                        ],
                    }
                ],
                "rewards": weights,
                "mode": "psr",
                "explain": True,
                "judge_answer": True,
            },
        )
        assert status == 200, api
        result = api["results"][0]
        assert set(weights) == {
            "subject_consistency",
            "semantic_alignment",
            "aesthetic",
        }

        assert (
            driver.find_element(By.ID, "reward-value").text == f"{result['reward']:.4f}"
        )
        rows = {
            r.get_attribute("data-component"): r.text.split()
            for r in driver.find_elements(By.CSS_SELECTOR, "#component-table tbody tr")
        }
        for name, c in result["components"].items():
            assert rows[name][1] == f"{c['score']:.4f}", (name, rows[name], c)
        sims = shown(driver, "#subject-results .similarity")
        subjects = result["components"]["subject_consistency"]["subjects"]
        assert sims == [f"similarity {s['similarity']:.4f}" for s in subjects]
        assert all(s["detected"] for s in subjects), subjects

        sizes = driver.execute_script(
            "return [...document.querySelectorAll('#result img')]"
            ".map(i => [i.alt, i.naturalWidth, i.naturalHeight])"
        )
        assert sizes[0] == ["annotated generated image", 800, 800]
        crops = [s for s in sizes if s[0].endswith("crop")]
        assert [c[0] for c in crops] == ["generated crop", "reference crop"] * 2
        for _, w, h in crops:
            assert 0 < max(w, h) <= 256

        judged = result["components"]["semantic_alignment"]
        assert judged["raw"] == 7.0, judged
        assert driver.find_element(By.ID, "judge-score").text == "7 / 10"
        assert "[Thought]: ok" in driver.find_element(By.ID, "judge-answer").text

        driver.find_element(By.ID, "tab-service").click()
        wait.until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#models tbody tr")) > 0
        )
        wait.until(lambda d: "hit rate" in d.find_element(By.ID, "cache").text)
        status, info = call(service + "/info")
        listed = {
            r.get_attribute("data-model"): r.text
            for r in driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
        }
        assert set(listed) == {m["name"] for m in info["models"]}
        for m in info["models"]:
            cells = driver.find_elements(
                By.CSS_SELECTOR, f'#models tr[data-model="{m["name"]}"] td'
            )
            assert cells[0].text == m["role"] and cells[3].text == str(
                m["batching"]["max_batch_size"]
            )
            assert cells[4].text.replace(".", "").isdigit(), cells[
                4
            ].text  # queue depth
        # The detector and embedder ran batches: their mean batch size is shown.
        assert all(
            listed[m["name"]].split()[-1] != "–"
            for m in info["models"]
            if m["role"] in ("detector", "embedder")
        ), listed
        screenshot(driver, "playground-service.png")
        assert off_machine(requested_urls(driver)) == []
