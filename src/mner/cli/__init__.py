"""The ``mner`` command line. Each sub-module registers its sub-commands."""

from mner.cli.main import main

__all__ = ["main"]
