"""Liveness, readiness and metrics: unauthenticated, for orchestrators and scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ..errors import error_responses
from ..schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Store and model are loaded",
    responses=error_responses(503),
)
async def readyz(request: Request):
    state = getattr(request.app.state, "serving", None)
    if state is None:
        return JSONResponse({"detail": "not ready: the store and model are not loaded yet"}, 503)
    return {"status": "ready", "upload": state.uploads.status}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Exposition format."}},
)
async def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
