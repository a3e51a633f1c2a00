"""The Celery message of a prediction batch, built by hand for the hot path (see
:mod:`api.queue.predictions`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from shared.queues import PREDICT_TASK, PREDICTION_QUEUE

__all__ = ["task_message"]


def task_message(
    channel: str,
    batch: list[list[str]],
    expires_in: float,
    origin: str,
    task_id: str | None = None,
) -> bytes:
    """The message ``send_task(PREDICT_TASK, args=[channel, batch], queue=PREDICTION_QUEUE,
    expires=expires_in)`` would push onto the queue's Redis list, protocol 2, JSON, with the
    body as plain JSON text rather than base64 (kombu decodes a body with no
    ``body_encoding`` as is). ``tests/api/test_celery_clients.py`` checks it against kombu."""
    task_id = task_id or str(uuid.uuid4())
    expires = (datetime.now(UTC) + timedelta(seconds=expires_in)).isoformat()
    body = orjson.dumps(
        [[channel, batch], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    ).decode()
    message = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": PREDICT_TASK,
            "id": task_id,
            "shadow": None,
            "eta": None,
            "expires": expires,
            "group": None,
            "group_index": None,
            "retries": 0,
            "timelimit": [None, None],
            "root_id": task_id,
            "parent_id": None,
            "argsrepr": f"({len(batch)} requests)",
            "kwargsrepr": "{}",
            "origin": origin,
            "ignore_result": True,
            "replaced_task_nesting": 0,
            "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": PREDICTION_QUEUE},
            "priority": 0,
            "delivery_tag": task_id,
        },
    }
    return orjson.dumps(message)
