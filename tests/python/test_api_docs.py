"""The API documentation at ``/docs``, in a real browser, with no network but loopback.

Starts the real ``psr-reward serve`` binary on ``models/default.toml`` (the models of
``make run``) and opens ``/docs`` in Debian's headless Chromium, driven by
chromedriver, with every host name but 127.0.0.1 unresolvable and a dead proxy for
anything else:

* every operation renders (its path in the page), under the three tags;
* "Execute" on ``POST /v1/reward`` sends the documented example and the page shows a
  200 with the same real reward as posting that example directly;
* no request of the page leaves 127.0.0.1 (Chromium's own network log).

Screenshots (the rendered page, then the executed example) are kept in
``target/test-artifacts/``. ``/openapi.json`` must also pass openapi-spec-validator.

Environment: ``PSR_CHROMIUM`` / ``PSR_CHROMEDRIVER`` (see ``browser.py``),
``PSR_BINARY`` and ``PSR_ORT_LIBRARY`` (see ``service.py``).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser import headless_chrome, needs_browser, screenshot
from openapi_spec_validator import validate
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from service import REPO, binary_missing, post_json, running_service

MANIFEST = REPO / "models" / "default.toml"
MBV2_ONNX = REPO / ".deps" / "mobilenetv2_embedder.onnx"
FIXTURE_DETECTOR = REPO / "tests" / "fixtures" / "generated" / "detector.onnx"
#: Every documented operation, by path.
ROUTES = [
    "/v1/reward",
    "/v1/detect",
    "/v1/embed",
    "/health",
    "/ready",
    "/info",
    "/metrics",
]
TAGS = ["Scoring", "Model stages", "Operations"]
WAIT_S = 30

pytestmark = [
    binary_missing,
    pytest.mark.skipif(
        not (MBV2_ONNX.is_file() and FIXTURE_DETECTOR.is_file()),
        reason="models of models/default.toml missing: run `make setup fixtures`",
    ),
]


@pytest.fixture(scope="module")
def docs_service() -> Iterator[str]:
    """Base URL of ``psr-reward serve`` on the default models of ``make run``."""
    with running_service(MANIFEST) as base:
        yield base


def get_json(url: str) -> Any:
    """``GET url`` as JSON, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium (new profile) with its network log on."""
    with headless_chrome(network_log=True) as driver:
        yield driver


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """URLs of every request the page made since the last call (CDP network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(str(message["params"]["request"]["url"]))
    return urls


def off_machine(urls: list[str]) -> list[str]:
    """The network requests among ``urls`` (not ``chrome:``, ``data:``...) not to 127.0.0.1."""
    network = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")]
    return [u for u in network if urlsplit(u).hostname != "127.0.0.1"]


def operation(driver: webdriver.Chrome, path: str) -> WebElement:
    """The rendered operation block of ``path``."""
    for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        shown = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path")
        if shown.get_attribute("data-path") == path:
            return block
    raise AssertionError(f"operation {path} is not rendered")


def check_reward(body: Any) -> float:
    """The reward of the documented example: both squares found, same colours."""
    result = body["results"][0]
    subjects = result["components"]["subject_consistency"]["subjects"]
    assert [s["name"] for s in subjects] == ["red square", "blue square"]
    for s in subjects:
        assert s["detected"] is True, s
        assert s["similarity"] > 0.99, s
    reward = float(result["reward"])
    assert 0.8 < reward <= 1.0, result
    return reward


def test_openapi_document_validates(docs_service: str) -> None:
    """``/openapi.json`` is valid OpenAPI 3.1 with every operation tagged."""
    doc = get_json(f"{docs_service}/openapi.json")
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert [t["name"] for t in doc["tags"]] == TAGS
    ops = {path: op for path, item in doc["paths"].items() for op in item.values()}
    assert sorted(ops) == sorted(ROUTES)
    for path, op in ops.items():
        assert op["tags"][0] in TAGS and op["summary"], path


@needs_browser
def test_docs_render_offline_and_run_the_reward_example(
    docs_service: str, browser: webdriver.Chrome
) -> None:
    """``/docs`` renders every operation offline; its reward example returns a reward."""
    example = get_json(f"{docs_service}/openapi.json")["paths"]["/v1/reward"]["post"][
        "requestBody"
    ]["content"]["application/json"]["example"]
    status, direct = post_json(f"{docs_service}/v1/reward", example)
    assert status == 200, direct
    expected = check_reward(direct)

    browser.get(f"{docs_service}/docs")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    page = browser.find_element(By.TAG_NAME, "body").text
    for route in ROUTES:
        operation(browser, route)
        assert route in page, route
    tags = browser.find_elements(By.CSS_SELECTOR, ".opblock-tag")
    assert [t.get_attribute("data-tag") for t in tags] == TAGS
    screenshot(browser, "docs.png")

    block = operation(browser, "/v1/reward")
    block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    execute = wait.until(
        lambda _: block.find_element(By.CSS_SELECTOR, "button.execute")
    )
    sent = block.find_element(By.CSS_SELECTOR, "textarea.body-param__text")
    assert json.loads(sent.get_attribute("value") or "") == example
    execute.click()
    shown = wait.until(
        lambda _: block.find_element(
            By.CSS_SELECTOR, ".live-responses-table tr.response .highlight-code pre"
        )
    )
    status_cell = block.find_element(
        By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status"
    )
    assert status_cell.text.strip() == "200"
    browser.execute_script("arguments[0].scrollIntoView()", shown)
    screenshot(browser, "docs-reward-executed.png")
    shown_body = json.loads(shown.get_attribute("textContent") or "")
    assert check_reward(shown_body) == pytest.approx(expected, abs=1e-6)

    urls = requested_urls(browser)
    assert f"{docs_service}/docs/swagger-ui-bundle.js" in urls
    assert f"{docs_service}/v1/reward" in urls
    assert off_machine(urls) == []
