"""mner: multimodal named entity recognition (MAF, MOUSING, baselines).

The main entry points, imported lazily (``import mner`` stays light for the data tools):

- :class:`mner.Pipeline`: inference on text + image;
- :func:`mner.load_model`: any trained model folder;
- :class:`mner.Example`, :func:`mner.read_file`, :class:`mner.Corpus`: the data layer;
- :func:`mner.score`: entity-level metrics.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Pipeline": "mner.pipeline",
    "load_model": "mner.models",
    "MAFConfig": "mner.models.maf",
    "MAFModel": "mner.models.maf",
    "Example": "mner.data.example",
    "Corpus": "mner.data.corpus",
    "read_file": "mner.data.formats",
    "write_file": "mner.data.formats",
    "score": "mner.tagging",
    "CRF": "mner.crf",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mner' has no attribute {name!r}")
