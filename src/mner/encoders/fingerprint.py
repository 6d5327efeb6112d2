"""Content hashes of a module's weights, for feature-cache keys.

A fingerprint changes when any parameter or buffer changes (values, dtype, shape or name). The hash
is memoised on the tensors' identity and in-place version counters, so asking again is cheap and an
optimizer step, ``load_state_dict`` or ``.to(...)`` invalidates it without any bookkeeping.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["weights_digest", "WeightsDigest"]


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def _named_tensors(module: nn.Module):
    yield from module.named_parameters(remove_duplicate=False)
    yield from ((name, b) for name, b in module.named_buffers(remove_duplicate=False) if b is not None)


def weights_digest(module: nn.Module, length: int = 16) -> str:
    """A hex SHA-256 digest (first ``length`` characters) of every parameter and buffer of ``module``."""
    digest = hashlib.sha256()
    for name, tensor in sorted(_named_tensors(module), key=lambda item: item[0]):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()[:length]


class WeightsDigest:
    """A memoised :func:`weights_digest` of one module."""

    def __init__(self, length: int = 16) -> None:
        self.length = length
        self._state: tuple | None = None
        self._digest: str | None = None

    def __call__(self, module: nn.Module) -> str:
        state = tuple((name, t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape))
                      for name, t in _named_tensors(module))
        if state != self._state or self._digest is None:
            self._digest = weights_digest(module, self.length)
            self._state = state
        return self._digest
