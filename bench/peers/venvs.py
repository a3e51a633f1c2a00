"""One virtual environment per peer under ``.cache/bench/peers/<name>/venv``, installed once.

Each peer gets its pinned release, and the libraries the project's table scorer and the pickled
pipeline need at exactly the versions of the project's own venv (read with importlib.metadata),
so that the registry's ``model.joblib`` unpickles there as it does here and the custom runtimes
can import ``shared.model.scoring`` from the repository. A stamp file records what was installed;
a venv whose stamp differs from what is wanted now is built again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "bench" / "peers"
#: What unpickling the pipeline and importing the table scorer (shared.model.scoring, the
#: registry) needs, installed at the project venv's versions.
SHARED_LIBRARIES = (
    "numpy",
    "scikit-learn",
    "scipy",
    "pandas",
    "joblib",
    "threadpoolctl",
    "pyarrow",
)


@dataclass(frozen=True)
class PeerPackage:
    """A peer framework and the pins it is measured at."""

    name: str
    requirements: tuple[str, ...]


PACKAGES = {
    # uvloop 0.21: with 0.23, MLServer 1.7.1's inference worker crashes at start
    "mlserver": PeerPackage(
        "mlserver", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0")
    ),
    "bentoml": PeerPackage("bentoml", ("bentoml==1.4.40",)),
}


def project_pins() -> tuple[str, ...]:
    """``name==version`` of each shared library, as the project's venv has it."""
    pins = []
    for name in SHARED_LIBRARIES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError as exc:
            raise RuntimeError(
                f"{name} is not installed in the project's venv (make install)"
            ) from exc
    return tuple(pins)


def wanted(package: PeerPackage) -> dict[str, Any]:
    """What the stamp of a ready venv records."""
    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "requirements": [*package.requirements, *project_pins()],
    }


def venv_python(name: str) -> Path:
    return CACHE / name / "venv" / "bin" / "python"


def ensure(name: str, log: Path | None = None) -> tuple[Path, float]:
    """The python of ``name``'s venv, installing it first if needed; and the seconds the
    install took (0 when the venv was reused)."""
    package = PACKAGES[name]
    folder = CACHE / name
    stamp = folder / "installed.json"
    want = wanted(package)
    python = venv_python(name)
    if python.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == want:
                return python, 0.0
        except ValueError:
            pass
    started = time.perf_counter()
    shutil.rmtree(folder / "venv", ignore_errors=True)
    stamp.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"  installing {name} into {folder / 'venv'} (once) ...", flush=True)
    # from the project venv's interpreter: the same Python, so the same pickles
    _run([sys.executable, "-m", "venv", str(folder / "venv")], log)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *want["requirements"]], log)
    stamp.write_text(json.dumps(want, indent=2) + "\n")
    return python, time.perf_counter() - started


def _run(command: list[str], log: Path | None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise RuntimeError(
            f"installing a peer failed ({result.returncode}): {' '.join(command)}\n"
            f"{result.stderr[-3000:]}"
        )


def installed_versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The versions ``python``'s environment actually has (for the report)."""
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: pass\nprint(json.dumps(out))"
    )
    result = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, check=True
    )
    return dict(json.loads(result.stdout))
