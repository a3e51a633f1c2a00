"""The folder tree is the design: these are its rules, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "api", "worker", "cli")
#: What the domain must not depend on: the web, the queue, the command line.
NOT_IN_SHARED = ("fastapi", "starlette", "celery", "kombu", "typer", "rich", "httpx", "uvicorn")
#: package -> the project packages it may import
ALLOWED = {
    "shared": {"shared"},
    "api": {"api", "shared"},
    "worker": {"worker", "shared"},
    "cli": {"cli", "shared", "api", "worker"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_the_design_allows(package: str) -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, path in modules().items()
        if name.split(".")[0] == package
        for target in imports(path)
        if target.split(".")[0] in PACKAGES and target.split(".")[0] not in ALLOWED[package]
    )
    assert wrong == []


def test_the_domain_imports_no_web_queue_or_cli_library() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, path in modules().items()
        if name.startswith("shared")
        for target in imports(path)
        if target.split(".")[0] in NOT_IN_SHARED
    )
    assert wrong == []


def test_there_are_no_import_cycles() -> None:
    known = modules()
    graph = {
        name: {target for target in imports(path) if target in known and target != name}
        for name, path in known.items()
    }
    # A package's __init__ is imported on the way to any of its modules; it is not an edge
    # back from them unless they import it by name.
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def test_no_module_is_too_long_to_read_in_one_sitting() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert long == {}
