"""Builds the stand-in images (:mod:`tests.deploy.standin.images`) on a Docker engine that
cannot pull: a Debian 12 base made once with ``debootstrap`` from the mirror this machine's apt
uses, then one ``docker build`` per entry.

Every image we build carries the hash of its recipe in the label :data:`RECIPE_LABEL` (the
debootstrap command and clean-up for the base; the Dockerfile, its files and the parent
image's id for an entry). A tag whose label matches is reused as it is, so a warm run builds
nothing; a tag that exists without our label is a real image (pulled elsewhere) and is never
replaced.

    python -m tests.deploy.standin      # build what docker-compose.yml and Dockerfile name
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.engine import Engine
from tests.deploy.standin.images import BASE, StandIn, standins, unavailable_reason

RECIPE_LABEL = "rvt.standin.recipe"
SUITE = "bookworm"
DEBOOTSTRAP = ("debootstrap", "--variant=minbase", SUITE)
#: What a container image does not need: package lists, caches, documentation, locales.
BASE_CLEANUP = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
#: As Debian's own container images do: no documentation installed later, and no service
#: started by a package's maintainer script during a build.
DPKG_EXCLUDES = "path-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n" + (
    "path-exclude=/usr/share/info/*\npath-exclude=/usr/share/locale/*\n"
)
POLICY_RC = "#!/bin/sh\nexit 101\n"
BASE_CHANGES = (
    'CMD ["bash"]',
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
)


class ToolMissing(RuntimeError):
    """A program the base image is made with is not installed."""


@dataclass(frozen=True)
class Built:
    tag: str
    #: "built", "cached" (our label matched) or "present" (an image we did not build)
    how: str
    seconds: float
    size_bytes: int


def _hash(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:32]


def base_recipe() -> str:
    return _hash(" ".join(DEBOOTSTRAP), *BASE_CLEANUP, DPKG_EXCLUDES, POLICY_RC, *BASE_CHANGES)


def entry_recipe(entry: StandIn, parent_id: str) -> str:
    files = [part for name in sorted(entry.files) for part in (name, *_file_parts(entry, name))]
    return _hash(entry.dockerfile(), parent_id, *files)


def _file_parts(entry: StandIn, name: str) -> tuple[bytes, str]:
    content, mode = entry.files[name]
    return content, oct(mode)


def debian_mirror(sources: Iterable[Path] | None = None) -> str:
    """The Debian mirror this machine's apt uses for the main archive (read at run time and
    written nowhere: the base image's own sources.list is debootstrap's)."""
    default = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources or default:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":  # deb822 stanzas: Types, URIs, Suites, ...
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.MULTILINE))
                if (
                    "deb" in fields.get("Types", "").split()
                    and SUITE in fields.get("Suites", "").split()
                ):
                    return fields["URIs"].split()[0]
        elif path.suffix == ".list":
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    raise RuntimeError(f"no Debian {SUITE} mirror in this machine's apt sources")


def _labelled(engine: Engine, tag: str) -> tuple[str, str | None] | None:
    """(image id, our recipe label or None) of ``tag``, or None when there is no such image."""
    result = engine.run(
        "image",
        "inspect",
        "--format",
        f'{{{{.Id}}}} {{{{index .Config.Labels "{RECIPE_LABEL}"}}}}',
        tag,
        check=False,
    )
    if result.returncode != 0:
        return None
    image_id, _, label = result.stdout.strip().partition(" ")
    return image_id, (label if label and label != "<no value>" else None)


def _drop_replaced(engine: Engine, previous: tuple[str, str | None] | None) -> None:
    """Remove the stand-in a rebuild replaced (untagged now), unless something still uses it."""
    if previous is not None:
        engine.run("rmi", previous[0], check=False)


def _size(engine: Engine, tag: str) -> int:
    return int(engine.run("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def build_base(engine: Engine) -> Built:
    """The Debian base: ``debootstrap`` into a temporary folder, cleaned, imported."""
    recipe = base_recipe()
    started = time.monotonic()
    found = _labelled(engine, BASE)
    if found is not None and found[1] == recipe:
        return Built(BASE, "cached", time.monotonic() - started, _size(engine, BASE))
    if shutil.which("debootstrap") is None:
        raise ToolMissing("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="rvt-standin-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            [*DEBOOTSTRAP, str(root), debian_mirror()],
            check=True,
            capture_output=True,
            timeout=900,
        )
        for relative in BASE_CLEANUP:
            target = root / relative
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
        (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text(DPKG_EXCLUDES)
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC)
        policy.chmod(0o755)
        archive = Path(tmp) / "root.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."],
            check=True,
            capture_output=True,
            timeout=300,
        )
        changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
        engine.run(
            "import",
            *changes,
            "--change",
            f"LABEL {RECIPE_LABEL}={recipe}",
            str(archive),
            BASE,
            timeout=300,
        )
    _drop_replaced(engine, found)
    return Built(BASE, "built", time.monotonic() - started, _size(engine, BASE))


def build_entry(engine: Engine, entry: StandIn) -> Built:
    started = time.monotonic()
    parent = _labelled(engine, entry.parent)
    if parent is None:
        raise RuntimeError(f"{entry.tag}: its parent {entry.parent} is missing")
    found = _labelled(engine, entry.tag)
    recipe = entry_recipe(entry, parent[0])
    if found is not None and found[1] == recipe:
        return Built(entry.tag, "cached", time.monotonic() - started, _size(engine, entry.tag))
    with tempfile.TemporaryDirectory(prefix="rvt-standin-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(entry.dockerfile())
        for name, (content, mode) in entry.files.items():
            (context / name).write_bytes(content)
            (context / name).chmod(mode)
        result = engine.run(
            "build",
            "--force-rm",
            "--label",
            f"{RECIPE_LABEL}={recipe}",
            "-t",
            entry.tag,
            str(context),
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"building {entry.tag} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
    _drop_replaced(engine, found)
    return Built(entry.tag, "built", time.monotonic() - started, _size(engine, entry.tag))


def ensure(engine: Engine, images: Iterable[str]) -> tuple[list[Built], dict[str, str]]:
    """Build (or reuse) the stand-in of every image in ``images``, with the entries they are
    built on. Returns what was done, and the images left out with the reason."""
    table = standins()
    wanted: set[str] = set()
    skipped: dict[str, str] = {}
    for image in images:
        reason = unavailable_reason(image)
        if reason is not None:
            skipped[image] = reason
            continue
        if image not in table:
            raise RuntimeError(
                f"no stand-in for {image}: add an entry to tests/deploy/standin/images.py"
            )
        while image in table:
            wanted.add(image)
            image = table[image].parent
    done: list[Built] = []
    for tag in (tag for tag in table if tag in wanted):  # the table's order: parents first
        found = _labelled(engine, tag)
        if found is not None and found[1] is None:  # a real image: use it as it is
            done.append(Built(tag, "present", 0.0, _size(engine, tag)))
            continue
        if table[tag].parent == BASE and not any(built.tag == BASE for built in done):
            done.append(build_base(engine))
        done.append(build_entry(engine, table[tag]))
    return done, skipped
