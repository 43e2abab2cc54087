"""The sign-feature store: per-video Gemma features and landmarks in chunked Zarr or HDF5.

Write with ``create_store(...).writer()``, read with ``open_store(url)``: ``get``,
``get_many``, ``blocks``/``read_block`` and ``iter_batches`` for streaming. Visual features
from another encoder are added to stored videos with ``add_feature_set`` and ``feature_writer``.

The importers (``import_dataset``, ``ImportSummary``) load on first use (PEP 562), as
``featurestore.extract`` does, so reading a store does not import every import format.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from ._version import __version__ as __version__
from .errors import (
    CorruptDataError,
    InvalidVideoError,
    NotAStoreError,
    SchemaMismatchError,
    StoreError,
    StreamNotFoundError,
    VideoNotFoundError,
)
from .index import IndexEntry
from .rows import take_rows
from .schema import (
    GEMMA_STREAM,
    LANDMARK_MASK_STREAM,
    LANDMARKS_STREAM,
    SCHEMA_VERSION,
    FeatureSet,
    StoreSchema,
    StreamSpec,
    fingerprint_digest,
    validate_video_id,
)
from .store import Batch, Block, FeatureStore, Video, create_store, open_store
from .writer import FeatureWriter, Writer

if TYPE_CHECKING:
    from .importers import ImportSummary, import_dataset

_LAZY = {"ImportSummary": "importers", "import_dataset": "importers"}

__all__ = [
    "GEMMA_STREAM",
    "LANDMARKS_STREAM",
    "LANDMARK_MASK_STREAM",
    "SCHEMA_VERSION",
    "Batch",
    "Block",
    "CorruptDataError",
    "FeatureSet",
    "FeatureStore",
    "FeatureWriter",
    "ImportSummary",
    "IndexEntry",
    "InvalidVideoError",
    "NotAStoreError",
    "SchemaMismatchError",
    "StoreError",
    "StoreSchema",
    "StreamNotFoundError",
    "StreamSpec",
    "Video",
    "VideoNotFoundError",
    "Writer",
    "create_store",
    "fingerprint_digest",
    "import_dataset",
    "open_store",
    "take_rows",
    "validate_video_id",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
