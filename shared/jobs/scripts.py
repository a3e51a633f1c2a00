"""The job store's Lua scripts, read from the ``lua/`` folder beside this module.

Every job script is the shared prelude (``prelude.lua``: key and argument names, ``settle``,
``finalized``) followed by its own body, so Redis runs each as one atomic compare-and-set.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from shared.jobs.metrics import DURATION_BUCKETS

__all__ = ["job_script"]


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text()


@cache
def job_script(name: str) -> str:
    """The prelude (with the duration buckets filled in) and the body of ``lua/<name>.lua``."""
    buckets = ", ".join(repr(float(bound)) for bound in DURATION_BUCKETS)
    prelude = _read("prelude").replace("__DURATION_BUCKETS__", buckets)
    return f"{prelude}\n{_read(name)}"
