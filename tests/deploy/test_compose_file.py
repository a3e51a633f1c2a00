"""docker-compose.yml, Dockerfile and .dockerignore, read as data: every command names real code
of this repo, every variable is a real setting, the start order goes through healthchecks, and
every image is pinned. (tests/deploy/test_compose_stack.py runs the commands themselves.)"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pytest
from celery import Celery
from celery.bin.celery import celery as celery_cli
from celery.bin.worker import worker as celery_worker_cli
from uvicorn.main import main as uvicorn_cli

from cli import healthcheck
from shared.queues import QUEUES
from shared.settings import Settings
from tests.deploy.conftest import (
    APP_SERVICES,
    DOCKERFILE,
    DOCKERIGNORE,
    interpolate,
    load_compose,
    variables,
)

pytestmark = pytest.mark.deploy

SETTINGS_VARIABLES = {name.upper() for name in Settings.model_fields}
PINNED = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def _flags(args: list[str]) -> list[str]:
    return [arg for arg in args if arg.startswith("-")]


def _value(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg in names:
            return args[i + 1]
    return None


# --- the services -----------------------------------------------------------------------------


MONITORING = {"flower", "prometheus", "grafana"}
#: Services whose image offers no probe a healthcheck could run (and which nothing waits for
#: but storage-init, which waits for s3 by retrying), and the one-shot storage-init itself.
WITHOUT_HEALTHCHECK = {"flower", "grafana", "s3", "storage-init"}
CORE = {"redis", "s3", "storage-init", "api", "worker-training", "worker-prediction"}


def test_the_services_and_the_monitoring_profile(services: dict[str, Any]) -> None:
    assert set(services) == {*CORE, *MONITORING}
    for name in MONITORING:
        assert services[name].get("profiles") == ["monitoring"], name
    for name in set(services) - MONITORING:
        assert "profiles" not in services[name], f"{name} must start with a plain `up`"


def test_every_pulled_image_is_pinned_to_a_version_tag(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue  # built from the Dockerfile, whose base image is checked below
        assert PINNED.match(service["image"]), f"{name}: image {service['image']!r} not pinned"


def test_redis_persists_append_only_on_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert _value(command, "--appendonly") == "yes"
    mounts = dict(volume.split(":", 1) for volume in redis["volumes"])
    assert mounts.get("redis-data") == "/data"  # the official image's working directory
    assert "redis-data" in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_models_and_data_are_in_the_object_store_and_no_volume_is_shared(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in (*APP_SERVICES, "storage-init"):
        environment = services[name]["environment"]
        assert environment["MODELS_DIR"].startswith("s3://"), name
        assert environment["DATA_DIR"].startswith("s3://"), name
        assert environment["S3_ENDPOINT_URL"] == "http://s3:8333", name
        assert not services[name].get("volumes"), f"{name} mounts a volume"
    owners: dict[str, list[str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source in compose["volumes"]:
                owners.setdefault(source, []).append(name)
    assert all(len(names) == 1 for names in owners.values()), owners
    assert owners["s3-data"] == ["s3"] and owners["redis-data"] == ["redis"]
    assert (
        services["s3"]["environment"]["AWS_ACCESS_KEY_ID"]
        == (services["api"]["environment"]["AWS_ACCESS_KEY_ID"])
    )


def test_start_order_goes_through_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if name == "storage-init":  # it waits for the store itself (cli/storage.py, --wait)
            assert depends_on == ["s3"] and service["restart"] == "no"
            continue
        for dependency, condition in depends_on.items():
            if dependency == "storage-init":
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert services[dependency].get("healthcheck", {}).get("test"), dependency
        command = " ".join(str(part) for part in service.get("command", []))
        assert "sleep" not in command, f"{name} waits by sleeping"
    assert set(services["api"]["depends_on"]) == {
        "redis",
        "storage-init",
        "worker-training",
        "worker-prediction",
    }
    for name in ("worker-training", "worker-prediction"):
        assert set(services[name]["depends_on"]) == {"redis", "storage-init"}, name
    assert set(services["flower"]["depends_on"]) == {"redis"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}


def test_every_service_but_flower_and_grafana_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name in set(services) - WITHOUT_HEALTHCHECK:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert check["interval"] and check["timeout"] and check["retries"] >= 1, name


# --- the commands name real code --------------------------------------------------------------


def test_the_api_command_is_the_launcher_of_a_real_asgi_app(services: dict[str, Any]) -> None:
    """``python -m api.server``: uvicorn with API_WORKERS processes (api/server.py)."""
    command = services["api"]["command"]
    assert command[:3] == ["python", "-m", "api.server"]
    launcher = importlib.import_module("api.server")
    parser = launcher.build_parser(Settings())
    args = parser.parse_args(command[3:])  # exits on an unknown option
    app = importlib.import_module("api.main").app
    assert callable(app) and hasattr(app, "router")
    assert str(args.port) == services["api"]["environment"]["PORT"]
    assert int(interpolate(services["api"]["environment"]["API_WORKERS"])) >= 2
    assert set(_flags(command[3:])) <= _options(uvicorn_cli), "flags uvicorn means the same"


@pytest.mark.parametrize(
    ("service", "queue"), [("worker-training", "training"), ("worker-prediction", "prediction")]
)
def test_each_worker_command_finds_the_celery_app_and_a_real_queue(
    services: dict[str, Any], service: str, queue: str
) -> None:
    command = services[service]["command"]
    assert command[0] == "celery"
    split = next(  # the subcommand, not the value of `-A worker`
        i
        for i, arg in enumerate(command)
        if arg == "worker" and command[i - 1] not in ("-A", "--app")
    )
    global_args, worker_args = command[1:split], command[split + 1 :]
    assert set(_flags(global_args)) <= _options(celery_cli)
    assert set(_flags(worker_args)) <= _options(celery_worker_cli)
    # `celery -A worker` imports the module and takes its `app` (or `celery`) attribute.
    module = importlib.import_module(_value(global_args, "-A", "--app") or "")
    assert isinstance(getattr(module, "app", None), Celery)
    queues = (_value(worker_args, "-Q", "--queues") or "").split(",")
    assert queues == [queue] and set(queues) <= set(QUEUES)
    assert "--quiet" in global_args  # no ASCII-art banner between the JSON log lines
    if service == "worker-training":
        assert _value(worker_args, "-c", "--concurrency") == "1"


def test_every_healthcheck_command_is_a_real_probe(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "cli.healthcheck"], name
        args = healthcheck.build_parser().parse_args(test[4:])  # exits on unknown arguments
        if name.startswith("worker-"):
            worker_command = services[name]["command"]
            assert args.queue == _value(worker_command, "-Q")
            assert args.node == _value(worker_command, "-n"), "the probe must ask for this worker"


# --- environment ------------------------------------------------------------------------------


def test_every_variable_set_is_a_setting_the_code_reads(services: dict[str, Any]) -> None:
    for name in (*APP_SERVICES, "storage-init"):
        environment = services[name]["environment"]
        unknown = set(environment) - SETTINGS_VARIABLES
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"
        for value in environment.values():
            referenced = set(variables(str(value)))
            assert referenced <= SETTINGS_VARIABLES, f"{name} passes on {referenced}"
        resolved = {key.lower(): interpolate(str(value)) for key, value in environment.items()}
        Settings.model_validate(resolved)  # and so are the values compose gives


def test_flower_gets_only_celery_and_flower_variables(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert all(key.startswith(("CELERY_", "FLOWER_")) for key in flower["environment"])
    assert flower["environment"]["CELERY_BROKER_URL"] == services["api"]["environment"]["REDIS_URL"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"]), "Flower has no login"


# --- Dockerfile and .dockerignore -------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_dockerfile_base_is_a_pinned_slim_python() -> None:
    bases = [args for op, args in _instructions() if op == "FROM"]
    assert len(bases) == 1
    assert PINNED.match(bases[0]) and "slim" in bases[0], bases[0]


def test_dependencies_install_from_the_constraints_in_a_layer_before_the_source() -> None:
    steps = _instructions()
    copy_manifest = next(
        i for i, (op, a) in enumerate(steps) if op == "COPY" and "constraints.txt" in a
    )
    install = next(
        i for i, (op, a) in enumerate(steps) if op == "RUN" and "-c constraints.txt" in a
    )
    first_source = next(
        i
        for i, (op, a) in enumerate(steps)
        if op == "COPY" and a.split()[0] in ("api", "shared", "worker")
    )
    assert copy_manifest < install < first_source
    assert not any(
        part in steps[copy_manifest][1].split() for part in ("api", "shared", "worker", ".")
    )


def test_the_image_runs_as_a_non_root_user_with_an_api_healthcheck() -> None:
    steps = _instructions()
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_run = max(i for i, (op, _) in enumerate(steps) if op == "RUN")
    assert max(i for i, (op, _) in enumerate(steps) if op == "USER") > last_run
    health = next(args for op, args in steps if op == "HEALTHCHECK")
    assert '["python", "-m", "cli.healthcheck", "api"]' in health


def test_the_image_default_command_is_the_api_service_command(services: dict[str, Any]) -> None:
    cmd = next(args for op, args in _instructions() if op == "CMD")
    assert json.loads(cmd) == services["api"]["command"]


def test_dockerignore_keeps_local_state_and_tests_out() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for entry in (".venv", "models", "data", "tests", ".pytest_cache", ".mypy_cache", ".cache"):
        assert entry in ignored, entry
    assert "**/__pycache__" in ignored
