"""The Celery message of a prediction batch, as the prediction client pushes it onto the queue.

The client publishes with its own ``LPUSH`` rather than ``send_task`` (see
:mod:`api.queue.predictions`), so it needs the bytes kombu's Redis transport would push. Celery
builds the task part itself (``app.amqp.as_task_v2``: headers, body, the expiry in the app's
time zone) and kombu serialises it, so a Celery upgrade that changes the protocol changes this
message too; only kombu's few lines of Redis envelope are written out here (they are what
``virtual.Channel.prepare_message`` and ``basic_publish`` add before ``redis.Channel._put``).
``bench/ablation.py`` measured this against a message built by hand: see
``bench/results/ablation.md``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime

from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as dumps_json
from kombu.utils.uuid import uuid

from api.queue.training import producer_app
from shared.queues import PREDICT_TASK, PREDICTION_QUEUE
from shared.settings import Settings

__all__ = ["MessageBuilder", "celery_message_builder", "message_builder"]

#: ``(reply channel, [[request id, encoded codes], ...], expires in seconds, origin, task id)``
#: to the bytes pushed onto the prediction queue's list. An item asking for explanations has a
#: third element, ``shared.model.scoring.EXPLAIN``.
MessageBuilder = Callable[[str, list[list[str]], float, str, str], bytes]


def celery_message_builder(app: Celery) -> MessageBuilder:
    """What ``app.send_task(PREDICT_TASK, args=[channel, batch], queue=PREDICTION_QUEUE,
    expires=expires_in, ignore_result=True)`` pushes onto the queue's Redis list."""
    as_task = app.amqp.as_task_v2
    serializer = app.conf.task_serializer

    def build(
        channel: str, batch: list[list[str]], expires_in: float, origin: str, task_id: str
    ) -> bytes:
        headers, properties, body, _ = as_task(
            task_id,
            PREDICT_TASK,
            args=(channel, batch),
            expires=expires_in,
            origin=origin,
            ignore_result=True,
            # the default is a repr of the whole batch: records have no place in a worker's log
            argsrepr=f"({len(batch)} requests)",
            # what Celery would compute, without its repr of {} nor its clock's time zone lookups
            kwargsrepr="{}",
            now=datetime.now(UTC),
        )
        content_type, content_encoding, payload = serialize(body, serializer=serializer)
        data = payload.encode(content_encoding) if isinstance(payload, str) else bytes(payload)
        properties.update(
            # what send_task adds and kombu's Producer.publish and Redis channel then set
            expiration=str(int(expires_in * 1000)),
            delivery_mode=2,
            priority=0,
            body_encoding="base64",
            delivery_tag=uuid(),
            delivery_info={"exchange": "", "routing_key": PREDICTION_QUEUE},
        )
        message = {
            "body": base64.b64encode(data).decode(),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": properties,
        }
        return dumps_json(message).encode()

    return build


def message_builder(settings: Settings) -> MessageBuilder:
    """The builder the prediction client uses: Celery's, on a producer app of its own (the app
    only configures ``as_task_v2``; it never connects)."""
    return celery_message_builder(producer_app(settings))
