"""The web page at `/`: plain HTML, CSS and JavaScript shipped in the package (no build
step, no CDN). It calls the same /v1 routes as any client; the files are public, the data
behind them needs the API key when the server has one."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
