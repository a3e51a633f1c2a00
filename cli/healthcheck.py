"""Container healthchecks: exit 0 when healthy, 1 with one line on stderr when not.

    python -m cli.healthcheck api                  # GET /healthz on this host's PORT
    python -m cli.healthcheck worker training      # this host's worker "training@<host>"
    python -m cli.healthcheck worker prediction --node 'prediction@%h'

A worker is healthy when its own presence announcement in Redis is fresh: it writes one only once it is
consuming, so this is what readiness (``GET /readyz``) counts too. That is a Redis read of a
few milliseconds, where ``celery inspect ping`` would start a whole Celery client and
broadcast to every worker. It imports neither Celery nor FastAPI, so it starts fast.
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.request

import redis

from shared import stores
from shared.queues import QUEUES
from shared.settings import get_settings

TIMEOUT_SECONDS = 2.0


def check_api() -> str | None:
    """None when ``/healthz`` answers 200 on this host, else what went wrong."""
    url = f"http://127.0.0.1:{get_settings().port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except OSError as exc:
        return f"{url}: {exc}"


def node_name(pattern: str) -> str:
    """Celery's ``-n`` pattern with ``%h`` expanded as Celery does (the host name)."""
    return pattern.replace("%h", socket.gethostname())


def check_worker(queue: str, node: str) -> str | None:
    """None when worker ``node`` has announced itself recently on ``queue``, else what is missing."""
    settings = get_settings()
    client = stores.redis_client(settings)
    try:
        alive = stores.worker_presence(settings, client).alive(queue)
    except redis.RedisError as exc:
        return f"Redis is unavailable: {exc}"
    finally:
        client.close()
    if node not in alive:
        return f"no fresh announcement from {node} on queue {queue!r} (alive: {alive or 'none'})"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cli.healthcheck")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("api", help="the API on this host answers /healthz")
    worker = sub.add_parser("worker", help="this host's worker announced itself recently")
    worker.add_argument("queue", choices=QUEUES)
    worker.add_argument("--node", default=None, help="Celery node name (default: QUEUE@%%h)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.what == "api":
        problem = check_api()
    else:
        problem = check_worker(args.queue, node_name(args.node or f"{args.queue}@%h"))
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
