"""The package version. It lives in the zoo wing because the zoo writes it (saved configs, Hub requests); a module
of its own, so that every wing and the CLI can read it without importing the API."""

__version__ = "0.4.0"
