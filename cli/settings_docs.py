"""``.env.example`` and the README's settings table, generated from :class:`Settings`, so
neither can drift from it (a test fails when either differs from what this module writes).

    .venv/bin/python -m cli.settings_docs --write    # rewrite both after changing Settings
    .venv/bin/python -m cli.settings_docs --check    # exit 1 if either is stale
"""

from __future__ import annotations

import argparse
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
#: The table is the first one after this heading in the README.
README_HEADING = "## Settings"
TABLE_HEADER = "| variable | default | meaning |"


def _fields() -> list[tuple[str, FieldInfo]]:
    return list(Settings.model_fields.items())


def _value_text(value: Any) -> str:
    """A default as it is written in an environment variable."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _description(name: str, field: FieldInfo) -> str:
    if not field.description:
        raise ValueError(f"Settings.{name} has no description: give it a one-line one")
    return " ".join(field.description.split())


def env_example() -> str:
    lines = [
        "# Every setting, with its default. Copy to .env (read by every process, and by",
        "# docker compose for the variables docker-compose.yml passes on) and uncomment what",
        "# you change: a setting left commented keeps its default (and `rvt serve` then starts",
        "# a private Redis unless REDIS_URL is set).",
        "# Generated from shared/settings.py: python -m cli.settings_docs --write",
        "",
    ]
    for name, field in _fields():
        lines.append(f"# {_description(name, field)}")
        lines.append(f"# {name.upper()}={_value_text(field.default)}")
        lines.append("")
    return "\n".join(lines[:-1]) + "\n"


def markdown_table() -> str:
    lines = [TABLE_HEADER, "|---|---|---|"]
    for name, field in _fields():
        value = _value_text(field.default)
        shown = f"`{value}`" if value else "(unset)"
        lines.append(f"| `{name.upper()}` | {shown} | {_description(name, field)} |")
    return "\n".join(lines) + "\n"


def readme_with_table(readme: str) -> str:
    """The README with the table under :data:`README_HEADING` replaced by the generated one."""
    lines = readme.splitlines(keepends=True)
    try:
        heading = next(i for i, line in enumerate(lines) if line.rstrip() == README_HEADING)
        start = next(i for i in range(heading, len(lines)) if lines[i].startswith("| variable "))
    except StopIteration:
        raise ValueError(f"README.md has no table under {README_HEADING!r}") from None
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join([*lines[:start], markdown_table(), *lines[end:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.settings_docs")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite .env.example and README")
    action.add_argument("--check", action="store_true", help="exit 1 if either is stale")
    action.add_argument("--env-example", action="store_true", help="print .env.example")
    action.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args(argv)
    if args.env_example:
        sys.stdout.write(env_example())
        return 0
    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    readme = README.read_text(encoding="utf-8")
    wanted = {ENV_EXAMPLE: env_example(), README: readme_with_table(readme)}
    stale = [
        path
        for path, text in wanted.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    if args.check:
        for path in stale:
            print(f"{path.name} is stale: python -m cli.settings_docs --write", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
