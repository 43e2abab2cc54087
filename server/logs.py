"""Log lines never carry an API key.

Browsers give the WebSocket its key as `?api_key=`, and careless clients do the same on
HTTP routes, so URLs in uvicorn's access and connection lines may hold one. asl-serve
configures logging with formatters that cut the value of every `api_key` parameter (in any
case, percent-encoded or not) from each line they write, tracebacks included, and sends
the app's own lines (logger "server") through them too.
"""

from __future__ import annotations

import copy
import logging
import re

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter, DefaultFormatter


def _spelt_any_way(name: str) -> str:
    """A pattern for `name` with any of its characters percent-encoded."""
    return "".join(f"(?:{re.escape(c)}|%{ord(c):02x})" for c in name)


KEY_PARAMETER = re.compile(rf"({_spelt_any_way('api_key')}=)[^&\s\"'#]*", re.IGNORECASE)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with the value of every `api_key=` replaced by ***."""
    return KEY_PARAMETER.sub(rf"\g<1>{REDACTED}", text)


class RedactingFormatter(DefaultFormatter):
    """uvicorn's default formatter, keys cut."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingAccessFormatter(AccessFormatter):
    """uvicorn's access-log formatter, keys cut."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_config(level: str = "info") -> dict:
    """uvicorn's logging config with the redacting formatters; the app's logger "server"
    and any other library's warnings go through them as well."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["default"]["()"] = f"{__name__}.RedactingFormatter"
    config["formatters"]["access"]["()"] = f"{__name__}.RedactingAccessFormatter"
    config["loggers"]["server"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
