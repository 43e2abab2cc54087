"""Storage backends behind one contract (``Backend``); chosen by the store URL's suffix."""

from ._base import Backend, RowRange
from ._hdf5 import HDF5Backend
from ._zarr import ZarrBackend

__all__ = ["Backend", "RowRange", "HDF5Backend", "ZarrBackend", "backend_name_for"]


def backend_name_for(url: str) -> str:
    """``.h5``/``.hdf5`` -> HDF5; everything else (``.zarr``, URLs) -> Zarr."""
    return "hdf5" if url.rstrip("/").lower().endswith((".h5", ".hdf5")) else "zarr"


BACKENDS: dict[str, type[Backend]] = {"zarr": ZarrBackend, "hdf5": HDF5Backend}
