"""Alias announcements over a real Redis (a private ``redis-server``, stopped and started again
by some tests): who announces, what a subscriber hears, and what happens when it hears nothing
(the serving model's own poll, the fallback)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import registry_events, stores
from shared.model.production import ProductionModel
from shared.registry.versions import ModelRegistry
from shared.registry_events import AliasAnnouncer, AliasSubscriber, alias_channel
from shared.settings import Settings
from tests.api.queue.support import RedisServer
from tests.integration.conftest import require_redis_server
from tests.shared.conftest import swaps, wait_for_swaps
from tests.shared.registry.helper import tiny_model

pytestmark = pytest.mark.integration

PREFIX = "evt"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One private server for the module; a test that stops it starts it again."""
    require_redis_server()
    workdir = Path(tempfile.mkdtemp(prefix="rvt-redis-"))
    running = RedisServer(workdir).start()
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    if server.process is None:
        server.start()  # a failed test may have left it stopped
    made = redis.Redis.from_url(server.url(), socket_connect_timeout=0.5, socket_timeout=1)
    yield made
    made.close()


class Heard:
    """What a subscriber's callback was called with, in order."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, reason: str) -> None:
        with self._changed:
            self.reasons.append(reason)
            self._changed.notify_all()

    def wait_for(self, reason: str, count: int = 1, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.reasons.count(reason) >= count, timeout):
                pytest.fail(f"{count} x {reason!r} not heard within {timeout} s: {self.reasons}")


@pytest.fixture
def subscribe(client: redis.Redis) -> Iterator[Callable[..., tuple[AliasSubscriber, Heard]]]:
    started: list[AliasSubscriber] = []

    def start(on_change: Callable[[str], None] | None = None, **options: Any):
        heard = Heard()
        subscriber = AliasSubscriber(client, PREFIX, on_change or heard, **options)
        subscriber.start()
        started.append(subscriber)
        return subscriber, heard

    yield start
    for subscriber in started:
        subscriber.stop()


def listen(client: redis.Redis) -> Callable[[], dict[str, Any]]:
    """A raw subscription to the channel; returns a function giving the next message's body."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(alias_channel(PREFIX))

    def next_message() -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "message":
                return json.loads(message["data"])
        pytest.fail("no announcement within 10 s")

    return next_message


def test_the_channel_is_under_the_project_prefix() -> None:
    assert alias_channel("rvt") == "rvt:registry:alias"


def test_promote_and_rollback_announce_after_the_change(
    client: redis.Redis, two_versions: ModelRegistry
) -> None:
    next_message = listen(client)
    announcer = AliasAnnouncer(client, PREFIX)
    state = registry_events.promote(two_versions, announcer, "v1")
    assert state.version == "v1"
    assert next_message() == {"version": "v1", "action": "promote"}
    registry_events.rollback(two_versions, announcer)
    assert next_message() == {"version": "v2", "action": "rollback"}
    assert two_versions.production_version() == "v2"


def test_deletions_are_announced_after_the_version_is_gone(
    client: redis.Redis, tmp_path: Path
) -> None:
    """On the promotions' channel, so that serving processes drop a deleted version; one
    message per version that retention deletes."""
    registry = ModelRegistry(tmp_path / "models")
    for i in range(4):
        registry.save_version(tiny_model(i), {})
    registry.promote("v4")
    next_message = listen(client)
    announcer = AliasAnnouncer(client, PREFIX)

    registry_events.delete(registry, announcer, "v2")
    assert next_message() == {"version": "v2", "action": "delete"}
    assert registry_events.apply_retention(registry, announcer, 1) == ["v1"]
    assert next_message() == {"version": "v1", "action": "delete"}
    assert [info.version for info in registry.list_versions()] == ["v3", "v4"]


def test_a_subscriber_hears_its_subscription_then_every_announcement(
    client: redis.Redis, subscribe: Callable[..., tuple[AliasSubscriber, Heard]]
) -> None:
    subscriber, heard = subscribe()
    heard.wait_for("subscribed")  # the alias is checked as soon as the subscription exists
    announcer = AliasAnnouncer(client, PREFIX)
    for count in (1, 2, 3):
        assert announcer.announce("v9", "promote")
        heard.wait_for("notification", count)
    assert subscriber.notifications == 3 and subscriber.subscriptions == 1
    # another prefix is another channel
    AliasAnnouncer(client, "other").announce("v9", "promote")
    assert announcer.announce("v9", "promote")
    heard.wait_for("notification", 4)
    assert heard.reasons.count("notification") == 4


