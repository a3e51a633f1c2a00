"""``python -m cli.storage init``: make the buckets that ``MODELS_DIR`` and ``DATA_DIR`` name,
if they are ``s3://`` locations and the buckets do not exist yet.

The service never creates a bucket by itself: a bucket is the operator's decision (where, with
which policy), and a typo in ``MODELS_DIR`` must be an error, not a new bucket. A deployment
that owns its store (``docker-compose.yml``) runs this once before the service starts. It waits
for the store to answer (up to ``--wait`` seconds), so it can start together with the store.
"""

from __future__ import annotations

import argparse
import sys
import time

import botocore.exceptions

from shared.settings import get_settings
from shared.storage.location import S3Location
from shared.storage.s3 import s3_client


def _ensure_bucket(client: object, bucket: str, wait_seconds: float) -> str:
    """'created' or 'exists'; raises after ``wait_seconds`` of an unreachable store."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            client.head_bucket(Bucket=bucket)  # type: ignore[attr-defined]
            return "exists"
        except botocore.exceptions.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                try:
                    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
                except botocore.exceptions.ClientError as create:
                    code = create.response.get("Error", {}).get("Code")
                    if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise
                return "created"
            if time.monotonic() > deadline:
                raise
        except (botocore.exceptions.BotoCoreError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.storage", description=__doc__)
    parser.add_argument("command", choices=["init"])
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the store")
    args = parser.parse_args(argv)
    settings = get_settings()
    buckets = sorted(
        {
            loc.bucket
            for loc in (settings.models_dir, settings.data_dir)
            if isinstance(loc, S3Location)
        }
    )
    if not buckets:
        print("MODELS_DIR and DATA_DIR are folders: nothing to make")
        return 0
    secret = settings.aws_secret_access_key
    client = s3_client(
        settings.s3_endpoint_url,
        settings.aws_region,
        settings.aws_access_key_id,
        secret.get_secret_value() if secret is not None else None,
    )
    try:
        for bucket in buckets:
            print(f"bucket {bucket}: {_ensure_bucket(client, bucket, args.wait)}")
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
        print(
            f"cannot make the buckets at {settings.s3_endpoint_url or 'AWS'}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
