"""Small objects (metadata, commit records) under a store root, local or any fsspec URL.

Writes are atomic: a local file appears complete or not at all (temp file + rename); object
stores replace whole objects. That is what makes a commit record the unit of visibility.
``create`` is the one compare-and-swap the store needs: it makes an object only where none
is (a hard link locally, ``If-None-Match: *`` on S3), so of two writers one wins, whole.
"""

from __future__ import annotations

import os
import posixpath
import uuid

import fsspec


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


class Files:
    """Byte objects keyed by relative POSIX paths below ``url``."""

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url
        self.remote = is_remote(url)
        if self.remote:
            # No listings cache: a listing must show what other writers did since (new
            # commits, metadata generations), and a read must not be refused because a
            # cached listing predates the object (s3fs's cat_file asks its size first).
            options = {"use_listings_cache": False, **(storage_options or {})}
            self.fs, self.root = fsspec.core.url_to_fs(url, **options)
        else:
            self.fs, self.root = None, os.path.abspath(local_path(url))

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, key) if self.remote else os.path.join(self.root, key)

    def exists(self, key: str = "") -> bool:
        path = self._path(key) if key else self.root
        return self.fs.exists(path) if self.remote else os.path.exists(path)

    def read(self, key: str) -> bytes | None:
        try:
            if self.remote:
                return self.fs.cat_file(self._path(key))
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.remote:
            self.fs.pipe_file(path, data)
            return
        os.replace(self._write_temp(path, data), path)

    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist yet; False if another writer has it."""
        path = self._path(key)
        if self.remote:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)  # atomic, complete, and fails if the name is taken
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)
        return True

    def _write_temp(self, path: str, data: bytes) -> str:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def list(self, prefix: str) -> list[str]:
        """Keys (relative to the root) of all objects under ``prefix``, sorted."""
        base = self._path(prefix)
        if self.remote:
            try:
                found = self.fs.find(base)
            except FileNotFoundError:
                return []
            root = self.root.rstrip("/") + "/"
            keys = [p[len(root) :] if p.startswith(root) else p.split(root, 1)[-1] for p in found]
        else:
            keys = []
            for dirpath, _, names in os.walk(base):
                rel = os.path.relpath(dirpath, self.root)
                parts = [] if rel == os.curdir else rel.split(os.sep)
                keys += [posixpath.join(*parts, n) for n in names]
        return sorted(k for k in keys if not k.endswith(".partial"))

    def delete(self, prefix: str) -> None:
        path = self._path(prefix)
        if self.remote:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        elif os.path.isdir(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
