"""Queue names: the Redis lists Celery's Redis transport keeps a queue in, as kombu names them."""

from __future__ import annotations

import functools
from types import SimpleNamespace

from kombu.transport.redis import Channel

from shared.queues import QUEUES, broker_lists


def test_broker_lists_are_the_lists_kombu_uses() -> None:
    channel = SimpleNamespace(sep=Channel.sep, priority_steps=Channel.priority_steps)
    channel.priority = functools.partial(Channel.priority, channel)
    for queue in QUEUES:
        kombu_lists = [Channel._q_for_pri(channel, queue, step) for step in Channel.priority_steps]
        assert broker_lists(queue) == kombu_lists
    assert broker_lists("training")[0] == "training"
