"""POST /datasets against the corpus of bad files (``tests/shared/data/test_bad_files.py``):
each refused kind is a clear 4xx in the one error shape, carrying the loader's own message, and
leaves nothing behind; each accepted kind is stored byte for byte and can be trained on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.api.conftest import Api, MakeApi, assert_error
from tests.shared.data.test_bad_files import (
    ACCEPTED,
    CORPUS,
    REFUSED,
    base_csv,
    facts_of,
    loader_message,
)


def _state(api: Api) -> dict[str, Any]:
    """Everything an upload could leave behind: files (hidden ones too) in the data folder and
    the registry, what GET /datasets lists, the versions, and the trainings queued."""
    listed = api.client.get("/datasets")
    assert listed.status_code == 200, listed.text
    return {
        "data_dir": sorted(str(p.relative_to(api.data_dir)) for p in api.data_dir.rglob("*")),
        "models_dir": sorted(
            str(p.relative_to(api.settings.models_dir)) for p in api.settings.models_dir.rglob("*")
        ),
        "listed": [d["name"] for d in listed.json()["datasets"]],
        "versions": [v.version for v in api.registry.list_versions()],
        "queued": list(api.queue.submitted),
    }


def _upload(api: Api, name: str, content: bytes) -> Any:
    return api.client.post("/datasets", files={"file": (f"{name}.csv", content, "text/csv")})


def test_every_bad_file_is_a_clear_4xx_and_leaves_nothing(
    make_api: MakeApi, tmp_path: Path
) -> None:
    api = make_api()
    base = base_csv(tmp_path)
    problems: list[str] = []
    for kind in CORPUS:
        content = kind.build(base)
        before = _state(api)
        response = _upload(api, kind.name, content)
        if not kind.accepted:
            error = assert_error(response, 422, "invalid_dataset")
            local = tmp_path / f"{kind.name}.csv"
            local.write_bytes(content)
            expected = loader_message(local)
            assert kind.expect is not None
            if error["message"] != expected or kind.expect not in error["message"]:
                problems.append(f"{kind.name}: {error['message']!r}, loader: {expected!r}")
            if _state(api) != before:
                problems.append(f"{kind.name}: left something: {before} -> {_state(api)}")
            continue
        assert response.status_code == 201, f"{kind.name}: {response.text}"
        summary = response.json()
        stored = api.data_dir / summary["name"]
        facts = facts_of(content)
        got = {k: summary[k] for k in ("rows", "labelled", "invalid_values")}
        if got != facts:
            problems.append(f"{kind.name}: summary {got}, expected {facts}")
        # Stored as sent, byte for byte (a formula stays the text it was), never rewritten.
        if stored.read_bytes() != content:
            problems.append(f"{kind.name}: the stored file differs from the upload")
        if summary["sha256"] != hashlib.sha256(content).hexdigest():
            problems.append(f"{kind.name}: sha256 {summary['sha256']}")
        if summary["name"] not in _state(api)["listed"]:
            problems.append(f"{kind.name}: {summary['name']} not listed")
        job = api.client.post("/train", json={"dataset": summary["name"]})
        if job.status_code != 202:
            problems.append(f"{kind.name}: POST /train answered {job.status_code} {job.text}")
    assert not problems, "\n".join(problems)

    # One byte over a small upload limit: 413 before validation, nothing kept; the same
    # content without that byte is accepted.
    small = make_api(max_upload_bytes=len(base))
    before = _state(small)
    over = base + b"\n"  # a trailing blank line: still a valid CSV, one byte too many
    error = assert_error(_upload(small, "over", over), 413, "upload_too_large")
    assert error["details"] == {"max_bytes": len(base)}
    assert str(len(base)) in error["message"]
    assert _state(small) == before
    assert _upload(small, "exact", base).status_code == 201

    refused = len(REFUSED) + 1
    print(f"bad files: {refused} kinds refused, {len(ACCEPTED)} accepted (POST /datasets)")
