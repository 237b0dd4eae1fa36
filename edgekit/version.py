"""The package version, apart from the package face so that any module can say it."""

__version__ = "0.1.0"
