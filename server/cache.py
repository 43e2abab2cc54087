"""A byte-bounded LRU of feature arrays, so hot videos skip the store.

Committed rows are never rewritten in place; when the server's refresher sees a video
written again or deleted, it evicts that video here (`evict`), so a cached array is always
the store's. Memory is bounded by `max_bytes`, whatever the store's size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class FeatureCache:
    """(video_id, stream) -> read-only array; thread-safe; `max_bytes=0` disables it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, video_id: str, stream: str) -> np.ndarray | None:
        with self._lock:
            arr = self._items.get((video_id, stream))
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end((video_id, stream))
            self.hits += 1
            return arr

    def put(self, video_id: str, stream: str, arr: np.ndarray) -> np.ndarray:
        """Store a private read-only copy (callers may not mutate what others read)."""
        arr = np.array(arr, copy=True)
        arr.flags.writeable = False
        if arr.nbytes > self.max_bytes:
            return arr
        key = (video_id, stream)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._items[key] = arr
            self.nbytes += arr.nbytes
            while self.nbytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.nbytes -= evicted.nbytes
        return arr

    def evict(self, video_ids: set[str]) -> None:
        """Drop every stream of these videos (written again, or deleted, since cached)."""
        with self._lock:
            for key in [k for k in self._items if k[0] in video_ids]:
                self.nbytes -= self._items.pop(key).nbytes
