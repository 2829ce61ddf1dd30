"""OpenAI's Files and Batches routes: HTTP in, the file store and batch objects out."""

from __future__ import annotations

from anyio import to_thread
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from chatq.errors import InvalidRequest
from tasks.gateway.errors import HTTPError
from tasks.gateway.guard import read_json
from tasks.gateway.state import gateway_of, route

__all__ = ["ROUTES"]

_CHUNK = 1 << 16


@route
async def upload(request: Request) -> Response:
    """`POST /v1/files`: a multipart form with `file` and `purpose`."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise HTTPError(415, "upload a file as multipart/form-data (fields 'file' and "
                        "'purpose')", code="unsupported_media_type")  # fmt: skip
    files = gateway_of(request).files
    # The parser spools the upload to a temporary file as it arrives; it is copied
    # from there in chunks: no upload is ever held whole in memory.
    async with request.form(max_files=1, max_fields=8, max_part_size=1 << 20) as form:
        purpose = form.get("purpose")
        upload = form.get("file")
        if not isinstance(purpose, str) or not purpose:
            raise InvalidRequest("purpose is required (use 'batch')", field="purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("file is required (a multipart file part)", field="file")

        async def chunks():
            while chunk := await upload.read(_CHUNK):
                yield chunk

        obj = await files.create(chunks(), filename=upload.filename or "upload.jsonl",
                                 purpose=purpose)  # fmt: skip
    return JSONResponse(obj.to_dict())


@route
async def list_files(request: Request) -> Response:
    purpose = request.query_params.get("purpose")
    files = await to_thread.run_sync(gateway_of(request).files.list, purpose)
    return JSONResponse({"object": "list", "data": [f.to_dict() for f in files],
                         "has_more": False})  # fmt: skip


@route
async def get_file(request: Request) -> Response:
    obj = gateway_of(request).files.get(request.path_params["file_id"])
    return JSONResponse(obj.to_dict())


@route
async def file_content(request: Request) -> Response:
    files = gateway_of(request).files
    file_id = request.path_params["file_id"]
    obj = files.get(file_id)
    return FileResponse(files.path(file_id), media_type="application/jsonl",
                        filename=obj.filename)  # fmt: skip


@route
async def delete_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    gateway_of(request).files.delete(file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})


@route
async def create_batch(request: Request) -> Response:
    body = await read_json(request)
    doc = await to_thread.run_sync(gateway_of(request).openai_batches.create, body)
    return JSONResponse(doc)


@route
async def get_batch(request: Request) -> Response:
    batches = gateway_of(request).openai_batches
    doc = await to_thread.run_sync(batches.get, request.path_params["batch_id"])
    return JSONResponse(doc)


@route
async def list_batches(request: Request) -> Response:
    after = request.query_params.get("after") or None
    raw = request.query_params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest(f"limit must be an integer from 1 to 100, not {raw!r}",
                             field="limit")  # fmt: skip
    batches = gateway_of(request).openai_batches
    page = await to_thread.run_sync(lambda: batches.list(after=after, limit=int(raw)))
    return JSONResponse(page)


@route
async def cancel_batch(request: Request) -> Response:
    batches = gateway_of(request).openai_batches
    doc = await to_thread.run_sync(batches.cancel, request.path_params["batch_id"])
    return JSONResponse(doc)


ROUTES = [
    Route("/v1/files", upload, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", get_file, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
    Route("/v1/batches", create_batch, methods=["POST"]),
    Route("/v1/batches", list_batches, methods=["GET"]),
    Route("/v1/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
]
