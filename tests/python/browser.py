"""Debian's headless Chromium, driven by chromedriver, for the tests that look at a page.

``headless_chrome()`` starts a fresh browser (new profile) that can reach 127.0.0.1 and
``file:`` URLs and nothing else: every other host name is unresolvable and anything that
would still go out meets a dead proxy. ``screenshot`` keeps what the page looked like in
``target/test-artifacts/``.

Environment: ``PSR_CHROMIUM`` / ``PSR_CHROMEDRIVER`` (default: ``chromium`` and
``chromedriver`` on ``PATH``, installed by ``make setup``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from service import REPO

CHROMIUM = os.environ.get("PSR_CHROMIUM") or shutil.which("chromium") or ""
CHROMEDRIVER = os.environ.get("PSR_CHROMEDRIVER") or shutil.which("chromedriver") or ""
ARTIFACTS = REPO / "target" / "test-artifacts"

#: Skips a test when Chromium or chromedriver is not installed.
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium / chromedriver not found: run `make setup` (Debian packages)",
)


def chromium_flags(user_data_dir: str) -> list[str]:
    """Headless Chromium that can reach 127.0.0.1 and nothing else."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={user_data_dir}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
        "--window-size=1280,1600",
    ]


@contextmanager
def headless_chrome(network_log: bool = False) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium; with ``network_log``, its CDP performance log is on."""
    with (
        tempfile.TemporaryDirectory(prefix="psr-chromium-") as profile,
        pytest.MonkeyPatch.context() as mp,
    ):
        # chromedriver is reached on localhost: never through a proxy from the env.
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            mp.delenv(var, raising=False)
        mp.setenv("SE_AVOID_STATS", "true")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in chromium_flags(profile):
            options.add_argument(flag)
        if network_log:
            options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(
            options=options, service=Service(executable_path=CHROMEDRIVER)
        )
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Saves the viewport as ``target/test-artifacts/<name>``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / name
    assert driver.save_screenshot(str(out)), f"screenshot {out} failed"
    assert out.stat().st_size > 10_000, f"screenshot {out} looks blank"
    return out
