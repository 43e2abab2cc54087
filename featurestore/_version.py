"""The package version, in one module that imports nothing (the CLI and metadata read it)."""

__version__ = "0.1.0"
