"""Objects and processes for the registry tests that need to pickle by reference or be killed.

Run as ``python -m tests.shared.registry.helper MODE ROOT MARKER`` to start a writer that stops
at a known point (after writing MARKER) so that the test can SIGKILL it there:

- ``slow-dump``: stops in the middle of ``joblib.dump``, in the staging phase;
- ``hang-in-lock``: stops at the rename that publishes the version, holding the lock.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from shared.registry.versions import ModelRegistry
from shared.storage import local as registry_module
from tests.shared.registry.backends import Backend


def tiny_model(seed: int = 0) -> LogisticRegression:
    """A real fitted estimator that dumps in a millisecond."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20, 2))
    y = (x[:, 0] + 0.1 * rng.normal(size=20) > 0).astype(int)
    return LogisticRegression().fit(x, y)


def write_marker(path: str) -> None:
    Path(path).write_text("unpickled")


class UnpickleTrap:
    """Writes a marker file when unpickled: proof that a file was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (write_marker, (self.marker,))


class SlowPickle:
    """Announces that pickling started, then sleeps, so a writer can be killed mid-dump."""

    def __init__(self, marker: Path, seconds: float = 60.0) -> None:
        self.marker = str(marker)
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        Path(self.marker).write_text("dumping")
        time.sleep(self.seconds)
        return (SlowPickle, (self.marker, 0.0))


class ExplodingPickle:
    """Fails while being dumped, like a model that cannot be serialised."""

    def __reduce__(self) -> tuple[Any, ...]:
        raise RuntimeError("boom while pickling")


def save_many(backend: Backend, worker: int, count: int, barrier: Any, results: Any) -> None:
    """One of several processes saving at once; reports the versions it got on ``results``."""
    registry = backend.open()
    barrier.wait(timeout=60)
    names = []
    for i in range(count):
        model = {"worker": worker, "i": i, "estimator": tiny_model(worker * 100 + i)}
        names.append(registry.save_version(model, {"worker": worker, "i": i}).version)
    results.put(names)


def main(argv: list[str]) -> None:
    mode, root, marker = argv
    registry = ModelRegistry(Path(root))
    if mode == "slow-dump":
        # The array (larger than any write buffer) reaches the file before the sleep: a partial
        # artifact sits in staging when the test kills us.
        model = [tiny_model(), np.zeros(100_000), SlowPickle(Path(marker))]
        registry.save_version(model, {"mode": mode})
    elif mode == "hang-in-lock":

        def hang(src: Any, dst: Any) -> None:
            Path(marker).write_text("renaming")
            time.sleep(60)

        registry_module.os.rename = hang  # type: ignore[assignment]
        registry.save_version(tiny_model(), {"mode": mode})
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
