"""The installed package's version (``"0.0.0"`` when running from a source tree without installation)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clvmodels")
except PackageNotFoundError:
    __version__ = "0.0.0"
