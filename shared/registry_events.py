"""Changes of the production alias, announced over Redis pub/sub, so that every serving process
on every host follows a promotion within a second without sharing a filesystem. Deleted
versions are announced on the same channel (``"action": "delete"``), so that a process holding
a version other than production checks the listing again and drops it.

Whoever changes the alias (the API's promote and rollback, ``rvt models promote``/``rollback``
and ``rvt train``, a training worker whose job promoted its version) publishes one message on
``{REDIS_PREFIX}:registry:alias`` once the change is committed. The message is a nudge, not
the news: a serving process that receives one reads the alias from the registry itself, which
stays the only source of truth (a stray message costs one extra read of the alias, nothing
more).

Pub/sub keeps nothing in Redis, so a message published while a process is not subscribed (Redis
restarting, the process reconnecting) is lost. Hence the two fallbacks: a subscriber asks for a
re-check every time it (re)subscribes, and serving processes check the alias every
``MODEL_POLL_SECONDS`` whatever happens. Announcing is best effort for the same reason: the
alias has already changed when it is announced, and a Redis outage must not turn a committed
promotion into an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable

import redis

from shared.registry.versions import ModelRegistry, ProductionState

__all__ = [
    "AliasAnnouncer",
    "AliasSubscriber",
    "alias_channel",
    "apply_retention",
    "delete",
    "promote",
    "rollback",
]

log = logging.getLogger(__name__)

#: First and longest wait between two attempts to subscribe again after losing Redis.
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 1.0
#: How long one read waits for a message: also how soon :meth:`AliasSubscriber.stop` is obeyed.
LISTEN_SECONDS = 0.5
#: A subscription that heard nothing for this long sends a PING, and one that then hears nothing
#: for ``ANSWER_SECONDS`` more is given up: a peer that vanished without closing the connection
#: (a cut link, a host powered off) is never reported by the socket itself.
PING_SECONDS = 5.0
ANSWER_SECONDS = 2.0
_PING_MESSAGE = "rvt-alias-subscriber"


def alias_channel(prefix: str) -> str:
    return f"{prefix}:registry:alias"


class AliasAnnouncer:
    """Publishes alias changes on the channel of ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self.channel = alias_channel(prefix)

    def announce(self, version: str | None, action: str) -> bool:
        """Tell every subscriber that the alias changed (``version`` and ``action`` are for
        their logs only). False, logged, when Redis did not take it: the alias is changed
        anyway, and serving processes find it at their next poll."""
        message = json.dumps({"version": version, "action": action})
        try:
            self._client.publish(self.channel, message)
        except (redis.RedisError, OSError) as exc:
            log.warning(
                "could not announce the %s of %s (%s): serving processes will notice it at "
                "their next check of the alias",
                action,
                version,
                exc,
            )
            return False
        return True


def promote(
    registry: ModelRegistry, announcer: AliasAnnouncer | None, version: str, force: bool = False
) -> ProductionState:
    """:meth:`ModelRegistry.promote`, then announced (when there is an announcer)."""
    state = registry.promote(version, force=force)
    if announcer is not None:
        announcer.announce(state.version, "promote")
    return state


def rollback(registry: ModelRegistry, announcer: AliasAnnouncer | None) -> ProductionState:
    """:meth:`ModelRegistry.rollback`, then announced (when there is an announcer)."""
    state = registry.rollback()
    if announcer is not None:
        announcer.announce(state.version, "rollback")
    return state


def delete(registry: ModelRegistry, announcer: AliasAnnouncer | None, version: str) -> None:
    """:meth:`ModelRegistry.delete`, then announced (when there is an announcer)."""
    registry.delete(version)
    if announcer is not None:
        announcer.announce(version, "delete")


def apply_retention(
    registry: ModelRegistry, announcer: AliasAnnouncer | None, keep: int
) -> list[str]:
    """:meth:`ModelRegistry.apply_retention`, each deletion announced."""
    deleted = registry.apply_retention(keep)
    if announcer is not None:
        for version in deleted:
            announcer.announce(version, "delete")
    return deleted


class AliasSubscriber:
    """A daemon thread subscribed to the alias channel.

    It calls ``on_change("notification")`` for every announcement, and
    ``on_change("subscribed")`` every time its subscription is made, the first time included:
    whatever was announced while it was not subscribed is lost, so the alias must be checked
    then. It reconnects for as long as it runs, after ``BACKOFF_FIRST_SECONDS`` doubling up to
    ``BACKOFF_MAX_SECONDS``. ``on_change`` runs on this thread: it must be quick (the serving
    model only wakes its own thread).
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        on_change: Callable[[str], None],
        *,
        ping_seconds: float = PING_SECONDS,
        answer_seconds: float = ANSWER_SECONDS,
    ) -> None:
        self._client = client
        self.channel = alias_channel(prefix)
        self._on_change = on_change
        self._ping_seconds = ping_seconds
        self._answer_seconds = answer_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: How many times the subscription was made (1 after the first; +1 per reconnection).
        self.subscriptions = 0
        #: How many announcements arrived.
        self.notifications = 0

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="alias-subscriber", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = BACKOFF_FIRST_SECONDS
        lost = False
        while not self._stop.is_set():
            before = self.subscriptions
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                if not lost:  # once per outage, not once per attempt
                    log.warning("alias channel lost (%s); subscribing again", exc)
                lost = True
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
            if self.subscriptions > before:
                delay = BACKOFF_FIRST_SECONDS
                if lost:
                    log.info("alias channel subscribed again")
                lost = False
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def _listen(self, pubsub: redis.client.PubSub) -> None:
        """Read until stopped; raises when the connection is lost or stops answering."""
        last_heard = time.monotonic()
        pinged = False
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=LISTEN_SECONDS)
            now = time.monotonic()
            if message is None:
                silent = now - last_heard
                if silent > self._ping_seconds + self._answer_seconds:
                    raise redis.ConnectionError(f"Redis did not answer for {silent:.1f} s")
                if silent > self._ping_seconds and not pinged:
                    pubsub.ping(_PING_MESSAGE)
                    pinged = True
                continue
            last_heard, pinged = now, False
            if message["type"] == "subscribe":
                self.subscriptions += 1
                self._notify("subscribed")
            elif message["type"] == "message":
                self.notifications += 1
                self._notify("notification")

    def _notify(self, reason: str) -> None:
        try:
            self._on_change(reason)
        except Exception:  # the subscription must outlive a bad callback
            log.exception("alias change callback failed")
