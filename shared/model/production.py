"""The production model of one serving process, following the registry's alias."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from shared.errors import NoProductionModelError
from shared.model.scoring import Scorer
from shared.registry.versions import ModelRegistry

__all__ = ["ProductionModel"]

log = logging.getLogger(__name__)


class ProductionModel:
    """Holds the production version in memory and swaps in a newly promoted one.

    A background thread checks the alias (:meth:`ModelRegistry.alias_token`: a ``stat``, or a
    ``HEAD`` on an object store) when :meth:`wake` is called (an announcement arrived, see
    :mod:`shared.registry_events`) and every ``poll_seconds`` anyway, the fallback for an
    announcement that never came. A new version is loaded before the reference is swapped: a
    request in flight keeps the model it started with, no request waits for a load, and every
    answer names the version that computed it. Nothing is loaded on the request path except the
    very first model if the thread has not loaded it yet.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        poll_seconds: float = 2.0,
        on_loaded: Callable[[Scorer], None] | None = None,
        on_checked: Callable[[], object] | None = None,
    ) -> None:
        self.registry = registry
        self.poll_seconds = poll_seconds
        #: Called (outside the lock) after a newly loaded model was swapped in.
        self.on_loaded = on_loaded
        #: Called on the follower thread after each check of the alias (woken or polling),
        #: whatever it found: where what else the process holds is checked against the
        #: registry (the version cache of :mod:`shared.model.scoring`).
        self.on_checked = on_checked
        self._model: Scorer | None = None
        self._token: object = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._wake_reason = "poll"
        #: Checks of the alias the follower thread has made (woken or polling).
        self.checks = 0

    def start(self) -> None:
        """Start following the alias (idempotent; safe to call in every process)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="model-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self, reason: str = "notification") -> None:
        """Check the alias now rather than at the next poll (cheap, never blocks: the check
        runs on the follower thread)."""
        self._wake_reason = reason
        self._wake.set()

    def current(self) -> Scorer:
        model = self._model
        if model is None:
            self.refresh("request")
            model = self._model
        if model is None:
            raise NoProductionModelError(
                "no production model yet: train one first (POST /train or rvt train)"
            )
        return model

    def refresh(self, trigger: str = "poll") -> bool:
        """Load the production version if the alias changed; True if the model changed.
        ``trigger`` (what asked for the check) goes into the log line of a swap."""
        with self._lock:
            token = self.registry.alias_token()
            if token == self._token and self._model is not None:
                return False
            version = self.registry.production_version()
            if version is None:
                self._model, self._token = None, token
                return True
            if self._model is not None and self._model.version == version:
                self._token = token
                return False
            model = self._model = Scorer(version, self.registry.load(version))
            self._token = token
        log.info("serving model %s", version, extra={"model_version": version, "trigger": trigger})
        if self.on_loaded is not None:
            self.on_loaded(model)
        return True

    def _follow(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.poll_seconds)
            if self._stop.is_set():
                return
            # Cleared before the check: a wake-up that arrives during it makes another one.
            self._wake.clear()
            trigger = self._wake_reason if woken else "poll"
            try:
                self.refresh(trigger)
            except Exception:  # a bad promotion must not kill the follower; keep the old model
                log.exception("could not load the production model; keeping the current one")
            if self.on_checked is not None:
                try:
                    self.on_checked()
                except Exception:
                    log.exception("what runs after each check of the alias failed")
            self.checks += 1
