"""``docker-compose up`` for real: the project's Dockerfile and docker-compose.yml, unchanged, on
a real Docker engine (Debian's dockerd, started here if none runs), checked as a user would
through the published port.

The engine cannot pull, so :mod:`tests.deploy.standin` first builds stand-ins of the images
the files name, from Debian's packages, tagged with exactly those names (reused while their
recipe is unchanged). The test's own settings (fast worker presence, a short job lease, a
small default dataset, a pause per chunk so a training can be killed in the middle) come in an
override file. The tests share one stack, in this order: up and ready; a training and
predictions; the image; ``docker stop``; scale; a promotion; a training container killed; Redis
restarted; the monitoring profile; down. Each sets up what it needs itself.

Timings and counts are printed at the end (``-s`` not needed) and written to
``artifacts/compose/report.json``; the containers' logs to ``artifacts/compose/logs.txt``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.stack import free_port
from shared.data.synthetic import write_synthetic_csv
from tests.conftest import SEVERE_CASE, refuse_without_services
from tests.deploy.compose import ComposeProject
from tests.deploy.conftest import ROOT, docker_compose, load_compose, named_images
from tests.deploy.engine import Engine, EngineUnavailable, find_or_start
from tests.deploy.standin.build import Built, ToolMissing, ensure
from tests.integration.conftest import wait_until

#: The first test also waits for the images: a cold build (debootstrap, pip) takes minutes.
pytestmark = [
    pytest.mark.docker,
    pytest.mark.deploy,
    pytest.mark.external,
    pytest.mark.timeout(1200),
]

ARTIFACTS = ROOT / "artifacts" / "compose"
APP_IMAGE = "runtime-v-training:local"
LEASE_SECONDS = 10
#: Given to the api and both workers on top of the compose file's environment.
TEST_SETTINGS = {
    "WORKER_ANNOUNCE_SECONDS": "0.5",
    "WORKER_PRESENCE_TTL_SECONDS": "3",
    "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    "DEFAULT_DATASET_ROWS": "20000",
    "CHUNK_ROWS": "5000",
    "TEST_TRAINING_DELAY_SECONDS": "0.3",
}
#: 40 chunks of 5,000 rows with a 0.3 s pause each: 12 s or more, however fast the machine.
SLOW_ROWS = 200_000
SHELLS = ("sh", "dash", "bash", "ash")
BUILD_TOOLS = ("gcc", "cc", "g++", "c++", "make", "ld")

#: What the report prints: step -> seconds, and counts.
REPORT: dict[str, Any] = {"timings": {}, "counts": {}, "faults": []}


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true: .ci/run must make it available")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    refuse_without_services("a Docker engine", "docker")
    docker_compose()  # skip or fail here, before any engine is started
    try:
        running = find_or_start()
    except EngineUnavailable as exc:
        unavailable(f"no Docker engine: {exc}")
    REPORT["timings"].update(running.timings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def stand_ins(engine: Engine) -> dict[str, str]:
    """Every image the files name, built or reused; returns the ones left out, with why."""
    started = time.monotonic()
    try:
        done, skipped = ensure(engine, named_images())
    except ToolMissing as exc:
        unavailable(f"cannot build the stand-in images: {exc}")
    REPORT["timings"]["stand-in images"] = time.monotonic() - started
    REPORT["images"] = [_describe(built) for built in done]
    return skipped


def _describe(built: Built) -> str:
    return f"{built.tag}: {built.how} in {built.seconds:.1f} s, {built.size_bytes / 1e6:.0f} MB"


@pytest.fixture(scope="module")
def project(
    engine: Engine, stand_ins: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeProject]:
    ports = {name: free_port() for name in ("API", "PROMETHEUS", "GRAFANA", "FLOWER")}
    app = ("api", "worker-training", "worker-prediction")
    running = ComposeProject(
        engine,
        docker_compose(),
        f"rvttest{uuid.uuid4().hex[:8]}",
        tmp_path_factory.mktemp("compose"),
        variables={
            "API_PORT": f"127.0.0.1:{ports['API']}",
            **{f"{name}_PORT": str(port) for name, port in ports.items() if name != "API"},
        },
        settings={name: TEST_SETTINGS for name in app},
        ports=ports,
    )
    try:
        previous = _image_id(engine, APP_IMAGE)
        running.timed("app image build (docker-compose build)", "build", "api", timeout=900)
        if previous not in (None, _image_id(engine, APP_IMAGE)):
            engine.run("rmi", previous, check=False)  # the replaced build, now untagged
        started = time.monotonic()
        running.timed("docker-compose up -d", "up", "-d")
        with httpx.Client(base_url=running.base_url, timeout=5) as http:
            wait_until(lambda: _ready(http), 180, interval=0.2, message="GET /readyz 200")
        REPORT["timings"]["up to /readyz 200"] = time.monotonic() - started
        yield running
    finally:
        _save_logs(running)
        try:
            running.down()
        finally:
            REPORT["timings"].update(running.timings)
            _write_report()


def _image_id(engine: Engine, tag: str) -> str | None:
    result = engine.run("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _save_logs(project: ComposeProject) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    result = project.run("--profile", "monitoring", "logs", "--no-color", check=False)
    (ARTIFACTS / "logs.txt").write_text(result.stdout + result.stderr)


def _write_report() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report.json").write_text(json.dumps(REPORT, indent=2) + "\n")


@pytest.fixture(scope="module")
def http(project: ComposeProject) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=project.base_url, timeout=15) as client:
        yield client


# --- helpers ----------------------------------------------------------------------------------


def train(
    http: httpx.Client, body: dict[str, Any] | None = None, timeout: float = 120
) -> dict[str, Any]:
    response = http.post("/train", json=body or {})
    assert response.status_code == 202, response.text
    return wait_for_job(http, response.json()["job_id"], timeout)


def wait_for_job(http: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = http.get(f"/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(finished, timeout, interval=0.2, message=f"job {job_id} to end")


def production(http: httpx.Client) -> str:
    current = http.get("/models").json()["production"]
    if current is None:
        job = train(http)
        assert job["status"] == "succeeded" and job["result"]["promoted"], job
        current = job["result"]["version"]
    return str(current)


def predict(http: httpx.Client, records: int = 1) -> httpx.Response:
    return http.post("/predict", json={"records": [SEVERE_CASE] * records})


def readiness(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/readyz")
    return {"status": response.status_code, **response.json()}


def wait_healthy(project: ComposeProject, container: str, timeout: float = 120) -> None:
    def healthy() -> bool:
        return bool(project.inspect(container)["State"]["Health"]["Status"] == "healthy")

    try:
        wait_until(healthy, timeout, interval=1, message=f"container {container} healthy")
    except pytest.fail.Exception:
        health = project.inspect(container)["State"]["Health"]
        pytest.fail(
            f"{container} not healthy: {health['Status']}, last probes {health['Log'][-3:]}"
        )


def scale_predictions(project: ComposeProject, http: httpx.Client, replicas: int) -> None:
    """Only this service (``--no-deps``): an ``up`` of the whole project would also wait on the
    health of every dependency again."""
    project.timed(
        f"scale worker-prediction={replicas}",
        *("up", "-d", "--no-deps", "--scale", f"worker-prediction={replicas}", "worker-prediction"),
    )
    wait_until(
        lambda: len(readiness(http)["checks"]["prediction_workers"]["workers"]) == replicas,
        120,
        interval=0.3,
        message=f"{replicas} prediction workers in /readyz",
    )


# --- the tests, in the order a user meets them -----------------------------------------------


def test_up_brings_a_ready_stack(project: ComposeProject, http: httpx.Client) -> None:
    ready = readiness(http)
    assert ready["status"] == 200, ready
    assert len(ready["checks"]["training_workers"]["workers"]) == 1
    assert len(ready["checks"]["prediction_workers"]["workers"]) == 1
    states = {
        project.inspect(c)["Config"]["Labels"]["com.docker.compose.service"]: project.inspect(c)[
            "State"
        ]
        for c in project.containers(all_states=True)
    }
    running = {service for service, state in states.items() if state["Running"]}
    assert running == {"redis", "s3", "api", "worker-training", "worker-prediction"}
    # the one-shot that made the bucket ran, and ended well
    assert states["storage-init"]["ExitCode"] == 0 and not states["storage-init"]["Running"]


def test_a_training_and_predictions_through_the_published_port(http: httpx.Client) -> None:
    started = time.monotonic()
    job = train(http)
    REPORT["timings"]["first training (submit to succeeded)"] = time.monotonic() - started
    assert job["status"] == "succeeded", job
    version = production(http)
    answers = [predict(http, size) for size in (1, 10, 100)]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert {a.json()["model_version"] for a in answers} == {version}
    assert [len(a.json()["predictions"]) for a in answers] == [1, 10, 100]


def test_the_image_runs_as_a_user_and_the_app_mounts_no_volume(project: ComposeProject) -> None:
    """Models and datasets are in the s3 service: the app's containers share no volume, and
    their non-root user can write what it needs (its temporary folder)."""
    image = project.inspect(APP_IMAGE, "image")
    REPORT["counts"]["app image size (MB)"] = round(image["Size"] / 1e6, 1)
    assert image["Config"]["User"] not in ("", "root", "0")
    for service in ("api", "worker-training", "worker-prediction"):
        container = project.one(service)
        uid = project.engine.run("exec", container, "id", "-u").stdout.strip()
        assert uid != "0", service
        assert project.inspect(container)["Mounts"] == [], service
        probe = f"/tmp/.write-probe-{uuid.uuid4().hex}"
        project.engine.run("exec", container, "touch", probe)
        project.engine.run("exec", container, "rm", probe)


def test_signals_reach_the_process_no_shell_is_pid_1(project: ComposeProject) -> None:
    for service in ("api", "worker-training", "worker-prediction"):
        container = project.one(service)
        exe = project.engine.run("exec", container, "readlink", "/proc/1/exe").stdout.strip()
        assert Path(exe).name.split(".")[0] not in SHELLS and "python" in Path(exe).name, (
            service,
            exe,
        )


def test_the_image_healthcheck_passes_in_the_running_container(project: ComposeProject) -> None:
    image = project.inspect(APP_IMAGE, "image")
    compose_api = load_compose()["services"]["api"]["healthcheck"]["test"]
    assert image["Config"]["Healthcheck"]["Test"] == compose_api  # the same probe, both ways
    wait_healthy(project, project.one("api"))
    for service in ("worker-training", "worker-prediction", "redis"):
        state = project.inspect(project.one(service))["State"]
        assert state["Health"]["Status"] == "healthy", (service, state["Health"])


def test_no_build_tools_or_caches_in_the_image(project: ComposeProject) -> None:
    """In a fresh container of the image: what the final layers hold, not what a run wrote."""
    script = (
        "import glob, json, os, shutil\n"
        f"tools = [t for t in {BUILD_TOOLS!r} if shutil.which(t)]\n"
        "leftovers = [p for p in ('/root/.cache', os.path.expanduser('~/.cache'), '/app/build')"
        " if os.path.exists(p)]\n"
        "leftovers += glob.glob('/app/*.egg-info') + glob.glob('/app/**/__pycache__',"
        " recursive=True)\n"
        "print(json.dumps({'tools': tools, 'leftovers': leftovers}))\n"
    )
    result = project.engine.run("run", "--rm", "--entrypoint", "python", APP_IMAGE, "-c", script)
    found = json.loads(result.stdout)
    assert found == {"tools": [], "leftovers": []}, found


def test_docker_stop_ends_each_process_within_its_grace_period(
    project: ComposeProject, http: httpx.Client
) -> None:
    """Exit code 137 would mean the engine had to SIGKILL it after the grace period."""
    grace = 20
    for service in ("api", "worker-prediction"):
        container = project.one(service)
        started = time.monotonic()
        project.engine.run("stop", "-t", str(grace), container, timeout=grace + 30)
        elapsed = time.monotonic() - started
        state = project.inspect(container)["State"]
        REPORT["timings"][f"docker stop {service}"] = elapsed
        assert state["ExitCode"] != 137 and not state["OOMKilled"], (service, state)
        assert elapsed < grace, (service, elapsed)
        project.engine.run("start", container)
        wait_healthy(project, container)
    wait_until(lambda: _ready(http), 120, interval=0.3, message="/readyz 200 after the restarts")


def test_scale_prediction_workers_to_three(project: ComposeProject, http: httpx.Client) -> None:
    scale_predictions(project, http, 3)
    assert len(project.containers("worker-prediction")) == 3
    answers = [predict(http).status_code for _ in range(30)]
    assert answers == [200] * 30


def test_a_promotion_reaches_every_prediction_replica(
    project: ComposeProject, http: httpx.Client
) -> None:
    if len(project.containers("worker-prediction")) != 3:
        scale_predictions(project, http, 3)
    production(http)
    job = train(http, {"promote": False})
    assert job["status"] == "succeeded", job
    version = job["result"]["version"]
    started = time.monotonic()
    promoted = http.post(f"/models/{version}/promote", json={})
    assert promoted.status_code == 200, promoted.text
    replicas = project.containers("worker-prediction")

    def every_replica_serves_it() -> bool:
        return all(f'serving model {version}"' in project.logs(c) for c in replicas)

    wait_until(
        every_replica_serves_it, 60, interval=0.3, message=f"every replica to load {version}"
    )
    REPORT["timings"]["promotion to every replica's log"] = time.monotonic() - started
    answers = [predict(http) for _ in range(30)]
    assert {(a.status_code, a.json().get("model_version")) for a in answers} == {(200, version)}


def test_a_training_container_killed_mid_training(
    project: ComposeProject, http: httpx.Client, tmp_path: Path
) -> None:
    csv = tmp_path / "slow.csv"
    write_synthetic_csv(csv, SLOW_ROWS, seed=11)
    with csv.open("rb") as file:
        uploaded = http.post(
            "/datasets", files={"file": ("slow.csv", file, "text/csv")}, timeout=120
        )
    assert uploaded.status_code == 201, uploaded.text
    submitted = http.post("/train", json={"dataset": uploaded.json()["name"], "promote": False})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]

    def reading() -> bool:
        job = http.get(f"/jobs/{job_id}").json()
        assert job["status"] in ("queued", "running"), job
        return job["status"] == "running" and job["rows_read"] > 0

    wait_until(reading, 60, interval=0.1, message="the training to read rows")
    container = project.one("worker-training")
    before = project.inspect(container)
    os.kill(before["State"]["Pid"], signal.SIGKILL)  # the container's main process: a crash
    killed = time.monotonic()
    job = wait_for_job(http, job_id, LEASE_SECONDS + 60)
    REPORT["timings"]["kill to job worker_lost"] = time.monotonic() - killed
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost", job

    def restarted() -> bool:
        state = project.inspect(container)
        return state["RestartCount"] > before["RestartCount"] and state["State"]["Running"]

    wait_until(restarted, 90, interval=0.5, message="the restart policy to restart the container")
    wait_until(lambda: _ready(http), 120, interval=0.3, message="/readyz 200 after the restart")
    REPORT["timings"]["kill to ready again"] = time.monotonic() - killed
    after = train(http, {"promote": False})
    assert after["status"] == "succeeded", after
    REPORT["faults"].append(
        "training container's main process SIGKILLed mid-training: job failed/worker_lost, "
        f"container restarted (RestartCount {before['RestartCount']} -> "
        f"{project.inspect(container)['RestartCount']}), next training succeeded"
    )


def test_a_redis_restart_keeps_the_job_records(project: ComposeProject, http: httpx.Client) -> None:
    """Predictions are sent all along, from another thread: while Redis is down they answer
    503 at once (never an error of another kind, never a hang), then 200 again."""
    production(http)
    jobs = {
        job["job_id"]: job["status"]
        for job in http.get("/jobs", params={"limit": 100}).json()["jobs"]
    }
    assert jobs, "the earlier trainings left no record"
    statuses: list[int] = []
    restarted = threading.Event()
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=project.base_url, timeout=15) as client:
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    statuses.append(predict(client).status_code)
                except httpx.HTTPError:
                    statuses.append(0)
                if restarted.is_set() and statuses[-1] == 200:
                    return
                time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    started = time.monotonic()
    try:
        # SIGTERM: Redis writes its append-only file out before it exits.
        project.timed("docker-compose restart redis", "restart", "redis")
    finally:
        restarted.set()
        prober.join(130)
        stop.set()
    REPORT["timings"]["redis restart to predictions 200"] = time.monotonic() - started
    refused = [s for s in statuses if s != 200]
    REPORT["counts"]["predictions sent during the Redis restart"] = len(statuses)
    REPORT["counts"]["of which not 200"] = len(refused)
    assert statuses and statuses[-1] == 200, statuses[-20:]
    assert set(refused) <= {503}, statuses
    wait_until(lambda: _ready(http), 60, interval=0.3, message="/readyz 200 after Redis restarted")
    after = {job_id: http.get(f"/jobs/{job_id}").json().get("status") for job_id in jobs}
    assert after == jobs
    REPORT["faults"].append(
        f"redis restarted: {len(refused)} of {len(statuses)} predictions sent meanwhile "
        f"answered 503, then 200 again; {len(jobs)} job records kept"
    )


def test_the_monitoring_profile_scrapes_every_api_replica(
    project: ComposeProject, http: httpx.Client, stand_ins: dict[str, str]
) -> None:
    monitoring = [
        name
        for name, service in load_compose()["services"].items()
        if service.get("profiles") == ["monitoring"] and service["image"] not in stand_ins
    ]
    assert {"prometheus", "flower"} <= set(monitoring)
    started = time.monotonic()
    project.timed("monitoring up", "--profile", "monitoring", "up", "-d", *monitoring)
    prometheus = f"http://127.0.0.1:{project.ports['PROMETHEUS']}"
    version = production(http)
    for _ in range(10):
        assert predict(http).status_code == 200

    def query(expr: str) -> list[dict[str, Any]]:
        try:
            answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
        except httpx.HTTPError:
            return []
        return list(answer.json()["data"]["result"]) if answer.status_code == 200 else []

    api_replicas = len(project.containers("api"))
    wait_until(
        lambda: len(query('up{job="api"} == 1')) == api_replicas,
        90,
        interval=1,
        message=f"Prometheus to scrape {api_replicas} api replica(s)",
    )
    served = wait_until(
        lambda: query(f'rvt_predictions_total{{model_version="{version}"}} > 0'),
        60,
        interval=1,
        message="the predictions counter in Prometheus",
    )
    REPORT["timings"]["monitoring up to first scrape"] = time.monotonic() - started
    assert served[0]["metric"]["model_version"] == version
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"RvtNoPredictionWorker", "RvtRedisDown", "RvtPredictionLatencyHigh"} <= loaded
    flower = httpx.get(f"http://127.0.0.1:{project.ports['FLOWER']}/healthcheck", timeout=10)
    assert flower.status_code == 200 and flower.text.strip() == "OK", flower.text
    REPORT["counts"]["monitoring services started"] = monitoring
    REPORT["counts"]["left out (no image here)"] = sorted(stand_ins)


def test_down_leaves_nothing_behind(
    project: ComposeProject, capsys: pytest.CaptureFixture[str]
) -> None:
    _save_logs(project)
    project.down()
    leftovers = project.leftovers()
    assert leftovers == {"containers": [], "volumes": [], "networks": []}, leftovers
    REPORT["timings"].update(project.timings)
    _write_report()
    with capsys.disabled():
        print("\n--- docker compose under a real engine ---")
        for line in REPORT.get("images", []):
            print(f"  image {line}")
        for step, seconds in REPORT["timings"].items():
            print(f"  {step}: {seconds:.1f} s")
        for what, count in REPORT["counts"].items():
            print(f"  {what}: {count}")
        for fault in REPORT["faults"]:
            print(f"  fault: {fault}")
