"""Names a package loads on first use (PEP 562), so that importing it does not import them:
``import featurestore`` skips the import formats, ``featurestore.extract`` skips torch."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that imports ``name`` from module ``names[name]``
    (relative to the package: ``"x"`` is ``package.x``, ``".x"`` its sibling) on first use,
    and keeps it, so the next use is an ordinary attribute."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{names[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
