"""The datasets a training can name: listing them, and uploading a new one."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import DatasetStoreDep, SettingsDep
from api.errors import error_responses
from api.limits import own_body_limit
from api.routes.params import link
from api.schemas.datasets import DatasetList, DatasetOut, DatasetSummaryOut, DatasetUploadForm
from api.security import ReadAccess, WriteAccess
from api.uploads import BlockingUploadReader, MultipartFileStream

router = APIRouter(prefix="/datasets", tags=["datasets"], dependencies=[ReadAccess])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": DatasetUploadForm.model_json_schema()}},
    }
}


def train_on(expression: str) -> dict[str, Any]:
    return {
        "TrainOnDataset": link(
            "/train", "post", "Train on this dataset.", request_body={"dataset": expression}
        )
    }


@router.get(
    "",
    response_model=DatasetList,
    responses={
        200: {
            "description": "The datasets, and the default one.",
            "links": train_on("$response.body#/default"),
        },
        **error_responses(503),
    },
    summary="Datasets available for training",
)
def list_datasets(datasets: DatasetStoreDep, settings: SettingsDep) -> DatasetList:
    return DatasetList(
        datasets=[
            DatasetOut(name=info.name, size_bytes=info.size_bytes, modified_at=info.modified_at)
            for info in datasets.list()
        ],
        default=settings.default_dataset,
    )


@router.post(
    "",
    dependencies=[WriteAccess],
    status_code=201,
    response_model=DatasetSummaryOut,
    responses={
        201: {
            "description": "Stored: `name` is what POST /train takes.",
            "links": train_on("$response.body#/name"),
        },
        **error_responses(413, 415, 422, 503),
    },
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a CDC case CSV",
)
@own_body_limit  # streamed under MAX_UPLOAD_BYTES (see api.uploads), not MAX_JSON_BODY_BYTES
async def upload_dataset(
    request: Request, datasets: DatasetStoreDep, settings: SettingsDep
) -> DatasetSummaryOut:
    """Multipart, field ``file`` (a file part: with a filename). Stored under a name the server
    chooses (the answer gives it), only if the loader accepts the file. Whether it does depends on
    the file's content, which the schema cannot describe: a file that is not a usable CDC case
    CSV is a 422 ``invalid_dataset`` with the loader's message.

    ``async`` only to read the body as it arrives (see :mod:`api.uploads`); the copy and the
    validation run in the threadpool.
    """
    stream = MultipartFileStream(request, settings.max_upload_bytes)
    filename = await stream.start()
    summary = await run_in_threadpool(
        datasets.store_upload,
        BlockingUploadReader(stream),
        filename,
        settings.max_upload_bytes,
        settings.chunk_rows,
    )
    return DatasetSummaryOut(**asdict(summary))
