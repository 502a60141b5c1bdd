"""The package version, in a module of its own so that every wing can read it without importing the API."""

__version__ = "0.3.0"
