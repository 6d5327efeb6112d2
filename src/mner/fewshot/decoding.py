"""The decoding options of a few-shot checkpoint, set on its config before it decodes: the same
for ``mner predict``, ``mner evaluate``, ``mner tag`` and ``mner serve`` (``--decoder``,
``--temperature``, ``--o-bias``, ``--min-confidence``, ``--transition-scale``, ``--o-distance``,
``--o-neighbours``). Each is a field of the model's config, so a checkpoint decodes with the values
it was saved with unless one is given; ``None`` leaves a field as it is."""

from __future__ import annotations

import math
from typing import Any, Mapping

from mner.errors import UsageError

__all__ = ["DECODING_OPTIONS", "MOUSING_OPTIONS", "apply_decoding", "given_decoding"]

#: every decoding option, by its config field name
DECODING_OPTIONS = ("decoder", "temperature", "o_bias", "min_confidence", "transition_scale", "o_distance",
                    "o_neighbours")
#: the options only MOUSING checkpoints have
MOUSING_OPTIONS = ("transition_scale", "o_distance", "o_neighbours")


def given_decoding(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``options`` that are set (not None), in :data:`DECODING_OPTIONS` order."""
    return {name: options[name] for name in DECODING_OPTIONS if options.get(name) is not None}


def apply_decoding(model, options: Mapping[str, Any]) -> None:
    """Set the given decoding ``options`` (config field -> value; None: unchanged) on ``model``'s config;
    one line (:class:`UsageError`, named as the command-line option) for a value out of range or an
    option the model does not have."""
    decoder, temperature = options.get("decoder"), options.get("temperature")
    if decoder is not None or temperature is not None:
        if not hasattr(model.config, "decoder"):
            raise UsageError(f"--decoder/--temperature apply to nnshot checkpoints, not {model.model_type!r}")
        if decoder is not None:
            model.config.decoder = decoder
        if temperature is not None:
            if not (math.isfinite(temperature) and temperature > 0):
                raise UsageError(f"--temperature must be > 0, got {temperature}")
            model.config.temperature = temperature
    o_bias = options.get("o_bias")
    if o_bias is not None:
        if not math.isfinite(o_bias):
            raise UsageError(f"--o-bias must be a finite number, got {o_bias}")
        model.config.o_bias = o_bias
    threshold = options.get("min_confidence")
    if threshold is not None:
        if not 0.0 <= threshold < 1.0:
            raise UsageError(f"--min-confidence must be in [0, 1), got {threshold}")
        model.config.min_confidence = threshold
    for name in MOUSING_OPTIONS:
        value = options.get(name)
        if value is None:
            continue
        if not hasattr(model.config, name):
            raise UsageError(f"--{name.replace('_', '-')} applies to mousing checkpoints, not {model.model_type!r}")
        if name == "transition_scale" and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--transition-scale must be a finite number >= 0, got {value}")
        setattr(model.config, name, value)
