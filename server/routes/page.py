"""The web page at `/`: plain HTML, CSS and native ES modules shipped in the package (no
build step, no CDN). It calls the same /v1 routes as any client; the files are public, the
data behind them needs the API key when the server has one."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
JAVASCRIPT = "text/javascript; charset=utf-8"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


class PageFiles(StaticFiles):
    """The page's files under /static.

    Browsers refuse a module script whose type is not JavaScript, and the system's MIME
    table may say otherwise for `.js` (Windows' registry often says text/plain), so the
    type is set here. `no-cache` makes the browser revalidate (a 304 by ETag) on each load:
    after an upgrade, old and new modules never mix."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
        status_code: int = 200,
    ) -> Response:  # fmt: skip
        response = super().file_response(full_path, stat_result, scope, status_code)
        if str(full_path).endswith(".js"):
            response.headers["content-type"] = JAVASCRIPT
        response.headers["Cache-Control"] = "no-cache"
        return response
