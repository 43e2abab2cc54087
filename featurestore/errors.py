"""Exceptions raised by the store; every message names the store, video or field involved."""


class StoreError(Exception):
    """Base class for feature-store errors."""


class NotAStoreError(StoreError):
    """The path or URL exists but holds no feature store."""


class SchemaMismatchError(StoreError):
    """A schema, encoder fingerprint or T does not match what the store holds."""


class VideoNotFoundError(StoreError, KeyError):
    """No committed video has this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "video not found"


class InvalidVideoError(StoreError, ValueError):
    """A video's id, metadata or arrays break the schema; nothing was written."""


class CorruptDataError(StoreError):
    """Stored bytes could not be read back (truncated or corrupt chunk)."""


class StreamNotFoundError(StoreError, KeyError):
    """The store has no stream of this name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "stream not found"
