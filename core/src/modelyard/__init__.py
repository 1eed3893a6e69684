"""modelyard: serve any open model on the best engine the machine has, behind the OpenAI API."""

from importlib.metadata import PackageNotFoundError, version

from .hookspecs import hookimpl

try:
    __version__ = version("modelyard")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__", "hookimpl"]
