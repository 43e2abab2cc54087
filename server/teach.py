"""Adding and deleting takes: the service's writes to the store.

Each write takes a writer of its own and closes it before answering, so a take is committed
(its commit record written and fsynced after its arrays) before the 201 goes out and a
`kill -9` right after loses nothing; between writes no lease is held, so `featurestore
compact` runs whenever no write is in flight. Writes go one at a time through a thread and a
store handle of their own; the serving index is then refreshed, so the next request sees
the take (or no longer sees it).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import numpy as np
from fastapi import HTTPException

from featurestore import FeatureStore, InvalidVideoError, StoreError, open_store, validate_video_id
from featurestore._test_hold import hold_after

from .runs import now

VAL_EVERY = 5
"""The 5th, 10th, ... take of a gloss goes to val, so every gloss of 5 or more takes has
some there."""
WRITE_WAIT_S = 30.0
"""How long a write waits for a running compact before it answers 503."""
SPLIT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def check_gloss(gloss: str, max_chars: int) -> str:
    """The gloss as stored (trimmed); 422 for an empty one, a long one, control characters."""
    gloss = gloss.strip()
    if not gloss:
        raise HTTPException(422, "gloss is empty: name the sign this take shows")
    if len(gloss) > max_chars:
        raise HTTPException(422, f"gloss is {len(gloss)} characters long; at most {max_chars}")
    if any(not c.isprintable() for c in gloss):
        raise HTTPException(422, "gloss has control characters (newlines, tabs...)")
    return gloss


def check_split(split: str | None) -> str | None:
    if split is not None and not SPLIT_PATTERN.match(split):
        raise HTTPException(422, f"split {split[:40]!r}: use 1-32 characters from A-Z a-z 0-9 _ -")
    return split


def check_new_id(video_id: str | None) -> str | None:
    if video_id is None:
        return None
    try:
        return validate_video_id(video_id)
    except InvalidVideoError as exc:
        raise HTTPException(422, str(exc)) from None


def new_take_id(gloss: str) -> str:
    """`<gloss>-<UTC time>-<random>`: readable, sortable per gloss, never taken."""
    slug = _UNSAFE.sub("_", gloss).strip("_")[:60] or "take"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{slug}-{stamp}-{uuid.uuid4().hex[:6]}"


def split_for(store: FeatureStore, gloss: str) -> str:
    """val when the gloss has fewer val takes than one in every VAL_EVERY of its takes
    (counting this one), else train. Counted from what is stored now, so deleting takes
    never leaves a gloss of 5 or more without val for long: the next take refills it."""
    splits = [e.split for e in store_entries(store) if e.gloss == gloss]
    wanted = (len(splits) + 1) // VAL_EVERY
    return "val" if splits.count("val") < wanted else "train"


def store_entries(store: FeatureStore):
    return (store.entry(v) for v in store.ids())


class Teacher:
    """The write side of the service: one write at a time, on its own thread and handle."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.store = open_store(url, "r+", storage_options)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="store-write")
        self.added = 0

    async def add(
        self,
        arrays: dict[str, np.ndarray],
        gloss: str,
        video_id: str | None,
        split: str | None,
        source: dict,
    ) -> dict:
        """Commit one take; returns its id, gloss, label and split as stored."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._add, arrays, gloss, video_id, split, source
        )

    def _add(
        self,
        arrays: dict[str, np.ndarray],
        gloss: str,
        video_id: str | None,
        split: str | None,
        source: dict,
    ) -> dict:
        store = self.store
        missing = sorted(set(store.schema.streams) - set(arrays))
        if missing:
            raise HTTPException(
                422,
                f"this store keeps {sorted(store.schema.streams)}; the take gives none of "
                f"{missing}: send a video clip (a landmark sequence has no encoder features)",
            )
        try:
            with store.writer(wait_s=WRITE_WAIT_S) as w:  # sees every take committed so far
                if video_id is not None and video_id in store:
                    raise HTTPException(
                        409, f"video {video_id!r} is already in the store; delete it first"
                    )
                video_id = video_id or new_take_id(gloss)
                split = split or split_for(store, gloss)
                w.put(
                    video_id,
                    {s: arrays[s] for s in store.schema.streams},
                    gloss=gloss,
                    split=split,
                    source={**source, "added_at": now()},
                )
                self.added += 1
                hold_after(self.added)  # test-only: a no-op unless a test asks
        except InvalidVideoError as exc:  # NaN, a wrong shape: nothing was written
            raise HTTPException(422, str(exc)) from None
        except StoreError as exc:  # a compact ran past the wait
            raise HTTPException(503, str(exc)) from None
        label = {g: n for n, g in store.labels.items()}[gloss]  # claimed by the put
        return {"video_id": video_id, "gloss": gloss, "label": label, "split": split}

    async def delete(self, video_id: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._delete, video_id)

    def _delete(self, video_id: str) -> None:
        self.store.refresh()
        if video_id not in self.store:
            raise HTTPException(404, f"unknown video {video_id!r}")
        try:
            self.store.delete([video_id], wait_s=WRITE_WAIT_S)
        except StoreError as exc:
            raise HTTPException(503, str(exc)) from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
