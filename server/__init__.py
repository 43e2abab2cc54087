"""HTTP service: feature lookups and predictions over a feature store and a checkpoint."""

from .app import create_app
from .loading import StartupError
from .settings import Settings

__all__ = ["Settings", "StartupError", "create_app"]
