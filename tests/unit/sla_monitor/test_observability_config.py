"""deploy/ observability is checked by the real tools: Prometheus config and rules by
promtool (including the alert unit tests), Alertmanager routing by amtool, and the Grafana
provisioning and dashboards for consistency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SERVICES = {
    "intake": "intake:8001",
    "scoring": "scoring:8002",
    "sla-monitor": "sla-monitor:8003",
    "feedback": "feedback:8004",
    "crm-sync": "crm-sync:8005",
}


def load(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} missing: `make system-deps` installs it")
        pytest.skip(f"{name} not installed (Debian package prometheus / prometheus-alertmanager)")
    return found


def run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_prometheus_config_is_valid_and_scrapes_the_five_services() -> None:
    run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    config = load(DEPLOY / "prometheus" / "prometheus.yml")
    scraped = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert scraped == SERVICES


def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    promtool = tool("promtool")
    rules = sorted(str(p) for p in (DEPLOY / "prometheus" / "rules").glob("*.yml"))
    assert rules
    run(promtool, "check", "rules", *rules)
    tests = sorted(str(p) for p in (DEPLOY / "prometheus" / "tests").glob("*_test.yml"))
    assert tests
    assert "SUCCESS" in run(promtool, "test", "rules", *tests)


def test_alertmanager_config_is_valid_and_routes_by_team() -> None:
    path = DEPLOY / "alertmanager" / "alertmanager.yml"
    run(tool("amtool"), "check-config", str(path))
    routes = load(path)["route"]["routes"]
    matched = {m for route in routes for m in route["matchers"]}
    assert {'team="sales"', 'team="sre"'} <= matched


def test_grafana_dashboards_use_the_provisioned_prometheus() -> None:
    sources = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uids = {s["uid"] for s in sources["datasources"] if s["type"] == "prometheus"}
    titles = set()
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        board = json.loads(path.read_text(encoding="utf-8"))
        titles.add(board["title"])
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, f"{path.name}: {panel['title']}"
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    assert {"SLA compliance", "Lead flow", "Service health"} <= titles
