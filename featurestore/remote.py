"""A local cache of a remote store: mirror it to a folder, then read the folder.

Every object of a store except ``featurestore.json`` is written once and never changed
(chunks, array metadata, commit records and metadata generations are new objects per writer
segment, block and change; ``compact`` writes a new segment and deletes the old; writers'
leases and asl-serve's training runs are not data and are not copied). So a mirror copies only the keys it
lacks, always re-reads the metadata, and drops the keys the remote no longer has: a rerun
after new commits fetches just those. Data objects are copied before commit records, so
even a half-finished mirror never shows a video whose arrays are not there yet.

fsspec's ``filecache::s3://...`` cannot be used instead: Zarr wraps a synchronous caching
filesystem in its own event loop, which clashes with s3fs's.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from dataclasses import dataclass

from ._files import Files, is_remote
from ._storage import META_KEY, RUNS
from .errors import NotAStoreError
from .index import COMMITS
from .leases import LEASES
from .store import FeatureStore, open_store

__all__ = ["MirrorStats", "cache_path", "mirror", "open_cached"]

_BATCH = 64  # objects fetched concurrently per request batch


@dataclass(frozen=True)
class MirrorStats:
    """What one ``mirror`` call did."""

    path: str
    """The local copy."""
    fetched: int
    fetched_bytes: int
    kept: int
    """Objects already in the cache (not fetched again)."""
    removed: int
    """Cached objects the remote no longer has (after ``compact``)."""


def cache_path(url: str, cache_dir: str) -> str:
    """Where ``url``'s mirror lives below ``cache_dir`` (one folder per remote store)."""
    name = re.sub(r"[^A-Za-z0-9._/-]", "_", url.replace("://", "/", 1)).strip("/")
    return os.path.join(os.path.abspath(cache_dir), *name.split("/"))


def _fetch(remote: Files, local: Files, keys: list[str]) -> int:
    """Copy ``keys`` (many objects per request batch, fetched concurrently by fsspec)."""
    total = 0
    for start in range(0, len(keys), _BATCH):
        batch = keys[start : start + _BATCH]
        paths = [posixpath.join(remote.root, k) for k in batch]
        blobs = remote.fs.cat(paths)
        for key, path in zip(batch, paths, strict=True):
            local.write(key, blobs[path])
            total += len(blobs[path])
    return total


def mirror(url: str, cache_dir: str, storage_options: dict | None = None) -> MirrorStats:
    """Bring the local copy of the store at ``url`` up to date; returns what was copied."""
    if not is_remote(url):
        raise ValueError(f"{url} is already local; open it directly")
    open_store(url, storage_options=storage_options)  # refuses anything that is not a store
    remote = Files(url, storage_options)
    path = cache_path(url, cache_dir)
    local = Files(path)
    skip = (f"{LEASES}/", f"{RUNS}/")
    wanted = [k for k in remote.list("") if k != META_KEY and not k.startswith(skip)]
    have = {posixpath.normpath(k) for k in local.list("") if not k.startswith(skip)} - {META_KEY}
    missing = [k for k in wanted if k not in have]
    commits = [k for k in missing if k.startswith(f"{COMMITS}/")]
    data = [k for k in missing if not k.startswith(f"{COMMITS}/")]
    stale = sorted(have - set(wanted), key=lambda k: not k.startswith(f"{COMMITS}/"))
    for key in stale:  # commit records first, so no video points at a deleted segment
        with contextlib.suppress(FileNotFoundError):  # another process got there first
            os.remove(os.path.join(path, *key.split("/")))
    nbytes = _fetch(remote, local, data) + _fetch(remote, local, commits)
    meta = remote.read(META_KEY)
    if meta is None:  # open_store found it above: someone deleted the store meanwhile
        raise NotAStoreError(f"{url} is not a feature store (no {META_KEY})")
    local.write(META_KEY, meta)
    return MirrorStats(path, len(missing), nbytes, len(wanted) - len(missing), len(stale))


def open_cached(
    url: str, cache_dir: str | None, storage_options: dict | None = None
) -> FeatureStore:
    """Open ``url`` read-only, through an up-to-date local mirror when ``cache_dir`` is set
    and the store is remote (local stores and ``cache_dir=None`` open directly)."""
    if not cache_dir or not is_remote(url):
        return open_store(url, storage_options=storage_options)
    return open_store(mirror(url, cache_dir, storage_options).path)
