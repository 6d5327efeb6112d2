"""Files that ship inside the package (sample corpus, demo data)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["resource_path", "sample_corpus_dir"]


def resource_path(*parts: str) -> Path:
    """Path of a packaged resource (the package is installed as files, not zipped)."""
    return Path(str(files("mner.resources").joinpath(*parts)))


def sample_corpus_dir() -> Path:
    """The sample corpus folder (train/valid/test in the Twitter format)."""
    return resource_path("sample", "tweets")
