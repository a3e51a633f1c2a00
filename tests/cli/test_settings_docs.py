""".env.example and the README's settings table match the Settings class, field for field."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from pydantic import Field

from cli import settings_docs
from cli.settings_docs import ENV_EXAMPLE, README, env_example, markdown_table, readme_with_table
from shared.settings import Settings


def test_env_example_is_generated_from_settings() -> None:
    assert ENV_EXAMPLE.read_text() == env_example(), (
        ".env.example is stale: python -m cli.settings_docs --write"
    )


def test_readme_table_is_generated_from_settings() -> None:
    readme = README.read_text()
    assert readme_with_table(readme) == readme, (
        "the README settings table is stale: python -m cli.settings_docs --write"
    )


def test_every_setting_is_listed_once_with_its_default_and_meaning() -> None:
    example = ENV_EXAMPLE.read_text()
    table = markdown_table()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs a one-line description"
        variable = name.upper()
        assert len(re.findall(rf"^# {variable}=", example, re.MULTILINE)) == 1, variable
        assert table.count(f"| `{variable}` |") == 1, variable
    defaults = Settings.model_validate({})
    assert f"# CHUNK_ROWS={defaults.chunk_rows}\n" in example
    assert "| `API_KEY` | (unset) |" in table


def test_the_example_values_are_the_defaults_settings_would_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Uncommenting every line of the example changes nothing."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    values = dict(
        line[2:].split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^# [A-Z_]+=", line)
    )
    for name, value in values.items():
        if value:
            monkeypatch.setenv(name, value)
    assert Settings(_env_file=None) == Settings.model_construct()  # type: ignore[call-arg]


def test_a_new_setting_without_docs_makes_the_check_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    class Grown(Settings):
        brand_new: int = Field(3, description="A setting added without regenerating the docs.")

    monkeypatch.setattr(settings_docs, "Settings", Grown)
    assert ENV_EXAMPLE.read_text() != env_example()
    assert readme_with_table(README.read_text()) != README.read_text()
    assert settings_docs.main(["--check"]) == 1


def test_a_setting_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Undocumented(Settings):
        mystery: int = 3

    monkeypatch.setattr(settings_docs, "Settings", Undocumented)
    with pytest.raises(ValueError, match="mystery"):
        env_example()


def test_the_check_command_passes_on_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.settings_docs", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
