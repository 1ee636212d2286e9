"""Reading a request body within a size limit, without ever holding more than the limit:
a declared `Content-Length` over it is refused before anything is read, and a body without
one (chunked) is read piece by piece and refused as soon as it passes the limit."""

from __future__ import annotations

from starlette.requests import Request

from sluiceway.wire import BodyTooLarge


async def read_body(request: Request, max_body: int) -> bytes:
    """The whole body, or BodyTooLarge (HTTP 413) once more than `max_body` bytes came.
    The rest of a refused body is never read into memory (uvicorn discards it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body:
        raise BodyTooLarge(int(declared), max_body, decompressed=False)
    body = bytearray()
    async for piece in request.stream():
        if len(body) + len(piece) > max_body:
            raise BodyTooLarge(None, max_body, decompressed=False)
        body += piece
    return bytes(body)