def test_announcing_without_redis_is_reported_not_raised(
    two_versions: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """The alias is changed before it is announced: a Redis that cannot be reached must not turn
    that committed change into an error."""
    unreachable = stores.redis_client(Settings(redis_url="redis://127.0.0.1:1/0"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="shared.registry_events"):
        state = registry_events.promote(two_versions, AliasAnnouncer(unreachable, PREFIX), "v1")
    assert state.version == "v1" and two_versions.production_version() == "v1"
    assert time.monotonic() - started < 5  # a refused connection fails at once, not on a timeout
    assert "could not announce the promote of v1" in caplog.text


def test_the_subscriber_comes_back_after_a_redis_restart(
    server: RedisServer,
    client: redis.Redis,
    subscribe: Callable[..., tuple[AliasSubscriber, Heard]],
) -> None:
    subscriber, heard = subscribe()
    heard.wait_for("subscribed")
    server.stop()
    time.sleep(0.5)  # down for a while: the subscriber fails a few attempts
    server.start()
    heard.wait_for("subscribed", 2)  # subscribed again, and so the alias is checked again
    assert AliasAnnouncer(client, PREFIX).announce("v3", "promote")
    heard.wait_for("notification")
    assert subscriber.subscriptions >= 2


def test_a_connection_that_stops_answering_is_given_up(
    client: redis.Redis, subscribe: Callable[..., tuple[AliasSubscriber, Heard]]
) -> None:
    """A peer that vanished without closing the socket (a cut link) is noticed by the PING the
    subscriber sends when it heard nothing for a while; Redis paused stands in for it."""
    _, heard = subscribe(ping_seconds=0.3, answer_seconds=0.3)
    heard.wait_for("subscribed")
    client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    heard.wait_for("subscribed", 2)
    assert AliasAnnouncer(client, PREFIX).announce("v3", "promote")
    heard.wait_for("notification")


def test_announced_promotions_are_served_at_once(
    client: redis.Redis,
    two_versions: ModelRegistry,
    subscribe: Callable[..., tuple[AliasSubscriber, Heard]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The serving model polls once an hour here: only the announcement can bring the change."""
    holder = ProductionModel(two_versions, poll_seconds=3600)
    assert holder.current().version == "v2"
    holder.start()
    subscriber, _ = subscribe(holder.wake)
    try:
        # the check the subscription asked for is done (nothing else wakes the holder here)
        wait_until(lambda: subscriber.subscriptions == 1 and holder.checks == 1)
        announcer = AliasAnnouncer(client, PREFIX)
        caplog.clear()  # only swaps from here on (the first load may be in it)
        with caplog.at_level(logging.INFO, logger="shared.model.production"):
            for count, version in enumerate(("v1", "v2", "v1"), 1):
                registry_events.promote(two_versions, announcer, version)
                wait_for_swaps(caplog, count)
        assert swaps(caplog) == [(v, "notification") for v in ("v1", "v2", "v1")]
    finally:
        holder.stop()


def test_a_missed_announcement_is_caught_by_the_poll(
    server: RedisServer,
    client: redis.Redis,
    two_versions: ModelRegistry,
    subscribe: Callable[..., tuple[AliasSubscriber, Heard]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two ways to miss one: nobody announced (a tool that wrote the alias and knew nothing of
    Redis), and the subscriber was not connected when it was announced (Redis down)."""
    holder = ProductionModel(two_versions, poll_seconds=0.3)
    assert holder.current().version == "v2"
    holder.start()
    subscriber, _ = subscribe(holder.wake)
    try:
        wait_until(lambda: subscriber.subscriptions == 1)
        caplog.clear()  # only swaps from here on (the first load may be in it)
        with caplog.at_level(logging.INFO, logger="shared.model.production"):
            two_versions.promote("v1")  # not announced
            wait_for_swaps(caplog, 1)
            server.stop()
            announced = registry_events.promote(two_versions, AliasAnnouncer(client, PREFIX), "v2")
            assert announced.version == "v2"
            wait_for_swaps(caplog, 2)
            server.start()
            wait_until(lambda: subscriber.subscriptions == 2)
        (first, first_trigger), second = swaps(caplog)
        # Nothing announced the first change: the poll found it, or, if it came just then, the
        # check the first subscription asked for. While Redis was down, only the poll could.
        assert first == "v1" and first_trigger in {"poll", "subscribed"}
        assert second == ("v2", "poll")
    finally:
        holder.stop()


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.01)
