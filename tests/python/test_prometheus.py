"""A real Prometheus (Debian's ``prometheus``) scraping a running psr-reward.

The service runs on the fixture models; Prometheus runs on loopback with a 1 s scrape and
evaluation interval and the alert rules of ``deploy/base/prometheusrule.yaml`` (its ``spec``,
a Prometheus rule file). The scrape adds the ``namespace`` and ``pod`` labels a ServiceMonitor
would. Through Prometheus' HTTP API the test checks that:

* ``promtool check rules`` accepts the rules, and every rule loads and evaluates without error;
* the HPA's query, rendered from the prometheus-adapter rule as the adapter renders it,
  returns the pod's queue depth (0: nothing is queued once the requests are answered);
* every query of the Grafana dashboard returns series, and the throughput query shows the
  embed requests the test sent.

Needs ``prometheus`` and ``promtool`` on PATH (``make setup`` installs them).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from service import (
    _OPENER,
    REPO,
    binary_missing,
    free_port,
    http_get,
    post_json,
    running_service,
)

DEPLOY = REPO / "deploy"
MANIFEST = REPO / "models" / "fixtures.toml"
NAMESPACE = "psr-test"
POD = "psr-reward-0"
RATE_INTERVAL = "1m"
WAIT_S = 60.0

pytestmark = binary_missing


def prometheus_tools() -> tuple[str, str]:
    """Paths of ``prometheus`` and ``promtool``; fails the test when they are missing."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus and promtool):
        pytest.fail("prometheus/promtool not on PATH: `make setup` installs them")
    return prometheus, promtool


def rule_file(directory: Path) -> Path:
    """The PrometheusRule's spec written as a plain Prometheus rule file."""
    doc = yaml.safe_load((DEPLOY / "base" / "prometheusrule.yaml").read_text())
    path = directory / "psr-reward.rules.yaml"
    path.write_text(yaml.safe_dump(doc["spec"]))
    return path


def api(base: str, path: str, **params: str) -> Any:
    """``data`` of a successful Prometheus API answer."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    with _OPENER.open(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """psr-reward on the fixture models."""
    with running_service(MANIFEST) as base:
        yield base


@pytest.fixture(scope="module")
def prometheus(service: str) -> Iterator[str]:
    """Prometheus scraping ``service`` every second, with the shipped alert rules."""
    binary, _ = prometheus_tools()
    target = service.removeprefix("http://")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="psr-prometheus-") as tmp:
        root = Path(tmp)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rule_file(root))],
            "scrape_configs": [
                {
                    "job_name": "psr-reward",
                    "metrics_path": "/metrics",
                    "static_configs": [
                        {
                            "targets": [target],
                            "labels": {"namespace": NAMESPACE, "pod": POD},
                        }
                    ],
                }
            ],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = open(root / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + WAIT_S
            while http_get(f"{base}/-/ready") != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(
                        "prometheus did not start:\n"
                        + (root / "prometheus.log").read_text()[-3000:]
                    )
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def png_b64(colour: tuple[int, int, int]) -> str:
    """A small solid PNG, base64."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


@pytest.fixture(scope="module")
def traffic(service: str, prometheus: str) -> None:
    """Embed requests, a 404 and a 422 spread over a few scrapes, until Prometheus has them."""
    deadline = time.monotonic() + WAIT_S
    while not api(prometheus, "/api/v1/query", query=f'up{{pod="{POD}"}} == 1')[
        "result"
    ]:
        assert time.monotonic() < deadline, "Prometheus never scraped the service"
        time.sleep(0.2)
    for i in range(6):
        status, body = post_json(
            f"{service}/v1/embed", {"images": [png_b64((40 * i, 90, 200))]}
        )
        assert status == 200, body
        time.sleep(0.4)
    assert http_get(f"{service}/no-such-route") == 404
    assert post_json(f"{service}/v1/embed", {"images": []})[0] == 422
    wanted = f'psr_reward_requests_total{{route="/v1/embed",status="200",pod="{POD}"}}'
    deadline = time.monotonic() + WAIT_S
    while True:
        result = api(prometheus, "/api/v1/query", query=wanted)["result"]
        if result and float(result[0]["value"][1]) >= 6:
            break
        assert time.monotonic() < deadline, (
            f"Prometheus never saw the requests: {result}"
        )
        time.sleep(0.5)
    time.sleep(3)  # a few more scrapes, so every rate window holds several samples


def test_promtool_accepts_the_alert_rules(tmp_path: Path) -> None:
    _, promtool = prometheus_tools()
    done = subprocess.run(
        [promtool, "check", "rules", str(rule_file(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout, done.stdout


def test_alert_rules_load_and_evaluate(prometheus: str, traffic: None) -> None:
    expected = {
        r["alert"]
        for g in yaml.safe_load((DEPLOY / "base" / "prometheusrule.yaml").read_text())[
            "spec"
        ]["groups"]
        for r in g["rules"]
    }
    deadline = time.monotonic() + WAIT_S
    while True:
        groups = api(prometheus, "/api/v1/rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        if set(rules) == expected and all(r["health"] == "ok" for r in rules.values()):
            break
        assert time.monotonic() < deadline, json.dumps(rules, indent=1)[:4000]
        time.sleep(0.5)
    assert all(r.get("lastError", "") == "" for r in rules.values())
    # The service is ready and nothing failed: no alert is pending or firing.
    assert {r["name"]: r["state"] for r in rules.values()} == dict.fromkeys(
        expected, "inactive"
    )


def adapter_query() -> str:
    """The HPA's query: the adapter rule's metricsQuery rendered as the adapter renders it
    for one pod of the namespace."""
    config = yaml.safe_load((DEPLOY / "prometheus-adapter" / "rules.yaml").read_text())
    (rule,) = config["rules"]
    series = rule["seriesQuery"].split("{", 1)[0]
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{POD}"')
        .replace("<<.GroupBy>>", "pod")
    )


def test_hpa_query_returns_the_pod_queue_depth(prometheus: str, traffic: None) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus-adapter" / "rules.yaml").read_text())
    series = api(
        prometheus, "/api/v1/series", **{"match[]": config["rules"][0]["seriesQuery"]}
    )
    assert series, "the adapter's seriesQuery matches nothing"
    assert all(s["namespace"] == NAMESPACE and s["pod"] == POD for s in series), series
    result = api(prometheus, "/api/v1/query", query=adapter_query())["result"]
    assert [r["metric"] for r in result] == [{"pod": POD}], result
    assert float(result[0]["value"][1]) == 0.0


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard target, with Grafana's variables filled in."""
    dash = json.loads((DEPLOY / "grafana" / "psr-reward.json").read_text())
    return [
        (
            p["title"],
            t["expr"]
            .replace("$__rate_interval", RATE_INTERVAL)
            .replace("$namespace", NAMESPACE),
        )
        for p in dash["panels"]
        for t in p["targets"]
    ]


def test_every_dashboard_query_returns_series(prometheus: str, traffic: None) -> None:
    empty = [
        (title, expr)
        for title, expr in dashboard_queries()
        if not api(prometheus, "/api/v1/query", query=expr)["result"]
    ]
    assert not empty, empty


def test_dashboard_throughput_shows_the_requests(
    prometheus: str, traffic: None
) -> None:
    (expr,) = [e for t, e in dashboard_queries() if t.startswith("Throughput")]
    result = api(prometheus, "/api/v1/query", query=expr)["result"]
    rates = {r["metric"].get("route"): float(r["value"][1]) for r in result}
    assert rates.get("/v1/embed", 0.0) > 0.0, rates
