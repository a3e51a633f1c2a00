"""The monitoring files (monitoring/): Prometheus's config and alert rules through promtool, each
alert's unit tests, and Grafana's provisioning and dashboard as Grafana's file provisioning
reads them.

Grafana itself is in none of the registries this machine reaches (Debian, PyPI, npm), so it
never runs here: its files are checked against what provisioning needs (the keys it reads, the
data source the panels name, the paths compose mounts), and every panel's query runs on a real
Prometheus in tests/deploy/test_prometheus_server.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT, load_compose, promtool

pytestmark = pytest.mark.deploy

MONITORING = ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
GRAFANA_DIR = MONITORING / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
#: Panel types every Grafana ships (no plugin to install).
CORE_PANELS = {"timeseries", "stat", "bargauge", "gauge", "table", "text", "row", "barchart"}
GRID_COLUMNS = 24


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def alert_names() -> set[str]:
    groups = _yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def compose_mounts(service: str) -> dict[str, str]:
    """Host path (resolved) -> container path of a service's bind mounts."""
    mounts = {}
    for volume in load_compose()["services"][service]["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[str((ROOT / source).resolve())] = target
    return mounts


# --- Prometheus -------------------------------------------------------------------------------


@pytest.mark.external
def test_the_prometheus_config_and_its_rules_are_valid() -> None:
    result = run_promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alert_names())} rules found" in result.stdout


@pytest.mark.external
def test_every_alert_passes_its_unit_tests() -> None:
    result = run_promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_each_alert_has_tests_where_it_fires_and_where_it_stays_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in _yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == alert_names()
    assert quiet == alert_names()


@pytest.mark.external
def test_a_changed_threshold_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: the latency alert at 1 s instead of 250 ms misses its case."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    rules = copy / "alerts.yml"
    text = rules.read_text()
    assert text.count(") > 0.25") == 1
    rules.write_text(text.replace(") > 0.25", ") > 1"))
    result = run_promtool("test", "rules", str(copy / "tests" / "prediction_latency.yml"))
    assert result.returncode != 0
    assert "RvtPredictionLatencyHigh" in result.stdout + result.stderr


def test_prometheus_finds_every_api_replica_by_the_service_name() -> None:
    """compose's DNS answers a service name with every replica's address: one target each."""
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    api_job = next(job for job in config["scrape_configs"] if job["job_name"] == "api")
    services = load_compose()["services"]
    (lookup,) = api_job["dns_sd_configs"]
    assert lookup["names"] == ["api"] and "api" in services
    assert lookup["type"] == "A"
    command = services["api"]["command"]
    assert lookup["port"] == int(command[command.index("--port") + 1])
    assert api_job.get("metrics_path", "/metrics") == "/metrics"


def test_compose_gives_prometheus_the_repository_config() -> None:
    prometheus = load_compose()["services"]["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"])
    mounts = compose_mounts("prometheus")
    target = mounts[str(PROMETHEUS_DIR)]
    assert flags["--config.file"] == f"{target}/prometheus.yml"
    assert all(volume.endswith(":ro") for volume in prometheus["volumes"] if volume[0] == ".")


# --- Grafana ----------------------------------------------------------------------------------


def datasource() -> dict[str, Any]:
    provisioned = _yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    assert provisioned["apiVersion"] == 1
    (source,) = provisioned["datasources"]
    return dict(source)


def test_grafana_gets_prometheus_as_its_data_source() -> None:
    source = datasource()
    assert source["type"] == "prometheus" and source["access"] == "proxy"
    assert source["name"] and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", source["uid"])
    url = re.fullmatch(r"http://(?P<host>[\w-]+):(?P<port>\d+)", source["url"])
    assert url is not None, source["url"]
    services = load_compose()["services"]
    assert url["host"] in services and services[url["host"]]["image"].startswith("prom/")
    assert url["port"] == "9090"  # Prometheus's listening port, as published by compose
    assert any(port.endswith(":9090") for port in services["prometheus"]["ports"])


def test_compose_mounts_the_provisioning_where_grafana_reads_it() -> None:
    grafana = load_compose()["services"]["grafana"]
    mounts = compose_mounts("grafana")
    assert mounts[str(GRAFANA_DIR / "provisioning")] == "/etc/grafana/provisioning"
    (provider,) = _yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "runtime-v-training.yml")[
        "providers"
    ]
    assert provider["type"] == "file" and provider["name"]
    assert mounts[str(GRAFANA_DIR / "dashboards")] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file()


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every dashboard."""
    return [
        (panel["title"], target["expr"])
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_is_what_grafana_provisioning_loads(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns it
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    uid = datasource()["uid"]
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] in CORE_PANELS, panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) and grid[key] >= 0 for key in "hwxy")
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == uid
    for i, a in enumerate(panels):
        for b in panels[i + 1 :]:
            assert not _overlap(a["gridPos"], b["gridPos"]), (a["title"], b["title"])


def test_the_dashboard_shows_what_an_operator_asks() -> None:
    """Predictions per second and latency, jobs by status, queue depths, the version serving,
    training durations: each from the metric that measures it."""
    queries = " ".join(expr for _, expr in dashboard_queries())
    for needed in (
        "rate(rvt_predictions_total",
        'rvt_http_request_duration_seconds_bucket{method="POST", route="/predict"}',
        "by (status) (rvt_jobs_finished_total",
        "by (queue) (rvt_queue_depth)",
        "by (model_version)",
        "rvt_training_duration_seconds_bucket",
    ):
        assert needed in queries, needed
