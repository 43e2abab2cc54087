"""The store's metadata document, in generations: every change is a compare-and-swap.

``featurestore.json`` is generation 0, written once, exclusively, when the store is made.
A change (new labels, a feature set, a dropped stream) never rewrites a document: it writes
generation n+1 (``meta/<n+1>.json``) from generation n, with ``Files.create``, which only
one writer can win. The loser reads the winner's document, applies its change to that, and
tries the next generation. So two processes that add glosses at once never lose one, and a
label, once in the map, never names another gloss. The newest generation is the metadata.

``featurestore.json`` is then rewritten with the newest document too, for readers without
this package and older versions of it (a copy only: this package reads the generations).
"""

from __future__ import annotations

import json
import posixpath
import random
import time
from collections.abc import Callable

from ._files import Files
from ._version import __version__
from .errors import NotAStoreError, SchemaMismatchError, StoreError
from .schema import FORMAT_NAME, SCHEMA_VERSION

META_KEY = "featurestore.json"
GENERATIONS = "meta"
_PATIENCE_S = 120.0
"""Each lost race means another writer's change landed, so retries make progress; on object
stores a winner's object can take a moment to be readable after its conditional PUT."""

Change = Callable[[dict], dict | None]
"""From the newest document, the next one; None when it already says what was wanted."""


def generation_key(n: int) -> str:
    return META_KEY if n == 0 else f"{GENERATIONS}/{n:010d}.json"


def dump(meta: dict) -> bytes:
    return json.dumps(meta, indent=1, sort_keys=True).encode()


def create_meta(files: Files, meta: dict) -> bool:
    """Write generation 0 of a new store; False when another process made the store first."""
    return files.create(META_KEY, dump(meta))


def _generations(files: Files) -> list[int]:
    names = [posixpath.basename(k) for k in files.list(GENERATIONS)]
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())


def newest_generation(files: Files) -> int:
    """The newest generation's number, from a listing alone (0: only featurestore.json)."""
    found = _generations(files)
    return found[-1] if found else 0


def read_meta(files: Files, url: str) -> tuple[int, dict]:
    """The newest generation's number and document."""
    found = _generations(files)
    for n in reversed(found):  # newest first; a generation never disappears, but be lenient
        meta = _read(files, url, n)
        if meta is not None:
            return _newest_from(files, url, n, meta)
    meta = _read(files, url, 0)
    if meta is None:
        if not files.exists():
            raise StoreError(f"no feature store at {url} (path does not exist)")
        raise NotAStoreError(f"{url} is not a feature store (no {META_KEY})")
    return _newest_from(files, url, 0, meta)


def update_meta(
    files: Files, url: str, change: Change, current: tuple[int, dict]
) -> tuple[int, dict]:
    """Apply ``change`` to the newest document and write it as the next generation.

    ``current`` is the generation the caller holds; if another writer got further, the
    change is applied again to theirs. Returns the generation the store is at afterwards.
    """
    n, meta = current
    deadline, pause = time.monotonic() + _PATIENCE_S, 0.001
    while time.monotonic() < deadline:
        new = change(meta)
        if new is None:
            return n, meta
        new = {**new, "generation": n + 1}
        if files.create(generation_key(n + 1), dump(new)):
            _copy_to_root(files, new)
            return n + 1, new
        was = n
        n, meta = _newest_from(files, url, n, meta)
        pause = 0.001 if n > was else min(2 * pause, 0.25)  # not readable yet: back off
        time.sleep(random.uniform(0, pause))  # and spread writers that keep colliding
    raise StoreError(
        f"store {url}: could not write metadata generation {n + 1} in {_PATIENCE_S:g} s "
        "(it exists but cannot be read); try again"
    )


def _copy_to_root(files: Files, meta: dict) -> None:
    """Keep ``featurestore.json`` at (about) the newest generation; a writer that lags
    behind another leaves it one generation old until the next change, never worse."""
    raw = files.read(META_KEY)
    try:
        have = int(json.loads(raw).get("generation", 0)) if raw else 0
    except (ValueError, TypeError, AttributeError):
        have = 0
    if have < meta["generation"]:
        files.write(META_KEY, dump(meta))


def _newest_from(files: Files, url: str, n: int, meta: dict) -> tuple[int, dict]:
    """Follow generations n+1, n+2, ... while they exist."""
    while True:
        newer = _read(files, url, n + 1)
        if newer is None:
            return n, meta
        n, meta = n + 1, newer


def _read(files: Files, url: str, n: int) -> dict | None:
    raw = files.read(generation_key(n))
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise NotAStoreError(f"{url}: {generation_key(n)} is not valid JSON ({e})") from e
    if meta.get("format") != FORMAT_NAME:
        raise NotAStoreError(
            f"{url} is not a feature store ({generation_key(n)} has no format {FORMAT_NAME!r})"
        )
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise SchemaMismatchError(
            f"store {url} has schema version {meta.get('schema_version')}, "
            f"this featurestore {__version__} reads version {SCHEMA_VERSION}"
        )
    return meta
