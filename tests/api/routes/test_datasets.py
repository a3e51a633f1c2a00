"""GET /datasets and the streamed upload of POST /datasets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from shared.data.store import UPLOAD_PREFIX
from tests.api.conftest import DEFAULT_DATASET, Api, MakeApi, assert_error
from tests.conftest import MakeDataset

BOUNDARY = "rvt-test-boundary"


def _folder(api: Api) -> list[str]:
    return sorted(path.name for path in api.data_dir.iterdir())


def _multipart(content: bytes, filename: str = "cases.csv", field: str = "file") -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def _chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_list_shows_the_datasets_and_the_default(api: Api) -> None:
    response = api.client.get("/datasets")
    assert response.status_code == 200
    body = response.json()
    assert body["default"] == DEFAULT_DATASET
    (entry,) = body["datasets"]
    assert entry["name"] == DEFAULT_DATASET
    assert entry["size_bytes"] == (api.data_dir / DEFAULT_DATASET).stat().st_size
    assert entry["modified_at"]


def test_upload_stores_a_valid_file_under_a_server_chosen_name(
    api: Api, make_dataset: MakeDataset
) -> None:
    content = make_dataset(5_000, 3).read_bytes()
    response = api.client.post(
        "/datasets", files={"file": ("../../etc/passwd.csv", content, "text/csv")}
    )
    assert response.status_code == 201, response.text
    summary = response.json()
    assert re.fullmatch(r"passwd-[0-9a-f]{8}\.csv", summary["name"])
    assert summary["rows"] == 5_000
    assert summary["labelled"] == summary["positives"] + summary["negatives"] > 0
    assert summary["sha256"] == hashlib.sha256(content).hexdigest()
    assert summary["size_bytes"] == len(content)
    assert set(summary["invalid_values"]) >= {"sex", "age_group"}
    assert (api.data_dir / summary["name"]).read_bytes() == content
    assert _folder(api) == sorted([DEFAULT_DATASET, summary["name"]])
    listed = [d["name"] for d in api.client.get("/datasets").json()["datasets"]]
    assert summary["name"] in listed
    # ...and it can be trained on by that name
    job = api.client.post("/train", json={"dataset": summary["name"]})
    assert job.status_code == 202, job.text


def test_two_uploads_of_one_filename_get_two_names(api: Api, make_dataset: MakeDataset) -> None:
    content = make_dataset(5_000, 3).read_bytes()
    names = {
        api.client.post("/datasets", files={"file": ("data.csv", content)}).json()["name"]
        for _ in range(2)
    }
    assert len(names) == 2


def test_a_streamed_upload_without_content_length_works(
    api: Api, make_dataset: MakeDataset
) -> None:
    content = make_dataset(5_000, 3).read_bytes()
    response = api.client.post(
        "/datasets",
        content=_chunks(_multipart(content)),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 201, response.text
    assert (api.data_dir / response.json()["name"]).read_bytes() == content


def test_a_bad_csv_is_422_with_the_loaders_message_and_leaves_nothing(api: Api) -> None:
    response = api.client.post(
        "/datasets", files={"file": ("bad.csv", b"name,city\nann,paris\n", "text/csv")}
    )
    error = assert_error(response, 422, "invalid_dataset")
    assert "required columns missing" in error["message"]
    assert _folder(api) == [DEFAULT_DATASET]


def test_a_file_with_one_outcome_only_is_422(api: Api, make_dataset: MakeDataset) -> None:
    frame = pd.read_csv(make_dataset(5_000, 3), dtype=str, keep_default_na=False)
    body = frame[frame["death_yn"] != "Yes"].to_csv(index=False).encode()
    error = assert_error(
        api.client.post("/datasets", files={"file": ("one.csv", body)}), 422, "invalid_dataset"
    )
    assert "both Yes and No" in error["message"]
    assert _folder(api) == [DEFAULT_DATASET]


def test_an_empty_file_is_422(api: Api) -> None:
    error = assert_error(
        api.client.post("/datasets", files={"file": ("e.csv", b"")}), 422, "invalid_dataset"
    )
    assert "empty" in error["message"]
    assert _folder(api) == [DEFAULT_DATASET]


def test_too_big_is_413_and_leaves_nothing(make_api: MakeApi, make_dataset: MakeDataset) -> None:
    api = make_api(max_upload_bytes=100_000)
    content = make_dataset(5_000, 3).read_bytes()
    assert len(content) > 200_000
    response = api.client.post("/datasets", files={"file": ("big.csv", content)})
    error = assert_error(response, 413, "upload_too_large")
    assert error["details"] == {"max_bytes": 100_000}
    assert _folder(api) == [DEFAULT_DATASET]


def test_too_big_without_content_length_is_413_as_soon_as_crossed(
    make_api: MakeApi, make_dataset: MakeDataset
) -> None:
    api = make_api(max_upload_bytes=100_000)
    content = make_dataset(5_000, 3).read_bytes()
    response = api.client.post(
        "/datasets",
        content=_chunks(_multipart(content)),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert_error(response, 413, "upload_too_large")
    assert _folder(api) == [DEFAULT_DATASET]


def test_just_under_the_limit_is_accepted(make_api: MakeApi, make_dataset: MakeDataset) -> None:
    content = make_dataset(5_000, 3).read_bytes()
    api = make_api(max_upload_bytes=len(content))
    response = api.client.post("/datasets", files={"file": ("ok.csv", content)})
    assert response.status_code == 201, response.text


def test_a_form_without_the_file_field_is_422(api: Api) -> None:
    response = api.client.post("/datasets", files={"upload": ("x.csv", b"a,b\n")})
    error = assert_error(response, 422, "invalid_upload")
    assert "'file'" in error["message"]
    assert _folder(api) == [DEFAULT_DATASET]


def test_a_body_that_ends_inside_the_file_is_422(api: Api) -> None:
    truncated = _multipart(b"x" * 50_000)[:30_000]
    response = api.client.post(
        "/datasets",
        content=truncated,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert_error(response, 422, "invalid_upload")
    assert _folder(api) == [DEFAULT_DATASET]


def test_not_multipart_is_415(api: Api) -> None:
    response = api.client.post("/datasets", json={"file": "a,b"})
    assert_error(response, 415, "unsupported_media_type")


def test_multipart_without_boundary_is_422(api: Api) -> None:
    response = api.client.post(
        "/datasets", content=b"x", headers={"content-type": "multipart/form-data"}
    )
    assert_error(response, 422, "invalid_upload")


def test_an_upload_is_staged_inside_the_folder_and_nothing_is_left(
    api: Api, tmp_path: Path
) -> None:
    """While the body streams in, its bytes are in a hidden file in the datasets folder (so
    publishing is an atomic link); once it is refused, that file is gone and nothing was left
    anywhere else. The app is called as ASGI, so the folder is looked at between the chunks
    it reads."""
    before = set(tmp_path.rglob("*"))
    chunks = list(_chunks(_multipart(b"a,b\n" + b"1,2\n" * 20_000)))  # refused once read
    staged: list[list[str]] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        staged.append([p.name for p in api.data_dir.glob(f"{UPLOAD_PREFIX}*")])
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/datasets", "raw_path": b"/datasets", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
    }  # fmt: skip
    asyncio.run(asyncio.wait_for(api.client.app(scope, receive, send), timeout=30))
    assert sent[0]["status"] == 422
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]["code"] == (
        "invalid_dataset"
    )
    assert any(staged), "no staging file was seen in the datasets folder during the upload"
    assert set(tmp_path.rglob("*")) == before
