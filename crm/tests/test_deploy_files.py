"""The files under deploy/ that operators copy: Kubernetes manifests and
Prometheus rules parse, say what the project serves, and pass promtool."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from crm.tests.processes import REPO, needs_programs

DEPLOY = REPO / "deploy"
METRICS_MODULE = REPO / "crm" / "observability" / "metrics.py"
#: The README's command for serving the API.
GUNICORN = ".venv/bin/gunicorn -c python:crm.gunicorn_conf crm.wsgi"


def yaml_files() -> list[Path]:
    return sorted(
        path for path in DEPLOY.rglob("*") if path.suffix in (".yaml", ".yml") and path.is_file()
    )


def test_there_are_kubernetes_and_prometheus_files():
    folders = {path.parent.name for path in yaml_files()}
    assert {"kubernetes", "prometheus"} <= folders


@pytest.mark.parametrize("path", yaml_files(), ids=lambda path: str(path.relative_to(DEPLOY)))
def test_every_file_parses(path):
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
    assert documents, f"{path} holds no document"


def kubernetes_containers() -> list[dict]:
    containers = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(document), path
            if document["kind"] == "Deployment":
                spec = document["spec"]
                labels = spec["template"]["metadata"]["labels"]
                assert spec["selector"]["matchLabels"].items() <= labels.items()
                containers += spec["template"]["spec"]["containers"]
    return containers


def test_the_pods_run_the_readmes_gunicorn_and_probe_its_port():
    (container,) = kubernetes_containers()
    assert shlex.join(container["command"]) == GUNICORN
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["CRM_ENV"] == "production"
    # Behind one proxy that sets X-Forwarded-For (the ingress): declared, or
    # every client shares one address and per-address limits cannot hold.
    assert env["CRM_NUM_PROXIES"] == "1"
    port = int(env["CRM_BIND"].rsplit(":", 1)[1])
    ports = {item["name"]: item["containerPort"] for item in container["ports"]}
    probes = {name: container[name]["httpGet"] for name in ("livenessProbe", "readinessProbe")}
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe in probes.values():
        assert ports.get(probe["port"], probe["port"]) == port, "the probes reach gunicorn"


@pytest.mark.django_db
def test_the_probed_paths_answer(client):
    for path in ("/healthz", "/readyz"):
        assert client.get(path).status_code == 200, path


def alert_rules() -> list[dict]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "crm-rules.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_alerts_use_metrics_the_project_exports():
    defined = set(re.findall(r'"(crm_\w+)"', METRICS_MODULE.read_text()))
    assert defined
    rules = alert_rules()
    assert rules
    for rule in rules:
        used = {
            re.sub(r"_(bucket|count|sum)$", "", name)
            for name in re.findall(r"\bcrm_\w+", rule["expr"])
        }
        assert used, rule["alert"]
        assert used <= defined, f"{rule['alert']} uses {sorted(used - defined)}"


def test_the_scrape_configuration_loads_the_rules():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for name in config["rule_files"]:
        assert (DEPLOY / "prometheus" / name).is_file(), name


@needs_programs("promtool")
@pytest.mark.parametrize(
    ("check", "name"), [("rules", "crm-rules.yml"), ("config", "prometheus.yml")]
)
def test_promtool_accepts_the_prometheus_files(check, name):
    result = subprocess.run(
        ["promtool", "check", check, name],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
