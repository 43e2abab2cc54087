"""Who is changing a store right now: one small lease object per writer and per maintenance.

Maintenance (``compact``, ``repair-labels``) must not overlap a writer: compaction deletes
the segments it merged, so a writer still appending to one would lose its next blocks, and
a copy made before a writer's overwrite or delete would bring the old video back. So each
side writes its own lease first and looks for the other's second: of two that start at
once, at least one sees the other and steps back. Writers wait for maintenance to end;
maintenance refuses to start beside a writer.

A lease whose process is gone (same host, pid not running) or that its owner has not
renewed for ``STALE_AFTER_S`` (another host) no longer counts: a killed writer never blocks
a store for good.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from ._files import Files
from .errors import StoreError

LEASES = "writers"
STALE_AFTER_S = 3600.0
RENEW_EVERY_S = 60.0
_HOST = socket.gethostname()


@dataclass(frozen=True)
class Lease:
    """One process's claim to be writing (``writer``) or maintaining (``maintenance``)."""

    key: str
    kind: str
    what: str
    """What the holder is doing, for the messages of those it blocks."""
    pid: int
    host: str
    started: float
    renewed: float

    def describe(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.started))
        return f"{self.what} (pid {self.pid} on {self.host}, since {since})"

    def is_live(self, now: float | None = None) -> bool:
        if self.host == _HOST:
            return _running(self.pid)
        return (now or time.time()) - self.renewed < STALE_AFTER_S


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _encode(lease: Lease) -> bytes:
    return json.dumps(asdict(lease)).encode()


def _new(key: str, kind: str, what: str) -> Lease:
    now = time.time()
    return Lease(key, kind, what, os.getpid(), _HOST, now, now)


def read_leases(files: Files) -> list[Lease]:
    """Every live lease (stale ones are ignored, not removed: their owner may be slow)."""
    out = []
    for key in files.list(LEASES):
        raw = files.read(key)
        try:
            lease = Lease(**{**json.loads(raw or b""), "key": key})
        except (ValueError, TypeError):
            continue  # half-written by a foreign tool, or gone: not a lease
        if lease.is_live():
            out.append(lease)
        elif lease.host == _HOST:
            files.delete(key)  # its process is gone: nobody will release it
    return out


def acquire_writer(files: Files, what: str, wait_s: float, log: Callable[[str], None]) -> Lease:
    """A writer's lease, once no maintenance runs; waits up to ``wait_s`` for one to end."""
    deadline = time.monotonic() + wait_s
    while True:
        lease = _new(f"{LEASES}/writer-{uuid.uuid4().hex}.json", "writer", what)
        files.write(lease.key, _encode(lease))
        busy = [x for x in read_leases(files) if x.kind == "maintenance"]
        if not busy:
            return lease
        release(files, lease)
        if time.monotonic() >= deadline:
            raise StoreError(
                f"store {files.url} is busy: {busy[0].describe()} is running; try again later"
            )
        log(f"waiting for {busy[0].describe()} to finish before writing")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def acquire_maintenance(files: Files, what: str, force: bool = False) -> Lease:
    """A maintenance lease, refused while another maintenance or any writer runs
    (``force``: start anyway, for leases of processes known to be gone)."""
    lease = _new(f"{LEASES}/maintenance-{uuid.uuid4().hex}.json", "maintenance", what)
    files.write(lease.key, _encode(lease))
    others = [x for x in read_leases(files) if x.key != lease.key]
    busy = [x for x in others if x.kind == "maintenance"]
    writers = [x for x in others if x.kind == "writer"]
    if force or not (busy or writers):
        return lease
    release(files, lease)
    if busy:
        raise StoreError(f"store {files.url}: {busy[0].describe()} is already running")
    listed = "; ".join(w.describe() for w in writers[:3])
    more = f" and {len(writers) - 3} more" if len(writers) > 3 else ""
    raise StoreError(
        f"store {files.url} has {len(writers)} writer(s) running: {listed}{more}. "
        f"Run {what} when they have finished (or pass --force if they are gone)"
    )


def renew(files: Files, lease: Lease) -> Lease:
    """Mark the lease as still held (cheap to call often: writes at most once a minute)."""
    now = time.time()
    if now - lease.renewed < RENEW_EVERY_S:
        return lease
    lease = replace(lease, renewed=now)
    files.write(lease.key, _encode(lease))
    return lease


def release(files: Files, lease: Lease) -> None:
    files.delete(lease.key)
