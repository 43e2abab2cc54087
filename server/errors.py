"""Errors: every failure is JSON `{"detail": ...}`; a traceback never reaches the client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from featurestore import VideoNotFoundError

from .logs import redact

log = logging.getLogger("server")


class ErrorResponse(BaseModel):
    """What every error response carries."""

    detail: str | list | dict


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given status codes."""
    descriptions = {
        401: "Missing or wrong X-API-Key.",
        403: "Writes are off (start asl-serve with --allow-writes).",
        404: "Unknown video, stream, job or route.",
        409: "Conflict: the id is taken, a job is training, nothing to cancel or roll back.",
        413: "Request body too large, or clip too long.",
        415: "Not a video clip or a landmark sequence.",
        422: "Bad JSON or parameters.",
        503: "Store and model are not loaded yet, no model trained yet, or the encoder is "
        "unavailable.",
    }
    return {c: {"model": ErrorResponse, "description": descriptions[c]} for c in codes}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The default handler echoes the raw input back (`input`); a multi-megabyte upload
    # or binary body should not come back to the client, so keep location and message.
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException):
    # Starlette and FastAPI answer 400 for a body they cannot parse (bad encoding, broken
    # multipart); our contract is 422 for any bad body or parameter.
    if exc.status_code == 400:
        return JSONResponse({"detail": f"bad request body: {exc.detail}"}, status_code=422)
    if isinstance(exc.detail, str):  # details may quote what the client sent: keys cut
        exc.detail = redact(exc.detail)
    return await http_exception_handler(request, exc)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


async def _gone(request: Request, exc: VideoNotFoundError) -> JSONResponse:
    """A video deleted between the route's check and its read (the index was refreshed)."""
    return JSONResponse({"detail": str(exc)}, status_code=404)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types a handler's exception as Exception; these take the subclass they handle.
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(VideoNotFoundError, _gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unhandled)
