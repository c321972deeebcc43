"""The package's version: one home, read by the root package, the written metadata and the build."""

__version__ = "0.2.0"
