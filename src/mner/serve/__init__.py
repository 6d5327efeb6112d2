"""``mner serve``: the HTTP service and web page around a trained model (``pip install mner[serve]``).

>>> from mner.serve import ServeConfig, create_app                # doctest: +SKIP
>>> app = create_app("runs/quickstart/best", config=ServeConfig(max_batch_size=8))  # doctest: +SKIP

:mod:`.app` (routes, request parsing, body limit), :mod:`.batching` (micro-batching),
:mod:`.limits` (limits and image checks); match probability and attention: :mod:`mner.explain`.
"""

from __future__ import annotations

from mner.serve.limits import ServeConfig, ServeError

__all__ = ["ServeConfig", "ServeError", "create_app"]


def create_app(*args, **kwargs):
    """See :func:`mner.serve.app.create_app` (imported lazily: FastAPI is an optional extra)."""
    from mner.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)
