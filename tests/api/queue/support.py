"""A private ``redis-server`` and a stand-in prediction worker, for the prediction client's tests.

The server is a real one (started on a free port, or on a unix socket only, optionally with a
password; stopped by its pid), so the client is tested against what it talks to in production.
The stand-in worker is a thread that does what a Celery prediction worker does with a message:
``BRPOP`` it from the prediction queue's list, decode it with kombu, run the predict task's
scoring (:func:`shared.model.scoring.score_batch`) on a fake model and publish the replies.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast
from urllib.parse import urlencode

import numpy as np
import redis
from kombu.transport.virtual.base import Base64, Channel, Message

from cli.stack import free_port, redis_command
from shared.model.scoring import score_batch
from shared.queues import PREDICT_TASK, PREDICTION_QUEUE

#: Generous: the machine may be busy with other test suites.
STARTUP_SECONDS = 20.0


@dataclass
class RedisServer:
    """One ``redis-server`` process; :meth:`stop` and :meth:`start` again keep its address.

    ``password`` protects the default user, or the ACL user ``user`` (the default user is then
    off); ``unix_only`` listens on a unix socket only; ``tls`` (a folder from
    :func:`make_certificates`) on a TLS port only."""

    workdir: Path
    password: str | None = None
    user: str | None = None
    unix_only: bool = False
    tls: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.unix_only and not self.port:
            self.port = free_port()

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis.sock"

    def url(self, db: int = 0, **query: str) -> str:
        """The URL of database ``db``; ``query`` adds redis-py's URL options."""
        if self.unix_only:
            query = {
                **({"password": self.password} if self.password else {}),
                "db": str(db),
                **query,
            }
            if self.user:
                query["username"] = self.user
            return f"unix://{self.socket_path}?{urlencode(query)}"
        auth = f"{self.user or ''}:{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        options = f"?{urlencode(query)}" if query else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}{options}"

    def command(self) -> list[str]:
        command = redis_command(0 if (self.unix_only or self.tls) else self.port, self.workdir)
        if self.unix_only:
            command += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        if self.tls:
            command += [
                "--tls-port", str(self.port), "--tls-auth-clients", "no",
                "--tls-cert-file", str(self.tls / "server.crt"),
                "--tls-key-file", str(self.tls / "server.key"),
                "--tls-ca-cert-file", str(self.tls / "ca.crt"),
            ]  # fmt: skip
        if self.user and self.password:
            command += ["--user", "default", "off"]
            command += ["--user", self.user, "on", f">{self.password}", "~*", "&*", "+@all"]
        elif self.password:
            command += ["--requirepass", self.password]
        return command

    def start(self) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        url = self.url(ssl_cert_reqs="none") if self.tls else self.url()
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + STARTUP_SECONDS
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log_tail()}")
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def log_tail(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def make_certificates(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (``ca.crt``,
    ``server.crt``, ``server.key``), made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("the openssl command is not installed")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        ["req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=rvt test CA"],
        ["req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext"],
    ):  # fmt: skip
        subprocess.run([openssl, *command], cwd=folder, check=True, capture_output=True, timeout=60)
    return folder


class SumScorer:
    """A stand-in model whose answer identifies its input: the sum of a row's codes / 100."""

    version = "v7"

    def predict_proba(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes.astype(float).sum(axis=1) / 100.0)

    def explain(self, codes: np.ndarray) -> tuple[float, np.ndarray]:
        """Contributions that identify their record too: its codes / 100, and a baseline of 0."""
        return 0.0, codes.astype(float) / 100.0


def scored(batch: list[list[str]]) -> list[dict[str, Any]]:
    """What the predict task replies for ``batch``, with :class:`SumScorer` as the model."""
    return score_batch(SumScorer(), batch)  # type: ignore[arg-type]


class _KombuChannel:
    """Just enough of a kombu channel for :class:`Message` to decode a body: kombu's own
    ``decode_body`` and codecs."""

    codecs: ClassVar[dict[str, Any]] = {"base64": Base64()}
    decode_body = Channel.decode_body


def decode_task(raw: bytes) -> tuple[Message, list[Any]]:
    """A message from the prediction list as a Celery worker decodes it: kombu's
    :class:`Message` from the JSON envelope, then the body as ``[args, kwargs, embed]``."""
    channel = cast(Channel, _KombuChannel())
    message = Message(json.loads(raw), channel=channel, accept=["application/json"])
    body = message.decode()
    return message, body


@dataclass
class StandInWorker:
    """A prediction worker in a thread. ``respond(batch)`` gives the replies to publish, or None
    to lose the task. Every task it took is in :attr:`tasks`; errors end the test."""

    url: str
    respond: Callable[[list[list[str]]], list[dict[str, Any]] | None] = scored
    tasks: list[dict[str, Any]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StandInWorker:
        self._thread = threading.Thread(target=self._run, name="stand-in-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "the stand-in worker did not stop"
        if self.errors:
            raise self.errors[0]

    def _run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            while not self._stopping.is_set():
                try:
                    item = client.brpop([PREDICTION_QUEUE], timeout=0.1)
                except redis.ConnectionError:  # Redis is down: the outage test
                    time.sleep(0.05)
                    continue
                if item is not None:
                    self._handle(client, item[1])
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            client.close()

    def _handle(self, client: redis.Redis, raw: Any) -> None:
        message, ((channel, batch), kwargs, _embed) = decode_task(raw)
        assert message.headers["task"] == PREDICT_TASK
        assert message.content_type == "application/json"
        assert kwargs == {}
        self.tasks.append({"message": message, "batch": batch})
        replies = self.respond(batch)
        if replies is not None:
            with contextlib.suppress(redis.ConnectionError):
                client.publish(channel, json.dumps({"replies": replies}))
