"""Training state for resuming, as safetensors + JSON (never pickle).

What a resumed run needs beyond the model weights: the optimizer's moments, the learning-rate
schedule, the random number generators (Python, NumPy, torch, CUDA) and the trainer's counters.
Tensors go to ``training_state.safetensors``, everything else to ``trainer_state.json``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_training_state", "load_training_state", "rng_state", "set_rng_state"]

TENSORS = "training_state.safetensors"
STATE = "trainer_state.json"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors inside ``obj`` by ``{"__tensor__": key}`` and collect them."""
    if isinstance(obj, torch.Tensor):
        key = prefix or "t"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): _split(v, f"{prefix}.{k}", tensors) for k, v in obj.items()} | (
            {"__int_keys__": True} if obj and all(isinstance(k, int) for k in obj) else {})
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return obj


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
        int_keys = obj.get("__int_keys__", False)
        return {(int(k) if int_keys else k): _join(v, tensors) for k, v in obj.items() if k != "__int_keys__"}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def rng_state() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    out = {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], np_state[1], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(folder: Path, components: dict[str, Any]) -> None:
    """``components``: name -> state (nested dicts/lists of tensors, numbers, strings)."""
    tensors: dict[str, torch.Tensor] = {}
    plain = {name: _split(value, name, tensors) for name, value in components.items()}
    save_file(tensors, str(folder / TENSORS))
    (folder / STATE).write_text(json.dumps(plain, indent=1), encoding="utf-8")


def load_training_state(folder: Path) -> dict[str, Any]:
    tensors = load_file(str(folder / TENSORS))
    plain = json.loads((folder / STATE).read_text(encoding="utf-8"))
    return {name: _join(value, tensors) for name, value in plain.items()}
