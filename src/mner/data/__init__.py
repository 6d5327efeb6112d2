"""Data layer: file -> Example. Readers, writers, corpora, images and captions."""

from mner.data.example import Example, reconstruct_text

__all__ = ["Example", "reconstruct_text"]
