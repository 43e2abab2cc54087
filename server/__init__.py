"""HTTP service: feature lookups and predictions over a feature store and a checkpoint."""

from .app import create_app
from .settings import Settings
from .state import StartupError

__all__ = ["Settings", "StartupError", "create_app"]
