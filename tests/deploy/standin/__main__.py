"""``python -m tests.deploy.standin``: build the stand-ins of every image that
docker-compose.yml and the Dockerfile name, on the engine at DOCKER_HOST (or one started for
the while), and print what was done."""

from __future__ import annotations

import sys

from tests.deploy.conftest import named_images
from tests.deploy.engine import EngineUnavailable, find_or_start
from tests.deploy.standin.build import ensure


def main() -> int:
    try:
        engine = find_or_start()
    except EngineUnavailable as exc:
        print(f"no Docker engine: {exc}", file=sys.stderr)
        return 2
    try:
        done, skipped = ensure(engine, named_images())
    finally:
        engine.stop()
    for built in done:
        print(
            f"{built.tag:40} {built.how:8} {built.seconds:6.1f} s {built.size_bytes / 1e6:7.1f} MB"
        )
    for image, reason in skipped.items():
        print(f"{image:40} left out: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
