"""A real Prometheus server (Debian's binary, extracted by .ci/run into .cache/prometheus) with
the repository's config and alert rules, scraping a real stack on this machine (a private Redis,
real workers, the API on a free loopback port): the predictions counter and the version serving
come back through its HTTP API, every dashboard query answers, every alert rule evaluates
without error, and losing the prediction worker makes its alert pending.

The config is the repository's with two changes only: the API is a static target (compose's
DNS is not here), and scrapes and evaluations run every second, so the test waits seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from cli.stack import LocalStack, free_port
from tests.conftest import SEVERE_CASE
from tests.deploy.conftest import ROOT, require_tool
from tests.deploy.test_monitoring import PROMETHEUS_DIR, alert_names, dashboard_queries
from tests.integration.conftest import new_stack, start_or_fail, train_and_wait, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.deploy, pytest.mark.external]

#: Where .ci/run extracts the server from Debian's prometheus package (git-ignored).
PROMETHEUS_CACHE = ROOT / ".cache" / "prometheus" / "prometheus"


def prometheus_binary() -> str:
    found = str(PROMETHEUS_CACHE) if os.access(PROMETHEUS_CACHE, os.X_OK) else None
    return require_tool(
        "prometheus",
        found or shutil.which("prometheus"),
        "bash .ci/run extracts it from Debian's prometheus package into .cache/prometheus",
    )


def local_config(api_target: str) -> dict[str, Any]:
    """The repository's config, pointed at ``api_target`` and evaluated every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        if job["job_name"] == "api":
            del job["dns_sd_configs"]
            job["static_configs"] = [{"targets": [api_target]}]
    return config


@dataclass
class Monitored:
    stack: LocalStack
    prometheus: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=5)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def rules(self) -> dict[str, dict[str, Any]]:
        groups = httpx.get(f"{self.prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return {rule["name"]: rule for group in groups for rule in group["rules"]}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    binary = prometheus_binary()
    tmp = tmp_path_factory.mktemp("prometheus")
    stack = start_or_fail(new_stack(tmp / "stack"))
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config(f"127.0.0.1:{stack.port}")))
    address = f"127.0.0.1:{free_port()}"
    log = (tmp / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Monitored(stack, f"http://{address}")
    try:

        def ready() -> bool:
            assert server.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            try:
                return httpx.get(f"{running.prometheus}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, interval=0.2, message="Prometheus to be ready")
        yield running
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(5)
        log.close()
        stack.stop()


def test_prometheus_reads_the_predictions_and_the_version_serving(monitored: Monitored) -> None:
    wait_until(
        lambda: monitored.query('up{job="api"} == 1'), 30, interval=0.3, message="a first scrape"
    )
    with httpx.Client(base_url=monitored.stack.base_url, timeout=10) as http:
        refused = http.post("/predict", json={"records": [SEVERE_CASE]})
        assert refused.status_code == 503  # no model yet: an HTTP error for the dashboard
        job = train_and_wait(http)
        assert job["status"] == "succeeded", job
        version = job["result"]["version"]
        total = 0
        for batch in (3, 4):  # two batches a scrape apart, so rates have two samples
            for _ in range(batch):
                answer = http.post("/predict", json={"records": [SEVERE_CASE] * 5})
                assert answer.status_code == 200, answer.text
            total += batch * 5
            wait_until(
                lambda t=total: monitored.query(f"rvt_predictions_total == {t}"),
                30,
                interval=0.3,
                message=f"the predictions counter at {total}",
            )
    (counter,) = monitored.query("rvt_predictions_total")
    assert counter["metric"]["model_version"] == version and float(counter["value"][1]) == total
    (serving,) = monitored.query(
        "topk(1, sum by (model_version) (rate(rvt_predictions_total[2m])))"
    )
    assert serving["metric"] == {"model_version": version} and float(serving["value"][1]) > 0


def test_every_dashboard_query_answers_with_data(monitored: Monitored) -> None:
    """Valid PromQL, on metric names and labels the API really exposes (run after the
    predictions and the training of the test above)."""
    empty = [(title, expr) for title, expr in dashboard_queries() if not monitored.query(expr)]
    assert not empty, empty


def test_every_alert_rule_evaluates_on_the_real_metrics(monitored: Monitored) -> None:
    rules = wait_until(
        lambda: (
            (r := monitored.rules())
            and all(rule.get("lastEvaluation") for rule in r.values())
            and r
        ),
        30,
        interval=0.3,
        message="every rule evaluated once",
    )
    assert set(rules) == alert_names()
    assert {name: rule["health"] for name, rule in rules.items()} == dict.fromkeys(rules, "ok")
    assert {name: rule["state"] for name, rule in rules.items()} == dict.fromkeys(rules, "inactive")


def test_losing_the_prediction_worker_makes_its_alert_pending(monitored: Monitored) -> None:
    """The alert's expression matches the labels the API really exposes: with the worker gone
    (and its presence expired), it is pending, waiting out its ``for``."""
    monitored.stack.processes["worker-prediction"].stop()
    wait_until(
        lambda: monitored.rules()["RvtNoPredictionWorker"]["state"] == "pending",
        30,
        interval=0.3,
        message="RvtNoPredictionWorker pending",
    )
    assert monitored.rules()["RvtRedisDown"]["state"] == "inactive"
