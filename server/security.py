"""Optional API key: when the settings carry one, /v1 routes need header `X-API-Key`. Write
routes also need the server to allow writes (`--allow-writes`)."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

# auto_error=False: a missing header is our 401 with a clear detail, not FastAPI's 403.
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def require_api_key(request: Request, key: str | None = Security(api_key_header)) -> None:
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    if key is None:
        raise HTTPException(401, "missing X-API-Key header", {"WWW-Authenticate": "APIKey"})
    if not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "wrong API key", {"WWW-Authenticate": "APIKey"})


WRITES_OFF = (
    "writes are off: start asl-serve with --allow-writes (or ASL_ALLOW_WRITES=1) to add "
    "takes and train"
)


async def require_writes(request: Request) -> None:
    """Write routes answer 403, saying how to turn writes on, on a server without them."""
    if not request.app.state.settings.allow_writes:
        raise HTTPException(403, WRITES_OFF)
